//! knafeh: typed RPC over HTTP/3.
//!
//! Annotate a trait with [`#[knafeh::service]`](macro@service), implement
//! it, serve it with a [`Server`] and call it through the generated
//! `{Trait}Client`. The wire format is gRPC's HTTP mapping carried on
//! HTTP/3 (see `PROTOCOL.md`), with serde types encoded by bincode or
//! JSON.
//!
//! # Guide
//!
//! A service is a trait of `async fn`s taking `&self` and a request —
//! one message, or `Streaming<Request>` for a stream of them — returning
//! `Result<Reply, Status>` or `Result<Streaming<Item>, Status>` for a
//! stream of replies: unary, server-streaming, client-streaming and
//! bidirectional methods. The macro
//! generates `{Trait}Server<T>`, which routes every method to your
//! implementation, and `{Trait}Client`, with one method per trait method
//! plus a `*_with` variant taking [`CallOptions`] (deadline, metadata) and
//! returning a [`Response`] with the server's metadata. From trait to
//! call:
//!
//! ```
//! use knafeh::{Status, Streaming};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct HelloRequest { pub name: String }
//! #[derive(Serialize, Deserialize)]
//! pub struct HelloReply { pub message: String }
//! #[derive(Serialize, Deserialize)]
//! pub struct CountRequest { pub n: u32 }
//! #[derive(Serialize, Deserialize)]
//! pub struct Count { pub value: u32 }
//! #[derive(Serialize, Deserialize)]
//! pub struct Total { pub sum: u64 }
//!
//! #[knafeh::service(package = "helloworld")]
//! pub trait Greeter {
//!     /// Unary.
//!     async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
//!     /// Server streaming: 1..=n.
//!     async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
//!     /// Client streaming: the sum of the values.
//!     async fn add_up(&self, req: Streaming<Count>) -> Result<Total, Status>;
//!     /// Bidirectional: one reply per request, as each arrives.
//!     async fn chat(&self, req: Streaming<HelloRequest>) -> Result<Streaming<HelloReply>, Status>;
//! }
//!
//! struct MyGreeter;
//!
//! impl Greeter for MyGreeter {
//!     async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status> {
//!         if req.name.is_empty() {
//!             return Err(Status::invalid_argument("name must not be empty"));
//!         }
//!         Ok(HelloReply { message: format!("Hello, {}!", req.name) })
//!     }
//!     async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status> {
//!         Ok(Streaming::iter((1..=req.n).map(|value| Count { value })))
//!     }
//!     async fn add_up(&self, mut req: Streaming<Count>) -> Result<Total, Status> {
//!         let mut sum = 0;
//!         while let Some(count) = req.message().await {
//!             sum += u64::from(count?.value);
//!         }
//!         Ok(Total { sum })
//!     }
//!     async fn chat(&self, mut req: Streaming<HelloRequest>) -> Result<Streaming<HelloReply>, Status> {
//!         let (tx, replies) = Streaming::channel(8);
//!         tokio::spawn(async move {
//!             while let Some(Ok(r)) = req.message().await {
//!                 let reply = HelloReply { message: format!("Hello, {}!", r.name) };
//!                 if tx.send(reply).await.is_err() {
//!                     break; // the call ended
//!                 }
//!             }
//!         });
//!         Ok(replies)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // TLS is mandatory; DevCert makes a development CA and certificate.
//!     let dir = std::env::temp_dir().join(format!("knafeh-guide-{}", std::process::id()));
//!     std::fs::create_dir_all(&dir)?;
//!     let paths = knafeh::DevCert::generate(&["localhost", "127.0.0.1"])?.write_to(&dir)?;
//!
//!     // Serve (port 0: any free port).
//!     let server = knafeh::Server::builder()
//!         .bind("127.0.0.1:0".parse()?)
//!         .tls(&paths.cert, &paths.key)
//!         .add_service(GreeterServer::new(MyGreeter))
//!         .start()
//!         .await?;
//!
//!     // Call: the client checks the certificate against the CA.
//!     let client = knafeh::Client::builder(server.local_addr().to_string())
//!         .ca_file(&paths.ca)
//!         .connect()
//!         .await?;
//!     let greeter = GreeterClient::new(client);
//!     let reply = greeter.say_hello(HelloRequest { name: "Ada".into() }).await?;
//!     assert_eq!(reply.message, "Hello, Ada!");
//!     let mut counts = greeter.count_to(CountRequest { n: 3 }).await?;
//!     let mut values = Vec::new();
//!     while let Some(count) = counts.message().await {
//!         values.push(count?.value);
//!     }
//!     assert_eq!(values, [1, 2, 3]);
//!
//!     // A stream of requests: any `Stream`, or a `Streaming`.
//!     let total = greeter.add_up(Streaming::iter((1..=4).map(|value| Count { value }))).await?;
//!     assert_eq!(total.sum, 10);
//!     // Send one by one while reading the replies.
//!     let (tx, requests) = Streaming::channel(4);
//!     let mut replies = greeter.chat(requests).await?;
//!     for name in ["Ada", "Grace"] {
//!         tx.send(HelloRequest { name: name.into() }).await.map_err(|e| e.to_string())?;
//!         let reply = replies.message().await.ok_or("no reply")??;
//!         assert_eq!(reply.message, format!("Hello, {name}!"));
//!     }
//!     drop(tx); // half-close: the server sees the end of its requests
//!     assert!(replies.message().await.is_none());
//!
//!     // Errors are statuses with a gRPC code.
//!     let refused = greeter.say_hello(HelloRequest { name: String::new() }).await;
//!     assert_eq!(refused.err().map(|e| e.code()), Some(knafeh::Code::InvalidArgument));
//!
//!     // Graceful shutdown: in-flight calls finish, the port is released.
//!     server.shutdown().await;
//!     std::fs::remove_dir_all(&dir)?;
//!     Ok(())
//! }
//! ```
//!
//! Further:
//! - a handler that needs the caller's metadata, deadline or address
//!   takes a second parameter `ctx: knafeh::Context` ([`Context`]); it
//!   also says when the server begins draining ([`Context::draining`]);
//! - calls a handler makes inherit the deadline and cancellation of the
//!   call it serves ([`Context::current`], [`CallOptions::detached`]);
//! - streams are [`Streaming`]: from an iterator, any `Stream`, or a task
//!   feeding [`Streaming::channel`]; a client takes its request streams as
//!   anything [`IntoStreaming`];
//! - [`Interceptor`]s see every call before it runs, on either side;
//! - [`ServerBuilder`] sets limits, keepalive, mutual TLS and several
//!   sockets; [`ClientBuilder`] sets the CA, server name, timeouts, codec
//!   and several endpoints;
//! - [`as_bytes`] carries byte fields as one block;
//! - [`schema`] describes a service and its message types, traced from
//!   their serde `Deserialize` (no extra derive): every generated client
//!   has `schema()`, e.g. `GreeterClient::schema()`, giving a
//!   [`schema::ServiceSchema`]; mark a method `#[knafeh(idempotent)]` to
//!   say so in it (and to let the client retry and hedge it);
//! - [`RetryPolicy`] and [`HedgingPolicy`] say how a client retries and
//!   hedges calls ([`ClientBuilder::retry_policy`]).

