//! A bare HTTP/3 client for sending requests knafeh's client would never
//! send: any header block (including non-UTF-8 bytes and blocks over the
//! server's limit), bodies sent in pieces with or without FIN, streams kept
//! open, many streams on one connection.
//!
//! It drives `quiche::h3` directly inside a tokio-quiche connection (its
//! own `ApplicationOverQuic`), so it sees everything the server does on a
//! stream: every header block (response headers *and* trailers), body
//! bytes, FIN, RESET_STREAM and STOP_SENDING, and how the connection ended.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_quiche::quic::{ConnectionHook, HandshakeInfo, QuicheConnection};
use tokio_quiche::quiche::h3::{self, NameValue};
use tokio_quiche::quiche::Shutdown;
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ApplicationOverQuic, ConnectionParams, QuicResult};

/// HTTP/3 `H3_REQUEST_CANCELLED`.
pub const H3_REQUEST_CANCELLED: u64 = 0x10c;
/// HTTP/3 `H3_REQUEST_REJECTED`.
pub const H3_REQUEST_REJECTED: u64 = 0x10b;
/// HTTP/3 `H3_EXCESSIVE_LOAD`.
pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
/// HTTP/3 `H3_NO_ERROR`.
pub const H3_NO_ERROR: u64 = 0x100;

struct NoVerify;

impl ConnectionHook for NoVerify {
    fn create_custom_ssl_context_builder(
        &self,
        _: TlsCertificatePaths<'_>,
    ) -> Option<boring::ssl::SslContextBuilder> {
        use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode};
        let mut b = SslContextBuilder::new(SslMethod::tls()).ok()?;
        b.set_verify(SslVerifyMode::NONE);
        Some(b)
    }
}

/// A header block, as (name, value) strings (bytes that are not UTF-8 are
/// replaced).
pub type RawHeaders = Vec<(String, String)>;

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The peer sent CONNECTION_CLOSE (otherwise this side closed it).
    pub by_peer: bool,
    /// Application (HTTP/3) error code rather than a transport one.
    pub is_app: bool,
    /// The error code (0 when there was none, e.g. an idle timeout).
    pub error_code: u64,
    /// The reason phrase.
    pub reason: String,
    /// The connection ended because of its idle timeout.
    pub timed_out: bool,
}

/// Something that happened on a request stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawEvent {
    /// A header block: the response headers, then trailers.
    Headers(RawHeaders),
    /// Response body bytes.
    Data(Vec<u8>),
    /// The server finished its side (FIN).
    Finished,
    /// The server reset its side (RESET_STREAM) with this code.
    Reset(u64),
    /// The server asked this side to stop sending (STOP_SENDING).
    StopSending(u64),
    /// The connection closed.
    ConnectionClosed(CloseInfo),
}

enum Cmd {
    Open {
        headers: Vec<h3::Header>,
        body: Vec<u8>,
        fin: bool,
        events: mpsc::UnboundedSender<RawEvent>,
        opened: oneshot::Sender<u64>,
    },
    Send {
        id: u64,
        data: Vec<u8>,
        fin: bool,
    },
    Trailers {
        id: u64,
        headers: Vec<h3::Header>,
    },
    Abort {
        id: u64,
        code: u64,
    },
    StreamsLeft(oneshot::Sender<u64>),
    Close(u64),
}

struct PendingOpen {
    headers: Vec<h3::Header>,
    body: Vec<u8>,
    fin: bool,
    events: mpsc::UnboundedSender<RawEvent>,
    opened: oneshot::Sender<u64>,
}

/// Something queued for sending on a stream.
enum Piece {
    /// Body bytes, and whether they end the stream.
    Body(Vec<u8>, bool),
    /// A trailing header block, which ends the stream.
    Trailers(Vec<h3::Header>),
}

struct StreamState {
    events: mpsc::UnboundedSender<RawEvent>,
    /// Body pieces not yet accepted by quiche, and whether each ends the
    /// stream.
    out: VecDeque<Piece>,
    local_done: bool,
    remote_done: bool,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    close: Mutex<Option<CloseInfo>>,
    closed: Notify,
    goaway: Mutex<Option<u64>>,
}

