//! Measured round-trip times match the link's delay setting.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use link_emulator::{Impairments, Jitter, Link, Side};

/// Median of `count` UDP ping-pongs from A to B's echo server.
fn udp_rtt_median(link: &Link, count: u32) -> (Duration, Vec<Duration>) {
    let server = udp_socket(link, Side::B, 7000);
    let echo = udp_echo(server, Duration::from_secs(30));
    let client = udp_socket(link, Side::A, 7001);
    let to = sock(link.addr(Side::B), 7000);
    udp_ping(&client, to, 3); // warm-up
    let rtts = udp_ping(&client, to, count);
    assert!(
        rtts.len() as u32 >= count * 9 / 10,
        "only {} answers of {count}",
        rtts.len()
    );
    drop(echo);
    (median(rtts.clone()), rtts)
}

#[test]
fn udp_rtt_within_10_percent_at_20_and_80_ms() {
    let _serial = serial();
    for (rtt, count) in [(20, 60), (80, 30)] {
        let link = start(Link::builder().rtt(ms(rtt)).seed(1));
        let (measured, _) = udp_rtt_median(&link, count);
        assert_close(
            &format!("UDP RTT at {rtt} ms (median of {count})"),
            measured.as_secs_f64() * 1e3,
            rtt as f64,
            0.10,
        );
    }
}

#[test]
fn jitter_spreads_the_rtt_around_the_setting() {
    let _serial = serial();
    // 20 ms each way ± 5 ms uniform: the RTT is 40 ms ± 10 ms (triangular).
    let each_way = Impairments::none()
        .with_delay(ms(20))
        .with_jitter(ms(5), Jitter::Uniform);
    let link = start(Link::builder().each_way(each_way).seed(2));
    let (measured, rtts) = udp_rtt_median(&link, 80);
    assert_close(
        "UDP RTT with jitter (median of 80)",
        measured.as_secs_f64() * 1e3,
        40.0,
        0.10,
    );
    let (p10, p90) = (percentile(&rtts, 0.1), percentile(&rtts, 0.9));
    let min = rtts.iter().min().copied().unwrap_or_default();
    println!("jitter: min {min:?}, p10 {p10:?}, p90 {p90:?}");
    assert!(min >= ms(29), "an RTT below the 30 ms floor: {min:?}");
    assert!(
        p90 - p10 >= ms(5),
        "jitter not visible: p10 {p10:?}, p90 {p90:?}"
    );
}

#[test]
fn tcp_connect_takes_one_rtt() {
    let _serial = serial();
    let link = start(Link::builder().rtt(ms(40)).seed(3));
    let b = link.addr(Side::B);
    let listener = link
        .run_in(Side::B, move || TcpListener::bind((b, 7100)))
        .unwrap()
        .unwrap();
    let acceptor = std::thread::spawn(move || {
        for _ in 0..21 {
            if listener.accept().is_err() {
                break;
            }
        }
    });
    let times = link
        .run_in(Side::A, move || {
            (0..21)
                .map(|_| {
                    let started = Instant::now();
                    let stream = std::net::TcpStream::connect_timeout(&sock(b, 7100), ms(5000));
                    let took = started.elapsed();
                    stream.expect("TCP connect across the link");
                    took
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    acceptor.join().unwrap();
    assert_close(
        "TCP connect time at 40 ms RTT (median of 21)",
        median(times).as_secs_f64() * 1e3,
        40.0,
        0.10,
    );
}

/// The bench's shortest link: 1 ms RTT, within ±0.3 ms (timer wake-ups and
/// the two kernels' paths are a larger share of it).
#[test]
fn udp_rtt_of_1_ms_within_300_us() {
    let _serial = serial();
    let link = start(Link::builder().rtt(ms(1)).seed(9));
    let (measured, _) = udp_rtt_median(&link, 200);
    println!("UDP RTT at 1 ms (median of 200): {measured:?}");
    let error = measured.as_secs_f64() * 1e3 - 1.0;
    assert!(error.abs() <= 0.3, "UDP RTT at 1 ms: measured {measured:?}");
}

#[test]
fn a_link_without_delay_adds_under_2_ms() {
    let _serial = serial();
    let link = start(Link::builder());
    let (measured, _) = udp_rtt_median(&link, 200);
    println!("UDP RTT without delay (median of 200): {measured:?}");
    assert!(measured < ms(2), "the relay alone adds {measured:?}");
}
