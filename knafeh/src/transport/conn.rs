//! knafeh's own HTTP/3 application on top of tokio-quiche.
//!
//! tokio-quiche's generic `H3Driver` drops response trailers on the client
//! side and hops through a channel per body frame, so knafeh drives
//! `quiche::h3` itself. One [`H3App`] runs inside each connection's I/O
//! worker task; call tasks talk to it through an unbounded command channel
//! and receive [`StreamEvent`]s on a per-stream channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio_quiche::quic::{HandshakeInfo, QuicheConnection};
use tokio_quiche::quiche::h3;
use tokio_quiche::quiche::Shutdown;
use tokio_quiche::{ApplicationOverQuic, QuicResult};

use crate::proto::h3::{H3_INTERNAL_ERROR, H3_NO_ERROR, H3_REQUEST_CANCELLED, H3_REQUEST_REJECTED};
use crate::proto::liveness::{Liveness, LivenessAction};

pub(crate) use super::stream::{
    field_section_size, CallFuture, Command, ConnShared, EarlyDataFilter, Gone, Headers,
    IncomingStream, OnRequest, OpenRequest, Out, OutHeaders, RecvWindow, RequestTx, SessionSlot,
    StreamEvent, StreamTx,
};
pub(crate) use crate::proto::liveness::Keepalive;

/// Flow-control window (in bytes) a call task may queue ahead of the wire.
pub(crate) const SEND_WINDOW: usize = 1 << 20;
/// Bytes received on a stream that may wait for its call task before the
/// connection stops reading that stream (and so stops granting the peer
/// flow-control credit).
pub(crate) const RECV_WINDOW: usize = 1 << 20;

thread_local! {
    /// Where received body bytes land before they are copied out to their
    /// call: one buffer per runtime thread rather than one per connection
    /// (an idle connection holds none).
    static RECV_SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// QUIC settings shared by clients and servers.
pub(crate) fn quic_settings() -> tokio_quiche::settings::QuicSettings {
    let mut s = tokio_quiche::settings::QuicSettings::default();
    // knafeh uses no HTTP datagrams; don't advertise them.
    s.enable_dgram = false;
    // Verification is configured by knafeh's TLS hook (see `TlsHook`);
    // tokio-quiche would otherwise reset the verify mode after it.
    s.verify_peer = false;
    // quiche writes a header block only whole, and only within the
    // congestion window: the initial window must hold the largest block
    // peers accept (32 KiB), or such a request never leaves.
    s.initial_congestion_window_packets = 32;
    // Congestion control stays quiche's cubic without pacing, with
    // tokio-quiche's flow-control windows and 1,350-byte datagrams: on the
    // emulated link (`knafeh-bench wan`, 1-80 ms, 0-2 % loss) reno, bbr2,
    // pacing, larger windows, a larger initial window, no HyStart, 1,452-byte
    // datagrams and a shorter max_ack_delay all measured within the noise
    // (bench/results/wan-analysis.md).
    // Servers issue session tickets that allow 0-RTT and accept early
    // data; which early requests are served is decided per method (see
    // `EarlyDataFilter`: without one, none is). Clients turn it on only
    // for a 0-RTT dial (`ClientBuilder::zero_rtt`).
    s.enable_early_data = true;
    s
}

struct Stream {
    events: Option<mpsc::UnboundedSender<StreamEvent>>,
    window: Arc<RecvWindow>,
    got_headers: bool,
    out: VecDeque<Out>,
    credit: Option<Arc<Semaphore>>,
    local_done: bool,
    remote_done: bool,
    /// Dropped with the stream, which tells the call (see [`Gone`]).
    _gone: Option<tokio::sync::oneshot::Sender<()>>,
    /// Client: a request sent as 0-RTT early data, kept to be sent again
    /// if the server refuses it as early data.
    early: Option<EarlyRequest>,
}

impl Stream {
    fn new(
        events: mpsc::UnboundedSender<StreamEvent>,
        window: Arc<RecvWindow>,
        credit: Option<Arc<Semaphore>>,
    ) -> Self {
        Stream {
            events: Some(events),
            window,
            got_headers: false,
            out: VecDeque::new(),
            credit,
            local_done: false,
            remote_done: false,
            _gone: None,
            early: None,
        }
    }

    fn emit(&mut self, ev: StreamEvent) {
        if let Some(tx) = &self.events {
            if tx.send(ev).is_err() {
                self.events = None;
            }
        }
    }
}

/// A request stream waiting to be opened, with the frames its writer
/// queued meanwhile.
struct PendingOpen {
    req: Box<OpenRequest>,
    out: VecDeque<Out>,
}

impl PendingOpen {
    fn new(req: Box<OpenRequest>) -> Self {
        let mut out = VecDeque::new();
        if let Some(body) = &req.body {
            out.push_back(Out::Data(body.clone(), true, 0));
        }
        PendingOpen { req, out }
    }

    /// Whether it may be opened before the handshake completes: the caller
    /// allowed it, and it is a one-message request (see
    /// [`OpenRequest::early_data_ok`]).
    fn early_data_ok(&self) -> bool {
        self.req.early_data_ok && self.req.body.is_some()
    }
}

/// Client: a request sent as 0-RTT early data, kept until the server has
/// answered (or refused) it.
struct EarlyRequest {
    headers: OutHeaders,
    body: Option<Bytes>,
    slot: Arc<std::sync::atomic::AtomicU64>,
}

/// The `:path` of a request header list.
fn path_of(list: &Headers) -> Option<&[u8]> {
    use tokio_quiche::quiche::h3::NameValue;
    list.iter()
        .find(|h| h.name() == b":path")
        .map(|h| h.value())
}

/// The outcome of one HTTP/3 write: done (with its value), blocked
/// until the peer grants credit (`None`), or failed (the stream is dead).
/// `done_blocks`: `Done` (nothing written, as a body write says when there
/// is no capacity) also means blocked; for header blocks it is a failure.
fn sent<T>(
    r: Result<T, h3::Error>,
    done_blocks: bool,
    what: &str,
    id: u64,
) -> Result<Option<T>, ()> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(h3::Error::StreamBlocked) => Ok(None),
        Err(h3::Error::Done) if done_blocks => Ok(None),
        Err(e) => {
            tracing::debug!(stream_id = id, error = %e, "sending {what} failed");
            Err(())
        }
    }
}

