//! TLS session resumption and 0-RTT early data (issue 12, item 3): a
//! client's next connection resumes its session; with `zero_rtt` on,
//! idempotent calls travel as early data; the server never runs a
//! handler it may not run from replayable data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knafeh::{CallOptions, Client, ServerHandle, Status};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Amount {
    pub n: u64,
}

#[knafeh::service(package = "zr")]
pub trait Counter {
    /// Reads the counter (safe to repeat).
    async fn read(&self, req: Amount) -> Result<Amount, Status>;
    /// Adds to the counter (not safe to repeat).
    async fn bump(&self, req: Amount) -> Result<Amount, Status>;
}

/// The counter, and how many times each handler ran.
#[derive(Clone, Default)]
struct CounterImpl {
    value: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    bumps: Arc<AtomicUsize>,
}

impl Counter for CounterImpl {
    async fn read(&self, _req: Amount) -> Result<Amount, Status> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(Amount {
            n: self.value.load(Ordering::SeqCst) as u64,
        })
    }

    async fn bump(&self, req: Amount) -> Result<Amount, Status> {
        self.bumps.fetch_add(1, Ordering::SeqCst);
        let before = self.value.fetch_add(req.n as usize, Ordering::SeqCst);
        Ok(Amount {
            n: before as u64 + req.n,
        })
    }
}

const READ: &str = "/zr.Counter/read";

async fn counter_server(certs: &Certs, listeners: usize) -> (ServerHandle, CounterImpl) {
    let counter = CounterImpl::default();
    let server = certs
        .server_builder()
        .listeners(listeners)
        .add_service(CounterServer::new(counter.clone()))
        .start()
        .await
        .unwrap();
    (server, counter)
}

/// A client whose connections close after 200 ms without traffic, so that
/// the next call dials again.
async fn client(certs: &Certs, server: &ServerHandle, zero_rtt: bool) -> Client {
    certs
        .client_builder(server.local_addr().to_string())
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(zero_rtt)
        .connect()
        .await
        .unwrap()
}

/// Waits until the client's connection has closed (idle timeout).
async fn wait_disconnected(client: &Client) {
    eventually(|| client.connection_info().is_none()).await;
}

async fn read_idempotent(client: &Client) -> Result<u64, Status> {
    let r: knafeh::Response<Amount> = client
        .unary_idempotent(READ, &Amount { n: 0 }, CallOptions::new())
        .await?;
    Ok(r.into_inner().n)
}

#[tokio::test]
async fn a_second_connection_resumes_the_tls_session_on_any_listener() {
    bounded(async {
        let certs = Certs::new();
        // Four sockets: the next connections land on any of them, and all
        // must accept the tickets of the others.
        let (server, counter) = counter_server(&certs, 4).await;
        let first = client(&certs, &server, false).await;
        let c = CounterClient::new(first.clone());
        assert_eq!(c.bump(Amount { n: 1 }).await.unwrap().n, 1);
        let info = first.connection_info().unwrap();
        assert!(info.established && !info.resumed, "{info:?}");
        for round in 0..4 {
            wait_disconnected(&first).await;
            // A clone shares the tickets.
            let c = CounterClient::new(first.clone());
            assert_eq!(c.read(Amount { n: 0 }).await.unwrap().n, 1);
            let info = first.connection_info().unwrap();
            assert!(
                info.established && info.resumed,
                "connection {round} did not resume: {info:?}"
            );
            assert_eq!(info.early_requests, 0, "zero_rtt is off: {info:?}");
        }
        assert_eq!(counter.bumps.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn without_zero_rtt_or_a_ticket_nothing_is_sent_early() {
    bounded(async {
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        // zero_rtt on, but the first connection has no ticket yet.
        let c = client(&certs, &server, true).await;
        assert_eq!(read_idempotent(&c).await.unwrap(), 0);
        let info = c.connection_info().unwrap();
        assert_eq!((info.resumed, info.early_requests), (false, 0), "{info:?}");
        assert_eq!(counter.reads.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_idempotent_call_travels_as_early_data_and_is_answered() {
    bounded(async {
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        let c = client(&certs, &server, true).await;
        CounterClient::new(c.clone())
            .bump(Amount { n: 5 })
            .await
            .unwrap();
        wait_disconnected(&c).await;
        // Resumed with 0-RTT: the call leaves with the first flight.
        assert_eq!(read_idempotent(&c).await.unwrap(), 5);
        let info = c.connection_info().unwrap();
        assert!(info.established && info.resumed, "{info:?}");
        assert_eq!(info.early_requests, 1, "{info:?}");
        // The server does not (yet) know `read` is idempotent, so it
        // refused it as early data and the client sent it again after the
        // handshake: either way the handler ran exactly once.
        assert!(info.early_refused <= 1, "{info:?}");
        assert_eq!(counter.reads.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_call_not_declared_idempotent_waits_for_the_handshake() {
    bounded(async {
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        let c = client(&certs, &server, true).await;
        let counter_client = CounterClient::new(c.clone());
        counter_client.bump(Amount { n: 1 }).await.unwrap();
        wait_disconnected(&c).await;
        assert_eq!(counter_client.bump(Amount { n: 1 }).await.unwrap().n, 2);
        let info = c.connection_info().unwrap();
        assert!(info.resumed, "{info:?}");
        assert_eq!(info.early_requests, 0, "{info:?}");
        assert_eq!(counter.bumps.load(Ordering::SeqCst), 2);
        server.shutdown().await;
    })
    .await
}

/// Connect + first call on loopback: fresh, resumed, resumed with 0-RTT.
/// Prints figures (run with `--nocapture`) and how many rounds' connections
/// were of the kind measured; asserts only that fresh ones are fresh.
#[tokio::test]
async fn connect_and_first_call_fresh_resumed_zero_rtt() {
    bounded(async {
        let certs = Certs::new();
        let (server, _counter) = counter_server(&certs, 1).await;
        const ROUNDS: usize = 30;
        let mut report = Vec::new();
        for (label, zero_rtt, resume) in [
            ("fresh", false, false),
            ("resumed", false, true),
            ("0-rtt", true, true),
        ] {
            let mut times = Vec::with_capacity(ROUNDS);
            // Rounds whose connection was of the kind measured.
            let mut as_claimed = 0;
            for _ in 0..ROUNDS {
                let c = certs
                    .client_builder(server.local_addr().to_string())
                    .idle_timeout(Duration::from_millis(100))
                    .zero_rtt(zero_rtt)
                    .connect_lazy();
                if resume {
                    // A first connection gets the ticket.
                    read_idempotent(&c).await.unwrap();
                    wait_disconnected(&c).await;
                }
                let start = Instant::now();
                read_idempotent(&c).await.unwrap();
                times.push(start.elapsed());
                let info = c.connection_info().unwrap();
                if !resume {
                    assert!(!info.resumed && info.early_requests == 0, "{info:?}");
                }
                if info.resumed == resume && (info.early_requests > 0) == zero_rtt {
                    as_claimed += 1;
                }
            }
            times.sort();
            report.push(format!(
                "zero_rtt connect+first_call kind={label} rounds={ROUNDS} as_claimed={as_claimed} \
                 p50_us={} min_us={} p90_us={}",
                times[ROUNDS / 2].as_micros(),
                times[0].as_micros(),
                times[ROUNDS * 9 / 10].as_micros()
            ));
        }
        for line in report {
            println!("{line}");
        }
        server.shutdown().await;
    })
    .await
}
