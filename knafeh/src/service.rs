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

use crate::{Codec, Context, Status, Streaming};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A boxed stream of framed messages.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

/// What a handler produced, already encoded as length-prefixed messages.
pub enum Reply {
    /// One framed message.
    Unary(Bytes),
    /// Framed messages, one per item.
    Stream(FrameStream),
}

/// One decoded-enough request handed to a service.
pub struct Call {
    /// The codec of the request (and of the response).
    pub codec: Codec,
    /// The request message payload, without its prefix.
    pub payload: Bytes,
    /// The call context.
    pub ctx: Context,
}

/// Implemented by the generated `{Trait}Server` types.
pub trait Service: Send + Sync + 'static {
    /// The fully qualified service name, `package.Trait`.
    fn name(&self) -> &'static str;
    /// Whether `method` exists.
    fn has_method(&self, method: &str) -> bool;
    /// Runs `method`. Only called when [`Service::has_method`] is true.
    fn call(&self, method: &str, call: Call) -> BoxFuture<Result<Reply, Status>>;
}

fn decode<T: Message>(path: &'static str, call: &Call) -> Result<T, Status> {
    T::decode_message(call.codec, &call.payload).map_err(|e| {
        Status::invalid_argument(format!(
            "{path}: request does not decode as {} ({}): {e}",
            std::any::type_name::<T>(),
            call.codec.content_type()
        ))
    })
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
        let req = decode::<Req>(path, &call)?;
        let codec = call.codec;
        let resp = handler(req, call.ctx).await?;
        Ok(Reply::Unary(encode(path, codec, &resp)?))
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
        let req = decode::<Req>(path, &call)?;
        let codec = call.codec;
        let stream = handler(req, call.ctx).await?;
        Ok(Reply::Stream(Box::pin(EncodeStream {
            inner: stream,
            codec,
            path,
            buf: BytesMut::new(),
        })))
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
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {
    fn encode_message(&self, codec: Codec, out: &mut BytesMut) -> Result<(), String> {
        codec.encode_message(self, out)
    }

    fn decode_message(codec: Codec, payload: &[u8]) -> Result<Self, String> {
        codec.decode(payload)
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
