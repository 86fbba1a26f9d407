//! Deadline and cancellation propagation along a chain of three services
//! A → B → C over loopback: a call made inside a handler inherits the
//! incoming call's deadline and cancellation without the handler passing
//! anything, unless it is `CallOptions::detached`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knafeh::{CallOptions, Code, Context, ServerHandle, Status};
use knafeh_tests::{bounded, Certs};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HopReq {
    /// Make the call to the next node from a spawned task (carrying the
    /// context with `Context::scope`) instead of the handler itself.
    spawn: bool,
    /// The node whose call to the next one is detached.
    detach_at: Option<String>,
    /// The last node waits (for the test's release, or to be cancelled)
    /// instead of answering at once.
    hold: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HopReply {
    /// The time the last node had left, in ms, when it got the call.
    remaining_ms: Option<u64>,
}

#[knafeh::service(package = "test.deadlines")]
pub trait Hop {
    async fn hop(&self, req: HopReq, ctx: Context) -> Result<HopReply, Status>;
}

/// What the nodes saw: `(what, code)` entries such as `("A->B", OK)` or
/// `("C cancelled", CANCELLED)`.
struct Log {
    entries: Mutex<Vec<(String, Code)>>,
    changed: Notify,
    /// Lets a holding last node answer.
    release: tokio::sync::Semaphore,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            entries: Mutex::default(),
            changed: Notify::new(),
            release: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Log {
    fn push(&self, what: String, code: Code) {
        self.entries.lock().unwrap().push((what, code));
        self.changed.notify_waiters();
    }

    fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }

    fn get(&self, what: &str) -> Option<Code> {
        let entries = self.entries.lock().unwrap();
        entries.iter().find(|(w, _)| w == what).map(|(_, c)| *c)
    }

    /// Waits (bounded by the test) until `what` was logged.
    async fn wait(&self, what: &str) -> Code {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(code) = self.get(what) {
                return code;
            }
            changed.await;
        }
    }
}

