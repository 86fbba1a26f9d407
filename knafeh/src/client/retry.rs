//! Retries and hedging around the single-attempt calls of `call.rs`: which
//! policy a call follows, the attempts themselves, the retry throttle's
//! tokens. The decisions are the protocol core's (`proto::retry`); this
//! file runs the attempts, reads the clock and draws the jitter.
//!
//! What is retried (PROTOCOL.md §8.5): unary and server-streaming calls,
//! until the response headers arrive; client-streaming and bidirectional
//! calls only when their stream could not be opened (nothing of the
//! request stream has been taken yet).

use super::*;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::Instrument;

use super::call::{read_unary, ActiveCall, Prepared};
use crate::proto::retry::{
    counts_as_failure, decide, hedge_after_failure, parse_pushback, Decision, Failure, HedgeStep,
    Progress, RetryState, Throttle, PREVIOUS_ATTEMPTS, PUSHBACK,
};
use crate::service::Message;
use crate::{HedgingPolicy, Metadata, Response, RetryPolicy, Status};

/// A client's retry configuration.
#[derive(Clone, Debug)]
pub(super) struct RetryConfig {
    pub(super) policy: Arc<RetryPolicy>,
    pub(super) methods: HashMap<String, Arc<RetryPolicy>>,
    pub(super) hedging: HashMap<String, Arc<HedgingPolicy>>,
    pub(super) throttle: Option<Throttle>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            policy: Arc::new(RetryPolicy::default()),
            methods: HashMap::new(),
            hedging: HashMap::new(),
            // gRPC's example `retryThrottling`.
            throttle: Some(Throttle::new(10, 0.1)),
        }
    }
}

/// What a call's options say about retries.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallRetry {
    pub(crate) policy: Option<Arc<RetryPolicy>>,
    pub(crate) hedging: Option<Arc<HedgingPolicy>>,
    pub(crate) idempotent: bool,
}

/// How one call is attempted.
enum Plan {
    Retry(Arc<RetryPolicy>),
    /// Hedged; the retry policy is kept for a caller that cannot hedge.
    Hedge(Arc<HedgingPolicy>, Arc<RetryPolicy>),
}

/// A failed attempt: the status for the caller, and what the decisions
/// need to know about it.
pub(super) struct Failed {
    status: Status,
    failure: Failure,
}

impl Failed {
    fn new(status: Status, progress: Progress) -> Self {
        let pushback = status.metadata().get(PUSHBACK).map(parse_pushback);
        let failure = Failure {
            code: status.code(),
            progress,
            pushback,
        };
        Failed { status, failure }
    }

    /// The call could not be started: nothing was sent.
    fn unsent(status: Status) -> Self {
        Failed::new(status, Progress::Unprocessed)
    }

    /// The call failed before its response headers arrived.
    fn before_headers(call: &ActiveCall, status: Status) -> Self {
        // The stream was never opened (its id is still unset), or the
        // server refused it without processing it.
        let unopened = call.guard.slot.load(Ordering::Acquire) == u64::MAX;
        let progress = if call.refused || unopened {
            Progress::Unprocessed
        } else {
            Progress::MaybeProcessed
        };
        Failed::new(status, progress)
    }
}

/// One attempt of a unary call.
async fn unary_attempt<Resp: Message>(
    client: Client,
    prepared: Prepared,
) -> Result<Response<Resp>, Failed> {
    let mut call = client.start(prepared).await.map_err(Failed::unsent)?;
    if let Err(status) = std::future::poll_fn(|cx| call.poll_headers(cx)).await {
        return Err(Failed::before_headers(&call, status));
    }
    read_unary::<Resp>(&mut call)
        .await
        .map_err(|s| Failed::new(s, Progress::Committed))
}

/// One attempt of a call with a response stream, up to its headers.
async fn open_attempt(
    client: Client,
    prepared: Prepared,
) -> Result<(ActiveCall, Metadata), Failed> {
    let mut call = client.start(prepared).await.map_err(Failed::unsent)?;
    match std::future::poll_fn(|cx| call.poll_headers(cx)).await {
        Ok(()) => {
            let headers = call.reader.take_headers();
            Ok((call, headers))
        }
        Err(status) => Err(Failed::before_headers(&call, status)),
    }
}

