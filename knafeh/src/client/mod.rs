//! The client: one QUIC connection, dialled on demand, shared by clones.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_quiche::quiche::h3;
use tokio_quiche::settings::{CertificateKind, Hooks, TlsCertificatePaths};
use tokio_quiche::ConnectionParams;
use tracing::Instrument;

use crate::intercept::{self, CallInfo, Interceptor};
use crate::proto::frame::Decoder;
use crate::proto::h3::H3_REQUEST_REJECTED;
use crate::proto::wire::{self, ResponseHead};
use crate::service::Message;
use crate::transport::conn::{
    field_section_size, Command, ConnShared, H3App, Keepalive, RecvWindow, StreamEvent,
};
use crate::transport::tls::{client_context, ClientTlsConfig, Refusal, TlsHook};
use crate::{CallOptions, Code, Codec, Metadata, Response, Status, Streaming};

/// Builds a [`Client`].
///
/// The server certificate is verified by default: against the CA in
/// [`ClientBuilder::ca_file`] (or the system's trust store without one),
/// for the server name (the host part of the address unless
/// [`ClientBuilder::server_name`] says otherwise).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    addrs: Vec<String>,
    server_name: Option<String>,
    ca_file: Option<PathBuf>,
    insecure: bool,
    identity: Option<(PathBuf, PathBuf)>,
    interceptors: Interceptors,
    codec: Codec,
    max_message_size: usize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    default_timeout: Option<Duration>,
    keepalive: Keepalive,
}

impl ClientBuilder {
    /// A client of the server at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        ClientBuilder {
            addrs: vec![addr.into()],
            server_name: None,
            ca_file: None,
            insecure: false,
            identity: None,
            interceptors: Interceptors::default(),
            codec: Codec::Bincode,
            max_message_size: crate::DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            default_timeout: None,
            keepalive: Keepalive::default(),
        }
    }

    /// Adds another server address serving the same services. Calls are
    /// spread over the endpoints (the less loaded of two picked at random,
    /// one connection each). Calls go to connected endpoints while the
    /// others are dialled in the background; only when none is connected
    /// does a call wait for a dial, and it moves as soon as another
    /// endpoint connects. An endpoint that cannot be dialled is taken out
    /// for a while (from 1 s, doubling up to 30 s). A call whose request
    /// was already sent is not retried.
    pub fn endpoint(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }

    /// PEM file of the CA(s) the server certificate must chain to.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The name the server certificate must carry (and the TLS SNI).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Presents this certificate chain and private key (PEM files) to the
    /// server, for servers that require client certificates (mutual TLS,
    /// [`ServerBuilder::client_ca`](crate::ServerBuilder::client_ca)).
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Adds an interceptor: it sees every call (method, metadata, deadline)
    /// before it is sent, and may add metadata or refuse the call with a
    /// status (returned to the caller; nothing is sent). Interceptors run
    /// in the order they were added.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.0.push(Arc::new(interceptor));
        self
    }

    /// Accept any server certificate. Insecure: anyone on the path can
    /// impersonate the server. For local development only.
    pub fn insecure_skip_verify(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The codec used for requests (default bincode).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Largest response message accepted (default 4 MiB); a larger one
    /// fails the call with `RESOURCE_EXHAUSTED`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long dialling may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Closes the connection after this long without traffic (default
    /// 60 s); the next call dials again.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Liveness of the connection while calls are in progress (default
    /// 5 s and 20 s): after `interval` without hearing from the server
    /// the client sends a PING; after `timeout` of silence it closes the
    /// connection and its calls fail with `UNAVAILABLE` (a server that
    /// vanished without closing, e.g. killed or cut off). `interval` is
    /// capped at `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Keepalive::new(interval, timeout);
        self
    }

    /// Timeout for calls that set none in their [`CallOptions`].
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Dials the server (every endpoint, at the same time) and returns the
    /// client as soon as one endpoint is connected; dials to the others
    /// go on in the background.
    ///
    /// # Errors
    /// `UNAVAILABLE` when no endpoint can be reached or its certificate is
    /// refused (the error of the first); `INVALID_ARGUMENT` for a malformed
    /// address or TLS file.
    pub async fn connect(self) -> Result<Client, Status> {
        for addr in &self.addrs {
            host_port(addr)?;
        }
        let client = self.connect_lazy();
        if client.inner.endpoints.len() == 1 {
            client.connection(&client.inner.endpoints[0]).await?;
            return Ok(client);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..client.inner.endpoints.len() {
            let (c, tx) = (client.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(c.connection(&c.inner.endpoints[i]).await.map(drop));
            });
        }
        drop(tx);
        let mut first_err = None;
        while let Some(result) = rx.recv().await {
            match result {
                Ok(()) => return Ok(client),
                Err(e) if e.code() == Code::Unavailable => {
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| Status::unavailable("no endpoint to dial")))
    }

    /// Returns the client without dialling; the first call dials.
    pub fn connect_lazy(self) -> Client {
        let endpoints = self.addrs.iter().cloned().map(Endpoint::new).collect();
        Client {
            inner: Arc::new(Inner {
                cfg: self,
                endpoints,
                rng: AtomicU64::new(seed()),
                connected: tokio::sync::Notify::new(),
            }),
        }
    }
}

