//! The built-in `knafeh.Health` service over loopback: `check` with every
//! status and for unknown names, `watch` following changes, and what a
//! graceful shutdown does to both.

use std::time::{Duration, Instant};

use greeter::GreeterServer;
use greeter::MyGreeter;
use knafeh::health::{HealthCheckRequest, HealthClient, HealthReporter, ServingStatus};
use knafeh::{Code, ServerHandle, Status, Streaming};
use knafeh_tests::raw::{self, RawConn};
use knafeh_tests::*;

const GREETER: &str = "helloworld.Greeter";

/// A server with the greeter and health, its reporter, and a health client.
async fn health_server(
    certs: &Certs,
    configure: impl FnOnce(knafeh::ServerBuilder) -> knafeh::ServerBuilder,
) -> (ServerHandle, HealthReporter, HealthClient) {
    let reporter = HealthReporter::new();
    let server = start(certs, |b| {
        configure(
            b.add_service(GreeterServer::new(MyGreeter))
                .health(reporter.clone()),
        )
    })
    .await;
    let client = client_for(certs, server.local_addr()).await;
    (server, reporter, HealthClient::new(client))
}

async fn check(client: &HealthClient, service: &str) -> Result<ServingStatus, Status> {
    Ok(client.check(HealthCheckRequest::new(service)).await?.status)
}

async fn next_status(watch: &mut Streaming<knafeh::health::HealthCheckResponse>) -> ServingStatus {
    watch
        .message()
        .await
        .expect("the watch ended early")
        .expect("the watch failed")
        .status
}

