//! An emulated network link between two Linux network namespaces.
//!
//! [`LinkBuilder::start`] creates two network namespaces, `A` and `B`, each with one
//! TUN device (`kn0`, MTU 1500) holding the address `10.77.N.1/30` (A) or
//! `10.77.N.2/30` (B), and the loopback device up (IPv6 is switched off in
//! both, so only the IPv4 traffic of the code under test crosses the link,
//! and a seed reproduces the same losses). A user-space relay reads
//! every IP packet that one namespace sends to the other from its TUN device
//! and writes it to the other's after applying that direction's
//! [`Impairments`]: seeded random loss, duplication, a rate limit with a
//! drop-tail queue, delay with jitter, and reordering. Both TCP and UDP cross
//! it, as on a real path; nothing outside the two namespaces is touched.
//!
//! Accuracy on a loaded 2-core virtual machine (the crate's tests): median
//! UDP round trip 1.08–1.09 ms for 1 ms, 20.3 ms for 20 ms, 80.3–80.4 ms for
//! 80 ms; an unimpaired link adds about 70 µs; a 20 Mbit/s limit carries
//! 2.48–2.50 MB/s of IP packets for TCP and UDP.
//!
//! Code runs inside a namespace with [`Link::spawn_in`] / [`Link::run_in`]
//! (a new OS thread that has entered it: sockets created there, including by
//! a tokio runtime built on that thread, live in the namespace) or
//! [`Link::command`] (`ip netns exec`). Dropping the [`Link`] stops the relay
//! and deletes both namespaces, also when a test panics; namespaces left by a
//! process that died are removed by the next [`LinkBuilder::start`].
//!
//! Linux only; needs root, `/dev/net/tun` and the `ip` program (iproute2).
//! When one is missing, [`LinkBuilder::start`] returns an [`Error`] naming it.
//!
//! ```no_run
//! use std::time::Duration;
//! use link_emulator::{Impairments, Link, Side};
//!
//! let link = Link::builder()
//!     .each_way(Impairments::none().with_delay(Duration::from_millis(10)).with_loss(0.02))
//!     .seed(7)
//!     .start()?;
//! let server = link.addr(Side::B);
//! let echo = link.spawn_in(Side::B, move || {
//!     let socket = std::net::UdpSocket::bind((server, 7000)).unwrap();
//!     let mut buf = [0; 1500];
//!     let (n, from) = socket.recv_from(&mut buf).unwrap();
//!     socket.send_to(&buf[..n], from).unwrap();
//! })?;
//! link.run_in(Side::A, move || {
//!     let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
//!     socket.send_to(b"ping", (server, 7000)).unwrap();
//! })?;
//! # drop(echo);
//! # Ok::<(), link_emulator::Error>(())
//! ```

#![cfg(target_os = "linux")]

mod config;
mod error;
mod netns;
mod relay;
mod rng;
mod shaper;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{Impairments, Jitter};
pub use error::Error;

use relay::Relay;

/// One end of a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first namespace (address `10.77.N.1`).
    A,
    /// The second namespace (address `10.77.N.2`).
    B,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// One direction of a [`Link`]; each has its own [`Impairments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Packets sent by namespace A to namespace B.
    AToB,
    /// Packets sent by namespace B to namespace A.
    BToA,
}

impl Direction {
    /// The direction of the packets that `side` sends.
    pub fn from_side(side: Side) -> Direction {
        match side {
            Side::A => Direction::AToB,
            Side::B => Direction::BToA,
        }
    }

    fn index(self) -> usize {
        match self {
            Direction::AToB => 0,
            Direction::BToA => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Direction::AToB => "a_to_b",
            Direction::BToA => "b_to_a",
        }
    }
}

/// Counters of one direction since the link started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets read from the sending namespace's TUN device.
    pub packets_in: u64,
    /// Their bytes (whole IP packets).
    pub bytes_in: u64,
    /// Packets dropped by the random loss.
    pub lost: u64,
    /// Copies dropped because the rate limit's queue was full.
    pub queue_dropped: u64,
    /// Packets given a second copy.
    pub duplicated: u64,
    /// Copies held back for reordering.
    pub reordered: u64,
    /// Packets written to the receiving namespace's TUN device.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Writes to the receiving TUN device that failed.
    pub write_errors: u64,
}

