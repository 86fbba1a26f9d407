//! Retries, hedging and retry throttling end to end, against a flaky
//! service that fails its first calls on purpose and records what every
//! attempt saw (PROTOCOL.md §8.5).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knafeh::{
    CallOptions, Code, Context, HedgingPolicy, RetryPolicy, ServerHandle, Status, Streaming,
};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Req {
    /// The first `fail` attempts fail with `UNAVAILABLE`.
    fail: usize,
    /// `grpc-retry-pushback-ms` sent with those failures.
    pushback: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Which attempt answered (0 for the first).
    attempt: usize,
}

#[knafeh::service(package = "knafeh.retry")]
pub trait Flaky {
    /// Not idempotent: fails the first `fail` attempts.
    async fn once(&self, req: Req, ctx: Context) -> Result<Reply, Status>;
    /// Idempotent: fails the first `fail` attempts.
    #[knafeh(idempotent)]
    async fn again(&self, req: Req, ctx: Context) -> Result<Reply, Status>;
    /// Idempotent: the first attempt waits until it is cancelled; the
    /// others answer at once.
    #[knafeh(idempotent)]
    async fn slow_first(&self, req: Req, ctx: Context) -> Result<Reply, Status>;
    /// Idempotent, server streaming: the first `fail` attempts fail before
    /// any message; the next sends one message and then fails.
    #[knafeh(idempotent)]
    async fn items(&self, req: Req, ctx: Context) -> Result<Streaming<Reply>, Status>;
    /// Idempotent, client streaming: fails the first `fail` attempts.
    #[knafeh(idempotent)]
    async fn gather(&self, req: Streaming<Req>, ctx: Context) -> Result<Reply, Status>;
}

/// What the flaky service saw.
#[derive(Default)]
struct Seen {
    attempts: AtomicUsize,
    /// `grpc-previous-rpc-attempts` of every attempt, in order.
    previous: Mutex<Vec<Option<String>>>,
    /// Time left until the deadline, for every attempt.
    remaining: Mutex<Vec<Option<Duration>>>,
    /// Set when the first attempt of `slow_first` was cancelled.
    cancelled: AtomicBool,
    cancelled_notify: Notify,
    /// When set, every attempt fails (for the throttling test).
    fail_all: AtomicBool,
}

#[derive(Clone, Default)]
struct FlakyImpl(Arc<Seen>);

impl FlakyImpl {
    /// Counts an attempt; `Err` when it is to fail.
    fn attempt(&self, req: &Req, ctx: &Context) -> Result<usize, Status> {
        let n = self.0.attempts.fetch_add(1, Ordering::SeqCst);
        let previous = ctx
            .metadata()
            .get("grpc-previous-rpc-attempts")
            .map(str::to_owned);
        self.0.previous.lock().unwrap().push(previous);
        self.0.remaining.lock().unwrap().push(ctx.time_remaining());
        if n < req.fail || self.0.fail_all.load(Ordering::SeqCst) {
            let mut status = Status::unavailable(format!("attempt {n} fails"));
            if let Some(ms) = &req.pushback {
                status
                    .metadata_mut()
                    .insert("grpc-retry-pushback-ms", ms)
                    .unwrap();
            }
            return Err(status);
        }
        Ok(n)
    }
}

/// Records the cancellation of the attempt holding it.
struct OnDrop(Arc<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.cancelled_notify.notify_waiters();
    }
}

impl Flaky for FlakyImpl {
    async fn once(&self, req: Req, ctx: Context) -> Result<Reply, Status> {
        let attempt = self.attempt(&req, &ctx)?;
        Ok(Reply { attempt })
    }

    async fn again(&self, req: Req, ctx: Context) -> Result<Reply, Status> {
        let attempt = self.attempt(&req, &ctx)?;
        Ok(Reply { attempt })
    }

