//! TLS session resumption and 0-RTT early data (issue 12, item 3): a
//! client's next connection resumes its session; with `zero_rtt` on,
//! idempotent calls travel as early data; the server never runs a
//! handler it may not run from replayable data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use knafeh::{CallOptions, Client, ConnectionInfo, ServerHandle, Status};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Amount {
    pub n: u64,
}

#[knafeh::service(package = "zr")]
pub trait Counter {
    /// Reads the counter (safe to repeat).
    #[knafeh(idempotent)]
    async fn read(&self, req: Amount) -> Result<Amount, Status>;
    /// Adds to the counter (not safe to repeat).
    async fn bump(&self, req: Amount) -> Result<Amount, Status>;
}

/// The counter, and how many times each handler ran (and of those, how
/// many from 0-RTT early data).
#[derive(Clone, Default)]
struct CounterImpl {
    value: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    bumps: Arc<AtomicUsize>,
    early_reads: Arc<AtomicUsize>,
    early_bumps: Arc<AtomicUsize>,
}

impl Counter for CounterImpl {
    async fn read(&self, _req: Amount) -> Result<Amount, Status> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if knafeh::Context::current().is_some_and(|c| c.early_data()) {
            self.early_reads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Amount {
            n: self.value.load(Ordering::SeqCst) as u64,
        })
    }

    async fn bump(&self, req: Amount) -> Result<Amount, Status> {
        self.bumps.fetch_add(1, Ordering::SeqCst);
        if knafeh::Context::current().is_some_and(|c| c.early_data()) {
            self.early_bumps.fetch_add(1, Ordering::SeqCst);
        }
        let before = self.value.fetch_add(req.n as usize, Ordering::SeqCst);
        Ok(Amount {
            n: before as u64 + req.n,
        })
    }
}

const BUMP: &str = "/zr.Counter/bump";

