//! One call on the server: reading the request through the protocol
//! core's reader, running the handler, writing the response or stream.

use super::*;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::mpsc;
use tokio_quiche::quiche::h3;
use tracing::Instrument;

use crate::intercept::CallInfo;
use crate::propagate;
use crate::proto::compression::{compress_frames, response_encoding};
use crate::proto::h3::H3_NO_ERROR;
use crate::proto::request::{read_timeout_status, RequestReader};
use crate::proto::text::shown;
use crate::proto::wire;
use crate::service::{
    BoxFuture, Call, CatchUnwind, FrameStream, Reply, Request, RequestShape, Service,
};
use crate::streaming::YieldPolicy;
use crate::transport::conn::{
    field_section_size, Gone, IncomingStream, Out, RecvWindow, StreamEvent, StreamTx,
};

use super::requests::{RequestFault, RequestStream};
use crate::{Codec, Compression, Context, Metadata, Status};

pub(super) fn view(headers: &[h3::Header]) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    use tokio_quiche::quiche::h3::NameValue;
    headers.iter().map(|h| (h.name(), h.value()))
}

pub(super) enum Outcome {
    Done(Status),
    Cancelled,
}

pub(super) async fn handle_call(
    state: Arc<ServerState>,
    incoming: IncomingStream,
    peer: SocketAddr,
    _guard: ActiveCallGuard,
) {
    let IncomingStream {
        headers,
        window,
        events,
        tx,
        gone,
    } = incoming;
    let start = Instant::now();
    let head = wire::parse_request(view(&headers));
    let mut metered = crate::metrics::server_call(&state.services, head.as_ref().ok());
    let traffic = metered.traffic();
    let label = CallLabel::new(head.as_ref().ok(), peer);
    let span = tracing::debug_span!(
        "knafeh.server",
        service = %label.service,
        method = %label.method,
        %peer,
        trace_id = tracing::field::Empty,
        code = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    crate::trace::server_span(&span, head.as_ref().ok().map(|h| &h.metadata));
    let fut = async move {
        let outcome = match head {
            Err(refusal) => refuse_head(&headers, refusal, &tx).await,
            Ok(head) => {
                let stream = CallStream {
                    events,
                    tx,
                    window,
                    gone,
                    traffic,
                };
                off_the_connection_if_compressed(&state, &head).await;
                serve(&state, head, stream, peer).await
            }
        };
        if let Outcome::Done(status) = &outcome {
            metered.finish(status.code());
        }
        log_outcome(&outcome, start, &label);
    };
    fut.instrument(span).await
}

/// A call that decompresses or compresses messages does that work in its
/// own task, not in the connection's inline first poll of a new call
/// (`start_new_calls`), where inflating a large message would stall every
/// call on the connection: it yields once, so the connection spawns it.
async fn off_the_connection_if_compressed(state: &ServerState, head: &wire::RequestHead) {
    let response = response_encoding(state.compression, head.encoding, head.accept);
    if head.encoding != Compression::Identity || response != Compression::Identity {
        tokio::task::yield_now().await;
    }
}

/// Answers a request whose header block was refused, in the request's
/// codec when it named a known one, and stops reading it.
async fn refuse_head(headers: &[h3::Header], refusal: wire::Refusal, tx: &StreamTx) -> Outcome {
    let codec = view(headers)
        .find(|(n, _)| *n == b"content-type")
        .and_then(|(_, v)| Codec::from_content_type(v))
        .unwrap_or_default();
    tx.send(Out::Headers(wire::refusal_block(&refusal, codec), true))
        .await;
    tx.stop_reading(H3_NO_ERROR);
    Outcome::Done(refusal.status)
}

/// What the logs name a call by. The failure warning carries it itself: the
/// per-call span is at debug level and may be off.
struct CallLabel {
    service: String,
    method: String,
    peer: SocketAddr,
    trace: Option<crate::TraceParent>,
}

impl CallLabel {
    fn new(head: Option<&wire::RequestHead>, peer: SocketAddr) -> Self {
        CallLabel {
            service: head.map(|h| h.service.clone()).unwrap_or_default(),
            method: head.map(|h| h.method.clone()).unwrap_or_default(),
            peer,
            trace: head.and_then(|h| crate::trace::parent_in(&h.metadata)),
        }
    }
}

/// Records how the call ended on its span (the current one) and logs it:
/// a warning naming the call for `INTERNAL`, debug events otherwise.
fn log_outcome(outcome: &Outcome, started: Instant, label: &CallLabel) {
    let span = tracing::Span::current();
    span.record("duration_us", started.elapsed().as_micros() as u64);
    let status = match outcome {
        Outcome::Done(status) => status,
        Outcome::Cancelled => {
            span.record("code", "CANCELLED");
            tracing::debug!("call cancelled by the client");
            return;
        }
    };
    span.record("code", status.code().as_str());
    if status.code() == crate::Code::Internal {
        tracing::warn!(
            service = %label.service,
            method = %label.method,
            peer = %label.peer,
            trace_id = label.trace.map(|t| t.trace_id_hex()).as_deref(),
            code = status.code().as_str(),
            message = status.message(),
            "call failed"
        );
    } else {
        tracing::debug!(code = status.code().as_str(), "call finished");
    }
}

/// The stream of one call, as the connection handed it over.
pub(super) struct CallStream {
    pub(super) events: mpsc::UnboundedReceiver<StreamEvent>,
    pub(super) tx: StreamTx,
    pub(super) window: Arc<RecvWindow>,
    pub(super) gone: Gone,
    pub(super) traffic: crate::metrics::Traffic,
}

/// Serves one call: interceptors, routing, the request, the handler,
/// then the response (one message, or a stream) and its status.
pub(super) async fn serve(
    state: &ServerState,
    mut head: wire::RequestHead,
    stream: CallStream,
    peer: SocketAddr,
) -> Outcome {
    let CallStream {
        mut events,
        tx,
        window,
        mut gone,
        traffic,
    } = stream;
    let tx = &tx;
    let gone = &mut gone;
    let codec = head.codec;
    let deadline = head.timeout.map(|t| Instant::now() + t);
    let refuse = |status: Status| refuse(tx, codec, status);
    // One timer for the whole call: interceptors, handler, any stream.
    let mut sleep = deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into())));
    // Interceptors first: a refused call learns nothing about the services.
    let intercepted = intercept_call(state, &mut head, deadline, peer, gone, &mut sleep);
    let response_md = match intercepted.await {
        Ok(md) => md,
        Err(Some(status)) => return refuse(status).await,
        Err(None) => return Outcome::Cancelled,
    };
    let (service, shape) = match route(state, &head) {
        Ok(routed) => routed,
        Err(status) => return refuse(status).await,
    };
    // Read the one request message, or hand the handler the stream.
    let fault = RequestFault::default();
    let request = match shape {
        RequestShape::One => {
            match read_request(state, &head, &mut events, deadline, tx, &window, traffic).await {
                Ok(p) => Request::One(p),
                Err(Some(status)) => return refuse(status).await,
                Err(None) => return Outcome::Cancelled,
            }
        }
        RequestShape::Stream => {
            let stream = RequestStream::new(
                &head.path,
                state.max_message_size,
                head.encoding,
                events,
                tx.clone(),
                window,
                fault.clone(),
            );
            Request::Stream(Box::pin(stream.metered(traffic)))
        }
    };
    let client = (peer, tx.early_data);
    let (ctx, call) = call_for(state, &mut head, deadline, client, response_md, request);
    // Calls the handler makes inherit this call's deadline and cancellation.
    let handler = CatchUnwind(propagate::scoped(&ctx, service.call(&head.method, call)));
    let reply = match run_handler(handler, &head.path, &ctx, gone, &mut sleep).await {
        Ok(reply) => propagate::scoped_reply(&ctx, reply),
        Err(None) => return cancelled(&ctx),
        Err(Some(status)) => return refuse(status).await,
    };
    // A request stream the client got wrong fails the call even when the
    // handler carried on.
    if let Some(status) = fault.get() {
        return refuse(status).await;
    }
    let ending = Ending {
        encoding: response_encoding(state.compression, head.encoding, head.accept),
        path: &head.path,
        fault: &fault,
        gone,
        sleep: &mut sleep,
        tx,
        traffic,
    };
    match send_reply(reply, &ctx, codec, ending).await {
        Outcome::Cancelled => cancelled(&ctx),
        done => done,
    }
}

