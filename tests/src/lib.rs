//! Support for knafeh's end-to-end tests: a probe service whose handlers
//! report what they saw, temporary certificates, and server start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knafeh::{
    Client, Code, Context, DevCert, DevCertPaths, ServerBuilder, ServerHandle, Status, Streaming,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub mod nat;
pub mod raw;
pub mod relay;

/// Bounds every test: a test that hangs fails instead.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `fut` under [`TEST_TIMEOUT`].
pub async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

/// Waits until `flag` is set; `notify` is notified whenever it is.
pub async fn wait_for(flag: &std::sync::atomic::AtomicBool, notify: &Notify) {
    loop {
        let n = notify.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if flag.load(Ordering::SeqCst) {
            return;
        }
        n.await;
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "knafeh-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A development certificate for localhost/127.0.0.1 in a temp dir.
pub struct Certs {
    pub dev: DevCert,
    pub paths: DevCertPaths,
    pub dir: TempDir,
}

impl Certs {
    pub fn new() -> Self {
        let dir = TempDir::new();
        let dev = DevCert::generate(&["localhost", "127.0.0.1", "::1"]).unwrap();
        let paths = dev.write_to(&dir.0).unwrap();
        Certs { dev, paths, dir }
    }

    /// The one way tests build a server: TLS with these certificates.
    pub fn server_builder(&self) -> ServerBuilder {
        knafeh::Server::builder().tls(&self.paths.cert, &self.paths.key)
    }

    /// The one way tests build a client: trusting these certificates.
    pub fn client_builder(&self, addr: impl Into<String>) -> knafeh::ClientBuilder {
        Client::builder(addr).ca_file(&self.paths.ca)
    }
}

impl Default for Certs {
    fn default() -> Self {
        Self::new()
    }
}

/// The one way tests start a server: a TLS server with these
/// certificates on 127.0.0.1:0, with `configure` applied. Clients come
/// from [`client_for`] (or [`Certs::client_builder`] for other settings).
pub async fn start(
    certs: &Certs,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> ServerHandle {
    configure(certs.server_builder()).start().await.unwrap()
}

/// A server running the probe service, a client for it, and what its
/// handlers observed.
pub struct ProbeFixture {
    pub server: ServerHandle,
    pub client: ProbeClient,
    pub state: Arc<ProbeState>,
    /// Kept alive for as long as the fixture: clients re-read the CA file
    /// when they dial.
    pub certs: Certs,
}

impl ProbeFixture {
    /// Starts the probe service with `configure` applied to the builder.
    pub async fn start(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let certs = Certs::new();
        let (server, state) = start_probe_server(&certs, configure).await;
        let client = client_for(&certs, server.local_addr()).await;
        ProbeFixture {
            server,
            client: ProbeClient::new(client),
            state,
            certs,
        }
    }
}

/// [`start`] with the probe service added (and no client, so no
/// connection is open yet); returns what its handlers observe.
pub async fn start_probe_server(
    certs: &Certs,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (ServerHandle, Arc<ProbeState>) {
    let probe = ProbeImpl::default();
    let state = probe.state.clone();
    let server = start(certs, |b| configure(b.add_service(ProbeServer::new(probe)))).await;
    (server, state)
}

/// Polls `cond` every 10 ms until it holds (bound it with the test's own
/// timeout).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A well-behaved client on its own connection that calls the probe
/// service continuously (a unary `echo`, then a short `stream`) and checks
/// every answer, while a test does something nasty to the same server.
pub struct Canary {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<CanaryReport>,
}

/// What a [`Canary`] saw.
#[derive(Debug, Default)]
pub struct CanaryReport {
    /// Calls answered correctly.
    pub ok: usize,
    /// Everything else, described.
    pub failures: Vec<String>,
}

impl Canary {
    /// Starts calling; returns once the first call has been answered.
    pub async fn start(certs: &Certs, addr: SocketAddr) -> Canary {
        let p = ProbeClient::new(client_for(certs, addr).await);
        let first = p
            .echo_with(
                Echo {
                    text: "first".into(),
                },
                knafeh::CallOptions::new().timeout(Duration::from_secs(10)),
            )
            .await;
        assert_eq!(
            first.map(|r| r.into_inner().text).ok().as_deref(),
            Some("first")
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(Self::run(p, stop.clone()));
        Canary { stop, task }
    }

    async fn run(p: ProbeClient, stop: Arc<std::sync::atomic::AtomicBool>) -> CanaryReport {
        let mut report = CanaryReport::default();
        let opts = || knafeh::CallOptions::new().timeout(Duration::from_secs(10));
        let mut i = 0u64;
        // At least one round after `stop`, so the last calls are made after
        // whatever the test did.
        loop {
            let last = stop.load(Ordering::SeqCst);
            i += 1;
            let text = format!("canary-{i}");
            match p.echo_with(Echo { text: text.clone() }, opts()).await {
                Ok(r) if r.get_ref().text == text => report.ok += 1,
                Ok(r) => report
                    .failures
                    .push(format!("echo {i}: wrong answer {:?}", r.get_ref())),
                Err(e) => report.failures.push(format!("echo {i}: {e}")),
            }
            match p.stream_with(StreamMode::Count(3), opts()).await {
                Ok(mut s) => {
                    let mut got = Vec::new();
                    let mut err = None;
                    while let Some(item) = s.message().await {
                        match item {
                            Ok(item) => got.push(item.index),
                            Err(e) => {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                    match err {
                        None if got == [1, 2, 3] => report.ok += 1,
                        None => report
                            .failures
                            .push(format!("stream {i}: wrong items {got:?}")),
                        Some(e) => report.failures.push(format!("stream {i}: {e}")),
                    }
                }
                Err(e) => report.failures.push(format!("stream {i}: {e}")),
            }
            if last {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops calling and returns what was seen.
    pub async fn stop(self) -> CanaryReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the canary task panicked")
    }

    /// Stops calling and asserts that every call was answered correctly.
    pub async fn check(self) {
        let report = self.stop().await;
        assert!(
            report.failures.is_empty(),
            "the well-behaved client saw failures ({} ok): {:#?}",
            report.ok,
            report.failures
        );
        assert!(report.ok >= 2, "{report:?}");
    }
}

/// The one way tests get a connected client: for `addr`, trusting
/// `certs`.
pub async fn client_for(certs: &Certs, addr: SocketAddr) -> Client {
    certs
        .client_builder(addr.to_string())
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailReq {
    pub code: i32,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowReq {
    pub millis: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    pub data: Vec<u8>,
}

/// How [`Probe::stream`] behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamMode {
    /// `n` items, then OK.
    Count(u32),
    /// `n` items, then the given error.
    FailAfter(u32, i32, String),
    /// Items one by one; each after the test calls `gate.notify_one()`.
    Gated(u32),
    /// Items forever (until the client goes away).
    Endless,
    /// One item, then nothing until the client goes away (the producer
    /// waits on `StreamSender::closed`).
    OneThenWait,
    /// Items with a payload of this many bytes, forever.
    EndlessBlobs(u32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub index: u32,
    pub payload: Vec<u8>,
}

/// A service whose handlers report what they saw.
#[knafeh::service(package = "knafeh.test")]
pub trait Probe {
    /// Echoes the text.
    async fn echo(&self, req: Echo) -> Result<Echo, Status>;
    /// Fails with the requested code and message.
    async fn fail(&self, req: FailReq) -> Result<Echo, Status>;
    /// Panics.
    async fn boom(&self, req: Echo) -> Result<Echo, Status>;
    /// Sleeps, recording the deadline it saw and whether it was cancelled.
    async fn slow(&self, req: SlowReq, ctx: Context) -> Result<Echo, Status>;
    /// Echoes metadata `x-in` (and `x-bin-bin`) back in response metadata.
    async fn meta(&self, req: Echo, ctx: Context) -> Result<Echo, Status>;
    /// Streams items as `StreamMode` says.
    /// Streams items as `StreamMode` says.
    async fn stream(&self, req: StreamMode) -> Result<Streaming<Item>, Status>;
    /// Returns the blob it got.
    async fn blob(&self, req: Blob) -> Result<Blob, Status>;
    /// Answers `"{text}|{peer address}"`.
    async fn whoami(&self, req: Echo, ctx: Context) -> Result<Echo, Status>;
    /// Answers `len` pseudo-random bytes made from `seed` (see [`pattern`]).
    async fn fill(&self, req: FillReq) -> Result<Blob, Status>;
    /// Echoes a value that only a self-describing codec (JSON) can decode.
    async fn loose(&self, req: Loose) -> Result<Loose, Status>;
}

/// An untagged enum: serde decodes it by looking at the data, which JSON
/// allows and bincode does not, so a call with it tells the codecs apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Loose {
    Number(u32),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillReq {
    pub len: u32,
    pub seed: u64,
}

/// `len` pseudo-random bytes from `seed`: what [`Probe::fill`] answers.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    relay::SplitMix64::new(seed).fill(&mut v);
    v
}

/// What the probe handlers observed.
#[derive(Default)]
pub struct ProbeState {
    /// Released by the test, one item at a time, in `StreamMode::Gated`.
    pub gate: Notify,
    /// Items produced so far by `stream`.
    pub produced: AtomicU32,
    /// Notified when a stream producer sees its client gone.
    pub producer_stopped: Notify,
    /// Set when a producer saw its client gone.
    pub producer_stopped_flag: std::sync::atomic::AtomicBool,
    /// The deadline `slow` saw.
    pub deadline_seen: Mutex<Option<Option<Instant>>>,
    /// When the last `slow` handler started.
    pub slow_started_at: Mutex<Option<Instant>>,
    /// Notified when a `slow` handler is dropped before finishing.
    pub slow_cancelled: Notify,
    /// Set when a `slow` handler was dropped before finishing.
    pub slow_cancelled_flag: std::sync::atomic::AtomicBool,
    /// Notified when a `slow` handler starts.
    pub slow_started: Notify,
    /// Set when a `slow` handler started.
    pub slow_started_flag: std::sync::atomic::AtomicBool,
    /// Handlers of `slow` running now, and the most seen at once.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    /// `slow` handlers started, and finished (returned their answer), in
    /// total.
    pub slow_started_count: AtomicUsize,
    pub slow_finished_count: AtomicUsize,
}

/// The probe implementation.
#[derive(Clone, Default)]
pub struct ProbeImpl {
    pub state: Arc<ProbeState>,
}

struct SlowGuard {
    state: Arc<ProbeState>,
    finished: bool,
}

impl Drop for SlowGuard {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.state.slow_cancelled_flag.store(true, Ordering::SeqCst);
            self.state.slow_cancelled.notify_waiters();
        }
    }
}

impl Probe for ProbeImpl {
    async fn echo(&self, req: Echo) -> Result<Echo, Status> {
        Ok(req)
    }

    async fn fail(&self, req: FailReq) -> Result<Echo, Status> {
        Err(Status::new(Code::from_i32(req.code), req.message))
    }

    async fn boom(&self, req: Echo) -> Result<Echo, Status> {
        if req.text == "boom" {
            panic!("the probe was asked to panic");
        }
        Ok(req)
    }

    async fn slow(&self, req: SlowReq, ctx: Context) -> Result<Echo, Status> {
        *self.state.slow_started_at.lock().unwrap() = Some(Instant::now());
        *self.state.deadline_seen.lock().unwrap() = Some(ctx.deadline());
        let now = self.state.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.max_active.fetch_max(now, Ordering::SeqCst);
        self.state.slow_started_count.fetch_add(1, Ordering::SeqCst);
        self.state.slow_started_flag.store(true, Ordering::SeqCst);
        self.state.slow_started.notify_waiters();
        let mut guard = SlowGuard {
            state: self.state.clone(),
            finished: false,
        };
        tokio::time::sleep(Duration::from_millis(req.millis)).await;
        guard.finished = true;
        self.state
            .slow_finished_count
            .fetch_add(1, Ordering::SeqCst);
        Ok(Echo {
            text: "slept".into(),
        })
    }

    async fn meta(&self, req: Echo, ctx: Context) -> Result<Echo, Status> {
        let got = ctx.metadata().get("x-in").unwrap_or("").to_owned();
        let bin = ctx.metadata().get_bin("x-raw-bin").map(<[u8]>::to_vec);
        let mut md = ctx.response_metadata_mut();
        md.insert("x-out", &format!("{got}!")).unwrap();
        if let Some(b) = bin {
            md.insert_bin("x-raw-bin", &b).unwrap();
        }
        drop(md);
        Ok(Echo {
            text: format!("{}|{}|{}", req.text, got, ctx.peer_addr().ip()),
        })
    }

    async fn stream(&self, req: StreamMode) -> Result<Streaming<Item>, Status> {
        let state = self.state.clone();
        let (tx, stream) = Streaming::channel(1);
        tokio::spawn(async move {
            let stopped = || {
                state.producer_stopped_flag.store(true, Ordering::SeqCst);
                state.producer_stopped.notify_waiters();
            };
            let payload = match req {
                StreamMode::EndlessBlobs(size) => vec![0xAB; size as usize],
                _ => Vec::new(),
            };
            let mut index = 0;
            loop {
                let more = match &req {
                    StreamMode::Count(n)
                    | StreamMode::Gated(n)
                    | StreamMode::FailAfter(n, _, _) => index < *n,
                    StreamMode::OneThenWait => index < 1,
                    StreamMode::Endless | StreamMode::EndlessBlobs(_) => true,
                };
                if !more {
                    break;
                }
                if let StreamMode::Gated(_) = req {
                    state.gate.notified().await;
                }
                index += 1;
                let item = Item {
                    index,
                    payload: payload.clone(),
                };
                if tx.send(item).await.is_err() {
                    stopped();
                    return;
                }
                state.produced.fetch_add(1, Ordering::SeqCst);
            }
            match req {
                StreamMode::FailAfter(_, code, msg) => {
                    let _ = tx.send_error(Status::new(Code::from_i32(code), msg)).await;
                }
                StreamMode::OneThenWait => {
                    tx.closed().await;
                    stopped();
                }
                _ => {}
            }
        });
        Ok(stream)
    }

    async fn blob(&self, req: Blob) -> Result<Blob, Status> {
        Ok(req)
    }

    async fn whoami(&self, req: Echo, ctx: Context) -> Result<Echo, Status> {
        Ok(Echo {
            text: format!("{}|{}", req.text, ctx.peer_addr()),
        })
    }

    async fn fill(&self, req: FillReq) -> Result<Blob, Status> {
        Ok(Blob {
            data: pattern(req.seed, req.len as usize),
        })
    }

    async fn loose(&self, req: Loose) -> Result<Loose, Status> {
        Ok(req)
    }
}
