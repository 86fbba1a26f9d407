//! `knafeh-bench scale`: how cost grows with load, on three axes —
//! calls in flight on one connection, connections (each with a few calls
//! in flight), and idle connections (the server's memory per
//! connection, measured as scenario g does). Prints a table, one
//! machine-readable line per point, and optionally a CSV for
//! `bench/plot_scale.py`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::child::{Certs, ServerChild};
use crate::scenarios::{checked_echo, dial_many, idle_kib_per_conn, SMALL};
use crate::stats::{fmt_num, median, parse_duration, percentile_sorted, print_aligned};
use crate::systems::knafeh::KnafehConn;
use crate::systems::tonic::TonicConn;
use crate::systems::tonic_h3::H3Transport;
use crate::systems::{Conn, System, Target};

/// Calls in flight on one connection (axis `inflight`).
const INFLIGHT: [usize; 6] = [1, 4, 16, 64, 256, 1024];
/// Connections (axis `conns`), each with [`CALLS_PER_CONN`] in flight.
const CONNS: [usize; 4] = [1, 10, 100, 1000];
/// Calls in flight on each connection of axis `conns`.
const CALLS_PER_CONN: usize = 4;
/// Idle connections (axis `idle`).
const IDLE: [usize; 3] = [100, 1000, 10_000];
/// Concurrent calls a server allows per connection (all systems): above
/// the largest `inflight` point, so no call waits for a stream credit.
const MAX_STREAMS: u64 = 2048;
/// File descriptors kept free besides one per connection.
const FD_MARGIN: u64 = 256;

const DEFAULT_SYSTEMS: [System; 3] = [System::Knafeh, System::TonicTls, System::Tonic];

/// One axis of the scale run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    Inflight,
    Conns,
    Idle,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::Inflight => "inflight",
            Axis::Conns => "conns",
            Axis::Idle => "idle",
        }
    }

    fn points(self) -> &'static [usize] {
        match self {
            Axis::Inflight => &INFLIGHT,
            Axis::Conns => &CONNS,
            Axis::Idle => &IDLE,
        }
    }
}

struct Options {
    quick: bool,
    systems: Vec<System>,
    csv: Option<PathBuf>,
    rounds: Option<usize>,
    duration: Option<Duration>,
}

/// What one point measures, per round.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    calls_s: f64,
    p99_ms: f64,
    kib_per_conn: f64,
}

/// Every round of one (axis, n, system).
struct Point {
    axis: Axis,
    n: usize,
    system: System,
    samples: Vec<Sample>,
    error: Option<String>,
}

impl Point {
    fn median_of(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        let v: Vec<f64> = self.samples.iter().map(f).collect();
        median(&v)
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        systems: DEFAULT_SYSTEMS.to_vec(),
        csv: None,
        rounds: None,
        duration: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a}: missing value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--csv" => o.csv = Some(PathBuf::from(val()?)),
            "--rounds" => o.rounds = Some(val()?.parse().map_err(|e| format!("{a}: {e}"))?),
            "--duration" => o.duration = Some(parse_duration(val()?)?),
            "--systems" => {
                o.systems = val()?
                    .split(',')
                    .map(|s| {
                        System::parse(s.trim())
                            .filter(|s| *s != System::Floor)
                            .ok_or(format!(
                        "--systems: unknown system {s:?} (knafeh, tonic-tls, tonic-h2c, tonic-h3)"
                    ))
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("scale: unknown option {a}\n{}", crate::USAGE)),
        }
    }
    if o.systems.is_empty() {
        return Err("scale: no systems".into());
    }
    Ok(o)
}

/// Raises the soft limit of open files to the hard limit (the server
/// children inherit it); returns the soft limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// The `scale` subcommand.
pub fn main(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let fd_limit = raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(run(o, fd_limit))
}

/// How long and how often each point is measured.
struct Timing {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
}

