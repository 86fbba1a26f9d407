//! `knafeh-bench wan`: knafeh, tonic with TLS and tonic h2c over an
//! emulated link (the `link-emulator` crate): round-trip time × loss rate,
//! four scenarios per cell. Servers run as child processes in namespace B,
//! the clients on a thread in namespace A; every IP packet between them
//! crosses the user-space relay.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use link_emulator::{Direction, Impairments, Link, Side};
use tokio::task::JoinSet;

use crate::child::{Certs, ServerChild};
use crate::scenarios::{checked_echo, LARGE, SMALL};
use crate::stats::{fmt_num, median, parse_duration, percentile_sorted, print_aligned};
use crate::systems::knafeh::KnafehConn;
use crate::systems::tonic::TonicConn;
use crate::systems::{Conn, System, Target};

/// The systems of the wan scenario, in table order.
const SYSTEMS: [System; 3] = [System::Knafeh, System::TonicTls, System::Tonic];
/// Calls kept in flight on one connection (scenario inflight32).
const IN_FLIGHT: usize = 32;

/// What one cell measures, per system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    InFlight,
    Stream,
    Big,
    Connect,
}

/// One figure: its key in the machine line, its unit in the table, and
/// whether higher is better.
struct Figure {
    key: &'static str,
    unit: &'static str,
    higher_is_better: bool,
}

const fn fig(key: &'static str, unit: &'static str, higher_is_better: bool) -> Figure {
    Figure {
        key,
        unit,
        higher_is_better,
    }
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::InFlight,
        Scenario::Stream,
        Scenario::Big,
        Scenario::Connect,
    ];

    fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::InFlight => "inflight32",
            Scenario::Stream => "stream",
            Scenario::Big => "big",
            Scenario::Connect => "connect",
        }
    }

    fn figures(self) -> &'static [Figure] {
        const IN_FLIGHT_FIGURES: [Figure; 4] = [
            fig("calls_s", "calls/s", true),
            fig("p50_ms", "p50 ms", false),
            fig("p99_ms", "p99 ms", false),
            fig("p999_ms", "p99.9 ms", false),
        ];
        const STREAM_FIGURES: [Figure; 1] = [fig("items_s", "items/s", true)];
        const BIG_FIGURES: [Figure; 1] = [fig("mb_s", "MB/s", true)];
        const CONNECT_FIGURES: [Figure; 1] = [fig("ms", "median ms", false)];
        match self {
            Scenario::InFlight => &IN_FLIGHT_FIGURES,
            Scenario::Stream => &STREAM_FIGURES,
            Scenario::Big => &BIG_FIGURES,
            Scenario::Connect => &CONNECT_FIGURES,
        }
    }
}

/// How long and how often to measure.
#[derive(Clone, Debug)]
struct Settings {
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    connect_samples: usize,
    /// The scenarios to run, in table order.
    scenarios: Vec<Scenario>,
    /// Bound on one measurement (one scenario, one system, one round).
    limit: Duration,
}

struct Options {
    quick: bool,
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    rtts_ms: Vec<f64>,
    losses_pct: Vec<f64>,
    rounds: Option<usize>,
    duration: Option<Duration>,
    seed: u64,
}

/// One (round-trip time, loss rate) setting of the link.
#[derive(Clone, Copy, Debug)]
struct Cell {
    rtt_ms: f64,
    loss_pct: f64,
}

/// The rounds of one scenario and system in one cell.
struct Outcome {
    system: System,
    scenario: Scenario,
    /// One value per figure, per round.
    rounds: Vec<Vec<f64>>,
    error: Option<String>,
}

impl Outcome {
    fn median(&self, i: usize) -> f64 {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|r| r.get(i).copied())
            .collect();
        median(&v)
    }
}

