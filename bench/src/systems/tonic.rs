//! tonic: gRPC over HTTP/2, without TLS (h2c) or with rustls (`tls-ring`). The messages are written by hand
//! with `prost::Message` (what protoc would generate for the same
//! `.proto`), the service and client on tonic's generic `Grpc` types with
//! the prost codec: no protoc needed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::client::GrpcService;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, BoxFuture, BoxStream, Service, StdError};
use tonic::server::{
    ClientStreamingService, Grpc, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::{Bidi, Conn, Producer, ServeOpts, Target, CHANNEL_CAP, MAX_MESSAGE};

/// `message Echo { bytes payload = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbEcho {
    #[prost(bytes = "vec", tag = "1")]
    pub payload: Vec<u8>,
}

/// `message StreamRequest { uint32 count = 1; uint32 size = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbStreamRequest {
    #[prost(uint32, tag = "1")]
    pub count: u32,
    #[prost(uint32, tag = "2")]
    pub size: u32,
}

/// `message Tally { uint64 count = 1; uint64 bytes = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbTally {
    #[prost(uint64, tag = "1")]
    pub count: u64,
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
}

const ECHO_PATH: &str = "/bench.Echo/Echo";
const STREAM_PATH: &str = "/bench.Echo/Stream";
const STREAM_FED_PATH: &str = "/bench.Echo/StreamFed";
const UPLOAD_PATH: &str = "/bench.Echo/Upload";
const ECHO_EACH_PATH: &str = "/bench.Echo/EchoEach";

/// What carries a tonic client's calls: tonic's own HTTP/2 `Channel`
/// (h2c or TLS) or tonic-h3's HTTP/3 channel (see `tonic_h3.rs`).
pub trait Transport:
    GrpcService<
        tonic::body::Body,
        Error: Into<StdError> + Send,
        Future: Send,
        ResponseBody: tonic::codegen::Body<Data = Bytes, Error: Into<StdError> + Send>
                          + Send
                          + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// Opens a channel to `target` (for tonic-h3 the QUIC handshake is
    /// made by the first call).
    fn dial(target: &Target) -> impl Future<Output = Result<Self, String>> + Send;
}

impl Transport for tonic::transport::Channel {
    async fn dial(target: &Target) -> Result<Self, String> {
        let scheme = if target.tls { "https" } else { "http" };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", target.addr))
                .map_err(|e| format!("tonic endpoint: {e}"))?
                .tcp_nodelay(true);
        if target.tls {
            let ca = std::fs::read(&target.ca)
                .map_err(|e| format!("tonic-tls: reading {}: {e}", target.ca.display()))?;
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("tonic-tls config: {e}"))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| format!("tonic connect: {e}"))
    }
}

/// A tonic client on transport `T` (HTTP/2 by default).
#[derive(Clone)]
pub struct TonicConn<T = tonic::transport::Channel>(tonic::client::Grpc<T>);

impl<T: Transport> TonicConn<T> {
    async fn ready(&self) -> Result<tonic::client::Grpc<T>, String> {
        let mut grpc = self.0.clone();
        grpc.ready()
            .await
            .map_err(|e| format!("tonic not ready: {}", e.into()))?;
        Ok(grpc)
    }

    /// Opens an `EchoEach` call on `requests`.
    async fn echo_each<S>(&self, requests: S) -> Result<Streaming<PbEcho>, String>
    where
        S: tonic::codegen::tokio_stream::Stream<Item = PbEcho> + Send + 'static,
    {
        Ok(self
            .ready()
            .await?
            .streaming(
                Request::new(requests),
                PathAndQuery::from_static(ECHO_EACH_PATH),
                ProstCodec::<PbEcho, PbEcho>::default(),
            )
            .await
            .map_err(|e| format!("tonic echo_each: {e}"))?
            .into_inner())
    }

    /// Reads a server stream to its end; returns the items counted.
    async fn count_items(&self, path: &'static str, count: u32, size: u32) -> Result<u64, String> {
        let mut items = self
            .ready()
            .await?
            .server_streaming(
                Request::new(PbStreamRequest { count, size }),
                PathAndQuery::from_static(path),
                ProstCodec::<PbStreamRequest, PbEcho>::default(),
            )
            .await
            .map_err(|e| format!("tonic stream: {e}"))?
            .into_inner();
        let mut n = 0;
        while let Some(_item) = items
            .message()
            .await
            .map_err(|e| format!("tonic stream item {n}: {e}"))?
        {
            n += 1;
        }
        Ok(n)
    }
}

impl<T: Transport> Conn for TonicConn<T> {
    type Bidi = TonicBidi;

