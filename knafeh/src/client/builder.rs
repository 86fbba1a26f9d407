//! [`ClientBuilder`]: how a client dials and what it sends by default.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::resolve::{self, Resolver, Schedule};
use crate::intercept::{AsyncInterceptor, Interceptor, Interceptors};
use crate::proto::retry::Throttle;
use crate::transport::conn::Keepalive;
use crate::{Code, Codec, Compression, HedgingPolicy, RetryPolicy, Status};

/// Builds a [`Client`].
///
/// The server certificate is verified by default: against the CA in
/// [`ClientBuilder::ca_file`] (or the system's trust store without one),
/// for the server name (the host part of the address unless
/// [`ClientBuilder::server_name`] says otherwise).
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    /// The target as given (for messages).
    pub(super) target: String,
    /// The endpoints' addresses; with a resolver, the one `host:port`
    /// naming the service (`:authority`, TLS name).
    pub(super) addrs: Vec<String>,
    /// Finds the endpoints (a `dns:` target or [`ClientBuilder::resolver`]).
    pub(super) resolver: Option<Resolver>,
    /// Why the target does not parse (reported by `connect`).
    pub(super) target_error: Option<String>,
    pub(super) schedule: Schedule,
    pub(super) server_name: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) insecure: bool,
    pub(super) identity: Option<(PathBuf, PathBuf)>,
    pub(super) interceptors: Interceptors,
    pub(super) codec: Codec,
    pub(super) compression: Compression,
    pub(super) max_message_size: usize,
    pub(super) connect_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) default_timeout: Option<Duration>,
    pub(super) keepalive: Keepalive,
    pub(super) zero_rtt: bool,
    pub(super) retry: RetryConfig,
}