#[tokio::test]
async fn check_answers_every_status_the_application_sets() {
    bounded(async {
        let certs = Certs::new();
        let (server, reporter, client) = health_server(&certs, |b| b).await;
        // Marked at start: the whole server and the added service.
        assert_eq!(check(&client, "").await.unwrap(), ServingStatus::Serving);
        assert_eq!(
            check(&client, GREETER).await.unwrap(),
            ServingStatus::Serving
        );
        for status in [
            ServingStatus::NotServing,
            ServingStatus::Unknown,
            ServingStatus::ServiceUnknown,
            ServingStatus::Serving,
        ] {
            reporter.set(GREETER, status);
            reporter.set("custom.Thing", status);
            assert_eq!(check(&client, GREETER).await.unwrap(), status);
            assert_eq!(check(&client, "custom.Thing").await.unwrap(), status);
            assert_eq!(check(&client, "").await.unwrap(), ServingStatus::Serving);
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn check_of_an_unknown_name_is_not_found() {
    bounded(async {
        let certs = Certs::new();
        let (server, reporter, client) = health_server(&certs, |b| b).await;
        let err = check(&client, "no.Such").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(err.message().contains("no.Such"), "{err:?}");
        assert!(
            err.message().contains(GREETER),
            "lists what exists: {err:?}"
        );
        // A removed name is unknown again.
        reporter.remove(GREETER);
        let err = check(&client, GREETER).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn check_speaks_the_documented_json() {
    bounded(async {
        let certs = Certs::new();
        let (server, reporter, _client) = health_server(&certs, |b| b).await;
        reporter.set("x.NotServing", ServingStatus::NotServing);
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        for (request, reply) in [
            (r#"{"service":""}"#, r#"{"status":"SERVING"}"#),
            (r#"{}"#, r#"{"status":"SERVING"}"#),
            (
                r#"{"service":"x.NotServing"}"#,
                r#"{"status":"NOT_SERVING"}"#,
            ),
        ] {
            let r = conn
                .open(
                    raw::headers("/knafeh.Health/check", "application/grpc+json"),
                    raw::frame(0, request.as_bytes()),
                    true,
                )
                .response()
                .await;
            assert_eq!(r.grpc_status(), Some(0), "{request}: {r:?}");
            let messages = r.messages().unwrap();
            assert_eq!(messages.len(), 1, "{r:?}");
            assert_eq!(String::from_utf8_lossy(&messages[0]), reply, "{request}");
        }
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn watch_sees_each_change_in_order() {
    bounded(async {
        let certs = Certs::new();
        let (server, reporter, client) = health_server(&certs, |b| b).await;
        let mut watch = client
            .watch(HealthCheckRequest::new("later.Service"))
            .await
            .unwrap();
        // Unknown names are not an error for watch.
        assert_eq!(next_status(&mut watch).await, ServingStatus::ServiceUnknown);
        for status in [
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::Unknown,
            ServingStatus::Serving,
        ] {
            reporter.set("later.Service", status);
            assert_eq!(next_status(&mut watch).await, status);
        }
        // Setting the same status again sends nothing; the next change does.
        reporter.set("later.Service", ServingStatus::Serving);
        reporter.remove("later.Service");
        assert_eq!(next_status(&mut watch).await, ServingStatus::ServiceUnknown);
        // Other names do not disturb this watch.
        reporter.set(GREETER, ServingStatus::NotServing);
        reporter.set("later.Service", ServingStatus::NotServing);
        assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
        // A watch of the whole server starts with its current status.
        let mut all = client.watch(HealthCheckRequest::new("")).await.unwrap();
        assert_eq!(next_status(&mut all).await, ServingStatus::Serving);
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn shutdown_sends_not_serving_then_ends_watches_without_waiting_for_the_drain() {
    bounded(async {
        let certs = Certs::new();
        let drain = Duration::from_secs(30);
        let (server, reporter, client) = health_server(&certs, |b| b.drain_timeout(drain)).await;
        let mut whole = client.watch(HealthCheckRequest::new("")).await.unwrap();
        let mut greeter = client
            .watch(HealthCheckRequest::new(GREETER))
            .await
            .unwrap();
        assert_eq!(next_status(&mut whole).await, ServingStatus::Serving);
        assert_eq!(next_status(&mut greeter).await, ServingStatus::Serving);
        reporter.set("app.Custom", ServingStatus::Serving);

        let began = Instant::now();
        let shutdown = tokio::spawn(server.shutdown());
        for watch in [&mut whole, &mut greeter] {
            assert_eq!(next_status(watch).await, ServingStatus::NotServing);
            let end = watch
                .message()
                .await
                .expect("an end status after NOT_SERVING");
            let err = end.expect_err("the watch ends with a status");
            assert_eq!(err.code(), Code::Unavailable, "{err:?}");
            assert!(watch.message().await.is_none());
        }
        shutdown.await.unwrap();
        assert!(
            began.elapsed() < drain / 3,
            "shutdown took {:?}: it waited for the watches",
            began.elapsed()
        );
        // Everything the reporter knows is NOT_SERVING now.
        for name in ["", GREETER, "app.Custom"] {
            assert_eq!(
                reporter.status(name),
                Some(ServingStatus::NotServing),
                "{name}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn dropping_the_handle_also_marks_not_serving() {
    bounded(async {
        let certs = Certs::new();
        let (server, reporter, client) = health_server(&certs, |b| b).await;
        let mut watch = client.watch(HealthCheckRequest::new("")).await.unwrap();
        assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
        drop(server);
        assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
        assert!(matches!(watch.message().await, Some(Err(_))));
        assert_eq!(reporter.status(GREETER), Some(ServingStatus::NotServing));
    })
    .await
}

#[tokio::test]
async fn without_a_reporter_health_is_an_unknown_service() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = client_for(&certs, server.local_addr()).await;
        let err = check(&HealthClient::new(client), "").await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_service_named_like_the_builtin_is_refused_at_start() {
    bounded(async {
        let certs = Certs::new();
        // The generated health server is private, so a user service with
        // the same name is made the way a user would: by the macro.
        let err = certs
            .server_builder()
            .add_service(clash::HealthServer::new(clash::Mine))
            .health(HealthReporter::new())
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("knafeh.Health"), "{err}");
        // Without the built-in, the name is free.
        let server = start(&certs, |b| {
            b.add_service(clash::HealthServer::new(clash::Mine))
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        let mine = clash::HealthClient::new(client);
        assert_eq!(mine.check(7).await.unwrap(), 7);
        server.shutdown().await;
    })
    .await
}

mod clash {
    /// An application service that happens to be called `knafeh.Health`.
    #[knafeh::service(package = "knafeh")]
    pub trait Health {
        async fn check(&self, req: u32) -> Result<u32, knafeh::Status>;
    }
    pub struct Mine;
    impl Health for Mine {
        async fn check(&self, req: u32) -> Result<u32, knafeh::Status> {
            Ok(req)
        }
    }
}