/// Settings of a [`Link`] to start; from [`Link::builder`].
#[derive(Debug, Clone)]
pub struct LinkBuilder {
    config: [Impairments; 2],
    seed: u64,
    early_wake: Duration,
}

impl Default for LinkBuilder {
    fn default() -> Self {
        LinkBuilder {
            config: Default::default(),
            seed: 0,
            early_wake: Duration::from_micros(400),
        }
    }
}

impl LinkBuilder {
    /// Uses `impairments` in both directions.
    pub fn each_way(mut self, impairments: Impairments) -> Self {
        self.config = [impairments.clone(), impairments];
        self
    }

    /// Uses `impairments` in one direction.
    pub fn direction(mut self, direction: Direction, impairments: Impairments) -> Self {
        self.config[direction.index()] = impairments;
        self
    }

    /// Sets the one-way delay of both directions to half of `rtt`.
    pub fn rtt(mut self, rtt: Duration) -> Self {
        for config in &mut self.config {
            config.delay = rtt / 2;
        }
        self
    }

    /// Sets the loss probability of both directions.
    pub fn loss(mut self, probability: f64) -> Self {
        for config in &mut self.config {
            config.loss = probability;
        }
        self
    }

    /// Seeds the random choices (default 0). Each direction draws from its
    /// own generator derived from the seed, so the same seed and the same
    /// packets give the same losses, copies, jitter and reordering.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The most the relay wakes before a packet's delivery time to make up
    /// for late wake-ups (default 400 µs). Timed sleeps on a busy or virtual
    /// machine end a few hundred microseconds late, which would lengthen every
    /// delay; the relay measures by how much, sleeps that much less (up to
    /// this bound) and polls the clock for the rest, which costs some CPU.
    /// `Duration::ZERO` saves that CPU and accepts the late deliveries.
    pub fn early_wake(mut self, early_wake: Duration) -> Self {
        self.early_wake = early_wake;
        self
    }

    /// Creates the namespaces, TUN devices, addresses and routes, and starts
    /// the relay.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a setting out of range; [`Error::NotRoot`],
    /// [`Error::IpMissing`] or [`Error::Tun`] when the machine cannot host
    /// the link; [`Error::Ip`] or [`Error::Io`] when a step fails. Whatever
    /// was created before the failure is removed.
    pub fn start(self) -> Result<Link, Error> {
        for direction in [Direction::AToB, Direction::BToA] {
            self.config[direction.index()].validate(direction.label())?;
        }
        netns::check_prerequisites("ip")?;
        let _guard = NAMESPACE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        netns::remove_leftovers();
        let n = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = (n % 250) as u8;
        let mut link = Link {
            names: [
                format!("{}{pid}-{n}-a", netns::PREFIX),
                format!("{}{pid}-{n}-b", netns::PREFIX),
            ],
            addrs: [
                Ipv4Addr::new(10, 77, subnet, 1),
                Ipv4Addr::new(10, 77, subnet, 2),
            ],
            created: Vec::new(),
            relay: None,
        };
        let tun_a = link.create_side(Side::A)?;
        let tun_b = link.create_side(Side::B)?;
        link.relay = Some(Relay::start(
            tun_a,
            tun_b,
            self.config,
            self.seed,
            self.early_wake,
        )?);
        Ok(link)
    }
}

/// Serializes namespace creation and deletion within the process (`ip netns`
/// prepares its directory on first use, which is not safe to race).
static NAMESPACE_LOCK: Mutex<()> = Mutex::new(());
/// Numbers the links of this process.
static NEXT_LINK: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces joined by an emulated link; see the crate docs.
///
/// Dropping it stops the relay and deletes both namespaces.
pub struct Link {
    names: [String; 2],
    addrs: [Ipv4Addr; 2],
    /// Namespaces created so far, deleted on drop.
    created: Vec<String>,
    relay: Option<Relay>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("names", &self.names)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The name of the TUN device in each namespace.
    pub const TUN_DEVICE: &'static str = netns::TUN_NAME;

    /// A builder for a perfect link (no impairment, seed 0).
    pub fn builder() -> LinkBuilder {
        LinkBuilder::default()
    }

    /// The name of `side`'s namespace (as `ip netns list` shows it), of the
    /// form `knafeh-link-<pid>-<n>-a` or `-b`.
    pub fn namespace(&self, side: Side) -> &str {
        &self.names[side.index()]
    }

