//! Discovery: `dns://SERVER/name:port` targets against a DNS server this
//! file runs on loopback, servers on 127.0.0.2, 127.0.0.3, ... sharing one
//! port (an A record carries no port), and a custom `Resolve`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use knafeh::{
    Client, ClientBuilder, Code, Resolve, ResolveFuture, ServerHandle, Status, Streaming,
};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

#[derive(Serialize, Deserialize)]
pub struct Ask {
    pub n: u32,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Who {
    /// The IP address of the server that answered.
    pub ip: String,
    pub n: u32,
}

#[knafeh::service(package = "knafeh.discovery")]
pub trait Where {
    /// Which server answered.
    async fn who(&self, req: Ask) -> Result<Who, Status>;
    /// One item at once, then `n` more once the server's gate opens.
    async fn hold(&self, req: Ask) -> Result<Streaming<Who>, Status>;
}

struct WhereImpl {
    ip: String,
    calls: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

impl Where for WhereImpl {
    async fn who(&self, req: Ask) -> Result<Who, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Who {
            ip: self.ip.clone(),
            n: req.n,
        })
    }

    async fn hold(&self, req: Ask) -> Result<Streaming<Who>, Status> {
        let (tx, items) = Streaming::channel(4);
        let (ip, gate) = (self.ip.clone(), self.gate.clone());
        tokio::spawn(async move {
            let who = |n| Who { ip: ip.clone(), n };
            if tx.send(who(0)).await.is_err() {
                return;
            }
            gate.notified().await;
            for n in 1..=req.n {
                if tx.send(who(n)).await.is_err() {
                    return;
                }
            }
        });
        Ok(items)
    }
}

/// A server on 127.0.0.`last`, counting its calls.
struct Backend {
    ip: Ipv4Addr,
    calls: Arc<AtomicUsize>,
    gate: Arc<Notify>,
    handle: Option<ServerHandle>,
}