impl Client {
    /// A unary call, retried or hedged as its policy says.
    pub(super) async fn unary_with_retries<Resp: Message>(
        &self,
        prepared: Prepared,
    ) -> Result<Response<Resp>, Status> {
        match self.plan(&prepared, true) {
            Plan::Retry(policy) => self.retry_loop(&policy, prepared, unary_attempt).await,
            Plan::Hedge(policy, _) => self.hedge_loop(&policy, prepared, unary_attempt).await,
        }
    }

    /// A call with a response stream, retried or hedged until its response
    /// headers arrive.
    pub(super) async fn open_with_retries(
        &self,
        prepared: Prepared,
    ) -> Result<(ActiveCall, Metadata), Status> {
        match self.plan(&prepared, true) {
            Plan::Retry(policy) => self.retry_loop(&policy, prepared, open_attempt).await,
            Plan::Hedge(policy, _) => self.hedge_loop(&policy, prepared, open_attempt).await,
        }
    }

    /// Opens a call whose requests are a stream: retried only while it
    /// cannot be started (nothing sent, no request message taken).
    pub(super) async fn start_with_retries(
        &self,
        prepared: Prepared,
    ) -> Result<ActiveCall, Status> {
        let policy = match self.plan(&prepared, false) {
            Plan::Retry(policy) | Plan::Hedge(_, policy) => policy,
        };
        let start = |client: Client, prepared| async move {
            client.start(prepared).await.map_err(Failed::unsent)
        };
        self.retry_loop(&policy, prepared, start).await
    }

    /// The policy a call follows: its options' hedging or retry policy,
    /// else its method's, else the client's. Hedging only when `can_hedge`
    /// and the call is idempotent.
    fn plan(&self, prepared: &Prepared, can_hedge: bool) -> Plan {
        let cfg = &self.inner.cfg.retry;
        let call = &prepared.retry;
        fn method<P>(m: &HashMap<String, Arc<P>>, path: &str) -> Option<Arc<P>> {
            (!m.is_empty()).then(|| m.get(path).cloned()).flatten()
        }
        let hedging = match &call.policy {
            Some(_) => call.hedging.clone(),
            None => call
                .hedging
                .clone()
                .or_else(|| method(&cfg.hedging, prepared.path)),
        };
        let policy = call
            .policy
            .clone()
            .or_else(|| method(&cfg.methods, prepared.path));
        let policy = policy.unwrap_or_else(|| cfg.policy.clone());
        match hedging {
            Some(hedging) if call.idempotent && can_hedge => Plan::Hedge(hedging, policy),
            Some(_) => {
                tracing::warn!(
                    path = prepared.path,
                    "hedging ignored: only unary and server-streaming calls to idempotent \
                     methods are hedged"
                );
                Plan::Retry(policy)
            }
            None => Plan::Retry(policy),
        }
    }

    /// The request of attempt `n` (0 for the first): the first one's, with
    /// `grpc-previous-rpc-attempts` from the second on.
    fn attempt_request(prepared: &Prepared, n: u32) -> Prepared {
        let mut p = prepared.clone();
        if n > 0 {
            p.metadata.remove(PREVIOUS_ATTEMPTS);
            // A decimal number is always a valid metadata value.
            let _ = p.metadata.insert(PREVIOUS_ATTEMPTS, &n.to_string());
        }
        p
    }

