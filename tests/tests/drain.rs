//! Graceful shutdown as handlers see it: `Context::draining` lets a
//! long-lived stream end cleanly, and `shutdown` takes at most the drain
//! timeout even when a handler ignores it.

use std::time::{Duration, Instant};

use knafeh::{Code, Context, Status, Streaming};
use knafeh_tests::{bounded, Certs};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TicksReq {
    /// End the stream when the server begins draining.
    honour_drain: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tick {
    n: u64,
}

#[knafeh::service(package = "test.drain")]
pub trait Ticker {
    /// A tick every 10 ms, forever (or until the server drains).
    async fn ticks(&self, req: TicksReq, ctx: Context) -> Result<Streaming<Tick>, Status>;
}

struct Ticks;

impl Ticker for Ticks {
    async fn ticks(&self, req: TicksReq, ctx: Context) -> Result<Streaming<Tick>, Status> {
        assert!(!ctx.is_draining());
        let (tx, stream) = Streaming::channel(4);
        tokio::spawn(async move {
            let draining = ctx.draining();
            tokio::pin!(draining);
            let mut every = tokio::time::interval(Duration::from_millis(10));
            for n in 0.. {
                tokio::select! {
                    _ = &mut draining, if req.honour_drain => {
                        assert!(ctx.is_draining());
                        // Dropping the sender ends the stream with OK.
                        return;
                    }
                    _ = every.tick() => {
                        if tx.send(Tick { n }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(stream)
    }
}

/// Starts a ticker server with `drain_timeout`, opens a `ticks` stream and
/// waits for its first item; then shuts the server down, reading the
/// stream meanwhile: how long `shutdown` took, and how the stream ended.
async fn shut_down_while_streaming(
    honour_drain: bool,
    drain_timeout: Duration,
) -> (Duration, Result<(), Status>) {
    let certs = Certs::new();
    let server = certs
        .server_builder()
        .drain_timeout(drain_timeout)
        .add_service(TickerServer::new(Ticks))
        .start()
        .await
        .unwrap();
    let client = TickerClient::new(knafeh_tests::client_for(&certs, server.local_addr()).await);
    let mut stream = client.ticks(TicksReq { honour_drain }).await.unwrap();
    stream.message().await.unwrap().unwrap();
    let read = tokio::spawn(async move {
        while let Some(item) = stream.message().await {
            item?;
        }
        Ok(())
    });
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    (took, read.await.unwrap())
}

#[tokio::test]
async fn a_stream_that_watches_the_drain_ends_with_ok_and_shutdown_is_prompt() {
    bounded(async {
        let drain_timeout = Duration::from_secs(30);
        let (took, ended) = shut_down_while_streaming(true, drain_timeout).await;
        assert_eq!(ended.map_err(|s| s.code()), Ok(()));
        // The drain ended when the stream did, not at the timeout.
        assert!(took < drain_timeout / 2, "shutdown took {took:?}");
    })
    .await
}

#[tokio::test]
async fn shutdown_takes_at_most_the_drain_timeout_when_a_handler_ignores_it() {
    bounded(async {
        let drain_timeout = Duration::from_secs(2);
        let (took, ended) = shut_down_while_streaming(false, drain_timeout).await;
        // The stream is cut off: the connection closes under it.
        assert_eq!(ended.map_err(|s| s.code()), Err(Code::Unavailable));
        // The call had the whole drain timeout, and the forced close came
        // at its end, not a second later.
        assert!(took >= drain_timeout, "shutdown took {took:?}");
        assert!(
            took <= drain_timeout + Duration::from_millis(500),
            "shutdown took {took:?} with a drain timeout of {drain_timeout:?}"
        );
    })
    .await
}