    async fn connect(target: &Target) -> Result<Self, String> {
        let channel = T::dial(target).await?;
        Ok(TonicConn(
            tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        ))
    }

    async fn echo(&self, payload: Vec<u8>) -> Result<usize, String> {
        let resp = self
            .ready()
            .await?
            .unary(
                Request::new(PbEcho { payload }),
                PathAndQuery::from_static(ECHO_PATH),
                ProstCodec::<PbEcho, PbEcho>::default(),
            )
            .await
            .map_err(|e| format!("tonic echo: {e}"))?;
        Ok(resp.into_inner().payload.len())
    }

    async fn stream(&self, count: u32, size: u32) -> Result<u64, String> {
        self.count_items(STREAM_PATH, count, size).await
    }

    async fn stream_fed(&self, count: u32, size: u32) -> Result<u64, String> {
        self.count_items(STREAM_FED_PATH, count, size).await
    }

    async fn stream_until(&self, size: u32, until: std::time::Instant) -> Result<u64, String> {
        let count = super::STREAM_UNTIL_COUNT;
        let mut items = self
            .ready()
            .await?
            .server_streaming(
                Request::new(PbStreamRequest { count, size }),
                PathAndQuery::from_static(STREAM_PATH),
                ProstCodec::<PbStreamRequest, PbEcho>::default(),
            )
            .await
            .map_err(|e| format!("tonic stream: {e}"))?
            .into_inner();
        let mut n = 0;
        while std::time::Instant::now() < until {
            match items.message().await {
                Ok(Some(_)) => n += 1,
                Ok(None) => break,
                Err(e) => return Err(format!("tonic stream item {n}: {e}")),
            }
        }
        Ok(n)
    }

    async fn upload(&self, count: u32, size: usize, producer: Producer) -> Result<u64, String> {
        let mut grpc = self.ready().await?;
        let item = vec![0xa5; size];
        let items = (0..count).map(move |_| PbEcho {
            payload: item.clone(),
        });
        let path = PathAndQuery::from_static(UPLOAD_PATH);
        let codec = ProstCodec::<PbEcho, PbTally>::default();
        let tally = match producer {
            Producer::Iter => {
                let requests = tonic::codegen::tokio_stream::iter(items);
                grpc.client_streaming(Request::new(requests), path, codec)
                    .await
            }
            Producer::Channel => {
                let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAP);
                let producer = tokio::spawn(async move {
                    for msg in items {
                        if tx.send(msg).await.is_err() {
                            return; // the call ended; its status tells why
                        }
                    }
                });
                let requests = ReceiverStream::new(rx);
                let tally = grpc
                    .client_streaming(Request::new(requests), path, codec)
                    .await;
                producer
                    .await
                    .map_err(|e| format!("tonic producer task: {e}"))?;
                tally
            }
        };
        let tally = tally
            .map_err(|e| format!("tonic upload: {e}"))?
            .into_inner();
        if tally.bytes != tally.count * size as u64 {
            return Err(format!(
                "tonic upload: {} bytes in {} messages",
                tally.bytes, tally.count
            ));
        }
        Ok(tally.count)
    }

    async fn open_bidi(&self) -> Result<TonicBidi, String> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let replies = self.echo_each(ReceiverStream::new(rx)).await?;
        Ok(TonicBidi { tx, replies })
    }

    async fn bidi_stream(&self, count: u32, size: usize) -> Result<u64, String> {
        let item = vec![0xa5; size];
        let items = (0..count).map(move |_| PbEcho {
            payload: item.clone(),
        });
        let mut replies = self
            .echo_each(tonic::codegen::tokio_stream::iter(items))
            .await?;
        let mut n = 0;
        while let Some(_reply) = replies
            .message()
            .await
            .map_err(|e| format!("tonic echo_each reply {n}: {e}"))?
        {
            n += 1;
        }
        Ok(n)
    }
}

/// The sending half and the replies of one `EchoEach` call.
pub struct TonicBidi {
    tx: tokio::sync::mpsc::Sender<PbEcho>,
    replies: Streaming<PbEcho>,
}

impl Bidi for TonicBidi {
    async fn round_trip(&mut self, payload: Vec<u8>) -> Result<usize, String> {
        self.tx
            .send(PbEcho { payload })
            .await
            .map_err(|_| "tonic echo_each: the call ended".to_owned())?;
        match self.replies.message().await {
            Ok(Some(reply)) => Ok(reply.payload.len()),
            Ok(None) => Err("tonic echo_each: the call ended early".into()),
            Err(e) => Err(format!("tonic echo_each reply: {e}")),
        }
    }

    async fn finish(self) -> Result<(), String> {
        let TonicBidi { tx, mut replies } = self;
        drop(tx);
        match replies.message().await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("tonic echo_each: an extra reply".into()),
            Err(e) => Err(format!("tonic echo_each end: {e}")),
        }
    }
}