/// The interceptors of a client (shown by count in `Debug`).
#[derive(Clone, Default)]
struct Interceptors(Vec<Arc<dyn Interceptor>>);

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptor(s)", self.0.len())
    }
}

/// A connection to one server, shared by all clones, multiplexing every
/// call. When the connection dies, the next call dials again.
///
/// Generated `{Trait}Client`s wrap one.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.cfg.addrs)
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: ClientBuilder,
    endpoints: Vec<Endpoint>,
    /// State of the generator picking endpoints.
    rng: AtomicU64,
    /// Notified when a dial succeeds, so that calls waiting for a dial to
    /// another endpoint can move to the one now connected.
    connected: tokio::sync::Notify,
}

/// One server address: its connection, dialling state and load.
struct Endpoint {
    addr: String,
    conn: Mutex<Option<ConnHandle>>,
    /// Serialises dialling; holds the last dial's failure.
    dial: tokio::sync::Mutex<Option<Status>>,
    /// Counts finished dials.
    dial_generation: AtomicU64,
    /// Calls in progress on this endpoint, counted from when it is picked
    /// (so a call waiting for a dial counts too).
    in_flight: AtomicUsize,
    /// Set while a dial to this endpoint is in progress.
    dialing: AtomicBool,
    /// Set while the endpoint is out after failed dials: until when, and
    /// how many failures in a row.
    down: Mutex<Option<(Instant, u32)>>,
}

impl Endpoint {
    fn new(addr: String) -> Self {
        Endpoint {
            addr,
            conn: Mutex::new(None),
            dial: tokio::sync::Mutex::new(None),
            dial_generation: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            dialing: AtomicBool::new(false),
            down: Mutex::new(None),
        }
    }

    fn down_until(&self) -> Option<Instant> {
        lock(&self.down).map(|(until, _)| until)
    }

    fn mark_down(&self) {
        let mut down = lock(&self.down);
        let failures = down.map_or(0, |(_, n)| n).saturating_add(1);
        let backoff = endpoint_backoff(failures);
        *down = Some((Instant::now() + backoff, failures));
        tracing::debug!(addr = %self.addr, ?backoff, failures, "endpoint taken out");
    }

    fn mark_up(&self) {
        *lock(&self.down) = None;
    }

    /// How ready this endpoint is for a call now, best first: 0 connected,
    /// 1 can be dialled, 2 being dialled (a call would wait for the dial),
    /// 3 taken out after failed dials.
    fn readiness(&self, now: Instant) -> u8 {
        if self.down_until().is_some_and(|t| t > now) {
            3
        } else if lock(&self.conn).as_ref().is_some_and(ConnHandle::alive) {
            0
        } else if self.dialing.load(Ordering::Acquire) {
            2
        } else {
            1
        }
    }
}

/// How long an endpoint stays out after `failures` failed dials in a row:
/// 1 s, doubling, at most 30 s.
fn endpoint_backoff(failures: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << (failures.clamp(1, 6) - 1))
        .min(Duration::from_secs(30))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a call against its endpoint while it runs.
struct LoadGuard {
    inner: Arc<Inner>,
    endpoint: usize,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.inner.endpoints[self.endpoint]
            .in_flight
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a background dial of one endpoint as in progress until dropped.
struct DialFlag {
    client: Client,
    endpoint: usize,
}

impl Drop for DialFlag {
    fn drop(&mut self) {
        self.client.inner.endpoints[self.endpoint]
            .dialing
            .store(false, Ordering::Release);
    }
}

/// Clears a flag when dropped (also when the future holding it is).
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32) | 1
}

