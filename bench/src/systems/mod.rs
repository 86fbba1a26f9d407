//! The systems the benchmark compares, behind one client trait.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod floor;
pub mod knafeh;
pub mod tonic;
pub mod tonic_h3;

/// Largest message any system is configured to accept (scenario e sends
/// 1 MiB each way).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// One system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// knafeh (bincode) over HTTP/3.
    Knafeh,
    /// tonic: gRPC over HTTP/2, no TLS (h2c).
    Tonic,
    /// tonic: gRPC over HTTP/2 with TLS (rustls, ring), the same
    /// development certificate as knafeh.
    TonicTls,
    /// tonic-h3: gRPC over HTTP/3 on quinn (h3, h3-quinn; rustls with
    /// ring), the same development certificate.
    TonicH3,
    /// A bare tokio-quiche HTTP/3 echo: no RPC layer.
    Floor,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 5] = [
        System::Knafeh,
        System::Tonic,
        System::TonicTls,
        System::TonicH3,
        System::Floor,
    ];
    /// The loopback benchmark's default selection: every system.
    pub const DEFAULT: [System; 5] = System::ALL;

    pub fn name(self) -> &'static str {
        match self {
            System::Knafeh => "knafeh",
            System::Tonic => "tonic-h2c",
            System::TonicTls => "tonic-tls",
            System::TonicH3 => "tonic-h3",
            System::Floor => "floor",
        }
    }

    /// The name in the wan scenario's output (the same as [`name`](Self::name)).
    pub fn wan_name(self) -> &'static str {
        self.name()
    }

    /// A system by [`name`](Self::name); `tonic` is tonic-h2c.
    /// The systems knafeh is compared with among `systems`, in their
    /// order (none when knafeh is not among them).
    pub fn peers(systems: &[System]) -> Vec<System> {
        if !systems.contains(&System::Knafeh) {
            return Vec::new();
        }
        systems
            .iter()
            .copied()
            .filter(|&s| s != System::Knafeh)
            .collect()
    }

    pub fn parse(s: &str) -> Option<System> {
        if s == "tonic" {
            return Some(System::Tonic);
        }
        System::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Where a server listens and what a client needs to trust it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The development CA (unused by tonic h2c).
    pub ca: PathBuf,
    /// Whether a tonic client dials with TLS (`https`, trusting `ca`).
    pub tls: bool,
}

/// What produces the requests of a client-streaming call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Producer {
    /// An iterator handed to the call (knafeh `Streaming::iter`, tonic
    /// `tokio_stream::iter`): the call pulls the items itself.
    Iter,
    /// A task sending into a bounded channel of [`CHANNEL_CAP`] items
    /// (knafeh `Streaming::channel`, tonic `tokio::sync::mpsc` behind a
    /// `ReceiverStream`).
    Channel,
}

/// Items a [`Conn::stream_until`] call asks for: more than any link
/// delivers in its time (the call is cancelled when the time is up).
pub const STREAM_UNTIL_COUNT: u32 = 100_000_000;

/// Capacity of the channel of [`Producer::Channel`].
pub const CHANNEL_CAP: usize = 128;

/// A connection to one server. Clones share the connection.
pub trait Conn: Clone + Send + Sync + 'static {
    /// One open bidirectional call (see [`Conn::open_bidi`]).
    type Bidi: Bidi;

    /// Opens one connection (handshake done when this returns).
    fn connect(target: &Target) -> impl Future<Output = Result<Self, String>> + Send;

    /// One unary echo; returns the length of the payload that came back.
    fn echo(&self, payload: Vec<u8>) -> impl Future<Output = Result<usize, String>> + Send;

    /// One server-streaming call of `count` items of `size` bytes; returns
    /// how many items arrived.
    fn stream(&self, count: u32, size: u32) -> impl Future<Output = Result<u64, String>> + Send;

    /// One server-streaming call of `count` items of `size` bytes whose
    /// server handler feeds them from a task through a channel of
    /// [`CHANNEL_CAP`]; returns how many items arrived. Only the RPC
    /// systems implement it.
    fn stream_fed(
        &self,
        count: u32,
        size: u32,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        let _ = (count, size);
        async { Err("stream_fed: not implemented by this system".to_owned()) }
    }

    /// One server-streaming call of [`STREAM_UNTIL_COUNT`] items of `size`
    /// bytes, read until `until` and then dropped (cancelled); returns how
    /// many items arrived. Only the RPC systems implement it (`wan`).
    fn stream_until(
        &self,
        size: u32,
        until: std::time::Instant,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        let _ = (size, until);
        async { Err("stream_until: not implemented by this system".to_owned()) }
    }

    /// One client-streaming call of `count` messages of `size` bytes from
    /// `producer`; returns how many messages the server counted.
    fn upload(
        &self,
        count: u32,
        size: usize,
        producer: Producer,
    ) -> impl Future<Output = Result<u64, String>> + Send;

    /// Opens one bidirectional call of the echo-each method, to send
    /// messages one at a time (the server answers each as it arrives).
    fn open_bidi(&self) -> impl Future<Output = Result<Self::Bidi, String>> + Send;

    /// One bidirectional call of the echo-each method: `count` messages of
    /// `size` bytes from an iterator while the echoes are read as they
    /// come; returns how many echoes arrived.
    fn bidi_stream(
        &self,
        count: u32,
        size: usize,
    ) -> impl Future<Output = Result<u64, String>> + Send;
}

/// An open bidirectional call.
pub trait Bidi: Send + 'static {
    /// Sends one message and waits for its echo; returns the echo's
    /// payload length.
    fn round_trip(
        &mut self,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<usize, String>> + Send;

    /// Ends the request side and waits for the call to end without error
    /// (after no further replies).
    fn finish(self) -> impl Future<Output = Result<(), String>> + Send;
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
        System::Tonic => tonic::serve(opts, false, on_listening).await,
        System::TonicTls => tonic::serve(opts, true, on_listening).await,
        System::TonicH3 => tonic_h3::serve(opts, on_listening).await,
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

#[cfg(test)]
mod tests;
