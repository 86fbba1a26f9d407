//! The three systems the benchmark compares, behind one client trait.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod floor;
pub mod knafeh;
pub mod tonic;

/// Largest message any system is configured to accept (scenario e sends
/// 1 MiB each way).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// One system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// knafeh (bincode) over HTTP/3.
    Knafeh,
    /// tonic: gRPC over HTTP/2, no TLS.
    Tonic,
    /// A bare tokio-quiche HTTP/3 echo: no RPC layer.
    Floor,
}

impl System {
    pub const ALL: [System; 3] = [System::Knafeh, System::Tonic, System::Floor];

    pub fn name(self) -> &'static str {
        match self {
            System::Knafeh => "knafeh",
            System::Tonic => "tonic",
            System::Floor => "floor",
        }
    }

    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Where a server listens and what a client needs to trust it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The development CA (unused by tonic, which runs without TLS).
    pub ca: PathBuf,
}

/// A connection to one server. Clones share the connection.
pub trait Conn: Clone + Send + Sync + 'static {
    /// Opens one connection (handshake done when this returns).
    fn connect(target: &Target) -> impl Future<Output = Result<Self, String>> + Send;

    /// One unary echo; returns the length of the payload that came back.
    fn echo(&self, payload: Vec<u8>) -> impl Future<Output = Result<usize, String>> + Send;

    /// One server-streaming call of `count` items of `size` bytes; returns
    /// how many items arrived.
    fn stream(&self, count: u32, size: u32) -> impl Future<Output = Result<u64, String>> + Send;
}

/// Serves `system` on `addr` until the future is dropped (the server
/// child's main task). `on_listening` gets the bound address.
pub async fn serve(
    system: System,
    opts: ServeOpts,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    match system {
        System::Knafeh => knafeh::serve(opts, on_listening).await,
        System::Tonic => tonic::serve(opts, on_listening).await,
        System::Floor => floor::serve(opts, on_listening).await,
    }
}

/// Server settings passed from the parent to the server child.
#[derive(Clone, Debug)]
pub struct ServeOpts {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Concurrent calls allowed per connection (knafeh).
    pub max_streams: u64,
}