/// The handler's view of the call (the request metadata moves into it,
/// with the response metadata the interceptors set; the client's address
/// and whether the request came in 0-RTT early data), and the call as the
/// service takes it.
fn call_for(
    state: &ServerState,
    head: &mut wire::RequestHead,
    deadline: Option<Instant>,
    (peer, early_data): (SocketAddr, bool),
    response_md: crate::Metadata,
    request: Request,
) -> (Context, Call) {
    let metadata = std::mem::take(&mut head.metadata);
    let ctx = Context::new(head.path.clone(), metadata, deadline, peer)
        .with_draining(state.draining.subscribe())
        .with_early_data(early_data);
    if !response_md.is_empty() {
        *ctx.response_metadata_mut() = response_md;
    }
    let call = Call {
        codec: head.codec,
        request,
        ctx: ctx.clone(),
    };
    (ctx, call)
}

/// A call its client cancelled: work carrying its context learns it.
fn cancelled(ctx: &Context) -> Outcome {
    ctx.cancel();
    Outcome::Cancelled
}

/// What the end of a call needs besides its reply.
struct Ending<'a> {
    /// How response messages are compressed.
    encoding: Compression,
    path: &'a str,
    fault: &'a RequestFault,
    gone: &'a mut Gone,
    sleep: &'a mut Option<Pin<Box<tokio::time::Sleep>>>,
    tx: &'a StreamTx,
    traffic: crate::metrics::Traffic,
}

