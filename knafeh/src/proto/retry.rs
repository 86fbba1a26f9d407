//! Retry, hedging and retry-throttling decisions (gRPC's A6 design), with
//! no clock and no randomness of their own: the time left and a random
//! fraction for the jitter are parameters, so every decision is tested
//! deterministically. The client's driver (`client/retry.rs`) runs the
//! attempts.

use std::time::Duration;

use crate::proto::status::Code;

/// The most attempts a policy may ask for; larger values count as this
/// (as in gRPC, so that a misconfigured client cannot multiply its load
/// by more).
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// The request header counting the attempts that preceded this one.
pub(crate) const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// The response metadata key by which a server asks the client to wait
/// before retrying (a non-negative number of milliseconds) or not to retry
/// at all (anything else).
pub(crate) const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// How a client retries failed calls.
///
/// Every call may be retried when it never reached a handler (the
/// *transparent* retries: the request was never sent, or the server refused
/// the stream unprocessed with `H3_REQUEST_REJECTED`). Calls to methods
/// declared idempotent (`#[knafeh(idempotent)]`, or
/// [`CallOptions::idempotent`](crate::CallOptions::idempotent)) are also
/// retried when they fail with one of the [`retryable`](Self::retryable)
/// codes before the response headers arrived. Other calls are never
/// retried once a handler may have seen them, whatever the codes say.
///
/// The `n`th retry waits a random time between zero and
/// `min(initial_backoff × multiplier^(n-1), max_backoff)`, or what the
/// server asked for with `grpc-retry-pushback-ms`; never past the call's
/// deadline.
///
/// ```
/// use std::time::Duration;
/// use knafeh::{Code, RetryPolicy};
/// let policy = RetryPolicy::default()
///     .max_attempts(4)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2), 2.0)
///     .retryable(&[Code::Unavailable, Code::ResourceExhausted]);
/// assert_eq!(policy.attempts(), 4);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    retryable: Vec<Code>,
}

impl Default for RetryPolicy {
    /// 3 attempts, backoff from 100 ms doubling up to 1 s, `UNAVAILABLE`
    /// retryable (for idempotent methods).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            retryable: vec![Code::Unavailable],
        }
    }
}

impl RetryPolicy {
    /// No retries at all, not even transparent ones.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts in all, the first included (1 to 5; 0 counts
    /// as 1, more than 5 as 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.clamp(1, MAX_ATTEMPTS);
        self
    }

    /// The exponential backoff: the first retry waits up to `initial`,
    /// each next one up to `multiplier` times more, never more than `max`.
    /// A multiplier below 1 (or not a number) counts as 1.
    pub fn backoff(mut self, initial: Duration, max: Duration, multiplier: f64) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// The codes an idempotent call is retried on (default `UNAVAILABLE`).
    /// `OK` is ignored.
    pub fn retryable(mut self, codes: &[Code]) -> Self {
        self.retryable = codes.iter().copied().filter(|c| *c != Code::Ok).collect();
        self
    }

    /// The number of attempts, the first included.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether `code` is one of the retryable codes.
    pub fn is_retryable(&self, code: Code) -> bool {
        self.retryable.contains(&code)
    }

    /// The wait before retry number `retry` (1 for the first), given a
    /// random `fraction` in `[0, 1)`: full jitter over the exponential
    /// bound.
    pub(crate) fn backoff_for(&self, retry: u32, fraction: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let bound = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp);
        let bound = bound.min(self.max_backoff.as_secs_f64());
        // Bounds past what a Duration holds (a `max_backoff` of
        // `Duration::MAX`) wait the longest one.
        Duration::try_from_secs_f64(bound * fraction.clamp(0.0, 1.0)).unwrap_or(Duration::MAX)
    }
}

/// How a client hedges calls to idempotent methods: it sends the call,
/// then another attempt every `delay` while none has answered (at most
/// `max_attempts` in all); the first answer wins and the other attempts
/// are cancelled. An attempt that fails with a non-fatal code (default
/// `UNAVAILABLE`) makes the next one start at once; any other failure
/// ends the call with it.
///
/// Hedging applies only to idempotent methods (unary and
/// server-streaming); for others it is ignored (with a warning) and the
/// retry policy applies.
#[derive(Clone, Debug, PartialEq)]
pub struct HedgingPolicy {
    max_attempts: u32,
    delay: Duration,
    non_fatal: Vec<Code>,
}