struct App {
    h3: Option<h3::Connection>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    queued: Vec<Cmd>,
    pending: VecDeque<PendingOpen>,
    streams: HashMap<u64, StreamState>,
    shared: Arc<Shared>,
    close_with: Option<u64>,
    buf: Vec<u8>,
}

fn to_strings(list: &[h3::Header]) -> RawHeaders {
    list.iter()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name()).into_owned(),
                String::from_utf8_lossy(h.value()).into_owned(),
            )
        })
        .collect()
}

impl App {
    fn handle(&mut self, qconn: &mut QuicheConnection, cmd: Cmd) {
        match cmd {
            Cmd::Open {
                headers,
                body,
                fin,
                events,
                opened,
            } => self.pending.push_back(PendingOpen {
                headers,
                body,
                fin,
                events,
                opened,
            }),
            Cmd::Send { id, data, fin } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    if !s.local_done && !s.stopped {
                        s.out.push_back(Piece::Body(data, fin));
                    }
                }
            }
            Cmd::Trailers { id, headers } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    if !s.local_done && !s.stopped {
                        s.out.push_back(Piece::Trailers(headers));
                    }
                }
            }
            Cmd::Abort { id, code } => {
                let _ = qconn.stream_shutdown(id, Shutdown::Read, code);
                let _ = qconn.stream_shutdown(id, Shutdown::Write, code);
                if let Some(s) = self.streams.get_mut(&id) {
                    s.out.clear();
                    s.local_done = true;
                }
            }
            Cmd::StreamsLeft(reply) => {
                // Opens queued before this query are tried first.
                self.open_pending(qconn);
                let _ = reply.send(qconn.peer_streams_left_bidi());
            }
            Cmd::Close(code) => self.close_with = Some(code),
        }
    }

    fn open_pending(&mut self, qconn: &mut QuicheConnection) {
        let Some(h3) = self.h3.as_mut() else { return };
        while let Some(p) = self.pending.front() {
            if qconn.peer_streams_left_bidi() == 0 {
                return;
            }
            let fin_now = p.fin && p.body.is_empty();
            match h3.send_request(qconn, &p.headers, fin_now) {
                Ok(id) => {
                    let Some(p) = self.pending.pop_front() else {
                        return;
                    };
                    let mut out = VecDeque::new();
                    if !fin_now && (!p.body.is_empty() || p.fin) {
                        out.push_back(Piece::Body(p.body, p.fin));
                    }
                    let _ = p.opened.send(id);
                    self.streams.insert(
                        id,
                        StreamState {
                            events: p.events,
                            out,
                            local_done: fin_now,
                            remote_done: false,
                            stopped: false,
                        },
                    );
                }
                Err(h3::Error::StreamBlocked)
                | Err(h3::Error::TransportError(tokio_quiche::quiche::Error::StreamLimit)) => {
                    return
                }
                Err(e) => {
                    tracing::debug!(error = %e, "raw client: could not open a stream");
                    // Dropping the senders tells the caller.
                    self.pending.pop_front();
                }
            }
        }
    }

    fn flush(&mut self, qconn: &mut QuicheConnection) {
        let Some(h3) = self.h3.as_mut() else { return };
        for (id, s) in self.streams.iter_mut() {
            while let Some(piece) = s.out.front_mut() {
                let (data, fin) = match piece {
                    Piece::Body(data, fin) => (data, *fin),
                    Piece::Trailers(headers) => {
                        match h3.send_additional_headers(qconn, *id, headers, true, true) {
                            Ok(()) => {
                                s.local_done = true;
                                s.out.pop_front();
                                continue;
                            }
                            Err(h3::Error::StreamBlocked) => break,
                            Err(e) => {
                                tracing::debug!(stream_id = id, error = %e, "raw client: trailers failed");
                                s.out.clear();
                                break;
                            }
                        }
                    }
                };
                if data.is_empty() && !fin {
                    s.out.pop_front();
                    continue;
                }
                match h3.send_body(qconn, *id, data, fin) {
                    Ok(n) if n == data.len() => {
                        if fin {
                            s.local_done = true;
                        }
                        s.out.pop_front();
                    }
                    Ok(n) => {
                        data.drain(..n);
                        break;
                    }
                    Err(h3::Error::Done) | Err(h3::Error::StreamBlocked) => break,
                    Err(e) => {
                        tracing::debug!(stream_id = id, error = %e, "raw client: send failed");
                        s.out.clear();
                        break;
                    }
                }
            }
        }
    }

    /// STOP_SENDING is not an HTTP/3 event: look for it. Done before
    /// reading too, because quiche forgets a stream once it is complete
    /// (which a STOP_SENDING arriving with the response's FIN makes it).
    fn check_stopped(&mut self, qconn: &mut QuicheConnection) {
        for (id, s) in self.streams.iter_mut() {
            if s.local_done || s.stopped {
                continue;
            }
            match qconn.stream_capacity(*id) {
                Err(tokio_quiche::quiche::Error::StreamStopped(code)) => {
                    s.stopped = true;
                    s.out.clear();
                    let _ = s.events.send(RawEvent::StopSending(code));
                }
                // Gone from quiche: nothing more can be sent.
                Err(tokio_quiche::quiche::Error::InvalidStreamState(_)) => {
                    s.local_done = true;
                    s.out.clear();
                }
                _ => {}
            }
        }
    }

    fn poll(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        self.check_stopped(qconn);
        loop {
            let Some(h3) = self.h3.as_mut() else {
                return Ok(());
            };
            let (id, ev) = match h3.poll(qconn) {
                Ok(x) => x,
                Err(h3::Error::Done) => break,
                Err(e) => return Err(Box::new(e)),
            };
            match ev {
                h3::Event::Headers { list, more_frames } => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        let _ = s.events.send(RawEvent::Headers(to_strings(&list)));
                        if !more_frames {
                            s.remote_done = true;
                            let _ = s.events.send(RawEvent::Finished);
                        }
                    }
                }
                h3::Event::Data => loop {
                    match h3.recv_body(qconn, id, &mut self.buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Some(s) = self.streams.get(&id) {
                                let _ = s.events.send(RawEvent::Data(self.buf[..n].to_vec()));
                            }
                        }
                    }
                },
                h3::Event::Finished => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        if !s.remote_done {
                            s.remote_done = true;
                            let _ = s.events.send(RawEvent::Finished);
                        }
                    }
                }
                h3::Event::Reset(code) => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.remote_done = true;
                        let _ = s.events.send(RawEvent::Reset(code));
                    }
                }
                h3::Event::GoAway => {
                    *self.shared.goaway.lock().unwrap() = Some(id);
                }
                h3::Event::PriorityUpdate => {}
            }
        }
        self.check_stopped(qconn);
        self.streams
            .retain(|_, s| !(s.remote_done && (s.local_done || s.stopped)) || !s.out.is_empty());
        Ok(())
    }
}

