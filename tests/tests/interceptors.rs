//! Interceptors on both sides, and the bearer-token example built on them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greeter::auth::{bearer_token, BearerAuth, RefreshingBearerAuth, CALLER_KEY};
use greeter::{CountRequest, GreeterClient, GreeterServer, HelloRequest};
use knafeh::{
    AsyncInterceptor, CallInfo, CallOptions, Code, Context, InterceptFuture, Interceptor, Status,
    Streaming,
};
use knafeh_tests::{bounded, client_for, eventually, raw, start, wait_for, Certs};
use tokio::sync::Notify;

async fn greeter_client(certs: &Certs, addr: &str, token: Option<&str>) -> GreeterClient {
    let mut b = certs.client_builder(addr);
    if let Some(t) = token {
        b = b.interceptor(bearer_token(t).unwrap());
    }
    GreeterClient::new(b.connect_lazy())
}

#[tokio::test]
async fn bearer_tokens_authenticate_and_authorise() {
    bounded(async {
        let certs = Certs::new();
        let auth = BearerAuth::new().allow_all("ops", "ops-token").allow(
            "reader",
            "reader-token",
            &["count_to"],
        );
        let server = certs
            .server_builder()
            .interceptor(auth)
            .add_service(GreeterServer::new(greeter::MyGreeter))
            .start()
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let hello = || HelloRequest { name: "Ada".into() };

        // No token, a malformed header, an unknown token.
        let anonymous = greeter_client(&certs, &addr, None).await;
        let err = anonymous.say_hello(hello()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert_eq!(err.metadata().get("www-authenticate"), Some("Bearer"));
        let mut opts = CallOptions::new();
        opts.metadata_mut()
            .insert("authorization", "Basic abc")
            .unwrap();
        let err = anonymous.say_hello_with(hello(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("Bearer"), "{err:?}");
        let stranger = greeter_client(&certs, &addr, Some("guess")).await;
        let err = stranger.say_hello(hello()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        // Refused streams too, before any item.
        let err = stranger.count_to(CountRequest { n: 3 }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

        // A known token, for a method it may not call, and one it may.
        let reader = greeter_client(&certs, &addr, Some("reader-token")).await;
        let err = reader.say_hello(hello()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("reader"), "{err:?}");
        let mut counts = reader.count_to(CountRequest { n: 2 }).await.unwrap();
        let mut got = Vec::new();
        while let Some(c) = counts.message().await {
            got.push(c.unwrap().value);
        }
        assert_eq!(got, [1, 2]);

        // Unknown methods are not revealed to callers without a token.
        let raw = certs.client_builder(&addr).connect_lazy();
        let err = raw
            .unary::<HelloRequest, greeter::HelloReply>(
                "/helloworld.Greeter/nope",
                &hello(),
                CallOptions::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

        let ops = greeter_client(&certs, &addr, Some("ops-token")).await;
        assert_eq!(ops.say_hello(hello()).await.unwrap().message, "Hello, Ada!");
        server.shutdown().await;
    })
    .await
}

/// A probe service that reports the metadata and deadline it saw.
#[knafeh::service(package = "intercept")]
trait Seen {
    async fn seen(&self, req: String, ctx: Context) -> Result<String, Status>;
}

struct SeenImpl;

impl Seen for SeenImpl {
    async fn seen(&self, req: String, ctx: Context) -> Result<String, Status> {
        Ok(format!(
            "{req}|caller={}|client-added={}|deadline={}",
            ctx.metadata().get(CALLER_KEY).unwrap_or("-"),
            ctx.metadata().get("x-client-added").unwrap_or("-"),
            ctx.deadline().is_some()
        ))
    }
}

/// The server interceptor of the test below: logs what it sees, adds
/// oversized response metadata on request, refuses `x-deny`, and sets
/// metadata a client cannot forge.
fn server_interceptor(log: &Mutex<Vec<String>>, call: &mut CallInfo) -> Result<(), Status> {
    log.lock().unwrap().push(format!(
        "{} {} {} deadline={} peer={}",
        call.path(),
        call.service(),
        call.method(),
        call.deadline().is_some(),
        call.peer_addr().is_some_and(|p| p.ip().is_loopback()),
    ));
    if call.metadata().get("x-big-response").is_some() {
        // 5 x 8,000 bytes: over the client's 32 KiB header limit.
        for i in 0..5 {
            let v = "v".repeat(8000);
            call.response_metadata_mut()
                .insert(&format!("x-big{i}"), &v)
                .unwrap();
        }
    }
    if call.metadata().get("x-deny").is_some() {
        call.response_metadata_mut()
            .insert("x-why", "denied")
            .unwrap();
        return Err(Status::permission_denied("x-deny was set"));
    }
    // A client cannot forge what the server adds.
    call.metadata_mut()
        .insert(CALLER_KEY, "server-set")
        .unwrap();
    call.response_metadata_mut()
        .insert("x-seen-by", "interceptor")
        .unwrap();
    Ok(())
}

/// Header blocks over the peer's limit: refused before sending on the
/// client, replaced by INTERNAL on the server; the connection lives.
async fn header_blocks_over_the_limit_are_refused(seen: &SeenClient) {
    let mut opts = CallOptions::new();
    for i in 0..5 {
        opts.metadata_mut()
            .insert(&format!("x-big{i}"), &"v".repeat(8000))
            .unwrap();
    }
    let err = seen.seen_with("d".into(), opts).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most"), "{err:?}");
    let mut opts = CallOptions::new();
    opts.metadata_mut().insert("x-big-response", "1").unwrap();
    let err = seen.seen_with("e".into(), opts).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(err.message().contains("header limit"), "{err:?}");
    assert!(seen.seen("f".into()).await.is_ok());
}

#[tokio::test]
async fn interceptors_see_the_call_edit_metadata_and_refuse() {
    bounded(async {
        let certs = Certs::new();
        // What the server interceptor saw: path, service, method, deadline
        // and peer of each call.
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let server_log = log.clone();
        let server = certs
            .server_builder()
            .interceptor(move |call: &mut CallInfo| server_interceptor(&server_log, call))
            .add_service(SeenServer::new(SeenImpl))
            .start()
            .await
            .unwrap();

        let client = certs
            .client_builder(server.local_addr().to_string())
            .interceptor(|call: &mut CallInfo| {
                if call.metadata().get("x-local-refuse").is_some() {
                    return Err(Status::failed_precondition("refused locally"));
                }
                call.metadata_mut()
                    .insert("x-client-added", "yes")
                    .map_err(|e| Status::internal(e.to_string()))
            })
            .connect()
            .await
            .unwrap();
        let seen = SeenClient::new(client);

        let mut opts = CallOptions::new().timeout(Duration::from_secs(30));
        opts.metadata_mut().insert(CALLER_KEY, "forged").unwrap();
        let resp = seen.seen_with("a".into(), opts).await.unwrap();
        assert_eq!(resp.metadata().get("x-seen-by"), Some("interceptor"));
        assert_eq!(
            resp.into_inner(),
            "a|caller=server-set|client-added=yes|deadline=true"
        );

        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-deny", "1").unwrap();
        let err = seen.seen_with("b".into(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.metadata().get("x-why"), Some("denied"));

        // Refused by the client interceptor: never sent.
        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-local-refuse", "1").unwrap();
        let err = seen.seen_with("c".into(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.message(), "refused locally");

        header_blocks_over_the_limit_are_refused(&seen).await;

        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "/intercept.Seen/seen intercept.Seen seen deadline=true peer=true",
                "/intercept.Seen/seen intercept.Seen seen deadline=false peer=true",
                "/intercept.Seen/seen intercept.Seen seen deadline=false peer=true",
                "/intercept.Seen/seen intercept.Seen seen deadline=false peer=true",
            ]
        );
        server.shutdown().await;
    })
    .await
}

// Asynchronous interceptors.

/// A service whose handlers count their calls and answer with the
/// `x-order` metadata they saw.
#[knafeh::service(package = "intercept")]
trait Door {
    async fn hit(&self, req: String, ctx: Context) -> Result<String, Status>;
    async fn gather(&self, req: Streaming<String>, ctx: Context) -> Result<String, Status>;
}

#[derive(Clone, Default)]
struct DoorImpl {
    handled: Arc<AtomicUsize>,
}

impl Door for DoorImpl {
    async fn hit(&self, req: String, ctx: Context) -> Result<String, Status> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let order = ctx.metadata().get("x-order").unwrap_or("-");
        Ok(format!("{req}|{order}"))
    }

    async fn gather(&self, mut req: Streaming<String>, ctx: Context) -> Result<String, Status> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let mut all = String::new();
        while let Some(item) = req.message().await {
            all.push_str(&item?);
        }
        let order = ctx.metadata().get("x-order").unwrap_or("-");
        Ok(format!("{all}|{order}"))
    }
}

/// What a waiting interceptor shows the test: how many calls entered it,
/// how many of its futures were dropped before finishing, and the gate
/// the test opens.
#[derive(Default)]
struct Gate {
    opened: AtomicBool,
    open: Notify,
    entered: AtomicUsize,
    dropped: AtomicUsize,
    changed: Notify,
}

impl Gate {
    /// Waits until the test opens the gate; counts the entry, and the
    /// drop if the future is dropped first.
    async fn pass(self: Arc<Self>) {
        let mut guard = DropCount {
            gate: self.clone(),
            finished: false,
        };
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        wait_for(&self.opened, &self.open).await;
        guard.finished = true;
    }

    fn release(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.open.notify_waiters();
    }

    /// Waits until `counter` (one of this gate's) reaches `n`.
    async fn wait(&self, counter: &AtomicUsize, n: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if counter.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }
}

struct DropCount {
    gate: Arc<Gate>,
    finished: bool,
}

impl Drop for DropCount {
    fn drop(&mut self) {
        if !self.finished {
            self.gate.dropped.fetch_add(1, Ordering::SeqCst);
            self.gate.changed.notify_waiters();
        }
    }
}

/// An asynchronous interceptor (a closure) that makes calls carrying
/// `x-wait` wait at `gate`, then passes them on to `then`.
fn waiting(
    gate: &Arc<Gate>,
    then: fn(CallInfo) -> Result<CallInfo, Status>,
) -> impl AsyncInterceptor {
    let gate = gate.clone();
    move |call: CallInfo| {
        let gate = gate.clone();
        async move {
            if call.metadata().get("x-wait").is_some() {
                gate.pass().await;
            }
            then(call)
        }
    }
}

fn wait_opts() -> CallOptions {
    let mut opts = CallOptions::new();
    opts.metadata_mut().insert("x-wait", "1").unwrap();
    opts
}

/// A Door server with `configure` applied; its handler call count.
async fn door_server(
    certs: &Certs,
    configure: impl FnOnce(knafeh::ServerBuilder) -> knafeh::ServerBuilder,
) -> (knafeh::ServerHandle, Arc<AtomicUsize>) {
    let door = DoorImpl::default();
    let handled = door.handled.clone();
    let server = start(certs, |b| configure(b.add_service(DoorServer::new(door)))).await;
    (server, handled)
}

#[tokio::test]
async fn an_async_interceptor_waits_then_refuses_and_the_handler_never_runs() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let refuse = |_: CallInfo| {
            let mut md = knafeh::Metadata::new();
            md.insert("x-why", "waited").unwrap();
            Err(Status::unauthenticated("no token").with_metadata(md))
        };
        let (server, handled) =
            door_server(&certs, |b| b.async_interceptor(waiting(&gate, refuse))).await;
        let door = DoorClient::new(client_for(&certs, server.local_addr()).await);

        let call = tokio::spawn({
            let door = door.clone();
            async move { door.hit_with("a".into(), wait_opts()).await }
        });
        gate.wait(&gate.entered, 1).await;
        assert!(!call.is_finished());
        gate.release();
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert_eq!(err.metadata().get("x-why"), Some("waited"));
        assert_eq!(handled.load(Ordering::SeqCst), 0);
        assert_eq!(gate.dropped.load(Ordering::SeqCst), 0);
        server.shutdown().await;
    })
    .await
}