impl HedgingPolicy {
    /// Up to `max_attempts` attempts (1 to 5; 1 sends no hedge), one more
    /// every `delay`; `UNAVAILABLE` is non-fatal.
    pub fn new(max_attempts: u32, delay: Duration) -> Self {
        HedgingPolicy {
            max_attempts: max_attempts.clamp(1, MAX_ATTEMPTS),
            delay,
            non_fatal: vec![Code::Unavailable],
        }
    }

    /// The codes after which the next attempt is sent at once instead of
    /// ending the call. `OK` is ignored.
    pub fn non_fatal(mut self, codes: &[Code]) -> Self {
        self.non_fatal = codes.iter().copied().filter(|c| *c != Code::Ok).collect();
        self
    }

    /// The number of attempts, the first included.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay between attempts.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Whether `code` is one of the non-fatal codes.
    pub fn is_non_fatal(&self, code: Code) -> bool {
        self.non_fatal.contains(&code)
    }
}

/// How far a failed attempt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// No handler saw it: nothing was sent, or the server refused the
    /// stream unprocessed (`H3_REQUEST_REJECTED`).
    Unprocessed,
    /// A handler may have seen it; no response headers arrived (an error
    /// in a trailers-only response, a reset, a lost connection).
    MaybeProcessed,
    /// The response headers arrived: the call is committed to this attempt.
    Committed,
}

/// What the server said about retrying (`grpc-retry-pushback-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// Retry after this long.
    After(Duration),
    /// Do not retry.
    Stop,
}

/// The longest pushback the client waits for; a server asking for more
/// (up to `i32::MAX` ms, 24 days) is taken as "do not retry", so that a
/// call without a deadline never sleeps that long.
pub(crate) const MAX_PUSHBACK: Duration = Duration::from_secs(300);

/// Parses a `grpc-retry-pushback-ms` value: decimal digits only, a
/// non-negative 32-bit integer of milliseconds up to [`MAX_PUSHBACK`],
/// waits that long; anything else (negative, a sign, malformed, longer)
/// means "do not retry".
pub(crate) fn parse_pushback(value: &str) -> Pushback {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Pushback::Stop;
    }
    match value.parse::<i32>() {
        Ok(ms) => {
            let wait = Duration::from_millis(ms.unsigned_abs().into());
            if wait <= MAX_PUSHBACK {
                Pushback::After(wait)
            } else {
                Pushback::Stop
            }
        }
        Err(_) => Pushback::Stop,
    }
}

/// A failed attempt, as the decisions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) progress: Progress,
    pub(crate) pushback: Option<Pushback>,
}

impl Failure {
    /// Safe to retry whatever the method: no handler saw the request and
    /// the failure is the transport's (`UNAVAILABLE`), not the client's
    /// own (a request that does not encode, headers over the limit).
    pub(crate) fn transparent(&self) -> bool {
        self.progress == Progress::Unprocessed && self.code == Code::Unavailable
    }
}

/// Why a failed call is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The response headers had arrived.
    Committed,
    /// The code is not retryable, or the method is not idempotent and a
    /// handler may have seen the call.
    NotRetryable,
    /// The server's pushback said not to.
    Pushback,
    /// The policy's attempts are used up.
    Exhausted,
    /// The throttle's tokens are at or below half.
    Throttled,
    /// The wait would end after the deadline.
    Deadline,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start another attempt after this long.
    Retry(Duration),
    /// Return the failure to the caller.
    GiveUp(GiveUp),
}

/// The inputs of a retry decision other than the failure itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryState {
    /// Attempts made so far, the failed one included.
    pub(crate) attempts: u32,
    /// Whether the method is idempotent.
    pub(crate) idempotent: bool,
    /// Whether the throttle lets a retry through now.
    pub(crate) throttle_allows: bool,
    /// Time left until the deadline, if there is one.
    pub(crate) remaining: Option<Duration>,
    /// A random fraction in `[0, 1)` for the jitter.
    pub(crate) fraction: f64,
    /// The previous retry waited for the server's pushback: this one's
    /// backoff starts again from the initial one.
    pub(crate) after_pushback: bool,
}

