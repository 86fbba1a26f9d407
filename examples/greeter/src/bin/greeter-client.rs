//! Calls the Greeter.
//!
//! ```text
//! greeter-client [--addr 127.0.0.1:4433] --ca ca.pem [--name Ada] [--n 3] [--bench N]
//! ```
//! `--bench N` also times N sequential `say_hello` calls.

use std::time::Instant;

use greeter::{CountRequest, GreeterClient, HelloRequest};

fn usage() -> ! {
    eprintln!("usage: greeter-client [--addr HOST:PORT] --ca CA.pem [--name NAME] [--n N] [--bench CALLS]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:4433".to_owned();
    let mut ca = None;
    let mut name = "Ada".to_owned();
    let mut n = 3u32;
    let mut bench = 0u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => addr = val(),
            "--ca" => ca = Some(val()),
            "--name" => name = val(),
            "--n" => n = val().parse().map_err(|e| format!("--n: {e}"))?,
            "--bench" => bench = val().parse().map_err(|e| format!("--bench: {e}"))?,
            _ => usage(),
        }
    }
    let Some(ca) = ca else { usage() };
    let client = knafeh::Client::builder(addr).ca_file(ca).connect().await?;
    let greeter = GreeterClient::new(client);

    let reply = greeter
        .say_hello(HelloRequest { name: name.clone() })
        .await?;
    println!("say_hello({name:?}) -> {:?}", reply.message);

    let mut counts = greeter.count_to(CountRequest { n }).await?;
    let mut values = Vec::new();
    while let Some(c) = counts.message().await {
        values.push(c?.value);
    }
    println!("count_to({n}) -> {values:?}");

    if bench > 0 {
        let start = Instant::now();
        for _ in 0..bench {
            greeter
                .say_hello(HelloRequest { name: name.clone() })
                .await?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{bench} sequential say_hello calls in {secs:.3} s: {:.0} calls/s",
            f64::from(bench) / secs
        );
    }
    Ok(())
}