struct EchoUnary;

impl UnaryService<PbEcho> for EchoUnary {
    type Response = PbEcho;
    type Future = std::future::Ready<Result<Response<PbEcho>, Status>>;

    fn call(&mut self, request: Request<PbEcho>) -> Self::Future {
        std::future::ready(Ok(Response::new(request.into_inner())))
    }
}

struct EchoStream;

impl ServerStreamingService<PbStreamRequest> for EchoStream {
    type Response = PbEcho;
    type ResponseStream = BoxStream<PbEcho>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<PbStreamRequest>) -> Self::Future {
        let req = request.into_inner();
        if req.size > knafeh_bench_echo::MAX_STREAM_ITEM {
            return std::future::ready(Err(Status::invalid_argument("size too large")));
        }
        let item = PbEcho {
            payload: vec![0x5a; req.size as usize],
        };
        let stream =
            tonic::codegen::tokio_stream::iter((0..req.count).map(move |_| Ok(item.clone())));
        std::future::ready(Ok(Response::new(Box::pin(stream) as BoxStream<PbEcho>)))
    }
}

/// The same items as [`EchoStream`], sent by a task into a channel of
/// [`CHANNEL_CAP`] behind a `ReceiverStream`.
struct EchoStreamFed;

impl ServerStreamingService<PbStreamRequest> for EchoStreamFed {
    type Response = PbEcho;
    type ResponseStream = ReceiverStream<Result<PbEcho, Status>>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<PbStreamRequest>) -> Self::Future {
        let req = request.into_inner();
        if req.size > knafeh_bench_echo::MAX_STREAM_ITEM {
            return std::future::ready(Err(Status::invalid_argument("size too large")));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAP);
        let item = PbEcho {
            payload: vec![0x5a; req.size as usize],
        };
        tokio::spawn(async move {
            for _ in 0..req.count {
                if tx.send(Ok(item.clone())).await.is_err() {
                    return; // the call ended
                }
            }
        });
        std::future::ready(Ok(Response::new(ReceiverStream::new(rx))))
    }
}

struct Upload;

impl ClientStreamingService<PbEcho> for Upload {
    type Response = PbTally;
    type Future = BoxFuture<Response<PbTally>, Status>;

    fn call(&mut self, request: Request<Streaming<PbEcho>>) -> Self::Future {
        let mut requests = request.into_inner();
        Box::pin(async move {
            let mut tally = PbTally { count: 0, bytes: 0 };
            while let Some(msg) = requests.message().await? {
                tally.count += 1;
                tally.bytes += msg.payload.len() as u64;
            }
            Ok(Response::new(tally))
        })
    }
}

struct EchoEach;

impl StreamingService<PbEcho> for EchoEach {
    type Response = PbEcho;
    type ResponseStream = Streaming<PbEcho>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<PbEcho>>) -> Self::Future {
        // The request stream is itself the reply stream (as on knafeh's
        // side).
        std::future::ready(Ok(Response::new(request.into_inner())))
    }
}

/// The service: routes the paths, like tonic-build's generated server.
#[derive(Clone)]
pub struct EchoService;

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "bench.Echo";
}

impl<B> Service<http::Request<B>> for EchoService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            ECHO_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<PbEcho, PbEcho>::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.unary(EchoUnary, req).await)
            }),
            STREAM_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<PbEcho, PbStreamRequest>::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.server_streaming(EchoStream, req).await)
            }),
            STREAM_FED_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<PbEcho, PbStreamRequest>::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.server_streaming(EchoStreamFed, req).await)
            }),
            UPLOAD_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<PbTally, PbEcho>::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.client_streaming(Upload, req).await)
            }),
            ECHO_EACH_PATH => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<PbEcho, PbEcho>::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Ok(grpc.streaming(EchoEach, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

/// Serves the echo service, with TLS (the child's `--cert`/`--key`) when
/// `tls`.
pub async fn serve(
    opts: ServeOpts,
    tls: bool,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("tonic bind {}: {e}", opts.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let max_streams = u32::try_from(opts.max_streams).unwrap_or(u32::MAX);
    let mut builder = tonic::transport::Server::builder().max_concurrent_streams(max_streams);
    if tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("tonic-tls: reading {}: {e}", p.display()))
        };
        let identity = tonic::transport::Identity::from_pem(read(&opts.cert)?, read(&opts.key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("tonic-tls server config: {e}"))?;
    }
    on_listening(addr);
    builder
        .serve_with_incoming(EchoService, incoming)
        .await
        .map_err(|e| format!("tonic server: {e}"))
}