    async fn slow_first(&self, req: Req, ctx: Context) -> Result<Reply, Status> {
        let attempt = self.attempt(&req, &ctx)?;
        if attempt == 0 {
            let _guard = OnDrop(self.0.clone());
            std::future::pending::<()>().await;
        }
        Ok(Reply { attempt })
    }

    async fn items(&self, req: Req, ctx: Context) -> Result<Streaming<Reply>, Status> {
        let attempt = self.attempt(&req, &ctx)?;
        let (tx, rx) = Streaming::channel(2);
        tokio::spawn(async move {
            let _ = tx.send(Reply { attempt }).await;
            let _ = tx
                .send_error(Status::unavailable("failed after the first message"))
                .await;
        });
        Ok(rx)
    }

    async fn gather(&self, mut reqs: Streaming<Req>, ctx: Context) -> Result<Reply, Status> {
        let Some(Ok(req)) = reqs.message().await else {
            return Err(Status::invalid_argument("no request"));
        };
        let attempt = self.attempt(&req, &ctx)?;
        Ok(Reply { attempt })
    }
}

struct Fixture {
    server: ServerHandle,
    seen: Arc<Seen>,
    certs: Certs,
}

impl Fixture {
    async fn start() -> Fixture {
        count_retry_events();
        let certs = Certs::new();
        let service = FlakyImpl::default();
        let seen = service.0.clone();
        let server = certs
            .server_builder()
            .add_service(FlakyServer::new(service))
            .start()
            .await
            .unwrap();
        Fixture {
            server,
            seen,
            certs,
        }
    }

    /// A client without retry throttling (so that attempts can be
    /// counted exactly) unless `configure` turns it on.
    async fn client(
        &self,
        configure: impl FnOnce(knafeh::ClientBuilder) -> knafeh::ClientBuilder,
    ) -> FlakyClient {
        let builder = self
            .certs
            .client_builder(self.server.local_addr().to_string())
            .no_retry_throttling();
        FlakyClient::new(configure(builder).connect().await.unwrap())
    }

    fn attempts(&self) -> usize {
        self.seen.attempts.load(Ordering::SeqCst)
    }

    fn previous(&self) -> Vec<Option<String>> {
        self.seen.previous.lock().unwrap().clone()
    }

    fn reset(&self) {
        self.seen.attempts.store(0, Ordering::SeqCst);
        self.seen.previous.lock().unwrap().clear();
    }
}

fn fail(n: usize) -> Req {
    Req {
        fail: n,
        pushback: None,
    }
}

/// Backoff short enough for tests.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy::default().max_attempts(attempts).backoff(
        Duration::from_millis(5),
        Duration::from_millis(5),
        1.0,
    )
}

fn previous(ns: &[Option<&str>]) -> Vec<Option<String>> {
    ns.iter().map(|n| n.map(str::to_owned)).collect()
}