fn parse_list(flag: &str, v: &str) -> Result<Vec<f64>, String> {
    v.split(',')
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(format!("{flag}: bad number {s:?}"))
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        systems: SYSTEMS.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
        rtts_ms: vec![1.0, 20.0, 80.0],
        losses_pct: vec![0.0, 0.5, 2.0],
        rounds: None,
        duration: None,
        seed: 12,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a}: missing value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--systems" => {
                o.systems = val()?
                    .split(',')
                    .map(|s| {
                        System::parse(s.trim())
                            .filter(|s| SYSTEMS.contains(s))
                            .ok_or(format!(
                                "--systems: unknown system {s:?} (knafeh, tonic-tls, tonic-h2c)"
                            ))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--scenarios" => {
                let mut wanted = Vec::new();
                for s in val()?.split(',') {
                    wanted.push(Scenario::parse(s.trim()).ok_or(format!(
                        "--scenarios: unknown scenario {s:?} (inflight32, stream, big, connect)"
                    ))?);
                }
                o.scenarios = Scenario::ALL
                    .into_iter()
                    .filter(|s| wanted.contains(s))
                    .collect();
            }
            "--rtt" => o.rtts_ms = parse_list(a, val()?)?,
            "--loss" => o.losses_pct = parse_list(a, val()?)?,
            "--rounds" => o.rounds = Some(val()?.parse().map_err(|e| format!("{a}: {e}"))?),
            "--duration" => o.duration = Some(parse_duration(val()?)?),
            "--seed" => o.seed = val()?.parse().map_err(|e| format!("{a}: {e}"))?,
            _ => return Err(format!("wan: unknown option {a}\n{}", crate::USAGE)),
        }
    }
    if o.systems.is_empty()
        || o.scenarios.is_empty()
        || o.rtts_ms.is_empty()
        || o.losses_pct.is_empty()
    {
        return Err("wan: nothing to run".into());
    }
    if let Some(l) = o.losses_pct.iter().find(|l| **l > 100.0) {
        return Err(format!("--loss: {l} is over 100 %"));
    }
    Ok(o)
}

fn settings(o: &Options) -> Settings {
    if o.quick {
        Settings {
            rounds: o.rounds.unwrap_or(1),
            duration: o.duration.unwrap_or(Duration::from_millis(800)),
            warmup: Duration::from_millis(200),
            connect_samples: 3,
            scenarios: o.scenarios.clone(),
            limit: Duration::from_secs(20),
        }
    } else {
        Settings {
            rounds: o.rounds.unwrap_or(3),
            duration: o.duration.unwrap_or(Duration::from_secs(3)),
            warmup: Duration::from_secs(1),
            connect_samples: 10,
            scenarios: o.scenarios.clone(),
            limit: Duration::from_secs(90),
        }
    }
}

/// `knafeh-bench wan [...]`: see the crate's README.
pub fn main(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let st = settings(&o);
    let link = Link::builder()
        .seed(o.seed)
        .start()
        .map_err(|e| format!("wan: the emulated link cannot be set up here: {e}"))?;
    let server_ip = link.addr(Side::B);
    let certs = Certs::generate(&["localhost", &server_ip.to_string()])?;
    // Declared after `link`: the servers stop before the namespaces go.
    let servers = spawn_servers(&link, &o.systems, &certs)?;
    print_header(&o, &st);
    let started = Instant::now();
    let mut rows = Vec::new();
    for &rtt_ms in &o.rtts_ms {
        for &loss_pct in &o.losses_pct {
            let cell = Cell { rtt_ms, loss_pct };
            set_cell(&link, cell)?;
            eprintln!("rtt {rtt_ms} ms, loss {loss_pct} %");
            let targets: Vec<(System, Target)> = servers
                .iter()
                .map(|s| (s.system, s.target.clone()))
                .collect();
            let st = st.clone();
            let before = link_counts(&link);
            let outcomes = link
                .run_in(Side::A, move || run_cell(&targets, &st))
                .map_err(|e| format!("wan: running the client in namespace A: {e}"))??;
            show_losses(before, link_counts(&link));
            rows.push((cell, outcomes));
        }
    }
    drop(servers);
    println!();
    print_table(&o.systems, &rows);
    println!();
    print_lines(&rows);
    println!("(run took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Starts a server child process for each of `systems` in namespace B of
/// `link`, on its address there.
pub fn spawn_servers(
    link: &Link,
    systems: &[System],
    certs: &Certs,
) -> Result<Vec<ServerChild>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let addr = SocketAddr::from((link.addr(Side::B), 0));
    let mut servers = Vec::new();
    for &system in systems {
        let mut command = link.command(Side::B, &exe);
        servers.push(ServerChild::spawn_at(
            &mut command,
            system,
            certs,
            100,
            Some(addr),
        )?);
    }
    Ok(servers)
}

fn print_header(o: &Options, st: &Settings) {
    println!(
        "knafeh-bench wan: servers in namespace B (child processes), clients in namespace A, \
         joined by link-emulator's relay (loss each way, RTT split evenly, no rate limit, seed {})",
        o.seed
    );
    crate::print_machine();
    println!(
        "mode: {} ({} round(s) per cell and system, {:?} per measurement, {} connects; \
         systems alternate; figures are medians of the rounds)",
        if o.quick { "quick" } else { "full" },
        st.rounds,
        st.duration,
        st.connect_samples,
    );
}

/// (packets in, packets lost at random) of each direction so far.
fn link_counts(link: &Link) -> [(u64, u64); 2] {
    [Direction::AToB, Direction::BToA].map(|d| {
        let s = link.stats(d);
        (s.packets_in, s.lost)
    })
}

/// Shows on stderr the loss each direction applied during a cell.
fn show_losses(before: [(u64, u64); 2], after: [(u64, u64); 2]) {
    let shown: Vec<String> = ["a->b", "b->a"]
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(name, (b, a))| {
            let (n, lost) = (a.0 - b.0, a.1 - b.1);
            let pct = if n == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / n as f64
            };
            format!("{name} {n} packets, {lost} lost ({pct:.2} %)")
        })
        .collect();
    eprintln!("  link: {}", shown.join("; "));
}