/// An asynchronous interceptor implemented by hand (it borrows the call):
/// adds request and response metadata, or refuses `x-deny` with response
/// metadata of its own.
struct Stamp;

impl AsyncInterceptor for Stamp {
    fn intercept<'a>(&'a self, call: &'a mut CallInfo) -> InterceptFuture<'a> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let md = |e: knafeh::MetadataError| Status::internal(e.to_string());
            if call.metadata().get("x-deny").is_some() {
                call.response_metadata_mut()
                    .insert("x-why", "denied")
                    .map_err(md)?;
                return Err(Status::permission_denied("x-deny was set"));
            }
            call.metadata_mut()
                .insert("x-order", "stamped")
                .map_err(md)?;
            call.response_metadata_mut()
                .insert("x-stamp", "yes")
                .map_err(md)?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn an_async_interceptor_adds_request_and_response_metadata() {
    bounded(async {
        let certs = Certs::new();
        let (server, handled) = door_server(&certs, |b| b.async_interceptor(Stamp)).await;
        let door = DoorClient::new(client_for(&certs, server.local_addr()).await);

        let resp = door.hit_with("a".into(), CallOptions::new()).await.unwrap();
        assert_eq!(resp.metadata().get("x-stamp"), Some("yes"));
        assert_eq!(resp.into_inner(), "a|stamped");
        // A client stream too: the interceptor ran before it was read.
        let items = Streaming::iter(["b".to_owned(), "c".to_owned()]);
        let resp = door.gather_with(items, CallOptions::new()).await.unwrap();
        assert_eq!(resp.metadata().get("x-stamp"), Some("yes"));
        assert_eq!(resp.into_inner(), "bc|stamped");

        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-deny", "1").unwrap();
        let err = door.hit_with("d".into(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(err.metadata().get("x-why"), Some("denied"));
        assert_eq!(handled.load(Ordering::SeqCst), 2);
        server.shutdown().await;
    })
    .await
}

type Log = Arc<Mutex<Vec<String>>>;

/// Appends `name` to `x-order` (and to `log`).
fn append(log: &Log, name: &str, call: &mut CallInfo) -> Result<(), Status> {
    log.lock().unwrap().push(name.to_owned());
    let order = match call.metadata().get("x-order") {
        Some(before) => format!("{before},{name}"),
        None => name.to_owned(),
    };
    call.metadata_mut()
        .insert("x-order", &order)
        .map_err(|e| Status::internal(e.to_string()))
}

fn sync_append(log: &Log, name: &'static str) -> impl Interceptor {
    let log = log.clone();
    move |call: &mut CallInfo| append(&log, name, call)
}

fn async_append(log: &Log, name: &'static str) -> impl AsyncInterceptor {
    let log = log.clone();
    move |mut call: CallInfo| {
        let log = log.clone();
        async move {
            tokio::task::yield_now().await;
            append(&log, name, &mut call)?;
            Ok(call)
        }
    }
}

#[tokio::test]
async fn sync_and_async_interceptors_run_in_the_order_they_were_added() {
    bounded(async {
        let certs = Certs::new();
        let log = Log::default();
        let (server, _) = door_server(&certs, |b| {
            b.interceptor(sync_append(&log, "s1"))
                .async_interceptor(async_append(&log, "s2"))
                .interceptor(sync_append(&log, "s3"))
        })
        .await;
        let client = certs
            .client_builder(server.local_addr().to_string())
            .async_interceptor(async_append(&log, "c1"))
            .interceptor(sync_append(&log, "c2"))
            .async_interceptor(async_append(&log, "c3"))
            .connect()
            .await
            .unwrap();
        let door = DoorClient::new(client);
        assert_eq!(door.hit("a".into()).await.unwrap(), "a|c1,c2,c3,s1,s2,s3");
        assert_eq!(*log.lock().unwrap(), ["c1", "c2", "c3", "s1", "s2", "s3"]);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_waiting_interceptor_holds_up_no_other_call_or_connection() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let (server, handled) =
            door_server(&certs, |b| b.async_interceptor(waiting(&gate, Ok))).await;
        let door = DoorClient::new(client_for(&certs, server.local_addr()).await);

        let held = tokio::spawn({
            let door = door.clone();
            async move { door.hit_with("held".into(), wait_opts()).await }
        });
        gate.wait(&gate.entered, 1).await;
        // The same connection, then another one, while the first call waits.
        assert_eq!(server.stats().connections, 1);
        assert_eq!(door.hit("same".into()).await.unwrap(), "same|-");
        let other = DoorClient::new(client_for(&certs, server.local_addr()).await);
        assert_eq!(other.hit("other".into()).await.unwrap(), "other|-");
        assert_eq!(server.stats().connections, 2);
        assert!(!held.is_finished());
        assert_eq!(handled.load(Ordering::SeqCst), 2);

        gate.release();
        assert_eq!(held.await.unwrap().unwrap().into_inner(), "held|-");
        assert_eq!(handled.load(Ordering::SeqCst), 3);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_call_ending_while_its_interceptor_waits_drops_the_interceptor() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let (server, handled) =
            door_server(&certs, |b| b.async_interceptor(waiting(&gate, Ok))).await;
        let door = DoorClient::new(client_for(&certs, server.local_addr()).await);

        // The client cancels.
        let call = tokio::spawn({
            let door = door.clone();
            async move { door.hit_with("a".into(), wait_opts()).await }
        });
        gate.wait(&gate.entered, 1).await;
        call.abort();
        gate.wait(&gate.dropped, 1).await;
        eventually(|| server.stats().active_calls == 0).await;

        // The deadline passes.
        let err = door
            .hit_with("b".into(), wait_opts().timeout(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        gate.wait(&gate.dropped, 2).await;
        eventually(|| server.stats().active_calls == 0).await;

        assert_eq!(handled.load(Ordering::SeqCst), 0);
        // The connection serves on.
        assert_eq!(door.hit("c".into()).await.unwrap(), "c|-");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn client_async_interceptors_edit_or_refuse_before_sending() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let arrived = Arc::new(AtomicUsize::new(0));
        let (server, handled) = door_server(&certs, |b| {
            let arrived = arrived.clone();
            b.interceptor(move |_: &mut CallInfo| {
                arrived.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
        .await;
        let refuse_or_stamp = |mut call: CallInfo| {
            if call.metadata().get("x-refuse").is_some() {
                return Err(Status::permission_denied("refused by the client"));
            }
            call.metadata_mut()
                .insert("x-order", "client-async")
                .unwrap();
            Ok(call)
        };
        let client = certs
            .client_builder(server.local_addr().to_string())
            .async_interceptor(waiting(&gate, refuse_or_stamp))
            .connect_lazy();
        let door = DoorClient::new(client);

        // Refused after waiting: nothing reaches the server.
        let mut opts = wait_opts();
        opts.metadata_mut().insert("x-refuse", "1").unwrap();
        let call = tokio::spawn({
            let door = door.clone();
            async move { door.hit_with("a".into(), opts).await }
        });
        gate.wait(&gate.entered, 1).await;
        gate.release();
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-refuse", "1").unwrap();
        let items = Streaming::iter(["b".to_owned()]);
        let err = door.gather_with(items, opts).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(arrived.load(Ordering::SeqCst), 0);

        // Metadata added, on unary and client-streaming calls.
        assert_eq!(door.hit("c".into()).await.unwrap(), "c|client-async");
        let items = Streaming::iter(["d".to_owned(), "e".to_owned()]);
        assert_eq!(door.gather(items).await.unwrap(), "de|client-async");
        assert_eq!(arrived.load(Ordering::SeqCst), 2);
        assert_eq!(handled.load(Ordering::SeqCst), 2);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_interceptor_still_waiting_at_the_deadline_sends_nothing() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let (server, handled) = door_server(&certs, |b| b).await;
        let client = certs
            .client_builder(server.local_addr().to_string())
            .async_interceptor(waiting(&gate, Ok))
            .connect()
            .await
            .unwrap();
        let door = DoorClient::new(client);
        let opts = wait_opts().timeout(Duration::from_millis(200));
        let err = door.hit_with("a".into(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert_eq!(gate.dropped.load(Ordering::SeqCst), 1);
        assert_eq!(door.hit("b".into()).await.unwrap(), "b|-");
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn refreshing_bearer_auth_loads_tokens_asynchronously_and_caches_them() {
    bounded(async {
        let certs = Certs::new();
        // Each load issues the token of its generation, `token-N`.
        let loads = Arc::new(AtomicUsize::new(0));
        let loader = |loads: Arc<AtomicUsize>| {
            move || {
                let loads = loads.clone();
                async move {
                    tokio::task::yield_now().await;
                    let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(BearerAuth::new().allow_all("ops", &format!("token-{n}")))
                }
            }
        };
        let cached = RefreshingBearerAuth::new(Duration::from_secs(3600), loader(loads.clone()));
        let server = certs
            .server_builder()
            .async_interceptor(cached)
            .add_service(GreeterServer::new(greeter::MyGreeter))
            .start()
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let hello = || HelloRequest { name: "Ada".into() };
        let first = greeter_client(&certs, &addr, Some("token-1")).await;
        for _ in 0..3 {
            assert_eq!(
                first.say_hello(hello()).await.unwrap().message,
                "Hello, Ada!"
            );
        }
        // Kept for an hour: loaded once; a newer token is not known yet.
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let second = greeter_client(&certs, &addr, Some("token-2")).await;
        let err = second.say_hello(hello()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        server.shutdown().await;

        // Kept for no time: every call loads the next generation.
        let loads = Arc::new(AtomicUsize::new(0));
        let server = certs
            .server_builder()
            .async_interceptor(RefreshingBearerAuth::new(
                Duration::ZERO,
                loader(loads.clone()),
            ))
            .add_service(GreeterServer::new(greeter::MyGreeter))
            .start()
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let first = greeter_client(&certs, &addr, Some("token-1")).await;
        assert!(first.say_hello(hello()).await.is_ok());
        let err = first.say_hello(hello()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let third = greeter_client(&certs, &addr, Some("token-3")).await;
        assert!(third.say_hello(hello()).await.is_ok());
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_server_deadline_ends_a_waiting_interceptor() {
    bounded(async {
        let certs = Certs::new();
        let gate = Arc::new(Gate::default());
        let (server, handled) =
            door_server(&certs, |b| b.async_interceptor(waiting(&gate, Ok))).await;
        // A bare client, which never cancels: only the server's deadline
        // ends the call.
        let conn = raw::RawConn::connect(server.local_addr()).await.unwrap();
        let mut headers = raw::headers(DoorClient::HIT, "application/grpc+json");
        headers.extend([("grpc-timeout", "200m"), ("x-wait", "1")]);
        let response = conn
            .open(headers, raw::frame(0, br#""a""#), true)
            .response()
            .await;
        assert_eq!(
            response.grpc_status(),
            Some(Code::DeadlineExceeded as i32),
            "{response:?}"
        );
        assert_eq!(gate.dropped.load(Ordering::SeqCst), 1);
        assert_eq!(handled.load(Ordering::SeqCst), 0);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_panicking_async_interceptor_fails_only_its_call() {
    bounded(async {
        let certs = Certs::new();
        let boom = |call: CallInfo| async move {
            tokio::task::yield_now().await;
            if call.metadata().get("x-boom").is_some() {
                panic!("the interceptor was asked to panic");
            }
            Ok(call)
        };
        let (server, handled) = door_server(&certs, |b| b.async_interceptor(boom)).await;
        let door = DoorClient::new(client_for(&certs, server.local_addr()).await);
        let mut opts = CallOptions::new();
        opts.metadata_mut().insert("x-boom", "1").unwrap();
        let err = door.hit_with("a".into(), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert!(err.message().contains("interceptor"), "{err:?}");
        assert_eq!(door.hit("b".into()).await.unwrap(), "b|-");
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    })
    .await
}
