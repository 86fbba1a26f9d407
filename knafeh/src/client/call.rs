//! One call on the wire: preparing and sending the request, reading the
//! response through the protocol core's reader, deadlines and
//! cancellation.

use super::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_quiche::quiche::h3;
use tracing::Instrument;

use crate::intercept::CallInfo;
use crate::propagate;
use crate::proto::compression::compress_tail;
use crate::proto::h3::H3_REQUEST_REJECTED;
use crate::proto::response::{Next, ResponseReader};
use crate::proto::wire;
use crate::service::Message;
use crate::transport::conn::{
    field_section_size, Command, ConnShared, OpenRequest, RecvWindow, RequestTx, StreamEvent,
    SEND_WINDOW,
};
use crate::{CallOptions, Code, Codec, Compression, Metadata, Response, Status, Streaming};
use tokio::sync::Semaphore;

impl Client {
    /// Encodes the request and fixes the deadline, before anything is
    /// awaited (so call futures do not borrow the request).
    pub(super) fn prepare<Req: Message>(
        &self,
        path: &'static str,
        req: &Req,
        options: CallOptions,
    ) -> Result<Prepared, Status> {
        let mut prepared = self.prepare_head(path, options)?;
        let codec = self.inner.cfg.codec;
        let mut body = BytesMut::with_capacity(128);
        req.encode_message(codec, &mut body).map_err(|e| {
            Status::invalid_argument(format!(
                "{path}: request does not encode as {}: {e}",
                codec.content_type()
            ))
        })?;
        compress_tail(&mut body, 0, prepared.encoding);
        prepared.body = Some(body.freeze());
        Ok(prepared)
    }

    /// Fixes the deadline: a call whose request messages are sent later,
    /// as a stream. The interceptors run later, in [`Client::intercept`].
    pub(super) fn prepare_head(
        &self,
        path: &'static str,
        options: CallOptions,
    ) -> Result<Prepared, Status> {
        let cfg = &self.inner.cfg;
        options.check(path)?;
        let timeout = options.timeout.or(cfg.default_timeout);
        // A timeout too large to represent is no deadline at all.
        let own = timeout.and_then(|t| Instant::now().checked_add(t));
        let inherited = propagate::inherit(&options, own);
        let deadline = inherited.deadline;
        let encoding = options.compression.unwrap_or(cfg.compression);
        let CallOptions {
            metadata, retry, ..
        } = options;
        Ok(Prepared {
            path,
            body: None,
            deadline,
            metadata,
            cancel: inherited.cancel,
            encoding,
            retry,
        })
    }