/// Hands a stream's queued output to HTTP/3 in order until it is all
/// written or the stream is blocked; `Err` when the stream cannot be
/// written any more.
fn write_out(
    h3: &mut h3::Connection,
    qconn: &mut QuicheConnection,
    id: u64,
    s: &mut Stream,
) -> Result<(), ()> {
    while let Some(front) = s.out.front_mut() {
        match front {
            Out::Headers(h, fin) => {
                let fin = *fin;
                if sent(h3.send_response(qconn, id, h, fin), false, "headers", id)?.is_none() {
                    return Ok(());
                }
                s.local_done |= fin;
                s.out.pop_front();
            }
            Out::Data(buf, fin, credit) => {
                let (fin, credit) = (*fin, *credit);
                let written = if buf.is_empty() && !fin {
                    0
                } else {
                    match sent(h3.send_body(qconn, id, buf, fin), true, "body", id)? {
                        Some(n) => n,
                        None => return Ok(()),
                    }
                };
                if written < buf.len() {
                    let _ = buf.split_to(written);
                    return Ok(());
                }
                s.local_done |= fin;
                s.out.pop_front();
                if let Some(c) = &s.credit {
                    c.add_permits(credit as usize);
                }
            }
            Out::Trailers(h) => {
                let r = h3.send_additional_headers(qconn, id, h, true, true);
                if sent(r, false, "trailers", id)?.is_none() {
                    return Ok(());
                }
                s.local_done = true;
                s.out.pop_front();
            }
        }
    }
    Ok(())
}

/// Which side of the connection an [`H3App`] plays.
enum Role {
    Client,
    Server {
        /// A sender handed to each call task.
        cmd_tx: mpsc::UnboundedSender<Command>,
        /// Starts the call of each request.
        on_request: OnRequest,
        /// Dropped when the connection closes (connection counting).
        close_guard: Option<Box<dyn Send>>,
    },
}

impl Role {
    fn is_server(&self) -> bool {
        matches!(self, Role::Server { .. })
    }
}

/// Where closing a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// Not asked to close.
    Open,
    /// Close once every stream has finished.
    WhenIdle,
    /// Every stream finished; close after the next packets arrive (the
    /// peer's acknowledgements), so data written in this round is not cut
    /// off.
    AfterNextRead,
    /// Close at the next chance.
    Now,
}

impl Closing {
    fn request(&mut self, force: bool) {
        if force {
            *self = Closing::Now;
        } else if *self == Closing::Open {
            *self = Closing::WhenIdle;
        }
    }

    fn requested(self) -> bool {
        matches!(self, Closing::WhenIdle | Closing::AfterNextRead)
    }

    fn on_read(&mut self) {
        if *self == Closing::AfterNextRead {
            *self = Closing::Now;
        }
    }
}

