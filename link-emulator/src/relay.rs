//! The user-space relay: per direction, a reader thread that takes packets
//! from one TUN device and decides their fate, and a writer thread that hands
//! them to the other TUN device at their delivery time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::shaper::{Shaper, Verdict};
use crate::{DirectionStats, Error, Impairments};

/// Counters of one direction, updated by its threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    lost: AtomicU64,
    queue_dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn record(&self, len: usize, verdict: &Verdict) {
        self.packets_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(len as u64, Relaxed);
        self.lost.fetch_add(u64::from(verdict.lost), Relaxed);
        self.duplicated
            .fetch_add(u64::from(verdict.duplicated), Relaxed);
        self.queue_dropped
            .fetch_add(u64::from(verdict.queue_dropped), Relaxed);
        self.reordered
            .fetch_add(u64::from(verdict.reordered), Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            lost: self.lost.load(Relaxed),
            queue_dropped: self.queue_dropped.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
        }
    }
}

/// Packets waiting for their delivery time, earliest first (ties in order of
/// arrival).
#[derive(Default)]
struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    next_seq: u64,
    stopped: bool,
}

type Shared = Arc<(Mutex<Schedule>, Condvar)>;

fn lock(schedule: &Mutex<Schedule>) -> MutexGuard<'_, Schedule> {
    schedule
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One direction's shared state (a lane of the link).
pub(crate) struct Lane {
    pub(crate) shaper: Mutex<Shaper>,
    pub(crate) counters: Counters,
}

/// The running relay; [`Relay::stop`] (or drop) ends its threads.
pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    schedules: Vec<Shared>,
    threads: Vec<JoinHandle<()>>,
    early_wake: Duration,
    pub(crate) directions: [Arc<Lane>; 2],
}

impl Relay {
    /// Starts relaying between the TUN descriptors `a` and `b`.
    pub(crate) fn start(
        a: OwnedFd,
        b: OwnedFd,
        config: [Impairments; 2],
        seed: u64,
        early_wake: Duration,
    ) -> Result<Relay, Error> {
        // SAFETY: plain flags; the result is checked.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(Error::io("eventfd", io::Error::last_os_error()));
        }
        // SAFETY: `wake` was just created and is owned by nobody else.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let [a_to_b, b_to_a] = config;
        let direction = |config, stream| {
            Arc::new(Lane {
                shaper: Mutex::new(Shaper::new(config, seed ^ stream)),
                counters: Counters::default(),
            })
        };
        let directions = [
            direction(a_to_b, 0x0a2b_0000_0000_0001),
            direction(b_to_a, 0x0b2a_0000_0000_0002),
        ];
        let mut relay = Relay {
            stop: Arc::new(AtomicBool::new(false)),
            wake,
            schedules: Vec::new(),
            threads: Vec::new(),
            early_wake,
            directions,
        };
        let (a, b) = (Arc::new(a), Arc::new(b));
        relay.spawn_direction("a-to-b", 0, a.clone(), b.clone())?;
        relay.spawn_direction("b-to-a", 1, b, a)?;
        Ok(relay)
    }

    fn spawn_direction(
        &mut self,
        label: &str,
        index: usize,
        from: Arc<OwnedFd>,
        to: Arc<OwnedFd>,
    ) -> Result<(), Error> {
        let shared: Shared = Arc::default();
        self.schedules.push(shared.clone());
        let direction = self.directions[index].clone();
        let (stop, wake) = (self.stop.clone(), self.wake.clone());
        let reader = {
            let (shared, direction) = (shared.clone(), direction.clone());
            move || read_loop(&from, &wake, &stop, &direction, &shared)
        };
        let early_wake = self.early_wake;
        let writer = move || write_loop(&to, &direction.counters, &shared, early_wake);
        for (role, body) in [
            ("read", Box::new(reader) as Box<dyn FnOnce() + Send>),
            ("write", Box::new(writer)),
        ] {
            let handle = std::thread::Builder::new()
                .name(format!("link-{label}-{role}"))
                .spawn(move || {
                    precise_timers();
                    body()
                })
                .map_err(|e| Error::io("spawn a relay thread", e))?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Stops the threads and waits for them; the TUN descriptors close when
    /// the last thread holding them ends.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        for shared in &self.schedules {
            lock(&shared.0).stopped = true;
            shared.1.notify_all();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the kernel to wake this thread on time rather than up to 50 µs
/// late (the default timer slack), which would add to every delay.
fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument; a failure only
    // leaves the default slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// Waits until `fd` is readable or the relay is woken to stop.
fn wait_readable(fd: &OwnedFd, wake: &OwnedFd) -> io::Result<()> {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the whole call.
    if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read_loop(from: &OwnedFd, wake: &OwnedFd, stop: &AtomicBool, direction: &Lane, shared: &Shared) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Relaxed) {
        if let Err(e) = wait_readable(from, wake) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %e, "link emulator: poll failed; relay direction stops");
                return;
            }
        }
        loop {
            // SAFETY: reads at most buf.len() bytes into a live buffer.
            let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break; // EAGAIN: drained (errors show up again at poll).
            }
            let len = n as usize;
            let now = Instant::now();
            let verdict = lock_shaper(direction).admit(now, len);
            direction.counters.record(len, &verdict);
            if verdict.releases.is_empty() {
                continue;
            }
            let mut schedule = lock(&shared.0);
            for release in verdict.releases {
                let seq = schedule.next_seq;
                schedule.next_seq += 1;
                schedule
                    .heap
                    .push(Reverse((release, seq, buf[..len].to_vec())));
            }
            drop(schedule);
            shared.1.notify_one();
        }
    }
}

