//! The server: a builder, the accept loop, per-call handling, graceful
//! shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quiche::h3;
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::ConnectionParams;
use tracing::Instrument;

use crate::conn::{Command, ConnShared, H3App, IncomingStream, Out, RecvWindow, StreamEvent};
use crate::frame::Decoder;
use crate::service::{next_catching, Call, CatchUnwind, Reply, Service};
use crate::wire;
use crate::{Codec, Context, Status};

/// Default largest message accepted, in bytes (4 MiB, as in gRPC).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Entry point for building a server; see [`ServerBuilder`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Configures and starts a [`Server`].
///
/// ```no_run
/// # async fn run(svc: impl knafeh::__private::Service) -> std::io::Result<()> {
/// let server = knafeh::Server::builder()
///     .bind("127.0.0.1:0".parse().unwrap())
///     .tls("cert.pem", "key.pem")
///     .add_service(svc)
///     .start()
///     .await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct ServerBuilder {
    addr: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    services: HashMap<&'static str, Arc<dyn Service>>,
    duplicate: Option<&'static str>,
    max_message_size: usize,
    max_concurrent_streams: u64,
    idle_timeout: Duration,
    drain_timeout: Duration,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: None,
            key: None,
            services: HashMap::new(),
            duplicate: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_concurrent_streams: 100,
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The UDP address to listen on (default `127.0.0.1:0`; port 0 picks a
    /// free port, see [`ServerHandle::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The PEM certificate chain and private key the server presents.
    /// Required.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// Adds a service (a generated `{Trait}Server`). Adding two services
    /// with the same name makes [`ServerBuilder::start`] fail.
    pub fn add_service(mut self, service: impl Service) -> Self {
        let name = service.name();
        if self.services.insert(name, Arc::new(service)).is_some() {
            self.duplicate = Some(name);
        }
        self
    }

    /// Largest request message accepted, in bytes (default 4 MiB). A larger
    /// one is answered with `RESOURCE_EXHAUSTED` without being read.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many calls one connection may have open at once (default 100);
    /// further calls wait in the client until one finishes.
    pub fn max_concurrent_streams(mut self, streams: u64) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// Closes connections idle for this long (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long [`ServerHandle::shutdown`] lets in-flight calls run
    /// (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Binds the socket and starts serving in the background.
    ///
    /// # Errors
    /// No TLS configured, a service added twice, the address in use, or a
    /// certificate or key that cannot be loaded.
    pub async fn start(self) -> io::Result<ServerHandle> {
        if let Some(name) = self.duplicate {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("service {name} was added twice"),
            ));
        }
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the server needs a certificate and key: call ServerBuilder::tls \
                 (knafeh::DevCert makes a development pair)",
            ));
        };
        let cert = path_str(cert)?;
        let key = path_str(key)?;
        for p in [&cert, &key] {
            std::fs::metadata(p).map_err(|e| io::Error::new(e.kind(), format!("{p}: {e}")))?;
        }
        let socket = std::net::UdpSocket::bind(self.addr)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", self.addr)))?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;

        let mut settings = QuicSettings::default();
        // knafeh uses no HTTP datagrams; don't advertise them.
        settings.enable_dgram = false;
        settings.initial_max_streams_bidi = self.max_concurrent_streams;
        settings.max_idle_timeout = Some(self.idle_timeout);
        let params = ConnectionParams::new_server(
            settings,
            TlsCertificatePaths {
                cert: &cert,
                private_key: &key,
                kind: CertificateKind::X509,
            },
            Hooks::default(),
        );
        let mut listeners =
            tokio_quiche::listen([socket], params, DefaultMetrics).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("starting QUIC listener (check {cert} and {key}): {e}"),
                )
            })?;
        let accept = listeners
            .pop()
            .ok_or_else(|| io::Error::other("no listener"))?;

        let state = Arc::new(ServerState {
            services: self.services,
            max_message_size: self.max_message_size,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            accept,
            state.clone(),
            stop_rx,
            self.drain_timeout,
            local_addr,
        ));
        tracing::info!(%local_addr, "knafeh server listening");
        Ok(ServerHandle {
            local_addr,
            stop: Some(stop_tx),
            task,
        })
    }
}

