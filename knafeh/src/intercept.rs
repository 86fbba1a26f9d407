//! Interceptors: code that sees every call before it runs (server) or
//! before it is sent (client), and may refuse it or add metadata.

use std::net::SocketAddr;
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
}

/// Sees every call: on a server before the request is read and the handler
/// runs ([`ServerBuilder::interceptor`](crate::ServerBuilder::interceptor)),
/// on a client before the request is sent
/// ([`ClientBuilder::interceptor`](crate::ClientBuilder::interceptor)).
///
/// Returning an error ends the call with that status: a server answers
/// with it without reading the request; a client returns it without
/// sending anything. Interceptors run in the order they were added; the
/// first error stops the call.
///
/// Interceptors are synchronous and run on the runtime's threads: keep
/// them quick (look a token up in memory, not over the network). Any
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

/// Runs `interceptors` in order; the first error wins.
pub(crate) fn run(
    interceptors: &[std::sync::Arc<dyn Interceptor>],
    call: &mut CallInfo,
) -> Result<(), Status> {
    interceptors.iter().try_for_each(|i| i.intercept(call))
}