#[derive(Clone)]
struct ConnHandle {
    cmd: mpsc::UnboundedSender<Command>,
    shared: Arc<ConnShared>,
    authority: Arc<str>,
}

impl ConnHandle {
    fn alive(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire) && !self.cmd.is_closed()
    }
}

impl Client {
    /// Shorthand for [`ClientBuilder::new`].
    pub fn builder(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    async fn connection(&self, ep: &Endpoint) -> Result<ConnHandle, Status> {
        if let Some(c) = current(ep) {
            return Ok(c);
        }
        // One dial at a time. Callers that queued behind a dial that failed
        // share its error instead of each dialling (and timing out) again.
        let generation = ep.dial_generation.load(Ordering::Acquire);
        let mut last_failure = ep.dial.lock().await;
        if let Some(c) = current(ep) {
            return Ok(c);
        }
        if ep.dial_generation.load(Ordering::Acquire) != generation {
            if let Some(status) = last_failure.as_ref() {
                return Err(status.clone());
            }
        }
        // Cleared when this function returns (or is dropped), after the
        // result is recorded, so no pick sees a finished dial's endpoint as
        // dialable before its connection or backoff is in place.
        ep.dialing.store(true, Ordering::Release);
        let _clear = ClearOnDrop(&ep.dialing);
        // Boxed: the dial future is large and every call's future would
        // otherwise carry (and copy) room for it.
        let result = Box::pin(dial(&self.inner.cfg, &ep.addr)).await;
        ep.dial_generation.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(c) => {
                *last_failure = None;
                *lock(&ep.conn) = Some(c.clone());
                ep.mark_up();
                self.inner.connected.notify_waiters();
                Ok(c)
            }
            Err(status) => {
                if status.code() == Code::Unavailable {
                    ep.mark_down();
                }
                *last_failure = Some(status.clone());
                Err(status)
            }
        }
    }

