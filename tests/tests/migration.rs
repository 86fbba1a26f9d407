//! Connection migration: a client whose address changes keeps its
//! connection and its calls in flight, with one listening socket and with
//! several (`listeners(4)`, where the server steers datagrams by
//! connection ID rather than by the kernel's hash of the addresses).
//!
//! The client sits behind [`Nat`], which moves it to a new port on
//! command (a NAT rebinding): the server sees the same connection IDs
//! arrive from a new address, and what it still sends to the old one is
//! dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use knafeh::{CallOptions, Context, Status, Streaming};
use knafeh_tests::nat::Nat;
use knafeh_tests::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub n: u32,
}

/// A service whose calls wait for the test.
#[knafeh::service(package = "knafeh.migration")]
pub trait Mover {
    /// Answers at once.
    async fn echo(&self, req: Text) -> Result<Text, Status>;
    /// Answers the client's address as the call's context has it.
    async fn peer(&self, req: Text, ctx: Context) -> Result<Text, Status>;
    /// Answers once the test releases it.
    async fn hold(&self, req: Text) -> Result<Text, Status>;
    /// Streams ticks 1..=n, each once the test allows it.
    async fn ticks(&self, req: Tick) -> Result<Streaming<Tick>, Status>;
}

/// The test's side of the handlers' waits.
struct Gates {
    /// A permit when `hold` has started.
    held: Semaphore,
    /// `hold` answers on a permit.
    release: Semaphore,
    /// `ticks` sends one tick per permit.
    tick: Semaphore,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            held: Semaphore::new(0),
            release: Semaphore::new(0),
            tick: Semaphore::new(0),
        }
    }
}

#[derive(Clone)]
struct MoverImpl(Arc<Gates>);

impl Mover for MoverImpl {
    async fn echo(&self, req: Text) -> Result<Text, Status> {
        Ok(req)
    }

    async fn peer(&self, _req: Text, ctx: Context) -> Result<Text, Status> {
        Ok(text(&ctx.peer_addr().to_string()))
    }

    async fn hold(&self, req: Text) -> Result<Text, Status> {
        self.0.held.add_permits(1);
        let permit = self.0.release.acquire().await;
        permit
            .map_err(|_| Status::internal("gate closed"))?
            .forget();
        Ok(req)
    }

    async fn ticks(&self, req: Tick) -> Result<Streaming<Tick>, Status> {
        let gates = self.0.clone();
        let (tx, stream) = Streaming::channel(1);
        tokio::spawn(async move {
            for n in 1..=req.n {
                let Ok(permit) = gates.tick.acquire().await else {
                    return;
                };
                permit.forget();
                if tx.send(Tick { n }).await.is_err() {
                    return;
                }
            }
        });
        Ok(stream)
    }
}

/// How the client's first packets after a rebinding leave.
#[derive(Clone, Copy, Debug)]
enum AfterRebind {
    /// The client makes a call at once.
    ClientCalls,
    /// The client says nothing until its keepalive PING (200 ms of
    /// silence); meanwhile the server sends the next tick to the old
    /// address, where it is lost.
    ClientQuiet,
}

