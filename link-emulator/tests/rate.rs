//! The rate limit holds TCP and UDP to the set rate.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use link_emulator::{Impairments, Link, Side};

/// 20 Mbit/s = 2,500,000 bytes of IP packets per second.
const RATE: f64 = 2_500_000.0;

fn link_20mbit() -> Link {
    let each_way = Impairments::none()
        .with_delay(ms(5))
        .with_rate_mbit(20.0, ms(40));
    start(Link::builder().each_way(each_way).seed(4))
}

/// Bytes per second between the first sample at least `skip` after the
/// first and the last sample, of (time, cumulative bytes) samples.
fn rate_after(samples: &[(Instant, u64)], skip: Duration) -> f64 {
    let first = samples.first().expect("nothing received").0;
    let from = samples
        .iter()
        .find(|(t, _)| *t >= first + skip)
        .expect("the transfer was too short");
    let to = samples.last().unwrap();
    (to.1 - from.1) as f64 / (to.0 - from.0).as_secs_f64()
}

#[test]
fn tcp_bulk_transfer_runs_at_the_rate() {
    let _serial = serial();
    let link = link_20mbit();
    let b = link.addr(Side::B);
    let listener = link
        .run_in(Side::B, move || TcpListener::bind((b, 7300)))
        .unwrap()
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let (mut total, mut samples) = (0u64, Vec::new());
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            total += n as u64;
            samples.push((Instant::now(), total));
        }
        samples
    });
    let mut stream = link
        .run_in(Side::A, move || {
            TcpStream::connect_timeout(&sock(b, 7300), ms(5000))
        })
        .unwrap()
        .expect("TCP connect across the link");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = vec![7u8; 16_384];
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        stream.write_all(&chunk).unwrap();
    }
    drop(stream);
    let samples = receiver.join().unwrap();
    // Skip slow start; each 1500-byte IP packet carries 1448 bytes of data
    // (20 IP + 20 TCP + 12 timestamp option bytes of header).
    let goodput = rate_after(&samples, Duration::from_secs(1));
    assert_close(
        "TCP rate at 20 Mbit/s, IP bytes/s",
        goodput * 1500.0 / 1448.0,
        RATE,
        0.10,
    );
}

#[test]
fn udp_flood_is_cut_to_the_rate() {
    let _serial = serial();
    let link = link_20mbit();
    let receiver = udp_socket(&link, Side::B, 7400);
    let sender = udp_socket(&link, Side::A, 7401);
    let to = sock(link.addr(Side::B), 7400);
    let collector = std::thread::spawn(move || {
        udp_collect(
            &receiver,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    });
    // 1200 bytes of payload = 1228-byte IP packets, offered at 30 Mbit/s.
    let per_second = 30e6 / 8.0 / 1228.0;
    udp_send_paced(&sender, to, (per_second * 3.0) as u32, 1200, per_second);
    let got = collector.join().unwrap();
    let mut total = 0u64;
    let samples: Vec<(Instant, u64)> = got
        .iter()
        .map(|(_, t, n)| {
            total += *n as u64 + 28;
            (*t, total)
        })
        .collect();
    assert_close(
        "UDP rate at 20 Mbit/s (offered 30), IP bytes/s",
        rate_after(&samples, Duration::from_millis(500)),
        RATE,
        0.10,
    );
    let stats = link.stats(link_emulator::Direction::AToB);
    println!("UDP flood: {stats:?}");
    assert!(
        stats.queue_dropped > 0,
        "the queue never overflowed at 1.5× the rate"
    );
}