/// Answers with a trailers-only response. A response that ends the call
/// while the client is still sending stops the rest with H3_NO_ERROR
/// (RFC 9114 §4.1): the answer is complete, the request was not cancelled.
async fn refuse(tx: &StreamTx, codec: Codec, status: Status) -> Outcome {
    let (block, status) = fit(tx, "status metadata", status, |s| {
        wire::trailers_only(200, codec, s)
    });
    tx.send(Out::Headers(block, true)).await;
    tx.stop_reading(H3_NO_ERROR);
    Outcome::Done(status)
}

/// Sends the handler's reply: headers with its metadata, then the one
/// message or the stream, then the status.
async fn send_reply(reply: Reply, ctx: &Context, codec: Codec, mut end: Ending<'_>) -> Outcome {
    let tx = end.tx;
    let md = ctx.take_response_metadata();
    let headers = wire::response_headers(codec, end.encoding, &md);
    let size = field_section_size(&headers);
    let limit = tx.shared.peer_field_limit();
    if size > limit {
        let status = header_limit_status("response metadata", size, limit);
        return refuse(tx, codec, status).await;
    }
    let stream = match reply {
        Reply::Unary(frame) => {
            let frame = compress_frames(frame, end.encoding);
            let ok = Status::ok();
            end.traffic.sent(frame.len());
            if !tx.send_response(headers, frame, wire::trailers(&ok)).await {
                return Outcome::Cancelled;
            }
            tx.stop_reading(H3_NO_ERROR);
            return Outcome::Done(ok);
        }
        Reply::Stream(stream) => compressed(stream, end.encoding),
    };
    if !tx.send(Out::Headers(headers, false)).await {
        return Outcome::Cancelled;
    }
    let outcome = send_stream(stream, &mut end, tx).await;
    tx.stop_reading(H3_NO_ERROR);
    outcome
}

/// Runs the interceptors on the call's metadata; the response metadata
/// they set, or the status to answer with (a refusing interceptor's, with
/// that metadata; `DEADLINE_EXCEEDED`; `INTERNAL` for a panic); `Err(None)`
/// when the client went away.
///
/// An interceptor that awaits does so here, in the call's task (the
/// connection polls a new call once, then spawns it): other calls go on
/// meanwhile, and its future is dropped when the call ends.
async fn intercept_call(
    state: &ServerState,
    head: &mut wire::RequestHead,
    deadline: Option<Instant>,
    peer: SocketAddr,
    gone: &mut Gone,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> Result<Metadata, Option<Status>> {
    if state.interceptors.is_empty() {
        return Ok(Metadata::new());
    }
    let mut info = CallInfo::new(
        head.path.clone(),
        std::mem::take(&mut head.metadata),
        deadline,
        Some(peer),
    );
    let guarded = {
        let run = CatchUnwind(std::pin::pin!(state.interceptors.run(&mut info)));
        guarded_with(run, gone, sleep).await
    };
    let verdict = match guarded {
        Guarded::Done(Ok(verdict)) => verdict,
        Guarded::Done(Err(panic)) => {
            tracing::error!(path = %head.path, panic = %panic, "interceptor panicked");
            let status = Status::internal(format!("an interceptor for {} panicked", head.path));
            return Err(Some(status));
        }
        Guarded::Cancelled => return Err(None),
        Guarded::Deadline => {
            let status = Status::deadline_exceeded("deadline passed while the interceptors ran");
            return Err(Some(status));
        }
    };
    let (md, response_md) = info.into_parts();
    head.metadata = md;
    match verdict {
        Ok(()) => Ok(response_md),
        Err(status) => {
            let mut md = response_md;
            md.extend(status.metadata().clone());
            Err(Some(status.with_metadata(md)))
        }
    }
}

/// The service the call names and the shape of the method's request, or
/// `UNIMPLEMENTED`.
fn route<'s>(
    state: &'s ServerState,
    head: &wire::RequestHead,
) -> Result<(&'s Arc<dyn Service>, RequestShape), Status> {
    let Some(service) = state.services.get(head.service.as_str()) else {
        return Err(Status::unimplemented(format!(
            "unknown service {}",
            shown(head.service.as_bytes())
        )));
    };
    match service.request_shape(&head.method) {
        Some(shape) => Ok((service, shape)),
        None => Err(Status::unimplemented(format!(
            "unknown method {} of service {}",
            shown(head.method.as_bytes()),
            head.service
        ))),
    }
}