/// Starts a server with `listeners` sockets and a client behind a NAT,
/// puts a unary call and a server stream in flight, rebinds `rebinds`
/// times in the middle of both, and checks that both complete on the
/// same connection, with the server answering at every new address.
async fn calls_survive_rebinding(listeners: usize, rebinds: u32, after: AfterRebind) {
    let certs = Certs::new();
    let gates = Arc::new(Gates::default());
    let mover = MoverServer::new(MoverImpl(gates.clone()));
    let server = start(&certs, |b| b.listeners(listeners).add_service(mover)).await;
    let nat = Nat::start(server.local_addr()).await.unwrap();
    let client = certs
        .client_builder(nat.addr().to_string())
        .connect_timeout(Duration::from_secs(3))
        .keepalive(Duration::from_millis(200), Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let client = MoverClient::new(client);
    let opts = || CallOptions::new().timeout(Duration::from_secs(30));

    // A unary call in flight: its handler waits for the test.
    let unary = tokio::spawn({
        let client = client.clone();
        async move { client.hold_with(text("held"), opts()).await }
    });
    gates.held.acquire().await.unwrap().forget();
    // A server stream in progress.
    let mut ticks = client
        .ticks_with(Tick { n: rebinds + 2 }, opts())
        .await
        .unwrap();
    gates.tick.add_permits(1);
    assert_eq!(next_tick(&mut ticks).await, 1);

    for round in 1..=rebinds {
        let mapping = nat.rebind().await.unwrap();
        if let AfterRebind::ClientCalls = after {
            let reply = client.echo_with(text("moved"), opts()).await;
            assert_eq!(reply.unwrap().into_inner(), text("moved"), "round {round}");
        }
        gates.tick.add_permits(1);
        assert_eq!(next_tick(&mut ticks).await, round + 1, "round {round}");
        // The client's packets came from the new address, and the server
        // answered there (what it sent to an old address was dropped).
        assert!(
            mapping.to_server.load(Ordering::Relaxed) > 0,
            "round {round}"
        );
        assert!(
            mapping.to_client.load(Ordering::Relaxed) > 0,
            "round {round}"
        );
    }

    gates.release.add_permits(1);
    let reply = unary.await.unwrap();
    assert_eq!(reply.unwrap().into_inner(), text("held"));
    gates.tick.add_permits(1);
    assert_eq!(next_tick(&mut ticks).await, rebinds + 2);
    assert!(ticks.message().await.is_none(), "the stream did not end OK");

    // One connection throughout: the client never dialled again (it
    // would have sent from a new socket), and the server has one.
    assert_eq!(nat.clients().len(), 1, "{:?}", nat.clients());
    assert_eq!(server.stats().connections, 1);
    let mappings = nat.mappings();
    assert_eq!(mappings.len(), rebinds as usize + 1);
    if let AfterRebind::ClientQuiet = after {
        // The server did send ticks to the old addresses before it heard
        // from the new ones: it moved because the client did.
        let late: u64 = mappings[..rebinds as usize]
            .iter()
            .map(|m| m.late.load(Ordering::Relaxed))
            .sum();
        assert!(late > 0, "{mappings:?}");
    }
    server.shutdown().await;
}

fn text(t: &str) -> Text {
    Text { text: t.into() }
}

async fn next_tick(ticks: &mut Streaming<Tick>) -> u32 {
    match ticks.message().await {
        Some(Ok(tick)) => tick.n,
        Some(Err(e)) => panic!("the stream failed: {e}"),
        None => panic!("the stream ended early"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_follows_a_client_that_rebinds_and_calls() {
    bounded(calls_survive_rebinding(1, 3, AfterRebind::ClientCalls)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_follows_a_quiet_client_that_rebinds() {
    bounded(calls_survive_rebinding(1, 3, AfterRebind::ClientQuiet)).await
}

// With 4 sockets, each rebinding would move the client to another socket
// with probability 3/4 if the kernel chose by its hash of the addresses:
// 6 rebindings all staying on one socket by chance is 1 in 4096.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_listeners_follow_a_client_that_rebinds_and_calls() {
    bounded(calls_survive_rebinding(4, 6, AfterRebind::ClientCalls)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_listeners_follow_a_quiet_client_that_rebinds() {
    bounded(calls_survive_rebinding(4, 6, AfterRebind::ClientQuiet)).await
}

/// How many address changes a connection follows: the server keeps 8
/// network paths per connection (README, "Connection migration").
const ADDRESS_CHANGES_FOLLOWED: u32 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_follows_seven_address_changes_and_the_client_redials_after_the_eighth() {
    bounded(async {
        let certs = Certs::new();
        let mover = MoverServer::new(MoverImpl(Arc::new(Gates::default())));
        let server = start(&certs, |b| b.add_service(mover)).await;
        let nat = Nat::start(server.local_addr()).await.unwrap();
        let client = certs
            .client_builder(nat.addr().to_string())
            .connect_timeout(Duration::from_secs(3))
            .keepalive(Duration::from_millis(100), Duration::from_millis(600))
            .connect()
            .await
            .unwrap();
        let client = MoverClient::new(client);
        let opts = || CallOptions::new().timeout(Duration::from_secs(30));
        for round in 1..=ADDRESS_CHANGES_FOLLOWED {
            nat.rebind().await.unwrap();
            let reply = client.echo_with(text("moved"), opts()).await;
            assert_eq!(reply.unwrap().into_inner(), text("moved"), "round {round}");
        }
        assert_eq!(nat.clients().len(), 1, "{:?}", nat.clients());
        // One more: the server drops what comes from the new address, the
        // client hears nothing and gives up after its keepalive timeout.
        let last = nat.rebind().await.unwrap();
        let err = client.echo_with(text("lost"), opts()).await.unwrap_err();
        assert_eq!(err.code(), knafeh::Code::Unavailable, "{err}");
        assert!(last.to_server.load(Ordering::Relaxed) > 0);
        assert_eq!(last.to_client.load(Ordering::Relaxed), 0);
        // A later call dials a new connection, which works. (A call made
        // at once may still meet the closing connection and fail the same
        // way: a client matter, not this test's.)
        let mut failures = Vec::new();
        loop {
            match client.echo_with(text("again"), opts()).await {
                Ok(reply) => break assert_eq!(reply.into_inner(), text("again")),
                Err(e) if failures.len() < 2 => failures.push(e),
                Err(e) => panic!("no new connection: {e}; before: {failures:?}"),
            }
        }
        assert_eq!(nat.clients().len(), 2, "{:?}", nat.clients());
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_a_rebinding_sees_the_new_address() {
    bounded(async {
        let certs = Certs::new();
        let mover = MoverServer::new(MoverImpl(Arc::new(Gates::default())));
        let server = start(&certs, |b| b.listeners(2).add_service(mover)).await;
        let nat = Nat::start(server.local_addr()).await.unwrap();
        let client = MoverClient::new(client_for(&certs, nat.addr()).await);
        let first = nat.mappings()[0].addr;
        let seen = client.peer(text("")).await.unwrap();
        assert_eq!(seen, text(&first.to_string()));
        let moved = nat.rebind().await.unwrap();
        // The first call from the new address moves the connection; the
        // next one starts after the server has seen the move.
        client.echo(text("move")).await.unwrap();
        let seen = client.peer(text("")).await.unwrap();
        assert_eq!(seen, text(&moved.addr.to_string()));
        server.shutdown().await;
    })
    .await
}