fn path_str(p: &std::path::Path) -> io::Result<String> {
    p.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path is not UTF-8: {}", p.display()),
        )
    })
}

/// A running server. Dropping the handle shuts the server down
/// gracefully in the background; keep it for as long as the server should
/// run.
#[derive(Debug)]
#[must_use = "dropping the handle shuts the server down"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful shutdown: stop accepting connections and calls (new calls
    /// get `UNAVAILABLE`), let in-flight calls finish within the drain
    /// timeout, then close every connection.
    ///
    /// # Cancel safety
    /// Dropping the future part-way leaves the shutdown running in the
    /// background.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

struct ServerState {
    services: HashMap<&'static str, Arc<dyn Service>>,
    max_message_size: usize,
    inflight: AtomicUsize,
    idle: Notify,
}

struct InflightGuard(Arc<ServerState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

type ConnList = Vec<(mpsc::UnboundedSender<Command>, Arc<ConnShared>)>;

/// Starts serving one accepted connection.
fn start_connection(
    initial: tokio_quiche::InitialQuicConnection<tokio::net::UdpSocket, DefaultMetrics>,
    state: &Arc<ServerState>,
    conns: &mut ConnList,
    draining: bool,
) {
    let peer = initial.peer_addr();
    let st = state.clone();
    let on_request: crate::conn::OnRequest =
        Arc::new(move |incoming: IncomingStream, peer: SocketAddr| {
            st.inflight.fetch_add(1, Ordering::AcqRel);
            let guard = InflightGuard(st.clone());
            tokio::spawn(handle_call(st.clone(), incoming, peer, guard));
        });
    let h3_config = match h3::Config::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create an HTTP/3 config; dropping connection");
            return;
        }
    };
    let (app, cmd, shared) = H3App::server(h3_config, peer, on_request, draining);
    initial.start(app);
    conns.retain(|(_, s)| !s.closed.load(Ordering::Acquire));
    conns.push((cmd, shared));
    tracing::debug!(%peer, draining, "connection accepted");
}

type Accept = tokio_quiche::QuicConnectionStream<DefaultMetrics>;

async fn next_connection(
    accept: &mut Accept,
) -> Option<tokio_quiche::InitialQuicConnection<tokio::net::UdpSocket, DefaultMetrics>> {
    loop {
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut *accept), cx)
        })
        .await;
        match next {
            Some(Ok(c)) => return Some(c),
            Some(Err(e)) => tracing::debug!(error = %e, "rejected connection attempt"),
            None => return None,
        }
    }
}

async fn wait_closed(shared: &ConnShared) {
    loop {
        let closed = shared.closed_notify.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        closed.await;
    }
}