    /// Picks an endpoint not in `tried`: the less loaded of two random
    /// ones among the best ready. Calls go to connected endpoints when
    /// there are any; endpoints that are up but not connected are then
    /// dialled in the background, so no call waits for a dial to an
    /// endpoint that may be gone while others can answer. Without a
    /// connected endpoint, calls wait for a dial. When all are taken out,
    /// the one back soonest.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let eps = &self.inner.endpoints;
        if eps.len() == 1 {
            return tried.is_empty().then_some(0);
        }
        let now = Instant::now();
        let untried = |i: &usize| !tried.contains(i);
        // On the stack for up to 16 endpoints.
        let mut small = [0u8; 16];
        let mut large = Vec::new();
        let readiness: &mut [u8] = if eps.len() <= small.len() {
            &mut small[..eps.len()]
        } else {
            large.resize(eps.len(), 0);
            &mut large
        };
        for (r, ep) in readiness.iter_mut().zip(eps.iter()) {
            *r = ep.readiness(now);
        }
        let readiness = &*readiness;
        if readiness.contains(&0) {
            for (i, _) in readiness.iter().enumerate().filter(|(_, r)| **r == 1) {
                self.dial_in_background(i);
            }
        }
        for best in 0..3 {
            let ready = |i: &usize| untried(i) && readiness[*i] <= best;
            let n = (0..eps.len()).filter(ready).count();
            if n == 0 {
                continue;
            }
            let nth = |k: u64| (0..eps.len()).filter(ready).nth(k as usize);
            let r = self.next_random();
            let a = nth(r % n as u64)?;
            if n == 1 {
                return Some(a);
            }
            // `b` is drawn from the other n - 1.
            let mut k = (r >> 32) % (n as u64 - 1);
            if nth(k) == Some(a) {
                k = n as u64 - 1;
            }
            let b = nth(k)?;
            let load = |i: usize| eps[i].in_flight.load(Ordering::Relaxed);
            return Some(if load(b) < load(a) { b } else { a });
        }
        (0..eps.len())
            .filter(untried)
            .min_by_key(|&i| eps[i].down_until())
    }

    /// Dials endpoint `i` on a task of its own, unless a dial to it is
    /// already in progress (or there is no runtime to run it on). A dial
    /// that fails for any reason takes the endpoint out (backoff), so a
    /// broken endpoint is not dialled again on every pick.
    fn dial_in_background(&self, i: usize) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ep = &self.inner.endpoints[i];
        if ep
            .dialing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // Owned by the task from here, so the flag is cleared even if the
        // task is dropped before it first runs.
        let flag = DialFlag {
            client: self.clone(),
            endpoint: i,
        };
        rt.spawn(async move {
            let ep = &flag.client.inner.endpoints[flag.endpoint];
            // The pick that asked for this dial may be stale by now.
            if current(ep).is_some() || ep.down_until().is_some_and(|t| t > Instant::now()) {
                return;
            }
            match flag.client.connection(ep).await {
                Ok(_) => {}
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::debug!(addr = %ep.addr, error = %e, "background dial failed");
                }
                Err(e) => {
                    ep.mark_down();
                    tracing::warn!(addr = %ep.addr, error = %e, "endpoint cannot be dialled");
                }
            }
        });
    }

    fn next_random(&self) -> u64 {
        // xorshift64*; races between threads only make it more random.
        let mut x = self.inner.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A live connection for a new call: tries the endpoints in the order
    /// [`Client::pick`] gives until one connects (nothing was sent on the
    /// ones that failed, so moving on is safe).
    async fn connect_any(&self) -> Result<(ConnHandle, LoadGuard), Status> {
        let mut tried = Vec::new();
        let mut first_err = None;
        let several = self.inner.endpoints.len() > 1;
        loop {
            // Registered before picking, so a dial that succeeds from here
            // on is not missed (only needed with several endpoints).
            let mut connected = several.then(|| Box::pin(self.inner.connected.notified()));
            if let Some(n) = connected.as_mut() {
                n.as_mut().enable();
            }
            let Some(i) = self.pick(&tried) else { break };
            let ep = &self.inner.endpoints[i];
            // The call counts against the endpoint while it waits for a
            // dial too, so that other calls see it as busy.
            ep.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = LoadGuard {
                inner: self.inner.clone(),
                endpoint: i,
            };
            if let Some(conn) = current(ep) {
                return Ok((conn, guard));
            }
            let result = match connected {
                // Waiting for a dial: if another endpoint gets connected
                // first, pick again (this endpoint may be gone).
                Some(connected) => tokio::select! {
                    biased;
                    r = self.connection(ep) => r,
                    () = connected => continue,
                },
                None => self.connection(ep).await,
            };
            match result {
                Ok(conn) => return Ok((conn, guard)),
                Err(e) if e.code() == Code::Unavailable => {
                    first_err.get_or_insert(e);
                    tried.push(i);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| Status::unavailable("no endpoint to call")))
    }

    /// Encodes the request and fixes the deadline, before anything is
    /// awaited (so call futures do not borrow the request).
    fn prepare<Req: Message>(
        &self,
        path: &'static str,
        req: &Req,
        options: CallOptions,
    ) -> Result<Prepared, Status> {
        let cfg = &self.inner.cfg;
        let timeout = options.timeout.or(cfg.default_timeout);
        // A timeout too large to represent is no deadline at all.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut metadata = options.metadata;
        if !cfg.interceptors.0.is_empty() {
            let mut info = CallInfo::new(path.to_owned(), metadata, deadline, None);
            intercept::run(&cfg.interceptors.0, &mut info)?;
            metadata = info.into_parts().0;
        }
        let mut body = BytesMut::with_capacity(128);
        req.encode_message(cfg.codec, &mut body).map_err(|e| {
            Status::invalid_argument(format!(
                "{path}: request does not encode as {}: {e}",
                cfg.codec.content_type()
            ))
        })?;
        Ok(Prepared {
            path,
            body: body.freeze(),
            deadline,
            metadata,
        })
    }

    async fn start(&self, prepared: Prepared) -> Result<ActiveCall, Status> {
        let cfg = &self.inner.cfg;
        let Prepared {
            path,
            body,
            deadline,
            metadata,
        } = prepared;
        let work = async {
            let (conn, load) = self.connect_any().await?;
            // The server gets the time left after dialling, so both sides
            // share one deadline.
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let headers =
                wire::request_headers(&conn.authority, path, cfg.codec, remaining, &metadata);
            // A header block over the server's limit would make it close
            // the whole connection.
            let size = field_section_size(&headers);
            let limit = conn.shared.peer_field_limit();
            if size > limit {
                return Err(Status::resource_exhausted(format!(
                    "{path}: request headers (with metadata) are {size} bytes; \
                     the server accepts at most {limit}"
                )));
            }
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let slot = Arc::new(AtomicU64::new(u64::MAX));
            let window = Arc::new(RecvWindow::default());
            let open = Command::Open {
                headers,
                body,
                events: ev_tx,
                window: window.clone(),
                slot: slot.clone(),
            };
            if conn.cmd.send(open).is_err() {
                return Err(Status::unavailable("connection closed"));
            }
            Ok(ActiveCall {
                path,
                codec: cfg.codec,
                events: ev_rx,
                guard: CancelGuard {
                    cmd: conn.cmd.clone(),
                    slot,
                    armed: true,
                },
                decoder: Decoder::new(cfg.max_message_size),
                window,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
                state: State::AwaitHeaders,
                headers: Metadata::new(),
                trailers: None,
                conn: conn.shared.clone(),
                _load: load,
            })
        };
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), work)
                .await
                .unwrap_or_else(|_| Err(deadline_status(path))),
            None => work.await,
        }
    }

    /// Makes a unary call to `path` (generated clients call this).
    ///
    /// # Errors
    /// The server's status, or a status describing a local failure
    /// (`UNAVAILABLE` for connection problems, `DEADLINE_EXCEEDED` when the
    /// timeout passes, `INTERNAL` for a malformed response).
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the server.
    pub fn unary<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        req: &Req,
        options: CallOptions,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send + 'static {
        let client = self.clone();
        let prepared = self.prepare(path, req, options);
        // Boxed once here so that the generated wrappers above stay small.
        Box::pin(async move { client.unary_prepared(path, prepared).await })
    }

    async fn unary_prepared<Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
    ) -> Result<Response<Resp>, Status> {
        let mut span = CallSpan::new(path);
        let result = async {
            let mut call = self.start(prepared?).await?;
            let codec = call.codec;
            let mut decode = |b: &[u8]| decode_response::<Resp>(path, codec, b);
            let first = std::future::poll_fn(|cx| call.poll_message(cx, &mut decode)).await;
            let msg = match first {
                Some(Ok(decoded)) => decoded?,
                Some(Err(status)) => return Err(status),
                None => {
                    return Err(Status::internal(format!(
                        "{path}: server sent no response message"
                    )))
                }
            };
            match std::future::poll_fn(|cx| call.poll_message(cx, &mut |_| ())).await {
                None => {}
                Some(Ok(())) => {
                    return Err(Status::internal(format!(
                        "{path}: server sent more than one response message"
                    )))
                }
                Some(Err(status)) => return Err(status),
            }
            let trailers = call.trailers.take().unwrap_or_default();
            Ok(Response::new(
                msg,
                std::mem::take(&mut call.headers),
                trailers,
            ))
        }
        .instrument(span.span.clone())
        .await;
        span.finish(result.as_ref().err());
        result
    }

    /// Makes a server-streaming call to `path` (generated clients call
    /// this). The returned stream yields the messages as they arrive.
    ///
    /// # Errors
    /// As for [`Client::unary`]; errors after the response headers arrive
    /// come out of the stream.
    ///
    /// # Cancel safety
    /// Dropping the future or the stream cancels the call on the server.
    pub fn server_streaming<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        req: &Req,
        options: CallOptions,
    ) -> impl Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static {
        let client = self.clone();
        let prepared = self.prepare(path, req, options);
        Box::pin(async move { client.server_streaming_prepared(path, prepared).await })
    }

    async fn server_streaming_prepared<Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
    ) -> Result<Streaming<Resp>, Status> {
        let mut span = CallSpan::new(path);
        let result = async {
            let mut call = self.start(prepared?).await?;
            // Wait for the response headers so that call-level errors
            // (unknown method, bad request...) come back here.
            std::future::poll_fn(|cx| call.poll_headers(cx)).await?;
            let headers = std::mem::take(&mut call.headers);
            Ok((call, headers))
        }
        .instrument(span.span.clone())
        .await;
        match result {
            Ok((call, headers)) => Ok(Streaming::new(DecodeStream::<Resp> {
                call,
                span,
                _t: std::marker::PhantomData,
            })
            .with_metadata(headers)),
            Err(e) => {
                span.finish(Some(&e));
                Err(e)
            }
        }
    }
}

