//! knafeh's benchmark: the same 64-byte echo service on knafeh, tonic
//! (gRPC over HTTP/2, h2c and TLS), tonic-h3 (gRPC over HTTP/3 on quinn)
//! and a bare tokio-quiche HTTP/3 echo (the floor),
//! over loopback, servers in child processes; `wan`: knafeh, tonic with TLS
//! and tonic h2c over an emulated link (see `wan.rs`).
//!
//! ```text
//! knafeh-bench [--quick] [--only a,b,...] [--systems knafeh,tonic,tonic-tls,tonic-h3,floor]
//!              [--rounds N] [--duration 2s]
//! knafeh-bench wan [--quick] [--rtt 1,20,80] [--loss 0,0.5,2] [--systems ...]
//! knafeh-bench zero-rtt [--rtt 20ms] [--samples 10]
//! knafeh-bench scale [--quick] [--csv PATH] [--systems ...]
//! knafeh-bench load --connections N --in-flight M --duration 60s [--payload 64]
//! knafeh-bench codec [--duration 1s]
//! knafeh-bench compress [--duration 2s]
//! ```

mod child;
mod codec;
mod compress;
mod load;
mod resume;
mod scale;
mod scenarios;
mod stats;
mod systems;
mod wan;

use std::time::Duration;

use child::{Certs, ServerChild};
use scenarios::{Outcome, Settings, SCENARIOS};
use stats::{fmt_num, parse_duration};
use systems::System;

pub const USAGE: &str = "\
usage: knafeh-bench [--quick] [--only a,b,..] [--systems knafeh,tonic,tonic-tls,tonic-h3,floor] [--rounds N] [--duration 2s]
       knafeh-bench wan [--quick] [--systems knafeh,tonic-tls,tonic-h2c] [--rtt 1,20,80] [--loss 0,0.5,2]
                        [--scenarios inflight32,stream,big,connect] [--rounds N] [--duration 3s] [--seed N]
                        (needs root: emulated link between namespaces)
       knafeh-bench zero-rtt [--rtt 20ms] [--samples 10]   (connect + first call: fresh, resumed, 0-RTT; needs root)
       knafeh-bench scale [--quick] [--csv PATH] [--systems knafeh,tonic-tls,tonic-h2c] [--rounds N] [--duration 2s]
                        (calls/s and p99 as calls in flight and connections grow; server memory per idle connection)
       knafeh-bench load [--connections 8] [--in-flight 32] [--duration 60s] [--payload 64] [--timeout 10s]
       knafeh-bench codec [--duration 1s]   (cost of a byte field, plain Vec<u8> vs knafeh::as_bytes)
       knafeh-bench compress [--duration 2s]   (a compressible 1 MiB echo: none, gzip, zstd; MB/s, bytes on the wire)

scenarios: a sequential unary (1 conn), b 32 in flight (1 conn), c 256 in flight (8 conns),
           d server streaming of 100,000 64 B items from an iterator, l the same from a channel
           fed by a task in the handler, e unary 1 MiB each way,
           f connection set-up to first response, g 1,000 idle connections (server RSS),
           h client streaming of 100,000 64 B items from an iterator, i the same from a channel
           fed by a producer task, j bidirectional ping-pong on one call (round trips/s),
           k bidirectional echo of 100,000 64 B items from an iterator, read as they come";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // KNAFEH_BENCH_METRICS=1: knafeh's metrics go to a Prometheus recorder
    // (in the server children too), to measure what recording costs.
    if std::env::var_os("KNAFEH_BENCH_METRICS").is_some() {
        install_recorder();
    }
    // KNAFEH_BENCH_TRACING=1: a subscriber with knafeh's per-call spans and
    // events on (`knafeh=debug`), formatted and thrown away, to measure
    // what tracing costs (in the server children too).
    if std::env::var_os("KNAFEH_BENCH_TRACING").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("knafeh=debug"))
            .with_writer(std::io::sink)
            .init();
    }
    let result = match args.first().map(String::as_str) {
        // Hidden: the server child (see child.rs).
        Some("serve") => child::serve_main(&args[1..]),
        Some("load") => runtime().and_then(|rt| rt.block_on(load::main(&args[1..]))),
        Some("codec") => codec::main(&args[1..]),
        Some("compress") => runtime().and_then(|rt| rt.block_on(compress::main(&args[1..]))),
        Some("wan") => wan::main(&args[1..]),
        Some("zero-rtt") => resume::main(&args[1..]),
        Some("scale") => scale::main(&args[1..]),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => runtime().and_then(|rt| rt.block_on(bench(&args))),
    };
    if let Err(e) = result {
        eprintln!("knafeh-bench: {e}");
        std::process::exit(1);
    }
}

