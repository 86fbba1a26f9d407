//! The client. Calls go to one or more endpoints (servers); each endpoint
//! has one QUIC connection, dialled on demand and shared by every clone of
//! the [`Client`]. One file per concern: `builder` (what a client does by
//! default), `endpoints` (connections, background dialling, balancing),
//! `call` (one call on the wire), `retry` (retries and hedging around
//! it), `dial` (one QUIC + TLS handshake).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod builder;
mod call;
mod dial;
mod endpoints;
mod retry;
mod streams;

pub use builder::ClientBuilder;
use dial::*;
use endpoints::*;
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
        f.debug_struct("Client")
            .field("endpoints", &self.inner.cfg.addrs)
            .finish_non_exhaustive()
    }
}

struct Inner {
    pub(super) cfg: ClientBuilder,
    endpoints: Vec<Endpoint>,
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
}
