//! Serves the Greeter.
//!
//! ```text
//! greeter-server [--addr 127.0.0.1:4433] [--cert cert.pem --key key.pem] [--dev-cert-dir DIR]
//!                [--token CALLER=TOKEN]... [--metrics-addr HOST:PORT]
//! ```
//! With `--metrics-addr`, the server's metrics (see README.md, "Metrics")
//! are served at `http://HOST:PORT/metrics` in the Prometheus text format.
//! With `--token`, every call must carry one of the given bearer tokens
//! (see `greeter::auth`).
//! Without `--cert`/`--key` it generates a development certificate for
//! `localhost` and the listen address, writes it to `--dev-cert-dir`
//! (default: `knafeh-dev` in the system temp dir) and prints where the CA
//! is, for clients to trust. Serves the built-in `knafeh.Health` (all
//! SERVING while up, NOT_SERVING once Ctrl-C starts the graceful
//! shutdown) and `knafeh.Describe`. Stops gracefully on Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use greeter::auth::BearerAuth;
use greeter::{GreeterServer, MyGreeter};

fn usage() -> ! {
    eprintln!(
        "usage: greeter-server [--addr HOST:PORT] [--cert PEM --key PEM] [--dev-cert-dir DIR] \
         [--token CALLER=TOKEN]... [--metrics-addr HOST:PORT]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut addr: SocketAddr = "127.0.0.1:4433".parse()?;
    let mut cert = None;
    let mut key = None;
    let mut dev_dir = std::env::temp_dir().join("knafeh-dev");
    let mut auth: Option<BearerAuth> = None;
    let mut metrics_addr: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => addr = val().parse().map_err(|e| format!("--addr: {e}"))?,
            "--cert" => cert = Some(PathBuf::from(val())),
            "--key" => key = Some(PathBuf::from(val())),
            "--dev-cert-dir" => dev_dir = PathBuf::from(val()),
            "--metrics-addr" => {
                metrics_addr = Some(val().parse().map_err(|e| format!("--metrics-addr: {e}"))?)
            }
            "--token" => {
                let v = val();
                let Some((caller, token)) = v.split_once('=') else {
                    usage()
                };
                auth = Some(auth.take().unwrap_or_default().allow_all(caller, token));
            }
            _ => usage(),
        }
    }
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            let ip = addr.ip().to_string();
            let dev = knafeh::DevCert::generate(&["localhost", &ip])?;
            let paths = dev.write_to(&dev_dir)?;
            println!("development CA written to {}", paths.ca.display());
            (paths.cert, paths.key)
        }
        _ => usage(),
    };
    if let Some(metrics_addr) = metrics_addr {
        serve_metrics(metrics_addr)?;
        println!("metrics at http://{metrics_addr}/metrics");
    }
    let mut builder = knafeh::Server::builder()
        .bind(addr)
        .tls(cert, key)
        .add_service(GreeterServer::new(MyGreeter))
        .health(knafeh::health::HealthReporter::new());
    if let Some(auth) = auth {
        builder = builder.interceptor(auth);
    }
    let server = builder.start().await?;
    println!("greeter listening on {}", server.local_addr());
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("greeter stopped");
    Ok(())
}

/// Installs the Prometheus exporter: `GET /metrics` on `addr` answers with
/// every metric recorded so far; call durations are histograms.
fn serve_metrics(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS)?
        .install()
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    Ok(())
}
