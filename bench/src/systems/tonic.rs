//! tonic: gRPC over HTTP/2 without TLS. The messages are written by hand
//! with `prost::Message` (what protoc would generate for the same
//! `.proto`), the service and client on tonic's generic `Grpc` types with
//! the prost codec: no protoc needed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{http, BoxFuture, BoxStream, Service};
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::{Conn, ServeOpts, Target, MAX_MESSAGE};

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

const ECHO_PATH: &str = "/bench.Echo/Echo";
const STREAM_PATH: &str = "/bench.Echo/Stream";

#[derive(Clone)]
pub struct TonicConn(tonic::client::Grpc<tonic::transport::Channel>);

impl Conn for TonicConn {
    async fn connect(target: &Target) -> Result<Self, String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", target.addr))
            .map_err(|e| format!("tonic endpoint: {e}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("tonic connect: {e}"))?;
        Ok(TonicConn(
            tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        ))
    }

    async fn echo(&self, payload: Vec<u8>) -> Result<usize, String> {
        let mut grpc = self.0.clone();
        grpc.ready()
            .await
            .map_err(|e| format!("tonic not ready: {e}"))?;
        let resp = grpc
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
        let mut grpc = self.0.clone();
        grpc.ready()
            .await
            .map_err(|e| format!("tonic not ready: {e}"))?;
        let mut items = grpc
            .server_streaming(
                Request::new(PbStreamRequest { count, size }),
                PathAndQuery::from_static(STREAM_PATH),
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

/// The service: routes the two paths, like tonic-build's generated server.
#[derive(Clone)]
struct EchoService;

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
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

pub async fn serve(opts: ServeOpts, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("tonic bind {}: {e}", opts.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    on_listening(addr);
    tonic::transport::Server::builder()
        .serve_with_incoming(EchoService, incoming)
        .await
        .map_err(|e| format!("tonic server: {e}"))
}
