//! The impairments applied to one direction of a link.

use std::time::Duration;

use crate::Error;

/// How the random part of the one-way delay is distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[delay - jitter, delay + jitter]`.
    #[default]
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at
    /// `delay ± 3 × jitter`.
    Normal,
}

/// What one direction of a [`Link`](crate::Link) does to every IP packet.
///
/// A packet that enters the direction at time `t` goes through these steps,
/// in this order (each random choice is one draw from the direction's seeded
/// generator, so the same seed and the same packets give the same outcome):
///
/// 1. **Loss**: dropped with probability [`loss`](Self::loss).
/// 2. **Duplication**: with probability [`duplicate`](Self::duplicate) a
///    second copy is made; each copy then goes through the next steps on its
///    own (it takes its own room in the queue and gets its own jitter).
/// 3. **Rate limit** (if [`rate`](Self::rate) is set): a first-in first-out
///    bottleneck that sends `rate` bytes per second, counting whole IP
///    packets. A packet that would bring the bytes waiting in it (including
///    itself) above [`queue_bytes`](Self::queue_bytes) is dropped (drop-tail).
///    Otherwise it leaves the bottleneck when its last byte is sent.
/// 4. **Delay and jitter**: it is delivered [`delay`](Self::delay) plus a
///    random jitter (see [`Jitter`]) after leaving the bottleneck, but never
///    before a packet that entered earlier and was not held for reordering:
///    jitter alone does not reorder packets (it is clamped to keep order).
/// 5. **Reordering**: with probability [`reorder`](Self::reorder) the packet is
///    held for [`reorder_gap`](Self::reorder_gap) more, so packets sent up to
///    that long after it overtake it. A held packet does not hold back the
///    ones after it.
///
/// The default is a perfect link: no delay, no loss, no rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Mean one-way delay.
    pub delay: Duration,
    /// Spread of the one-way delay around [`delay`](Self::delay): half-width
    /// for [`Jitter::Uniform`], standard deviation for [`Jitter::Normal`]. A
    /// delay that would be negative is zero.
    pub jitter: Duration,
    /// Distribution of the jitter.
    pub jitter_distribution: Jitter,
    /// Probability in `[0, 1]` that a packet is lost.
    pub loss: f64,
    /// Probability in `[0, 1]` that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability in `[0, 1]` that a packet is held back by
    /// [`reorder_gap`](Self::reorder_gap).
    pub reorder: f64,
    /// How long a reordered packet is held after it would have been delivered.
    pub reorder_gap: Duration,
    /// Bottleneck rate in bytes per second of IP packets; `None` is unlimited.
    pub rate: Option<u64>,
    /// Size of the bottleneck's queue in bytes (counting the packet being sent);
    /// only used with a [`rate`](Self::rate). At least one MTU (1500).
    pub queue_bytes: u64,
}

impl Default for Impairments {
    fn default() -> Self {
        Impairments {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_distribution: Jitter::Uniform,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_gap: Duration::from_millis(10),
            rate: None,
            queue_bytes: 64 * 1024,
        }
    }
}

impl Impairments {
    /// A perfect link (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the mean one-way delay.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the jitter and its distribution.
    pub fn with_jitter(mut self, jitter: Duration, distribution: Jitter) -> Self {
        self.jitter = jitter;
        self.jitter_distribution = distribution;
        self
    }

    /// Sets the loss probability (0.02 is 2 %).
    pub fn with_loss(mut self, probability: f64) -> Self {
        self.loss = probability;
        self
    }

    /// Sets the duplication probability.
    pub fn with_duplicate(mut self, probability: f64) -> Self {
        self.duplicate = probability;
        self
    }

    /// Sets the reordering probability and how long a reordered packet is held.
    pub fn with_reorder(mut self, probability: f64, gap: Duration) -> Self {
        self.reorder = probability;
        self.reorder_gap = gap;
        self
    }

    /// Sets the bottleneck rate (bytes per second) and its queue size (bytes).
    pub fn with_rate(mut self, bytes_per_second: u64, queue_bytes: u64) -> Self {
        self.rate = Some(bytes_per_second);
        self.queue_bytes = queue_bytes;
        self
    }

    /// Sets the bottleneck rate in megabits per second (10⁶ bit/s) and a queue
    /// holding `queue` worth of sending time at that rate (at least 1500 bytes).
    pub fn with_rate_mbit(self, mbit_per_second: f64, queue: Duration) -> Self {
        let bytes_per_second = (mbit_per_second * 1e6 / 8.0).round() as u64;
        let queue_bytes = ((bytes_per_second as f64 * queue.as_secs_f64()) as u64).max(1500);
        self.with_rate(bytes_per_second, queue_bytes)
    }

    /// Checks every setting; `prefix` names the direction in the error.
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), Error> {
        let bad = |field: &str, reason: String| Error::Config {
            field: format!("{prefix}.{field}"),
            reason,
        };
        for (field, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(field, format!("{p} is not a probability in [0, 1]")));
            }
        }
        if self.rate == Some(0) {
            return Err(bad(
                "rate",
                "0 bytes/s delivers nothing; use None for no limit".into(),
            ));
        }
        if self.rate.is_some() && self.queue_bytes < 1500 {
            return Err(bad(
                "queue_bytes",
                format!("{} is less than one 1500-byte packet", self.queue_bytes),
            ));
        }
        let day = Duration::from_secs(86_400);
        for (field, d) in [
            ("delay", self.delay),
            ("jitter", self.jitter),
            ("reorder_gap", self.reorder_gap),
        ] {
            if d > day {
                return Err(bad(field, format!("{d:?} is longer than a day")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let e = Impairments::none()
            .with_loss(1.5)
            .validate("a_to_b")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "link emulator setting `a_to_b.loss`: 1.5 is not a probability in [0, 1]"
        );
        let e = Impairments::none()
            .with_rate(1000, 100)
            .validate("b_to_a")
            .unwrap_err();
        assert!(e.to_string().contains("b_to_a.queue_bytes"), "{e}");
        let e = Impairments::none()
            .with_duplicate(f64::NAN)
            .validate("x")
            .unwrap_err();
        assert!(e.to_string().contains("x.duplicate"), "{e}");
        assert!(Impairments::none().validate("a").is_ok());
    }

    #[test]
    fn rate_in_megabits() {
        let i = Impairments::none().with_rate_mbit(20.0, Duration::from_millis(40));
        assert_eq!(i.rate, Some(2_500_000));
        assert_eq!(i.queue_bytes, 100_000);
    }
}
