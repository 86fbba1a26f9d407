//! Interceptors: code that sees every call before it runs (server) or
//! before it is sent (client), and may refuse it or add metadata. They are
//! synchronous ([`Interceptor`]) or may await ([`AsyncInterceptor`]); one
//! list per server or client holds both, in the order they were added.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use crate::{Metadata, Status};

/// What an [`Interceptor`] sees of a call, and may change.
#[derive(Debug)]
pub struct CallInfo {
    path: String,
    metadata: Metadata,
    deadline: Option<Instant>,
    peer: Option<SocketAddr>,
    response_metadata: Metadata,
}

impl CallInfo {
    pub(crate) fn new(
        path: String,
        metadata: Metadata,
        deadline: Option<Instant>,
        peer: Option<SocketAddr>,
    ) -> Self {
        CallInfo {
            path,
            metadata,
            deadline,
            peer,
            response_metadata: Metadata::new(),
        }
    }

    /// The method path, `/{package.}{Service}/{method}`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fully qualified service name (`package.Service`).
    pub fn service(&self) -> &str {
        crate::proto::wire::split_path(&self.path).map_or("", |(s, _)| s)
    }

    /// The method name.
    pub fn method(&self) -> &str {
        crate::proto::wire::split_path(&self.path).map_or("", |(_, m)| m)
    }

    /// The request's custom metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The request's custom metadata, to edit: on a client, what is sent;
    /// on a server, what the handler sees in
    /// [`Context::metadata`](crate::Context::metadata).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The call's deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Server: the client's address. Client: `None`.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Server: metadata sent back with the response (in its headers, or
    /// with the error status, including a status this interceptor
    /// returns). Client: ignored.
    pub fn response_metadata_mut(&mut self) -> &mut Metadata {
        &mut self.response_metadata
    }

    pub(crate) fn into_parts(self) -> (Metadata, Metadata) {
        (self.metadata, self.response_metadata)
    }

    /// Moves the call out, leaving an empty one with the same response
    /// metadata (what a refusal keeps when the moved call is lost).
    fn take(&mut self) -> CallInfo {
        let kept = CallInfo {
            path: String::new(),
            metadata: Metadata::new(),
            deadline: self.deadline,
            peer: self.peer,
            response_metadata: self.response_metadata.clone(),
        };
        std::mem::replace(self, kept)
    }
}

/// Sees every call: on a server before the request is read and the handler
/// runs ([`ServerBuilder::interceptor`](crate::ServerBuilder::interceptor)),
/// on a client before the request is sent
/// ([`ClientBuilder::interceptor`](crate::ClientBuilder::interceptor)).
///
/// Returning an error ends the call with that status: a server answers
/// with it without reading the request; a client returns it without
/// sending anything. Interceptors, synchronous and asynchronous, run in
/// the order they were added; the first error stops the call.
///
/// An `Interceptor` is synchronous and may run inside the connection's
/// own task (a server polls a new call once there before spawning it):
/// keep it quick (look a token up in memory). Work that waits (a token
/// check over the network, a cache that refreshes) belongs in an
/// [`AsyncInterceptor`], which shares the list and its order. Any
/// `Fn(&mut CallInfo) -> Result<(), Status>` closure is one.
///
/// ```
/// let require_tenant = |call: &mut knafeh::CallInfo| {
///     if call.metadata().get("x-tenant").is_none() {
///         return Err(knafeh::Status::invalid_argument("x-tenant is required"));
///     }
///     Ok(())
/// };
/// let builder = knafeh::Server::builder().interceptor(require_tenant);
/// # drop(builder);
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Inspects or edits `call`; an error refuses it.
    fn intercept(&self, call: &mut CallInfo) -> Result<(), Status>;
}

impl<F> Interceptor for F
where
    F: Fn(&mut CallInfo) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept(&self, call: &mut CallInfo) -> Result<(), Status> {
        self(call)
    }
}

/// The future an [`AsyncInterceptor`] returns: it may borrow the
/// interceptor and the call.
pub type InterceptFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;

