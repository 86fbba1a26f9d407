//! Client behaviour: multiplexing, re-dialling, timeouts, metadata, TLS.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use knafeh::{CallOptions, Client, ClientBuilder, Code, Metadata, ServerHandle};
use knafeh_tests::*;

/// Makes `tasks` × `per_task` concurrent `whoami` calls and returns the
/// set of client addresses the server saw.
async fn concurrent_calls(p: &ProbeClient, tasks: usize, per_task: usize) -> HashSet<String> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let calls: Vec<_> = (0..per_task)
                .map(|i| {
                    let p = p.clone();
                    tokio::spawn(async move {
                        let text = format!("{t}-{i}");
                        let r = p.whoami(Echo { text: text.clone() }).await.unwrap();
                        let (echoed, peer) = r.text.split_once('|').unwrap();
                        assert_eq!(echoed, text);
                        peer.to_owned()
                    })
                })
                .collect();
            let mut peers = Vec::new();
            for c in calls {
                peers.push(c.await.unwrap());
            }
            peers
        }));
    }
    let mut peers = HashSet::new();
    for h in handles {
        peers.extend(h.await.unwrap());
    }
    peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_from_many_tasks_share_one_connection() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        // 50 tasks with 20 calls each in flight at once.
        let peers = concurrent_calls(&p, 50, 20).await;
        assert_eq!(
            peers.len(),
            1,
            "calls came from several connections: {peers:?}"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_in_flight_at_once() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let peers = concurrent_calls(&p, 1, 1000).await;
        assert_eq!(
            peers.len(),
            1,
            "calls came from several connections: {peers:?}"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn next_call_redials_after_the_connection_dies() {
    bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(ProbeServer::new(ProbeImpl::default()))
        })
        .await;
        let client = client_for(&certs, server.local_addr()).await;
        let addr = server.local_addr();
        let p = ProbeClient::new(client);
        let first = p.whoami(Echo { text: "a".into() }).await.unwrap().text;
        // The server goes away (closing the connection) and comes back on
        // the same address.
        server.shutdown().await;
        let server = certs
            .server_builder()
            .bind(addr)
            .add_service(ProbeServer::new(ProbeImpl::default()))
            .start()
            .await
            .unwrap();
        let second = p.whoami(Echo { text: "b".into() }).await.unwrap().text;
        assert_ne!(
            first.split_once('|').unwrap().1,
            second.split_once('|').unwrap().1,
            "no new connection"
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn timeout_gives_deadline_exceeded_and_cancels_the_handler() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            state,
            certs: _certs,
        } = ProbeFixture::start(|b| b).await;
        let started = Instant::now();
        let err = p
            .slow_with(
                SlowReq { millis: 30_000 },
                CallOptions::new().timeout(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(10));
        let seen = state.deadline_seen.lock().unwrap().unwrap();
        let seen = seen.expect("the handler saw no deadline");
        let handler_started = state.slow_started_at.lock().unwrap().unwrap();
        // The server's deadline is the client's: it starts from the time
        // left when the request was sent, counted from when the server
        // read it. So it is no earlier than the client's own deadline, and
        // no later than 300 ms after the handler started (the server never
        // grants more than the client asked for; the encoded timeout is
        // rounded up to the next microsecond at most).
        assert!(
            seen >= started + Duration::from_millis(300),
            "the handler's deadline {:?} is before the client's",
            (started + Duration::from_millis(300)).saturating_duration_since(seen)
        );
        assert!(
            seen <= handler_started + Duration::from_millis(300) + Duration::from_millis(1),
            "the handler's deadline is {:?} after it started: more than the 300 ms asked for",
            seen.saturating_duration_since(handler_started)
        );
        // The handler is cancelled (by the client's reset or the server's
        // own deadline; that the server alone does it is tested in
        // server.rs with a raw client that never resets).
        let cancelled = tokio::time::timeout(
            Duration::from_secs(5),
            wait_for(&state.slow_cancelled_flag, &state.slow_cancelled),
        )
        .await;
        assert!(cancelled.is_ok(), "the handler was not cancelled");
        // Without a timeout, no deadline.
        p.slow(SlowReq { millis: 1 }).await.unwrap();
        assert_eq!(*state.deadline_seen.lock().unwrap(), Some(None));
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn metadata_travels_both_ways() {
    bounded(async {
        let ProbeFixture {
            server,
            client: p,
            certs: _certs,
            ..
        } = ProbeFixture::start(|b| b).await;
        let mut md = Metadata::new();
        md.insert("x-in", "hello").unwrap();
        md.insert_bin("x-raw-bin", &[0, 255, 10, 13]).unwrap();
        let resp = p
            .meta_with(Echo { text: "t".into() }, CallOptions::new().metadata(md))
            .await
            .unwrap();
        assert_eq!(resp.metadata().get("x-out"), Some("hello!"));
        assert_eq!(
            resp.metadata().get_bin("x-raw-bin"),
            Some(&[0u8, 255, 10, 13][..])
        );
        assert_eq!(resp.get_ref().text, "t|hello|127.0.0.1");
        assert!(Metadata::new().insert("grpc-status", "0").is_err());
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn server_certificate_is_verified_by_default() {
    bounded(async {
        let certs = Certs::new();
        let other = Certs::new();
        let server = start(&certs, |b| {
            b.add_service(ProbeServer::new(ProbeImpl::default()))
        })
        .await;
        let addr = server.local_addr();
        // A CA that did not sign the server's certificate.
        let err = other
            .client_builder(addr.to_string())
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        // The right CA, the wrong name.
        let err = certs
            .client_builder(addr.to_string())
            .server_name("example.com")
            .connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        // The right CA, checked against the DNS name (the address's IP is
        // checked against the IP SAN elsewhere in these tests).
        let c = certs
            .client_builder(addr.to_string())
            .server_name("localhost")
            .connect()
            .await
            .unwrap();
        ProbeClient::new(c)
            .echo(Echo { text: "ok".into() })
            .await
            .unwrap();
        // Explicitly insecure: no verification.
        let c = Client::builder(addr.to_string())
            .insecure_skip_verify()
            .connect()
            .await
            .unwrap();
        ProbeClient::new(c)
            .echo(Echo { text: "ok".into() })
            .await
            .unwrap();
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_keepalive_does_not_close_a_connection_that_was_merely_idle() {
    bounded(async {
        let certs = Certs::new();
        let (server, _state) = start_probe_server(&certs, |b| b).await;
        let client = certs
            .client_builder(server.local_addr().to_string())
            // A timeout long enough that a paused process does not trip it
            // during a call.
            .keepalive(Duration::from_millis(200), Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        let p = ProbeClient::new(client);
        let first = p.whoami(Echo { text: "a".into() }).await.unwrap().text;
        // Idle for longer than the keepalive timeout: no calls, no packets.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let second = p.whoami(Echo { text: "b".into() }).await.unwrap().text;
        // Same connection (same client address): it was not closed.
        assert_eq!(
            first.split_once('|').unwrap().1,
            second.split_once('|').unwrap().1
        );
        server.shutdown().await;
    })
    .await
}

/// The silent endpoint was really dialled: a datagram (an Initial) is
/// waiting on its socket.
fn assert_dialled(silent: &std::net::UdpSocket) {
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        silent.peek_from(&mut buf).is_ok(),
        "the silent endpoint was never dialled"
    );
}

/// A probe server, and a client builder whose first endpoint is a UDP port
/// that takes datagrams and never answers (kept open by the returned
/// socket): a dial to it hangs until the connect timeout, which is longer
/// than any test's bound, like a dial to a server that vanished.
async fn live_andsilent(certs: &Certs) -> (ServerHandle, std::net::UdpSocket, ClientBuilder) {
    let server = start(certs, |b| {
        b.add_service(ProbeServer::new(ProbeImpl::default()))
    })
    .await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let builder = certs
        .client_builder(silent.local_addr().unwrap().to_string())
        .endpoint(server.local_addr().to_string())
        .connect_timeout(Duration::from_secs(600));
    (server, silent, builder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_returns_once_one_endpoint_answers_and_calls_avoid_a_pending_dial() {
    bounded(async {
        let certs = Certs::new();
        // The silent endpoint comes first. Its dial stays pending for the
        // whole test, so `connect` and every call must get by without it.
        let (server, silent, builder) = live_andsilent(&certs).await;
        let client = builder.connect().await.unwrap();
        let p = ProbeClient::new(client);
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move {
                    p.echo(Echo {
                        text: format!("{i}"),
                    })
                    .await
                })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap().text, format!("{i}"));
        }
        assert_dialled(&silent);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_do_not_queue_behind_a_dial_to_asilent_endpoint() {
    bounded(async {
        let certs = Certs::new();
        let (server, silent, builder) = live_andsilent(&certs).await;
        let client = builder.connect_lazy();
        let p = ProbeClient::new(client);
        // Calls start together, with nothing dialled yet, so some wait for
        // the silent endpoint's dial; as soon as the other endpoint is
        // connected they move there. Every call is answered although the
        // silent dial never ends.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let calls: Vec<_> = (0..32)
            .map(|i| {
                let (p, tx) = (p.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = p
                        .echo(Echo {
                            text: format!("{i}"),
                        })
                        .await;
                    let _ = tx.send((i, r));
                })
            })
            .collect();
        drop(tx);
        for _ in 0..32 {
            let (i, r) = rx.recv().await.unwrap();
            assert_eq!(r.unwrap().text, format!("{i}"));
        }
        // Afterwards, with the silent endpoint's dial still pending, calls
        // keep flowing.
        for i in 0..32 {
            let text = format!("later {i}");
            assert_eq!(
                p.echo(Echo { text: text.clone() }).await.unwrap().text,
                text
            );
        }
        for c in calls {
            c.await.unwrap();
        }
        assert_dialled(&silent);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_comes_up_later_is_dialled_in_the_background_and_takes_calls() {
    bounded(async {
        let certs = Certs::new();
        let (a, a_state) = start_probe_server(&certs, |b| b).await;
        // An address with nothing behind it yet.
        let b_addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let builder = certs
            .client_builder(a.local_addr().to_string())
            .endpoint(b_addr.to_string())
            .connect_timeout(Duration::from_millis(500));
        // A malformed endpoint is refused up front, whatever the others do.
        let err = builder
            .clone()
            .endpoint("no-port")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("no-port"), "{err}");
        let p = ProbeClient::new(builder.connect().await.unwrap());
        let (b, b_state) = start_probe_server(&certs, |s| s.bind(b_addr)).await;
        // Calls keep succeeding on `a`; `b` is dialled in the background
        // once its backoff is over and then takes its share.
        let mut rounds = 0;
        while b_state.slow_finished_count.load(Ordering::SeqCst) < 20 {
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    let p = p.clone();
                    tokio::spawn(async move { p.slow(SlowReq { millis: 0 }).await })
                })
                .collect();
            for c in calls {
                assert_eq!(c.await.unwrap().unwrap().text, "slept");
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(a_state.slow_finished_count.load(Ordering::SeqCst) > 0);
        assert!(rounds > 1);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}