async fn counter_server(certs: &Certs, listeners: usize) -> (ServerHandle, CounterImpl) {
    let counter = CounterImpl::default();
    let server = certs
        .server_builder()
        .listeners(listeners)
        // A Retry would discard early data (and cost a round trip).
        .validate_client_address(false)
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

/// A call to the method declared idempotent.
async fn read_idempotent(client: &Client) -> Result<u64, Status> {
    let r = CounterClient::new(client.clone())
        .read(Amount { n: 0 })
        .await?;
    Ok(r.n)
}

/// A call to the method not declared idempotent, which the client claims
/// is idempotent: with `zero_rtt` it goes out as early data.
async fn bump_claimed_idempotent(client: &Client, n: u64) -> Result<u64, Status> {
    let options = CallOptions::new().idempotent(true);
    let r: knafeh::Response<Amount> = client.unary(BUMP, &Amount { n }, options).await?;
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
        let (_recorder, info) = record_zero_rtt_flight(&certs, &server, |c| async move {
            // Resumed with 0-RTT: the call leaves with the first flight.
            assert_eq!(read_idempotent(&c).await.unwrap(), 0);
        })
        .await;
        assert!(info.established && info.resumed, "{info:?}");
        assert_eq!(
            (info.early_requests, info.early_refused),
            (1, 0),
            "{info:?}"
        );
        // The first connection's call and this one; the server ran this
        // one once, from the early data.
        assert_eq!(counter.reads.load(Ordering::SeqCst), 2);
        assert_eq!(counter.early_reads.load(Ordering::SeqCst), 1);
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

#[tokio::test]
async fn the_server_refuses_early_data_for_a_method_not_declared_idempotent() {
    bounded(async {
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        // The client claims `bump` is idempotent and sends it early; the
        // server refuses it as early data (H3_REQUEST_REJECTED) and the
        // client sends it again after the handshake: it ran once, never
        // from early data.
        let (_recorder, info) = record_zero_rtt_flight(&certs, &server, |c| async move {
            assert_eq!(bump_claimed_idempotent(&c, 1).await.unwrap(), 1);
        })
        .await;
        assert!(info.resumed, "{info:?}");
        assert_eq!(
            (info.early_requests, info.early_refused),
            (1, 1),
            "{info:?}"
        );
        assert_eq!(counter.bumps.load(Ordering::SeqCst), 1);
        assert_eq!(counter.early_bumps.load(Ordering::SeqCst), 0);
        server.shutdown().await;
    })
    .await
}

/// A UDP forwarder between one client and `server` that records the
/// client's first flight (its Initial and 0-RTT packets: the datagrams it
/// sends in the first [`GATHER`] of a connection) and forwards it to the
/// server as one burst, as it arrives over a real link. On bare loopback
/// the client's early request, sent a moment after its Initial, may reach
/// tokio-quiche's packet router only after the new connection has left
/// the router's table of client-chosen connection IDs (it does when the
/// server has 0-RTT keys), and be dropped there to be sent again later.
struct Recorder {
    addr: std::net::SocketAddr,
    first_flight: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// Set: the client's datagrams are dropped (a server gone silent).
    blackhole: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long the recorder gathers a connection's first flight.
const GATHER: Duration = Duration::from_millis(30);

impl Recorder {
    async fn start(server: std::net::SocketAddr) -> Recorder {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(server).await.unwrap();
        let addr = front.local_addr().unwrap();
        let first_flight = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
        let client = Arc::new(std::sync::Mutex::new(None));
        let (f, b, c) = (front.clone(), back.clone(), client.clone());
        let back_to_front = async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = b.recv(&mut buf).await {
                let to = *c.lock().unwrap();
                if let Some(to) = to {
                    let _ = f.send_to(&buf[..n], to).await;
                }
            }
        };
        let flight = first_flight.clone();
        let blackhole = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dropping = blackhole.clone();
        let front_to_back = async move {
            let mut buf = vec![0u8; 65536];
            // The start of the flight being gathered, if any.
            let mut gathering: Option<tokio::time::Instant> = None;
            loop {
                let received = match gathering {
                    Some(start) => {
                        tokio::time::timeout_at(start + GATHER, front.recv_from(&mut buf)).await
                    }
                    None => Ok(front.recv_from(&mut buf).await),
                };
                let Ok(received) = received else {
                    // The flight is complete: send it in one burst.
                    gathering = None;
                    for datagram in flight.lock().unwrap().iter() {
                        let _ = back.try_send(datagram);
                    }
                    continue;
                };
                let Ok((n, from)) = received else { break };
                if dropping.load(Ordering::SeqCst) {
                    continue;
                }
                let new_client = client.lock().unwrap().replace(from) != Some(from);
                if new_client {
                    flight.lock().unwrap().clear();
                    gathering = Some(tokio::time::Instant::now());
                }
                if gathering.is_some() {
                    flight.lock().unwrap().push(buf[..n].to_vec());
                } else {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(back_to_front, front_to_back);
        });
        Recorder {
            addr,
            first_flight,
            blackhole,
            task,
        }
    }

    /// Sends the recorded first flight to `server` again from a new
    /// socket, as an attacker who saw it would, and keeps the socket open
    /// for a moment so the server can answer it.
    async fn replay(&self, server: std::net::SocketAddr) -> usize {
        let flight = self.first_flight.lock().unwrap().clone();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(server).await.unwrap();
        for datagram in &flight {
            socket.send(datagram).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        flight.len()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A 0-RTT connection through a [`Recorder`] whose first call is `call`;
/// returns the recorder
/// holding that first flight once the connection is gone on both sides,
/// and how the connection was set up.
async fn record_zero_rtt_flight<F, Fut>(
    certs: &Certs,
    server: &ServerHandle,
    call: F,
) -> (Recorder, ConnectionInfo)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let recorder = Recorder::start(server.local_addr()).await;
    let c = certs
        .client_builder(recorder.addr.to_string())
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(true)
        .connect_lazy();
    // A first connection gets the ticket.
    read_idempotent(&c).await.unwrap();
    wait_disconnected(&c).await;
    call(c.clone()).await;
    let info = c.connection_info().unwrap();
    wait_disconnected(&c).await;
    eventually(|| server.stats().connections == 0).await;
    (recorder, info)
}

#[tokio::test]
async fn a_replayed_early_data_flight_never_runs_a_method_not_declared_idempotent() {
    bounded(async {
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        let addr = server.local_addr();
        // An early `bump` (the client claims it is idempotent): refused as
        // early data, sent again after the handshake, ran once.
        let (recorder, info) = record_zero_rtt_flight(&certs, &server, |c| async move {
            bump_claimed_idempotent(&c, 1).await.unwrap();
        })
        .await;
        assert_eq!(info.early_requests, 1, "{info:?}");
        assert_eq!(counter.bumps.load(Ordering::SeqCst), 1);
        // Replayed from another address, twice: the server takes each as a
        // new 0-RTT connection (the attacker cannot finish its handshake)
        // and refuses the early `bump`.
        for _ in 0..2 {
            assert!(recorder.replay(addr).await >= 1);
        }
        assert_eq!(
            counter.bumps.load(Ordering::SeqCst),
            1,
            "a replay ran `bump`"
        );
        assert_eq!(counter.early_bumps.load(Ordering::SeqCst), 0);
        // The same replay of an early `read` does reach its handler: the
        // replays above were served as early data and refused for the
        // method alone.
        let reads_before = counter.reads.load(Ordering::SeqCst);
        let (recorder, info) = record_zero_rtt_flight(&certs, &server, |c| async move {
            read_idempotent(&c).await.unwrap();
        })
        .await;
        assert_eq!(info.early_requests, 1, "{info:?}");
        let early_before = counter.early_reads.load(Ordering::SeqCst);
        assert_eq!(counter.reads.load(Ordering::SeqCst), reads_before + 2);
        recorder.replay(addr).await;
        eventually(|| counter.early_reads.load(Ordering::SeqCst) == early_before + 1).await;
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_zero_rtt_connection_whose_handshake_never_completes_fails_at_the_connect_timeout() {
    bounded(async {
        let certs = Certs::new();
        let (server, _counter) = counter_server(&certs, 1).await;
        let recorder = Recorder::start(server.local_addr()).await;
        let c = certs
            .client_builder(recorder.addr.to_string())
            .connect_timeout(Duration::from_millis(500))
            .idle_timeout(Duration::from_millis(200))
            .retry_policy(knafeh::RetryPolicy::none())
            .zero_rtt(true)
            .connect_lazy();
        read_idempotent(&c).await.unwrap(); // the ticket
        wait_disconnected(&c).await;
        // The server goes silent: the 0-RTT dial returns at once, the
        // early request gets no answer and the handshake never completes.
        recorder.blackhole.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let err = read_idempotent(&c).await.unwrap_err();
        assert_eq!(err.code(), knafeh::Code::Unavailable, "{err}");
        // The handshake deadline closed it (not QUIC's idle timeout, about
        // 3 s while the round-trip time is unknown, nor the keepalive).
        assert!(
            err.message().contains(": no handshake within 500ms"),
            "{err}"
        );
        assert!(err.message().contains("as \"127.0.0.1\""), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        server.shutdown().await;
    })
    .await
}

/// On a fresh connection, the first call leaves with the client's first
/// 1-RTT flight (its handshake Finished) and is answered one round trip
/// after the handshake, on a link with a 150 ms one-way delay (the test
/// relay, without faults).
/// (tokio-quiche 0.20's writer stops gathering when quiche's next packet
/// is larger than the one before it; without knafeh's work-around in
/// `H3App::wait_for_data` the request waited for the server's next
/// packet: two round trips, 600 ms here.)
#[tokio::test]
async fn the_first_call_leaves_with_the_handshake_finished() {
    bounded(async {
        const ONE_WAY: Duration = Duration::from_millis(150);
        let certs = Certs::new();
        let (server, counter) = counter_server(&certs, 1).await;
        let delayed = knafeh_tests::relay::Faults {
            delay: ONE_WAY,
            ..knafeh_tests::relay::Faults::none()
        };
        let config = knafeh_tests::relay::RelayConfig {
            to_server: delayed.clone(),
            to_client: delayed,
            ..Default::default()
        };
        let link = knafeh_tests::relay::Relay::start(server.local_addr(), config)
            .await
            .unwrap();
        // Returns once the client's handshake is complete.
        let c = certs
            .client_builder(link.addr().to_string())
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let start = Instant::now();
        read_idempotent(&c).await.unwrap();
        let took = start.elapsed();
        let info = c.connection_info().unwrap();
        assert!(!info.resumed && info.early_requests == 0, "{info:?}");
        assert_eq!(counter.reads.load(Ordering::SeqCst), 1);
        // One round trip is 300 ms; a second would end at 600 ms. The
        // bound sits between, leaving 150 ms for both ends' work.
        let rtt = 2 * ONE_WAY;
        assert!(
            took >= rtt && took < rtt + rtt / 2,
            "the first call took {took:?} on a {rtt:?} round trip"
        );
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
