//! Per-call information for handlers and per-call options for clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Metadata;

/// What a handler may want to know about the call it serves: the caller's
/// metadata, the deadline, the peer address. It can also attach response
/// metadata.
///
/// A handler receives it by taking a second parameter of this type:
///
/// ```ignore
/// async fn say_hello(&self, req: HelloRequest, ctx: knafeh::Context)
///     -> Result<HelloReply, Status>;
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: String,
    metadata: Metadata,
    deadline: Option<Instant>,
    peer_addr: SocketAddr,
    response_metadata: Mutex<Metadata>,
}

impl Context {
    pub(crate) fn new(
        path: String,
        metadata: Metadata,
        deadline: Option<Instant>,
        peer_addr: SocketAddr,
    ) -> Self {
        Context {
            inner: Arc::new(Inner {
                path,
                metadata,
                deadline,
                peer_addr,
                response_metadata: Mutex::new(Metadata::new()),
            }),
        }
    }

    /// The method path, `/{package.}{Service}/{method}`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The fully qualified service name (`package.Service`).
    pub fn service(&self) -> &str {
        crate::proto::wire::split_path(self.path()).map_or("", |(s, _)| s)
    }

    /// The method name, as written in the trait.
    pub fn method(&self) -> &str {
        crate::proto::wire::split_path(self.path()).map_or("", |(_, m)| m)
    }

    /// The custom metadata the client sent.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// When the client stops waiting (from `grpc-timeout`), if it set one.
    /// The handler is cancelled when it passes.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left until [`Context::deadline`], if any.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// Edits the metadata sent back with the response (in the response
    /// headers, or with the error status when the handler fails). Changes
    /// made after a unary handler returns, or after a streaming handler
    /// has returned its stream, are not sent.
    ///
    /// ```
    /// # fn demo(ctx: &knafeh::Context) -> Result<(), knafeh::MetadataError> {
    /// ctx.with_response_metadata(|md| md.insert("x-served-by", "node-1"))?;
    /// # Ok(()) }
    /// ```
    pub fn with_response_metadata<R>(&self, edit: impl FnOnce(&mut Metadata) -> R) -> R {
        let mut md = self
            .inner
            .response_metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        edit(&mut md)
    }

    pub(crate) fn take_response_metadata(&self) -> Metadata {
        self.with_response_metadata(std::mem::take)
    }
}

/// Per-call options for a client call: timeout and metadata.
///
/// ```
/// use std::time::Duration;
/// let mut opts = knafeh::CallOptions::new().timeout(Duration::from_secs(2));
/// opts.metadata_mut().insert("x-request-id", "42").unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) metadata: Metadata,
    pub(crate) retry: crate::client::CallRetry,
}

impl CallOptions {
    /// No timeout beyond the client's default, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives up with `DEADLINE_EXCEEDED` after `timeout`; the server sees
    /// the deadline (as `grpc-timeout`) and cancels the handler.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Replaces the metadata sent with the call.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The metadata sent with the call, to add entries.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The retry policy of this call, instead of the client's (see
    /// [`RetryPolicy`](crate::RetryPolicy)).
    pub fn retry_policy(mut self, policy: crate::RetryPolicy) -> Self {
        self.retry.policy = Some(Arc::new(policy));
        self
    }

    /// Hedges this call (see [`HedgingPolicy`](crate::HedgingPolicy)); only
    /// for idempotent methods, ignored with a warning for others.
    pub fn hedging(mut self, policy: crate::HedgingPolicy) -> Self {
        self.retry.hedging = Some(Arc::new(policy));
        self
    }

    /// Declares the call idempotent: it may be retried (on the retry
    /// policy's codes) and hedged even after a handler may have seen it.
    /// Generated clients set this for methods marked
    /// `#[knafeh(idempotent)]`.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.retry.idempotent = idempotent;
        self
    }
}

/// A unary response with the metadata the server sent along.
#[derive(Clone, Debug)]
pub struct Response<T> {
    message: T,
    metadata: Metadata,
    trailers: Metadata,
}

impl<T> Response<T> {
    pub(crate) fn new(message: T, metadata: Metadata, trailers: Metadata) -> Self {
        Response {
            message,
            metadata,
            trailers,
        }
    }

    /// The response message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// Takes the response message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Custom metadata from the response headers.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Custom metadata from the trailers.
    pub fn trailers(&self) -> &Metadata {
        &self.trailers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_names_the_path_service_and_method_as_call_info_does() {
        let peer = "127.0.0.1:9".parse().unwrap();
        let ctx = Context::new(
            "/helloworld.Greeter/say_hello".into(),
            Metadata::new(),
            None,
            peer,
        );
        let info = crate::CallInfo::new(ctx.path().to_owned(), Metadata::new(), None, Some(peer));
        assert_eq!(
            (ctx.path(), ctx.service(), ctx.method()),
            (
                "/helloworld.Greeter/say_hello",
                "helloworld.Greeter",
                "say_hello"
            )
        );
        assert_eq!(
            (ctx.service(), ctx.method()),
            (info.service(), info.method())
        );
    }

    #[test]
    fn ok_is_the_ok_code_without_a_message() {
        let ok = crate::Status::ok();
        assert_eq!((ok.code(), ok.message()), (crate::Code::Ok, ""));
    }
}