    /// `side`'s IPv4 address on the link (the peer reaches it through the
    /// link).
    pub fn addr(&self, side: Side) -> Ipv4Addr {
        self.addrs[side.index()]
    }

    /// Creates `side`'s namespace and TUN device and configures them.
    fn create_side(&mut self, side: Side) -> Result<std::os::fd::OwnedFd, Error> {
        let name = self.names[side.index()].clone();
        netns::ip(&["netns", "add", &name])?;
        self.created.push(name.clone());
        let tun = netns::create_tun(&name)?;
        let addr = format!("{}/30", self.addr(side));
        let dev = netns::TUN_NAME;
        netns::ip(&["-n", &name, "addr", "add", &addr, "dev", dev])?;
        netns::ip(&["-n", &name, "link", "set", dev, "mtu", "1500", "up"])?;
        netns::ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(tun)
    }

    /// Runs `f` on a new OS thread that has entered `side`'s namespace.
    ///
    /// Sockets created by `f`, and by threads it starts (a tokio runtime
    /// built inside `f`, say), belong to the namespace. The thread may
    /// outlive the `Link`, but its sockets then have no link to cross.
    ///
    /// A server of a test or benchmark typically builds its runtime there:
    /// `link.spawn_in(Side::B, || tokio::runtime::Runtime::new()?.block_on(serve()))`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the namespace cannot be opened or entered, or the
    /// thread cannot be created.
    pub fn spawn_in<F, T>(&self, side: Side, f: F) -> Result<JoinHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = self.namespace(side).to_owned();
        let handle = netns::open_namespace(&name)?;
        let (entered_tx, entered_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                let entered = netns::enter(&handle, &name);
                let failed = entered.is_err();
                let _ = entered_tx.send(entered);
                if failed {
                    // Ends the thread without a result and without the panic
                    // hook; the caller got the error.
                    std::panic::resume_unwind(Box::new("setns failed"));
                }
                drop(handle);
                f()
            })
            .map_err(|e| Error::io("spawn a thread in the namespace", e))?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::io(
                "enter the namespace",
                std::io::Error::other("the thread ended before entering it"),
            )),
        }
    }

    /// Runs `f` inside `side`'s namespace (see [`spawn_in`](Self::spawn_in))
    /// and waits for its result. A panic in `f` is resumed on the caller.
    ///
    /// # Errors
    ///
    /// As [`spawn_in`](Self::spawn_in).
    pub fn run_in<F, T>(&self, side: Side, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let thread = self.spawn_in(side, f)?;
        thread
            .join()
            .map_err(|panic| std::panic::resume_unwind(panic))
    }

    /// A command that runs `program` inside `side`'s namespace
    /// (`ip netns exec <namespace> <program>`); add arguments and run it as
    /// any [`Command`].
    pub fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.namespace(side)])
            .arg(program);
        command
    }

    /// The counters of `direction` so far.
    pub fn stats(&self, direction: Direction) -> DirectionStats {
        self.relay
            .as_ref()
            .map(|relay| relay.directions[direction.index()].counters.snapshot())
            .unwrap_or_default()
    }

    /// The impairments `direction` applies now.
    pub fn impairments(&self, direction: Direction) -> Impairments {
        self.relay
            .as_ref()
            .map(|relay| {
                relay::lock_shaper(&relay.directions[direction.index()])
                    .config()
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Changes what `direction` does to the packets that enter it from now
    /// on (packets already scheduled keep their delivery time; the random
    /// generator and the rate limit's queue carry on).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a setting out of range.
    pub fn set_impairments(
        &self,
        direction: Direction,
        impairments: Impairments,
    ) -> Result<(), Error> {
        impairments.validate(direction.label())?;
        if let Some(relay) = &self.relay {
            relay::lock_shaper(&relay.directions[direction.index()]).set_config(impairments);
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Stop the relay first: it closes the TUN devices.
        drop(self.relay.take());
        let _guard = NAMESPACE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        for name in self.created.drain(..) {
            if let Err(e) = netns::ip(&["netns", "delete", &name]) {
                tracing::warn!(namespace = %name, error = %e, "link emulator: namespace not deleted");
            }
        }
    }
}