async fn run(o: Options, fd_limit: u64) -> Result<(), String> {
    let t = Timing {
        rounds: o.rounds.unwrap_or(if o.quick { 1 } else { 3 }),
        warmup: Duration::from_millis(if o.quick { 150 } else { 500 }),
        duration: o.duration.unwrap_or(if o.quick {
            Duration::from_millis(400)
        } else {
            Duration::from_secs(2)
        }),
    };
    println!("knafeh-bench scale: 64 B unary echo over loopback; servers in child processes, clients in this process");
    crate::print_machine();
    println!(
        "mode: {} ({} round(s) of {:?} after {:?} of warm-up per point, systems alternating; idle: one fresh server per point, 1 round); open files: {fd_limit}",
        if o.quick { "quick" } else { "full" },
        t.rounds,
        t.duration,
        t.warmup,
    );
    let started = Instant::now();
    let certs = Certs::generate(&["localhost", "127.0.0.1"])?;
    let mut points = Vec::new();
    // Idle first, while this process holds few sockets: dropped QUIC
    // client connections were seen to keep their sockets open for a while.
    for &n in Axis::Idle.points() {
        points.extend(idle_point(n, &o.systems, &certs, fd_limit).await);
    }
    {
        let mut servers = Vec::new();
        for &s in &o.systems {
            servers.push(ServerChild::spawn(s, &certs, MAX_STREAMS)?);
        }
        for axis in [Axis::Inflight, Axis::Conns] {
            for &n in axis.points() {
                points.extend(load_point(axis, n, &servers, &t, fd_limit).await);
            }
        }
    }
    println!();
    print_tables(&o.systems, &points);
    println!();
    for p in &points {
        println!("{}", machine_line(p));
    }
    if let Some(path) = &o.csv {
        write_csv(path, &points)?;
        println!("csv: {}", path.display());
    }
    println!("(run took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Connections a point of `axis` opens at `n`.
fn conns_of(axis: Axis, n: usize) -> usize {
    match axis {
        Axis::Inflight => 1,
        Axis::Conns | Axis::Idle => n,
    }
}

/// One point of the `inflight` or `conns` axis, every system, in rounds
/// that alternate the systems.
async fn load_point(
    axis: Axis,
    n: usize,
    servers: &[ServerChild],
    t: &Timing,
    fd_limit: u64,
) -> Vec<Point> {
    let mut points: Vec<Point> = servers
        .iter()
        .map(|s| Point {
            axis,
            n,
            system: s.system,
            samples: Vec::new(),
            error: None,
        })
        .collect();
    let need = conns_of(axis, n) as u64 + FD_MARGIN;
    for round in 0..t.rounds {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let p = &mut points[i];
            if p.error.is_some() {
                continue;
            }
            let result = if need > fd_limit {
                Err(format!("needs {need} open files, the limit is {fd_limit}"))
            } else {
                let limit = t.warmup + t.duration + Duration::from_secs(120);
                let measured = measure_load(axis, n, &servers[i], t);
                tokio::time::timeout(limit, measured)
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {limit:?}")))
            };
            record(p, result);
        }
    }
    points
}

/// Adds a round's result to `p`, and says it on stderr.
fn record(p: &mut Point, result: Result<Sample, String>) {
    match result {
        Ok(s) => {
            eprintln!(
                "  scale {}={} {:<9} {}",
                p.axis.name(),
                p.n,
                p.system.name(),
                sample_text(p.axis, &s)
            );
            p.samples.push(s);
        }
        Err(e) => {
            eprintln!(
                "  scale {}={} {} failed: {e}",
                p.axis.name(),
                p.n,
                p.system.name()
            );
            p.error = Some(e);
        }
    }
}

fn sample_text(axis: Axis, s: &Sample) -> String {
    match axis {
        Axis::Idle => format!("{} KiB/conn", fmt_num(s.kib_per_conn)),
        _ => format!(
            "{} calls/s, p99 {} ms",
            fmt_num(s.calls_s),
            fmt_num(s.p99_ms)
        ),
    }
}

async fn measure_load(
    axis: Axis,
    n: usize,
    server: &ServerChild,
    t: &Timing,
) -> Result<Sample, String> {
    let target = &server.target;
    match server.system {
        System::Knafeh => load_with::<KnafehConn>(axis, n, target, t).await,
        System::Tonic | System::TonicTls => load_with::<TonicConn>(axis, n, target, t).await,
        System::TonicH3 => load_with::<TonicConn<H3Transport>>(axis, n, target, t).await,
        System::Floor => Err("the floor is not part of scale".into()),
    }
}

async fn load_with<C: Conn>(
    axis: Axis,
    n: usize,
    target: &Target,
    t: &Timing,
) -> Result<Sample, String> {
    let (conns, per_conn) = match axis {
        Axis::Inflight => (dial_many::<C>(target, 1).await?, n),
        _ => (dial_many::<C>(target, n).await?, CALLS_PER_CONN),
    };
    let (calls_s, p99) = callers(&conns, per_conn, t.warmup, t.duration).await?;
    Ok(Sample {
        calls_s,
        p99_ms: p99.as_secs_f64() * 1e3,
        kib_per_conn: f64::NAN,
    })
}

/// `per_conn` callers on each connection issue echoes back to back for
/// `warmup + time`; the calls that end within the last `time` count
/// (whenever they started): (calls/s, p99 latency of those calls).
async fn callers<C: Conn>(
    conns: &[C],
    per_conn: usize,
    warmup: Duration,
    time: Duration,
) -> Result<(f64, Duration), String> {
    let from = Instant::now() + warmup;
    let end = from + time;
    let mut tasks = JoinSet::new();
    for c in conns {
        for _ in 0..per_conn {
            let c = c.clone();
            tasks.spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let s = Instant::now();
                    checked_echo(&c, SMALL).await?;
                    let e = Instant::now();
                    if e >= from && e <= end {
                        lat.push(e - s);
                    }
                }
                Ok::<_, String>(lat)
            });
        }
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.map_err(|e| format!("caller task: {e}"))??);
    }
    all.sort();
    let rate = all.len() as f64 / time.as_secs_f64();
    Ok((rate, percentile_sorted(&all, 99.0)))
}

