//! Duplication and reordering are observable by the receiver, and TCP and
//! UDP cross a link that applies every impairment at once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use link_emulator::{Direction, Impairments, Link, Side};

#[test]
fn duplicates_arrive_twice() {
    let _serial = serial();
    let link = start(
        Link::builder()
            .direction(
                Direction::AToB,
                Impairments::none().with_delay(ms(5)).with_duplicate(0.05),
            )
            .seed(5),
    );
    let receiver = udp_socket(&link, Side::B, 7500);
    let sender = udp_socket(&link, Side::A, 7501);
    let to = sock(link.addr(Side::B), 7500);
    let collector = std::thread::spawn(move || {
        udp_collect(
            &receiver,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    });
    udp_send_paced(&sender, to, 2_000, 64, 2_000.0);
    let got = collector.join().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let duplicates = got.iter().filter(|(seq, _, _)| !seen.insert(*seq)).count() as u64;
    assert_eq!(seen.len(), 2_000, "packets lost on a link without loss");
    assert_binomial("duplicates at 5%", duplicates, 2_000, 0.05);
    assert_eq!(duplicates, link.stats(Direction::AToB).duplicated);
}

#[test]
fn reordered_packets_are_overtaken() {
    let _serial = serial();
    let config = Impairments::none()
        .with_delay(ms(5))
        .with_reorder(0.10, ms(20));
    let link = start(Link::builder().direction(Direction::AToB, config).seed(6));
    let receiver = udp_socket(&link, Side::B, 7600);
    let sender = udp_socket(&link, Side::A, 7601);
    let to = sock(link.addr(Side::B), 7600);
    let collector = std::thread::spawn(move || {
        udp_collect(
            &receiver,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    });
    udp_send_paced(&sender, to, 1_000, 64, 1_000.0);
    let got = collector.join().unwrap();
    assert_eq!(got.len(), 1_000, "packets lost on a link without loss");
    let mut highest = None;
    let mut late = 0u64;
    for (seq, _, _) in &got {
        if highest.is_some_and(|h| *seq < h) {
            late += 1;
        }
        highest = highest.max(Some(*seq));
    }
    let held = link.stats(Direction::AToB).reordered;
    println!("reordering: {late} packets arrived after a later one; {held} held");
    assert_binomial("reordered at 10%", late, 1_000, 0.10);
    assert!(late <= held && late + 5 >= held, "late {late}, held {held}");
}

#[test]
fn tcp_and_udp_cross_a_link_with_every_impairment() {
    let _serial = serial();
    let each_way = Impairments::none()
        .with_delay(ms(5))
        .with_jitter(ms(1), link_emulator::Jitter::Normal)
        .with_loss(0.01)
        .with_duplicate(0.01)
        .with_reorder(0.02, ms(3))
        .with_rate_mbit(50.0, ms(20));
    let link = start(Link::builder().each_way(each_way).seed(8));
    let b = link.addr(Side::B);
    let listener = link
        .run_in(Side::B, move || TcpListener::bind((b, 7700)))
        .unwrap()
        .unwrap();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            stream.write_all(&buf[..n]).unwrap();
        }
    });
    let mut stream = link
        .run_in(Side::A, move || {
            TcpStream::connect_timeout(&sock(b, 7700), ms(5000))
        })
        .unwrap()
        .expect("TCP connect across the link");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let send = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("TCP echo of 1 MiB");
    send.join().unwrap();
    assert!(back == data, "TCP data corrupted across the link");
    drop(stream);
    echo.join().unwrap();

    let server = udp_socket(&link, Side::B, 7701);
    let echo = udp_echo(server, Duration::from_secs(10));
    let client = udp_socket(&link, Side::A, 7702);
    let rtts = udp_ping(&client, sock(b, 7701), 50);
    println!("UDP: {} of 50 pings answered", rtts.len());
    assert!(
        rtts.len() >= 40,
        "only {} of 50 UDP pings answered",
        rtts.len()
    );
    drop(echo);
    let stats = link.stats(Direction::AToB);
    println!("A to B: {stats:?}");
    assert!(stats.lost > 0 && stats.packets_out > 0);
}