/// The per-connection HTTP/3 state machine.
pub(crate) struct H3App {
    h3_config: h3::Config,
    h3: Option<h3::Connection>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    /// Client or server, with what only a server has.
    role: Role,
    /// Calls that arrived in this round of reads, not yet started.
    new_calls: Vec<(u64, CallFuture)>,
    peer: SocketAddr,
    queued_cmds: Vec<Command>,
    streams: HashMap<u64, Stream>,
    dirty: HashSet<u64>,
    pending_opens: VecDeque<PendingOpen>,
    going_away: bool,
    last_request_id: Option<u64>,
    /// Where closing the connection stands.
    closing: Closing,
    /// Whether stream data was handed to quiche since packets last came in.
    wrote_since_read: bool,
    /// quiche's count of packets sent when `wait_for_data` last ran.
    sent_at_wait: usize,
    shared: Arc<ConnShared>,
    /// Pings a silent peer and gives up on one that stays silent.
    liveness: Liveness,
    /// Why the connection closes if an unconfirmed refusal stands (see
    /// `Command::Refused`).
    refusal: Option<String>,
    /// When `wait_for_data` must return for the next liveness check.
    next_check: Option<std::time::Instant>,
    check_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When `check_timer` fires, if it is armed.
    timer_at: Option<std::time::Instant>,
    /// Server: which requests may be served from 0-RTT early data; `None`
    /// refuses them all.
    early_filter: Option<EarlyDataFilter>,
    /// Client: where the server's session tickets go.
    session_slot: Option<SessionSlot>,
    /// Client: the last session put in `session_slot`.
    last_session: Option<Vec<u8>>,
}