impl ClientBuilder {
    /// A client of the server at `addr` (`host:port`, dialling its first
    /// address), or of every address of a name: `dns:[//server/]host[:port]`
    /// (gRPC's target syntax) resolves `host` to all its A and AAAA
    /// records, with the DNS server at `server` (an IP address, port 53 by
    /// default) or else the system's resolver, and keeps resolving it (see
    /// [`ClientBuilder::resolver`]). The port defaults to 443; the host is
    /// the TLS server name.
    ///
    /// ```
    /// let builder = knafeh::Client::builder("dns:///greeter.default.svc.cluster.local:4433");
    /// ```
    pub fn new(addr: impl Into<String>) -> Self {
        let target = addr.into();
        let (addr, resolver, target_error) = if target.starts_with("dns:") {
            match resolve::parse_dns_target(&target) {
                Ok((authority, resolver)) => (authority, Some(resolver), None),
                Err(why) => (target.clone(), None, Some(why)),
            }
        } else {
            (target.clone(), None, None)
        };
        ClientBuilder {
            target,
            addrs: vec![addr],
            resolver,
            target_error,
            schedule: Schedule::default(),
            server_name: None,
            ca_file: None,
            insecure: false,
            identity: None,
            interceptors: Interceptors::default(),
            codec: Codec::Bincode,
            compression: Compression::Identity,
            max_message_size: crate::DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            default_timeout: None,
            keepalive: Keepalive::default(),
            zero_rtt: false,
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

    /// Finds the servers with `resolver` instead: the address given to
    /// [`ClientBuilder::new`] (`host:port`) then only names the service
    /// (sent as `:authority`; its host is the TLS server name), and calls
    /// are spread over the addresses `resolver` returns, as over
    /// [`ClientBuilder::endpoint`]s. The client resolves when it
    /// connects, again every [`ClientBuilder::resolve_interval`], and soon
    /// after a connection is lost or a dial fails; each answer replaces
    /// the endpoint set, without failing calls in progress on addresses
    /// that left it. A failed or empty answer keeps the last good set.
    /// Extra [`ClientBuilder::endpoint`]s do not mix with a resolver
    /// (`connect` refuses them).
    pub fn resolver(mut self, resolver: impl Resolve) -> Self {
        self.resolver = Some(Resolver(Arc::new(resolver)));
        self
    }

    /// How often a resolved target is resolved again: every `every`
    /// (default 30 s), and never twice within `min_gap` (default 1 s),
    /// which also bounds how soon a lost connection or failed dial leads to
    /// a new resolution.
    pub fn resolve_interval(mut self, every: Duration, min_gap: Duration) -> Self {
        self.schedule = Schedule {
            every: every.max(min_gap),
            min_gap,
        };
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
    /// in the order they were added, synchronous and asynchronous alike.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(interceptor);
        self
    }

    /// Adds an interceptor that may await (see [`AsyncInterceptor`]), in
    /// its place among the interceptors added so far. It runs once per
    /// call when the call's future is first polled, before anything is
    /// sent; the call's deadline (and the cancellation of the call it was
    /// made from) still applies while it waits.
    pub fn async_interceptor(mut self, interceptor: impl AsyncInterceptor) -> Self {
        self.interceptors.push_async(interceptor);
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

    /// How request messages are compressed (default
    /// [`Compression::Identity`]: not at all); a call may choose otherwise
    /// with [`CallOptions::compression`](crate::CallOptions::compression).
    /// Messages under [`Compression::MIN_SIZE`] bytes, and those that would
    /// not get smaller, are still sent uncompressed. Whatever this says,
    /// the client reads responses in any of the encodings (and tells the
    /// server so in `grpc-accept-encoding`).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Largest response message accepted (default 4 MiB), on the wire and
    /// once decompressed; a larger one fails the call with
    /// `RESOURCE_EXHAUSTED`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long dialling may take (default 10 s), and resolving a
    /// resolved target.
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

    /// Sends calls to idempotent methods (declared `#[knafeh(idempotent)]`)
    /// as TLS 1.3 0-RTT early data when a connection resumes an earlier
    /// session: their requests leave with the first packets, and an answer
    /// can come back one round trip sooner than on a fresh connection.
    /// Other calls wait for the handshake as usual. Off by default.
    ///
    /// Why off: early data can be replayed. Anyone who records the first
    /// packets of a connection can send them to the server again, any
    /// number of times, and the server then sees the same request again
    /// (RFC 8446 §8, RFC 9001 §9.2); TLS cannot stop this. knafeh's server only serves early
    /// requests for methods declared idempotent and refuses the others
    /// (the client then resends them after the handshake), so turn this
    /// on only when the methods you declared idempotent truly are (running
    /// one twice has the effect of running it once) and their requests
    /// may be seen more than once. A 0-RTT dial returns before its
    /// handshake; a handshake not complete within the connect timeout
    /// fails the connection's calls with `UNAVAILABLE`. Requests that stream (client streaming,
    /// bidirectional) never travel as early data.
    ///
    /// Session resumption itself (no certificate exchange on the next
    /// dial) is always on; session tickets are kept in memory, per
    /// endpoint, and shared by the clones of the client.
    pub fn zero_rtt(mut self, enabled: bool) -> Self {
        self.zero_rtt = enabled;
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
    /// refused (the error of the first), or when the target does not
    /// resolve (naming the target and why); `INVALID_ARGUMENT` for a
    /// malformed address, target or TLS file.
    pub async fn connect(self) -> Result<Client, Status> {
        self.check()?;
        let initial = match &self.resolver {
            Some(resolver) => self.first_resolution(resolver).await?,
            None => self.addrs.clone(),
        };
        let client = self.build(initial);
        let endpoints = client.endpoints();
        if endpoints.len() == 1 {
            client.connection(&endpoints[0]).await?;
            return Ok(client);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        for ep in endpoints.iter() {
            let (c, tx, ep) = (client.clone(), tx.clone(), ep.clone());
            tokio::spawn(async move {
                let _ = tx.send(c.connection(&ep).await.map(drop));
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

    /// Returns the client without dialling; the first call dials (and,
    /// with a resolver, resolves first). A malformed address or target
    /// fails every call.
    pub fn connect_lazy(self) -> Client {
        let initial = match self.resolver {
            Some(_) => Vec::new(),
            None => self.addrs.clone(),
        };
        self.build(initial)
    }

    /// Why the target does not parse, as the status calls fail with.
    pub(super) fn target_status(&self) -> Option<Status> {
        let why = self.target_error.as_ref()?;
        Some(Status::invalid_argument(format!(
            "bad target {:?}: {why}",
            self.target
        )))
    }

    /// The target and addresses parse, and a resolver is not mixed with
    /// extra endpoints.
    fn check(&self) -> Result<(), Status> {
        if let Some(status) = self.target_status() {
            return Err(status);
        }
        for addr in &self.addrs {
            host_port(addr)?;
        }
        if self.resolver.is_some() && self.addrs.len() > 1 {
            return Err(Status::invalid_argument(format!(
                "{}: a resolved target takes no extra endpoints",
                self.target
            )));
        }
        Ok(())
    }

    /// The addresses of the first resolution, or `UNAVAILABLE` naming the
    /// target and why there are none.
    async fn first_resolution(&self, resolver: &Resolver) -> Result<Vec<String>, Status> {
        let target = &self.target;
        let addrs = resolver
            .resolve_within(self.connect_timeout)
            .await
            .map_err(|e| Status::unavailable(format!("resolving {target}: {}", e.message())))?;
        if addrs.is_empty() {
            return Err(Status::unavailable(format!(
                "{target} resolves to no address"
            )));
        }
        tracing::debug!(%target, ?addrs, "resolved");
        Ok(resolve::endpoint_addrs(addrs))
    }

    /// The client, with endpoints at `addrs`; with a resolver, its
    /// re-resolution task too.
    fn build(self, addrs: Vec<String>) -> Client {
        let (discovery, stopped) = match self.resolver {
            Some(_) => {
                let (d, stopped) = Discovery::new();
                (Some(d), Some(stopped))
            }
            None => (None, None),
        };
        let authority: Option<Arc<str>> = self
            .resolver
            .as_ref()
            .map(|_| self.addrs[0].as_str().into());
        let endpoints = addrs
            .into_iter()
            .map(|addr| {
                let authority = authority.clone().unwrap_or_else(|| addr.as_str().into());
                Arc::new(Endpoint::new(addr, authority))
            })
            .collect();
        let tokens = self.retry.throttle.map_or(0, |t| t.full());
        let client = Client {
            inner: Arc::new(Inner {
                cfg: self,
                endpoints: RwLock::new(endpoints),
                discovery,
                rng: AtomicU64::new(seed()),
                tokens: AtomicU32::new(tokens),
                connected: tokio::sync::Notify::new(),
            }),
        };
        if let Some(stopped) = stopped {
            resolve::start(&client, stopped);
        }
        client
    }
}
