//! The client. Calls go to one or more endpoints (servers); each endpoint
//! has one QUIC connection, dialled on demand and shared by every clone of
//! the [`Client`]. One file per concern: `builder` (what a client does by
//! default), `endpoints` (connections, background dialling, balancing),
//! `call` (one call on the wire), `retry` (retries and hedging around
//! it), `dial` (one QUIC + TLS handshake), `resolve` (discovery:
//! resolvers and the endpoint set they keep up to date), `dns` (asking a
//! DNS server over UDP).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

mod builder;
mod call;
mod dial;
mod dns;
mod early;
mod endpoints;
mod resolve;
mod retry;
mod streams;

pub use builder::ClientBuilder;
use dial::*;
use endpoints::*;
use resolve::Discovery;
pub use resolve::{Resolve, ResolveFuture};
pub(crate) use retry::CallRetry;
use retry::RetryConfig;

/// A client of one or more servers (endpoints), shared by all clones:
/// every call is multiplexed over the endpoints' QUIC connections, and
/// when a connection dies the next call dials again.
///
/// Generated `{Trait}Client`s wrap one.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<String> = self.endpoints().iter().map(|e| e.addr.clone()).collect();
        f.debug_struct("Client")
            .field("target", &self.inner.cfg.target)
            .field("endpoints", &endpoints)
            .finish_non_exhaustive()
    }
}

struct Inner {
    pub(super) cfg: ClientBuilder,
    /// The endpoints now: a snapshot, replaced as a whole when
    /// re-resolution changes the set (calls keep the one they picked from).
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    /// Re-resolution of the target, when a resolver finds the endpoints.
    discovery: Option<Discovery>,
    /// State of the generator picking endpoints.
    rng: AtomicU64,
    /// The retry throttle's tokens, in thousandths (see `RetryConfig`).
    tokens: std::sync::atomic::AtomicU32,
    /// Notified when a dial succeeds, so that calls waiting for a dial to
    /// another endpoint can move to the one now connected.
    connected: tokio::sync::Notify,
}

impl Client {
    /// Shorthand for [`ClientBuilder::new`].
    pub fn builder(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    /// How the live connection to the first connected endpoint was set
    /// up; `None` while no endpoint is connected. For diagnostics and
    /// tests: whether the connection resumed a TLS session and how much
    /// 0-RTT early data it used.
    pub fn connection_info(&self) -> Option<ConnectionInfo> {
        use std::sync::atomic::Ordering::Acquire;
        let conn = self.endpoints().iter().find_map(|ep| current(ep))?;
        let s = &conn.shared;
        Some(ConnectionInfo {
            established: s.established.load(Acquire),
            resumed: s.resumed.load(Acquire),
            early_requests: s.early_requests.load(Acquire),
            early_refused: s.early_refused.load(Acquire),
        })
    }

    /// The endpoints now.
    fn endpoints(&self) -> Arc<[Arc<Endpoint>]> {
        let eps = self.inner.endpoints.read();
        eps.unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How a client's connection was set up (see [`Client::connection_info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The handshake is complete (`false` while a 0-RTT connection is
    /// still in early data).
    pub established: bool,
    /// The handshake resumed an earlier TLS session: the server sent no
    /// certificate. Known once `established`.
    pub resumed: bool,
    /// Requests sent as 0-RTT early data on this connection.
    pub early_requests: u64,
    /// Of those, the ones the server refused as early data (each was sent
    /// again once the handshake was complete).
    pub early_refused: u64,
}
