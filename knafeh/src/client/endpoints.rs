//! The servers a client spreads calls over: their connections, dialling
//! in the background, back-off, and picking the less loaded of two.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::transport::conn::{Command, ConnShared, SessionSlot};
use crate::{Code, Status};

/// One server address: its connection, dialling state and load.
pub(super) struct Endpoint {
    /// The address dialled.
    pub(super) addr: String,
    /// `host:port` sent as `:authority`; its host is the TLS server name
    /// (unless the builder names another). The address itself, unless a
    /// resolver found it.
    pub(super) authority: Arc<str>,
    /// Set once re-resolution dropped this endpoint: it takes no new calls
    /// and keeps no connection of its own; calls in progress on it finish
    /// (their connection closes with the last one).
    pub(super) retired: AtomicBool,
    pub(super) conn: Mutex<Option<ConnHandle>>,
    /// Serialises dialling; holds the last dial's failure.
    pub(super) dial: tokio::sync::Mutex<Option<Status>>,
    /// Counts finished dials.
    pub(super) dial_generation: AtomicU64,
    /// Calls in progress on this endpoint, counted from when it is picked
    /// (so a call waiting for a dial counts too).
    pub(super) in_flight: AtomicUsize,
    /// Set while a dial to this endpoint is in progress.
    pub(super) dialing: AtomicBool,
    /// Set while the endpoint is out after failed dials: until when, and
    /// how many failures in a row.
    pub(super) down: Mutex<Option<(Instant, u32)>>,
    /// The latest TLS session (ticket) this endpoint's server sent, for the
    /// next dial to resume. In memory only, per client; the server name is
    /// the client's, so address and name together pick the ticket.
    pub(super) session: SessionSlot,
}

impl Endpoint {
    pub(super) fn new(addr: String, authority: Arc<str>) -> Self {
        Endpoint {
            addr,
            authority,
            retired: AtomicBool::new(false),
            conn: Mutex::new(None),
            dial: tokio::sync::Mutex::new(None),
            dial_generation: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            dialing: AtomicBool::new(false),
            down: Mutex::new(None),
            session: SessionSlot::default(),
        }
    }

    pub(super) fn down_until(&self) -> Option<Instant> {
        lock(&self.down).map(|(until, _)| until)
    }

    pub(super) fn mark_down(&self) {
        let mut down = lock(&self.down);
        let failures = down.map_or(0, |(_, n)| n).saturating_add(1);
        let backoff = endpoint_backoff(failures);
        *down = Some((Instant::now() + backoff, failures));
        tracing::debug!(addr = %self.addr, ?backoff, failures, "endpoint taken out");
    }

    pub(super) fn mark_up(&self) {
        *lock(&self.down) = None;
    }

    /// Takes the endpoint out for good (re-resolution dropped it): its
    /// connection is no longer offered to new calls, and closes when the
    /// calls in progress on it, which hold handles of their own, end.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let conn = lock(&self.conn).take();
        tracing::debug!(
            addr = %self.addr,
            in_flight = self.in_flight.load(Ordering::Relaxed),
            connected = conn.is_some(),
            "endpoint retired; its calls in progress finish"
        );
    }

    /// How ready this endpoint is for a call now, best first: 0 connected,
    /// 1 can be dialled, 2 being dialled (a call would wait for the dial),
    /// 3 taken out after failed dials.
    pub(super) fn readiness(&self, now: Instant) -> u8 {
        if self.down_until().is_some_and(|t| t > now) {
            3
        } else if lock(&self.conn).as_ref().is_some_and(ConnHandle::alive) {
            0
        } else if self.dialing.load(Ordering::Acquire) {
            2
        } else {
            1
        }
    }
}