    /// Runs the interceptors, once per call and before anything is sent:
    /// the call with the metadata they left. One that awaits still ends at
    /// the call's deadline or when the call it was made from is cancelled.
    pub(super) async fn intercept(
        &self,
        prepared: Result<Prepared, Status>,
    ) -> Result<Prepared, Status> {
        let mut prepared = prepared?;
        let interceptors = &self.inner.cfg.interceptors;
        if interceptors.is_empty() {
            return Ok(prepared);
        }
        let (path, deadline) = (prepared.path, prepared.deadline);
        let metadata = std::mem::take(&mut prepared.metadata);
        let mut info = CallInfo::new(path.to_owned(), metadata, deadline, None);
        let run = interceptors.run(&mut info);
        let run = propagate::unless_cancelled(prepared.cancel.as_mut(), path, run);
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), run)
                .await
                .unwrap_or_else(|_| Err(deadline_status(path)))?,
            None => run.await?,
        }
        prepared.metadata = info.into_parts().0;
        Ok(prepared)
    }

    pub(super) async fn start(&self, prepared: Prepared) -> Result<ActiveCall, Status> {
        let Prepared {
            path,
            body,
            deadline,
            mut metadata,
            mut cancel,
            encoding,
            retry,
            ..
        } = prepared;
        crate::trace::inject(&mut metadata);
        let early = retry.idempotent && self.inner.cfg.zero_rtt;
        let work = self.open_call(path, body, deadline, &metadata, encoding, early);
        let work = propagate::unless_cancelled(cancel.as_mut(), path, work);
        let started = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), work)
                .await
                .unwrap_or_else(|_| Err(deadline_status(path))),
            None => work.await,
        };
        started.map(|call| ActiveCall { cancel, ..call })
    }

    /// Picks a connection (dialling if needed) and opens the call's
    /// request stream on it: the headers, and the body of a one-message
    /// request (`None` for a request stream, which gets a writer).
    async fn open_call(
        &self,
        path: &'static str,
        body: Option<Bytes>,
        deadline: Option<Instant>,
        metadata: &Metadata,
        encoding: Compression,
        early_data_ok: bool,
    ) -> Result<ActiveCall, Status> {
        let cfg = &self.inner.cfg;
        let traffic = crate::metrics::client_traffic(path);
        let (conn, load) = self.connect_any().await?;
        // The server gets the time left after dialling, so both sides
        // share one deadline.
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (authority, codec) = (&conn.authority, cfg.codec);
        let headers = wire::request_headers(authority, path, codec, encoding, remaining, metadata);
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
        // A streaming request gets a writer with its own send window.
        let credit = body
            .is_none()
            .then(|| Arc::new(Semaphore::new(SEND_WINDOW)));
        let request_tx = credit.as_ref().map(|credit| RequestTx {
            slot: slot.clone(),
            cmd: conn.cmd.clone(),
            credit: credit.clone(),
        });
        if let Some(body) = &body {
            traffic.sent(body.len());
        }
        let open = Command::Open(Box::new(OpenRequest {
            headers,
            body,
            events: ev_tx,
            window: window.clone(),
            slot: slot.clone(),
            credit,
            early_data_ok,
        }));
        if conn.cmd.send(open).is_err() {
            return Err(Status::unavailable("connection closed"));
        }
        Ok(ActiveCall {
            request_tx,
            refused: false,
            aborted: Arc::new(Aborted::default()),
            path,
            codec: cfg.codec,
            encoding,
            events: ev_rx,
            guard: CancelGuard {
                cmd: conn.cmd.clone(),
                slot,
                armed: true,
            },
            reader: ResponseReader::new(path, cfg.max_message_size),
            window,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            conn: conn.shared.clone(),
            _load: load,
            cancel: None,
            traffic,
        })
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

    pub(super) async fn unary_prepared<Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
    ) -> Result<Response<Resp>, Status> {
        let mut span = CallSpan::new(path);
        let result = async {
            let prepared = self.intercept(prepared).await?;
            self.unary_with_retries::<Resp>(prepared).await
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

    pub(super) async fn server_streaming_prepared<Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
    ) -> Result<Streaming<Resp>, Status> {
        let mut span = CallSpan::new(path);
        // Waits for the response headers so that call-level errors
        // (unknown method, bad request...) come back here.
        let result = async {
            let prepared = self.intercept(prepared).await?;
            self.open_with_retries(prepared).await
        }
        .instrument(span.span.clone())
        .await;
        match result {
            Ok((call, headers)) => Ok(Streaming::new(DecodeStream::<Resp> {
                call,
                span,
                end: None,
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

/// Reads the one response message and the status after it.
pub(super) async fn read_unary<Resp: Message>(
    call: &mut ActiveCall,
) -> Result<Response<Resp>, Status> {
    let (path, codec) = (call.path, call.codec);
    let mut decode = |b: &[u8]| decode_response::<Resp>(path, codec, b);
    let msg = match std::future::poll_fn(|cx| call.poll_message(cx, &mut decode)).await {
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
    let trailers = call.reader.take_trailers().unwrap_or_default();
    Ok(Response::new(msg, call.reader.take_headers(), trailers))
}

/// The span of one client call; it covers the call from start to end.
pub(super) struct CallSpan {
    pub(super) span: tracing::Span,
    pub(super) started: Instant,
    pub(super) done: bool,
    /// The call's metrics (counted as cancelled if dropped unfinished).
    pub(super) metered: crate::metrics::CallMetrics,
}

impl CallSpan {
    pub(super) fn new(path: &'static str) -> Self {
        let (service, method) = wire::split_path(path).unwrap_or(("", path));
        CallSpan {
            span: tracing::debug_span!(
                "knafeh.client",
                service,
                method,
                trace_id = tracing::field::Empty,
                code = tracing::field::Empty,
                duration_us = tracing::field::Empty,
            ),
            started: Instant::now(),
            done: false,
            metered: crate::metrics::CallMetrics::start(crate::metrics::client_traffic(path)),
        }
    }

    /// Records how the call ended.
    pub(super) fn finish(&mut self, err: Option<&Status>) {
        self.done = true;
        let code = err.map_or(Code::Ok, Status::code);
        self.metered.finish(code);
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

pub(super) fn decode_response<T: Message>(
    path: &str,
    codec: Codec,
    payload: &[u8],
) -> Result<T, Status> {
    T::decode_message(codec, payload).map_err(|e| {
        Status::internal(format!(
            "{path}: response does not decode as {} ({}): {e}",
            std::any::type_name::<T>(),
            codec.content_type()
        ))
    })
}

pub(super) fn deadline_status(path: &str) -> Status {
    Status::deadline_exceeded(format!("{path}: deadline passed"))
}

pub(super) struct DecodeStream<T> {
    pub(super) call: ActiveCall,
    pub(super) span: CallSpan,
    /// A bidirectional call's request pump, told how the call ended (or,
    /// when this is dropped first, that it was cancelled).
    pub(super) end: Option<tokio::sync::oneshot::Sender<Status>>,
    pub(super) _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> DecodeStream<T> {
    fn ended(&mut self, status: &Status) {
        if let Some(end) = self.end.take() {
            let _ = end.send(status.clone());
        }
    }
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
                this.ended(&Status::ok());
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                this.span.finish(Some(&status));
                this.ended(&status);
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(Err(status)))) => {
                let status = this.call.fail(status);
                this.span.finish(Some(&status));
                this.ended(&status);
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(decoded))) => Poll::Ready(Some(decoded)),
        }
    }
}

/// Cancels the stream when a call is dropped before it finished.
pub(super) struct CancelGuard {
    pub(super) cmd: mpsc::UnboundedSender<Command>,
    pub(super) slot: Arc<AtomicU64>,
    pub(super) armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.cmd.send(Command::Cancel(self.slot.clone()));
        }
    }
}

/// A request ready to be sent.
#[derive(Clone)]
pub(super) struct Prepared {
    pub(super) path: &'static str,
    /// The one request message, framed; `None` for a request stream.
    pub(super) body: Option<Bytes>,
    pub(super) deadline: Option<Instant>,
    pub(super) metadata: Metadata,
    /// The cancellation of the call being served, if inherited.
    pub(super) cancel: Option<propagate::Cancel>,
    /// How request messages are compressed.
    pub(super) encoding: Compression,
    /// What the call's options say about retries.
    pub(super) retry: super::CallRetry,
}

/// The status a call's own side ended it with (a request stream that
/// failed), which its reader reports instead of the reset that follows.
pub(super) type Aborted = std::sync::OnceLock<Status>;

pub(super) struct ActiveCall {
    /// The writer of a streaming request (taken by its pump).
    pub(super) request_tx: Option<RequestTx>,
    /// Set when the server refused the stream unprocessed
    /// (`H3_REQUEST_REJECTED`), which makes the call safe to retry.
    pub(super) refused: bool,
    /// Set when the client's side ended the call itself.
    pub(super) aborted: Arc<Aborted>,
    pub(super) path: &'static str,
    pub(super) codec: Codec,
    /// How request messages are compressed (for a request stream's pump).
    pub(super) encoding: Compression,
    pub(super) events: mpsc::UnboundedReceiver<StreamEvent>,
    pub(super) guard: CancelGuard,
    /// The protocol side: what the response says so far.
    pub(super) reader: ResponseReader,
    pub(super) window: Arc<RecvWindow>,
    pub(super) deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's shared state (why it closed, if it did).
    pub(super) conn: Arc<ConnShared>,
    /// Counts the call against its endpoint until it is dropped.
    pub(super) _load: LoadGuard,
    /// The cancellation of the call being served, if inherited.
    pub(super) cancel: Option<propagate::Cancel>,
    /// Where the call's message bytes are counted.
    pub(super) traffic: crate::metrics::Traffic,
}

pub(super) fn headers_view(h: &[h3::Header]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    use tokio_quiche::quiche::h3::NameValue;
    h.iter().map(|x| (x.name(), x.value()))
}

impl ActiveCall {
    /// Ends the call with `status` (the stream is aborted if still open).
    pub(super) fn fail(&mut self, status: Status) -> Status {
        self.reader.fail(status)
    }

    /// Next event, or a status when the deadline passes (checked first, so
    /// a backlog of events cannot outlive the deadline).
    pub(super) fn poll_event(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<StreamEvent, Status>> {
        let expired = match &mut self.deadline {
            Some(sleep) => {
                sleep.as_mut().poll(cx).is_ready() || Instant::now() >= sleep.deadline().into_std()
            }
            None => false,
        };
        if expired {
            return Poll::Ready(Err(self.fail(deadline_status(self.path))));
        }
        if let Some(Poll::Ready(status)) = self.cancel.as_mut().map(|c| c.poll(cx, self.path)) {
            return Poll::Ready(Err(self.fail(status)));
        }
        let event = self.events.poll_recv(cx);
        if let Poll::Ready(Some(StreamEvent::Reset(_)) | None) = event {
            if let Some(status) = self.aborted.get().cloned() {
                return Poll::Ready(Err(self.fail(status)));
            }
        }
        match event {
            Poll::Ready(Some(StreamEvent::Reset(code))) => {
                // The server ended the stream; nothing to cancel.
                self.guard.armed = false;
                self.refused = code == H3_REQUEST_REJECTED;
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

    /// Hands a stream event to the reader; the stream's flow-control
    /// credit is given back as body bytes are taken.
    pub(super) fn feed(&mut self, ev: StreamEvent) -> Result<(), Status> {
        let fed = match ev {
            StreamEvent::Headers(h) => self.reader.on_headers(headers_view(&h)),
            StreamEvent::Data(bytes) => {
                self.traffic.received(bytes.len());
                if self.window.release(bytes.len()) {
                    let id = self.guard.slot.load(Ordering::Acquire);
                    let _ = self.guard.cmd.send(Command::Resume(id));
                }
                self.reader.on_data(&bytes)
            }
            StreamEvent::Trailers(h) => self.reader.on_trailers(headers_view(&h)),
            StreamEvent::Finished => self.reader.on_finished(),
            // `poll_event` turns resets into errors.
            StreamEvent::Reset(_) => Ok(()),
        };
        if self.reader.server_finished() {
            // The server ended the stream: nothing to cancel.
            self.guard.armed = false;
        }
        fed
    }

    /// Waits for the response headers. A trailers-only response moves the
    /// call straight to its end; a non-OK one is returned as the error.
    pub(super) fn poll_headers(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        while self.reader.awaiting_headers() {
            match self.poll_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(s)) => return Poll::Ready(Err(s)),
                Poll::Ready(Ok(ev)) => {
                    if let Err(s) = self.feed(ev) {
                        return Poll::Ready(Err(s));
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next response message, given to `f` where it lies in the
    /// receive buffer (no copy, no allocation); `None` after an OK status.
    pub(super) fn poll_message<R>(
        &mut self,
        cx: &mut TaskContext<'_>,
        f: &mut impl FnMut(&[u8]) -> R,
    ) -> Poll<Option<Result<R, Status>>> {
        loop {
            match self.reader.next_message_with(&mut *f) {
                Ok(Next::Message(m)) => return Poll::Ready(Some(Ok(m))),
                Ok(Next::End) => return Poll::Ready(None),
                Err(s) => return Poll::Ready(Some(Err(s))),
                Ok(Next::NeedEvent) => {}
            }
            let fed = match self.poll_event(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(s)) => Err(s),
                Poll::Ready(Ok(ev)) => self.feed(ev),
            };
            if let Err(s) = fed {
                return Poll::Ready(Some(Err(s)));
            }
        }
    }
}
