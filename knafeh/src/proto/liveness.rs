//! Liveness of a connection with calls in progress: after `interval`
//! without hearing from the peer, send a PING; after `timeout` without
//! hearing from it, close the connection (its calls end with
//! `UNAVAILABLE`) — but never without a PING that had `timeout - interval`
//! (at least a second) to be answered, so a check that runs late does not
//! close a live connection. Silence from an idle connection is normal, so the clock
//! starts when calls start. Time is a parameter: the transport says when
//! it heard from the peer and asks what to do now.
//!
//! A report that nothing listens at the peer's address (an ICMP "port
//! unreachable", PROTOCOL.md §8.4) is only a suspicion on an established
//! connection, since anyone who can guess the addresses can forge one: the
//! machine asks for a PING at once and closes only if the peer stays
//! silent for the confirmation window that follows.

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
    /// The peer's host said nothing listens at its address, and the peer
    /// stayed silent for the confirmation window after: close the
    /// connection as refused.
    Refused,
}

/// The liveness state machine of one connection.
#[derive(Debug)]
pub(crate) struct Liveness {
    keepalive: Keepalive,
    /// When the peer was last heard from, while calls are in progress.
    watching_since: Option<Instant>,
    /// A PING went out since the peer was last heard from: the connection
    /// closes at this instant unless the peer is heard from first.
    close_at: Option<Instant>,
    /// An unconfirmed refusal: closed as refused at this instant unless
    /// the peer is heard from first.
    refused_until: Option<Instant>,
    /// The PING that tests the refusal went out.
    refusal_pinged: bool,
}

impl Liveness {
    pub(crate) fn new(keepalive: Keepalive) -> Self {
        Liveness {
            keepalive,
            watching_since: None,
            close_at: None,
            refused_until: None,
            refusal_pinged: false,
        }
    }

    /// The peer was heard from (a packet arrived) at `now`: it is alive,
    /// whatever a refusal said.
    pub(crate) fn on_packet(&mut self, now: Instant) {
        if self.watching_since.is_some() {
            self.watching_since = Some(now);
        }
        self.close_at = None;
        self.refused_until = None;
        self.refusal_pinged = false;
    }

    /// The peer's host reported at `now` that nothing listens at the
    /// peer's address. Unless the peer is heard from within `window`,
    /// [`Liveness::poll`] answers [`LivenessAction::Refused`]. Further
    /// reports do not move the end of the window.
    pub(crate) fn on_refused(&mut self, now: Instant, window: Duration) {
        if self.refused_until.is_none() {
            self.refused_until = Some(now + window);
            self.refusal_pinged = false;
        }
    }

    /// What to do at `now`; `busy` says whether calls are in progress.
    pub(crate) fn poll(&mut self, now: Instant, busy: bool) -> LivenessAction {
        let action = self.poll_silence(now, busy);
        let Some(until) = self.refused_until else {
            return action;
        };
        if now >= until {
            // Once: the transport closes the connection.
            self.refused_until = None;
            return LivenessAction::Refused;
        }
        let ping = !std::mem::replace(&mut self.refusal_pinged, true);
        match action {
            LivenessAction::Close { .. } => action,
            LivenessAction::Ping(at) => LivenessAction::Ping(at.min(until)),
            LivenessAction::Idle if ping => LivenessAction::Ping(until),
            LivenessAction::Idle => LivenessAction::WakeAt(until),
            LivenessAction::WakeAt(at) if ping => LivenessAction::Ping(at.min(until)),
            LivenessAction::WakeAt(at) => LivenessAction::WakeAt(at.min(until)),
            LivenessAction::Refused => LivenessAction::Refused,
        }
    }

    /// [`Liveness::poll`] without a refusal: keepalive of a busy connection.
    fn poll_silence(&mut self, now: Instant, busy: bool) -> LivenessAction {
        if !busy {
            self.watching_since = None;
            return LivenessAction::Idle;
        }
        let heard = match self.watching_since {
            Some(t) => t,
            None => {
                // Calls start after a quiet spell: the clock starts now.
                self.watching_since = Some(now);
                self.close_at = None;
                now
            }
        };
        let silent = now.saturating_duration_since(heard);
        match self.close_at {
            Some(at) if now >= at => LivenessAction::Close { silent },
            Some(at) => LivenessAction::WakeAt(at),
            None if silent >= self.keepalive.interval => {
                // Never close without having asked: a check that comes late
                // (a starved task, with the peer's packets still unread)
                // pings and gives the answer its time.
                let grace = (self.keepalive.timeout - self.keepalive.interval).max(MIN_GRACE);
                let at = (heard + self.keepalive.timeout).max(now + grace);
                self.close_at = Some(at);
                LivenessAction::Ping(at)
            }
            None => LivenessAction::WakeAt(heard + self.keepalive.interval),
        }
    }
}

