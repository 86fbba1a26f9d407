//! Serves the Greeter.
//!
//! ```text
//! greeter-server [--addr 127.0.0.1:4433] [--cert cert.pem --key key.pem] [--dev-cert-dir DIR]
//!                [--token CALLER=TOKEN]...
//! ```
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
         [--token CALLER=TOKEN]..."
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
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--addr" => addr = val().parse().map_err(|e| format!("--addr: {e}"))?,
            "--cert" => cert = Some(PathBuf::from(val())),
            "--key" => key = Some(PathBuf::from(val())),
            "--dev-cert-dir" => dev_dir = PathBuf::from(val()),
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
