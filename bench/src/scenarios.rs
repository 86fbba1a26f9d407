//! The scenarios (a–l), each run in rounds that alternate the systems.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::child::{Certs, ServerChild};
use crate::stats::{median, percentile_sorted};
use crate::systems::floor::FloorConn;
use crate::systems::knafeh::KnafehConn;
use crate::systems::tonic::TonicConn;
use crate::systems::tonic_h3::H3Transport;
use crate::systems::{Bidi, Conn, Producer, System, Target};

/// Payload of the small-message scenarios.
pub const SMALL: usize = 64;
/// Payload of scenario e.
pub const LARGE: usize = 1 << 20;

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rounds: usize,
    /// Rounds of scenario g (each starts a fresh server per system).
    pub idle_rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub stream_items: u32,
    pub setup_samples: usize,
    pub idle_conns: usize,
}

/// One figure a scenario produces.
pub struct Metric {
    pub unit: &'static str,
    pub higher_is_better: bool,
}

pub struct Scenario {
    pub id: char,
    pub title: &'static str,
    pub metrics: &'static [Metric],
    /// Systems that have nothing to measure here (shown as n/a).
    pub na: &'static [System],
}

impl Scenario {
    pub fn applies_to(&self, system: System) -> bool {
        !self.na.contains(&system)
    }
}

const CALLS: Metric = Metric {
    unit: "calls/s",
    higher_is_better: true,
};

const ITEMS: Metric = Metric {
    unit: "items/s",
    higher_is_better: true,
};

pub const SCENARIOS: [Scenario; 12] = [
    Scenario {
        id: 'a',
        title: "sequential unary, 1 conn",
        metrics: &[
            CALLS,
            Metric {
                unit: "p50 µs",
                higher_is_better: false,
            },
            Metric {
                unit: "p99 µs",
                higher_is_better: false,
            },
        ],
        na: &[],
    },
    Scenario {
        id: 'b',
        title: "32 in flight, 1 conn",
        metrics: &[CALLS],
        na: &[],
    },
    Scenario {
        id: 'c',
        title: "256 in flight, 8 conns",
        metrics: &[CALLS],
        na: &[],
    },
    Scenario {
        id: 'd',
        title: "stream 100k x 64 B, iterator",
        metrics: &[ITEMS],
        na: &[],
    },
    Scenario {
        id: 'l',
        title: "stream 100k x 64 B, channel",
        metrics: &[ITEMS],
        // A bare HTTP/3 body has no channel-fed producer API.
        na: &[System::Floor],
    },
    Scenario {
        id: 'e',
        title: "unary 1 MiB -> 1 MiB",
        metrics: &[Metric {
            unit: "MB/s",
            higher_is_better: true,
        }],
        na: &[],
    },
    Scenario {
        id: 'f',
        title: "connect + first call",
        metrics: &[Metric {
            unit: "median ms",
            higher_is_better: false,
        }],
        na: &[],
    },
    Scenario {
        id: 'g',
        title: "1,000 idle conns",
        metrics: &[Metric {
            unit: "server KiB/conn",
            higher_is_better: false,
        }],
        na: &[],
    },
    Scenario {
        id: 'h',
        title: "client stream 100k x 64 B, iterator",
        metrics: &[ITEMS],
        na: &[],
    },
    Scenario {
        id: 'i',
        title: "client stream 100k x 64 B, channel",
        metrics: &[ITEMS],
        // A bare HTTP/3 body has no channel-fed producer API.
        na: &[System::Floor],
    },
    Scenario {
        id: 'j',
        title: "bidi ping-pong, 1 call",
        metrics: &[
            Metric {
                unit: "round trips/s",
                higher_is_better: true,
            },
            Metric {
                unit: "p50 µs",
                higher_is_better: false,
            },
            Metric {
                unit: "p99 µs",
                higher_is_better: false,
            },
        ],
        na: &[],
    },
    Scenario {
        id: 'k',
        title: "bidi echo 100k x 64 B, iterator",
        metrics: &[ITEMS],
        na: &[],
    },
];

