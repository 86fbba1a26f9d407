//! Calls whose request is a stream (client-streaming and bidirectional):
//! a pump task sends the caller's messages as they come, while the call
//! reads the response. Each side learns how the other ended: the pump
//! stops when the response ends (and the caller's senders then report
//! that status), and a request stream that fails cancels the call with
//! its status.

use super::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::call::{decode_response, read_unary, Aborted, ActiveCall, CallSpan, Prepared};
use crate::service::Message;
use crate::streaming::ReceiverStream;
use crate::transport::conn::{Command, RequestTx};
use crate::{CallOptions, Codec, Response, Status, Streaming};

/// Largest batch of ready request messages sent as one DATA frame.
const REQUEST_BATCH: usize = 64 * 1024;

/// Replies a bidirectional call's reader may hold for a caller that has
/// not taken them yet.
const REPLY_BUFFER: usize = 32;

impl Client {
    /// Makes a client-streaming call to `path` (generated clients call
    /// this): sends `requests` as they come, then returns the one
    /// response.
    ///
    /// # Errors
    /// As for [`Client::unary`]. A request stream that yields an error
    /// cancels the call, which fails with that status.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the server.
    pub fn client_streaming<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        requests: Streaming<Req>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Response<Resp>, Status>> + Send + 'static {
        let client = self.clone();
        let prepared = self.prepare_head(path, options);
        Box::pin(async move {
            client
                .client_streaming_prepared(path, prepared, requests)
                .await
        })
    }

    async fn client_streaming_prepared<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
        requests: Streaming<Req>,
    ) -> Result<Response<Resp>, Status> {
        let mut span = CallSpan::new(path);
        let result = async {
            let mut call = self.start(prepared?).await?;
            let stop = spawn_pump(&mut call, requests, self.inner.cfg.codec);
            let result = read_unary::<Resp>(&mut call).await;
            let _ = stop.send(result.as_ref().err().cloned().unwrap_or_else(Status::ok));
            result
        }
        .instrument(span.span.clone())
        .await;
        span.finish(result.as_ref().err());
        result
    }

    /// Makes a bidirectional call to `path` (generated clients call this):
    /// sends `requests` as they come while the returned stream yields the
    /// responses as they arrive. It returns once the server's response
    /// headers arrive, which a server sends when its handler has returned
    /// its response stream; a handler that waits for a request first needs
    /// `requests` to bring one without waiting for this call.
    ///
    /// # Errors
    /// As for [`Client::server_streaming`]. A request stream that yields an
    /// error cancels the call, which fails with that status.
    ///
    /// # Cancel safety
    /// Dropping the future or the stream cancels the call on the server.
    pub fn bidi_streaming<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        requests: Streaming<Req>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static {
        let client = self.clone();
        let prepared = self.prepare_head(path, options);
        Box::pin(async move {
            client
                .bidi_streaming_prepared(path, prepared, requests)
                .await
        })
    }

    async fn bidi_streaming_prepared<Req: Message, Resp: Message>(
        &self,
        path: &'static str,
        prepared: Result<Prepared, Status>,
        requests: Streaming<Req>,
    ) -> Result<Streaming<Resp>, Status> {
        let mut span = CallSpan::new(path);
        let started = async {
            let mut call = self.start(prepared?).await?;
            let stop = spawn_pump(&mut call, requests, self.inner.cfg.codec);
            match std::future::poll_fn(|cx| call.poll_headers(cx)).await {
                Ok(()) => Ok((call, stop)),
                Err(e) => {
                    let _ = stop.send(e.clone());
                    Err(e)
                }
            }
        }
        .instrument(span.span.clone())
        .await;
        let (mut call, stop) = match started {
            Ok(started) => started,
            Err(e) => {
                span.finish(Some(&e));
                return Err(e);
            }
        };
        let headers = call.reader.take_headers();
        let (tx, rx) = mpsc::channel(REPLY_BUFFER);
        let task = forward_replies::<Resp>(call, tx, stop, span);
        tokio::spawn(task);
        Ok(Streaming::new(ReceiverStream(rx)).with_metadata(headers))
    }
}