impl H3App {
    fn new(
        h3_config: h3::Config,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        shared: Arc<ConnShared>,
        peer: SocketAddr,
    ) -> Self {
        H3App {
            h3_config,
            h3: None,
            cmd_rx,
            role: Role::Client,
            new_calls: Vec::new(),
            peer,
            queued_cmds: Vec::new(),
            streams: HashMap::new(),
            dirty: HashSet::new(),
            pending_opens: VecDeque::new(),
            going_away: false,
            last_request_id: None,
            closing: Closing::Open,
            wrote_since_read: false,
            sent_at_wait: 0,
            shared,
            liveness: Liveness::new(Keepalive::default()),
            refusal: None,
            next_check: None,
            check_timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(86_400))),
            timer_at: None,
            early_filter: None,
            session_slot: None,
            last_session: None,
        }
    }

    /// A client-side application plus the command sender that drives it.
    /// The session tickets the server sends are put in `session_slot`.
    pub(crate) fn client(
        h3_config: h3::Config,
        peer: SocketAddr,
        keepalive: Keepalive,
        session_slot: SessionSlot,
    ) -> (Self, mpsc::UnboundedSender<Command>, Arc<ConnShared>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(ConnShared::default());
        let mut app = Self::new(h3_config, rx, shared.clone(), peer);
        app.liveness = Liveness::new(keepalive);
        app.session_slot = Some(session_slot);
        (app, tx, shared)
    }

    /// Server: serve the requests that arrive in 0-RTT early data when
    /// `filter` says their method is idempotent (it gets the `:path`);
    /// the others are refused with `H3_REQUEST_REJECTED` before any call
    /// starts. Without this, every early-data request is refused.
    pub(crate) fn serve_early_data(&mut self, filter: EarlyDataFilter) {
        self.early_filter = Some(filter);
    }

    /// A server-side application that calls `on_request` per request.
    /// With `draining`, it refuses every request (the server is shutting
    /// down). `close_guard` is dropped when the connection closes.
    pub(crate) fn server(
        h3_config: h3::Config,
        peer: SocketAddr,
        on_request: OnRequest,
        draining: bool,
        close_guard: Box<dyn Send>,
        keepalive: Keepalive,
    ) -> (Self, mpsc::UnboundedSender<Command>, Arc<ConnShared>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(ConnShared::default());
        let mut app = Self::new(h3_config, rx, shared.clone(), peer);
        app.role = Role::Server {
            cmd_tx: tx.clone(),
            on_request,
            close_guard: Some(close_guard),
        };
        app.going_away = draining;
        app.liveness = Liveness::new(keepalive);
        (app, tx, shared)
    }

    fn handle_command(&mut self, qconn: &mut QuicheConnection, cmd: Command) {
        match cmd {
            Command::Open(req) => self.pending_opens.push_back(PendingOpen::new(req)),
            Command::SendOn(slot, out) => {
                let id = slot.load(Ordering::Acquire);
                if id != u64::MAX {
                    self.handle_command(qconn, Command::Send(id, out));
                } else if let Some(p) = self
                    .pending_opens
                    .iter_mut()
                    .find(|p| Arc::ptr_eq(&p.req.slot, &slot))
                {
                    p.out.push_back(out);
                }
            }
            Command::Resume(id) => self.on_data(qconn, id),
            // Frames for a stream that is gone are dropped.
            Command::Send(id, out) => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.out.push_back(out);
                    self.dirty.insert(id);
                }
            }
            Command::SendAll(id, outs) => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.out.extend(outs);
                    self.dirty.insert(id);
                }
            }
            Command::Cancel(slot) => {
                let id = slot.load(Ordering::Acquire);
                if id != u64::MAX {
                    self.abort_stream(qconn, id);
                } else if let Some(at) = self
                    .pending_opens
                    .iter()
                    .position(|p| Arc::ptr_eq(&p.req.slot, &slot))
                {
                    // Not opened yet: it never will be. Dropping its events
                    // sender tells the call.
                    if let Some(p) = self.pending_opens.remove(at) {
                        if let Some(c) = &p.req.credit {
                            c.close();
                        }
                    }
                }
            }
            Command::StopReading(id, code) => {
                if let Some(s) = self.streams.get_mut(&id) {
                    if !s.remote_done {
                        let _ = qconn.stream_shutdown(id, Shutdown::Read, code);
                        s.remote_done = true;
                    }
                    // Removal happens once the write side is flushed.
                    self.dirty.insert(id);
                }
            }
            Command::GoAway(_ack) => {
                self.going_away = true;
                if let Some(h3) = self.h3.as_mut() {
                    // The id is the first request stream we will not serve.
                    let _ = h3.send_goaway(qconn, next_request_id(self.last_request_id));
                }
            }
            Command::Close { force } => self.closing.request(force),
            Command::Abandon(why) => self.abandon(qconn, why),
            Command::Refused(why) => {
                let window = refusal_window(qconn);
                self.liveness.on_refused(std::time::Instant::now(), window);
                self.refusal.get_or_insert(why);
            }
        }
    }

    /// Server: whether a request read before the handshake completed is
    /// refused. Such a request can only have come in 0-RTT early data,
    /// which anyone who saw it can replay on connections of their own
    /// (that never complete): serve it only when its method is
    /// idempotent. "Not processed" is what H3_REQUEST_REJECTED means (RFC
    /// 9114 §4.1.1), so the client sends it again once its handshake is
    /// done.
    fn refuse_early(&self, id: u64, list: &Headers) -> bool {
        let allowed = self
            .early_filter
            .as_ref()
            .is_some_and(|idempotent| path_of(list).is_some_and(|p| idempotent(p)));
        if !allowed {
            tracing::debug!(stream_id = id, peer = %self.peer, "refusing a request sent as 0-RTT early data");
        }
        !allowed
    }

    /// Closes the connection at once; its calls report `why`.
    fn abandon(&mut self, qconn: &mut QuicheConnection, why: String) {
        tracing::debug!(peer = %self.peer, why, "abandoning the connection");
        *self
            .shared
            .close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
        let _ = qconn.close(true, H3_NO_ERROR, b"");
        self.finish_all();
    }

    fn abort_stream(&mut self, qconn: &mut QuicheConnection, id: u64) {
        if let Some(s) = self.streams.remove(&id) {
            if let Some(c) = &s.credit {
                c.close();
            }
            self.dirty.remove(&id);
            let _ = qconn.stream_shutdown(id, Shutdown::Read, H3_REQUEST_CANCELLED);
            let _ = qconn.stream_shutdown(id, Shutdown::Write, H3_REQUEST_CANCELLED);
        }
    }

    /// Opens the request streams waiting to be opened, in order, as far as
    /// the peer's stream limit allows. Before the handshake completes (a
    /// 0-RTT connection) only the ones allowed as early data are opened.
    fn open_requests(&mut self, qconn: &mut QuicheConnection) {
        let early = !qconn.is_established();
        loop {
            let next = if early {
                self.pending_opens
                    .iter()
                    .position(|p| p.early_data_ok() || p.req.events.is_closed())
            } else {
                (!self.pending_opens.is_empty()).then_some(0)
            };
            let Some(at) = next else { break };
            if self.pending_opens[at].req.events.is_closed() {
                // The call is gone.
                if let Some(p) = self.pending_opens.remove(at) {
                    if let Some(c) = &p.req.credit {
                        c.close();
                    }
                }
                continue;
            }
            if qconn.peer_streams_left_bidi() == 0 {
                break;
            }
            let Some(h3) = self.h3.as_mut() else { return };
            match h3.send_request(qconn, &self.pending_opens[at].req.headers, false) {
                Ok(id) => {
                    if let Some(p) = self.pending_opens.remove(at) {
                        self.opened(id, p, early);
                    }
                }
                Err(h3::Error::StreamBlocked)
                | Err(h3::Error::TransportError(tokio_quiche::quiche::Error::StreamLimit)) => {
                    tracing::trace!(queued = self.pending_opens.len(), "request blocked");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not open a request stream");
                    // Dropping the events sender reports the failure.
                    if let Some(p) = self.pending_opens.remove(at) {
                        if let Some(c) = &p.req.credit {
                            c.close();
                        }
                    }
                }
            }
        }
    }

    /// Records a request stream just opened as `id` (as 0-RTT early data
    /// when `early`).
    fn opened(&mut self, id: u64, p: PendingOpen, early: bool) {
        let PendingOpen { req, out } = p;
        let OpenRequest {
            headers,
            body,
            events,
            window,
            slot,
            credit,
            ..
        } = *req;
        slot.store(id, Ordering::Release);
        let mut s = Stream::new(events, window, credit);
        s.out = out;
        if early {
            tracing::debug!(stream_id = id, "request sent as 0-RTT early data");
            self.shared.early_requests.fetch_add(1, Ordering::Relaxed);
            s.early = Some(EarlyRequest {
                headers,
                body,
                slot,
            });
        }
        self.streams.insert(id, s);
        self.dirty.insert(id);
    }

    /// Client: the server refused a request sent as early data (it reset
    /// the stream with `H3_REQUEST_REJECTED` before answering, so nothing
    /// was processed): queue it again, first in line, to be sent once the
    /// handshake is complete.
    fn resend_refused(&mut self, id: u64, s: Stream, early: EarlyRequest) {
        let Some(events) = s.events else { return };
        tracing::debug!(
            stream_id = id,
            "early-data request refused; sending it after the handshake"
        );
        self.shared.early_refused.fetch_add(1, Ordering::Relaxed);
        early.slot.store(u64::MAX, Ordering::Release);
        let req = Box::new(OpenRequest {
            headers: early.headers,
            body: early.body,
            events,
            window: s.window,
            slot: early.slot,
            credit: s.credit,
            early_data_ok: false,
        });
        self.pending_opens.push_front(PendingOpen::new(req));
    }

    fn flush_stream(&mut self, qconn: &mut QuicheConnection, id: u64) -> bool {
        let Some(h3) = self.h3.as_mut() else {
            return false;
        };
        let Some(s) = self.streams.get_mut(&id) else {
            return false;
        };
        let mut failed = write_out(h3, qconn, id, s).is_err();
        if failed && !self.role.is_server() && !s.remote_done {
            // A client whose request the server stopped reading (it refused
            // the call early): stop writing but keep reading, the answer
            // is on its way. A streaming request's writer learns it from
            // its credit.
            s.out.clear();
            s.local_done = true;
            if let Some(c) = &s.credit {
                c.close();
            }
            failed = false;
        }
        if failed {
            // The peer stopped reading (or the stream is otherwise dead):
            // tell the task and drop the stream.
            s.emit(StreamEvent::Reset(H3_REQUEST_CANCELLED));
            self.abort_stream(qconn, id);
            return false;
        }
        let pending = !s.out.is_empty();
        if s.local_done && s.remote_done && !pending {
            self.streams.remove(&id);
        }
        pending
    }

    fn poll_h3(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        loop {
            let Some(h3) = self.h3.as_mut() else {
                return Ok(());
            };
            if self.shared.peer_field_limit.load(Ordering::Relaxed) == 0 {
                // SETTINGS_MAX_FIELD_SECTION_SIZE (0x6); absent means no
                // limit.
                if let Some(settings) = h3.peer_settings_raw() {
                    let limit = settings
                        .iter()
                        .find(|(id, _)| *id == 0x6)
                        .map_or(u64::MAX, |(_, v)| (*v).max(1));
                    self.shared.peer_field_limit.store(limit, Ordering::Release);
                }
            }
            let (id, ev) = match h3.poll(qconn) {
                Ok(x) => x,
                Err(h3::Error::Done) => return Ok(()),
                Err(e) => return Err(Box::new(e)),
            };
            tracing::trace!(stream_id = id, event = ?ev, server = self.role.is_server(), "h3 event");
            match ev {
                h3::Event::Headers { list, more_frames } => {
                    self.on_headers(qconn, id, list, more_frames)
                }
                h3::Event::Data => self.on_data(qconn, id),
                h3::Event::Finished => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.remote_done = true;
                        s.emit(StreamEvent::Finished);
                        if s.local_done && s.out.is_empty() {
                            self.streams.remove(&id);
                        }
                    }
                }
                h3::Event::Reset(code) => {
                    if let Some(mut s) = self.streams.remove(&id) {
                        // A refused early request is sent again on this
                        // connection, unless the server is going away
                        // (GOAWAY): then the call sees the refusal and is
                        // retried elsewhere, as any refused request.
                        let open = !self.shared.closed.load(Ordering::Acquire);
                        if code == H3_REQUEST_REJECTED && !s.got_headers && open {
                            if let Some(early) = s.early.take() {
                                self.dirty.remove(&id);
                                let _ = qconn.stream_shutdown(
                                    id,
                                    Shutdown::Write,
                                    H3_REQUEST_CANCELLED,
                                );
                                self.resend_refused(id, s, early);
                                continue;
                            }
                        }
                        s.emit(StreamEvent::Reset(code));
                        if let Some(c) = &s.credit {
                            c.close();
                        }
                        self.dirty.remove(&id);
                        let _ = qconn.stream_shutdown(id, Shutdown::Write, H3_REQUEST_CANCELLED);
                    }
                }
                h3::Event::GoAway => {
                    // The server will not take new requests: stop using
                    // this connection for them.
                    self.shared.closed.store(true, Ordering::Release);
                    self.shared.closed_notify.notify_waiters();
                }
                h3::Event::PriorityUpdate => {}
            }
        }
    }

    fn on_headers(&mut self, qconn: &mut QuicheConnection, id: u64, list: Headers, more: bool) {
        if let Some(s) = self.streams.get_mut(&id) {
            let ev = if s.got_headers {
                StreamEvent::Trailers(list)
            } else {
                s.got_headers = true;
                StreamEvent::Headers(list)
            };
            s.emit(ev);
            if !more {
                s.remote_done = true;
                s.emit(StreamEvent::Finished);
                if s.local_done && s.out.is_empty() {
                    self.streams.remove(&id);
                }
            }
            return;
        }
        // A new request (server side). Streams we finished or aborted
        // cannot come back here: an aborted stream's read side is shut
        // down, and a finished one saw the peer's FIN. Requests arrive in
        // readiness order, not id order.
        let Role::Server {
            on_request, cmd_tx, ..
        } = &self.role
        else {
            return;
        };
        self.last_request_id = Some(self.last_request_id.map_or(id, |last| last.max(id)));
        let early_data = !qconn.is_established();
        let refuse_early = early_data && self.refuse_early(id, &list);
        if self.going_away || refuse_early {
            let _ = qconn.stream_shutdown(id, Shutdown::Read, H3_REQUEST_REJECTED);
            let _ = qconn.stream_shutdown(id, Shutdown::Write, H3_REQUEST_REJECTED);
            return;
        }
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(SEND_WINDOW));
        let window = Arc::new(RecvWindow::default());
        let mut s = Stream::new(ev_tx, window.clone(), Some(credit.clone()));
        let (gone_tx, gone) = Gone::pair();
        s._gone = Some(gone_tx);
        s.got_headers = true;
        if !more {
            s.remote_done = true;
            s.emit(StreamEvent::Finished);
        }
        self.streams.insert(id, s);
        let incoming = IncomingStream {
            headers: list,
            window,
            events: ev_rx,
            tx: StreamTx {
                stream_id: id,
                early_data,
                cmd: cmd_tx.clone(),
                credit,
                shared: self.shared.clone(),
            },
            gone,
        };
        // The client's address now: a client that moved (connection
        // migration, NAT rebinding) is on another path than it dialled from.
        let peer = active_path(qconn).map_or(self.peer, |p| p.peer_addr);
        self.new_calls.push((id, on_request(incoming, peer)));
    }

    fn on_data(&mut self, qconn: &mut QuicheConnection, id: u64) {
        let Some(h3) = self.h3.as_mut() else { return };
        RECV_SCRATCH.with_borrow_mut(|scratch| loop {
            // A call task that does not keep up: stop reading (quiche then
            // stops granting the peer credit) until it catches up.
            if let Some(s) = self.streams.get(&id) {
                if s.events.is_some() && s.window.should_pause() {
                    return;
                }
            }
            match h3.recv_body(qconn, id, scratch) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.window.queued.fetch_add(n, Ordering::SeqCst);
                        s.emit(StreamEvent::Data(Bytes::copy_from_slice(&scratch[..n])));
                    }
                }
                Err(_) => break,
            }
        });
        // A Finished (or trailers) event that follows is picked up by the
        // `poll_h3` at the end of `process_writes`.
    }

    /// Server: a client that stopped reading a response (STOP_SENDING,
    /// sent when it drops the call) is noticed only on the next write; look
    /// for it after every read so idle handlers are cancelled promptly.
    fn reap_stopped_streams(&mut self, qconn: &mut QuicheConnection) {
        if !self.role.is_server() {
            return;
        }
        let stopped: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.local_done)
            .filter(|(id, _)| {
                matches!(
                    qconn.stream_writable(**id, 0),
                    Err(tokio_quiche::quiche::Error::StreamStopped(_))
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stopped {
            if let Some(s) = self.streams.get_mut(&id) {
                s.emit(StreamEvent::Reset(H3_REQUEST_CANCELLED));
            }
            self.abort_stream(qconn, id);
        }
    }

    /// With calls in progress, pings a silent peer and gives up on one
    /// that stays silent (see [`Liveness`]). Returns `true` when the
    /// connection was closed.
    fn check_liveness(&mut self, qconn: &mut QuicheConnection) -> bool {
        let busy = !(self.streams.is_empty() && self.pending_opens.is_empty());
        match self.liveness.poll(std::time::Instant::now(), busy) {
            LivenessAction::Idle => self.next_check = None,
            LivenessAction::WakeAt(at) => self.next_check = Some(at),
            LivenessAction::Ping(at) => {
                let _ = qconn.send_ack_eliciting();
                self.next_check = Some(at);
            }
            LivenessAction::Refused => {
                let why = self.refusal.take();
                tracing::debug!(peer = %self.peer, why, "refused and silent; closing");
                // Calls report why.
                *self
                    .shared
                    .close_reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = why;
                let _ = qconn.close(true, H3_NO_ERROR, b"");
                self.finish_all();
                return true;
            }
            LivenessAction::Close { silent } => {
                tracing::debug!(peer = %self.peer, ?silent, "peer silent with calls in progress; closing");
                let _ = qconn.close(true, H3_INTERNAL_ERROR, b"peer unresponsive");
                self.finish_all();
                return true;
            }
        }
        false
    }

    /// Starts the calls that arrived: each is polled once right here,
    /// after the reads that delivered its request, so a handler that
    /// answers at once has its response queued before this round's packets
    /// go out (together with the acknowledgement, with no task spawned and
    /// no wake-up); a call that has to wait goes on as a task of its own.
    fn start_new_calls(&mut self, qconn: &mut QuicheConnection) {
        // The list's allocation is kept for the next round.
        let mut calls = std::mem::take(&mut self.new_calls);
        for (id, mut call) in calls.drain(..) {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                call.as_mut().poll(&mut cx)
            }));
            match first {
                Ok(std::task::Poll::Ready(())) => {}
                // Spawning polls it again, with a real waker: whatever it
                // waits for is registered then.
                Ok(std::task::Poll::Pending) => {
                    tokio::spawn(call);
                }
                Err(_) => {
                    tracing::error!(peer = %self.peer, "serving a call panicked");
                    // Nobody is left to finish the stream.
                    self.abort_stream(qconn, id);
                }
            }
        }
        self.new_calls = calls;
    }

    fn drain_commands(&mut self, qconn: &mut QuicheConnection) {
        for cmd in std::mem::take(&mut self.queued_cmds) {
            self.handle_command(qconn, cmd);
        }
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.handle_command(qconn, cmd);
        }
    }

    /// Waits for a command from a call task or for the liveness timer.
    ///
    /// # Cancel safety
    /// A received command is kept in `queued_cmds` at once.
    async fn wait_for_event(&mut self) -> QuicResult<()> {
        // The liveness timer is re-armed only when it would fire too late;
        // firing early just leads to a re-check.
        if let Some(at) = self.next_check {
            if self.timer_at.is_none_or(|t| t > at) {
                self.check_timer.as_mut().reset(at.into());
                self.timer_at = Some(at);
            }
        }
        let armed = self.timer_at.is_some();
        let timer = &mut self.check_timer;
        tokio::select! {
            cmd = self.cmd_rx.recv() => match cmd {
                Some(cmd) => {
                    self.queued_cmds.push(cmd);
                    // With other calls in progress, let the call tasks that
                    // are ready queue their commands too, so that they go
                    // out together (often in one packet) instead of one
                    // wake-up each. A lone call goes out at once.
                    if self.streams.len() > 1 {
                        tokio::task::yield_now().await;
                    }
                    Ok(())
                }
                // Every handle is gone (a client that was dropped): close.
                None => Err("connection handle dropped".into()),
            },
            // `process_writes` runs next and does the check.
            () = timer.as_mut(), if armed => {
                self.timer_at = None;
                Ok(())
            }
        }
    }

    /// Records what the handshake achieved once it is complete (and, on a
    /// client, keeps the session tickets the server sends for the next
    /// dial).
    fn on_handshake_progress(&mut self, qconn: &mut QuicheConnection) {
        if qconn.is_established() && !self.shared.established.load(Ordering::Relaxed) {
            self.shared
                .resumed
                .store(qconn.is_resumed(), Ordering::Release);
            self.shared.established.store(true, Ordering::Release);
            tracing::debug!(
                peer = %self.peer,
                resumed = qconn.is_resumed(),
                // BoringSSL's ssl_early_data_reason_t (2: accepted).
                early_data_reason = qconn.early_data_reason(),
                "handshake complete"
            );
        }
        if let (Some(slot), Some(session)) = (&self.session_slot, qconn.session()) {
            if self.last_session.as_deref() != Some(session) {
                self.last_session = Some(session.to_vec());
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.to_vec());
            }
        }
    }

    fn finish_all(&mut self) {
        for (_, s) in self.streams.drain() {
            if let Some(c) = &s.credit {
                c.close();
            }
        }
        for p in self.pending_opens.drain(..) {
            if let Some(c) = &p.req.credit {
                c.close();
            }
        }
        self.new_calls.clear();
        self.dirty.clear();
        if let Role::Server { close_guard, .. } = &mut self.role {
            *close_guard = None;
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.closed_notify.notify_waiters();
    }
}

