//! The contract between generated server wrappers and the server runtime.
//! Everything here is reached through `knafeh::__private` and is outside
//! semver.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::schema::{Format, SchemaError, ServiceSchema, Tracer};
use crate::{Codec, Context, Status, Streaming};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A boxed stream of framed messages.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;
/// A boxed stream of request message payloads (without their prefix).
pub type PayloadStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

/// What a handler produced, already encoded as length-prefixed messages.
pub enum Reply {
    /// One framed message.
    Unary(Bytes),
    /// Framed messages, one per item.
    Stream(FrameStream),
}

/// How a method takes its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestShape {
    /// Exactly one message (unary and server-streaming methods).
    One,
    /// Any number of messages, read by the handler as they arrive
    /// (client-streaming and bidirectional methods).
    Stream,
}

/// The request of a call, as its [`RequestShape`] says.
pub enum Request {
    /// The one request message's payload, without its prefix.
    One(Bytes),
    /// The request messages' payloads, as they arrive.
    Stream(PayloadStream),
}

/// One decoded-enough request handed to a service.
pub struct Call {
    /// The codec of the request (and of the response).
    pub codec: Codec,
    /// The request.
    pub request: Request,
    /// The call context.
    pub ctx: Context,
}

/// A service a server can serve: implemented by the generated
/// `{Trait}Server` types (and the built-in services), and given to
/// [`ServerBuilder::add_service`](crate::ServerBuilder::add_service).
/// Not meant to be implemented by hand: the methods that route calls are
/// hidden and outside semver.
pub trait Service: Send + Sync + 'static {
    /// The fully qualified service name, `package.Trait`.
    fn name(&self) -> &'static str;
    /// The service's schema: its methods and the formats of their
    /// messages (what the describe service sends).
    ///
    /// # Errors
    /// A [`SchemaError`] naming a message type that cannot be described.
    fn schema(&self) -> Result<ServiceSchema, SchemaError>;
    /// How `method` takes its request; `None` when there is no such
    /// method.
    #[doc(hidden)]
    fn request_shape(&self, method: &str) -> Option<RequestShape>;
    /// Whether `method` is declared `#[knafeh(idempotent)]`: only such
    /// methods are served from 0-RTT early data, which can be replayed.
    /// `false` for unknown methods.
    #[doc(hidden)]
    fn idempotent(&self, method: &str) -> bool {
        let _ = method;
        false
    }
    /// Runs `method`. Only called when [`Service::request_shape`] knows
    /// it, with a [`Request`] of that shape.
    #[doc(hidden)]
    fn call(&self, method: &str, call: Call) -> BoxFuture<Result<Reply, Status>>;
}

/// The status for a request message that does not decode.
pub fn decode_error<T>(path: &str, codec: Codec, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!(
        "{path}: request does not decode as {} ({}): {e}",
        std::any::type_name::<T>(),
        codec.content_type()
    ))
}

/// The one request message of `request`.
pub fn one(path: &str, request: Request) -> Result<Bytes, Status> {
    match request {
        Request::One(payload) => Ok(payload),
        Request::Stream(_) => Err(Status::internal(format!(
            "{path}: the server read a request stream for a one-message method"
        ))),
    }
}

/// The request stream of `request`.
pub fn stream(path: &str, request: Request) -> Result<PayloadStream, Status> {
    match request {
        Request::Stream(s) => Ok(s),
        Request::One(_) => Err(Status::internal(format!(
            "{path}: the server read one request message for a streaming method"
        ))),
    }
}

fn decode<T: Message>(path: &'static str, call: Call) -> Result<(T, Context), Status> {
    let payload = one(path, call.request)?;
    let msg = T::decode_message(call.codec, &payload)
        .map_err(|e| decode_error::<T>(path, call.codec, e))?;
    Ok((msg, call.ctx))
}

/// The typed request stream of a client-streaming or bidirectional call:
/// each payload decoded as it is read; a message that does not decode
/// ends the stream with `INVALID_ARGUMENT`.
fn decode_stream<T: Message>(
    path: &'static str,
    call: Call,
) -> Result<(Streaming<T>, Context), Status> {
    let payloads = stream(path, call.request)?;
    let requests = Streaming::new(DecodeStream {
        inner: payloads,
        codec: call.codec,
        path,
        failed: false,
        _t: std::marker::PhantomData,
    });
    Ok((requests, call.ctx))
}

struct DecodeStream<T> {
    inner: PayloadStream,
    codec: Codec,
    path: &'static str,
    failed: bool,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Message> Stream for DecodeStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(payload))) => {
                let decoded = T::decode_message(this.codec, &payload)
                    .map_err(|e| decode_error::<T>(this.path, this.codec, e));
                this.failed = decoded.is_err();
                Poll::Ready(Some(decoded))
            }
            Poll::Ready(Some(Err(status))) => {
                this.failed = true;
                Poll::Ready(Some(Err(status)))
            }
            other => other.map(|_| None),
        }
    }
}