/// The span of one client call; it covers the call from start to end.
struct CallSpan {
    span: tracing::Span,
    started: Instant,
    done: bool,
}

impl CallSpan {
    fn new(path: &str) -> Self {
        let (service, method) = wire::split_path(path).unwrap_or(("", path));
        CallSpan {
            span: tracing::debug_span!(
                "knafeh.client",
                service,
                method,
                code = tracing::field::Empty,
                duration_us = tracing::field::Empty,
            ),
            started: Instant::now(),
            done: false,
        }
    }

    /// Records how the call ended.
    fn finish(&mut self, err: Option<&Status>) {
        self.done = true;
        let code = err.map_or(Code::Ok, Status::code);
        self.span.record("code", code.as_str());
        self.span
            .record("duration_us", self.started.elapsed().as_micros() as u64);
        let _enter = self.span.enter();
        match err {
            Some(e) => tracing::debug!(code = code.as_str(), message = e.message(), "call failed"),
            None => tracing::debug!("call finished"),
        }
    }
}

impl Drop for CallSpan {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before it ended: the caller cancelled it.
            self.done = true;
            self.span.record("code", Code::Cancelled.as_str());
            self.span
                .record("duration_us", self.started.elapsed().as_micros() as u64);
        }
    }
}

fn decode_response<T: Message>(path: &str, codec: Codec, payload: &[u8]) -> Result<T, Status> {
    T::decode_message(codec, payload).map_err(|e| {
        Status::internal(format!(
            "{path}: response does not decode as {} ({}): {e}",
            std::any::type_name::<T>(),
            codec.content_type()
        ))
    })
}