/// Decides whether to retry a failed attempt, and after how long.
pub(crate) fn decide(policy: &RetryPolicy, failure: &Failure, state: &RetryState) -> Decision {
    if failure.progress == Progress::Committed {
        return Decision::GiveUp(GiveUp::Committed);
    }
    let by_code = state.idempotent && policy.is_retryable(failure.code);
    if !failure.transparent() && !by_code {
        return Decision::GiveUp(GiveUp::NotRetryable);
    }
    if failure.pushback == Some(Pushback::Stop) {
        return Decision::GiveUp(GiveUp::Pushback);
    }
    if state.attempts >= policy.max_attempts {
        return Decision::GiveUp(GiveUp::Exhausted);
    }
    // Transparent retries do not reach a handler: they are not throttled.
    if !failure.transparent() && !state.throttle_allows {
        return Decision::GiveUp(GiveUp::Throttled);
    }
    let wait = match failure.pushback {
        Some(Pushback::After(d)) => d,
        _ => {
            let retry = if state.after_pushback {
                1
            } else {
                state.attempts
            };
            policy.backoff_for(retry, state.fraction)
        }
    };
    if state.remaining.is_some_and(|left| wait >= left) {
        return Decision::GiveUp(GiveUp::Deadline);
    }
    Decision::Retry(wait)
}

/// What a hedged call does after one of its attempts failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HedgeStep {
    /// End the call with this failure (cancelling the other attempts).
    Fatal,
    /// Send no more attempts; wait for the ones in flight.
    NoMore,
    /// Send the next attempt after this long (zero: at once).
    Next(Duration),
}

/// Decides what a hedged call does after a failed attempt.
pub(crate) fn hedge_after_failure(policy: &HedgingPolicy, failure: &Failure) -> HedgeStep {
    if failure.progress == Progress::Committed
        || !(failure.transparent() || policy.is_non_fatal(failure.code))
    {
        return HedgeStep::Fatal;
    }
    match failure.pushback {
        Some(Pushback::Stop) => HedgeStep::NoMore,
        Some(Pushback::After(d)) => HedgeStep::Next(d),
        None => HedgeStep::Next(Duration::ZERO),
    }
}

/// gRPC's retry throttle: a token bucket per client, counted in
/// thousandths of a token. It starts full; every failed attempt (a
/// retryable or non-fatal code, or a pushback saying "do not retry") takes
/// one token, every success gives back `token_ratio`; retries and hedges
/// are sent only while more than half the tokens are left. The count
/// itself lives with the caller (an atomic in the client): these are its
/// transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Throttle {
    max: u32,
    ratio: u32,
}

impl Throttle {
    /// A bucket of `max_tokens` (1 to 1000) refilled by `token_ratio` per
    /// success (0.001 to `max_tokens`, kept to three decimals).
    pub(crate) fn new(max_tokens: u32, token_ratio: f64) -> Self {
        let max = max_tokens.clamp(1, 1000) * 1000;
        let ratio = if token_ratio.is_finite() {
            (token_ratio * 1000.0).round().clamp(1.0, max as f64) as u32
        } else {
            1
        };
        Throttle { max, ratio }
    }

    /// The count of a full bucket (the initial one).
    pub(crate) fn full(&self) -> u32 {
        self.max
    }

    /// The count after a failed attempt.
    pub(crate) fn on_failure(&self, tokens: u32) -> u32 {
        tokens.saturating_sub(1000)
    }

    /// The count after a successful attempt.
    pub(crate) fn on_success(&self, tokens: u32) -> u32 {
        tokens.saturating_add(self.ratio).min(self.max)
    }

    /// Whether a retry or a hedge may be sent with this count.
    pub(crate) fn allows_retry(&self, tokens: u32) -> bool {
        tokens > self.max / 2
    }
}

