//! Liveness of a connection with calls in progress: after `interval`
//! without hearing from the peer, send a PING; after `timeout` without
//! hearing from it, close the connection (its calls end with
//! `UNAVAILABLE`). Silence from an idle connection is normal, so the clock
//! starts when calls start. Time is a parameter: the transport says when
//! it heard from the peer and asks what to do now.

use std::time::{Duration, Instant};

/// The keepalive settings: PING after `interval` of silence, give up after
/// `timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

impl Keepalive {
    /// `interval` is capped at `timeout`.
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Keepalive {
            interval: interval.min(timeout),
            timeout,
        }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
        }
    }
}

/// What the transport should do, from [`Liveness::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LivenessAction {
    /// No calls in progress: no timer needed.
    Idle,
    /// Nothing to do; poll again at this instant.
    WakeAt(Instant),
    /// Send a PING (anything ack-eliciting), then poll again at this
    /// instant.
    Ping(Instant),
    /// The peer has been silent for `silent` with calls in progress:
    /// close the connection.
    Close { silent: Duration },
}

/// The liveness state machine of one connection.
#[derive(Debug)]
pub(crate) struct Liveness {
    keepalive: Keepalive,
    /// When the peer was last heard from, while calls are in progress.
    watching_since: Option<Instant>,
    /// A PING went out since the peer was last heard from.
    pinged: bool,
}

impl Liveness {
    pub(crate) fn new(keepalive: Keepalive) -> Self {
        Liveness {
            keepalive,
            watching_since: None,
            pinged: false,
        }
    }

    /// The peer was heard from (a packet arrived) at `now`.
    pub(crate) fn on_packet(&mut self, now: Instant) {
        if self.watching_since.is_some() {
            self.watching_since = Some(now);
        }
        self.pinged = false;
    }

    /// What to do at `now`; `busy` says whether calls are in progress.
    pub(crate) fn poll(&mut self, now: Instant, busy: bool) -> LivenessAction {
        if !busy {
            self.watching_since = None;
            return LivenessAction::Idle;
        }
        let heard = match self.watching_since {
            Some(t) => t,
            None => {
                // Calls start after a quiet spell: the clock starts now.
                self.watching_since = Some(now);
                self.pinged = false;
                now
            }
        };
        let silent = now.saturating_duration_since(heard);
        if silent >= self.keepalive.timeout {
            return LivenessAction::Close { silent };
        }
        if silent >= self.keepalive.interval && !self.pinged {
            self.pinged = true;
            return LivenessAction::Ping(heard + self.keepalive.timeout);
        }
        if self.pinged {
            LivenessAction::WakeAt(heard + self.keepalive.timeout)
        } else {
            LivenessAction::WakeAt(heard + self.keepalive.interval)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn machine() -> (Liveness, Instant) {
        (Liveness::new(Keepalive::new(5 * S, 20 * S)), Instant::now())
    }

    #[test]
    fn idle_connections_need_no_timer() {
        let (mut l, t0) = machine();
        assert_eq!(l.poll(t0, false), LivenessAction::Idle);
        // Long silence while idle does not count once calls start.
        assert_eq!(
            l.poll(t0 + 100 * S, true),
            LivenessAction::WakeAt(t0 + 105 * S)
        );
    }

    #[test]
    fn ping_at_the_interval_close_at_the_timeout_exactly() {
        let (mut l, t0) = machine();
        assert_eq!(l.poll(t0, true), LivenessAction::WakeAt(t0 + 5 * S));
        assert_eq!(
            l.poll(t0 + 5 * S - Duration::from_nanos(1), true),
            LivenessAction::WakeAt(t0 + 5 * S)
        );
        assert_eq!(l.poll(t0 + 5 * S, true), LivenessAction::Ping(t0 + 20 * S));
        // One PING per silence.
        assert_eq!(
            l.poll(t0 + 6 * S, true),
            LivenessAction::WakeAt(t0 + 20 * S)
        );
        assert_eq!(
            l.poll(t0 + 20 * S - Duration::from_nanos(1), true),
            LivenessAction::WakeAt(t0 + 20 * S)
        );
        assert_eq!(
            l.poll(t0 + 20 * S, true),
            LivenessAction::Close { silent: 20 * S }
        );
    }

    #[test]
    fn hearing_from_the_peer_restarts_the_clock_and_rearms_the_ping() {
        let (mut l, t0) = machine();
        l.poll(t0, true);
        assert_eq!(l.poll(t0 + 5 * S, true), LivenessAction::Ping(t0 + 20 * S));
        l.on_packet(t0 + 7 * S);
        assert_eq!(
            l.poll(t0 + 7 * S, true),
            LivenessAction::WakeAt(t0 + 12 * S)
        );
        assert_eq!(l.poll(t0 + 12 * S, true), LivenessAction::Ping(t0 + 27 * S));
    }

    #[test]
    fn going_idle_forgets_the_silence() {
        let (mut l, t0) = machine();
        l.poll(t0, true);
        assert_eq!(l.poll(t0 + 19 * S, false), LivenessAction::Idle);
        assert_eq!(
            l.poll(t0 + 30 * S, true),
            LivenessAction::WakeAt(t0 + 35 * S)
        );
    }

    #[test]
    fn the_interval_is_capped_at_the_timeout() {
        let k = Keepalive::new(30 * S, 10 * S);
        assert_eq!((k.interval, k.timeout), (10 * S, 10 * S));
        let mut l = Liveness::new(k);
        let t0 = Instant::now();
        l.poll(t0, true);
        // Both limits pass at once: closing wins.
        assert_eq!(
            l.poll(t0 + 10 * S, true),
            LivenessAction::Close { silent: 10 * S }
        );
    }
}