/// Per-system outcome of a scenario: one `Vec` of metric values per round.
pub struct Outcome {
    pub system: System,
    pub rounds: Vec<Vec<f64>>,
    pub error: Option<String>,
}

impl Outcome {
    /// Median over the rounds of metric `i`.
    pub fn median(&self, i: usize) -> f64 {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|r| r.get(i).copied())
            .collect();
        median(&v)
    }

    /// (max - min) / 2 / median of metric `i`, in percent.
    pub fn spread_pct(&self, i: usize) -> f64 {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|r| r.get(i).copied())
            .collect();
        if v.len() < 2 {
            return f64::NAN;
        }
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (max - min) / 2.0 / self.median(i) * 100.0
    }
}

/// Runs one scenario: rounds in the order A B C, C B A, A B C, ...
pub async fn run(
    sc: &Scenario,
    servers: &[ServerChild],
    certs: &Certs,
    st: &Settings,
) -> Vec<Outcome> {
    let systems: Vec<System> = servers.iter().map(|s| s.system).collect();
    let mut outcomes: Vec<Outcome> = systems
        .iter()
        .map(|&system| Outcome {
            system,
            rounds: Vec::new(),
            error: None,
        })
        .collect();
    let rounds = if sc.id == 'g' {
        st.idle_rounds
    } else {
        st.rounds
    };
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..systems.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let out = &mut outcomes[i];
            if out.error.is_some() || !sc.applies_to(out.system) {
                continue;
            }
            let limit = st.duration * 4 + Duration::from_secs(120);
            let result = tokio::time::timeout(limit, measure(sc.id, &servers[i], certs, st)).await;
            let result = result.unwrap_or_else(|_| Err(format!("timed out after {limit:?}")));
            match result {
                Ok(values) => {
                    let shown: Vec<String> = values
                        .iter()
                        .zip(sc.metrics)
                        .map(|(v, m)| format!("{} {}", crate::stats::fmt_num(*v), m.unit))
                        .collect();
                    eprintln!(
                        "  {}. round {} {:<6} {}",
                        sc.id,
                        round + 1,
                        out.system.name(),
                        shown.join(", ")
                    );
                    out.rounds.push(values);
                }
                Err(e) => {
                    eprintln!("  {}. {} failed: {e}", sc.id, out.system.name());
                    out.error = Some(e);
                }
            }
        }
    }
    outcomes
}

async fn measure(
    id: char,
    server: &ServerChild,
    certs: &Certs,
    st: &Settings,
) -> Result<Vec<f64>, String> {
    if id == 'g' {
        return idle(server.system, certs, st.idle_conns).await;
    }
    let target = &server.target;
    match server.system {
        System::Knafeh => measure_with::<KnafehConn>(id, target, st).await,
        System::Tonic | System::TonicTls => measure_with::<TonicConn>(id, target, st).await,
        System::TonicH3 => measure_with::<TonicConn<H3Transport>>(id, target, st).await,
        System::Floor => measure_with::<FloorConn>(id, target, st).await,
    }
}

pub(crate) async fn checked_echo<C: Conn>(c: &C, size: usize) -> Result<(), String> {
    let got = c.echo(vec![0xa5; size]).await?;
    if got != size {
        return Err(format!("echo returned {got} bytes, sent {size}"));
    }
    Ok(())
}

async fn checked_upload<C: Conn>(c: &C, count: u32, producer: Producer) -> Result<(), String> {
    let got = c.upload(count, SMALL, producer).await?;
    if got != u64::from(count) {
        return Err(format!("upload: the server counted {got} items of {count}"));
    }
    Ok(())
}

async fn checked_round_trip<B: Bidi>(call: &mut B) -> Result<(), String> {
    let got = call.round_trip(vec![0xa5; SMALL]).await?;
    if got != SMALL {
        return Err(format!("round trip returned {got} bytes, sent {SMALL}"));
    }
    Ok(())
}