fn next_request_id(last: Option<u64>) -> u64 {
    last.map_or(0, |m| m + 4)
}

impl Drop for H3App {
    fn drop(&mut self) {
        self.finish_all();
    }
}

/// How long a refusal of an established connection waits for a sign of
/// life from the peer: three round trips, at least 100 ms (the PING and its
/// acknowledgement must cross the path), at most one second.
fn refusal_window(qconn: &QuicheConnection) -> std::time::Duration {
    let rtt = active_path(qconn).map_or(std::time::Duration::ZERO, |p| p.rtt);
    (3 * rtt).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    )
}

/// The path the connection uses now (after a migration, not the one it
/// was dialled on).
fn active_path(qconn: &QuicheConnection) -> Option<tokio_quiche::quiche::PathStats> {
    qconn.path_stats().find(|p| p.active)
}

impl ApplicationOverQuic for H3App {
    fn on_conn_established(
        &mut self,
        qconn: &mut QuicheConnection,
        _info: &HandshakeInfo,
    ) -> QuicResult<()> {
        let mut h3 = h3::Connection::with_transport(qconn, &self.h3_config)?;
        if self.going_away {
            let _ = h3.send_goaway(qconn, 0);
        }
        self.h3 = Some(h3);
        // Called when the handshake is complete, or earlier (still in the
        // handshake) on a connection that can already send or receive
        // 0-RTT early data.
        self.on_handshake_progress(qconn);
        self.shared.set_ready();
        Ok(())
    }

