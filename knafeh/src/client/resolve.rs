//! Discovery: a client whose endpoints a resolver finds (a `dns:` target
//! or [`ClientBuilder::resolver`]) resolves again on an interval and soon
//! after a connection is lost or a dial fails, and swaps in the new
//! endpoint set: endpoints that remain keep their connection, new ones
//! are added, vanished ones are retired (no new calls; calls in progress
//! finish). A failed or empty resolution keeps the last good set.

use super::*;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::Status;

/// What [`Resolve::resolve`] returns: the addresses found, or why none
/// could be.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, Status>> + Send + 'a>>;

/// A source of server addresses for a [`Client`]: DNS (`dns:` targets),
/// or anything else plugged in with [`ClientBuilder::resolver`] (a
/// service registry, a configuration file, a fixed list).
///
/// The client calls [`resolve`](Resolve::resolve) once when it connects,
/// then again every [`ClientBuilder::resolve_interval`] and soon after a
/// connection to one of the addresses is lost or a dial fails (never
/// twice within the interval's minimum spacing). Each answer replaces the
/// endpoint set: calls in progress on an address that is no longer in it
/// finish; new calls go to the addresses of the answer.
///
/// An error, or an empty list, keeps the last good set (the first
/// resolution failing fails [`ClientBuilder::connect`] with `UNAVAILABLE`).
///
/// ```
/// use knafeh::{Resolve, ResolveFuture};
/// use std::net::SocketAddr;
/// use std::sync::Mutex;
///
/// /// Addresses that the application updates itself.
/// struct Fixed(Mutex<Vec<SocketAddr>>);
///
/// impl Resolve for Fixed {
///     fn resolve(&self) -> ResolveFuture<'_> {
///         let addrs = self.0.lock().unwrap().clone();
///         Box::pin(async move { Ok(addrs) })
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses now, each with its port. A resolution that takes
    /// longer than the client's connect timeout counts as failed.
    ///
    /// # Errors
    /// A status (usually `UNAVAILABLE`) saying why no address could be
    /// found; the client logs it and keeps its endpoints.
    fn resolve(&self) -> ResolveFuture<'_>;
}

/// A resolver held by a builder.
#[derive(Clone)]
pub(super) struct Resolver(pub(super) Arc<dyn Resolve>);

impl Resolver {
    /// Resolves once, within `limit` (the client's connect timeout).
    pub(super) async fn resolve_within(&self, limit: Duration) -> Result<Vec<SocketAddr>, Status> {
        match tokio::time::timeout(limit, self.0.resolve()).await {
            Ok(result) => result,
            Err(_) => Err(Status::unavailable(format!("no answer within {limit:?}"))),
        }
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Port of a `dns:` target without one (gRPC's naming document).
const DEFAULT_PORT: u16 = 443;
/// Port of a DNS server named without one.
const DNS_PORT: u16 = 53;

/// Parses `dns:[//server/]host[:port]` into the target's `host:port`
/// (its authority) and the resolver to use: the DNS server at `server`
/// (an IP address, port 53 by default), or the system's resolver.
pub(super) fn parse_dns_target(target: &str) -> Result<(String, Resolver), String> {
    let rest = target
        .strip_prefix("dns:")
        .ok_or_else(|| "expected dns:[//server/]host[:port]".to_owned())?;
    let (server, name) = match rest.strip_prefix("//") {
        Some(rest) => {
            let (server, name) = rest
                .split_once('/')
                .ok_or_else(|| "expected dns://server/host[:port]".to_owned())?;
            let server = (!server.is_empty())
                .then(|| parse_server(server))
                .transpose()?;
            (server, name)
        }
        None => (None, rest),
    };
    let (host, port) = match split_host_port(name) {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port {port:?}"))?;
            (host, port)
        }
        None if !name.contains(':') => (name, DEFAULT_PORT),
        None => match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            Some(v6) => (v6, DEFAULT_PORT),
            None => return Err(format!("bad host {name:?}")),
        },
    };
    if host.is_empty() {
        return Err("no host to resolve".to_owned());
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let resolver: Arc<dyn Resolve> = match server {
        Some(server) => Arc::new(dns::DnsResolver::new(server, host.to_owned(), port)),
        None => Arc::new(SystemResolver(authority.clone())),
    };
    Ok((authority, Resolver(resolver)))
}

/// `ip`, `ip:port`, `[v6]`, `[v6]:port`: a DNS server's address.
fn parse_server(server: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = server.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    ip.unwrap_or(server)
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("DNS server {server:?} is not an IP address[:port]"))
}

/// The system's resolver (`getaddrinfo` on a blocking thread): gives no
/// TTL, so the client resolves again on its interval.
struct SystemResolver(String);

impl Resolve for SystemResolver {
    fn resolve(&self) -> ResolveFuture<'_> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host(self.0.as_str())
                .await
                .map_err(|e| Status::unavailable(format!("resolving {}: {e}", self.0)))?;
            Ok(addrs.collect())
        })
    }
}