fn deadline_status(path: &str) -> Status {
    Status::deadline_exceeded(format!("{path}: deadline passed"))
}

struct DecodeStream<T> {
    call: ActiveCall,
    span: CallSpan,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Message> Stream for DecodeStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let (path, codec) = (this.call.path, this.call.codec);
        let mut decode = |b: &[u8]| decode_response::<T>(path, codec, b);
        match this.call.poll_message(cx, &mut decode) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                if !this.span.done {
                    this.span.finish(None);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                this.span.finish(Some(&status));
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(decoded))) => Poll::Ready(Some(decoded)),
        }
    }
}

/// Cancels the stream when a call is dropped before it finished.
struct CancelGuard {
    cmd: mpsc::UnboundedSender<Command>,
    slot: Arc<AtomicU64>,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.cmd.send(Command::Cancel(self.slot.clone()));
        }
    }
}

/// A request ready to be sent.
struct Prepared {
    path: &'static str,
    body: Bytes,
    deadline: Option<Instant>,
    metadata: Metadata,
}

enum State {
    AwaitHeaders,
    Messages,
    /// The final status arrived; buffered messages are still handed out
    /// before it.
    Ending(Status),
    Done,
}

struct ActiveCall {
    path: &'static str,
    codec: Codec,
    events: mpsc::UnboundedReceiver<StreamEvent>,
    guard: CancelGuard,
    decoder: Decoder,
    window: Arc<RecvWindow>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    state: State,
    headers: Metadata,
    trailers: Option<Metadata>,
    /// The connection's shared state (why it closed, if it did).
    conn: Arc<ConnShared>,
    /// Counts the call against its endpoint until it is dropped.
    _load: LoadGuard,
}

fn headers_view(h: &[h3::Header]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    use tokio_quiche::quiche::h3::NameValue;
    h.iter().map(|x| (x.name(), x.value()))
}

