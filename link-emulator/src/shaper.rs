//! The per-direction decisions, without I/O: time is an input, so the rules of
//! [`Impairments`] are unit-tested deterministically.

use std::time::{Duration, Instant};

use crate::config::{Impairments, Jitter};
use crate::rng::Rng;

/// What happened to one packet that entered a direction.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// Lost by the random loss.
    pub(crate) lost: bool,
    /// A second copy was made.
    pub(crate) duplicated: bool,
    /// Copies dropped because the bottleneck queue was full.
    pub(crate) queue_dropped: u32,
    /// Copies held back for reordering.
    pub(crate) reordered: u32,
    /// When each surviving copy is to be delivered (at most two).
    pub(crate) releases: Vec<Instant>,
}

/// The state of one direction: its settings, generator and bottleneck.
#[derive(Debug)]
pub(crate) struct Shaper {
    config: Impairments,
    rng: Rng,
    /// When the bottleneck finishes sending what it holds.
    busy_until: Option<Instant>,
    /// The latest delivery time of a packet not held for reordering.
    last_release: Option<Instant>,
}

impl Shaper {
    pub(crate) fn new(config: Impairments, seed: u64) -> Self {
        Shaper {
            config,
            rng: Rng::new(seed),
            busy_until: None,
            last_release: None,
        }
    }

    /// Replaces the settings; the generator and the queue carry on.
    pub(crate) fn set_config(&mut self, config: Impairments) {
        self.config = config;
    }

    pub(crate) fn config(&self) -> &Impairments {
        &self.config
    }

    /// Decides the fate of a packet of `len` bytes entering at `now`.
    pub(crate) fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        let mut verdict = Verdict::default();
        if self.rng.chance(self.config.loss) {
            verdict.lost = true;
            return verdict;
        }
        verdict.duplicated = self.rng.chance(self.config.duplicate);
        let copies = if verdict.duplicated { 2 } else { 1 };
        for _ in 0..copies {
            let Some(departure) = self.bottleneck(now, len) else {
                verdict.queue_dropped += 1;
                continue;
            };
            let mut release = departure + self.one_way_delay();
            if let Some(last) = self.last_release {
                release = release.max(last);
            }
            if self.rng.chance(self.config.reorder) {
                verdict.reordered += 1;
                release += self.config.reorder_gap;
            } else {
                self.last_release = Some(release);
            }
            verdict.releases.push(release);
        }
        verdict
    }

    /// When the packet's last byte leaves the bottleneck, or `None` if the
    /// queue has no room for it.
    fn bottleneck(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(rate) = self.config.rate else {
            return Some(now);
        };
        let start = self.busy_until.map_or(now, |busy| busy.max(now));
        let waiting = (start - now).as_secs_f64() * rate as f64;
        if waiting + len as f64 > self.config.queue_bytes as f64 {
            return None;
        }
        let sending = Duration::from_secs_f64(len as f64 / rate as f64);
        self.busy_until = Some(start + sending);
        self.busy_until
    }

    /// The delay plus one jitter draw, never negative.
    fn one_way_delay(&mut self) -> Duration {
        let delay = self.config.delay.as_secs_f64();
        let jitter = self.config.jitter.as_secs_f64();
        if jitter == 0.0 {
            return self.config.delay;
        }
        let offset = match self.config.jitter_distribution {
            Jitter::Uniform => (2.0 * self.rng.unit() - 1.0) * jitter,
            Jitter::Normal => self.rng.normal().clamp(-3.0, 3.0) * jitter,
        };
        Duration::from_secs_f64((delay + offset).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_only_is_exact_and_keeps_order() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Impairments::none().with_delay(ms(10)), 1);
        for i in 0..10 {
            let v = s.admit(t0 + ms(i), 100);
            assert_eq!(v.releases, vec![t0 + ms(i + 10)]);
        }
    }

    #[test]
    fn loss_rate_and_seed_reproducibility() {
        let t0 = Instant::now();
        let config = Impairments::none().with_loss(0.1);
        let run = |seed| {
            let mut s = Shaper::new(config.clone(), seed);
            (0..100_000)
                .map(|_| s.admit(t0, 100).lost)
                .collect::<Vec<_>>()
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        let lost = a.iter().filter(|l| **l).count();
        // Binomial: mean 10,000, sigma ≈ 95.
        assert!((9_600..=10_400).contains(&lost), "{lost}");
    }

    #[test]
    fn rate_limit_spaces_packets_and_drops_tail() {
        let t0 = Instant::now();
        // 1,000,000 B/s: a 1000-byte packet takes 1 ms; the queue holds 3.
        let mut s = Shaper::new(Impairments::none().with_rate(1_000_000, 3000), 1);
        let v: Vec<Verdict> = (0..5).map(|_| s.admit(t0, 1000)).collect();
        assert_eq!(v[0].releases, vec![t0 + ms(1)]);
        assert_eq!(v[1].releases, vec![t0 + ms(2)]);
        assert_eq!(v[2].releases, vec![t0 + ms(3)]);
        assert_eq!(v[3].queue_dropped, 1);
        assert_eq!(v[4].queue_dropped, 1);
        // After 1 ms one packet has left: room for one more.
        let later = s.admit(t0 + ms(1), 1000);
        assert_eq!(later.releases, vec![t0 + ms(4)]);
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let t0 = Instant::now();
        let config = Impairments::none()
            .with_delay(ms(20))
            .with_jitter(ms(5), Jitter::Uniform);
        let mut s = Shaper::new(config, 3);
        let mut last = t0;
        for i in 0..1000 {
            let sent = t0 + ms(i * 10);
            let r = s.admit(sent, 100).releases[0];
            assert!(r >= last, "jitter reordered packet {i}");
            assert!(
                r >= sent + ms(15) && r <= sent + ms(25),
                "packet {i}: {r:?}"
            );
            last = r;
        }
    }

    #[test]
    fn reordered_packet_is_overtaken_and_does_not_hold_others() {
        let t0 = Instant::now();
        let config = Impairments::none()
            .with_delay(ms(5))
            .with_reorder(1.0, ms(3));
        let mut s = Shaper::new(config, 1);
        let held = s.admit(t0, 100);
        assert_eq!(held.reordered, 1);
        assert_eq!(held.releases, vec![t0 + ms(8)]);
        s.set_config(s.config().clone().with_reorder(0.0, ms(3)));
        let next = s.admit(t0 + ms(1), 100);
        assert_eq!(next.releases, vec![t0 + ms(6)]);
    }

    #[test]
    fn duplicates_take_their_own_room() {
        let t0 = Instant::now();
        let config = Impairments::none()
            .with_duplicate(1.0)
            .with_rate(1_000_000, 1500);
        let mut s = Shaper::new(config, 1);
        let v = s.admit(t0, 1000);
        assert!(v.duplicated);
        assert_eq!(v.releases, vec![t0 + ms(1)]);
        assert_eq!(v.queue_dropped, 1);
    }
}
