//! knafeh: typed RPC over HTTP/3.
//!
//! Annotate a trait with [`#[knafeh::service]`](macro@service), implement
//! it, serve it with a [`Server`] and call it through the generated
//! `{Trait}Client`. The wire format is gRPC's HTTP mapping carried on
//! HTTP/3 (see `PROTOCOL.md`), with serde types encoded by bincode or
//! JSON.
#![warn(missing_docs, unreachable_pub)]

pub mod as_bytes;
mod client;
mod codec;
mod conn;
mod context;
mod frame;
mod intercept;
mod metadata;
mod server;
mod service;
mod status;
mod streaming;
mod timeout;
mod tls;
mod wire;

pub use client::{Client, ClientBuilder};
pub use codec::Codec;
pub use context::{CallOptions, Context, Response};
pub use intercept::{CallInfo, Interceptor};
pub use knafeh_macros::service;
pub use metadata::{Metadata, MetadataError, MetadataValue};
pub use server::{Server, ServerBuilder, ServerHandle, ServerStats, DEFAULT_MAX_MESSAGE_SIZE};
pub use status::{Code, Status};
pub use streaming::{SendError, StreamSender, Streaming};
pub use tls::{DevCert, DevCertPaths, IssuedCert, TlsError};

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
    pub use crate::frame::fuzz as frame;
    pub use crate::metadata::fuzz as metadata;
    pub use crate::status::fuzz as status;
    pub use crate::timeout::fuzz as timeout;
    pub use crate::wire::fuzz as wire;
}
