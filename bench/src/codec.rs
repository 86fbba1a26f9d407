//! `knafeh-bench codec`: what `knafeh::as_bytes` saves. Encodes and
//! decodes a message with one byte field, as a plain `Vec<u8>` and marked
//! `as_bytes`, through knafeh's bincode path (prefix, depth limit and all),
//! for a 64-byte and a 1 MiB payload, and prints nanoseconds per message.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use knafeh::__private::Message;
use knafeh::Codec;
use knafeh_bench_echo::EchoMsg;
use serde::{Deserialize, Serialize};

/// The echo message without the attribute: the same wire bytes.
#[derive(Serialize, Deserialize)]
struct PlainMsg {
    payload: Vec<u8>,
}

/// Runs `f` repeatedly for about `budget` and returns the time per run.
fn per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    let mut n: u32 = 0;
    let started = Instant::now();
    while started.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    started.elapsed() / n
}

fn encode<T: Message>(v: &T) -> BytesMut {
    let mut out = BytesMut::new();
    v.encode_message(Codec::Bincode, &mut out)
        .expect("the message encodes");
    out
}

fn decode<T: Message>(frame: &[u8]) -> T {
    T::decode_message(Codec::Bincode, &frame[5..]).expect("the message decodes")
}

pub fn main(args: &[String]) -> Result<(), String> {
    let budget = match args {
        [] => Duration::from_secs(1),
        [flag, v] if flag == "--duration" => crate::stats::parse_duration(v)?,
        _ => return Err("usage: knafeh-bench codec [--duration 1s]".into()),
    };
    println!("| payload | decode Vec<u8> | decode as_bytes | encode Vec<u8> | encode as_bytes |");
    println!("|---|---|---|---|---|");
    for size in [64usize, 1 << 20] {
        let plain = PlainMsg {
            payload: vec![0x5a; size],
        };
        let marked = EchoMsg {
            payload: vec![0x5a; size],
        };
        let frame = encode(&plain);
        if frame != encode(&marked) {
            return Err(format!("{size} B: the two forms differ on the wire"));
        }
        let dp = per_call(budget, || {
            drop(black_box(decode::<PlainMsg>(black_box(&frame))))
        });
        let dm = per_call(budget, || {
            drop(black_box(decode::<EchoMsg>(black_box(&frame))))
        });
        let ep = per_call(budget, || drop(black_box(encode(black_box(&plain)))));
        let em = per_call(budget, || drop(black_box(encode(black_box(&marked)))));
        println!("| {size} B | {dp:.2?} | {dm:.2?} | {ep:.2?} | {em:.2?} |");
    }
    Ok(())
}