async fn checked_bidi_stream<C: Conn>(c: &C, count: u32) -> Result<(), String> {
    let got = c.bidi_stream(count, SMALL).await?;
    if got != u64::from(count) {
        return Err(format!("bidi stream: {got} echoes of {count}"));
    }
    Ok(())
}

async fn warm_up<C: Conn>(c: &C, size: usize, time: Duration) -> Result<(), String> {
    let end = Instant::now() + time;
    checked_echo(c, size).await?;
    while Instant::now() < end {
        checked_echo(c, size).await?;
    }
    Ok(())
}

/// Sequential calls for `time`: (calls/s, sorted latencies).
async fn sequential<C: Conn>(
    c: &C,
    size: usize,
    time: Duration,
    min_calls: usize,
) -> Result<(f64, Vec<Duration>), String> {
    let mut lat = Vec::new();
    let start = Instant::now();
    let end = start + time;
    while Instant::now() < end || lat.len() < min_calls {
        let t = Instant::now();
        checked_echo(c, size).await?;
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Ok((lat.len() as f64 / secs, lat))
}

/// `per_conn` callers on each connection, for `time`: calls/s.
async fn concurrent<C: Conn>(conns: &[C], per_conn: usize, time: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let end = start + time;
    let mut tasks = JoinSet::new();
    for c in conns {
        for _ in 0..per_conn {
            let c = c.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    checked_echo(&c, SMALL).await?;
                    if Instant::now() <= end {
                        n += 1;
                    }
                }
                Ok::<u64, String>(n)
            });
        }
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.map_err(|e| format!("caller task: {e}"))??;
    }
    Ok(total as f64 / time.as_secs_f64())
}

async fn measure_with<C: Conn>(
    id: char,
    target: &Target,
    st: &Settings,
) -> Result<Vec<f64>, String> {
    match id {
        'a' => {
            let c = C::connect(target).await?;
            warm_up(&c, SMALL, st.warmup).await?;
            let (rate, lat) = sequential(&c, SMALL, st.duration, 1).await?;
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            Ok(vec![
                rate,
                us(percentile_sorted(&lat, 50.0)),
                us(percentile_sorted(&lat, 99.0)),
            ])
        }
        'b' => {
            let c = C::connect(target).await?;
            warm_up(&c, SMALL, st.warmup).await?;
            Ok(vec![concurrent(&[c], 32, st.duration).await?])
        }
        'c' => {
            let mut conns = Vec::new();
            for _ in 0..8 {
                let c = C::connect(target).await?;
                warm_up(&c, SMALL, st.warmup / 8).await?;
                conns.push(c);
            }
            Ok(vec![concurrent(&conns, 32, st.duration).await?])
        }
        'd' | 'l' => {
            let c = C::connect(target).await?;
            let fed = id == 'l';
            let run = |count| {
                let c = c.clone();
                async move {
                    if fed {
                        c.stream_fed(count, SMALL as u32).await
                    } else {
                        c.stream(count, SMALL as u32).await
                    }
                }
            };
            let warm = run(1000).await?;
            if warm != 1000 {
                return Err(format!("warm-up stream: {warm} items of 1000"));
            }
            let start = Instant::now();
            let n = run(st.stream_items).await?;
            let secs = start.elapsed().as_secs_f64();
            if n != u64::from(st.stream_items) {
                return Err(format!("stream: {n} items of {}", st.stream_items));
            }
            Ok(vec![n as f64 / secs])
        }
        'e' => {
            let c = C::connect(target).await?;
            warm_up(&c, LARGE, Duration::ZERO).await?;
            let (rate, _) = sequential(&c, LARGE, st.duration, 3).await?;
            Ok(vec![rate * LARGE as f64 / 1e6])
        }
        'f' => {
            // One unmeasured dial first (server-side lazy set-up).
            checked_echo(&C::connect(target).await?, SMALL).await?;
            let mut ms = Vec::new();
            for _ in 0..st.setup_samples {
                let t = Instant::now();
                let c = C::connect(target).await?;
                checked_echo(&c, SMALL).await?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                drop(c);
            }
            Ok(vec![median(&ms)])
        }
        'h' | 'i' => {
            let producer = if id == 'h' {
                Producer::Iter
            } else {
                Producer::Channel
            };
            let c = C::connect(target).await?;
            checked_upload(&c, 1000, producer).await?;
            let start = Instant::now();
            checked_upload(&c, st.stream_items, producer).await?;
            Ok(vec![
                f64::from(st.stream_items) / start.elapsed().as_secs_f64(),
            ])
        }
        'j' => {
            let c = C::connect(target).await?;
            let mut call = c.open_bidi().await?;
            let end = Instant::now() + st.warmup;
            checked_round_trip(&mut call).await?;
            while Instant::now() < end {
                checked_round_trip(&mut call).await?;
            }
            let mut lat = Vec::new();
            let start = Instant::now();
            let end = start + st.duration;
            while Instant::now() < end {
                let t = Instant::now();
                checked_round_trip(&mut call).await?;
                lat.push(t.elapsed());
            }
            let secs = start.elapsed().as_secs_f64();
            call.finish().await?;
            lat.sort();
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            Ok(vec![
                lat.len() as f64 / secs,
                us(percentile_sorted(&lat, 50.0)),
                us(percentile_sorted(&lat, 99.0)),
            ])
        }
        'k' => {
            let c = C::connect(target).await?;
            checked_bidi_stream(&c, 1000).await?;
            let start = Instant::now();
            checked_bidi_stream(&c, st.stream_items).await?;
            Ok(vec![
                f64::from(st.stream_items) / start.elapsed().as_secs_f64(),
            ])
        }
        _ => Err(format!("unknown scenario {id}")),
    }
}