/// The least time a PING gets to be answered before the connection is
/// closed for silence.
const MIN_GRACE: Duration = Duration::from_secs(1);

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

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_refusal_pings_at_once_and_closes_when_the_window_passes_in_silence() {
        let (mut l, t0) = machine();
        assert_eq!(l.poll(t0, false), LivenessAction::Idle);
        l.on_refused(t0 + MS, 300 * MS);
        assert_eq!(l.poll(t0 + MS, false), LivenessAction::Ping(t0 + 301 * MS));
        // More reports (the PING drew another) do not extend the window.
        l.on_refused(t0 + 2 * MS, 300 * MS);
        assert_eq!(
            l.poll(t0 + 300 * MS, false),
            LivenessAction::WakeAt(t0 + 301 * MS)
        );
        assert_eq!(l.poll(t0 + 301 * MS, false), LivenessAction::Refused);
        assert_eq!(l.poll(t0 + 302 * MS, false), LivenessAction::Idle);
        // Busy or not.
        let (mut l, t0) = machine();
        l.poll(t0, true);
        l.on_refused(t0, 300 * MS);
        assert_eq!(l.poll(t0, true), LivenessAction::Ping(t0 + 300 * MS));
        assert_eq!(l.poll(t0 + 300 * MS, true), LivenessAction::Refused);
    }

    #[test]
    fn a_refusal_is_forgotten_when_the_peer_is_heard_from() {
        let (mut l, t0) = machine();
        l.poll(t0, true);
        l.on_refused(t0 + S, 300 * MS);
        assert_eq!(
            l.poll(t0 + S, true),
            LivenessAction::Ping(t0 + S + 300 * MS)
        );
        // A forged report: the peer answers the PING.
        l.on_packet(t0 + S + 20 * MS);
        assert_eq!(
            l.poll(t0 + S + 300 * MS, true),
            LivenessAction::WakeAt(t0 + 6 * S + 20 * MS)
        );
        // A later report starts a new window.
        l.on_refused(t0 + 2 * S, 300 * MS);
        assert_eq!(
            l.poll(t0 + 2 * S, true),
            LivenessAction::Ping(t0 + 2 * S + 300 * MS)
        );
        assert_eq!(l.poll(t0 + 2 * S + 300 * MS, true), LivenessAction::Refused);
    }

    #[test]
    fn a_refusal_does_not_delay_a_silence_timeout() {
        let (mut l, t0) = machine();
        l.poll(t0, true);
        assert_eq!(l.poll(t0 + 5 * S, true), LivenessAction::Ping(t0 + 20 * S));
        l.on_refused(t0 + 20 * S - MS, 300 * MS);
        assert_eq!(
            l.poll(t0 + 20 * S, true),
            LivenessAction::Close { silent: 20 * S }
        );
    }

    #[test]
    fn the_interval_is_capped_at_the_timeout() {
        let k = Keepalive::new(30 * S, 10 * S);
        assert_eq!((k.interval, k.timeout), (10 * S, 10 * S));
        let mut l = Liveness::new(k);
        let t0 = Instant::now();
        l.poll(t0, true);
        // Both limits pass at once: a PING first, which gets a second.
        assert_eq!(l.poll(t0 + 10 * S, true), LivenessAction::Ping(t0 + 11 * S));
        assert_eq!(
            l.poll(t0 + 11 * S, true),
            LivenessAction::Close { silent: 11 * S }
        );
    }

    #[test]
    fn a_late_check_pings_before_it_closes() {
        let (mut l, t0) = machine();
        l.poll(t0, true);
        // The task was starved: its first check comes after the timeout.
        assert_eq!(l.poll(t0 + 30 * S, true), LivenessAction::Ping(t0 + 45 * S));
        // The peer's packets were there all along.
        l.on_packet(t0 + 30 * S);
        assert_eq!(
            l.poll(t0 + 30 * S, true),
            LivenessAction::WakeAt(t0 + 35 * S)
        );
        // A peer that is really gone: closed when the PING's time is up.
        let (mut l, t0) = machine();
        l.poll(t0, true);
        l.poll(t0 + 30 * S, true);
        assert_eq!(
            l.poll(t0 + 45 * S, true),
            LivenessAction::Close { silent: 45 * S }
        );
    }
}