struct Node {
    name: &'static str,
    next: Option<(&'static str, HopClient)>,
    log: Arc<Log>,
}

impl Hop for Node {
    async fn hop(&self, req: HopReq, ctx: Context) -> Result<HopReply, Status> {
        // Whatever ends the call for its client, the handler's context says.
        let (log, name, watched) = (self.log.clone(), self.name, ctx.clone());
        tokio::spawn(async move {
            watched.cancelled().await;
            log.push(format!("{name} cancelled"), Code::Cancelled);
        });
        let Some((next_name, next)) = &self.next else {
            let remaining_ms = ctx.time_remaining().map(|d| d.as_millis() as u64);
            if req.hold {
                self.log.release.acquire().await.unwrap().forget();
            }
            return Ok(HopReply { remaining_ms });
        };
        let mut opts = CallOptions::new();
        if req.detach_at.as_deref() == Some(self.name) {
            opts = opts.detached();
        }
        let (log, what) = (self.log.clone(), format!("{}->{next_name}", self.name));
        let (next, spawn) = (next.clone(), req.spawn);
        let call = async move {
            let result = next.hop_with(req, opts).await;
            log.push(
                what,
                result.as_ref().map_or_else(|e| e.code(), |_| Code::Ok),
            );
            result.map(knafeh::Response::into_inner)
        };
        if spawn {
            // Task-locals do not cross `tokio::spawn`; the scope carries
            // the incoming call into the task.
            return tokio::spawn(ctx.scope(call)).await.unwrap();
        }
        call.await
    }
}

/// The three servers, C first, each calling the next; and a client of A.
struct Chain {
    servers: Vec<ServerHandle>,
    a: HopClient,
    log: Arc<Log>,
    _certs: Certs,
}

async fn chain() -> Chain {
    let certs = Certs::new();
    let log = Arc::new(Log::default());
    let mut servers = Vec::new();
    let mut next = None;
    for name in ["C", "B", "A"] {
        let node = Node {
            name,
            next: next.take(),
            log: log.clone(),
        };
        let server = certs
            .server_builder()
            .add_service(HopServer::new(node))
            .start()
            .await
            .unwrap();
        // No default timeout: any deadline a node sees was inherited.
        let client = certs
            .client_builder(server.local_addr().to_string())
            .connect_lazy();
        next = Some((name, HopClient::new(client)));
        servers.push(server);
    }
    let a = next.unwrap().1;
    Chain {
        servers,
        a,
        log,
        _certs: certs,
    }
}

impl Chain {
    async fn shutdown(self) {
        for s in self.servers {
            s.shutdown().await;
        }
    }
}

fn req(spawn: bool, detach_at: Option<&str>, hold: bool) -> HopReq {
    HopReq {
        spawn,
        detach_at: detach_at.map(str::to_owned),
        hold,
    }
}

#[tokio::test]
async fn the_last_service_sees_the_first_callers_deadline() {
    bounded(async {
        let chain = chain().await;
        for spawn in [false, true] {
            let opts = CallOptions::new().timeout(Duration::from_secs(2));
            let reply = chain
                .a
                .hop_with(req(spawn, None, false), opts)
                .await
                .unwrap();
            let ms = reply.get_ref().remaining_ms.expect("C saw no deadline");
            assert!(
                ms > 1000 && ms <= 2000,
                "C had {ms} ms left (spawn: {spawn})"
            );
        }
        chain.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn cancelling_the_first_call_cancels_the_last_handler() {
    bounded(async {
        for spawn in [false, true] {
            let chain = chain().await;
            let call = chain.a.hop(req(spawn, None, true));
            let c_started = async {
                // C has the call once B's call to it is in flight and C
                // waits: its server counts an active call.
                knafeh_tests::eventually(|| chain.servers[0].stats().active_calls == 1).await;
            };
            tokio::select! {
                r = call => panic!("the call ended on its own: {r:?}"),
                _ = c_started => {}
            }
            // The call future is dropped: the client cancels A.
            let dropped = Instant::now();
            let code = chain.log.wait("C cancelled").await;
            assert_eq!(code, Code::Cancelled);
            assert!(
                dropped.elapsed() < Duration::from_secs(5),
                "C learnt of the cancellation after {:?}",
                dropped.elapsed()
            );
            if spawn {
                // The spawned calls carried the cancellation themselves.
                assert_eq!(chain.log.wait("A->B").await, Code::Cancelled);
                assert_eq!(chain.log.wait("B->C").await, Code::Cancelled);
            }
            chain.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_timeout_on_the_first_call_is_deadline_exceeded_everywhere() {
    bounded(async {
        for spawn in [false, true] {
            let chain = chain().await;
            let opts = CallOptions::new().timeout(Duration::from_millis(500));
            let started = Instant::now();
            let err = chain
                .a
                .hop_with(req(spawn, None, true), opts)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
            // C's handler ends with the first caller's deadline.
            chain.log.wait("C cancelled").await;
            assert!(started.elapsed() < Duration::from_secs(5));
            if spawn {
                // Calls that outlive their handlers (spawned) end on the
                // inherited deadline.
                assert_eq!(chain.log.wait("A->B").await, Code::DeadlineExceeded);
                assert_eq!(chain.log.wait("B->C").await, Code::DeadlineExceeded);
            }
            chain.shutdown().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_detached_call_has_no_deadline_and_outlives_the_cancellation() {
    bounded(async {
        let chain = chain().await;
        // Deadline: B's detached call to C carries none.
        let opts = CallOptions::new().timeout(Duration::from_secs(2));
        let reply = chain
            .a
            .hop_with(req(false, Some("B"), false), opts)
            .await
            .unwrap();
        assert_eq!(reply.get_ref().remaining_ms, None);
        chain.log.clear();

        // Cancellation: B's handler is cancelled, its detached call to C
        // (from a spawned task) goes on and completes.
        let call = chain.a.hop(req(true, Some("B"), true));
        tokio::select! {
            r = call => panic!("the call ended on its own: {r:?}"),
            _ = knafeh_tests::eventually(|| chain.servers[0].stats().active_calls == 1) => {}
        }
        assert_eq!(chain.log.wait("A->B").await, Code::Cancelled);
        assert_eq!(chain.log.wait("B cancelled").await, Code::Cancelled);
        assert_eq!(chain.log.get("C cancelled"), None);
        assert_eq!(chain.log.get("B->C"), None);
        chain.log.release.add_permits(1);
        assert_eq!(chain.log.wait("B->C").await, Code::Ok);
        assert_eq!(chain.log.get("C cancelled"), None);
        chain.shutdown().await;
    })
    .await
}

#[test]
fn outside_a_handler_there_is_no_current_call() {
    // Nothing to inherit: a call made here has only its own deadline.
    assert!(Context::current().is_none());
}
