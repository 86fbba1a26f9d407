//! knafeh: the `#[knafeh::service]` echo of `knafeh-bench-echo`.

use std::net::SocketAddr;

use knafeh::{StreamSender, Streaming};
use knafeh_bench_echo::{EchoClient, EchoImpl, EchoMsg, EchoServer, StreamRequest};

use super::{Bidi, Conn, Producer, ServeOpts, Target, CHANNEL_CAP, MAX_MESSAGE};

#[derive(Clone)]
pub struct KnafehConn(EchoClient);

impl KnafehConn {
    pub fn client(&self) -> &EchoClient {
        &self.0
    }
}

impl Conn for KnafehConn {
    type Bidi = KnafehBidi;

    async fn connect(target: &Target) -> Result<Self, String> {
        let client = knafeh::Client::builder(target.addr.to_string())
            .ca_file(&target.ca)
            .max_message_size(MAX_MESSAGE)
            .connect()
            .await
            .map_err(|e| format!("knafeh connect: {e}"))?;
        Ok(KnafehConn(EchoClient::new(client)))
    }

    async fn echo(&self, payload: Vec<u8>) -> Result<usize, String> {
        self.0
            .echo(EchoMsg { payload })
            .await
            .map(|m| m.payload.len())
            .map_err(|e| format!("knafeh echo: {e}"))
    }

    async fn stream(&self, count: u32, size: u32) -> Result<u64, String> {
        let items = self
            .0
            .stream(StreamRequest { count, size })
            .await
            .map_err(|e| format!("knafeh stream: {e}"))?;
        count_items(items).await
    }

    async fn stream_fed(&self, count: u32, size: u32) -> Result<u64, String> {
        let items = self
            .0
            .stream_fed(StreamRequest { count, size })
            .await
            .map_err(|e| format!("knafeh stream_fed: {e}"))?;
        count_items(items).await
    }

    async fn stream_until(&self, size: u32, until: std::time::Instant) -> Result<u64, String> {
        let count = super::STREAM_UNTIL_COUNT;
        let mut items = self
            .0
            .stream(StreamRequest { count, size })
            .await
            .map_err(|e| format!("knafeh stream: {e}"))?;
        let mut n = 0;
        while std::time::Instant::now() < until {
            match items.message().await {
                Some(item) => item.map_err(|e| format!("knafeh stream item {n}: {e}"))?,
                None => break,
            };
            n += 1;
        }
        Ok(n)
    }

    async fn upload(&self, count: u32, size: usize, producer: Producer) -> Result<u64, String> {
        let item = vec![0xa5; size];
        let items = (0..count).map(move |_| EchoMsg {
            payload: item.clone(),
        });
        let tally = match producer {
            Producer::Iter => self.0.upload(Streaming::iter(items)).await,
            Producer::Channel => {
                let (tx, requests) = Streaming::channel(CHANNEL_CAP);
                let producer = tokio::spawn(async move {
                    for msg in items {
                        if tx.send(msg).await.is_err() {
                            return; // the call ended; its status tells why
                        }
                    }
                });
                let tally = self.0.upload(requests).await;
                producer
                    .await
                    .map_err(|e| format!("knafeh producer task: {e}"))?;
                tally
            }
        };
        let tally = tally.map_err(|e| format!("knafeh upload: {e}"))?;
        if tally.bytes != tally.count * size as u64 {
            return Err(format!(
                "knafeh upload: {} bytes in {} messages",
                tally.bytes, tally.count
            ));
        }
        Ok(tally.count)
    }

    async fn open_bidi(&self) -> Result<KnafehBidi, String> {
        let (tx, requests) = Streaming::channel(1);
        let replies = self
            .0
            .echo_each(requests)
            .await
            .map_err(|e| format!("knafeh echo_each: {e}"))?;
        Ok(KnafehBidi { tx, replies })
    }

    async fn bidi_stream(&self, count: u32, size: usize) -> Result<u64, String> {
        let item = vec![0xa5; size];
        let items = (0..count).map(move |_| EchoMsg {
            payload: item.clone(),
        });
        let mut replies = self
            .0
            .echo_each(Streaming::iter(items))
            .await
            .map_err(|e| format!("knafeh echo_each: {e}"))?;
        let mut n = 0;
        while let Some(reply) = replies.message().await {
            reply.map_err(|e| format!("knafeh echo_each reply {n}: {e}"))?;
            n += 1;
        }
        Ok(n)
    }
}

/// Reads a server stream to its end; returns the items counted.
async fn count_items(mut items: Streaming<EchoMsg>) -> Result<u64, String> {
    let mut n = 0;
    while let Some(item) = items.message().await {
        item.map_err(|e| format!("knafeh stream item {n}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// The sending half and the replies of one `echo_each` call.
pub struct KnafehBidi {
    tx: StreamSender<EchoMsg>,
    replies: Streaming<EchoMsg>,
}

impl Bidi for KnafehBidi {
    async fn round_trip(&mut self, payload: Vec<u8>) -> Result<usize, String> {
        self.tx
            .send(EchoMsg { payload })
            .await
            .map_err(|e| format!("knafeh echo_each send: {e}"))?;
        match self.replies.message().await {
            Some(Ok(reply)) => Ok(reply.payload.len()),
            Some(Err(e)) => Err(format!("knafeh echo_each reply: {e}")),
            None => Err("knafeh echo_each: the call ended early".into()),
        }
    }

    async fn finish(self) -> Result<(), String> {
        let KnafehBidi { tx, mut replies } = self;
        drop(tx);
        match replies.message().await {
            None => Ok(()),
            Some(Ok(_)) => Err("knafeh echo_each: an extra reply".into()),
            Some(Err(e)) => Err(format!("knafeh echo_each end: {e}")),
        }
    }
}

pub async fn serve(opts: ServeOpts, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let server = knafeh::Server::builder()
        .bind(opts.addr)
        .tls(&opts.cert, &opts.key)
        .max_message_size(MAX_MESSAGE)
        .max_concurrent_streams(opts.max_streams)
        // No stateless Retry: it adds a round trip to every connect (see
        // bench/README.md, WAN), which tonic's TCP has no counterpart for.
        .validate_client_address(false)
        .add_service(EchoServer::new(EchoImpl))
        .start()
        .await
        .map_err(|e| format!("knafeh server: {e}"))?;
    on_listening(server.local_addr());
    // Serve until this future is dropped (the handle shuts down on drop).
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}