fn encode<T: Message>(path: &str, codec: Codec, msg: &T) -> Result<Bytes, Status> {
    let mut buf = BytesMut::with_capacity(128);
    encode_into(path, codec, msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends `msg` as one framed message to `buf`.
fn encode_into<T: Message>(
    path: &str,
    codec: Codec,
    msg: &T,
    buf: &mut BytesMut,
) -> Result<(), Status> {
    msg.encode_message(codec, buf).map_err(|e| {
        Status::internal(format!(
            "{path}: response does not encode as {}: {e}",
            codec.content_type()
        ))
    })
}

/// Runs a unary handler: decode, call, encode.
pub fn unary<Req, Resp, F, Fut>(
    path: &'static str,
    call: Call,
    handler: F,
) -> BoxFuture<Result<Reply, Status>>
where
    Req: Message,
    Resp: Message,
    F: FnOnce(Req, Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    Box::pin(async move {
        let codec = call.codec;
        let (req, ctx) = decode::<Req>(path, call)?;
        let resp = handler(req, ctx).await?;
        Ok(Reply::Unary(encode(path, codec, &resp)?))
    })
}

/// Runs a client-streaming handler: the requests decoded as they arrive,
/// one response encoded.
pub fn client_streaming<Req, Resp, F, Fut>(
    path: &'static str,
    call: Call,
    handler: F,
) -> BoxFuture<Result<Reply, Status>>
where
    Req: Message,
    Resp: Message,
    F: FnOnce(Streaming<Req>, Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    Box::pin(async move {
        let codec = call.codec;
        let (requests, ctx) = decode_stream::<Req>(path, call)?;
        let resp = handler(requests, ctx).await?;
        Ok(Reply::Unary(encode(path, codec, &resp)?))
    })
}

/// Runs a bidirectional handler: the requests decoded as they arrive, each
/// response item encoded as it is produced.
pub fn bidi_streaming<Req, Resp, F, Fut>(
    path: &'static str,
    call: Call,
    handler: F,
) -> BoxFuture<Result<Reply, Status>>
where
    Req: Message,
    Resp: Message,
    F: FnOnce(Streaming<Req>, Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static,
{
    Box::pin(async move {
        let codec = call.codec;
        let (requests, ctx) = decode_stream::<Req>(path, call)?;
        let stream = handler(requests, ctx).await?;
        Ok(Reply::Stream(encode_stream(stream, codec, path)))
    })
}

/// A response stream encoded item by item.
pub fn encode_stream<T: Message>(
    stream: Streaming<T>,
    codec: Codec,
    path: &'static str,
) -> FrameStream {
    Box::pin(EncodeStream {
        inner: stream,
        codec,
        path,
        buf: BytesMut::new(),
    })
}

/// Runs a server-streaming handler: decode, call, encode each item.
pub fn server_streaming<Req, Resp, F, Fut>(
    path: &'static str,
    call: Call,
    handler: F,
) -> BoxFuture<Result<Reply, Status>>
where
    Req: Message,
    Resp: Message,
    F: FnOnce(Req, Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Streaming<Resp>, Status>> + Send + 'static,
{
    Box::pin(async move {
        let codec = call.codec;
        let (req, ctx) = decode::<Req>(path, call)?;
        let stream = handler(req, ctx).await?;
        Ok(Reply::Stream(encode_stream(stream, codec, path)))
    })
}

struct EncodeStream<T> {
    inner: Streaming<T>,
    codec: Codec,
    path: &'static str,
    /// Items are encoded one after another into this buffer and handed out
    /// as slices of it: one allocation per few KiB of items, not per item.
    buf: BytesMut,
}

impl<T: Message> Stream for EncodeStream<T> {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                if this.buf.capacity() - this.buf.len() < 512 {
                    this.buf.reserve(16 * 1024);
                }
                Poll::Ready(Some(
                    encode_into(this.path, this.codec, &item, &mut this.buf)
                        .map(|()| this.buf.split().freeze()),
                ))
            }
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(status))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Polls a future or stream, turning a panic into `Err(message)`.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p))),
        }
    }
}

/// A type knafeh can put on the wire: any serde type that can move between
/// tasks. Implemented for every such type; not to be implemented by hand.
///
/// Generated clients state it for their message types as
/// `where for<'__knafeh> HelloRequest: Message`: the `for<'__knafeh>` form
/// only makes the compiler report a type that is not a serde type once,
/// where the trait names it, instead of at every generated method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent by knafeh: it must implement serde's `Serialize` and `Deserialize`",
    label = "not a serde type",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait Message: Send + 'static {
    /// Appends `self` as one length-prefixed message.
    #[doc(hidden)]
    fn encode_message(&self, codec: Codec, out: &mut BytesMut) -> Result<(), String>;
    /// Decodes a payload (without its prefix).
    #[doc(hidden)]
    fn decode_message(codec: Codec, payload: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
    /// Traces this type's format with `tracer` (for generated `schema()`s).
    #[doc(hidden)]
    fn trace_schema(tracer: &mut Tracer) -> Result<Format, SchemaError>
    where
        Self: Sized;
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {
    fn encode_message(&self, codec: Codec, out: &mut BytesMut) -> Result<(), String> {
        codec.encode_message(self, out)
    }

    fn decode_message(codec: Codec, payload: &[u8]) -> Result<Self, String> {
        codec.decode(payload)
    }

    fn trace_schema(tracer: &mut Tracer) -> Result<Format, SchemaError> {
        tracer.trace::<T>()
    }
}

/// The answer for a method the service does not have.
pub fn unknown_method(method: &str) -> BoxFuture<Result<Reply, Status>> {
    let status = Status::unimplemented(format!(
        "unknown method {}",
        crate::proto::text::shown(method.as_bytes())
    ));
    Box::pin(async move { Err(status) })
}
