//! The benchmark's echo service, shared by the Rust benchmark
//! (`knafeh-bench`) and the Python one (`bench/py`, which reuses these
//! message types under `#[pyservice]`).
//!
//! The same shape as the gRPC service the benchmark runs on tonic: one
//! `bytes payload` field each way. As prost does for `bytes`, the payload
//! is carried as one block of bytes (`knafeh::as_bytes`); a plain
//! `Vec<u8>` has the same wire form but serde handles it byte by byte.

use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

/// Request and reply of [`Echo::echo`]: the payload comes back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EchoMsg {
    /// The bytes to echo.
    #[serde(with = "knafeh::as_bytes")]
    pub payload: Vec<u8>,
}

/// Request of [`Echo::stream`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamRequest {
    /// How many items to send.
    pub count: u32,
    /// Size of each item's payload, in bytes.
    pub size: u32,
}

/// Reply of [`Echo::upload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Messages received.
    pub count: u64,
    /// Payload bytes received.
    pub bytes: u64,
}

/// The echo service.
#[knafeh::service(package = "bench")]
pub trait Echo {
    /// Unary: returns the request. Idempotent, so a client with
    /// `zero_rtt` may send it as 0-RTT early data.
    #[knafeh(idempotent)]
    async fn echo(&self, req: EchoMsg) -> Result<EchoMsg, Status>;
    /// Server streaming: `count` items of `size` bytes each.
    async fn stream(&self, req: StreamRequest) -> Result<Streaming<EchoMsg>, Status>;
    /// Server streaming, as [`Echo::stream`], but the items come from a
    /// task feeding a channel of [`FED_CHANNEL_CAP`] items (the usual shape
    /// of a handler whose items are produced elsewhere).
    async fn stream_fed(&self, req: StreamRequest) -> Result<Streaming<EchoMsg>, Status>;
    /// Client streaming: counts the messages and their payload bytes.
    async fn upload(&self, req: Streaming<EchoMsg>) -> Result<Tally, Status>;
    /// Bidirectional: each message comes back as soon as it arrives.
    async fn echo_each(&self, req: Streaming<EchoMsg>) -> Result<Streaming<EchoMsg>, Status>;
}

/// The implementation every benchmark server runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoImpl;

/// Largest `size` [`Echo::stream`] accepts (a bound on what one request may
/// make the server allocate per item).
pub const MAX_STREAM_ITEM: u32 = 1 << 20;

/// Capacity of the channel behind [`Echo::stream_fed`].
pub const FED_CHANNEL_CAP: usize = 128;

/// Refuses a stream request whose item size is over [`MAX_STREAM_ITEM`].
fn check_item_size(req: &StreamRequest) -> Result<(), Status> {
    if req.size > MAX_STREAM_ITEM {
        return Err(Status::invalid_argument(format!(
            "size {} is over {MAX_STREAM_ITEM}",
            req.size
        )));
    }
    Ok(())
}

impl Echo for EchoImpl {
    async fn echo(&self, req: EchoMsg) -> Result<EchoMsg, Status> {
        Ok(req)
    }

    async fn stream(&self, req: StreamRequest) -> Result<Streaming<EchoMsg>, Status> {
        check_item_size(&req)?;
        let item = vec![0x5a; req.size as usize];
        Ok(Streaming::iter((0..req.count).map(move |_| EchoMsg {
            payload: item.clone(),
        })))
    }

    async fn stream_fed(&self, req: StreamRequest) -> Result<Streaming<EchoMsg>, Status> {
        check_item_size(&req)?;
        let (tx, items) = Streaming::channel(FED_CHANNEL_CAP);
        let item = vec![0x5a; req.size as usize];
        tokio::spawn(async move {
            for _ in 0..req.count {
                let msg = EchoMsg {
                    payload: item.clone(),
                };
                if tx.send(msg).await.is_err() {
                    return; // the call ended (client gone or cancelled)
                }
            }
        });
        Ok(items)
    }

    async fn upload(&self, mut req: Streaming<EchoMsg>) -> Result<Tally, Status> {
        let mut tally = Tally { count: 0, bytes: 0 };
        while let Some(msg) = req.message().await {
            tally.count += 1;
            tally.bytes += msg?.payload.len() as u64;
        }
        Ok(tally)
    }

    async fn echo_each(&self, req: Streaming<EchoMsg>) -> Result<Streaming<EchoMsg>, Status> {
        // The request stream is itself the reply stream: no task, no
        // channel (tonic's side does the same with its `Streaming`).
        Ok(Streaming::new(req))
    }
}
