//! `knafeh-bench compress`: a compressible 1 MiB message echoed (unary,
//! 1 MiB each way, as scenario e) by a knafeh server child, uncompressed,
//! gzip and zstd. The client picks the encoding
//! (`ClientBuilder::compression`); the server answers in the request's.
//! Prints MB/s (calls/s x 1 MiB, as scenario e counts) and the UDP bytes
//! one call takes each way (QUIC and TLS included), counted by a relay in
//! front of the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knafeh::Compression;
use knafeh_bench_echo::{EchoClient, EchoMsg};
use tokio::net::UdpSocket;

use crate::child::{Certs, ServerChild};
use crate::stats::parse_duration;
use crate::systems::{System, MAX_MESSAGE};

/// Size of the echoed payload.
const SIZE: usize = 1 << 20;

/// Bytes the relay forwarded: (to the server, to the client).
#[derive(Default)]
struct Counted {
    up: AtomicU64,
    down: AtomicU64,
}

/// A UDP relay from a local port to `server` for one client, counting the
/// bytes of every datagram; runs until the process ends.
async fn relay(server: SocketAddr) -> Result<(SocketAddr, Arc<Counted>), String> {
    let err = |e: std::io::Error| format!("relay: {e}");
    let front = UdpSocket::bind("127.0.0.1:0").await.map_err(err)?;
    let back = UdpSocket::bind("127.0.0.1:0").await.map_err(err)?;
    back.connect(server).await.map_err(err)?;
    let addr = front.local_addr().map_err(err)?;
    let counted = Arc::new(Counted::default());
    let c = counted.clone();
    tokio::spawn(async move {
        let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
        let mut client = None;
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut up) => {
                    client = Some(from);
                    c.up.fetch_add(n as u64, Ordering::Relaxed);
                    let _ = back.send(&up[..n]).await;
                }
                Ok(n) = back.recv(&mut down) => {
                    c.down.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(to) = client {
                        let _ = front.send_to(&down[..n], to).await;
                    }
                }
            }
        }
    });
    Ok((addr, counted))
}

/// 1 MiB of JSON-like records: text that compresses about as real
/// payloads do (not a run of one byte).
fn payload() -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE + 128);
    let mut i: u64 = 0;
    while out.len() < SIZE {
        let record = format!(
            "{{\"id\":{i},\"name\":\"user-{}\",\"score\":{},\"tags\":[\"a{}\",\"b\"]}},",
            i % 977,
            (i * 7919) % 10007,
            i % 13
        );
        out.extend_from_slice(record.as_bytes());
        i += 1;
    }
    out.truncate(SIZE);
    out
}

pub async fn main(args: &[String]) -> Result<(), String> {
    let duration = match args {
        [] => Duration::from_secs(2),
        [flag, v] if flag == "--duration" => parse_duration(v)?,
        _ => return Err("usage: knafeh-bench compress [--duration 2s]".into()),
    };
    crate::print_machine();
    let certs = Certs::generate(&["127.0.0.1", "localhost"])?;
    let server = ServerChild::spawn(System::Knafeh, &certs, 100)?;
    let payload = payload();
    println!("| compression | MB/s | bytes up per call | bytes down per call |");
    println!("|---|---|---|---|");
    for c in [Compression::Identity, Compression::Gzip, Compression::Zstd] {
        let (addr, counted) = relay(server.target.addr).await?;
        let client = knafeh::Client::builder(addr.to_string())
            .ca_file(&certs.ca)
            .max_message_size(MAX_MESSAGE)
            .compression(c)
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let client = EchoClient::new(client);
        echo(&client, &payload).await?;
        let (up0, down0) = (
            counted.up.load(Ordering::Relaxed),
            counted.down.load(Ordering::Relaxed),
        );
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < duration {
            echo(&client, &payload).await?;
            calls += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        let up = (counted.up.load(Ordering::Relaxed) - up0) / calls;
        let down = (counted.down.load(Ordering::Relaxed) - down0) / calls;
        let rate = calls as f64 / secs * SIZE as f64 / 1e6;
        println!("| {c} | {rate:.0} | {up} | {down} |");
    }
    drop(server);
    Ok(())
}

async fn echo(client: &EchoClient, payload: &[u8]) -> Result<(), String> {
    let reply = client
        .echo(EchoMsg {
            payload: payload.to_vec(),
        })
        .await
        .map_err(|e| format!("echo: {e}"))?;
    if reply.payload != payload {
        return Err("echo: the reply differs from the request".into());
    }
    Ok(())
}
