//! Per-call information for handlers and per-call options for clients.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

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
    /// Set when the client cancels the call (see [`Context::cancelled`]).
    cancelled: watch::Sender<bool>,
    /// The server's drain signal (see [`Context::draining`]); `None` for a
    /// context no server made.
    draining: Option<watch::Receiver<bool>>,
    /// The request arrived in 0-RTT early data (see [`Context::early_data`]).
    early_data: bool,
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
                cancelled: watch::Sender::new(false),
                draining: None,
                early_data: false,
            }),
        }
    }

    /// Marks the request as received in 0-RTT early data. Only before the
    /// context is shared.
    pub(crate) fn with_early_data(mut self, early_data: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.early_data = early_data;
        }
        self
    }

    /// Connects the context to its server's drain signal (`true` once a
    /// graceful shutdown has begun). Only before the context is shared.
    pub(crate) fn with_draining(mut self, draining: watch::Receiver<bool>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.draining = Some(draining);
        }
        self
    }

    /// Marks the call as cancelled by the client; wakes
    /// [`Context::cancelled`].
    pub(crate) fn cancel(&self) {
        self.inner.cancelled.send_replace(true);
    }

    /// Watches for [`Context::cancel`].
    pub(crate) fn cancel_watch(&self) -> watch::Receiver<bool> {
        self.inner.cancelled.subscribe()
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

    /// The caller's W3C trace context (its `traceparent` metadata), when it
    /// sent a valid one: the trace this call belongs to and the caller's
    /// span. A malformed or repeated `traceparent` counts as none. Calls
    /// the handler makes continue this trace (see README, "Traces").
    pub fn trace_parent(&self) -> Option<crate::TraceParent> {
        crate::trace::parent_in(self.metadata())
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

    /// The client's address: where its packets came from when the call's
    /// request arrived (after a NAT rebinding or migration, the new one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// Whether the request's headers were read before the client's
    /// handshake was complete: they came in 0-RTT early data (see
    /// `ClientBuilder::zero_rtt`). Such a request can be replayed by anyone
    /// who saw it, any number of times, so the server only serves it for
    /// methods declared `#[knafeh(idempotent)]` and refuses the others (the
    /// client then sends them again after the handshake). An early request
    /// read together with the client's Finished message counts as not
    /// early (its connection is genuine).
    pub fn early_data(&self) -> bool {
        self.inner.early_data
    }

    /// Whether the call is over for its client: it cancelled the call, or
    /// the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        *self.inner.cancelled.borrow() || self.deadline().is_some_and(|d| d <= Instant::now())
    }

    /// Resolves when the client cancels the call or its deadline passes
    /// (at once if that already happened).
    ///
    /// A handler that is awaiting something is simply dropped when either
    /// happens; this is for work the handler handed elsewhere, e.g. a task
    /// spawned with [`Context::scope`] (knafeh calls made there are
    /// cancelled on their own), or a blocking loop that checks
    /// [`Context::is_cancelled`]. A call that ends normally does not
    /// resolve it (until its deadline, if it has one, passes): a task
    /// should not wait on it alone past the end of the call.
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.cancelled.subscribe();
        let deadline = self.deadline();
        async move {
            let by_client = async {
                // The sender lives as long as the context; `Err` cannot
                // happen while this holds one.
                let _ = rx.wait_for(|cancelled| *cancelled).await;
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = by_client => {}
                        _ = tokio::time::sleep_until(d.into()) => {}
                    }
                }
                None => by_client.await,
            }
        }
    }

    /// Whether the server serving this call has begun a graceful shutdown
    /// ([`ServerHandle::shutdown`](crate::ServerHandle::shutdown)).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when the server serving this call begins a graceful
    /// shutdown (at once if it already has), so that a long-lived stream
    /// can end cleanly, with a status of its choice, before the drain
    /// timeout cuts it off. Never resolves for a context no server made.
    ///
    /// ```ignore
    /// // In a server-streaming handler: stream until the server drains.
    /// let (tx, stream) = knafeh::Streaming::channel(16);
    /// tokio::spawn(async move {
    ///     let draining = ctx.draining();
    ///     tokio::pin!(draining);
    ///     loop {
    ///         tokio::select! {
    ///             _ = &mut draining => break, // the stream ends with OK
    ///             _ = tick.tick() => if tx.send(next()).await.is_err() { break },
    ///         }
    ///     }
    /// });
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: it only watches.
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        let rx = self.inner.draining.clone();
        async move {
            match rx {
                // `Err`: the server is gone altogether, so it drained.
                Some(mut rx) => drop(rx.wait_for(|draining| *draining).await),
                None => std::future::pending().await,
            }
        }
    }

    /// The metadata sent back with the response (in the response headers,
    /// or with the error status when the handler fails), to edit; the same
    /// name as [`CallInfo::response_metadata_mut`](crate::CallInfo::response_metadata_mut)
    /// for interceptors. Changes made after a unary handler returns, or
    /// after a streaming handler has returned its stream, are not sent.
    ///
    /// The returned guard locks the call's response metadata: drop it
    /// before the next `.await` (it is not `Send`, so a handler that holds
    /// it across an await does not compile).
    ///
    /// ```
    /// # fn demo(ctx: &knafeh::Context) -> Result<(), knafeh::MetadataError> {
    /// ctx.response_metadata_mut().insert("x-served-by", "node-1")?;
    /// # Ok(()) }
    /// ```
    pub fn response_metadata_mut(&self) -> impl std::ops::DerefMut<Target = Metadata> + '_ {
        self.inner
            .response_metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn take_response_metadata(&self) -> Metadata {
        std::mem::take(&mut *self.response_metadata_mut())
    }
}