/// Sets both directions of the link to the cell's settings.
fn set_cell(link: &Link, cell: Cell) -> Result<(), String> {
    let each_way = Impairments {
        delay: Duration::from_secs_f64(cell.rtt_ms / 2e3),
        loss: cell.loss_pct / 100.0,
        ..Impairments::none()
    };
    for direction in [Direction::AToB, Direction::BToA] {
        link.set_impairments(direction, each_way.clone())
            .map_err(|e| format!("wan: setting the link: {e}"))?;
    }
    Ok(())
}

/// Runs one cell's rounds on a fresh runtime (on the namespace-A thread).
fn run_cell(targets: &[(System, Target)], st: &Settings) -> Result<Vec<Outcome>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    Ok(rt.block_on(cell_rounds(targets, st)))
}

async fn cell_rounds(targets: &[(System, Target)], st: &Settings) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = targets
        .iter()
        .flat_map(|(system, _)| {
            st.scenarios.iter().map(|&scenario| Outcome {
                system: *system,
                scenario,
                rounds: Vec::new(),
                error: None,
            })
        })
        .collect();
    for round in 0..st.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (system, target) = &targets[i];
            for (k, &scenario) in st.scenarios.iter().enumerate() {
                let out = &mut outcomes[i * st.scenarios.len() + k];
                if out.error.is_some() {
                    continue;
                }
                let measured = measure(*system, scenario, target, st);
                let result = tokio::time::timeout(st.limit, measured)
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {:?}", st.limit)));
                report(out, round, result);
            }
        }
    }
    outcomes
}

/// Records one measurement and shows it on stderr.
fn report(out: &mut Outcome, round: usize, result: Result<Vec<f64>, String>) {
    let label = format!(
        "  round {} {:<9} {:<10}",
        round + 1,
        out.system.wan_name(),
        out.scenario.name()
    );
    match result {
        Ok(values) => {
            let shown: Vec<String> = values
                .iter()
                .zip(out.scenario.figures())
                .map(|(v, f)| format!("{} {}", fmt_num(*v), f.unit))
                .collect();
            eprintln!("{label} {}", shown.join(", "));
            out.rounds.push(values);
        }
        Err(e) => {
            eprintln!("{label} failed: {e}");
            out.error = Some(e);
        }
    }
}

