//! Calls the Greeter.
//!
//! ```text
//! greeter-client [--addr 127.0.0.1:4433] --ca ca.pem [--name Ada] [--n 3]
//!                [--add-up 1,2,3] [--chat Ada,Grace]
//!                [--bench N] [--in-flight K] [--stream ITEMS] [--token TOKEN]
//! ```
//! `--add-up` sends the values to `add_up` (client streaming); `--chat`
//! sends the names to `chat` (bidirectional) one at a time, each after the
//! reply to the one before. `--token` sends a bearer token with every call
//! (see `greeter::auth`).
//! `--bench N` also times N `say_hello` calls, K at a time (default 1:
//! sequential); `--stream ITEMS` times one `count_to(ITEMS)`.

use std::time::Instant;

use greeter::{Count, CountRequest, GreeterClient, HelloRequest};
use knafeh::Streaming;

fn usage() -> ! {
    eprintln!(
        "usage: greeter-client [--addr HOST:PORT] --ca CA.pem [--name NAME] [--n N] \
         [--add-up V,V,...] [--chat NAME,NAME,...] \
         [--bench CALLS] [--in-flight K] [--stream ITEMS] [--token TOKEN]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:4433".to_owned();
    let mut ca = None;
    let mut name = "Ada".to_owned();
    let mut n = 3u32;
    let mut bench = 0u32;
    let mut in_flight = 1u32;
    let mut stream = 0u32;
    let mut token = None;
    let mut add_up: Option<Vec<u32>> = None;
    let mut chat: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => addr = val(),
            "--ca" => ca = Some(val()),
            "--name" => name = val(),
            "--n" => n = val().parse().map_err(|e| format!("--n: {e}"))?,
            "--bench" => bench = val().parse().map_err(|e| format!("--bench: {e}"))?,
            "--in-flight" => {
                in_flight = val().parse().map_err(|e| format!("--in-flight: {e}"))?;
                in_flight = in_flight.max(1);
            }
            "--token" => token = Some(val()),
            "--stream" => stream = val().parse().map_err(|e| format!("--stream: {e}"))?,
            "--add-up" => add_up = Some(values(&val())?),
            "--chat" => chat = Some(val().split(',').map(str::to_owned).collect()),
            _ => usage(),
        }
    }
    let Some(ca) = ca else { usage() };
    let mut builder = knafeh::Client::builder(addr).ca_file(ca);
    if let Some(token) = token {
        builder = builder.interceptor(greeter::auth::bearer_token(&token)?);
    }
    let client = builder.connect().await?;
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

    if let Some(values) = add_up {
        let counts = Streaming::iter(values.clone().into_iter().map(|value| Count { value }));
        let total = greeter.add_up(counts).await?;
        println!(
            "add_up({values:?}) -> sum {} count {}",
            total.sum, total.count
        );
    }
    if let Some(names) = chat {
        run_chat(&greeter, &names).await?;
    }

    if bench > 0 {
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..in_flight {
            let greeter = greeter.clone();
            let name = name.clone();
            // Worker w makes calls w, w + K, w + 2K, ... one after another.
            let calls = (bench + in_flight - 1 - w) / in_flight;
            workers.spawn(async move {
                for _ in 0..calls {
                    greeter
                        .say_hello(HelloRequest { name: name.clone() })
                        .await?;
                }
                Ok::<_, knafeh::Status>(())
            });
        }
        while let Some(done) = workers.join_next().await {
            done??;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{bench} say_hello calls, {in_flight} in flight, in {secs:.3} s: {:.0} calls/s",
            f64::from(bench) / secs
        );
    }
    if stream > 0 {
        let start = Instant::now();
        let mut counts = greeter.count_to(CountRequest { n: stream }).await?;
        let mut got = 0u32;
        while let Some(c) = counts.message().await {
            c?;
            got += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "count_to({stream}): {got} items in {secs:.3} s: {:.0} items/s",
            f64::from(got) / secs
        );
    }
    Ok(())
}

/// `--add-up 1,2,3`.
fn values(list: &str) -> Result<Vec<u32>, String> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| format!("--add-up: {v:?}: {e}"))
        })
        .collect()
}

/// Sends each name after the reply to the one before, on one call.
async fn run_chat(greeter: &GreeterClient, names: &[String]) -> Result<(), knafeh::Status> {
    let (tx, requests) = Streaming::channel(1);
    let mut replies = greeter.chat(requests).await?;
    for name in names {
        let request = HelloRequest { name: name.clone() };
        if tx.send(request).await.is_err() {
            break; // the server ended the call; its status follows
        }
        match replies.message().await {
            Some(Ok(reply)) => println!("chat({name:?}) -> {:?}", reply.message),
            Some(Err(status)) => return Err(status),
            None => return Ok(()),
        }
    }
    drop(tx);
    while let Some(reply) = replies.message().await {
        println!("chat -> {:?}", reply?.message);
    }
    Ok(())
}