impl Backend {
    async fn start(certs: &Certs, ip: Ipv4Addr, port: u16) -> std::io::Result<Backend> {
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let service = WhereImpl {
            ip: ip.to_string(),
            calls: calls.clone(),
            gate: gate.clone(),
        };
        let handle = certs
            .server_builder()
            .bind(SocketAddr::from((ip, port)))
            .add_service(WhereServer::new(service))
            .start()
            .await?;
        Ok(Backend {
            ip,
            calls,
            gate,
            handle: Some(handle),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// `n` servers on 127.0.0.2, 127.0.0.3, ... all on one port (the first
/// one's, picked by the system; tried again if another is taken).
async fn backends(certs: &Certs, n: u8) -> (Vec<Backend>, u16) {
    'again: for _ in 0..20 {
        let first = Backend::start(certs, Ipv4Addr::new(127, 0, 0, 2), 0)
            .await
            .unwrap();
        let port = first.handle.as_ref().unwrap().local_addr().port();
        let mut all = vec![first];
        for last in 3..2 + n {
            match Backend::start(certs, Ipv4Addr::new(127, 0, 0, last), port).await {
                Ok(b) => all.push(b),
                Err(_) => continue 'again,
            }
        }
        return (all, port);
    }
    panic!("no port free on all of 127.0.0.2..{}", 1 + n);
}

/// What the test DNS server answers.
#[derive(Clone, Debug)]
enum Mode {
    /// These A records (and no AAAA record).
    Records(Vec<Ipv4Addr>),
    /// A response with the right id that is cut short.
    Garbage,
    /// SERVFAIL.
    ServFail,
    /// These A records, but only to a query sent again (the first of each
    /// id gets no answer), and only after a reply with another id.
    Flaky(Vec<Ipv4Addr>),
}

/// A DNS server on 127.0.0.1 answering every name as `mode` says.
struct DnsServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    queries: Arc<AtomicUsize>,
    queried: Arc<Notify>,
}

impl DnsServer {
    async fn start(mode: Mode) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let queries = Arc::new(AtomicUsize::new(0));
        let queried = Arc::new(Notify::new());
        let (m, q, n) = (mode.clone(), queries.clone(), queried.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut seen = std::collections::HashSet::new();
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let mut mode = m.lock().unwrap().clone();
                if let Mode::Flaky(ips) = mode {
                    mode = Mode::Records(ips);
                    if seen.insert([buf[0], buf[1]]) {
                        q.fetch_add(1, Ordering::SeqCst);
                        n.notify_waiters();
                        continue;
                    }
                    let mut other = dns_reply(&buf[..len], &mode).unwrap();
                    other[1] ^= 1;
                    let _ = socket.send_to(&other, from).await;
                }
                if let Some(reply) = dns_reply(&buf[..len], &mode) {
                    let _ = socket.send_to(&reply, from).await;
                }
                q.fetch_add(1, Ordering::SeqCst);
                n.notify_waiters();
            }
        });
        DnsServer {
            addr,
            mode,
            queries,
            queried,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Waits until the server has received more than `n` queries.
    async fn wait_queries(&self, n: usize) {
        loop {
            let queried = self.queried.notified();
            tokio::pin!(queried);
            queried.as_mut().enable();
            if self.queries() > n {
                return;
            }
            queried.await;
        }
    }

    fn target(&self, port: u16) -> String {
        format!("dns://{}/svc.test:{port}", self.addr)
    }
}

/// The reply to `query` (written here from RFC 1035, independently of
/// the client's parser).
fn dns_reply(query: &[u8], mode: &Mode) -> Option<Vec<u8>> {
    // The question: the name's labels up to the root, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + *query.get(end)? as usize;
    }
    let question = query.get(12..end + 5)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let mut r = vec![query[0], query[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    match mode {
        Mode::ServFail => r[3] = 0x82,
        Mode::Garbage => {
            r[7] = 3;
            r.extend_from_slice(question);
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0]);
            return Some(r);
        }
        Mode::Records(_) | Mode::Flaky(_) => {}
    }
    r.extend_from_slice(question);
    if let (Mode::Records(ips), 1) = (mode, qtype) {
        r[7] = ips.len() as u8;
        for ip in ips {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            r.extend_from_slice(&ip.octets());
        }
    }
    Some(r)
}

fn client(certs: &Certs, target: &str) -> ClientBuilder {
    certs
        .client_builder(target)
        // The test certificate names localhost, not svc.test.
        .server_name("localhost")
        .connect_timeout(Duration::from_secs(5))
}

/// Calls `who` until every server in `want` has answered; returns the
/// servers that answered, with counts.
async fn reach_all(c: &WhereClient, want: &[Ipv4Addr]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut n = 0;
    while !want.iter().all(|ip| seen.contains_key(&ip.to_string())) {
        let who = c.who(Ask { n }).await.unwrap();
        assert_eq!(who.n, n);
        *seen.entry(who.ip).or_insert(0) += 1;
        n += 1;
    }
    seen
}

fn ips(backends: &[Backend]) -> Vec<Ipv4Addr> {
    backends.iter().map(|b| b.ip).collect()
}

#[tokio::test]
async fn a_name_resolves_to_every_address_and_calls_spread_over_them() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 3).await;
        let dns = DnsServer::start(Mode::Records(ips(&servers))).await;
        let c = WhereClient::new(client(&certs, &dns.target(port)).connect().await.unwrap());
        let seen = reach_all(&c, &ips(&servers)).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        for s in &servers {
            assert!(s.calls() > 0, "{} got no call", s.ip);
        }
        // One A and one AAAA query.
        assert!(dns.queries() >= 2);
    })
    .await;
}

#[tokio::test]
async fn the_client_asks_again_after_silence_and_ignores_other_ids() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 2).await;
        let dns = DnsServer::start(Mode::Flaky(ips(&servers))).await;
        let c = WhereClient::new(client(&certs, &dns.target(port)).connect().await.unwrap());
        reach_all(&c, &ips(&servers)).await;
        // A and AAAA, each sent twice.
        assert_eq!(dns.queries(), 4);
    })
    .await;
}