impl ApplicationOverQuic for App {
    fn on_conn_established(
        &mut self,
        qconn: &mut QuicheConnection,
        _info: &HandshakeInfo,
    ) -> QuicResult<()> {
        let config = h3::Config::new()?;
        self.h3 = Some(h3::Connection::with_transport(qconn, &config)?);
        Ok(())
    }

    fn should_act(&self) -> bool {
        self.h3.is_some()
    }

    async fn wait_for_data(&mut self, _qconn: &mut QuicheConnection) -> QuicResult<()> {
        match self.cmd_rx.recv().await {
            Some(cmd) => {
                self.queued.push(cmd);
                Ok(())
            }
            None => Err("raw connection handle dropped".into()),
        }
    }

    fn process_reads(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        self.poll(qconn)
    }

    fn process_writes(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        for cmd in std::mem::take(&mut self.queued) {
            self.handle(qconn, cmd);
        }
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.handle(qconn, cmd);
        }
        if let Some(code) = self.close_with {
            let _ = qconn.close(true, code, b"");
            return Ok(());
        }
        self.open_pending(qconn);
        self.flush(qconn);
        self.poll(qconn)
    }

    fn on_conn_close<M: tokio_quiche::metrics::Metrics>(
        &mut self,
        qconn: &mut QuicheConnection,
        _metrics: &M,
        _result: &QuicResult<()>,
    ) {
        let (by_peer, err) = match (qconn.peer_error(), qconn.local_error()) {
            (Some(e), _) => (true, Some(e)),
            (None, Some(e)) => (false, Some(e)),
            (None, None) => (false, None),
        };
        let info = CloseInfo {
            by_peer,
            is_app: err.is_some_and(|e| e.is_app),
            error_code: err.map_or(0, |e| e.error_code),
            reason: err.map_or(String::new(), |e| {
                String::from_utf8_lossy(&e.reason).into_owned()
            }),
            timed_out: qconn.is_timed_out(),
        };
        for (_, s) in self.streams.drain() {
            let _ = s.events.send(RawEvent::ConnectionClosed(info.clone()));
        }
        for p in self.pending.drain(..) {
            let _ = p.events.send(RawEvent::ConnectionClosed(info.clone()));
        }
        *self.shared.close.lock().unwrap() = Some(info);
        self.shared.closed.notify_waiters();
    }
}