/// Per-call options for a client call: timeout and metadata.
///
/// ```
/// use std::time::Duration;
/// let opts = knafeh::CallOptions::new()
///     .timeout(Duration::from_secs(2))
///     .header("x-request-id", "42")
///     .header_bin("trace-bin", &[1, 2, 3]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) metadata: Metadata,
    /// Inherits nothing from the call being served (see
    /// [`CallOptions::detached`]).
    pub(crate) detached: bool,
    /// The first entry [`CallOptions::header`] could not take: the call
    /// fails with `INVALID_ARGUMENT` saying so.
    pub(crate) invalid: Option<String>,
    pub(crate) compression: Option<crate::Compression>,
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

    /// Sets an ASCII metadata entry (replacing any for `key`), in a
    /// builder chain. A key or value [`Metadata::insert`] would refuse
    /// makes the call fail, before anything is sent, with
    /// `INVALID_ARGUMENT` naming the key and the reason (the first such
    /// entry counts); use [`CallOptions::metadata_mut`] to handle the
    /// error where it arises instead.
    pub fn header(mut self, key: &str, value: &str) -> Self {
        if let Err(e) = self.metadata.insert(key, value) {
            self.invalid.get_or_insert_with(|| e.to_string());
        }
        self
    }

    /// Sets a binary metadata entry (`key` must end in `-bin`), as
    /// [`CallOptions::header`] does.
    pub fn header_bin(mut self, key: &str, value: &[u8]) -> Self {
        if let Err(e) = self.metadata.insert_bin(key, value) {
            self.invalid.get_or_insert_with(|| e.to_string());
        }
        self
    }

    /// The call's refusal when [`CallOptions::header`] was given an entry
    /// it could not take.
    pub(crate) fn check(&self, path: &str) -> Result<(), crate::Status> {
        match &self.invalid {
            Some(e) => Err(crate::Status::invalid_argument(format!(
                "{path}: call options: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Makes the call independent of the call being served. A call made
    /// while a handler runs normally inherits the incoming call's deadline
    /// (the earlier of the two applies) and is cancelled with it (see
    /// [`Context::current`]); a detached call does neither: it has only its
    /// own timeout (or the client's default), and runs on when the
    /// incoming call ends. For work that must outlive the call, e.g. an
    /// audit write after a cancelled request.
    pub fn detached(mut self) -> Self {
        self.detached = true;
        self
    }

    /// Compresses this call's request messages with `compression`, instead
    /// of the client's default
    /// ([`ClientBuilder::compression`](crate::ClientBuilder::compression)).
    pub fn compression(mut self, compression: crate::Compression) -> Self {
        self.compression = Some(compression);
        self
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
    fn header_chains_and_a_bad_entry_fails_the_call_naming_its_key() {
        let opts = CallOptions::new()
            .header("x-request-id", "42")
            .header_bin("trace-bin", &[0, 1]);
        assert!(opts.check("/p.S/m").is_ok());
        assert_eq!(opts.metadata.get("x-request-id"), Some("42"));
        assert_eq!(opts.metadata.get_bin("trace-bin"), Some(&[0u8, 1][..]));
        let bad = CallOptions::new()
            .header("Bad Key", "1")
            .header("x-ok", "2")
            .header_bin("no-suffix", &[1]);
        let status = bad.check("/p.S/m").unwrap_err();
        assert_eq!(status.code(), crate::Code::InvalidArgument);
        assert!(
            status.message().starts_with("/p.S/m: call options: ")
                && status.message().contains("Bad Key"),
            "{status:?}"
        );
        assert_eq!(bad.metadata.get("x-ok"), Some("2"));
        let bad_value = CallOptions::new().header("x-a", "line\nbreak");
        let status = bad_value.check("/p.S/m").unwrap_err();
        assert!(status.message().contains("x-a"), "{status:?}");
    }

    #[test]
    fn ok_is_the_ok_code_without_a_message() {
        let ok = crate::Status::ok();
        assert_eq!((ok.code(), ok.message()), (crate::Code::Ok, ""));
    }
}
