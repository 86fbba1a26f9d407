//! What a call task and its connection exchange: the events of a stream,
//! the output a call queues, commands, the receive window, and the state
//! the connection shares with its owners.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio_quiche::quiche::h3;

use super::conn::{RECV_WINDOW, SEND_WINDOW};

/// Received bytes handed to a call task and not yet consumed by it.
#[derive(Default)]
pub(crate) struct RecvWindow {
    pub(super) queued: AtomicUsize,
    pub(super) paused: AtomicBool,
}

impl RecvWindow {
    /// The call task consumed `n` bytes. Returns `true` when the
    /// connection had stopped reading and must be told to resume
    /// ([`Command::Resume`]).
    pub(crate) fn release(&self, n: usize) -> bool {
        let before = self.queued.fetch_sub(n, Ordering::SeqCst);
        before.saturating_sub(n) < RECV_WINDOW / 2 && self.paused.swap(false, Ordering::SeqCst)
    }

    /// Whether the connection should stop reading for now. Pausing first
    /// and re-checking after means a concurrent `release` either sees the
    /// pause or is seen here.
    pub(super) fn should_pause(&self) -> bool {
        if self.queued.load(Ordering::SeqCst) < RECV_WINDOW {
            return false;
        }
        self.paused.store(true, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) < RECV_WINDOW {
            return !self.paused.swap(false, Ordering::SeqCst);
        }
        true
    }
}

/// A received header list.
pub(crate) type Headers = Vec<h3::Header>;
/// A header list to send (quiche takes the byte pairs as they are).
pub(crate) type OutHeaders = crate::proto::wire::Block;

/// What the connection tells a call task about its stream.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// The first header block (request headers on a server, response headers
    /// on a client).
    Headers(Headers),
    /// A chunk of body bytes.
    Data(Bytes),
    /// A second header block: trailers.
    Trailers(Headers),
    /// The peer finished its side of the stream.
    Finished,
    /// The peer reset the stream (or stopped reading it) with this code.
    Reset(u64),
}

/// Something a call task wants written on its stream.
#[derive(Debug)]
pub(crate) enum Out {
    Headers(OutHeaders, bool),
    /// Body bytes, whether they end the stream, and the send-window credit
    /// they hold.
    Data(Bytes, bool, u32),
    Trailers(OutHeaders),
}

/// A request stream a client asks its connection to open.
pub(crate) struct OpenRequest {
    pub(crate) headers: OutHeaders,
    /// The whole body of a one-message request (sent with the end of the
    /// stream); `None` for a streaming request, whose writer sends its
    /// messages through a [`RequestTx`].
    pub(crate) body: Option<Bytes>,
    pub(crate) events: mpsc::UnboundedSender<StreamEvent>,
    pub(crate) window: Arc<RecvWindow>,
    /// Receives the stream id once the stream is open.
    pub(crate) slot: Arc<AtomicU64>,
    /// A streaming request's send-window credit (see [`RequestTx`]).
    pub(crate) credit: Option<Arc<Semaphore>>,
    /// The caller allows this request to travel as 0-RTT early data (its
    /// method is idempotent and the client has 0-RTT on). Only one-message
    /// requests (`body` set) are sent early: a request that the server
    /// refuses as early data is resent whole after the handshake, which
    /// needs its body at hand.
    pub(crate) early_data_ok: bool,
}

/// Commands from call tasks to the connection.
pub(crate) enum Command {
    /// Client: open a request stream.
    Open(Box<OpenRequest>),
    /// Client: queue a frame on the request stream whose id is (or will
    /// be) in the slot; frames queued before the stream opens are sent
    /// right after its headers.
    SendOn(Arc<AtomicU64>, Out),
    /// A call task consumed enough received data: read the stream again.
    Resume(u64),
    /// Queue a frame on a stream.
    Send(u64, Out),
    /// Queue several frames at once (a whole unary response goes out in
    /// one wake-up of the connection, usually one packet).
    SendAll(u64, Vec<Out>),
    /// Abort a stream in both directions. `slot` holds the stream id (or
    /// `u64::MAX` when the stream was never opened).
    Cancel(Arc<AtomicU64>),
    /// Stop reading a stream (STOP_SENDING with this HTTP/3 error code)
    /// but keep writing it. Nothing is sent when the peer already ended
    /// its side.
    StopReading(u64, u64),
    /// Server: send GOAWAY; new requests are refused from now on. The
    /// sender is dropped once that holds.
    GoAway(tokio::sync::oneshot::Sender<()>),
    /// Close the connection once every stream is finished and its last
    /// data acknowledged; with `force`, at once.
    Close { force: bool },
    /// Close the connection at once; its calls fail with this reason
    /// (a 0-RTT connection whose handshake did not complete).
    Abandon(String),
    /// The peer's host said nothing listens at the peer's address (the
    /// text says so, for the calls): close the connection unless the peer
    /// shows it is alive (see `proto::liveness`).
    Refused(String),
}

