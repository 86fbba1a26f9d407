//! Server behaviour: binding, several services, limits, graceful shutdown.
//! Bad requests on the wire are tested in bad_input.rs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use greeter::{GreeterClient, GreeterServer, HelloRequest, MyGreeter};
use knafeh::{Code, Server};
use knafeh_tests::raw::{self, RawConn, RawEnd};
use knafeh_tests::*;

#[tokio::test]
async fn port_zero_reports_the_bound_port_and_serves_several_services() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(GreeterServer::new(MyGreeter))
                .add_service(ProbeServer::new(ProbeImpl::default()))
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        assert_ne!(server.local_addr().port(), 0);
        let g = GreeterClient::new(client.clone());
        let p = ProbeClient::new(client);
        assert_eq!(
            g.say_hello(HelloRequest { name: "A".into() })
                .await
                .unwrap()
                .message,
            "Hello, A!"
        );
        assert_eq!(p.echo(Echo { text: "B".into() }).await.unwrap().text, "B");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn misconfiguration_is_reported_at_start() {
    bounded(async {
        let certs = Certs::new();
        let err = Server::builder()
            .add_service(GreeterServer::new(MyGreeter))
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        let err = Server::builder()
            .tls(&certs.paths.cert, &certs.paths.key)
            .add_service(GreeterServer::new(MyGreeter))
            .add_service(GreeterServer::new(MyGreeter))
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("helloworld.Greeter"), "{err}");
        let err = Server::builder()
            .tls(certs.dir.0.join("missing.pem"), &certs.paths.key)
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_limit_queues_calls_instead_of_failing() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b.max_concurrent_streams(2)).await;
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.slow(SlowReq { millis: 50 }).await.unwrap() })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        assert_eq!(state.max_active.load(Ordering::SeqCst), 2);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_calls_and_releases_the_port() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs,
            // More than the call below needs: shutdown ends at the drain
            // timeout at the latest (10 s by default, as long as the call).
        } = ProbeFixture::start(|b| b.drain_timeout(Duration::from_secs(30))).await;
        let addr = server.local_addr();
        let in_flight = {
            let p = p.clone();
            // Long enough that the refusals below, including a new
            // handshake, surely happen while it runs; only this call's wait
            // grows with it.
            tokio::spawn(async move { p.slow(SlowReq { millis: 10_000 }).await })
        };
        // Wait until the call is running on the server.
        wait_for(&state.slow_started_flag, &state.slow_started).await;
        let shutdown = tokio::spawn(server.shutdown());
        // While the server drains, new calls (on the old connection or a
        // new one) are refused at once with UNAVAILABLE, not left to wait
        // for the drain. The shutdown task and the connection learn of the
        // drain asynchronously, so a call sent in the first moments may
        // still be served; it must then be served correctly, and refusals
        // must follow while the accepted call is still running.
        let mut served = 0;
        let err = loop {
            match p
                .echo(Echo {
                    text: "during".into(),
                })
                .await
            {
                Ok(reply) => {
                    assert_eq!(reply.text, "during");
                    served += 1;
                    assert!(
                        !in_flight.is_finished(),
                        "{served} calls were served during the drain; none was refused"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(err) => break err,
            }
        };
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        let fresh = client_for(&certs, addr).await;
        let err = ProbeClient::new(fresh)
            .echo(Echo { text: "new".into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(
            !in_flight.is_finished(),
            "the refusals waited for the drain to finish"
        );
        // The call accepted before the signal completes.
        let done = in_flight.await.unwrap().unwrap();
        assert_eq!(done.text, "slept");
        shutdown.await.unwrap();
        // Once shutdown returns, the port is free.
        std::net::UdpSocket::bind(addr).expect("the port is still taken after shutdown");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_shutdown() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b.drain_timeout(Duration::from_millis(200))).await;
        let in_flight = {
            let p = p.clone();
            tokio::spawn(async move { p.slow(SlowReq { millis: 60_000 }).await })
        };
        wait_for(&state.slow_started_flag, &state.slow_started).await;
        let started = std::time::Instant::now();
        server.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = in_flight.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    })
    .await
}

#[tokio::test]
async fn idle_connections_are_closed_and_the_next_call_dials_again() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b.idle_timeout(Duration::from_millis(300))).await;
        let first = p.whoami(Echo { text: "a".into() }).await.unwrap().text;
        assert_eq!(server.stats().connections, 1);
        // Time passing without traffic is what is tested here. QUIC's
        // effective idle timeout is max(idle timeout, 3 * PTO), and the PTO
        // grows with a slow handshake, so wait for the close (bounded)
        // rather than for a fixed time.
        tokio::time::timeout(
            Duration::from_secs(10),
            eventually(|| server.stats().connections == 0),
        )
        .await
        .expect("the server did not close the idle connection within 10 s");
        // The server freed the idle connection.
        let stats = server.stats();
        assert_eq!((stats.connections, stats.active_calls), (0, 0));
        let second = p.whoami(Echo { text: "b".into() }).await.unwrap().text;
        assert_ne!(
            first.split_once('|').unwrap().1,
            second.split_once('|').unwrap().1,
            "the idle connection was not closed"
        );
        server.shutdown().await;
    })
    .await
}

/// The server ends a call at its deadline and cancels the handler by
/// itself: the raw client here sends `grpc-timeout` and then neither
/// resets the stream nor closes the connection (knafeh's own client would
/// reset the stream at its deadline, which cancels the handler too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cancels_a_handler_at_its_deadline_without_the_client() {
    bounded(async {
        let certs = Certs::new();
        let (server, state) = start_probe_server(&certs, |b| b).await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        let mut headers = raw::headers(ProbeClient::SLOW, "application/grpc+json");
        // Long enough that the handler surely starts before the deadline.
        headers.push(("grpc-timeout", "2S"));
        let sent = std::time::Instant::now();
        let mut st = conn.open(headers, raw::frame(0, br#"{"millis":30000}"#), true);
        let r = st.response().await;
        // Not before the 2 s the client granted.
        assert!(
            sent.elapsed() >= Duration::from_secs(2),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(r.end, Some(RawEnd::Finished), "{r:?}");
        assert!(r.is_trailers_only(), "{r:?}");
        assert_eq!(r.http_status(), Some("200"), "{r:?}");
        assert_eq!(
            r.grpc_status(),
            Some(Code::DeadlineExceeded.as_i32()),
            "{r:?}"
        );
        assert!(
            state.slow_started_flag.load(Ordering::SeqCst),
            "the handler never ran"
        );
        let cancelled = tokio::time::timeout(
            Duration::from_secs(10),
            wait_for(&state.slow_cancelled_flag, &state.slow_cancelled),
        )
        .await;
        assert!(cancelled.is_ok(), "the server did not cancel the handler");
        assert_eq!(state.slow_finished_count.load(Ordering::SeqCst), 0);
        // All of that with the client's connection still open.
        assert_eq!(conn.close_info(), None);
        eventually(|| server.stats().active_calls == 0).await;
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_saw_no_traffic_releases_its_port_on_shutdown() {
    bounded(async {
        let certs = Certs::new();
        for listeners in [1, 2] {
            let (server, _state) = start_probe_server(&certs, |b| b.listeners(listeners)).await;
            let addr = server.local_addr();
            server.shutdown().await;
            std::net::UdpSocket::bind(addr)
                .unwrap_or_else(|e| panic!("{listeners} listener(s): {addr} still taken: {e}"));
        }
    })
    .await
}