/// Scenario g: a fresh server, `n` connections that made one call each
/// and then idle; the server's RSS growth per connection.
async fn idle(system: System, certs: &Certs, n: usize) -> Result<Vec<f64>, String> {
    Ok(vec![idle_kib_per_conn(system, certs, n).await?])
}

/// A fresh server of `system`, `n` connections that made one call each
/// and then idle for a second: the server's RSS growth per connection, in
/// KiB (scenario g; `scale`'s idle axis).
pub(crate) async fn idle_kib_per_conn(
    system: System,
    certs: &Certs,
    n: usize,
) -> Result<f64, String> {
    let server = ServerChild::spawn(system, certs, 100)?;
    match system {
        System::Knafeh => idle_with::<KnafehConn>(&server, n).await,
        System::Tonic | System::TonicTls => idle_with::<TonicConn>(&server, n).await,
        System::TonicH3 => idle_with::<TonicConn<H3Transport>>(&server, n).await,
        System::Floor => idle_with::<FloorConn>(&server, n).await,
    }
}

/// `n` connections to `target`, 16 dialled at a time, each after one
/// checked 64 B echo.
pub(crate) async fn dial_many<C: Conn>(target: &Target, n: usize) -> Result<Vec<C>, String> {
    let dials = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let target = target.clone();
        let dials = dials.clone();
        tasks.spawn(async move {
            let _permit = dials.acquire().await.map_err(|e| e.to_string())?;
            let c = C::connect(&target).await?;
            checked_echo(&c, SMALL).await?;
            Ok::<C, String>(c)
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        conns.push(r.map_err(|e| format!("dial task: {e}"))??);
    }
    Ok(conns)
}

async fn idle_with<C: Conn>(server: &ServerChild, n: usize) -> Result<f64, String> {
    let target = server.target.clone();
    // Warm the server up (lazy initialisation) and let it settle.
    checked_echo(&C::connect(&target).await?, SMALL).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().ok_or("cannot read the server's RSS")?;
    let conns = dial_many::<C>(&target, n).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().ok_or("cannot read the server's RSS")?;
    drop(conns);
    Ok((after as f64 - before as f64) / n as f64)
}