#[tokio::test]
async fn a_changed_answer_moves_new_calls_and_lets_calls_in_progress_finish() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 3).await;
        let (a, b, c3) = (servers[0].ip, servers[1].ip, servers[2].ip);
        let dns = DnsServer::start(Mode::Records(vec![a, b])).await;
        let client = client(&certs, &dns.target(port))
            .resolve_interval(Duration::from_millis(100), Duration::from_millis(20))
            .connect()
            .await
            .unwrap();
        let c = WhereClient::new(client);
        // A long call in progress on b: streams to a are dropped.
        let mut held = loop {
            let mut items = c.hold(Ask { n: 5 }).await.unwrap();
            let first = items.message().await.unwrap().unwrap();
            if first.ip == b.to_string() {
                break items;
            }
        };
        // b leaves the answer, c3 joins it.
        dns.set(Mode::Records(vec![a, c3]));
        reach_all(&c, &[c3]).await;
        // The new set is in place: no new call reaches b.
        let before = servers[1].calls();
        let seen = reach_all(&c, &[a, c3]).await;
        for n in 0..20 {
            let who = c.who(Ask { n }).await.unwrap();
            assert_ne!(who.ip, b.to_string());
        }
        assert!(!seen.contains_key(&b.to_string()), "{seen:?}");
        assert_eq!(servers[1].calls(), before);
        // The call on b still completes.
        servers[1].gate.notify_one();
        for n in 1..=5 {
            let item = held.message().await.unwrap().unwrap();
            assert_eq!((item.ip.as_str(), item.n), (b.to_string().as_str(), n));
        }
        assert!(held.message().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn a_lost_server_leads_to_a_prompt_resolution() {
    bounded(async {
        let certs = Certs::new();
        let (mut servers, port) = backends(&certs, 2).await;
        let dns = DnsServer::start(Mode::Records(ips(&servers))).await;
        // Only a lost connection can cause a resolution within the test.
        let client = client(&certs, &dns.target(port))
            .resolve_interval(Duration::from_secs(3600), Duration::from_millis(50))
            .connect()
            .await
            .unwrap();
        let c = WhereClient::new(client);
        reach_all(&c, &ips(&servers)).await;
        let queries = dns.queries();
        dns.set(Mode::Records(vec![servers[0].ip]));
        servers[1].handle.take().unwrap().shutdown().await;
        dns.wait_queries(queries).await;
        // From now on every call goes to the server left.
        let survivor = servers[0].ip.to_string();
        let mut n = 0;
        loop {
            match c.who(Ask { n }).await {
                Ok(who) if who.ip == survivor => break,
                // Calls racing the close of the other server's connection.
                Ok(_) => {}
                Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e}"),
            }
            n += 1;
        }
        for n in 0..20 {
            assert_eq!(c.who(Ask { n }).await.unwrap().ip, survivor);
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_failed_and_empty_answers_keep_the_last_good_set() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 2).await;
        let dns = DnsServer::start(Mode::Records(ips(&servers))).await;
        let client = client(&certs, &dns.target(port))
            .resolve_interval(Duration::from_millis(50), Duration::from_millis(10))
            .connect()
            .await
            .unwrap();
        let c = WhereClient::new(client);
        reach_all(&c, &ips(&servers)).await;
        for bad in [Mode::Garbage, Mode::ServFail, Mode::Records(vec![])] {
            dns.set(bad.clone());
            // Two resolutions (A + AAAA each) after the change: the first
            // one's answer has been taken by then.
            let queries = dns.queries();
            dns.wait_queries(queries + 3).await;
            for s in &servers {
                s.calls.store(0, Ordering::SeqCst);
            }
            let seen = reach_all(&c, &ips(&servers)).await;
            assert_eq!(seen.len(), 2, "{bad:?}: {seen:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_first_resolution_failing_fails_connect_naming_the_target() {
    bounded(async {
        let certs = Certs::new();
        let dns = DnsServer::start(Mode::ServFail).await;
        let target = dns.target(7777);
        let err = client(&certs, &target).connect().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains(&target), "{err}");
        assert!(err.message().contains("SERVFAIL"), "{err}");

        dns.set(Mode::Records(vec![]));
        let err = client(&certs, &target).connect().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains(&target), "{err}");
        assert!(err.message().contains("resolves to no address"), "{err}");

        let err = client(&certs, "dns://name-not-ip/svc.test:1")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("dns://name-not-ip/svc.test:1"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_lazy_client_waits_for_the_first_resolution() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 1).await;
        let dns = DnsServer::start(Mode::Records(ips(&servers))).await;
        let c = WhereClient::new(client(&certs, &dns.target(port)).connect_lazy());
        let who = c.who(Ask { n: 1 }).await.unwrap();
        assert_eq!(who.ip, servers[0].ip.to_string());

        let failing = DnsServer::start(Mode::ServFail).await;
        let c = WhereClient::new(client(&certs, &failing.target(port)).connect_lazy());
        let err = c.who(Ask { n: 1 }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains(&failing.target(port)), "{err}");

        let c = WhereClient::new(client(&certs, "dns:///").connect_lazy());
        let err = c.who(Ask { n: 1 }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    })
    .await;
}

#[tokio::test]
async fn without_a_dns_server_the_system_resolver_is_asked() {
    bounded(async {
        let certs = Certs::new();
        let server = Backend::start(&certs, Ipv4Addr::LOCALHOST, 0)
            .await
            .unwrap();
        let port = server.handle.as_ref().unwrap().local_addr().port();
        let target = format!("dns:///localhost:{port}");
        let c = WhereClient::new(certs.client_builder(target).connect().await.unwrap());
        assert_eq!(c.who(Ask { n: 1 }).await.unwrap().ip, "127.0.0.1");
    })
    .await;
}

/// Addresses the test changes, and how often the client asked.
#[derive(Clone, Default)]
struct Fixed {
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    asked: Arc<AtomicUsize>,
}

impl Resolve for Fixed {
    fn resolve(&self) -> ResolveFuture<'_> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let addrs = self.addrs.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

#[tokio::test]
async fn a_custom_resolver_finds_the_servers() {
    bounded(async {
        let certs = Certs::new();
        let (servers, port) = backends(&certs, 2).await;
        let addr = |b: &Backend| SocketAddr::from((b.ip, port));
        let fixed = Fixed::default();
        *fixed.addrs.lock().unwrap() = vec![addr(&servers[0])];
        let client = client(&certs, "svc.test:1")
            .resolver(fixed.clone())
            .resolve_interval(Duration::from_millis(50), Duration::from_millis(10))
            .connect()
            .await
            .unwrap();
        let c = WhereClient::new(client);
        let first = servers[0].ip.to_string();
        for n in 0..10 {
            assert_eq!(c.who(Ask { n }).await.unwrap().ip, first);
        }
        *fixed.addrs.lock().unwrap() = vec![addr(&servers[1])];
        reach_all(&c, &[servers[1].ip]).await;
        let before = servers[0].calls();
        for n in 0..20 {
            assert_eq!(
                c.who(Ask { n }).await.unwrap().ip,
                servers[1].ip.to_string()
            );
        }
        assert_eq!(servers[0].calls(), before);
        assert!(fixed.asked.load(Ordering::SeqCst) >= 2);
    })
    .await;
}

/// Never answers.
struct Silent;

impl Resolve for Silent {
    fn resolve(&self) -> ResolveFuture<'_> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_resolution_is_bounded_by_the_connect_timeout() {
    bounded(async {
        let err = Client::builder("svc.test:1")
            .resolver(Silent)
            .connect_timeout(Duration::from_millis(100))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("svc.test:1"), "{err}");
        assert!(err.message().contains("no answer within 100ms"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_resolver_and_extra_endpoints_do_not_mix() {
    let err = Client::builder("svc.test:1")
        .resolver(Fixed::default())
        .endpoint("127.0.0.1:1")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}