    fn should_act(&self) -> bool {
        self.h3.is_some()
    }

    async fn wait_for_data(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        // tokio-quiche 0.20's writer sizes each GSO batch by its first packet and
        // treats quiche's `Done` as "nothing left to send", but quiche also
        // says `Done` when its next packet does not fit the space left: a
        // large packet queued behind a small one (a request behind an ACK
        // or a control stream) would then wait for the next wake-up, often
        // a round trip later. So while the last pass sent packets, return
        // at once and let the worker gather again; it stops when a pass
        // sends nothing (or congestion control or pacing holds it back).
        // Summed over the paths: `stats()` would also walk every stream.
        let sent: usize = qconn.path_stats().map(|p| p.sent).sum();
        if sent != self.sent_at_wait {
            self.sent_at_wait = sent;
            return Ok(());
        }
        // Until the handshake completes (a connection in 0-RTT early data),
        // tokio-quiche calls `process_writes` only once it is established:
        // write from here instead, so that a client's early requests and a
        // server's answers to them (0.5-RTT data) go out at once.
        let early = !qconn.is_established();
        if early && !self.queued_cmds.is_empty() {
            // Commands left by a wait that was cancelled.
            return self.process_writes(qconn);
        }
        self.wait_for_event().await?;
        if early {
            self.process_writes(qconn)?;
        }
        Ok(())
    }