#[tokio::test]
async fn an_idempotent_method_is_retried_until_it_succeeds_or_the_attempts_run_out() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f.client(|b| b.retry_policy(quick(4))).await;
        // Three failures, then the fourth attempt answers.
        let reply = c.again(fail(3)).await.unwrap();
        assert_eq!(reply, Reply { attempt: 3 });
        assert_eq!(f.attempts(), 4);
        assert_eq!(
            f.previous(),
            previous(&[None, Some("1"), Some("2"), Some("3")])
        );
        // Four failures: the policy's four attempts are spent.
        f.reset();
        let err = c.again(fail(4)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert_eq!(err.message(), "attempt 3 fails");
        assert_eq!(f.attempts(), 4);
        // RetryPolicy::none: one attempt.
        f.reset();
        let opts = CallOptions::new().retry_policy(RetryPolicy::none());
        c.again_with(fail(1), opts).await.unwrap_err();
        assert_eq!(f.attempts(), 1);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_non_idempotent_method_that_reached_its_handler_is_not_retried() {
    bounded(async {
        let f = Fixture::start().await;
        // The default policy.
        let c = f.client(|b| b).await;
        let err = c.once(fail(1)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert_eq!(f.attempts(), 1);
        // A policy listing UNAVAILABLE, per client, per method and per
        // call, and hedging: still one attempt.
        f.reset();
        let path = FlakyClient::ONCE;
        let c = f
            .client(|b| {
                b.retry_policy(quick(5))
                    .method_retry_policy(path, quick(5))
                    .method_hedging(path, HedgingPolicy::new(3, Duration::from_millis(1)))
            })
            .await;
        c.once(fail(1)).await.unwrap_err();
        let opts = CallOptions::new().retry_policy(quick(5));
        c.once_with(fail(2), opts).await.unwrap_err();
        assert_eq!(f.attempts(), 2, "one attempt per call");
        // Unless the caller declares the call idempotent.
        f.reset();
        let opts = CallOptions::new().idempotent(true);
        assert_eq!(
            c.once_with(fail(1), opts).await.unwrap().get_ref().attempt,
            1
        );
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_method_policy_overrides_the_clients_and_call_options_override_both() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f
            .client(|b| {
                b.retry_policy(RetryPolicy::none())
                    .method_retry_policy(FlakyClient::AGAIN, quick(2))
            })
            .await;
        assert_eq!(c.again(fail(1)).await.unwrap().attempt, 1);
        assert_eq!(f.attempts(), 2);
        f.reset();
        let opts = CallOptions::new().retry_policy(quick(3));
        assert_eq!(
            c.again_with(fail(2), opts).await.unwrap().get_ref().attempt,
            2
        );
        assert_eq!(f.attempts(), 3);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn throttling_stops_retries_while_calls_fail_and_recovers_after_successes() {
    bounded(async {
        let f = Fixture::start().await;
        // 4 tokens, 1 per success: retries only while more than 2 are left.
        let c = f
            .client(|b| b.retry_policy(quick(2)).retry_throttling(4, 1.0))
            .await;
        f.seen.fail_all.store(true, Ordering::SeqCst);
        let mut per_call = vec![];
        for _ in 0..4 {
            let before = f.attempts();
            c.again(fail(0)).await.unwrap_err();
            per_call.push(f.attempts() - before);
        }
        // 4 -> 3 (retry) -> 2; then 1, 0 and 0 without retries.
        assert_eq!(per_call, [2, 1, 1, 1]);
        f.seen.fail_all.store(false, Ordering::SeqCst);
        for _ in 0..4 {
            c.again(fail(0)).await.unwrap();
        }
        // Full again: a failing call is retried.
        f.seen.fail_all.store(true, Ordering::SeqCst);
        let before = f.attempts();
        c.again(fail(0)).await.unwrap_err();
        assert_eq!(f.attempts() - before, 2);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn pushback_sets_the_wait_or_stops_retries() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f.client(|b| b.retry_policy(quick(3))).await;
        let stop = Req {
            fail: 1,
            pushback: Some("-1".into()),
        };
        c.again(stop).await.unwrap_err();
        assert_eq!(f.attempts(), 1);
        f.reset();
        let wait = Req {
            fail: 1,
            pushback: Some("30".into()),
        };
        let started = Instant::now();
        assert_eq!(c.again(wait).await.unwrap().attempt, 1);
        assert!(started.elapsed() >= Duration::from_millis(30));
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn hedging_takes_the_first_answer_and_cancels_the_slow_attempt() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f.client(|b| b).await;
        // Two attempts, so that the second is the one that answers.
        let opts = CallOptions::new().hedging(HedgingPolicy::new(2, Duration::from_millis(50)));
        let reply = c.slow_first_with(fail(0), opts).await.unwrap();
        assert_eq!(reply.get_ref(), &Reply { attempt: 1 });
        wait_for(&f.seen.cancelled, &f.seen.cancelled_notify).await;
        assert_eq!(f.previous(), previous(&[None, Some("1")]));
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_hedged_failure_sends_the_next_attempt_at_once() {
    bounded(async {
        let f = Fixture::start().await;
        // A delay far beyond the test's bound: only the failures can make
        // the next attempts start.
        let hedging = HedgingPolicy::new(3, Duration::from_secs(3600));
        let c = f
            .client(|b| b.method_hedging(FlakyClient::AGAIN, hedging))
            .await;
        assert_eq!(c.again(fail(2)).await.unwrap().attempt, 2);
        // A fatal code ends the call.
        f.reset();
        let hedging = HedgingPolicy::new(3, Duration::from_secs(3600)).non_fatal(&[]);
        let opts = CallOptions::new().hedging(hedging);
        c.again_with(fail(2), opts).await.unwrap_err();
        assert_eq!(f.attempts(), 1);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_hedging_delay_too_large_to_represent_means_no_more_hedges() {
    bounded(async {
        let f = Fixture::start().await;
        let hedging = HedgingPolicy::new(3, Duration::MAX);
        let c = f
            .client(|b| b.method_hedging(FlakyClient::AGAIN, hedging))
            .await;
        // One attempt answers; no timer past the end of time (it used to
        // panic adding Duration::MAX to the clock).
        assert_eq!(c.again(fail(0)).await.unwrap().attempt, 0);
        // A failure still sends the next attempt at once.
        f.reset();
        assert_eq!(c.again(fail(1)).await.unwrap().attempt, 1);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_stream_is_retried_before_its_response_headers_only() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f.client(|b| b.retry_policy(quick(5))).await;
        // Attempt 0 fails before any message; attempt 1 sends one and fails.
        let mut items = c.items(fail(1)).await.unwrap();
        assert_eq!(items.message().await.unwrap().unwrap().attempt, 1);
        let err = items.message().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(items.message().await.is_none());
        assert_eq!(f.attempts(), 2, "no retry after the first message");
        // A request stream that reached the handler is not retried.
        f.reset();
        let err = c.gather(Streaming::iter([fail(1)])).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert_eq!(f.attempts(), 1);
        f.server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn all_attempts_share_the_calls_deadline() {
    bounded(async {
        let f = Fixture::start().await;
        let c = f
            .client(|b| {
                b.retry_policy(RetryPolicy::default().max_attempts(5).backoff(
                    Duration::from_millis(400),
                    Duration::from_millis(400),
                    1.0,
                ))
            })
            .await;
        let timeout = Duration::from_millis(600);
        let started = Instant::now();
        let opts = CallOptions::new().timeout(timeout);
        let err = c.again_with(fail(usize::MAX), opts).await.unwrap_err();
        // The client gives up instead of waiting past the deadline (with
        // the last attempt's status, or the deadline's if that attempt
        // started just before it).
        assert!(
            matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{err}"
        );
        let took = started.elapsed();
        assert!(took < timeout + Duration::from_millis(200), "{took:?}");
        // Every attempt had less time than the one before it.
        let remaining = f.seen.remaining.lock().unwrap().clone();
        assert!(!remaining.is_empty());
        let remaining: Vec<Duration> = remaining.into_iter().map(Option::unwrap).collect();
        assert!(remaining[0] <= timeout);
        assert!(remaining.windows(2).all(|w| w[1] <= w[0]), "{remaining:?}");
        f.server.shutdown().await;
    })
    .await
}

/// A call made while nothing answers at the server's address is retried
/// once the server listens: the first dial fails (nothing was sent), the
/// retry reaches the handler, which sees `grpc-previous-rpc-attempts`.
#[tokio::test]
async fn a_call_that_could_not_be_sent_is_retried_transparently() {
    count_retry_events();
    bounded(async {
        let certs = Certs::new();
        // Holds the port and takes the first dial's Initial without
        // answering it.
        let gate = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = gate.local_addr().unwrap();
        let policy = RetryPolicy::default().max_attempts(5).backoff(
            Duration::from_secs(2),
            Duration::from_secs(2),
            1.0,
        );
        let client = certs
            .client_builder(addr.to_string())
            .connect_timeout(Duration::from_millis(300))
            .retry_policy(policy)
            .connect_lazy();
        let c = FlakyClient::new(client);
        // Not idempotent: only a transparent retry can make it succeed.
        let call = tokio::spawn(async move { c.once(fail(0)).await });
        let mut buf = [0u8; 2048];
        gate.recv_from(&mut buf).await.unwrap();
        drop(gate);
        let service = FlakyImpl::default();
        let seen = service.0.clone();
        let server = certs
            .server_builder()
            .bind(addr)
            .add_service(FlakyServer::new(service))
            .start()
            .await
            .unwrap();
        let reply = call.await.unwrap().unwrap();
        assert_eq!(reply.attempt, 0, "the handler ran once");
        let seen_previous = seen.previous.lock().unwrap().clone();
        assert_eq!(seen_previous.len(), 1);
        assert!(
            seen_previous[0].as_deref().is_some_and(|n| n != "0"),
            "{seen_previous:?}"
        );
        server.shutdown().await;
    })
    .await
}

thread_local! {
    /// The client's "retrying" events (its retry decisions) on this thread.
    static RETRY_EVENTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts "retrying" events per thread.
struct RetryEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RetryEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct IsRetry(bool);
        impl tracing::field::Visit for IsRetry {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" && format!("{v:?}") == "retrying" {
                    self.0 = true;
                }
            }
        }
        let mut is_retry = IsRetry(false);
        event.record(&mut is_retry);
        if is_retry.0 {
            RETRY_EVENTS.with(|n| n.set(n.get() + 1));
        }
    }
}

/// Installs [`RetryEvents`] as the process's subscriber, once. (A scoped
/// subscriber misses events now and then while other tests run: tracing
/// caches each event's interest process-wide.)
fn count_retry_events() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(RetryEvents),
        );
    });
}

fn retry_events() -> usize {
    RETRY_EVENTS.with(|n| n.get())
}

/// A server shutting down refuses new streams with `H3_REQUEST_REJECTED`:
/// such a call never reached a handler, so even a non-idempotent one is
/// retried (here, against the same draining server, until the attempts
/// run out).
#[tokio::test]
async fn a_refused_stream_is_retried_even_for_a_non_idempotent_method() {
    // The test runs on one thread, where the client's retry loop runs too.
    count_retry_events();
    bounded(async {
        let certs = Certs::new();
        let service = FlakyImpl::default();
        let seen = service.0.clone();
        let server = certs
            .server_builder()
            .drain_timeout(Duration::from_secs(50))
            .add_service(FlakyServer::new(service))
            .start()
            .await
            .unwrap();
        let addr = server.local_addr();
        // A call in progress keeps the server draining.
        let holder = FlakyClient::new(client_for(&certs, addr).await);
        let held = tokio::spawn(async move { holder.slow_first(fail(0)).await });
        eventually(|| seen.attempts.load(Ordering::SeqCst) == 1).await;
        let watcher = knafeh_tests::raw::RawConn::connect(addr).await.unwrap();
        let shutdown = tokio::spawn(server.shutdown());
        eventually(|| watcher.goaway().is_some()).await;
        // Every connection dialled from now on is refused.
        for (policy, retried) in [(quick(3), 2), (RetryPolicy::none(), 0)] {
            let before = retry_events();
            let c = FlakyClient::new(
                certs
                    .client_builder(addr.to_string())
                    .retry_policy(policy)
                    .connect_lazy(),
            );
            let err = c.once(fail(0)).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{err}");
            assert!(err.message().contains("refused the call"), "{err}");
            assert_eq!(retry_events() - before, retried, "{err}");
        }
        assert_eq!(seen.attempts.load(Ordering::SeqCst), 1, "no handler ran");
        held.abort();
        shutdown.await.unwrap();
    })
    .await
}