/// Reads a bidirectional call's responses into `tx` as the caller takes
/// them; tells the pump how the call ended. The caller dropping its stream
/// cancels the call (dropping `call` resets the stream).
async fn forward_replies<Resp: Message>(
    mut call: ActiveCall,
    tx: mpsc::Sender<Result<Resp, Status>>,
    stop: oneshot::Sender<Status>,
    mut span: CallSpan,
) {
    let (path, codec) = (call.path, call.codec);
    let end = async {
        loop {
            let Ok(permit) = tx.reserve().await else {
                return None;
            };
            let mut decode = |b: &[u8]| decode_response::<Resp>(path, codec, b);
            let next = tokio::select! {
                next = std::future::poll_fn(|cx| call.poll_message(cx, &mut decode)) => next,
                () = tx.closed() => return None,
            };
            let failed = match next {
                None => return Some(Status::ok()),
                Some(Ok(Ok(msg))) => {
                    permit.send(Ok(msg));
                    continue;
                }
                Some(Ok(Err(decode_failed))) => call.fail(decode_failed),
                Some(Err(status)) => status,
            };
            permit.send(Err(failed.clone()));
            return Some(failed);
        }
    }
    .instrument(span.span.clone())
    .await;
    match end {
        Some(status) => {
            span.finish((status.code() != crate::Code::Ok).then_some(&status));
            let _ = stop.send(status);
        }
        // The caller dropped the stream: the call is cancelled (the span
        // records it when dropped).
        None => drop(stop),
    }
}

/// Starts the task sending `requests` on `call`'s stream; the returned
/// sender tells it how the call ended (dropping it: cancelled).
fn spawn_pump<Req: Message>(
    call: &mut ActiveCall,
    requests: Streaming<Req>,
    codec: Codec,
) -> oneshot::Sender<Status> {
    let (stop_tx, stop_rx) = oneshot::channel();
    if let Some(tx) = call.request_tx.take() {
        let pump = Pump {
            tx,
            codec,
            path: call.path,
            aborted: call.aborted.clone(),
            cmd: call.guard.cmd.clone(),
        };
        tokio::spawn(pump.run(requests, stop_rx));
    }
    stop_tx
}

/// Sends a call's request messages.
struct Pump {
    tx: RequestTx,
    codec: Codec,
    path: &'static str,
    aborted: Arc<Aborted>,
    cmd: mpsc::UnboundedSender<Command>,
}

/// What the pump does next.
enum Step {
    /// Send the messages encoded so far (`true`: and end the stream).
    Send(bool),
    /// The request stream failed: cancel the call with this status.
    Fail(Status),
    /// The call ended (`None`: cancelled by the caller).
    Stop(Option<Status>),
}

impl Pump {
    async fn run<Req: Message>(
        self,
        mut requests: Streaming<Req>,
        mut stop: oneshot::Receiver<Status>,
    ) {
        let mut buf = BytesMut::new();
        let cancelled = || Status::cancelled(format!("{}: the call was cancelled", self.path));
        loop {
            let step = self.next_step(&mut requests, &mut stop, &mut buf).await;
            let fin = match step {
                Step::Send(fin) => fin,
                Step::Fail(status) => {
                    self.aborted.set(status.clone());
                    let _ = self.cmd.send(Command::Cancel(self.tx.slot.clone()));
                    requests.set_ended(&status);
                    return;
                }
                Step::Stop(status) => {
                    requests.set_ended(&status.unwrap_or_else(cancelled));
                    return;
                }
            };
            let frames = buf.split().freeze();
            let sent = tokio::select! {
                sent = self.tx.send(frames, fin) => sent,
                end = &mut stop => {
                    requests.set_ended(&end.unwrap_or_else(|_| cancelled()));
                    return;
                }
            };
            if !sent {
                // The server stopped reading (it answered already) or the
                // stream is gone: the call's status is on its way.
                let end = (&mut stop).await;
                requests.set_ended(&end.unwrap_or_else(|_| cancelled()));
                return;
            }
            if fin {
                return;
            }
        }
    }

    /// Encodes the request messages that are ready (waiting for the
    /// first), up to [`REQUEST_BATCH`] bytes; or how the call ended.
    async fn next_step<Req: Message>(
        &self,
        requests: &mut Streaming<Req>,
        stop: &mut oneshot::Receiver<Status>,
        buf: &mut BytesMut,
    ) -> Step {
        use futures_core::Stream;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(end) = Pin::new(&mut *stop).poll(cx) {
                return Poll::Ready(Step::Stop(end.ok()));
            }
            loop {
                match Pin::new(&mut *requests).poll_next(cx) {
                    Poll::Ready(Some(Ok(msg))) => {
                        if buf.capacity() - buf.len() < 512 {
                            buf.reserve(16 * 1024);
                        }
                        if let Err(e) = msg.encode_message(self.codec, buf) {
                            return Poll::Ready(Step::Fail(Status::invalid_argument(format!(
                                "{}: request does not encode as {}: {e}",
                                self.path,
                                self.codec.content_type()
                            ))));
                        }
                        if buf.len() >= REQUEST_BATCH {
                            return Poll::Ready(Step::Send(false));
                        }
                    }
                    Poll::Ready(Some(Err(status))) => return Poll::Ready(Step::Fail(status)),
                    Poll::Ready(None) => return Poll::Ready(Step::Send(true)),
                    Poll::Pending if buf.is_empty() => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(Step::Send(false)),
                }
            }
        })
        .await
    }
}