    /// Attempts a call one after the other until one succeeds or the
    /// policy gives up (returning the last attempt's status).
    async fn retry_loop<T, F, Fut>(
        &self,
        policy: &RetryPolicy,
        prepared: Prepared,
        attempt: F,
    ) -> Result<T, Status>
    where
        F: Fn(Client, Prepared) -> Fut,
        Fut: Future<Output = Result<T, Failed>>,
    {
        let mut attempts = 0;
        let mut after_pushback = false;
        loop {
            let request = Self::attempt_request(&prepared, attempts);
            let result = attempt(self.clone(), request).await;
            attempts += 1;
            let failed = match result {
                Ok(value) => {
                    self.throttle_success();
                    return Ok(value);
                }
                Err(failed) => failed,
            };
            if counts_as_failure(&failed.failure, |c| policy.is_retryable(c)) {
                self.throttle_failure();
            }
            let state = RetryState {
                attempts,
                idempotent: prepared.retry.idempotent,
                throttle_allows: self.throttle_allows(),
                remaining: prepared
                    .deadline
                    .map(|d| d.saturating_duration_since(Instant::now())),
                fraction: self.random_fraction(),
                after_pushback,
            };
            match decide(policy, &failed.failure, &state) {
                Decision::Retry(wait) => {
                    tracing::debug!(
                        path = prepared.path,
                        attempts,
                        code = failed.status.code().as_str(),
                        wait_us = wait.as_micros() as u64,
                        "retrying"
                    );
                    after_pushback = failed.failure.pushback.is_some();
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp(why) => {
                    if attempts > 1 {
                        tracing::debug!(path = prepared.path, attempts, ?why, "not retrying");
                    }
                    return Err(failed.status);
                }
            }
        }
    }

    /// Hedges a call: attempts start one `delay` apart (at once after a
    /// non-fatal failure) until one answers; the first answer wins and
    /// the other attempts are cancelled (their tasks are aborted when the
    /// set is dropped, which resets their streams).
    async fn hedge_loop<T, F, Fut>(
        &self,
        policy: &HedgingPolicy,
        prepared: Prepared,
        attempt: F,
    ) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Fn(Client, Prepared) -> Fut,
        Fut: Future<Output = Result<T, Failed>> + Send + 'static,
    {
        let mut running = JoinSet::new();
        let mut started = 0;
        let mut next = Some(Instant::now());
        let mut last: Option<Status> = None;
        loop {
            if next.is_some_and(|at| at <= Instant::now()) {
                if started > 0 && !self.throttle_allows() {
                    tracing::debug!(path = prepared.path, started, "hedge throttled");
                    next = None;
                } else {
                    let request = Self::attempt_request(&prepared, started);
                    let span = tracing::Span::current();
                    running.spawn(attempt(self.clone(), request).instrument(span));
                    started += 1;
                    next = (started < policy.attempts()).then(|| after(policy.delay()));
                }
            }
            if prepared.deadline.is_some_and(|d| d <= Instant::now()) {
                next = None;
            }
            if running.is_empty() && next.is_none() {
                return Err(last.unwrap_or_else(|| {
                    Status::unavailable(format!("{}: no attempt could be sent", prepared.path))
                }));
            }
            let wake = next.unwrap_or_else(Instant::now);
            let joined = tokio::select! {
                joined = running.join_next(), if !running.is_empty() => joined,
                () = tokio::time::sleep_until(wake.into()), if next.is_some() => continue,
            };
            let failed = match joined {
                Some(Ok(Ok(value))) => {
                    self.throttle_success();
                    return Ok(value);
                }
                Some(Ok(Err(failed))) => failed,
                Some(Err(e)) => {
                    return Err(Status::internal(format!(
                        "{}: a hedged attempt failed: {e}",
                        prepared.path
                    )))
                }
                None => continue,
            };
            if counts_as_failure(&failed.failure, |c| policy.is_non_fatal(c)) {
                self.throttle_failure();
            }
            match hedge_after_failure(policy, &failed.failure) {
                HedgeStep::Fatal => return Err(failed.status),
                HedgeStep::NoMore => next = None,
                HedgeStep::Next(wait) => {
                    if next.is_some() {
                        next = Some(after(wait));
                    }
                }
            }
            last = Some(failed.status);
        }
    }

    fn throttle_success(&self) {
        let Some(throttle) = self.inner.cfg.retry.throttle else {
            return;
        };
        let tokens = &self.inner.tokens;
        // A full bucket (the usual case) is not written to.
        if tokens.load(Ordering::Relaxed) < throttle.full() {
            let _ = tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(throttle.on_success(t))
            });
        }
    }

    fn throttle_failure(&self) {
        if let Some(throttle) = self.inner.cfg.retry.throttle {
            let _ = self
                .inner
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(throttle.on_failure(t))
                });
        }
    }

    fn throttle_allows(&self) -> bool {
        self.inner
            .cfg
            .retry
            .throttle
            .is_none_or(|t| t.allows_retry(self.inner.tokens.load(Ordering::Acquire)))
    }

    /// A random fraction in `[0, 1)` for the jitter.
    fn random_fraction(&self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The instant `wait` from now; a century from now when `wait` is too
/// large to represent (a hedging delay of `Duration::MAX`: never).
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
