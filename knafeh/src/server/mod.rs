//! The server, one file per concern: `builder` (what it binds, serves
//! and allows), `accept` (connections, draining, releasing the port),
//! `call` (one call: request, handler, response) and `steer` (which of
//! several sockets a datagram reaches). This file holds the running
//! server's handle and shared state.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::intercept::Interceptors;
use crate::service::Service;
use crate::transport::conn::Keepalive;

mod accept;
mod builder;
mod call;
mod requests;
mod steer;

use accept::*;
pub use builder::ServerBuilder;
use call::*;

/// Default largest message accepted, in bytes (4 MiB, as in gRPC).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Entry point for building a server; see [`ServerBuilder`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// A running server. Dropping the handle shuts the server down
/// gracefully in the background; keep it for as long as the server should
/// run.
#[must_use = "dropping the handle shuts the server down"]
pub struct ServerHandle {
    pub(super) local_addr: SocketAddr,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: JoinHandle<()>,
    pub(super) state: Arc<ServerState>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server listens on (with the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Open connections and calls in progress right now.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.state.connections.load(Ordering::Acquire),
            active_calls: self.state.active_calls.load(Ordering::Acquire),
        }
    }

    /// Graceful shutdown: stop accepting connections and calls (new calls
    /// get `UNAVAILABLE`), let in-flight calls finish within the drain
    /// timeout, then close every connection. When it returns, the UDP port
    /// can be bound again (it waits up to 10 s for the sockets to be
    /// released, and logs a warning if they were not).
    ///
    /// # Cancel safety
    /// Dropping the future part-way leaves the shutdown running in the
    /// background.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

pub(super) struct ServerState {
    pub(super) keepalive: Keepalive,
    pub(super) request_read_timeout: Duration,
    pub(super) services: HashMap<&'static str, Arc<dyn Service>>,
    pub(super) interceptors: Interceptors,
    pub(super) max_message_size: usize,
    /// `ServerBuilder::compression`: the preferred response encoding.
    pub(super) compression: Option<crate::Compression>,
    pub(super) active_calls: AtomicUsize,
    pub(super) idle: Notify,
    pub(super) connections: AtomicUsize,
    pub(super) builtins: crate::builtin::Builtins,
    /// `true` once a graceful shutdown has begun ([`crate::Context::draining`]).
    pub(super) draining: tokio::sync::watch::Sender<bool>,
}

/// A snapshot of a server's load, from [`ServerHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Open QUIC connections (including ones still in their handshake).
    pub connections: usize,
    /// Calls being served: from their request headers until their last
    /// frame is queued or they are cancelled.
    pub active_calls: usize,
}

pub(super) struct ConnGuard(Arc<ServerState>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) struct ActiveCallGuard(Arc<ServerState>);

impl Drop for ActiveCallGuard {
    fn drop(&mut self) {
        if self.0.active_calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
