//! `knafeh-bench zero-rtt`: connect + first call over the emulated link
//! (no loss): a fresh knafeh connection, a resumed one (TLS session
//! ticket, no certificate) and a resumed one whose call travels as 0-RTT
//! early data; tonic + TLS's fresh connection for reference.

use std::time::{Duration, Instant};

use knafeh_bench_echo::{EchoClient, EchoMsg};
use link_emulator::{Direction, Impairments, Link, Side};

use crate::child::Certs;
use crate::scenarios::{checked_echo, SMALL};
use crate::stats::{fmt_num, median, parse_duration};
use crate::systems::tonic::TonicConn;
use crate::systems::{Conn, System, Target};

/// How a knafeh connection is set up for the measured call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fresh,
    Resumed,
    ZeroRtt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fresh => "fresh",
            Kind::Resumed => "resumed",
            Kind::ZeroRtt => "0-rtt",
        }
    }
}

struct Options {
    rtt: Duration,
    samples: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        rtt: Duration::from_millis(20),
        samples: 10,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rtt" => o.rtt = parse_duration(val()?)?,
            "--samples" => {
                let v = val()?;
                o.samples = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--samples: {v:?} is not a positive count"))?;
            }
            other => return Err(format!("zero-rtt: unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// `knafeh-bench zero-rtt [--rtt 20ms] [--samples 10]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let link = Link::builder()
        .start()
        .map_err(|e| format!("zero-rtt: the emulated link cannot be set up here: {e}"))?;
    let each_way = Impairments {
        delay: o.rtt / 2,
        ..Impairments::none()
    };
    for d in [Direction::AToB, Direction::BToA] {
        link.set_impairments(d, each_way.clone())
            .map_err(|e| format!("zero-rtt: setting the link: {e}"))?;
    }
    let server_ip = link.addr(Side::B);
    let certs = Certs::generate(&["localhost", &server_ip.to_string()])?;
    let servers = crate::wan::spawn_servers(&link, &[System::Knafeh, System::TonicTls], &certs)?;
    let targets: Vec<Target> = servers.iter().map(|s| s.target.clone()).collect();
    let samples = o.samples;
    let lines = link
        .run_in(Side::A, move || -> Result<Vec<String>, String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            rt.block_on(measure_all(&targets, samples))
        })
        .map_err(|e| format!("zero-rtt: running the client in namespace A: {e}"))??;
    drop(servers);
    println!(
        "knafeh-bench zero-rtt: connect + first {SMALL} B call over the emulated link, \
         RTT {:?}, no loss; medians of {samples}",
        o.rtt
    );
    crate::print_machine();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

async fn measure_all(targets: &[Target], samples: usize) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for kind in [Kind::Fresh, Kind::Resumed, Kind::ZeroRtt] {
        let (times, as_claimed) = knafeh_samples(&targets[0], kind, samples).await?;
        lines.push(format!(
            "zero_rtt system=knafeh kind={} ms={} min_ms={} as_claimed={as_claimed}/{samples}",
            kind.name(),
            fmt_num(median(&times)),
            fmt_num(times.iter().copied().fold(f64::INFINITY, f64::min)),
        ));
    }
    let mut times = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let c = TonicConn::<tonic::transport::Channel>::connect(&targets[1]).await?;
        checked_echo(&c, SMALL).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lines.push(format!(
        "zero_rtt system=tonic-tls kind=fresh ms={} min_ms={}",
        fmt_num(median(&times)),
        fmt_num(times.iter().copied().fold(f64::INFINITY, f64::min)),
    ));
    Ok(lines)
}

/// A lazy knafeh client whose connections close after `idle` without
/// traffic, so that its next call dials again (resuming its session).
fn client(target: &Target, zero_rtt: bool, idle: Duration) -> knafeh::Client {
    knafeh::Client::builder(target.addr.to_string())
        .ca_file(&target.ca)
        .idle_timeout(idle)
        .zero_rtt(zero_rtt)
        .connect_lazy()
}

async fn wait_disconnected(c: &knafeh::Client) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    while c.connection_info().is_some() {
        if Instant::now() > end {
            return Err("the idle connection did not close within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn echo(c: &knafeh::Client) -> Result<(), String> {
    let payload = vec![7u8; SMALL];
    let back = EchoClient::new(c.clone())
        .echo(EchoMsg {
            payload: payload.clone(),
        })
        .await
        .map_err(|e| format!("knafeh echo: {e}"))?;
    if back.payload != payload {
        return Err("knafeh echo: wrong payload".into());
    }
    Ok(())
}

/// Connect + first call times (ms) of `kind`, and how many samples'
/// connections were of that kind (resumed, with a request sent early).
async fn knafeh_samples(
    target: &Target,
    kind: Kind,
    samples: usize,
) -> Result<(Vec<f64>, usize), String> {
    let idle = Duration::from_millis(400);
    let (mut times, mut as_claimed) = (Vec::new(), 0);
    for _ in 0..samples {
        let c = client(target, kind == Kind::ZeroRtt, idle);
        if kind != Kind::Fresh {
            // A first connection gets the ticket.
            echo(&c).await?;
            wait_disconnected(&c).await?;
        }
        let t = Instant::now();
        echo(&c).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let info = c.connection_info().ok_or("the connection closed at once")?;
        let resumed = kind != Kind::Fresh;
        if info.resumed == resumed && (info.early_requests > 0) == (kind == Kind::ZeroRtt) {
            as_claimed += 1;
        }
    }
    Ok((times, as_claimed))
}
