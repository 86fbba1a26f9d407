//! knafeh: typed RPC over HTTP/3.
//!
//! Annotate a trait with [`#[knafeh::service]`](macro@service), implement
//! it, serve it with a [`Server`] and call it through the generated
//! `{Trait}Client`. The wire format is gRPC's HTTP mapping carried on
//! HTTP/3 (see `PROTOCOL.md`), with serde types encoded by bincode or
//! JSON.

pub mod as_bytes;
mod client;
mod context;
mod intercept;
mod proto;
mod server;
mod service;
mod streaming;
mod transport;

pub use client::{Client, ClientBuilder};
pub use context::{CallOptions, Context, Response};
pub use intercept::{CallInfo, Interceptor};
pub use knafeh_macros::service;
pub use proto::codec::Codec;
pub use proto::metadata::{Metadata, MetadataError, MetadataValue};
pub use proto::status::{Code, Status};
pub use server::{Server, ServerBuilder, ServerHandle, ServerStats, DEFAULT_MAX_MESSAGE_SIZE};
pub use streaming::{SendError, StreamSender, Streaming};
pub use transport::devcert::{DevCert, DevCertPaths, IssuedCert};
pub use transport::tls::TlsError;

/// Support for generated code. Not public API: no semver guarantees.
#[doc(hidden)]
pub mod __private {
    pub use crate::service::{
        server_streaming, unary, unknown_method, BoxFuture, Call, FrameStream, Message, Reply,
        Service,
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
    pub use crate::proto::status::fuzz as status;
    pub use crate::proto::timeout::fuzz as timeout;
    pub use crate::proto::wire::fuzz as wire;
}
