//! knafeh: the `#[knafeh::service]` echo of `knafeh-bench-echo`.

use std::net::SocketAddr;

use knafeh_bench_echo::{EchoClient, EchoImpl, EchoMsg, EchoServer, StreamRequest};

use super::{Conn, ServeOpts, Target, MAX_MESSAGE};

#[derive(Clone)]
pub struct KnafehConn(EchoClient);

impl KnafehConn {
    pub fn client(&self) -> &EchoClient {
        &self.0
    }
}

impl Conn for KnafehConn {
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
        let mut items = self
            .0
            .stream(StreamRequest { count, size })
            .await
            .map_err(|e| format!("knafeh stream: {e}"))?;
        let mut n = 0;
        while let Some(item) = items.message().await {
            item.map_err(|e| format!("knafeh stream item {n}: {e}"))?;
            n += 1;
        }
        Ok(n)
    }
}

pub async fn serve(opts: ServeOpts, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let server = knafeh::Server::builder()
        .bind(opts.addr)
        .tls(&opts.cert, &opts.key)
        .max_message_size(MAX_MESSAGE)
        .max_concurrent_streams(opts.max_streams)
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
