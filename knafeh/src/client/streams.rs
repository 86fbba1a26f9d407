//! Calls whose request is a stream (client-streaming and bidirectional):
//! a pump task sends the caller's messages as they come, while the caller
//! reads the response. Each side learns how the other ended: the pump
//! stops when the response ends (and the caller's senders then report
//! that status), and a request stream that fails cancels the call with
//! its status. A server that ends the call before reading every request
//! stops the pump's writes; the pump then waits for the response's status,
//! which the caller reads (a bidirectional caller that neither reads nor
//! drops its replies leaves its senders waiting, as a full channel would).

use super::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::call::{read_unary, Aborted, ActiveCall, CallSpan, DecodeStream, Prepared};
use crate::proto::compression::compress_tail;
use crate::service::Message;
use crate::streaming::YieldPolicy;
use crate::transport::conn::{Command, RequestTx};
use crate::{CallOptions, Codec, Compression, Response, Status, Streaming};

/// Largest batch of ready request messages sent as one DATA frame.
const REQUEST_BATCH: usize = 64 * 1024;

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
            let mut call = self
                .start_with_retries(self.intercept(prepared).await?)
                .await?;
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
            let mut call = self
                .start_with_retries(self.intercept(prepared).await?)
                .await?;
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
        let replies = DecodeStream::<Resp> {
            call,
            span,
            end: Some(stop),
            _t: std::marker::PhantomData,
        };
        Ok(Streaming::new(replies).with_metadata(headers))
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
            encoding: call.encoding,
            path: call.path,
            aborted: call.aborted.clone(),
            cmd: call.guard.cmd.clone(),
            traffic: call.traffic,
        };
        tokio::spawn(pump.run(requests, stop_rx));
    }
    stop_tx
}

/// Sends a call's request messages.
struct Pump {
    tx: RequestTx,
    codec: Codec,
    /// How each message is compressed.
    encoding: Compression,
    path: &'static str,
    aborted: Arc<Aborted>,
    cmd: mpsc::UnboundedSender<Command>,
    traffic: crate::metrics::Traffic,
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
        let mut policy = YieldPolicy::new();
        loop {
            let step = self
                .next_step(&mut requests, &mut stop, &mut buf, &mut policy)
                .await;
            let fin = match step {
                Step::Send(fin) => fin,
                Step::Fail(status) => {
                    let _ = self.aborted.set(status.clone());
                    let _ = self.cmd.send(Command::Cancel(self.tx.slot.clone()));
                    requests.set_ended(&status);
                    return;
                }
                Step::Stop(status) => {
                    requests.set_ended(&status.unwrap_or_else(cancelled));
                    return;
                }
            };
            if fin {
                // A caller that drops its requests and then its call means
                // to cancel: give the second drop a moment to land, so that
                // the server does not see a normal end first.
                tokio::task::yield_now().await;
                match stop.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    // Cancelled, or already over: no end of requests to send.
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return requests.set_ended(&cancelled());
                    }
                    Ok(end) => return requests.set_ended(&end),
                }
            }
            let frames = buf.split().freeze();
            self.traffic.sent(frames.len());
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
    /// first), up to [`REQUEST_BATCH`] bytes, yielding to their producer
    /// while the batch is small as `policy` says; or how the call ended.
    async fn next_step<Req: Message>(
        &self,
        requests: &mut Streaming<Req>,
        stop: &mut oneshot::Receiver<Status>,
        buf: &mut BytesMut,
        policy: &mut YieldPolicy,
    ) -> Step {
        policy.start_batch();
        loop {
            let step = self.poll_step(requests, stop, buf, policy).await;
            match step {
                Some(step) => return step,
                // A small batch: the producer (a task feeding a channel)
                // is likely about to send more; let it run, so that its
                // next items join this batch (again while that brings more).
                None => policy.give_turn(buf.len()).await,
            }
        }
    }

    /// One pass of [`Self::next_step`]: `None` when the batch is small
    /// and `policy` says to give the producer a turn first.
    async fn poll_step<Req: Message>(
        &self,
        requests: &mut Streaming<Req>,
        stop: &mut oneshot::Receiver<Status>,
        buf: &mut BytesMut,
        policy: &mut YieldPolicy,
    ) -> Option<Step> {
        use futures_core::Stream;
        let mut items = 0;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(end) = Pin::new(&mut *stop).poll(cx) {
                return Poll::Ready(Some(Step::Stop(end.ok())));
            }
            loop {
                match Pin::new(&mut *requests).poll_next(cx) {
                    Poll::Ready(Some(Ok(msg))) => {
                        if buf.capacity() - buf.len() < 512 {
                            buf.reserve(16 * 1024);
                        }
                        let start = buf.len();
                        if let Err(e) = msg.encode_message(self.codec, buf) {
                            return Poll::Ready(Some(Step::Fail(Status::invalid_argument(
                                format!(
                                    "{}: request does not encode as {}: {e}",
                                    self.path,
                                    self.codec.content_type()
                                ),
                            ))));
                        }
                        compress_tail(buf, start, self.encoding);
                        items += 1;
                        policy.found_ready(items);
                        if buf.len() >= REQUEST_BATCH {
                            return Poll::Ready(Some(Step::Send(false)));
                        }
                    }
                    Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Step::Fail(status))),
                    Poll::Ready(None) => return Poll::Ready(Some(Step::Send(true))),
                    Poll::Pending if buf.is_empty() => return Poll::Pending,
                    Poll::Pending
                        if buf.len() < REQUEST_BATCH / 4 && policy.should_yield(buf.len()) =>
                    {
                        return Poll::Ready(None)
                    }
                    Poll::Pending => return Poll::Ready(Some(Step::Send(false))),
                }
            }
        })
        .await
    }
}