pub mod as_bytes;
mod client;
mod context;
mod intercept;
mod metrics;
mod propagate;
mod proto;
pub mod schema;
mod server;
mod service;
mod streaming;
mod trace;
mod transport;

// The built-in services: `knafeh::describe` and `knafeh::health`.
mod builtin;
pub use builtin::{describe, health};

pub use client::{Client, ClientBuilder, ConnectionInfo, Resolve, ResolveFuture};
pub use context::{CallOptions, Context, Response};
pub use intercept::{AsyncInterceptor, CallInfo, InterceptFuture, Interceptor};
pub use knafeh_macros::service;
pub use proto::codec::Codec;
pub use proto::compression::Compression;
pub use proto::metadata::{Metadata, MetadataError, MetadataValue};
pub use proto::retry::{HedgingPolicy, RetryPolicy};
pub use proto::status::{Code, Status};
pub use proto::trace::{TraceParent, TraceParentError};
pub use server::{Server, ServerBuilder, ServerHandle, ServerStats, DEFAULT_MAX_MESSAGE_SIZE};
pub use service::{Message, Service};
pub use streaming::{IntoStreaming, SendError, StreamSender, Streaming, TrySendError};
pub use transport::devcert::{DevCert, DevCertPaths, IssuedCert};
pub use transport::tls::TlsError;

/// Support for generated code. Not public API: no semver guarantees.
#[doc(hidden)]
pub mod __private {
    pub use crate::service::{
        bidi_streaming, client_streaming, decode_error, encode_stream, one, server_streaming,
        stream, unary, unknown_method, BoxFuture, Call, FrameStream, Message, PayloadStream, Reply,
        Request, RequestShape, Service,
    };
    pub use ::std::sync::Arc;
}

/// Crate-private parsers for the fuzz targets in `fuzz/`. Exists only when
/// built with `--cfg fuzzing` (as `cargo fuzz` does). Not public API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::proto::frame::fuzz as frame;
    pub use crate::proto::metadata::fuzz as metadata;
    pub use crate::proto::text::fuzz as status;
    pub use crate::proto::timeout::fuzz as timeout;
    pub use crate::proto::wire::fuzz as wire;
}