/// Runs the handler until it answers, the deadline passes or the client
/// goes away: the reply; `Err(Some(status))` to answer with;
/// `Err(None)` when the client went away.
async fn run_handler(
    handler: CatchUnwind<BoxFuture<Result<Reply, Status>>>,
    path: &str,
    ctx: &Context,
    gone: &mut Gone,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> Result<Reply, Option<Status>> {
    match guarded_with(handler, gone, sleep).await {
        Guarded::Cancelled => Err(None),
        Guarded::Deadline => Err(Some(Status::deadline_exceeded(
            "deadline passed before the handler finished",
        ))),
        Guarded::Done(Err(panic)) => {
            tracing::error!(path = %path, panic = %panic, "handler panicked");
            Err(Some(Status::internal(format!(
                "handler for {path} panicked"
            ))))
        }
        Guarded::Done(Ok(Err(status))) => {
            // Metadata the handler attached goes out with its error.
            let mut md = ctx.take_response_metadata();
            md.extend(status.metadata().clone());
            Err(Some(status.with_metadata(md)))
        }
        Guarded::Done(Ok(Ok(reply))) => Ok(reply),
    }
}

/// Sends a response stream after its headers, then the status trailers.
async fn send_stream(mut stream: FrameStream, end: &mut Ending<'_>, tx: &StreamTx) -> Outcome {
    let (path, fault, traffic) = (end.path, end.fault, end.traffic);
    let (gone, sleep) = (&mut *end.gone, &mut *end.sleep);
    let mut policy = YieldPolicy::new();
    let status = loop {
        // Items that are ready at once go out together, in one DATA frame
        // (one command to the connection); an item that is not ready yet
        // holds back the ones before it for at most a few turns of the
        // runtime (see `YieldPolicy`).
        let (frames, end) = match next_batch(&mut stream, gone, sleep, &mut policy).await {
            Batch::Cancelled => return Outcome::Cancelled,
            Batch::Deadline => break Status::deadline_exceeded("deadline passed while streaming"),
            Batch::Frames(frames, end) => (frames, end.map(|end| end_status(end, path, fault))),
        };
        if !frames.is_empty() {
            traffic.sent(frames.len());
            // Waiting for send credit (a client that reads slowly) still
            // ends at the deadline or on cancellation.
            let send = tx.send(Out::Data(frames.freeze(), false, 0));
            match guarded_with(Box::pin(send), gone, sleep).await {
                Guarded::Done(true) => {}
                Guarded::Done(false) | Guarded::Cancelled => return Outcome::Cancelled,
                Guarded::Deadline => {
                    break Status::deadline_exceeded("deadline passed while streaming")
                }
            }
        }
        if let Some(status) = end {
            break status;
        }
    };
    let (trailers, status) = fit(tx, "status metadata", status, wire::trailers);
    if !tx.send(Out::Trailers(trailers)).await {
        return Outcome::Cancelled;
    }
    Outcome::Done(status)
}

/// The status a response stream ended with: a request stream the client
/// got wrong fails the call even when the handler carried on.
fn end_status(end: End, path: &str, fault: &RequestFault) -> Status {
    match end {
        End::Done => fault.get().unwrap_or_else(Status::ok),
        End::Failed(status) => status,
        End::Panicked(panic) => {
            tracing::error!(path = %path, panic = %panic, "stream producer panicked");
            Status::internal(format!("stream producer for {path} panicked"))
        }
    }
}

/// The `INTERNAL` status replacing a header block the client would refuse
/// (it would close the whole connection over it).
pub(super) fn header_limit_status(what: &str, size: u64, limit: u64) -> Status {
    tracing::warn!(
        size,
        limit,
        "{what} too large for the client; sending INTERNAL instead"
    );
    Status::internal(format!(
        "{what} of {size} bytes exceed the client's header limit of {limit} bytes"
    ))
}

/// The block `build` makes for `status` if the client accepts its size;
/// otherwise the block of an `INTERNAL` status saying so (and that status).
pub(super) fn fit(
    tx: &StreamTx,
    what: &str,
    status: Status,
    build: impl Fn(&Status) -> crate::transport::conn::OutHeaders,
) -> (crate::transport::conn::OutHeaders, Status) {
    let block = build(&status);
    let size = field_section_size(&block);
    let limit = tx.shared.peer_field_limit();
    if size <= limit {
        return (block, status);
    }
    let status = header_limit_status(what, size, limit);
    (build(&status), status)
}

/// Reads the single request message. `Err(None)` means the client went
/// away; `Err(Some(status))` is the answer to give.
pub(super) async fn read_request(
    state: &ServerState,
    head: &wire::RequestHead,
    events: &mut mpsc::UnboundedReceiver<StreamEvent>,
    deadline: Option<Instant>,
    tx: &StreamTx,
    window: &RecvWindow,
    traffic: crate::metrics::Traffic,
) -> Result<Bytes, Option<Status>> {
    // A client may not hold a call open without sending its request: the
    // read ends at the call's deadline or the server's read timeout.
    let limit = Instant::now() + state.request_read_timeout;
    let read_by = deadline.map_or(limit, |d| d.min(limit));
    let mut reader =
        RequestReader::new(&head.path, state.max_message_size).with_encoding(head.encoding);
    loop {
        let ev = match tokio::time::timeout_at(read_by.into(), events.recv()).await {
            Ok(ev) => ev,
            Err(_) => {
                let by_deadline = deadline == Some(read_by);
                let status =
                    read_timeout_status(&head.path, by_deadline, state.request_read_timeout);
                return Err(Some(status));
            }
        };
        match ev {
            Some(StreamEvent::Data(bytes)) => {
                tx.consumed(window, bytes.len());
                traffic.received(bytes.len());
                reader.on_data(&bytes).map_err(Some)?;
            }
            Some(StreamEvent::Finished) => return reader.on_finished().map_err(Some),
            Some(StreamEvent::Reset(_)) | None => return Err(None),
            Some(StreamEvent::Headers(_)) | Some(StreamEvent::Trailers(_)) => {}
        }
    }
}

/// Largest batch of stream items sent as one DATA frame.
pub(super) const STREAM_BATCH: usize = 64 * 1024;

/// How a response stream ended.
pub(super) enum End {
    Done,
    Failed(Status),
    Panicked(String),
}

pub(super) enum Batch {
    /// Framed items that were ready (maybe none), and how the stream
    /// ended if it did.
    Frames(BytesMut, Option<End>),
    Cancelled,
    Deadline,
}

/// Collects the items of `stream` that are ready, waiting for the first
/// one; stops at [`STREAM_BATCH`] bytes, at the end of the stream, or when
/// the next item is not ready (after yielding, while the batch is small, as
/// `policy` says, so that a producer task can catch up).
pub(super) async fn next_batch(
    stream: &mut crate::service::FrameStream,
    gone: &mut Gone,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    policy: &mut YieldPolicy,
) -> Batch {
    let mut frames = BytesMut::new();
    // (A deadline or cancellation noticed after a turn drops the items
    // collected before it: the call is ending.)
    policy.start_batch();
    loop {
        let mut items = 0;
        let batch = std::future::poll_fn(|cx| {
            if deadline_passed(sleep, cx) {
                return Poll::Ready(Some(Batch::Deadline));
            }
            if gone.poll_gone(cx) {
                return Poll::Ready(Some(Batch::Cancelled));
            }
            let end = loop {
                let next =
                    std::panic::catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll_next(cx)));
                match next {
                    Ok(Poll::Ready(Some(Ok(frame)))) => {
                        frames.extend_from_slice(&frame);
                        items += 1;
                        policy.found_ready(items);
                        if frames.len() >= STREAM_BATCH {
                            break None;
                        }
                    }
                    Ok(Poll::Ready(Some(Err(status)))) => break Some(End::Failed(status)),
                    Ok(Poll::Ready(None)) => break Some(End::Done),
                    Err(panic) => break Some(End::Panicked(crate::service::panic_message(panic))),
                    Ok(Poll::Pending) if frames.is_empty() => return Poll::Pending,
                    // A small batch: give the producer a turn first (below).
                    Ok(Poll::Pending)
                        if frames.len() < STREAM_BATCH / 4 && policy.should_yield(frames.len()) =>
                    {
                        return Poll::Ready(None)
                    }
                    Ok(Poll::Pending) => break None,
                }
            };
            Poll::Ready(Some(Batch::Frames(std::mem::take(&mut frames), end)))
        })
        .await;
        match batch {
            Some(batch) => return batch,
            // The producer (a task feeding a channel) is likely about to
            // send more: let it run, so that its next items join this batch
            // instead of costing a batch (and a wake-up of the connection's
            // task) each; again while that brings more items.
            None => policy.give_turn(frames.len()).await,
        }
    }
}