/// Whether an attempt that ended with `failure` counts against the
/// throttle: a retryable (or, hedging, non-fatal) code, or a pushback
/// saying not to retry. Transparent failures never reached a handler and
/// do not count.
pub(crate) fn counts_as_failure(failure: &Failure, retryable: impl Fn(Code) -> bool) -> bool {
    !failure.transparent() && (retryable(failure.code) || failure.pushback == Some(Pushback::Stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn failure(code: Code, progress: Progress) -> Failure {
        Failure {
            code,
            progress,
            pushback: None,
        }
    }

    fn state(attempts: u32, idempotent: bool) -> RetryState {
        RetryState {
            attempts,
            idempotent,
            throttle_allows: true,
            remaining: None,
            fraction: 0.5,
            after_pushback: false,
        }
    }

    #[test]
    fn backoff_is_full_jitter_over_an_exponential_bound() {
        let p = RetryPolicy::default().backoff(MS(100), MS(1000), 2.0);
        let bounds: Vec<_> = (1..=6).map(|n| p.backoff_for(n, 1.0)).collect();
        assert_eq!(
            bounds,
            [MS(100), MS(200), MS(400), MS(800), MS(1000), MS(1000)]
        );
        assert_eq!(p.backoff_for(3, 0.25), MS(100));
        assert_eq!(p.backoff_for(1, 0.0), Duration::ZERO);
        // Out-of-range fractions and huge retry numbers stay bounded.
        assert_eq!(p.backoff_for(u32::MAX, 7.0), MS(1000));
        let flat = RetryPolicy::default().backoff(MS(10), MS(5), 0.5);
        assert_eq!(flat.backoff_for(4, 1.0), MS(10));
    }

    #[test]
    fn attempts_are_clamped_as_in_grpc() {
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
        assert_eq!(
            RetryPolicy::default().max_attempts(9).attempts(),
            MAX_ATTEMPTS
        );
        assert_eq!(RetryPolicy::none().attempts(), 1);
        assert_eq!(HedgingPolicy::new(7, MS(1)).attempts(), MAX_ATTEMPTS);
        assert!(!RetryPolicy::default()
            .retryable(&[Code::Ok])
            .is_retryable(Code::Ok));
    }

    #[test]
    fn unprocessed_unavailable_is_retried_for_any_method() {
        let p = RetryPolicy::default();
        let f = failure(Code::Unavailable, Progress::Unprocessed);
        assert_eq!(decide(&p, &f, &state(1, false)), Decision::Retry(MS(50)));
        assert_eq!(decide(&p, &f, &state(2, false)), Decision::Retry(MS(100)));
        assert_eq!(
            decide(&p, &f, &state(3, false)),
            Decision::GiveUp(GiveUp::Exhausted)
        );
        // The client's own failures before sending are not retried.
        let own = failure(Code::ResourceExhausted, Progress::Unprocessed);
        let p = p.retryable(&[Code::ResourceExhausted]);
        assert_eq!(
            decide(&p, &own, &state(1, false)),
            Decision::GiveUp(GiveUp::NotRetryable)
        );
    }

    #[test]
    fn a_handler_that_may_have_run_blocks_retries_of_non_idempotent_methods() {
        let p = RetryPolicy::default().retryable(&[Code::Unavailable, Code::Internal]);
        let f = failure(Code::Unavailable, Progress::MaybeProcessed);
        assert_eq!(
            decide(&p, &f, &state(1, false)),
            Decision::GiveUp(GiveUp::NotRetryable)
        );
        assert_eq!(decide(&p, &f, &state(1, true)), Decision::Retry(MS(50)));
        let other = failure(Code::InvalidArgument, Progress::MaybeProcessed);
        assert_eq!(
            decide(&p, &other, &state(1, true)),
            Decision::GiveUp(GiveUp::NotRetryable)
        );
        let committed = failure(Code::Unavailable, Progress::Committed);
        assert_eq!(
            decide(&p, &committed, &state(1, true)),
            Decision::GiveUp(GiveUp::Committed)
        );
    }

    #[test]
    fn throttle_deadline_and_pushback_limit_retries() {
        let p = RetryPolicy::default();
        let f = failure(Code::Unavailable, Progress::MaybeProcessed);
        let mut s = state(1, true);
        s.throttle_allows = false;
        assert_eq!(decide(&p, &f, &s), Decision::GiveUp(GiveUp::Throttled));
        // Transparent retries are not throttled.
        let t = failure(Code::Unavailable, Progress::Unprocessed);
        assert_eq!(decide(&p, &t, &s), Decision::Retry(MS(50)));

        let mut s = state(1, true);
        s.remaining = Some(MS(50));
        assert_eq!(decide(&p, &f, &s), Decision::GiveUp(GiveUp::Deadline));
        s.remaining = Some(MS(51));
        assert_eq!(decide(&p, &f, &s), Decision::Retry(MS(50)));

        let mut pushed = f;
        pushed.pushback = Some(Pushback::After(MS(700)));
        assert_eq!(
            decide(&p, &pushed, &state(1, true)),
            Decision::Retry(MS(700))
        );
        pushed.pushback = Some(Pushback::Stop);
        assert_eq!(
            decide(&p, &pushed, &state(1, true)),
            Decision::GiveUp(GiveUp::Pushback)
        );
        // After a pushback, the backoff starts again from the initial one.
        let mut s = state(3, true);
        s.after_pushback = true;
        let p = p.max_attempts(5);
        assert_eq!(decide(&p, &f, &s), Decision::Retry(MS(50)));
    }

    #[test]
    fn pushback_values() {
        assert_eq!(parse_pushback("0"), Pushback::After(Duration::ZERO));
        assert_eq!(parse_pushback("250"), Pushback::After(MS(250)));
        assert_eq!(parse_pushback("-1"), Pushback::Stop);
        assert_eq!(parse_pushback("1.5"), Pushback::Stop);
        assert_eq!(parse_pushback(""), Pushback::Stop);
        assert_eq!(parse_pushback("4294967296"), Pushback::Stop);
        // A sign is not a digit; longer than five minutes is "stop".
        assert_eq!(parse_pushback("+5"), Pushback::Stop);
        assert_eq!(parse_pushback(" 5"), Pushback::Stop);
        assert_eq!(parse_pushback("300000"), Pushback::After(MAX_PUSHBACK));
        assert_eq!(parse_pushback("300001"), Pushback::Stop);
        assert_eq!(parse_pushback("2147483647"), Pushback::Stop);
    }

    #[test]
    fn hedging_steps() {
        let p = HedgingPolicy::new(3, MS(10));
        let f = failure(Code::Unavailable, Progress::MaybeProcessed);
        assert_eq!(hedge_after_failure(&p, &f), HedgeStep::Next(Duration::ZERO));
        let fatal = failure(Code::NotFound, Progress::MaybeProcessed);
        assert_eq!(hedge_after_failure(&p, &fatal), HedgeStep::Fatal);
        let refused = failure(Code::Unavailable, Progress::Unprocessed);
        let p2 = p.clone().non_fatal(&[]);
        assert_eq!(
            hedge_after_failure(&p2, &refused),
            HedgeStep::Next(Duration::ZERO)
        );
        assert_eq!(hedge_after_failure(&p2, &f), HedgeStep::Fatal);
        let mut pushed = f;
        pushed.pushback = Some(Pushback::After(MS(30)));
        assert_eq!(hedge_after_failure(&p, &pushed), HedgeStep::Next(MS(30)));
        pushed.pushback = Some(Pushback::Stop);
        assert_eq!(hedge_after_failure(&p, &pushed), HedgeStep::NoMore);
    }

    #[test]
    fn throttle_bucket_follows_grpc_rules() {
        // maxTokens 10, tokenRatio 0.1: retries stop once 5 tokens or
        // fewer are left.
        let t = Throttle::new(10, 0.1);
        let mut n = t.full();
        assert_eq!(n, 10_000);
        n = t.on_success(n);
        assert_eq!(n, 10_000, "never above max");
        for _ in 0..4 {
            n = t.on_failure(n);
        }
        assert_eq!(n, 6_000);
        assert!(t.allows_retry(n));
        n = t.on_failure(n);
        assert_eq!(n, 5_000);
        assert!(!t.allows_retry(n), "exactly half is not enough");
        n = t.on_success(n);
        assert_eq!(n, 5_100);
        assert!(t.allows_retry(n));
        for _ in 0..20 {
            n = t.on_failure(n);
        }
        assert_eq!(n, 0, "never below zero");
        // Ten successes at 0.1 bring back one token.
        for _ in 0..10 {
            n = t.on_success(n);
        }
        assert_eq!(n, 1_000);
    }

    #[test]
    fn throttle_configuration_is_clamped() {
        let t = Throttle::new(0, 0.0);
        assert_eq!((t.max, t.ratio, t.full()), (1_000, 1, 1_000));
        let t = Throttle::new(5000, f64::NAN);
        assert_eq!((t.max, t.ratio), (1_000_000, 1));
        let t = Throttle::new(10, 0.1234);
        assert_eq!(t.ratio, 123);
        assert_eq!(t.on_success(u32::MAX), 10_000);
    }

    #[test]
    fn only_server_failures_count_against_the_throttle() {
        let retryable = |c: Code| c == Code::Unavailable;
        let f = failure(Code::Unavailable, Progress::MaybeProcessed);
        assert!(counts_as_failure(&f, retryable));
        let bad = failure(Code::InvalidArgument, Progress::MaybeProcessed);
        assert!(!counts_as_failure(&bad, retryable));
        let mut stop = bad;
        stop.pushback = Some(Pushback::Stop);
        assert!(counts_as_failure(&stop, retryable));
        let refused = failure(Code::Unavailable, Progress::Unprocessed);
        assert!(!counts_as_failure(&refused, retryable));
    }
}
