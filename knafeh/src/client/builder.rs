//! [`ClientBuilder`]: how a client dials and what it sends by default.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::intercept::Interceptor;
use crate::proto::retry::Throttle;
use crate::transport::conn::Keepalive;
use crate::{Code, Codec, HedgingPolicy, RetryPolicy, Status};

/// Builds a [`Client`].
///
/// The server certificate is verified by default: against the CA in
/// [`ClientBuilder::ca_file`] (or the system's trust store without one),
/// for the server name (the host part of the address unless
/// [`ClientBuilder::server_name`] says otherwise).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(super) addrs: Vec<String>,
    pub(super) server_name: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) insecure: bool,
    pub(super) identity: Option<(PathBuf, PathBuf)>,
    pub(super) interceptors: Interceptors,
    pub(super) codec: Codec,
    pub(super) max_message_size: usize,
    pub(super) connect_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) default_timeout: Option<Duration>,
    pub(super) keepalive: Keepalive,
    pub(super) retry: RetryConfig,
}

impl ClientBuilder {
    /// A client of the server at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        ClientBuilder {
            addrs: vec![addr.into()],
            server_name: None,
            ca_file: None,
            insecure: false,
            identity: None,
            interceptors: Interceptors::default(),
            codec: Codec::Bincode,
            max_message_size: crate::DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            default_timeout: None,
            keepalive: Keepalive::default(),
            retry: RetryConfig::default(),
        }
    }

    /// Adds another server address serving the same services. Calls are
    /// spread over the endpoints (the less loaded of two picked at random,
    /// one connection each). Calls go to connected endpoints while the
    /// others are dialled in the background; only when none is connected
    /// does a call wait for a dial, and it moves as soon as another
    /// endpoint connects. An endpoint that cannot be dialled is taken out
    /// for a while (from 1 s, doubling up to 30 s). A call whose request
    /// was already sent is retried only as the retry policy allows
    /// ([`ClientBuilder::retry_policy`]).
    pub fn endpoint(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }

    /// PEM file of the CA(s) the server certificate must chain to.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The name the server certificate must carry (and the TLS SNI).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Presents this certificate chain and private key (PEM files) to the
    /// server, for servers that require client certificates (mutual TLS,
    /// [`ServerBuilder::client_ca`](crate::ServerBuilder::client_ca)).
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Adds an interceptor: it sees every call (method, metadata, deadline)
    /// before it is sent, and may add metadata or refuse the call with a
    /// status (returned to the caller; nothing is sent). Interceptors run
    /// in the order they were added.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.0.push(Arc::new(interceptor));
        self
    }

    /// Accept any server certificate. Insecure: anyone on the path can
    /// impersonate the server. For local development only.
    pub fn insecure_skip_verify(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The codec used for requests (default bincode).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Largest response message accepted (default 4 MiB); a larger one
    /// fails the call with `RESOURCE_EXHAUSTED`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long dialling may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Closes the connection after this long without traffic (default
    /// 60 s); the next call dials again.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Liveness of the connection while calls are in progress (default
    /// 5 s and 20 s): after `interval` without hearing from the server
    /// the client sends a PING; after `timeout` of silence it closes the
    /// connection and its calls fail with `UNAVAILABLE` (a server that
    /// vanished without closing, e.g. killed or cut off). `interval` is
    /// capped at `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Keepalive::new(interval, timeout);
        self
    }

    /// Timeout for calls that set none in their [`CallOptions`](crate::CallOptions).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The retry policy of every call (default [`RetryPolicy::default`]:
    /// 3 attempts, backoff 100 ms doubling up to 1 s; calls that never
    /// reached a handler are retried, and idempotent ones on
    /// `UNAVAILABLE`). [`RetryPolicy::none`] turns retries off.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry.policy = Arc::new(policy);
        self
    }

    /// The retry policy of the calls to one method (`path`,
    /// `/{package.}{Service}/{method}`), instead of the client's.
    pub fn method_retry_policy(mut self, path: impl Into<String>, policy: RetryPolicy) -> Self {
        self.retry.methods.insert(path.into(), Arc::new(policy));
        self
    }

    /// Hedges the calls to one method (`path`). Only idempotent methods are
    /// hedged; for others the hedging policy is ignored with a warning and
    /// the retry policy applies.
    pub fn method_hedging(mut self, path: impl Into<String>, policy: HedgingPolicy) -> Self {
        self.retry.hedging.insert(path.into(), Arc::new(policy));
        self
    }

    /// Retry throttling, as gRPC's `retryThrottling` (default on, 10
    /// tokens, ratio 0.1): a bucket of `max_tokens` (1 to 1000) that every
    /// failed attempt empties by one and every success refills by
    /// `token_ratio` (0.001 and up, three decimals); while it is at or
    /// below half, calls are not retried or hedged, so that retries cannot
    /// multiply the load of a failing server.
    pub fn retry_throttling(mut self, max_tokens: u32, token_ratio: f64) -> Self {
        self.retry.throttle = Some(Throttle::new(max_tokens, token_ratio));
        self
    }

    /// Turns retry throttling off.
    pub fn no_retry_throttling(mut self) -> Self {
        self.retry.throttle = None;
        self
    }

    /// Dials the server (every endpoint, at the same time) and returns the
    /// client as soon as one endpoint is connected; dials to the others
    /// go on in the background.
    ///
    /// # Errors
    /// `UNAVAILABLE` when no endpoint can be reached or its certificate is
    /// refused (the error of the first); `INVALID_ARGUMENT` for a malformed
    /// address or TLS file.
    pub async fn connect(self) -> Result<Client, Status> {
        for addr in &self.addrs {
            host_port(addr)?;
        }
        let client = self.connect_lazy();
        if client.inner.endpoints.len() == 1 {
            client.connection(&client.inner.endpoints[0]).await?;
            return Ok(client);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..client.inner.endpoints.len() {
            let (c, tx) = (client.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(c.connection(&c.inner.endpoints[i]).await.map(drop));
            });
        }
        drop(tx);
        let mut first_err = None;
        while let Some(result) = rx.recv().await {
            match result {
                Ok(()) => return Ok(client),
                Err(e) if e.code() == Code::Unavailable => {
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| Status::unavailable("no endpoint to dial")))
    }

    /// Returns the client without dialling; the first call dials.
    pub fn connect_lazy(self) -> Client {
        let endpoints = self.addrs.iter().cloned().map(Endpoint::new).collect();
        let tokens = self.retry.throttle.map_or(0, |t| t.full());
        Client {
            inner: Arc::new(Inner {
                cfg: self,
                endpoints,
                rng: AtomicU64::new(seed()),
                tokens: AtomicU32::new(tokens),
                connected: tokio::sync::Notify::new(),
            }),
        }
    }
}

/// The interceptors of a client (shown by count in `Debug`).
#[derive(Clone, Default)]
pub(super) struct Interceptors(pub(super) Vec<Arc<dyn Interceptor>>);

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptor(s)", self.0.len())
    }
}
