//! Calls the probe service's endless stream and reads it forever, for tests
//! that kill a client in the middle of a stream.
//!
//! Usage: `stream_reader ADDR CA`. Prints `reading` once the first item has
//! arrived.

use std::io::Write;

use knafeh_tests::{ProbeClient, StreamMode};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, ca] = &args[..] else {
        eprintln!("usage: stream_reader ADDR CA");
        std::process::exit(2);
    };
    let client = knafeh::Client::builder(addr.clone())
        .ca_file(ca)
        .connect()
        .await
        .unwrap_or_else(|e| {
            eprintln!("stream_reader: {e}");
            std::process::exit(1);
        });
    let p = ProbeClient::new(client);
    let mut stream = p.stream(StreamMode::Endless).await.unwrap_or_else(|e| {
        eprintln!("stream_reader: {e}");
        std::process::exit(1);
    });
    let mut first = true;
    while let Some(item) = stream.message().await {
        if let Err(e) = item {
            eprintln!("stream_reader: {e}");
            std::process::exit(1);
        }
        if first {
            println!("reading");
            std::io::stdout().flush().unwrap();
            first = false;
        }
    }
    eprintln!("stream_reader: the endless stream ended");
    std::process::exit(1);
}
