//! The protocol core: everything knafeh decides about the wire, with no
//! I/O and no clock (time is a parameter). Framing, header blocks, status,
//! metadata, timeouts, codecs, the HTTP/3 error codes, and the state
//! machines the transport feeds with events. A test (`purity` below)
//! keeps it that way.

pub(crate) mod codec;
pub(crate) mod compression;
pub(crate) mod dns;
pub(crate) mod frame;
pub(crate) mod h3;
pub(crate) mod liveness;
pub(crate) mod metadata;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;
pub(crate) mod status;
pub(crate) mod text;
pub(crate) mod timeout;
pub(crate) mod trace;
pub(crate) mod wire;

#[cfg(test)]
mod purity;