/// An interceptor that may await: a token checked against a store or a
/// cache that refreshes, a rate limiter. Added with
/// [`ServerBuilder::async_interceptor`](crate::ServerBuilder::async_interceptor)
/// or [`ClientBuilder::async_interceptor`](crate::ClientBuilder::async_interceptor).
///
/// It sees and edits the call as an [`Interceptor`] does, and an error
/// refuses the call in the same way. On a server it runs before the
/// request is read, in the call's own task: while it waits, other calls
/// and connections go on. On a client it runs once per call, before
/// anything is sent. If the call ends while it waits (its deadline
/// passes; a server's client cancels it; a client's caller drops the
/// call) the call ends as such (`DEADLINE_EXCEEDED`, `CANCELLED`) and the
/// interceptor's future is dropped.
///
/// # Order
/// Synchronous and asynchronous interceptors form one list, run in the
/// order they were added whatever their kind; each sees what the ones
/// before it changed, and the first error stops the call.
///
/// # Closures
/// Any `Fn(CallInfo) -> impl Future<Output = Result<CallInfo, Status>>`
/// closure (its future `Send + 'static`) is one: it takes the call and
/// gives it back. A closure that refuses loses the call it took: response
/// metadata for the refusal goes on the status
/// ([`Status::with_metadata`]); what earlier interceptors set is kept.
///
/// ```
/// use std::sync::Arc;
/// use knafeh::{CallInfo, Status};
///
/// /// Stands for a token store that takes a while to answer.
/// struct Tokens;
///
/// impl Tokens {
///     async fn caller(&self, token: &str) -> Option<String> {
///         tokio::task::yield_now().await;
///         (token == "Bearer s3cret").then(|| "ops".to_owned())
///     }
/// }
///
/// let tokens = Arc::new(Tokens);
/// let check_token = move |mut call: CallInfo| {
///     let tokens = tokens.clone();
///     async move {
///         let token = call.metadata().get("authorization").unwrap_or_default();
///         let Some(caller) = tokens.caller(token).await else {
///             return Err(Status::unauthenticated("unknown token"));
///         };
///         call.metadata_mut()
///             .insert("x-caller", &caller)
///             .map_err(|e| Status::internal(e.to_string()))?;
///         Ok(call)
///     }
/// };
/// let builder = knafeh::Server::builder().async_interceptor(check_token);
/// # drop(builder);
/// ```
///
/// Implemented by hand, it borrows the call instead:
///
/// ```
/// use knafeh::{AsyncInterceptor, CallInfo, InterceptFuture, Status};
///
/// struct Stamp;
///
/// impl AsyncInterceptor for Stamp {
///     fn intercept<'a>(&'a self, call: &'a mut CallInfo) -> InterceptFuture<'a> {
///         Box::pin(async move {
///             tokio::task::yield_now().await;
///             call.response_metadata_mut()
///                 .insert("x-stamped", "yes")
///                 .map_err(|e| Status::internal(e.to_string()))
///         })
///     }
/// }
///
/// let builder = knafeh::Server::builder()
///     .interceptor(|_: &mut CallInfo| Ok(())) // runs first
///     .async_interceptor(Stamp); // then this
/// # drop(builder);
/// ```
pub trait AsyncInterceptor: Send + Sync + 'static {
    /// Inspects or edits `call`, awaiting what it needs; an error refuses
    /// it.
    ///
    /// # Cancel safety
    /// The future may be dropped at any await (the call ended meanwhile);
    /// the call is then not served or sent.
    fn intercept<'a>(&'a self, call: &'a mut CallInfo) -> InterceptFuture<'a>;
}