/// A new request the server side hands to its call handler.
pub(crate) struct IncomingStream {
    pub(crate) headers: Headers,
    pub(crate) window: Arc<RecvWindow>,
    pub(crate) events: mpsc::UnboundedReceiver<StreamEvent>,
    pub(crate) tx: StreamTx,
    /// Fires when the stream is gone (reset, stopped, or its connection
    /// closed) before the call finished.
    pub(crate) gone: Gone,
}

/// Tells a call that its stream is gone, whoever reads the stream's
/// events: the connection holds the sending half and drops it with the
/// stream.
pub(crate) struct Gone(Option<tokio::sync::oneshot::Receiver<()>>);

impl Gone {
    /// A pair: the half the connection keeps with the stream, and this.
    pub(crate) fn pair() -> (tokio::sync::oneshot::Sender<()>, Self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, Gone(Some(rx)))
    }

    /// Whether the stream is gone; registers `cx` to be woken when it goes.
    pub(crate) fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let Some(rx) = self.0.as_mut() else {
            return true;
        };
        if std::pin::Pin::new(rx).poll(cx).is_ready() {
            self.0 = None;
            return true;
        }
        false
    }
}

/// Handle a call task uses to write to its stream.
#[derive(Clone)]
pub(crate) struct StreamTx {
    pub(crate) stream_id: u64,
    /// Server: the request's headers arrived in 0-RTT early data, which an
    /// attacker can replay. The connection only hands such a request to a
    /// call when its [`EarlyDataFilter`] says the method is idempotent.
    pub(crate) early_data: bool,
    pub(super) cmd: mpsc::UnboundedSender<Command>,
    pub(super) credit: Arc<Semaphore>,
    pub(crate) shared: Arc<ConnShared>,
}

impl StreamTx {
    /// Queues `out`; data waits for send-window credit first, so a slow
    /// peer slows the producer down instead of growing memory.
    ///
    /// Returns `false` when the stream or connection is gone.
    pub(crate) async fn send(&self, out: Out) -> bool {
        let out = match out {
            Out::Data(bytes, fin, _) => {
                let want = bytes.len().clamp(1, SEND_WINDOW) as u32;
                match self.credit.acquire_many(want).await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return false,
                }
                Out::Data(bytes, fin, want)
            }
            other => other,
        };
        self.cmd.send(Command::Send(self.stream_id, out)).is_ok()
    }

    /// Queues a complete response (headers, one message, trailers) in one
    /// command. Returns `false` when the stream or connection is gone.
    pub(crate) async fn send_response(
        &self,
        headers: OutHeaders,
        frame: Bytes,
        trailers: OutHeaders,
    ) -> bool {
        let want = frame.len().clamp(1, SEND_WINDOW) as u32;
        match self.credit.acquire_many(want).await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        let outs = vec![
            Out::Headers(headers, false),
            Out::Data(frame, false, want),
            Out::Trailers(trailers),
        ];
        self.cmd
            .send(Command::SendAll(self.stream_id, outs))
            .is_ok()
    }

    /// The call task consumed `n` received bytes.
    pub(crate) fn consumed(&self, window: &RecvWindow, n: usize) {
        if window.release(n) {
            let _ = self.cmd.send(Command::Resume(self.stream_id));
        }
    }

    /// Tells the peer to stop sending (STOP_SENDING with `code`) unless it
    /// already ended its side; writing goes on.
    pub(crate) fn stop_reading(&self, code: u64) {
        let _ = self.cmd.send(Command::StopReading(self.stream_id, code));
    }
}

/// Handle a client call's writer uses to send a streaming request.
pub(crate) struct RequestTx {
    pub(crate) slot: Arc<AtomicU64>,
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
    pub(crate) credit: Arc<Semaphore>,
}