/// Installs a Prometheus recorder (no exporter), with its upkeep thread.
fn install_recorder() {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            });
        }
        Err(e) => eprintln!("knafeh-bench: no metrics recorder: {e}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

struct Options {
    quick: bool,
    only: Vec<char>,
    systems: Vec<System>,
    rounds: Option<usize>,
    duration: Option<Duration>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        only: SCENARIOS.iter().map(|s| s.id).collect(),
        systems: System::DEFAULT.to_vec(),
        rounds: None,
        duration: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a}: missing value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--only" => {
                o.only = val()?
                    .split(',')
                    .map(|s| {
                        let s = s.trim();
                        SCENARIOS
                            .iter()
                            .find(|sc| s.len() == 1 && s.starts_with(sc.id))
                            .map(|sc| sc.id)
                            .ok_or(format!("--only: unknown scenario {s:?} (a..l)"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--systems" => {
                o.systems = val()?
                    .split(',')
                    .map(|s| {
                        System::parse(s.trim()).ok_or(format!(
                            "--systems: unknown system {s:?} (knafeh, tonic, tonic-tls, tonic-h3, floor)"
                        ))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--rounds" => o.rounds = Some(val()?.parse().map_err(|e| format!("{a}: {e}"))?),
            "--duration" => o.duration = Some(parse_duration(val()?)?),
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    if o.systems.is_empty() || o.only.is_empty() {
        return Err("nothing to run".into());
    }
    Ok(o)
}

/// Prints cores, kernel and CPU.
pub fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let uname = std::process::Command::new("uname")
        .args(["-srm"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    println!("machine: {cores} cores ({cpu}), {uname}");
}

async fn bench(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let st = if o.quick {
        Settings {
            rounds: o.rounds.unwrap_or(3),
            idle_rounds: o.rounds.unwrap_or(1),
            duration: o.duration.unwrap_or(Duration::from_millis(500)),
            warmup: Duration::from_millis(200),
            stream_items: 100_000,
            setup_samples: 10,
            idle_conns: 1000,
        }
    } else {
        Settings {
            rounds: o.rounds.unwrap_or(7),
            idle_rounds: o.rounds.unwrap_or(3),
            duration: o.duration.unwrap_or(Duration::from_secs(2)),
            warmup: Duration::from_millis(500),
            stream_items: 100_000,
            setup_samples: 30,
            idle_conns: 1000,
        }
    };
    if o.only.contains(&'g') {
        scale::raise_fd_limit();
        check_fd_limit(st.idle_conns)?;
    }
    println!("knafeh-bench: 64 B echo over loopback; servers in child processes (tokio multi-thread), client in this process");
    print_machine();
    println!(
        "mode: {} ({} rounds of {:?} per scenario and system, g: {} rounds; systems alternate A B C, C B A, ...; figures are medians of the rounds, ±: half the min-max range)",
        if o.quick { "quick" } else { "full" },
        st.rounds,
        st.duration,
        st.idle_rounds,
    );
    let certs = Certs::generate(&["localhost", "127.0.0.1"])?;
    let mut servers = Vec::new();
    for &s in &o.systems {
        servers.push(ServerChild::spawn(s, &certs, 100)?);
    }
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for sc in SCENARIOS.iter().filter(|s| o.only.contains(&s.id)) {
        eprintln!("{}. {}", sc.id, sc.title);
        let outcomes = scenarios::run(sc, &servers, &certs, &st).await;
        rows.push((sc, outcomes));
    }
    drop(servers);
    println!();
    print_table(&o.systems, &rows);
    println!("(run took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn check_fd_limit(conns: usize) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        // Client sockets (one per connection) live in this process.
        Some(n) if n < conns + 200 => Err(format!(
            "scenario g opens {conns} connections but `ulimit -n` is {n}: raise it or leave g out (--only)"
        )),
        _ => Ok(()),
    }
}

fn print_table(systems: &[System], rows: &[(&scenarios::Scenario, Vec<Outcome>)]) {
    let mut header = vec![
        "scenario".to_owned(),
        "unit".to_owned(),
        "better".to_owned(),
    ];
    header.extend(systems.iter().map(|s| s.name().to_owned()));
    // One ratio column per peer, in the order the systems were given.
    let peers = System::peers(systems);
    header.extend(peers.iter().map(|s| format!("knafeh/{}", s.name())));
    let mut table = vec![header];
    for (sc, outcomes) in rows {
        for (i, m) in sc.metrics.iter().enumerate() {
            let title = if i == 0 {
                format!("{}. {}", sc.id, sc.title)
            } else {
                String::new()
            };
            let mut row = vec![
                title,
                m.unit.to_owned(),
                if m.higher_is_better {
                    "higher"
                } else {
                    "lower"
                }
                .to_owned(),
            ];
            let get = |s: System| outcomes.iter().find(|o| o.system == s);
            for &s in systems {
                row.push(match get(s) {
                    _ if !sc.applies_to(s) => "n/a".into(),
                    Some(o) if o.error.is_some() && o.rounds.is_empty() => "error".into(),
                    Some(o) => {
                        let spread = o.spread_pct(i);
                        if spread.is_finite() {
                            format!("{} ±{:.0}%", fmt_num(o.median(i)), spread)
                        } else {
                            fmt_num(o.median(i))
                        }
                    }
                    None => "-".into(),
                });
            }
            let ratio = |other: System| match (get(System::Knafeh), get(other)) {
                (Some(k), Some(x)) if sc.applies_to(other) => {
                    let r = k.median(i) / x.median(i);
                    if r.is_finite() {
                        format!("{r:.2}")
                    } else {
                        "-".into()
                    }
                }
                _ => "-".into(),
            };
            row.extend(peers.iter().map(|&p| ratio(p)));
            table.push(row);
        }
    }
    stats::print_aligned(&table, 3);
    for (sc, outcomes) in rows {
        for o in outcomes {
            if let Some(e) = &o.error {
                println!("{}. {}: {e}", sc.id, o.system.name());
            }
        }
    }
    println!("ratios are knafeh / other: above 1 is better for knafeh where higher is better, below 1 where lower is better");
}