impl<F, Fut> AsyncInterceptor for F
where
    F: Fn(CallInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CallInfo, Status>> + Send + 'static,
{
    fn intercept<'a>(&'a self, call: &'a mut CallInfo) -> InterceptFuture<'a> {
        let fut = self(call.take());
        Box::pin(async move {
            *call = fut.await?;
            Ok(())
        })
    }
}

/// One interceptor of a list.
#[derive(Clone)]
enum Step {
    Sync(Arc<dyn Interceptor>),
    Async(Arc<dyn AsyncInterceptor>),
}

/// The interceptors of a server or client, in the order they were added
/// (shown by count in `Debug`).
#[derive(Clone, Default)]
pub(crate) struct Interceptors(Vec<Step>);

impl Interceptors {
    /// Adds a synchronous interceptor at the end.
    pub(crate) fn push(&mut self, interceptor: impl Interceptor) {
        self.0.push(Step::Sync(Arc::new(interceptor)));
    }

    /// Adds an asynchronous interceptor at the end.
    pub(crate) fn push_async(&mut self, interceptor: impl AsyncInterceptor) {
        self.0.push(Step::Async(Arc::new(interceptor)));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs the interceptors in order; the first error wins. Ready at the
    /// first poll when none of them waits.
    pub(crate) async fn run(&self, call: &mut CallInfo) -> Result<(), Status> {
        for step in &self.0 {
            match step {
                Step::Sync(i) => i.intercept(call)?,
                Step::Async(i) => i.intercept(call).await?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptor(s)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<String>>>;

    fn call() -> CallInfo {
        CallInfo::new("/p.S/m".into(), Metadata::new(), None, None)
    }

    /// A synchronous interceptor that logs `name` and the metadata it saw.
    fn sync_step(log: &Log, name: &'static str) -> impl Interceptor {
        let log = log.clone();
        move |call: &mut CallInfo| {
            let seen = call.metadata().get("x-order").unwrap_or("").to_owned();
            log.lock().unwrap().push(format!("{name}:{seen}"));
            let next = format!("{seen}{name}");
            call.metadata_mut().insert("x-order", &next).unwrap();
            Ok(())
        }
    }

    /// The same, asynchronous, yielding first.
    fn async_step(log: &Log, name: &'static str) -> impl AsyncInterceptor {
        let log = log.clone();
        move |mut call: CallInfo| {
            let log = log.clone();
            async move {
                tokio::task::yield_now().await;
                let seen = call.metadata().get("x-order").unwrap_or("").to_owned();
                log.lock().unwrap().push(format!("{name}:{seen}"));
                let next = format!("{seen}{name}");
                call.metadata_mut().insert("x-order", &next).unwrap();
                Ok(call)
            }
        }
    }

    #[tokio::test]
    async fn one_list_runs_in_the_order_added_whatever_the_kind() {
        let log = Log::default();
        let mut list = Interceptors::default();
        list.push(sync_step(&log, "a"));
        list.push_async(async_step(&log, "b"));
        list.push(sync_step(&log, "c"));
        list.push_async(async_step(&log, "d"));
        let mut info = call();
        list.run(&mut info).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["a:", "b:a", "c:ab", "d:abc"]);
        assert_eq!(info.metadata().get("x-order"), Some("abcd"));
        assert_eq!(info.path(), "/p.S/m");
        assert_eq!(format!("{list:?}"), "4 interceptor(s)");
    }

    #[tokio::test]
    async fn the_first_refusal_stops_the_list() {
        let log = Log::default();
        let mut list = Interceptors::default();
        list.push(|call: &mut CallInfo| {
            call.response_metadata_mut().insert("x-early", "1").unwrap();
            Ok(())
        });
        list.push_async(|_: CallInfo| async { Err(Status::unauthenticated("no")) });
        list.push(sync_step(&log, "never"));
        let mut info = call();
        let err = list.run(&mut info).await.unwrap_err();
        assert_eq!(err.code(), crate::Code::Unauthenticated);
        assert!(log.lock().unwrap().is_empty());
        // What the earlier interceptor set for the response survives the
        // closure that took the call and refused it.
        let (_, response) = info.into_parts();
        assert_eq!(response.get("x-early"), Some("1"));
    }

    #[test]
    fn only_synchronous_interceptors_are_ready_at_the_first_poll() {
        let log = Log::default();
        let mut list = Interceptors::default();
        list.push(sync_step(&log, "a"));
        list.push(sync_step(&log, "b"));
        let mut info = call();
        let mut run = std::pin::pin!(list.run(&mut info));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            run.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(()))
        ));
        assert_eq!(*log.lock().unwrap(), ["a:", "b:a"]);
    }
}
