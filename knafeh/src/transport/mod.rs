//! Carrying the protocol over tokio-quiche: the HTTP/3 application that
//! drives one QUIC connection, why connections close, and TLS.

pub(crate) mod close;
pub(crate) mod conn;
pub(crate) mod devcert;
pub(crate) mod icmp;
pub(crate) mod stream;
pub(crate) mod tls;