/// The endpoint addresses of an answer, in one order (so that equal
/// answers compare equal), without duplicates.
pub(super) fn endpoint_addrs(mut addrs: Vec<SocketAddr>) -> Vec<String> {
    addrs.sort_unstable();
    addrs.dedup();
    addrs.iter().map(SocketAddr::to_string).collect()
}

/// A client's re-resolution state.
pub(super) struct Discovery {
    /// Asks for a resolution soon (rate-limited by the task).
    kick: Arc<Notify>,
    /// Held by the call that makes a lazy client's first resolution (the
    /// others wait for it).
    first: tokio::sync::Mutex<()>,
    /// Resolution attempts so far.
    attempts: AtomicU64,
    /// Why the last attempt failed, if it did.
    last_error: Mutex<Option<String>>,
    /// Dropped with the client, which ends the re-resolution task.
    _stop: oneshot::Sender<()>,
}

impl Discovery {
    pub(super) fn new() -> (Self, oneshot::Receiver<()>) {
        let (stop, stopped) = oneshot::channel();
        let discovery = Discovery {
            kick: Arc::new(Notify::new()),
            first: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            _stop: stop,
        };
        (discovery, stopped)
    }
}

/// How often a client resolves again.
#[derive(Clone, Copy, Debug)]
pub(super) struct Schedule {
    /// Between two resolutions when nothing asks for one sooner.
    pub(super) every: Duration,
    /// At least this long between two resolutions.
    pub(super) min_gap: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            every: Duration::from_secs(30),
            min_gap: Duration::from_secs(1),
        }
    }
}

/// Starts re-resolving `client`'s target on a task of its own (none
/// outside a runtime), the first time after the interval.
pub(super) fn start(client: &Client, stopped: oneshot::Receiver<()>) {
    let (Some(discovery), Some(resolver)) = (&client.inner.discovery, &client.inner.cfg.resolver)
    else {
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(target = %client.inner.cfg.target, "no runtime: the target is not re-resolved");
        return;
    };
    let task = Task {
        client: Arc::downgrade(&client.inner),
        resolver: resolver.clone(),
        limit: client.inner.cfg.connect_timeout,
        kick: discovery.kick.clone(),
        schedule: client.inner.cfg.schedule,
    };
    rt.spawn(task.run(stopped, Instant::now()));
}

struct Task {
    client: Weak<Inner>,
    resolver: Resolver,
    /// How long one resolution may take.
    limit: Duration,
    kick: Arc<Notify>,
    schedule: Schedule,
}

/// Sleeps until `at`; forever when `at` is too far to represent (an
/// interval of `Duration::MAX`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(self, mut stopped: oneshot::Receiver<()>, mut last: Instant) {
        let Schedule { every, min_gap } = self.schedule;
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                () = sleep_until(last.checked_add(every)) => {}
                () = self.kick.notified() => {}
            }
            tokio::select! {
                _ = &mut stopped => return,
                () = sleep_until(last.checked_add(min_gap)) => {}
            }
            let result = tokio::select! {
                _ = &mut stopped => return,
                r = self.resolver.resolve_within(self.limit) => r,
            };
            last = Instant::now();
            let Some(inner) = self.client.upgrade() else {
                return;
            };
            Client { inner }.resolved(result);
        }
    }
}