/// One raw HTTP/3 connection.
pub struct RawConn {
    cmd: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    _conn: tokio_quiche::QuicConnection,
}

/// The outcome of [`RawConn::connect`] when it fails.
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl RawConn {
    /// Connects to `addr` (no certificate verification).
    pub async fn connect(addr: SocketAddr) -> Result<RawConn, ConnectError> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(addr).await?;
        let local_addr = socket.local_addr()?;
        let mut settings = QuicSettings::default();
        settings.verify_peer = false;
        settings.enable_dgram = false;
        settings.max_idle_timeout = Some(Duration::from_secs(30));
        settings.handshake_timeout = Some(Duration::from_secs(10));
        // quiche writes a header block only when all of it fits in the
        // congestion window; a large initial window lets this client send
        // blocks of a few hundred KB.
        settings.initial_congestion_window_packets = 400;
        // tokio-quiche consults the TLS hook only when certificate paths
        // are set; the hook ignores them.
        let params = ConnectionParams::new_client(
            settings,
            Some(TlsCertificatePaths {
                cert: "",
                private_key: "",
                kind: CertificateKind::X509,
            }),
            Hooks {
                connection_hook: Some(Arc::new(NoVerify)),
            },
        );
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let app = App {
            h3: None,
            cmd_rx,
            queued: Vec::new(),
            pending: VecDeque::new(),
            streams: HashMap::new(),
            shared: shared.clone(),
            close_with: None,
            buf: vec![0; 64 * 1024],
        };
        let socket: tokio_quiche::socket::Socket<_, _> = socket.try_into()?;
        let conn = tokio_quiche::quic::connect_with_config(socket, Some("localhost"), &params, app)
            .await?;
        Ok(RawConn {
            cmd,
            shared,
            local_addr,
            _conn: conn,
        })
    }

    /// The client's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a request stream with exactly these header fields, then sends
    /// `body` (ending the stream if `fin`). When the server's stream limit
    /// is reached, the stream opens once the server gives more credit.
    pub fn open<N, V>(
        &self,
        headers: impl IntoIterator<Item = (N, V)>,
        body: Vec<u8>,
        fin: bool,
    ) -> RawStream
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let headers = h3_headers(headers);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (opened_tx, opened) = oneshot::channel();
        let _ = self.cmd.send(Cmd::Open {
            headers,
            body,
            fin,
            events: events_tx,
            opened: opened_tx,
        });
        RawStream {
            cmd: self.cmd.clone(),
            id: None,
            opened: Some(opened),
            events,
        }
    }

    /// How many more request streams the server's credit allows now
    /// (after trying to open the streams queued so far).
    pub async fn streams_left(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::StreamsLeft(tx)).ok()?;
        rx.await.ok()
    }

    /// The stream id of the GOAWAY the server sent, if any.
    pub fn goaway(&self) -> Option<u64> {
        *self.shared.goaway.lock().unwrap()
    }

    /// Closes the connection with this application error code.
    pub fn close(&self, code: u64) {
        let _ = self.cmd.send(Cmd::Close(code));
    }

    /// Waits until the connection has closed, and says how.
    pub async fn closed(&self) -> CloseInfo {
        loop {
            let n = self.shared.closed.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(info) = self.shared.close.lock().unwrap().clone() {
                return info;
            }
            n.await;
        }
    }

    /// How the connection ended, if it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.shared.close.lock().unwrap().clone()
    }
}