    fn process_reads(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        self.on_handshake_progress(qconn);
        self.closing.on_read();
        self.wrote_since_read = false;
        self.liveness.on_packet(std::time::Instant::now());
        self.poll_h3(qconn)?;
        self.start_new_calls(qconn);
        self.reap_stopped_streams(qconn);
        Ok(())
    }

    fn process_writes(&mut self, qconn: &mut QuicheConnection) -> QuicResult<()> {
        self.drain_commands(qconn);
        if self.closing == Closing::Now {
            let _ = qconn.close(true, H3_NO_ERROR, b"");
            self.finish_all();
            return Ok(());
        }
        self.open_requests(qconn);
        if !self.dirty.is_empty() {
            let ids: Vec<u64> = self.dirty.drain().collect();
            self.wrote_since_read = true;
            for id in ids {
                if self.flush_stream(qconn, id) {
                    self.dirty.insert(id);
                }
            }
        }
        if self.closing.requested() && self.streams.is_empty() && self.pending_opens.is_empty() {
            if !self.wrote_since_read {
                // Everything written was followed by packets from the peer.
                let _ = qconn.close(true, H3_NO_ERROR, b"");
                self.finish_all();
                return Ok(());
            }
            self.closing = Closing::AfterNextRead;
        }
        if self.check_liveness(qconn) {
            return Ok(());
        }
        // Reads can be unblocked by our own writes (e.g. flow-control
        // updates), and commands may have made h3 events pending.
        self.poll_h3(qconn)?;
        self.start_new_calls(qconn);
        Ok(())
    }

