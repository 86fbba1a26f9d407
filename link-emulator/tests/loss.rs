//! Random loss follows the binomial law and is reproducible from the seed.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use link_emulator::{Direction, Impairments, Link, Side};

const SENT: u32 = 5_000;

/// Sends SENT datagrams A → B over a link losing 2 % A → B; returns the
/// sequence numbers that did not arrive and the relay's loss count.
fn lost_with_seed(seed: u64) -> (BTreeSet<u32>, u64) {
    let link = start(
        Link::builder()
            .direction(
                Direction::AToB,
                Impairments::none().with_delay(ms(5)).with_loss(0.02),
            )
            .seed(seed),
    );
    let receiver = udp_socket(&link, Side::B, 7200);
    let sender = udp_socket(&link, Side::A, 7201);
    let to = sock(link.addr(Side::B), 7200);
    let collector = std::thread::spawn(move || {
        udp_collect(
            &receiver,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    });
    udp_send_paced(&sender, to, SENT, 64, 5_000.0);
    let got = collector.join().unwrap();
    let mut missing: BTreeSet<u32> = (0..SENT).collect();
    for (seq, _, _) in &got {
        missing.remove(seq);
    }
    assert_eq!(
        got.len() as u32 + missing.len() as u32,
        SENT,
        "unexpected duplicates"
    );
    (missing, link.stats(Direction::AToB).lost)
}

#[test]
fn udp_loss_is_binomial_and_reproducible_from_the_seed() {
    let (first, relay_lost) = lost_with_seed(11);
    assert_binomial("UDP loss at 2%", first.len() as u64, u64::from(SENT), 0.02);
    assert_eq!(
        first.len() as u64,
        relay_lost,
        "packets lost elsewhere than in the emulator"
    );
    let (again, _) = lost_with_seed(11);
    assert_eq!(first, again, "the same seed lost other packets");
    let (other, _) = lost_with_seed(12);
    assert_binomial(
        "UDP loss at 2%, seed 12",
        other.len() as u64,
        u64::from(SENT),
        0.02,
    );
    assert_ne!(first, other, "another seed lost the same packets");
}
