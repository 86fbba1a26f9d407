//! The client. Calls go to one or more endpoints (servers); each endpoint
//! has one QUIC connection, dialled on demand and shared by every clone of
//! the [`Client`]. One file per concern: `builder` (what a client does by
//! default), `endpoints` (connections, background dialling, balancing),
//! `call` (one call on the wire), `dial` (one QUIC + TLS handshake).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod builder;
mod call;
mod dial;
mod early;
mod endpoints;
mod streams;

pub use builder::ClientBuilder;
use dial::*;
use endpoints::*;

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
        let conn = self.inner.endpoints.iter().find_map(current)?;
        let s = &conn.shared;
        Some(ConnectionInfo {
            established: s.established.load(Acquire),
            resumed: s.resumed.load(Acquire),
            early_requests: s.early_requests.load(Acquire),
            early_refused: s.early_refused.load(Acquire),
        })
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