    fn on_conn_close<M: tokio_quiche::metrics::Metrics>(
        &mut self,
        qconn: &mut QuicheConnection,
        _metrics: &M,
        result: &QuicResult<()>,
    ) {
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, error = %e, "connection closed with error");
        }
        let reason = super::close::close_reason(qconn);
        if let Some(reason) = &reason {
            tracing::debug!(peer = %self.peer, reason, "connection closed");
        }
        if reason.is_some() {
            // Keeps a reason recorded earlier (a refusal) otherwise.
            *self
                .shared
                .close_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = reason;
        }
        self.finish_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Closing;

    #[test]
    fn closing_only_moves_forward() {
        let mut c = Closing::Open;
        c.on_read();
        assert_eq!(c, Closing::Open);
        c.request(false);
        assert_eq!(c, Closing::WhenIdle);
        assert!(c.requested());
        let mut c = Closing::AfterNextRead;
        c.request(false);
        assert_eq!(c, Closing::AfterNextRead);
        assert!(c.requested());
        c.on_read();
        assert_eq!(c, Closing::Now);
        c.request(false);
        assert_eq!(c, Closing::Now);
        let mut forced = Closing::WhenIdle;
        forced.request(true);
        assert_eq!(forced, Closing::Now);
        assert!(!forced.requested());
    }
}