pub(crate) fn lock_shaper(direction: &Lane) -> MutexGuard<'_, Shaper> {
    direction
        .shaper
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands packets to `to` at their delivery time.
///
/// Timed sleeps on a busy or virtual machine wake a few hundred microseconds
/// late, which would lengthen every delay. So the writer measures how late
/// its sleeps end (a running average, at most `early_wake`), sleeps that much
/// less, and polls the clock (yielding the CPU) for the rest.
fn write_loop(to: &OwnedFd, counters: &Counters, shared: &Shared, early_wake: Duration) {
    let (mutex, condvar) = &**shared;
    let mut due = Vec::new();
    let mut lateness = early_wake / 2;
    let mut schedule = lock(mutex);
    while !schedule.stopped {
        let now = Instant::now();
        while let Some(Reverse((release, _, _))) = schedule.heap.peek() {
            if *release > now {
                break;
            }
            if let Some(Reverse((_, _, packet))) = schedule.heap.pop() {
                due.push(packet);
            }
        }
        if due.is_empty() {
            let next = schedule
                .heap
                .peek()
                .map(|Reverse((release, _, _))| *release);
            schedule = match next {
                None => condvar.wait(schedule).unwrap_or_else(|p| p.into_inner()),
                Some(release) if release - now > lateness => {
                    let wake_at = release - lateness;
                    let (guard, waited) = condvar
                        .wait_timeout(schedule, wake_at - now)
                        .unwrap_or_else(|p| p.into_inner());
                    if waited.timed_out() {
                        let late = Instant::now().saturating_duration_since(wake_at);
                        lateness = (lateness * 7 + late.min(early_wake)) / 8;
                    }
                    guard
                }
                Some(_) => {
                    drop(schedule);
                    std::thread::yield_now();
                    lock(mutex)
                }
            };
            continue;
        }
        drop(schedule);
        for packet in due.drain(..) {
            deliver(to, counters, &packet);
        }
        schedule = lock(mutex);
    }
}

fn deliver(to: &OwnedFd, counters: &Counters, packet: &[u8]) {
    // SAFETY: writes packet.len() bytes from a live slice.
    let n = unsafe { libc::write(to.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    if n == packet.len() as isize {
        counters.packets_out.fetch_add(1, Relaxed);
        counters.bytes_out.fetch_add(packet.len() as u64, Relaxed);
    } else {
        counters.write_errors.fetch_add(1, Relaxed);
    }
}