/// Whether the call's deadline has passed. tokio's timer fires a passed
/// deadline only on its next tick, so the clock is checked too: a passed
/// deadline always wins.
pub(super) fn deadline_passed(
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    cx: &mut TaskContext<'_>,
) -> bool {
    match sleep.as_mut() {
        Some(s) => s.deadline() <= tokio::time::Instant::now() || s.as_mut().poll(cx).is_ready(),
        None => false,
    }
}

/// Runs `fut` until it completes, the client cancels, or `sleep` (the
/// call's deadline) fires.
pub(super) async fn guarded_with<F: Future + Unpin>(
    mut fut: F,
    gone: &mut Gone,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> Guarded<F::Output> {
    std::future::poll_fn(|cx| {
        if deadline_passed(sleep, cx) {
            return Poll::Ready(Guarded::Deadline);
        }
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(cx) {
            return Poll::Ready(Guarded::Done(out));
        }
        if gone.poll_gone(cx) {
            return Poll::Ready(Guarded::Cancelled);
        }
        Poll::Pending
    })
    .await
}

pub(super) enum Guarded<T> {
    Done(T),
    Cancelled,
    Deadline,
}

/// The response stream with each item compressed as `encoding` says.
fn compressed(stream: FrameStream, encoding: Compression) -> FrameStream {
    if encoding == Compression::Identity {
        return stream;
    }
    Box::pin(Compressed {
        inner: stream,
        encoding,
    })
}

struct Compressed {
    inner: FrameStream,
    encoding: Compression,
}

impl futures_core::Stream for Compressed {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let encoding = self.encoding;
        self.inner
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(|frames| compress_frames(frames, encoding))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream read from a channel.
    struct FromChannel(tokio::sync::mpsc::Receiver<Result<Bytes, Status>>);

    impl futures_core::Stream for FromChannel {
        type Item = Result<Bytes, Status>;

        fn poll_next(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
        ) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }

    /// Items a producer task hands over one at a time (yielding after
    /// each, as a task awaiting its next input does) do not leave as a
    /// batch each: the first batch holds more than the first item.
    #[tokio::test(flavor = "current_thread")]
    async fn a_channel_fed_stream_is_batched() {
        let (tx, rx) = tokio::sync::mpsc::channel(128);
        let producer = tokio::spawn(async move {
            for i in 0..10u8 {
                tx.send(Ok(Bytes::from(vec![i; 8]))).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut stream: crate::service::FrameStream = Box::pin(FromChannel(rx));
        let (_keep, mut gone) = Gone::pair();
        let batch = next_batch(&mut stream, &mut gone, &mut None, &mut YieldPolicy::new()).await;
        producer.await.unwrap();
        let Batch::Frames(frames, _) = batch else {
            panic!("not a batch of frames");
        };
        let all: Vec<u8> = (0..10u8).flat_map(|i| [i; 8]).collect();
        assert!(frames.len() > 8, "one item per batch: {frames:?}");
        assert_eq!(&frames[..], &all[..frames.len()]);
    }
}
