//! Interceptors on both sides, and the bearer-token example built on them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use greeter::auth::{bearer_token, BearerAuth, CALLER_KEY};
use greeter::{CountRequest, GreeterClient, GreeterServer, HelloRequest};
use knafeh::{CallInfo, CallOptions, Code, Context, Status};
use knafeh_tests::{bounded, Certs};

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