impl RequestTx {
    /// Queues body bytes (`fin`: the last), waiting for send-window credit
    /// first. Returns `false` when the stream can no longer be written
    /// (the server stopped reading it, it was reset, or the connection
    /// closed).
    pub(crate) async fn send(&self, bytes: Bytes, fin: bool) -> bool {
        let want = bytes.len().clamp(1, SEND_WINDOW) as u32;
        match self.credit.acquire_many(want).await {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        let out = Out::Data(bytes, fin, want);
        self.cmd
            .send(Command::SendOn(self.slot.clone(), out))
            .is_ok()
    }
}

/// The future serving one call.
pub(crate) type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Called (inside the connection's worker task) for every new request;
/// returns the future that serves it.
pub(crate) type OnRequest = Arc<dyn Fn(IncomingStream, SocketAddr) -> CallFuture + Send + Sync>;

/// Server: says whether a request for this `:path` may be served from
/// 0-RTT early data, i.e. whether its method is idempotent (RFC 8470 §3:
/// replayable requests only for what is safe to replay). Requests it turns
/// down are reset with `H3_REQUEST_REJECTED` before any call starts, and
/// the client sends them again once the handshake is complete.
pub(crate) type EarlyDataFilter = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// Client: where a connection puts the TLS session (ticket) its server
/// sent, for the next dial to resume; shared by the clones of a client.
pub(crate) type SessionSlot = Arc<std::sync::Mutex<Option<Vec<u8>>>>;

/// State shared between a connection's worker and its owners.
#[derive(Default)]
pub(crate) struct ConnShared {
    /// Set once the connection has closed.
    pub(crate) closed: AtomicBool,
    /// Set once the application runs: the handshake is complete, or (a
    /// client resuming with 0-RTT) early data may be sent.
    pub(crate) ready: AtomicBool,
    /// Woken when `ready` is set.
    pub(crate) ready_notify: tokio::sync::Notify,
    /// The handshake resumed an earlier TLS session (no certificate
    /// exchange). Known once the handshake is complete.
    pub(crate) resumed: AtomicBool,
    /// The handshake is complete.
    pub(crate) established: AtomicBool,
    /// Client: requests sent as 0-RTT early data.
    pub(crate) early_requests: AtomicU64,
    /// Client: early-data requests the server refused (and that were sent
    /// again after the handshake).
    pub(crate) early_refused: AtomicU64,
    /// Woken when the connection closes.
    pub(crate) closed_notify: tokio::sync::Notify,
    /// The largest header block the peer accepts (its
    /// SETTINGS_MAX_FIELD_SECTION_SIZE, as RFC 9114 §4.2.2 counts it); 0
    /// until its settings arrive.
    pub(super) peer_field_limit: AtomicU64,
    /// Why the connection closed, when it was closed with an error.
    pub(super) close_reason: std::sync::Mutex<Option<String>>,
}

/// quiche's default SETTINGS_MAX_FIELD_SECTION_SIZE, assumed for a peer
/// whose settings have not arrived yet (knafeh peers advertise it).
pub(crate) const DEFAULT_FIELD_LIMIT: u64 = 32 * 1024;

impl ConnShared {
    /// Why the connection closed, if it closed with an error (e.g. the
    /// peer's TLS alert).
    pub(crate) fn close_reason(&self) -> Option<String> {
        self.close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Marks the connection ready for calls (see `ready`).
    pub(super) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.ready_notify.notify_waiters();
    }

    /// Resolves once the connection is ready for calls; `false` when it
    /// closed first.
    pub(crate) async fn wait_ready(&self) -> bool {
        loop {
            let ready = self.ready_notify.notified();
            let closed = self.closed_notify.notified();
            tokio::pin!(ready, closed);
            ready.as_mut().enable();
            closed.as_mut().enable();
            if self.ready.load(Ordering::Acquire) {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            tokio::select! {
                () = ready => {}
                () = closed => {}
            }
        }
    }

    /// Resolves once the connection has closed.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let closed = self.closed_notify.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            closed.await;
        }
    }

    /// The largest header block the peer accepts.
    pub(crate) fn peer_field_limit(&self) -> u64 {
        match self.peer_field_limit.load(Ordering::Acquire) {
            0 => DEFAULT_FIELD_LIMIT,
            n => n,
        }
    }
}

/// The size of a header block as SETTINGS_MAX_FIELD_SECTION_SIZE counts it:
/// names and values plus 32 bytes per field.
pub(crate) fn field_section_size(block: &OutHeaders) -> u64 {
    block
        .iter()
        .map(|(n, v)| (n.len() + v.len() + 32) as u64)
        .sum()
}
