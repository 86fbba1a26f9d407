//! Each RPC system over real loopback, in this process: the calls the
//! scenarios make, with the new peers (tonic-h3) and the channel-fed
//! server stream (scenario l).

use std::time::Duration;

use super::knafeh::KnafehConn;
use super::tonic::TonicConn;
use super::tonic_h3::H3Transport;
use super::{serve, Conn, Producer, ServeOpts, System, Target};
use crate::child::Certs;

/// Serves `system` on an ephemeral loopback port in this runtime and
/// runs every kind of call against it once.
async fn exercise<C: Conn>(system: System) {
    let certs = Certs::generate(&["localhost", "127.0.0.1"]).expect("dev cert");
    let opts = ServeOpts {
        addr: ([127, 0, 0, 1], 0).into(),
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        max_streams: 100,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve(system, opts, move |addr| {
        let _ = tx.send(addr);
    }));
    let addr = rx.await.expect("server listening");
    let target = Target {
        addr,
        ca: certs.ca.clone(),
        tls: system == System::TonicTls,
    };
    let c = C::connect(&target).await.expect("connect");
    assert_eq!(c.echo(vec![7; 64]).await.expect("echo"), 64);
    assert_eq!(c.echo(vec![7; 1 << 20]).await.expect("1 MiB echo"), 1 << 20);
    assert_eq!(c.stream(300, 64).await.expect("stream"), 300);
    assert_eq!(c.stream_fed(1000, 64).await.expect("stream_fed"), 1000);
    for producer in [Producer::Iter, Producer::Channel] {
        assert_eq!(c.upload(500, 64, producer).await.expect("upload"), 500);
    }
    assert_eq!(c.bidi_stream(200, 64).await.expect("bidi"), 200);
    server.abort();
}

async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the calls took over 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knafeh_serves_every_call_kind() {
    bounded(exercise::<KnafehConn>(System::Knafeh)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_h2c_serves_every_call_kind() {
    bounded(exercise::<TonicConn>(System::Tonic)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_tls_serves_every_call_kind() {
    bounded(exercise::<TonicConn>(System::TonicTls)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_h3_serves_every_call_kind() {
    bounded(exercise::<TonicConn<H3Transport>>(System::TonicH3)).await;
}

#[test]
fn system_names_round_trip_and_tonic_means_h2c() {
    for s in System::ALL {
        assert_eq!(System::parse(s.name()), Some(s));
    }
    assert_eq!(System::parse("tonic"), Some(System::Tonic));
    assert_eq!(System::parse("tonic-h3"), Some(System::TonicH3));
    assert_eq!(System::parse("quinn"), None);
}