/// One request stream of a [`RawConn`].
pub struct RawStream {
    cmd: mpsc::UnboundedSender<Cmd>,
    id: Option<u64>,
    opened: Option<oneshot::Receiver<u64>>,
    events: mpsc::UnboundedReceiver<RawEvent>,
}

impl RawStream {
    /// Waits until the stream is open; its id, or `None` if it could not
    /// be opened (the connection closed first).
    pub async fn id(&mut self) -> Option<u64> {
        if let Some(rx) = self.opened.take() {
            self.id = rx.await.ok();
        }
        self.id
    }

    /// The stream's id if it is open already (does not wait).
    pub fn try_id(&mut self) -> Option<u64> {
        if let Some(rx) = self.opened.as_mut() {
            match rx.try_recv() {
                Ok(id) => {
                    self.id = Some(id);
                    self.opened = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => self.opened = None,
            }
        }
        self.id
    }

    /// Sends more body bytes (DATA), ending the stream if `fin`.
    pub async fn send(&mut self, data: Vec<u8>, fin: bool) {
        if let Some(id) = self.id().await {
            let _ = self.cmd.send(Cmd::Send { id, data, fin });
        }
    }

    /// Sends a trailing header block (request trailers), ending the stream.
    pub async fn send_trailers<N, V>(&mut self, headers: impl IntoIterator<Item = (N, V)>)
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let headers = h3_headers(headers);
        if let Some(id) = self.id().await {
            let _ = self.cmd.send(Cmd::Trailers { id, headers });
        }
    }

    /// Resets the stream and stops reading it, with `code`.
    pub async fn abort(&mut self, code: u64) {
        if let Some(id) = self.id().await {
            let _ = self.cmd.send(Cmd::Abort { id, code });
        }
    }

    /// The next event, or `None` once the stream is gone.
    pub async fn next(&mut self) -> Option<RawEvent> {
        self.events.recv().await
    }

    /// The next event if one has arrived (does not wait).
    pub fn try_next(&mut self) -> Option<RawEvent> {
        self.events.try_recv().ok()
    }

    /// Reads events until the server's side of the stream ends (FIN,
    /// reset, or the connection closing).
    pub async fn response(&mut self) -> RawResponse {
        let mut r = RawResponse::default();
        while let Some(ev) = self.events.recv().await {
            match ev {
                RawEvent::Headers(h) => {
                    if r.headers.is_none() {
                        r.headers = Some(h);
                    } else {
                        r.trailers = Some(h);
                    }
                }
                RawEvent::Data(d) => r.body.extend_from_slice(&d),
                RawEvent::StopSending(code) => r.stop_sending = Some(code),
                RawEvent::Finished => {
                    r.end = Some(RawEnd::Finished);
                    break;
                }
                RawEvent::Reset(code) => {
                    r.end = Some(RawEnd::Reset(code));
                    break;
                }
                RawEvent::ConnectionClosed(info) => {
                    r.end = Some(RawEnd::ConnectionClosed(info));
                    break;
                }
            }
        }
        r
    }