/// How long an endpoint stays out after `failures` failed dials in a row:
/// 1 s, doubling, at most 30 s.
pub(super) fn endpoint_backoff(failures: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << (failures.clamp(1, 6) - 1))
        .min(Duration::from_secs(30))
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a call against its endpoint while it runs.
pub(super) struct LoadGuard {
    pub(super) endpoint: Arc<Endpoint>,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a background dial of one endpoint as in progress until dropped.
pub(super) struct DialFlag {
    pub(super) client: Client,
    pub(super) endpoint: Arc<Endpoint>,
}

impl Drop for DialFlag {
    fn drop(&mut self) {
        self.endpoint.dialing.store(false, Ordering::Release);
    }
}

/// Clears a flag when dropped (also when the future holding it is).
pub(super) struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(super) fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32) | 1
}

#[derive(Clone)]
pub(super) struct ConnHandle {
    pub(super) cmd: mpsc::UnboundedSender<Command>,
    pub(super) shared: Arc<ConnShared>,
    pub(super) authority: Arc<str>,
}

impl ConnHandle {
    pub(super) fn alive(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire) && !self.cmd.is_closed()
    }
}

impl Client {
    pub(super) async fn connection(&self, ep: &Endpoint) -> Result<ConnHandle, Status> {
        if let Some(c) = current(ep) {
            return Ok(c);
        }
        // One dial at a time. Callers that queued behind a dial that failed
        // share its error instead of each dialling (and timing out) again.
        let generation = ep.dial_generation.load(Ordering::Acquire);
        let mut last_failure = ep.dial.lock().await;
        if let Some(c) = current(ep) {
            return Ok(c);
        }
        if ep.dial_generation.load(Ordering::Acquire) != generation {
            if let Some(status) = last_failure.as_ref() {
                return Err(status.clone());
            }
        }
        // Cleared when this function returns (or is dropped), after the
        // result is recorded, so no pick sees a finished dial's endpoint as
        // dialable before its connection or backoff is in place.
        ep.dialing.store(true, Ordering::Release);
        let _clear = ClearOnDrop(&ep.dialing);
        // Boxed: the dial future is large and every call's future would
        // otherwise carry (and copy) room for it.
        let result = Box::pin(dial(&self.inner.cfg, &ep.addr, &ep.authority, &ep.session)).await;
        ep.dial_generation.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(c) => {
                *last_failure = None;
                // A retired endpoint keeps no connection: this one serves
                // the call that dialled it and closes after it.
                if !ep.retired.load(Ordering::Acquire) {
                    *lock(&ep.conn) = Some(c.clone());
                }
                ep.mark_up();
                self.inner.connected.notify_waiters();
                self.re_resolve_when_lost(&c);
                Ok(c)
            }
            Err(status) => {
                if status.code() == Code::Unavailable {
                    ep.mark_down();
                    self.re_resolve_soon();
                }
                *last_failure = Some(status.clone());
                Err(status)
            }
        }
    }

    /// Picks an endpoint not in `tried`: the less loaded of two random
    /// ones among the best ready. Calls go to connected endpoints when
    /// there are any; endpoints that are up but not connected are then
    /// dialled in the background, so no call waits for a dial to an
    /// endpoint that may be gone while others can answer. Without a
    /// connected endpoint, calls wait for a dial. When all are taken out,
    /// the one back soonest.
    pub(super) fn pick(&self, eps: &[Arc<Endpoint>], tried: &[Arc<Endpoint>]) -> Option<usize> {
        let untried = |i: &usize| !tried.iter().any(|t| Arc::ptr_eq(t, &eps[*i]));
        if eps.len() == 1 {
            return untried(&0).then_some(0);
        }
        let now = Instant::now();
        // On the stack for up to 16 endpoints.
        let mut small = [0u8; 16];
        let mut large = Vec::new();
        let readiness: &mut [u8] = if eps.len() <= small.len() {
            &mut small[..eps.len()]
        } else {
            large.resize(eps.len(), 0);
            &mut large
        };
        for (r, ep) in readiness.iter_mut().zip(eps.iter()) {
            *r = ep.readiness(now);
        }
        let readiness = &*readiness;
        if readiness.contains(&0) {
            for (i, _) in readiness.iter().enumerate().filter(|(_, r)| **r == 1) {
                self.dial_in_background(&eps[i]);
            }
        }
        for best in 0..3 {
            let ready = |i: &usize| untried(i) && readiness[*i] <= best;
            let n = (0..eps.len()).filter(ready).count();
            if n == 0 {
                continue;
            }
            let nth = |k: u64| (0..eps.len()).filter(ready).nth(k as usize);
            let r = self.next_random();
            let a = nth(r % n as u64)?;
            if n == 1 {
                return Some(a);
            }
            // `b` is drawn from the other n - 1.
            let mut k = (r >> 32) % (n as u64 - 1);
            if nth(k) == Some(a) {
                k = n as u64 - 1;
            }
            let b = nth(k)?;
            let load = |i: usize| eps[i].in_flight.load(Ordering::Relaxed);
            return Some(if load(b) < load(a) { b } else { a });
        }
        (0..eps.len())
            .filter(untried)
            .min_by_key(|&i| eps[i].down_until())
    }

    /// Dials `ep` on a task of its own, unless a dial to it is already in
    /// progress (or there is no runtime to run it on). A dial that fails
    /// for any reason takes the endpoint out (backoff), so a broken
    /// endpoint is not dialled again on every pick.
    pub(super) fn dial_in_background(&self, ep: &Arc<Endpoint>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if ep
            .dialing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // Owned by the task from here, so the flag is cleared even if the
        // task is dropped before it first runs.
        let flag = DialFlag {
            client: self.clone(),
            endpoint: ep.clone(),
        };
        rt.spawn(async move {
            let ep = &flag.endpoint;
            // The pick that asked for this dial may be stale by now.
            if current(ep).is_some() || ep.down_until().is_some_and(|t| t > Instant::now()) {
                return;
            }
            match flag.client.connection(ep).await {
                Ok(_) => {}
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::debug!(addr = %ep.addr, error = %e, "background dial failed");
                }
                Err(e) => {
                    ep.mark_down();
                    tracing::warn!(addr = %ep.addr, error = %e, "endpoint cannot be dialled");
                }
            }
        });
    }

    pub(super) fn next_random(&self) -> u64 {
        // xorshift64*; races between threads only make it more random.
        let mut x = self.inner.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A live connection for a new call: tries the endpoints in the order
    /// [`Client::pick`] gives until one connects (nothing was sent on the
    /// ones that failed, so moving on is safe).
    pub(super) async fn connect_any(&self) -> Result<(ConnHandle, LoadGuard), Status> {
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut first_err = None;
        loop {
            // The endpoints now (re-resolution may change them between
            // two tries).
            let eps = self.endpoints_or_wait().await?;
            // Registered before picking, so a dial that succeeds from here
            // on is not missed (only needed with several endpoints).
            let several = eps.len() > 1;
            let mut connected = several.then(|| Box::pin(self.inner.connected.notified()));
            if let Some(n) = connected.as_mut() {
                n.as_mut().enable();
            }
            let Some(i) = self.pick(&eps, &tried) else {
                break;
            };
            let ep = &eps[i];
            // The call counts against the endpoint while it waits for a
            // dial too, so that other calls see it as busy.
            ep.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = LoadGuard {
                endpoint: ep.clone(),
            };
            if let Some(conn) = current(ep) {
                return Ok((conn, guard));
            }
            let result = match connected {
                // Waiting for a dial: if another endpoint gets connected
                // first, pick again (this endpoint may be gone).
                Some(connected) => tokio::select! {
                    biased;
                    r = self.connection(ep) => r,
                    () = connected => continue,
                },
                None => self.connection(ep).await,
            };
            match result {
                Ok(conn) => return Ok((conn, guard)),
                Err(e) if e.code() == Code::Unavailable => {
                    first_err.get_or_insert(e);
                    tried.push(ep.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| Status::unavailable("no endpoint to call")))
    }
}

pub(super) fn current(ep: &Endpoint) -> Option<ConnHandle> {
    lock(&ep.conn).as_ref().filter(|c| c.alive()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn endpoint_backoff_doubles_up_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|f| endpoint_backoff(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