fn frame_status(path: &str, e: crate::proto::frame::FrameError) -> Status {
    let code = match e {
        crate::proto::frame::FrameError::TooLarge { .. } => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    Status::new(code, format!("{path}: response: {e}"))
}

impl ActiveCall {
    /// Ends the call with `status` (the stream is aborted if still open).
    fn fail(&mut self, status: Status) -> Status {
        self.state = State::Done;
        status
    }

    /// Next event, or a status when the deadline passes (checked first, so
    /// a backlog of events cannot outlive the deadline).
    fn poll_event(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<StreamEvent, Status>> {
        let expired = match &mut self.deadline {
            Some(sleep) => {
                sleep.as_mut().poll(cx).is_ready() || Instant::now() >= sleep.deadline().into_std()
            }
            None => false,
        };
        if expired {
            return Poll::Ready(Err(self.fail(deadline_status(self.path))));
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(StreamEvent::Reset(code))) => {
                // The server ended the stream; nothing to cancel.
                self.guard.armed = false;
                let why = if code == H3_REQUEST_REJECTED {
                    "the server refused the call (it is shutting down)".to_owned()
                } else {
                    format!("the server reset the stream (HTTP/3 error 0x{code:x})")
                };
                Poll::Ready(Err(
                    self.fail(Status::unavailable(format!("{}: {why}", self.path)))
                ))
            }
            Poll::Ready(Some(ev)) => Poll::Ready(Ok(ev)),
            Poll::Ready(None) => {
                let why = match self.conn.close_reason() {
                    Some(reason) => format!(": {reason}"),
                    None => String::new(),
                };
                Poll::Ready(Err(self.fail(Status::unavailable(format!(
                    "{}: connection closed before the call finished{why}",
                    self.path
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits for the response headers. A trailers-only response moves the
    /// call straight to its end; a non-OK one is returned as the error.
    fn poll_headers(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        loop {
            match self.state {
                State::AwaitHeaders => {}
                State::Done => return Poll::Ready(Ok(())),
                _ => return Poll::Ready(Ok(())),
            }
            let ev = match self.poll_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(s)) => return Poll::Ready(Err(s)),
                Poll::Ready(Ok(ev)) => ev,
            };
            match ev {
                StreamEvent::Headers(h) => match wire::parse_response_head(headers_view(&h)) {
                    ResponseHead::Messages(md) => {
                        self.headers = md;
                        self.state = State::Messages;
                    }
                    ResponseHead::Done(status) if status.code() == Code::Ok => {
                        self.state = State::Ending(status);
                    }
                    ResponseHead::Done(status) => {
                        self.guard.armed = false;
                        return Poll::Ready(Err(self.fail(status)));
                    }
                },
                StreamEvent::Finished => {
                    let s =
                        Status::internal(format!("{}: response ended without headers", self.path));
                    return Poll::Ready(Err(self.fail(s)));
                }
                StreamEvent::Data(_) | StreamEvent::Trailers(_) => {
                    let s =
                        Status::internal(format!("{}: response body before headers", self.path));
                    return Poll::Ready(Err(self.fail(s)));
                }
                StreamEvent::Reset(_) => {}
            }
        }
    }

    /// The next message payload; `None` after an OK status.
    /// The next response message, given to `f` where it lies in the
    /// receive buffer (no copy, no allocation).
    fn poll_message<R>(
        &mut self,
        cx: &mut TaskContext<'_>,
        f: &mut impl FnMut(&[u8]) -> R,
    ) -> Poll<Option<Result<R, Status>>> {
        loop {
            match &self.state {
                State::AwaitHeaders => match self.poll_headers(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(s)) => return Poll::Ready(Some(Err(s))),
                    Poll::Ready(Ok(())) => continue,
                },
                State::Done => return Poll::Ready(None),
                State::Messages | State::Ending(_) => {}
            }
            match self.decoder.next_message_with(&mut *f) {
                Ok(Some(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(None) => {}
                Err(e) => {
                    let s = frame_status(self.path, e);
                    return Poll::Ready(Some(Err(self.fail(s))));
                }
            }
            if let State::Ending(_) = self.state {
                let State::Ending(status) = std::mem::replace(&mut self.state, State::Done) else {
                    return Poll::Ready(None);
                };
                self.guard.armed = false;
                if let Err(e) = self.decoder.finish() {
                    return Poll::Ready(Some(Err(frame_status(self.path, e))));
                }
                return if status.code() == Code::Ok {
                    self.trailers = Some(status.metadata().clone());
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(status)))
                };
            }
            let ev = match self.poll_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(s)) => return Poll::Ready(Some(Err(s))),
                Poll::Ready(Ok(ev)) => ev,
            };
            match ev {
                StreamEvent::Data(bytes) => {
                    if self.window.release(bytes.len()) {
                        let id = self.guard.slot.load(Ordering::Acquire);
                        let _ = self.guard.cmd.send(Command::Resume(id));
                    }
                    if let Err(e) = self.decoder.push(&bytes) {
                        let s = frame_status(self.path, e);
                        return Poll::Ready(Some(Err(self.fail(s))));
                    }
                }
                StreamEvent::Trailers(h) => {
                    self.state = State::Ending(wire::parse_trailers(headers_view(&h)));
                }
                StreamEvent::Finished => {
                    let s = Status::internal(format!(
                        "{}: response ended without grpc-status",
                        self.path
                    ));
                    return Poll::Ready(Some(Err(self.fail(s))));
                }
                StreamEvent::Headers(_) | StreamEvent::Reset(_) => {}
            }
        }
    }
}

fn current(ep: &Endpoint) -> Option<ConnHandle> {
    lock(&ep.conn).as_ref().filter(|c| c.alive()).cloned()
}

async fn dial(cfg: &ClientBuilder, addr: &str) -> Result<ConnHandle, Status> {
    let (host, _port) = host_port(addr)?;
    if let Some(ca) = &cfg.ca_file {
        if !cfg.insecure {
            std::fs::metadata(ca)
                .map_err(|e| Status::invalid_argument(format!("CA file {}: {e}", ca.display())))?;
        }
    }
    let peer: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Status::unavailable(format!("resolving {}: {e}", addr)))?
        .next()
        .ok_or_else(|| Status::unavailable(format!("{} resolves to no address", addr)))?;
    let local: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let io_err = |what: &str, e: std::io::Error| Status::unavailable(format!("{what} {peer}: {e}"));
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| io_err("binding a socket for", e))?;
    socket
        .connect(peer)
        .await
        .map_err(|e| io_err("connecting to", e))?;
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let mut socket: tokio_quiche::socket::Socket<_, _> = socket
        .try_into()
        .map_err(|e| io_err("preparing socket for", e))?;
    // Segmentation offload and the other socket options the server side
    // gets from `tokio_quiche::listen`.
    #[cfg(target_os = "linux")]
    socket.apply_max_capabilities();

    let server_name = cfg.server_name.clone().unwrap_or_else(|| host.to_owned());
    let mut settings = crate::transport::conn::quic_settings();
    settings.max_idle_timeout = Some(cfg.idle_timeout);
    settings.handshake_timeout = Some(cfg.connect_timeout);
    let ip = server_name.parse::<std::net::IpAddr>().ok();
    let refusal = Arc::new(Refusal::default());
    let tls = ClientTlsConfig {
        ca_file: cfg.ca_file.clone(),
        insecure: cfg.insecure,
        ip,
        server_name: server_name.clone(),
        identity: cfg.identity.clone(),
        refusal: refusal.clone(),
    };
    let hook = TlsHook::new(move || client_context(&tls))
        .map_err(|e| Status::invalid_argument(format!("client TLS configuration: {e}")))?;
    // tokio-quiche only consults the TLS hook when certificate paths are
    // set; the hook ignores them.
    let params = ConnectionParams::new_client(
        settings,
        Some(TlsCertificatePaths {
            cert: "",
            private_key: "",
            kind: CertificateKind::X509,
        }),
        Hooks {
            connection_hook: Some(Arc::new(hook)),
        },
    );
    let h3_config =
        h3::Config::new().map_err(|e| Status::internal(format!("HTTP/3 config: {e}")))?;
    let (app, cmd, shared) = H3App::client(h3_config, peer, cfg.keepalive);
    // quiche checks the name it is given as a DNS name; an IP address is
    // checked by the verify callback instead (and is not sent as SNI).
    let host = if ip.is_some() {
        None
    } else {
        Some(server_name.as_str())
    };
    let connect = tokio_quiche::quic::connect_with_config(socket, host, &params, app);
    let outcome = tokio::select! {
        r = tokio::time::timeout(cfg.connect_timeout, connect) => r,
        reason = refusal.wait() => {
            return Err(Status::unavailable(format!(
                "connecting to {} ({peer}) as {server_name:?}: {reason}",
                addr
            )))
        }
    };
    match outcome {
        Ok(Ok(_conn)) => {}
        Ok(Err(e)) => {
            return Err(Status::unavailable(format!(
                "connecting to {} ({peer}) as {server_name:?}: {e}",
                addr
            )))
        }
        Err(_) => {
            return Err(Status::unavailable(format!(
                "connecting to {} ({peer}): no handshake within {:?}",
                addr, cfg.connect_timeout
            )))
        }
    }
    tracing::debug!(addr = %addr, %peer, "connected");
    Ok(ConnHandle {
        cmd,
        shared,
        authority: Arc::from(addr),
    })
}

/// Splits `host:port`, `[v6]:port`.
/// `addr` split into host and port, or `INVALID_ARGUMENT`.
fn host_port(addr: &str) -> Result<(&str, &str), Status> {
    split_host_port(addr).ok_or_else(|| {
        Status::invalid_argument(format!("bad address {:?}: expected host:port", addr))
    })
}

fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        let port = rest.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') || port.is_empty() {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_backoff_doubles_up_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|f| endpoint_backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