async fn accept_loop(
    mut accept: Accept,
    state: Arc<ServerState>,
    mut stop: oneshot::Receiver<()>,
    drain_timeout: Duration,
    local_addr: SocketAddr,
) {
    let mut conns = ConnList::new();
    // Serve until told to stop (or until the handle is dropped).
    loop {
        tokio::select! {
            _ = &mut stop => break,
            next = next_connection(&mut accept) => match next {
                Some(initial) => start_connection(initial, &state, &mut conns, false),
                None => break,
            },
        }
    }

    // Drain: GOAWAY everywhere; from the moment each connection has
    // processed it, no new call is accepted there, so the in-flight count
    // can only fall.
    let mut acks = Vec::new();
    for (cmd, _) in &conns {
        let (tx, rx) = oneshot::channel();
        if cmd.send(Command::GoAway(tx)).is_ok() {
            acks.push(rx);
        }
    }
    let drain_deadline = tokio::time::Instant::now() + drain_timeout;
    let _ = tokio::time::timeout_at(drain_deadline, async {
        for ack in acks {
            let _ = ack.await;
        }
    })
    .await;
    // Connections that arrive meanwhile are accepted and refuse every call,
    // so their clients get UNAVAILABLE at once instead of a handshake
    // timeout.
    let drained = loop {
        let idle = state.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if state.inflight.load(Ordering::Acquire) == 0 {
            break true;
        }
        tokio::select! {
            _ = idle => {}
            _ = tokio::time::sleep_until(drain_deadline) => break false,
            Some(initial) = next_connection(&mut accept) => start_connection(initial, &state, &mut conns, true),
        }
    };
    if !drained {
        tracing::warn!(
            inflight = state.inflight.load(Ordering::Acquire),
            "drain timeout passed; closing connections with calls in flight"
        );
    }
    drop(accept);

    // Close politely (after the last responses are acknowledged), then
    // force the connections that have not closed within a second.
    for force in [false, true] {
        let live: Vec<_> = conns
            .iter()
            .filter(|(cmd, shared)| {
                !shared.closed.load(Ordering::Acquire) && cmd.send(Command::Close { force }).is_ok()
            })
            .map(|(_, shared)| shared.clone())
            .collect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            for shared in &live {
                wait_closed(shared).await;
            }
        })
        .await;
    }

    // tokio-quiche's listener task owns the socket and ends on its own once
    // its connections are gone; wait (bounded) until the port is free so
    // that `shutdown` returning means the address can be bound again.
    let released = tokio::time::timeout(Duration::from_secs(2), async {
        while std::net::UdpSocket::bind(local_addr).is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if released.is_err() {
        tracing::warn!(%local_addr, "the UDP socket was still open 2 s after shutdown");
    }
    tracing::info!("knafeh server stopped");
}

fn to_h3(block: wire::Block) -> Vec<h3::Header> {
    block.iter().map(|(n, v)| h3::Header::new(n, v)).collect()
}

fn view(headers: &[h3::Header]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    use tokio_quiche::quiche::h3::NameValue;
    headers.iter().map(|h| (h.name(), h.value()))
}

enum Outcome {
    Done(Status),
    Cancelled,
}

async fn handle_call(
    state: Arc<ServerState>,
    incoming: IncomingStream,
    peer: SocketAddr,
    _guard: InflightGuard,
) {
    let IncomingStream {
        headers,
        window,
        mut events,
        tx,
    } = incoming;
    let start = Instant::now();
    let head = wire::parse_request(view(&headers));
    let (service_name, method_name) = match &head {
        Ok(h) => (h.service.clone(), h.method.clone()),
        Err(_) => (String::new(), String::new()),
    };
    let span = tracing::info_span!(
        "knafeh.server",
        service = %service_name,
        method = %method_name,
        %peer,
        code = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    let fut = async move {
        let outcome = match head {
            Err(refusal) => {
                // Answer in the request's codec when it named a known one.
                let codec = view(&headers)
                    .find(|(n, _)| *n == b"content-type")
                    .and_then(|(_, v)| Codec::from_content_type(v))
                    .unwrap_or_default();
                tx.send(Out::Headers(
                    to_h3(wire::trailers_only(
                        refusal.http_status,
                        codec,
                        &refusal.status,
                    )),
                    true,
                ))
                .await;
                tx.stop_reading();
                Outcome::Done(refusal.status)
            }
            Ok(head) => serve(&state, head, &mut events, &tx, &window, peer).await,
        };
        let span = tracing::Span::current();
        match &outcome {
            Outcome::Done(status) => {
                span.record("code", status.code().as_str());
                span.record("duration_us", start.elapsed().as_micros() as u64);
                if status.code() == crate::Code::Internal {
                    tracing::warn!(
                        code = status.code().as_str(),
                        message = status.message(),
                        "call failed"
                    );
                } else {
                    tracing::debug!(code = status.code().as_str(), "call finished");
                }
            }
            Outcome::Cancelled => {
                span.record("code", "CANCELLED");
                span.record("duration_us", start.elapsed().as_micros() as u64);
                tracing::debug!("call cancelled by the client");
            }
        }
    };
    fut.instrument(span).await
}

async fn serve(
    state: &ServerState,
    head: wire::RequestHead,
    events: &mut mpsc::UnboundedReceiver<StreamEvent>,
    tx: &crate::conn::StreamTx,
    window: &RecvWindow,
    peer: SocketAddr,
) -> Outcome {
    let codec = head.codec;
    let deadline = head.timeout.map(|t| Instant::now() + t);
    let refuse = |status: Status| async move {
        tx.send(Out::Headers(
            to_h3(wire::trailers_only(200, codec, &status)),
            true,
        ))
        .await;
        tx.stop_reading();
        Outcome::Done(status)
    };
    let Some(service) = state.services.get(head.service.as_str()) else {
        return refuse(Status::unimplemented(format!(
            "unknown service {}",
            head.service
        )))
        .await;
    };
    if !service.has_method(&head.method) {
        return refuse(Status::unimplemented(format!(
            "unknown method {} of service {}",
            head.method, head.service
        )))
        .await;
    }

    // Read the one request message.
    let payload = match read_request(state, &head, events, deadline, tx, window).await {
        Ok(p) => p,
        Err(Some(status)) => return refuse(status).await,
        Err(None) => return Outcome::Cancelled,
    };

    let ctx = Context::new(head.path.clone(), head.metadata, deadline, peer);
    let call = Call {
        codec,
        payload,
        ctx: ctx.clone(),
    };
    let handler = CatchUnwind(service.call(&head.method, call));
    let reply = match guarded(handler, events, deadline).await {
        Guarded::Cancelled => return Outcome::Cancelled,
        Guarded::Deadline => {
            return refuse(Status::deadline_exceeded(
                "deadline passed before the handler finished",
            ))
            .await
        }
        Guarded::Done(Err(panic)) => {
            tracing::error!(path = %head.path, panic = %panic, "handler panicked");
            return refuse(Status::internal(format!(
                "handler for {} panicked",
                head.path
            )))
            .await;
        }
        Guarded::Done(Ok(Err(status))) => {
            // Metadata the handler attached goes out with its error.
            let mut md = ctx.take_response_metadata();
            md.extend(status.metadata().clone());
            return refuse(status.with_metadata(md)).await;
        }
        Guarded::Done(Ok(Ok(reply))) => reply,
    };

    let md = ctx.take_response_metadata();
    let headers = to_h3(wire::response_headers(codec, &md));
    let mut stream = match reply {
        Reply::Unary(frame) => {
            let ok = Status::new(crate::Code::Ok, "");
            if !tx
                .send_response(headers, frame, to_h3(wire::trailers(&ok)))
                .await
            {
                return Outcome::Cancelled;
            }
            return Outcome::Done(ok);
        }
        Reply::Stream(stream) => stream,
    };
    if !tx.send(Out::Headers(headers, false)).await {
        return Outcome::Cancelled;
    }
    let status = {
        loop {
            let next = next_catching(&mut stream);
            match guarded(Box::pin(next), events, deadline).await {
                Guarded::Cancelled => return Outcome::Cancelled,
                Guarded::Deadline => {
                    break Status::deadline_exceeded("deadline passed while streaming")
                }
                Guarded::Done(Err(panic)) => {
                    tracing::error!(path = %head.path, panic = %panic, "stream producer panicked");
                    break Status::internal(format!("stream producer for {} panicked", head.path));
                }
                Guarded::Done(Ok(None)) => break Status::new(crate::Code::Ok, ""),
                Guarded::Done(Ok(Some(Err(status)))) => break status,
                Guarded::Done(Ok(Some(Ok(frame)))) => {
                    // Waiting for send credit (a client that reads slowly)
                    // still ends at the deadline or on cancellation.
                    match guarded(
                        Box::pin(tx.send(Out::Data(frame, false, 0))),
                        events,
                        deadline,
                    )
                    .await
                    {
                        Guarded::Done(true) => {}
                        Guarded::Done(false) | Guarded::Cancelled => return Outcome::Cancelled,
                        Guarded::Deadline => {
                            break Status::deadline_exceeded("deadline passed while streaming")
                        }
                    }
                }
            }
        }
    };
    if !tx.send(Out::Trailers(to_h3(wire::trailers(&status)))).await {
        return Outcome::Cancelled;
    }
    Outcome::Done(status)
}

/// Reads the single request message. `Err(None)` means the client went
/// away; `Err(Some(status))` is the answer to give.
async fn read_request(
    state: &ServerState,
    head: &wire::RequestHead,
    events: &mut mpsc::UnboundedReceiver<StreamEvent>,
    deadline: Option<Instant>,
    tx: &crate::conn::StreamTx,
    window: &RecvWindow,
) -> Result<Bytes, Option<Status>> {
    let mut decoder = Decoder::new(state.max_message_size);
    let mut message: Option<Bytes> = None;
    let frame_err = |e: crate::frame::FrameError| {
        use crate::frame::FrameError;
        let msg = format!("{}: {e}", head.path);
        Some(match e {
            FrameError::TooLarge { .. } => Status::resource_exhausted(msg),
            FrameError::Compressed => Status::unimplemented(msg),
            FrameError::BadFlag(_) | FrameError::Truncated { .. } => Status::invalid_argument(msg),
        })
    };
    loop {
        let ev = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), events.recv()).await {
                Ok(ev) => ev,
                Err(_) => {
                    return Err(Some(Status::deadline_exceeded(
                        "deadline passed while reading the request",
                    )))
                }
            },
            None => events.recv().await,
        };
        match ev {
            Some(StreamEvent::Data(bytes)) => {
                tx.consumed(window, bytes.len());
                decoder.push(&bytes).map_err(frame_err)?;
                while let Some(m) = decoder.next_message().map_err(frame_err)? {
                    if message.is_some() {
                        return Err(Some(Status::invalid_argument(format!(
                            "{}: more than one request message for a unary or server-streaming method",
                            head.path
                        ))));
                    }
                    message = Some(m);
                }
            }
            Some(StreamEvent::Finished) => break,
            Some(StreamEvent::Reset(_)) | None => return Err(None),
            Some(StreamEvent::Headers(_)) | Some(StreamEvent::Trailers(_)) => {}
        }
    }
    decoder.finish().map_err(frame_err)?;
    message.ok_or_else(|| {
        Some(Status::invalid_argument(format!(
            "{}: request has no message",
            head.path
        )))
    })
}

enum Guarded<T> {
    Done(T),
    Cancelled,
    Deadline,
}

/// Runs `fut` until it completes, the client cancels, or the deadline.
async fn guarded<F: Future + Unpin>(
    mut fut: F,
    events: &mut mpsc::UnboundedReceiver<StreamEvent>,
    deadline: Option<Instant>,
) -> Guarded<F::Output> {
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    // tokio's timer fires a passed deadline only on its next tick; check
    // it here so that a passed deadline always wins.
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Guarded::Deadline;
    }
    loop {
        tokio::select! {
            // The deadline first: a deadline that has passed wins even over
            // a handler that is ready at once.
            biased;
            _ = &mut sleep => return Guarded::Deadline,
            out = &mut fut => return Guarded::Done(out),
            ev = events.recv() => match ev {
                // A reset, or the connection is gone: nobody can receive
                // the answer.
                Some(StreamEvent::Reset(_)) | None => return Guarded::Cancelled,
                Some(_) => {}
            },
        }
    }
}
