//! Failing fast: a dial to a port where nothing listens, and a connection
//! whose server vanished, end with `UNAVAILABLE` ("connection refused") as
//! soon as the host's ICMP answer arrives, not after the handshake or idle
//! timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use knafeh::Code;
use knafeh_tests::*;

/// A loopback address where nothing listens (a port just released).
fn closed_port(ip: &str) -> SocketAddr {
    let s = std::net::UdpSocket::bind((ip, 0)).unwrap();
    s.local_addr().unwrap()
}

async fn assert_refused_quickly(certs: &Certs, addr: SocketAddr) {
    let started = Instant::now();
    let err = certs
        .client_builder(addr.to_string())
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("connection refused"), "{err}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {err}");
}

#[tokio::test]
async fn a_dial_to_a_closed_port_fails_at_once() {
    bounded(async {
        let certs = Certs::new();
        assert_refused_quickly(&certs, closed_port("127.0.0.1")).await;
        assert_refused_quickly(&certs, closed_port("::1")).await;
    })
    .await;
}

#[tokio::test]
async fn a_call_after_the_server_stopped_redials_and_fails_at_once() {
    bounded(async {
        let certs = Certs::new();
        let (server, _state) = start_probe_server(&certs, |b| b).await;
        let addr = server.local_addr();
        let p = ProbeClient::new(
            certs
                .client_builder(addr.to_string())
                .connect_timeout(Duration::from_secs(30))
                .connect()
                .await
                .unwrap(),
        );
        p.echo(Echo { text: "a".into() }).await.unwrap();
        server.shutdown().await;
        // The connection is gone; the next call dials again and is refused.
        let started = Instant::now();
        let err = p.echo(Echo { text: "b".into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("connection refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1), "{err}");
    })
    .await;
}

/// A server that vanishes without closing its connections (its process
/// died): the client's next packets draw "port unreachable", and the
/// connection closes at once instead of waiting for the idle timeout.
#[test]
fn calls_on_a_connection_whose_server_vanished_fail_at_once() {
    let certs = Certs::new();
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let (server, _state) = server_rt.block_on(start_probe_server(&certs, |b| b));
    let addr = server.local_addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bounded(async {
        let client = certs
            .client_builder(addr.to_string())
            .idle_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let p = ProbeClient::new(client);
        p.echo(Echo { text: "a".into() }).await.unwrap();
        // Every task of the server is dropped, and its socket closed,
        // without a CONNECTION_CLOSE.
        std::mem::forget(server);
        server_rt.shutdown_background();
        let started = Instant::now();
        let err = p.slow(SlowReq { millis: 0 }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(err.message().contains("connection refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    }));
}