    /// Waits for the server's STOP_SENDING; `None` if the stream ends
    /// (connection closed) without one.
    pub async fn stop_sending(&mut self) -> Option<u64> {
        while let Some(ev) = self.events.recv().await {
            match ev {
                RawEvent::StopSending(code) => return Some(code),
                RawEvent::ConnectionClosed(_) => return None,
                _ => {}
            }
        }
        None
    }
}

/// How the server's side of a stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawEnd {
    Finished,
    Reset(u64),
    ConnectionClosed(CloseInfo),
}

/// Everything the server sent on one stream.
#[derive(Clone, Debug, Default)]
pub struct RawResponse {
    /// The first header block.
    pub headers: Option<RawHeaders>,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The second header block.
    pub trailers: Option<RawHeaders>,
    /// How the stream ended (`None`: the event channel closed).
    pub end: Option<RawEnd>,
    /// A STOP_SENDING seen before the end.
    pub stop_sending: Option<u64>,
}

impl RawResponse {
    /// `:status` of the first header block.
    pub fn http_status(&self) -> Option<&str> {
        self.headers.as_ref().and_then(|h| get(h, ":status"))
    }

    /// Whether this is a trailers-only response (one header block carrying
    /// `grpc-status`, then FIN).
    pub fn is_trailers_only(&self) -> bool {
        self.trailers.is_none()
            && self.body.is_empty()
            && self.end == Some(RawEnd::Finished)
            && self
                .headers
                .as_ref()
                .is_some_and(|h| get(h, "grpc-status").is_some())
    }

    /// The block that carries the final status: the trailers, or the
    /// headers of a trailers-only response.
    pub fn status_block(&self) -> Option<&RawHeaders> {
        self.trailers.as_ref().or(self.headers.as_ref())
    }

    /// `grpc-status` of the final block.
    pub fn grpc_status(&self) -> Option<i32> {
        self.status_block()
            .and_then(|h| get(h, "grpc-status"))
            .and_then(|v| v.parse().ok())
    }

    /// `grpc-message` of the final block (still percent-encoded).
    pub fn grpc_message(&self) -> Option<&str> {
        self.status_block().and_then(|h| get(h, "grpc-message"))
    }

    /// The body split into length-prefixed messages (payloads only); `None`
    /// if the framing is broken.
    pub fn messages(&self) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut rest = &self.body[..];
        while !rest.is_empty() {
            if rest.len() < 5 || rest[0] != 0 {
                return None;
            }
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest.len() < 5 + len {
                return None;
            }
            out.push(rest[5..5 + len].to_vec());
            rest = &rest[5 + len..];
        }
        Some(out)
    }
}

/// Sends one request with exactly these headers and body (then FIN) on a
/// new connection; returns the first response header block, or `None` if
/// the stream was reset or the connection failed.
pub async fn request(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<RawHeaders> {
    let conn = RawConn::connect(addr).await.ok()?;
    let mut stream = conn.open(headers.iter().copied(), body, true);
    while let Some(ev) = stream.next().await {
        match ev {
            RawEvent::Headers(h) => return Some(h),
            RawEvent::Reset(_) | RawEvent::ConnectionClosed(_) | RawEvent::Finished => return None,
            RawEvent::Data(_) | RawEvent::StopSending(_) => {}
        }
    }
    None
}

/// A header's value.
pub fn get<'a>(headers: &'a RawHeaders, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A well-formed request header block for `path` with `content_type`.
pub fn headers<'a>(path: &'a str, content_type: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
        ("content-type", content_type),
        ("te", "trailers"),
    ]
}

/// Frames `payload` with the given flag byte.
pub fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// quiche header fields from name/value pairs, as given (no checks).
fn h3_headers<N, V>(headers: impl IntoIterator<Item = (N, V)>) -> Vec<h3::Header>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    headers
        .into_iter()
        .map(|(n, v)| h3::Header::new(n.as_ref(), v.as_ref()))
        .collect()
}
