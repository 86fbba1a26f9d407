//! `load`: a soak run against a knafeh echo server child process.
//!
//! N connections x M callers each, back to back for the duration; prints
//! progress every 10 s (calls, errors, the server's RSS), then the totals,
//! errors by status code and the latency percentiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knafeh::CallOptions;
use knafeh_bench_echo::EchoMsg;
use tokio::task::JoinSet;

use crate::child::{Certs, ServerChild};
use crate::stats::{fmt_num, parse_duration, percentile_sorted};
use crate::systems::knafeh::KnafehConn;
use crate::systems::{Conn, System};

struct LoadArgs {
    connections: usize,
    in_flight: usize,
    duration: Duration,
    payload: usize,
    timeout: Duration,
}

fn parse(args: &[String]) -> Result<LoadArgs, String> {
    let mut a = LoadArgs {
        connections: 8,
        in_flight: 32,
        duration: Duration::from_secs(60),
        payload: 64,
        timeout: Duration::from_secs(10),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag}: missing value"));
        let num = |v: &String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--connections" => a.connections = num(val()?)?,
            "--in-flight" => a.in_flight = num(val()?)?,
            "--payload" => a.payload = num(val()?)?,
            "--duration" => a.duration = parse_duration(val()?)?,
            "--timeout" => a.timeout = parse_duration(val()?)?,
            _ => return Err(format!("load: unknown option {flag}\n{}", crate::USAGE)),
        }
    }
    if a.connections == 0 || a.in_flight == 0 {
        return Err("--connections and --in-flight must be at least 1".into());
    }
    Ok(a)
}

#[derive(Default)]
struct CallerResult {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

pub async fn main(args: &[String]) -> Result<(), String> {
    let a = parse(args)?;
    let certs = Certs::generate(&["localhost", "127.0.0.1"])?;
    let server = ServerChild::spawn(System::Knafeh, &certs, a.in_flight.max(100) as u64)?;
    crate::print_machine();
    println!(
        "load: knafeh echo, {} connections x {} in flight = {} callers, {} B payload, {:?}, per-call timeout {:?}",
        a.connections,
        a.in_flight,
        a.connections * a.in_flight,
        a.payload,
        a.duration,
        a.timeout
    );
    let rss = |s: &ServerChild| {
        s.rss_kib()
            .map_or("?".to_owned(), |k| format!("{} KiB", fmt_num(k as f64)))
    };
    let rss_start = rss(&server);
    println!("server pid {}, RSS at start: {rss_start}", server.pid());

    let mut conns = Vec::new();
    for _ in 0..a.connections {
        conns.push(KnafehConn::connect(&server.target).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + a.duration;
    let mut tasks = JoinSet::new();
    for c in &conns {
        for _ in 0..a.in_flight {
            let client = c.client().clone();
            let (done, failed) = (done.clone(), failed.clone());
            let payload = vec![0xa5; a.payload];
            let timeout = a.timeout;
            tasks.spawn(async move {
                let mut r = CallerResult::default();
                while Instant::now() < end {
                    let t = Instant::now();
                    let call = client.echo_with(
                        EchoMsg {
                            payload: payload.clone(),
                        },
                        CallOptions::new().timeout(timeout),
                    );
                    match call.await {
                        Ok(resp) if resp.get_ref().payload.len() == payload.len() => {
                            r.latencies.push(t.elapsed());
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            *r.errors.entry("WRONG_LENGTH".into()).or_default() += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(status) => {
                            *r.errors.entry(status.code().to_string()).or_default() += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                r
            });
        }
    }

    // Progress every 10 s; the middle RSS at half time.
    let mut results: Vec<CallerResult> = Vec::new();
    let mut rss_middle = None;
    let mut last = (start, 0u64);
    let half = start + a.duration / 2;
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(10)).into(),
        Duration::from_secs(10),
    );
    loop {
        tokio::select! {
            _ = tick.tick(), if Instant::now() < end => {
                let now = Instant::now();
                let n = done.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, n);
                println!(
                    "  t={:>3.0}s  calls {:>11}  errors {:>5}  {:>8} calls/s  server RSS {}",
                    now.duration_since(start).as_secs_f64(),
                    fmt_num(n as f64),
                    failed.load(Ordering::Relaxed),
                    fmt_num(rate),
                    rss(&server)
                );
            }
            _ = tokio::time::sleep_until(half.into()), if rss_middle.is_none() => {
                rss_middle = Some(rss(&server));
            }
            r = tasks.join_next() => match r {
                Some(Ok(res)) => results.push(res),
                Some(Err(e)) => return Err(format!("caller task: {e}")),
                None => break,
            },
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss_end = rss(&server);
    drop(conns);

    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        latencies.extend(r.latencies);
        for (code, n) in r.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    latencies.sort();
    let calls = latencies.len();
    let error_total: u64 = errors.values().sum();
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "calls completed: {} ({} calls/s over {elapsed:.1} s)",
        fmt_num(calls as f64),
        fmt_num(calls as f64 / elapsed)
    );
    if errors.is_empty() {
        println!("errors: 0");
    } else {
        let by_code: Vec<String> = errors.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        println!("errors: {error_total} ({})", by_code.join(", "));
    }
    println!(
        "latency: p50 {}, p99 {}, p99.9 {}, max {}",
        ms(percentile_sorted(&latencies, 50.0)),
        ms(percentile_sorted(&latencies, 99.0)),
        ms(percentile_sorted(&latencies, 99.9)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "server RSS: start {rss_start}, middle {}, end {rss_end}",
        rss_middle.unwrap_or_else(|| "?".into())
    );
    if error_total > 0 {
        return Err(format!("{error_total} calls failed"));
    }
    Ok(())
}