/// One point of the idle axis: a fresh server per system.
async fn idle_point(n: usize, systems: &[System], certs: &Certs, fd_limit: u64) -> Vec<Point> {
    let mut points = Vec::new();
    // Clients (and the tonic servers) hold one descriptor per connection.
    let need = n as u64 + FD_MARGIN;
    // knafeh last: its dropped connections' sockets linger (see `run`).
    let mut order = systems.to_vec();
    order.sort_by_key(|&s| s == System::Knafeh);
    for system in order {
        let mut p = Point {
            axis: Axis::Idle,
            n,
            system,
            samples: Vec::new(),
            error: None,
        };
        let result = if need > fd_limit {
            Err(format!("needs {need} open files, the limit is {fd_limit}"))
        } else {
            wait_for_free_fds(need, fd_limit).await;
            let limit = Duration::from_secs(300);
            tokio::time::timeout(limit, idle_kib_per_conn(system, certs, n))
                .await
                .unwrap_or_else(|_| Err(format!("timed out after {limit:?}")))
                .map(|kib| Sample {
                    calls_s: f64::NAN,
                    p99_ms: f64::NAN,
                    kib_per_conn: kib,
                })
        };
        record(&mut p, result);
        points.push(p);
    }
    points
}

/// Open files of this process (`/proc/self/fd`).
fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// Waits (at most 90 s) until `need` more files can be opened: the
/// sockets of the previous point's connections close asynchronously
/// (QUIC connections after their close handshake or idle timeout).
async fn wait_for_free_fds(need: u64, fd_limit: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut said = false;
    while let Some(open) = open_fds() {
        if open + need <= fd_limit || Instant::now() >= deadline {
            return;
        }
        if !said {
            eprintln!("  scale: {open} files still open, waiting for {need} free");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A figure with `prec` decimals, `nan` when it was not measured.
fn fixed(x: f64, prec: usize) -> String {
    if x.is_finite() {
        format!("{x:.prec$}")
    } else {
        "nan".to_owned()
    }
}

/// `scale axis=inflight n=64 system=knafeh calls_s=... p99_ms=...` or
/// `scale axis=idle n=1000 system=knafeh kib_per_conn=...` (`nan`: not
/// measured).
fn machine_line(p: &Point) -> String {
    let head = format!(
        "scale axis={} n={} system={}",
        p.axis.name(),
        p.n,
        p.system.name()
    );
    match p.axis {
        Axis::Idle => format!(
            "{head} kib_per_conn={}",
            fixed(p.median_of(|s| s.kib_per_conn), 1)
        ),
        _ => format!(
            "{head} calls_s={} p99_ms={}",
            fixed(p.median_of(|s| s.calls_s), 1),
            fixed(p.median_of(|s| s.p99_ms), 3)
        ),
    }
}

fn write_csv(path: &std::path::Path, points: &[Point]) -> Result<(), String> {
    let mut out = String::from("axis,n,system,calls_s,p99_ms,kib_per_conn\n");
    for p in points {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.axis.name(),
            p.n,
            p.system.name(),
            fixed(p.median_of(|s| s.calls_s), 1),
            fixed(p.median_of(|s| s.p99_ms), 3),
            fixed(p.median_of(|s| s.kib_per_conn), 2),
        ));
    }
    std::fs::write(path, out).map_err(|e| format!("--csv {}: {e}", path.display()))
}

/// One table per axis: a row per point, a column per system, then
/// knafeh's ratio to each peer (calls/s, or KiB per connection).
fn print_tables(systems: &[System], points: &[Point]) {
    let peers = System::peers(systems);
    for axis in [Axis::Inflight, Axis::Conns, Axis::Idle] {
        let (title, unit) = match axis {
            Axis::Inflight => ("calls in flight on one connection", "calls/s, p99 ms"),
            Axis::Conns => ("connections, 4 calls in flight each", "calls/s, p99 ms"),
            Axis::Idle => ("idle connections", "server KiB per connection"),
        };
        println!("{title} ({unit}; ratios: knafeh / peer, first figure):");
        let mut header = vec!["n".to_owned()];
        header.extend(systems.iter().map(|s| s.name().to_owned()));
        header.extend(peers.iter().map(|s| format!("knafeh/{}", s.name())));
        let mut table = vec![header];
        for &n in axis.points() {
            table.push(table_row(axis, n, systems, &peers, points));
        }
        print_aligned(&table, 1);
        println!();
    }
    for p in points.iter().filter(|p| p.error.is_some()) {
        let e = p.error.as_deref().unwrap_or_default();
        println!("{} n={} {}: {e}", p.axis.name(), p.n, p.system.name());
    }
}

fn table_row(
    axis: Axis,
    n: usize,
    systems: &[System],
    peers: &[System],
    points: &[Point],
) -> Vec<String> {
    let get = |s: System| {
        points
            .iter()
            .find(|p| p.axis == axis && p.n == n && p.system == s)
    };
    let first = |p: &Point| match axis {
        Axis::Idle => p.median_of(|s| s.kib_per_conn),
        _ => p.median_of(|s| s.calls_s),
    };
    // fmt_num groups thousands; below 100 it would add decimals.
    let n_text = if n >= 100 {
        fmt_num(n as f64)
    } else {
        n.to_string()
    };
    let mut row = vec![n_text];
    for &s in systems {
        row.push(match get(s) {
            Some(p) if p.samples.is_empty() => "error".into(),
            Some(p) if axis == Axis::Idle => fmt_num(first(p)),
            Some(p) => format!(
                "{} / {}",
                fmt_num(first(p)),
                fmt_num(p.median_of(|s| s.p99_ms))
            ),
            None => "-".into(),
        });
    }
    for &peer in peers {
        let r = match (get(System::Knafeh), get(peer)) {
            (Some(k), Some(x)) => first(k) / first(x),
            _ => f64::NAN,
        };
        row.push(if r.is_finite() {
            format!("{r:.2}")
        } else {
            "-".into()
        });
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(axis: Axis, n: usize, system: System, sample: Sample) -> Point {
        Point {
            axis,
            n,
            system,
            samples: vec![sample],
            error: None,
        }
    }

    fn load(calls_s: f64, p99_ms: f64) -> Sample {
        Sample {
            calls_s,
            p99_ms,
            kib_per_conn: f64::NAN,
        }
    }

    #[test]
    fn machine_lines_name_the_axis_point_system_and_figures() {
        let p = point(Axis::Inflight, 64, System::Knafeh, load(1234.5, 2.0));
        assert_eq!(
            machine_line(&p),
            "scale axis=inflight n=64 system=knafeh calls_s=1234.5 p99_ms=2.000"
        );
        let idle = Sample {
            kib_per_conn: 21.25,
            ..load(f64::NAN, f64::NAN)
        };
        let p = point(Axis::Idle, 1000, System::TonicTls, idle);
        assert_eq!(
            machine_line(&p),
            "scale axis=idle n=1000 system=tonic-tls kib_per_conn=21.2"
        );
        let failed = Point {
            samples: Vec::new(),
            ..point(Axis::Inflight, 4, System::Tonic, load(1.0, 1.0))
        };
        assert_eq!(
            machine_line(&failed),
            "scale axis=inflight n=4 system=tonic-h2c calls_s=nan p99_ms=nan"
        );
    }

    #[test]
    fn rows_show_medians_and_knafeh_over_each_peer() {
        let mut k = point(Axis::Conns, 10, System::Knafeh, load(3000.0, 1.0));
        k.samples.push(load(1000.0, 9.0));
        k.samples.push(load(2000.0, 5.0));
        let t = point(Axis::Conns, 10, System::TonicTls, load(1000.0, 2.0));
        let systems = [System::Knafeh, System::TonicTls, System::Tonic];
        let peers = [System::TonicTls, System::Tonic];
        let row = table_row(Axis::Conns, 10, &systems, &peers, &[k, t]);
        assert_eq!(
            row,
            ["10", "2,000 / 5.00", "1,000 / 2.00", "-", "2.00", "-"]
        );
    }

    #[test]
    fn options_reject_the_floor_and_unknown_flags() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&args(&[
            "--quick",
            "--csv",
            "x.csv",
            "--systems",
            "knafeh,tonic",
        ]))
        .unwrap();
        assert!(o.quick);
        assert_eq!(o.systems, [System::Knafeh, System::Tonic]);
        assert_eq!(o.csv, Some(PathBuf::from("x.csv")));
        assert!(parse(&args(&["--systems", "floor"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
    }
}
