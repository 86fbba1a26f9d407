//! Serves the probe service until killed, for tests that need a server in
//! another process (to kill it without a clean close).
//!
//! Usage: `probe_server ADDR CERT KEY`. Prints `listening on ADDR` once
//! ready.

use std::io::Write;

use knafeh_tests::{ProbeImpl, ProbeServer};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key] = &args[..] else {
        eprintln!("usage: probe_server ADDR CERT KEY");
        std::process::exit(2);
    };
    let server = knafeh::Server::builder()
        .bind(addr.parse().expect("ADDR must be IP:PORT"))
        .tls(cert, key)
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .start()
        .await
        .unwrap_or_else(|e| {
            eprintln!("probe_server: {e}");
            std::process::exit(1);
        });
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush().unwrap();
    // Runs until the process is killed.
    std::future::pending::<()>().await;
    drop(server);
}
