//! A lossy UDP relay for fault tests (this kernel has no `tc netem`).
//!
//! The relay listens on `127.0.0.1:0`. Each client address that sends to it
//! gets its own upstream socket towards the server, so every client
//! connection keeps its own 4-tuple. Datagrams in each direction go through
//! a seeded [`Planner`] that decides, per datagram, whether it is dropped,
//! how long each copy is held back (delay plus jitter, plus an extra hold
//! for "reordered" ones so later datagrams overtake it) and whether it is
//! duplicated. The decisions depend only on the seed and the datagram's
//! position in its direction, so a run can be replayed and checked.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// splitmix64: a small, fast, seeded pseudo-random generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What happens to datagrams going one way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Every copy is held back at least this long.
    pub delay: Duration,
    /// Plus a uniformly random extra up to this much.
    pub jitter: Duration,
    /// Probability that a datagram is sent twice (the copy gets its own
    /// delay).
    pub duplicate: f64,
    /// Probability that a datagram is held back an extra `reorder_hold`,
    /// so that datagrams sent after it arrive first.
    pub reorder: f64,
    pub reorder_hold: Duration,
}

impl Faults {
    /// Datagrams pass straight through.
    pub fn none() -> Self {
        Faults::default()
    }
}

/// How the relay treats each direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelayConfig {
    pub seed: u64,
    /// Client to server.
    pub to_server: Faults,
    /// Server to client.
    pub to_client: Faults,
    /// Record the first bytes of every datagram received, per direction
    /// (for tests of the relay itself).
    pub log: bool,
}

/// A direction through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToServer,
    ToClient,
}

/// The seeded decisions for one direction.
#[derive(Clone, Debug)]
pub struct Planner {
    rng: SplitMix64,
    faults: Faults,
}

impl Planner {
    pub fn new(seed: u64, dir: Direction, faults: Faults) -> Self {
        let salt = match dir {
            Direction::ToServer => 0x5EED_0000_0000_0001,
            Direction::ToClient => 0x5EED_0000_0000_0002,
        };
        Planner {
            rng: SplitMix64::new(seed ^ salt),
            faults,
        }
    }

    /// The delays of the copies of the next datagram; empty means dropped.
    /// Always draws the same amount of randomness, so one datagram's fate
    /// does not shift the next one's.
    pub fn next_datagram(&mut self) -> Vec<Duration> {
        let r_drop = self.rng.next_f64();
        let r_dup = self.rng.next_f64();
        let r_reorder = self.rng.next_f64();
        let j1 = self.rng.next_f64();
        let j2 = self.rng.next_f64();
        let f = &self.faults;
        if r_drop < f.drop {
            return Vec::new();
        }
        let mut first = f.delay + f.jitter.mul_f64(j1);
        if r_reorder < f.reorder {
            first += f.reorder_hold;
        }
        let mut copies = vec![first];
        if r_dup < f.duplicate {
            copies.push(f.delay + f.jitter.mul_f64(j2));
        }
        copies
    }
}

/// Counts for one direction.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Datagrams that reached the relay.
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    /// Copies actually sent on.
    pub sent: AtomicU64,
}

/// Counts for both directions.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub to_server: DirStats,
    pub to_client: DirStats,
}

struct Path {
    planner: Mutex<Planner>,
    stats_dir: Direction,
    log: Option<Mutex<Vec<Vec<u8>>>>,
}

struct Inner {
    stats: RelayStats,
    to_server: Path,
    to_client: Path,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn stats(&self, dir: Direction) -> &DirStats {
        match dir {
            Direction::ToServer => &self.stats.to_server,
            Direction::ToClient => &self.stats.to_client,
        }
    }

    /// Plans one datagram and sends its copies (now or later) to `dest`
    /// through `socket`.
    async fn forward(
        &self,
        path: &Path,
        socket: &Arc<UdpSocket>,
        dest: Option<SocketAddr>,
        data: &[u8],
    ) {
        let stats = self.stats(path.stats_dir);
        stats.received.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &path.log {
            log.lock()
                .unwrap()
                .push(data[..data.len().min(16)].to_vec());
        }
        let copies = path.planner.lock().unwrap().next_datagram();
        if copies.is_empty() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if copies.len() > 1 {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        for delay in copies {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            if delay.is_zero() {
                let _ = match dest {
                    Some(d) => socket.send_to(data, d).await,
                    None => socket.send(data).await,
                };
                continue;
            }
            let socket = socket.clone();
            let data = data.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = match dest {
                    Some(d) => socket.send_to(&data, d).await,
                    None => socket.send(&data).await,
                };
            });
        }
    }
}

/// A running relay; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Relay {
    /// Starts relaying between `127.0.0.1:0` and `server`.
    pub async fn start(server: SocketAddr, cfg: RelayConfig) -> io::Result<Relay> {
        let listener = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = listener.local_addr()?;
        let path = |dir, faults: &Faults| Path {
            planner: Mutex::new(Planner::new(cfg.seed, dir, faults.clone())),
            stats_dir: dir,
            log: cfg.log.then(|| Mutex::new(Vec::new())),
        };
        let inner = Arc::new(Inner {
            stats: RelayStats::default(),
            to_server: path(Direction::ToServer, &cfg.to_server),
            to_client: path(Direction::ToClient, &cfg.to_client),
            tasks: Mutex::new(Vec::new()),
        });
        let main = tokio::spawn(client_side(listener, server, inner.clone()));
        inner.tasks.lock().unwrap().push(main);
        Ok(Relay { addr, inner })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    /// The first 16 bytes of every datagram received going `dir`, in the
    /// order received (only with [`RelayConfig::log`]).
    pub fn log(&self, dir: Direction) -> Vec<Vec<u8>> {
        let path = match dir {
            Direction::ToServer => &self.inner.to_server,
            Direction::ToClient => &self.inner.to_client,
        };
        path.log
            .as_ref()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in self.inner.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn client_side(listener: Arc<UdpSocket>, server: SocketAddr, inner: Arc<Inner>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match listener.recv_from(&mut buf).await {
            Ok(x) => x,
            // e.g. ECONNREFUSED reported for an earlier send: keep going.
            Err(_) => continue,
        };
        let upstream = match upstreams.get(&from) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if u.connect(server).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                upstreams.insert(from, u.clone());
                let task = tokio::spawn(server_side(
                    u.clone(),
                    listener.clone(),
                    from,
                    inner.clone(),
                ));
                inner.tasks.lock().unwrap().push(task);
                u
            }
        };
        inner
            .forward(&inner.to_server, &upstream, None, &buf[..n])
            .await;
    }
}

async fn server_side(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    inner: Arc<Inner>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match upstream.recv(&mut buf).await {
            Ok(n) => n,
            Err(_) => {
                // A refused earlier send (server not there yet): try again
                // shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        inner
            .forward(&inner.to_client, &listener, Some(client), &buf[..n])
            .await;
    }
}