async fn measure(
    system: System,
    scenario: Scenario,
    target: &Target,
    st: &Settings,
) -> Result<Vec<f64>, String> {
    match system {
        System::Knafeh => measure_with::<KnafehConn>(scenario, target, st).await,
        System::Tonic | System::TonicTls => measure_with::<TonicConn>(scenario, target, st).await,
        System::Floor | System::TonicH3 => {
            Err(format!("{} is not part of the wan scenario", system.name()))
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn measure_with<C: Conn>(
    scenario: Scenario,
    target: &Target,
    st: &Settings,
) -> Result<Vec<f64>, String> {
    match scenario {
        Scenario::InFlight => {
            let c = C::connect(target).await?;
            in_flight(&c, st.warmup).await?;
            let (rate, lat) = in_flight(&c, st.duration).await?;
            Ok(vec![
                rate,
                ms(percentile_sorted(&lat, 50.0)),
                ms(percentile_sorted(&lat, 99.0)),
                ms(percentile_sorted(&lat, 99.9)),
            ])
        }
        Scenario::Stream => {
            let c = C::connect(target).await?;
            let warm = c.stream(100, SMALL as u32).await?;
            if warm != 100 {
                return Err(format!("warm-up stream: {warm} items of 100"));
            }
            let start = Instant::now();
            let n = c.stream_until(SMALL as u32, start + st.duration).await?;
            Ok(vec![n as f64 / start.elapsed().as_secs_f64()])
        }
        Scenario::Big => {
            let c = C::connect(target).await?;
            checked_echo(&c, LARGE).await?;
            let start = Instant::now();
            let mut calls = 0u32;
            while calls == 0 || start.elapsed() < st.duration {
                checked_echo(&c, LARGE).await?;
                calls += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(vec![f64::from(calls) * LARGE as f64 / secs / 1e6])
        }
        Scenario::Connect => {
            // One unmeasured dial first (server-side lazy set-up).
            checked_echo(&C::connect(target).await?, SMALL).await?;
            let mut samples = Vec::new();
            for _ in 0..st.connect_samples {
                let t = Instant::now();
                let c = C::connect(target).await?;
                checked_echo(&c, SMALL).await?;
                samples.push(ms(t.elapsed()));
            }
            Ok(vec![median(&samples)])
        }
    }
}

/// [`IN_FLIGHT`] callers on one connection for `time`: calls/s and the
/// sorted latencies of the calls that ended within it.
async fn in_flight<C: Conn>(c: &C, time: Duration) -> Result<(f64, Vec<Duration>), String> {
    let end = Instant::now() + time;
    let mut tasks = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let c = c.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                checked_echo(&c, SMALL).await?;
                let done = Instant::now();
                if done <= end {
                    lat.push(done - t);
                }
            }
            Ok::<_, String>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.map_err(|e| format!("caller task: {e}"))??);
    }
    all.sort();
    Ok((all.len() as f64 / time.as_secs_f64(), all))
}

/// The table: one row per cell, scenario and figure.
fn print_table(systems: &[System], rows: &[(Cell, Vec<Outcome>)]) {
    let ratio = systems.contains(&System::Knafeh) && systems.contains(&System::TonicTls);
    let mut header: Vec<String> = ["rtt ms", "loss %", "scenario", "unit", "better"]
        .map(String::from)
        .to_vec();
    header.extend(systems.iter().map(|s| s.wan_name().to_owned()));
    if ratio {
        header.push("knafeh/tonic-tls".into());
    }
    let mut table = vec![header];
    for (cell, outcomes) in rows {
        let measured = |s: &Scenario| outcomes.iter().any(|o| o.scenario == *s);
        for scenario in Scenario::ALL.into_iter().filter(measured) {
            for (i, f) in scenario.figures().iter().enumerate() {
                let better = if f.higher_is_better {
                    "higher"
                } else {
                    "lower"
                };
                let mut row = vec![
                    fmt_num(cell.rtt_ms),
                    fmt_num(cell.loss_pct),
                    scenario.name().to_owned(),
                    f.unit.to_owned(),
                    better.to_owned(),
                ];
                let get = |s: System| {
                    outcomes
                        .iter()
                        .find(|o| o.system == s && o.scenario == scenario)
                };
                for &s in systems {
                    row.push(match get(s) {
                        Some(o) if o.rounds.is_empty() => "error".into(),
                        Some(o) => fmt_num(o.median(i)),
                        None => "-".into(),
                    });
                }
                if ratio {
                    let r = match (get(System::Knafeh), get(System::TonicTls)) {
                        (Some(k), Some(t)) => k.median(i) / t.median(i),
                        _ => f64::NAN,
                    };
                    row.push(if r.is_finite() {
                        format!("{r:.2}")
                    } else {
                        "-".into()
                    });
                }
                table.push(row);
            }
        }
    }
    print_aligned(&table, 5);
    for (cell, outcomes) in rows {
        for o in outcomes.iter().filter(|o| o.error.is_some()) {
            println!(
                "rtt {} ms, loss {} %, {} {}: {}",
                cell.rtt_ms,
                cell.loss_pct,
                o.scenario.name(),
                o.system.wan_name(),
                o.error.as_deref().unwrap_or_default()
            );
        }
    }
}

/// One machine-readable line per cell and system and scenario:
/// `wan rtt_ms=20 loss_pct=2 scenario=inflight32 system=knafeh calls_s=…`.
/// A figure that could not be measured is `nan` (the table says why).
fn print_lines(rows: &[(Cell, Vec<Outcome>)]) {
    for (cell, outcomes) in rows {
        for o in outcomes {
            let figures: Vec<String> = o
                .scenario
                .figures()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let v = o.median(i);
                    if !v.is_finite() {
                        format!("{}=nan", f.key)
                    } else if f.key.ends_with("_ms") || f.key == "ms" || f.key == "mb_s" {
                        format!("{}={v:.3}", f.key)
                    } else {
                        format!("{}={v:.1}", f.key)
                    }
                })
                .collect();
            println!(
                "wan rtt_ms={} loss_pct={} scenario={} system={} {}",
                cell.rtt_ms,
                cell.loss_pct,
                o.scenario.name(),
                o.system.wan_name(),
                figures.join(" ")
            );
        }
    }
}
