//! Scale-out: a client spreads calls over several servers and survives one
//! of them dying; a server listens on several SO_REUSEPORT sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use knafeh::{Client, Code, DevCert, Status};
use knafeh_tests::{bounded, eventually, TempDir};

#[knafeh::service(package = "scale")]
trait Where {
    /// Answers `n + 1` and the name of the server that answered.
    async fn which(&self, n: u32) -> Result<(u32, String), Status>;
}

struct Named(String);

impl Where for Named {
    async fn which(&self, n: u32) -> Result<(u32, String), Status> {
        Ok((n + 1, self.0.clone()))
    }
}

/// A server on `ip`, in a runtime of its own so that it can be killed
/// without a goodbye (its sockets just close).
struct Isolated {
    addr: String,
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<knafeh::ServerHandle>,
}

impl Isolated {
    fn start(ip: &str, name: &str, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime
            .block_on(
                knafeh::Server::builder()
                    .bind(format!("{ip}:0").parse().unwrap())
                    .tls(cert, key)
                    .listeners(2)
                    .add_service(WhereServer::new(Named(name.to_owned())))
                    .start(),
            )
            .unwrap();
        Isolated {
            addr: handle.local_addr().to_string(),
            runtime: Some(runtime),
            handle: Some(handle),
        }
    }

    /// Drops the server's runtime: every task and socket goes at once, as
    /// when the process is killed.
    fn kill(&mut self) {
        std::mem::forget(self.handle.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if let (Some(rt), Some(h)) = (self.runtime.take(), self.handle.take()) {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Unwinding inside the test's runtime: cannot block here.
                std::mem::forget(h);
                rt.shutdown_background();
            } else {
                rt.block_on(h.shutdown());
            }
        }
    }
}

/// What the workers saw: (after the kill?, server name or
/// "UNAVAILABLE: …") → count.
type Tally = HashMap<(bool, String), usize>;

/// 16 workers calling in a loop until `stop`, tallying each outcome by
/// phase (`killed`).
fn spawn_workers(
    client: &WhereClient,
    stop: &Arc<AtomicBool>,
    killed: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    for w in 0..16u32 {
        let (client, stop, killed, tally) =
            (client.clone(), stop.clone(), killed.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut n = w * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                let after_kill = killed.load(Ordering::SeqCst);
                let outcome = match client.which(n).await {
                    Ok((m, name)) => {
                        assert_eq!(m, n + 1, "wrong answer from {name}");
                        name
                    }
                    Err(e) => {
                        assert_eq!(e.code(), Code::Unavailable, "unexpected error: {e:?}");
                        format!("UNAVAILABLE: {}", e.message())
                    }
                };
                *tally
                    .lock()
                    .unwrap()
                    .entry((after_kill, outcome))
                    .or_default() += 1;
                n += 1;
            }
        }));
    }
    workers
}

/// Waits (at most 20 s) until every server has answered a few calls.
async fn wait_until_every_server_answered(tally: &Mutex<Tally>) {
    tokio::time::timeout(
        Duration::from_secs(20),
        eventually(|| {
            let t = tally.lock().unwrap();
            ["a", "b", "c"]
                .iter()
                .all(|name| t.get(&(false, (*name).to_owned())).copied().unwrap_or(0) >= 5)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("not every server took calls: {:?}", tally.lock().unwrap()));
}

/// Before the kill every server took calls; after it the survivors kept
/// answering, and once settled every call succeeded on them.
fn verify_failover(all: &Tally, settled: &Tally) {
    let count = |phase: bool, name: &str| all.get(&(phase, name.to_owned())).copied().unwrap_or(0);
    // Before the kill, every server took calls.
    for name in ["a", "b", "c"] {
        assert!(count(false, name) > 0, "{name} got no calls: {all:?}");
    }
    // After it, the survivors kept answering...
    for name in ["a", "c"] {
        assert!(
            count(true, name) > 0,
            "{name} got no calls after the kill: {all:?}"
        );
    }
    // ...and once settled, every call succeeded on them.
    let late = |name: &str| {
        count(true, name) - settled.get(&(true, name.to_owned())).copied().unwrap_or(0)
    };
    assert!(
        late("a") + late("c") > 0,
        "no calls after settling: {all:?}"
    );
    assert_eq!(late("b"), 0, "a dead server answered: {all:?}");
    // Failures are recorded as "UNAVAILABLE: <message>".
    let failed = |t: &Tally| -> usize {
        t.iter()
            .filter(|((after, o), _)| *after && o.starts_with("UNAVAILABLE"))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        failed(all) - failed(settled),
        0,
        "calls failed after settling: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_endpoints_and_survive_one_dying() {
    let dir = TempDir::new();
    let dev = DevCert::generate(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).unwrap();
    let paths = dev.write_to(&dir.0).unwrap();
    // Started outside the async context: each has its own runtime.
    let (cert, key) = (paths.cert.clone(), paths.key.clone());
    let mut servers = tokio::task::spawn_blocking(move || {
        [("127.0.0.2", "a"), ("127.0.0.3", "b"), ("127.0.0.4", "c")]
            .map(|(ip, name)| Isolated::start(ip, name, &cert, &key))
    })
    .await
    .unwrap();

    bounded(async {
        let client = Client::builder(servers[0].addr.clone())
            .endpoint(servers[1].addr.clone())
            .endpoint(servers[2].addr.clone())
            .ca_file(&paths.ca)
            // Generous: a slow handshake must not take a live endpoint
            // out.
            .connect_timeout(Duration::from_secs(5))
            .keepalive(Duration::from_millis(200), Duration::from_millis(1_500))
            .connect()
            .await
            .unwrap();
        let client = WhereClient::new(client);

        // 16 workers call in a loop until told to stop; every outcome is
        // recorded as (server name or error code) per phase.
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let workers = spawn_workers(&client, &stop, &killed, &tally);

        // Every server has answered some calls before the kill.
        wait_until_every_server_answered(&tally).await;
        // Kill "b" with calls in flight.
        killed.store(true, Ordering::SeqCst);
        let mut b = std::mem::replace(
            &mut servers[1],
            Isolated {
                addr: String::new(),
                runtime: None,
                handle: None,
            },
        );
        tokio::task::spawn_blocking(move || b.kill()).await.unwrap();
        // Long enough for the keepalive to give up on "b" and for calls to
        // settle on the others. ("b" is then re-dialled in the background
        // while calls go to the connected endpoints.)
        tokio::time::sleep(Duration::from_millis(4_000)).await;
        let settled: Tally = tally.lock().unwrap().clone();
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.await.unwrap();
        }
        let all = tally.lock().unwrap().clone();

        verify_failover(&all, &settled);
    })
    .await;

    tokio::task::spawn_blocking(move || drop(servers))
        .await
        .unwrap();
}