impl Client {
    /// Takes a resolution's result: a non-empty answer becomes the
    /// endpoint set; a failure or an empty answer keeps the last one.
    fn resolved(&self, result: Result<Vec<SocketAddr>, Status>) {
        let Some(discovery) = &self.inner.discovery else {
            return;
        };
        let target = &self.inner.cfg.target;
        let error = match result {
            Ok(addrs) if !addrs.is_empty() => {
                self.set_endpoints(addrs);
                None
            }
            Ok(_) => Some(format!("{target} resolves to no address")),
            Err(e) => Some(format!("resolving {target}: {}", e.message())),
        };
        if let Some(error) = &error {
            let kept = self.endpoints().len();
            tracing::warn!(%error, kept, "resolution failed; keeping the last endpoints");
        }
        *lock(&discovery.last_error) = error;
        discovery.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// Makes `addrs` the endpoint set: endpoints already there stay (with
    /// their connections and load), new ones are added, the others are
    /// retired.
    pub(super) fn set_endpoints(&self, addrs: Vec<SocketAddr>) {
        let addrs = endpoint_addrs(addrs);
        let authority: Arc<str> = Arc::from(self.inner.cfg.addrs[0].as_str());
        let mut current = self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if current.len() == addrs.len() && current.iter().zip(&addrs).all(|(e, a)| e.addr == *a) {
            return;
        }
        let old = current.clone();
        let find = |a: &String| old.iter().find(|e| e.addr == *a).cloned();
        let new: Arc<[Arc<Endpoint>]> = addrs
            .iter()
            .map(|a| {
                find(a).unwrap_or_else(|| Arc::new(Endpoint::new(a.clone(), authority.clone())))
            })
            .collect();
        *current = new.clone();
        drop(current);
        let removed: Vec<&Arc<Endpoint>> = old
            .iter()
            .filter(|e| !new.iter().any(|n| Arc::ptr_eq(n, e)))
            .collect();
        for ep in &removed {
            ep.retire();
        }
        tracing::info!(
            target = %self.inner.cfg.target,
            endpoints = ?addrs,
            added = new.len() + removed.len() - old.len(),
            removed = removed.len(),
            "endpoints changed"
        );
    }

    /// The endpoints; the first call of a client made with `connect_lazy`
    /// resolves the target (the others wait for it).
    ///
    /// # Errors
    /// `UNAVAILABLE` when there is none (naming why the target did not
    /// resolve).
    pub(super) async fn endpoints_or_wait(&self) -> Result<Arc<[Arc<Endpoint>]>, Status> {
        if let Some(status) = self.inner.cfg.target_status() {
            return Err(status);
        }
        let eps = self.endpoints();
        if !eps.is_empty() {
            return Ok(eps);
        }
        let (Some(discovery), Some(resolver)) = (&self.inner.discovery, &self.inner.cfg.resolver)
        else {
            return Err(Status::unavailable("no endpoint to call"));
        };
        if discovery.attempts.load(Ordering::Acquire) == 0 {
            let _first = discovery.first.lock().await;
            if discovery.attempts.load(Ordering::Acquire) == 0 {
                let limit = self.inner.cfg.connect_timeout;
                self.resolved(resolver.resolve_within(limit).await);
            }
        }
        let eps = self.endpoints();
        if !eps.is_empty() {
            return Ok(eps);
        }
        self.re_resolve_soon();
        let why = lock(&discovery.last_error).clone();
        Err(Status::unavailable(why.unwrap_or_else(|| {
            format!("{} resolves to no address", self.inner.cfg.target)
        })))
    }

    /// Asks for a resolution soon (a dial failed: the server may be gone).
    pub(super) fn re_resolve_soon(&self) {
        if let Some(discovery) = &self.inner.discovery {
            discovery.kick.notify_one();
        }
    }

    /// Asks for a resolution when `conn` closes (its server may be gone).
    pub(super) fn re_resolve_when_lost(&self, conn: &ConnHandle) {
        let Some(discovery) = &self.inner.discovery else {
            return;
        };
        let (kick, shared) = (Arc::downgrade(&discovery.kick), conn.shared.clone());
        tokio::spawn(async move {
            shared.wait_closed().await;
            if let Some(kick) = kick.upgrade() {
                kick.notify_one();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(target: &str) -> Result<String, String> {
        parse_dns_target(target).map(|(a, _)| a)
    }

    #[test]
    fn dns_targets() {
        assert_eq!(authority("dns:///svc.test:7777").unwrap(), "svc.test:7777");
        assert_eq!(authority("dns:svc.test:7777").unwrap(), "svc.test:7777");
        assert_eq!(authority("dns:svc.test").unwrap(), "svc.test:443");
        assert_eq!(
            authority("dns://127.0.0.1:5353/svc.test:1").unwrap(),
            "svc.test:1"
        );
        assert_eq!(authority("dns://[::1]/svc.test:1").unwrap(), "svc.test:1");
        assert_eq!(authority("dns:[::1]:8").unwrap(), "[::1]:8");
        assert_eq!(authority("dns:[::1]").unwrap(), "[::1]:443");
    }

    #[test]
    fn bad_dns_targets_say_why() {
        for (target, why) in [
            ("dns:///", "no host"),
            ("dns://host-name/svc:1", "not an IP address"),
            ("dns://127.0.0.1", "expected dns://server/host"),
            ("dns:///svc:http", "bad port"),
            ("dns:///svc:99999", "bad port"),
            ("dns:///a:b:c", "bad host"),
        ] {
            let err = authority(target).unwrap_err();
            assert!(err.contains(why), "{target}: {err}");
        }
    }

    #[test]
    fn dns_servers() {
        assert_eq!(
            parse_server("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(parse_server("[::1]").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(parse_server("[::1]:5").unwrap(), "[::1]:5".parse().unwrap());
    }
}
