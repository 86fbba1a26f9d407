//! Why a connection closed, in words for the calls it ends: the peer's
//! TLS alert, HTTP/3 or QUIC error, or a transport error of ours.

use tokio_quiche::quic::QuicheConnection;
use tokio_quiche::quiche::ConnectionError;

use crate::proto::h3::H3_NO_ERROR;

/// Why `qconn` closed, for the calls it ends: the peer's error (a TLS
/// alert, a protocol error) or a transport error of ours; `None` for a
/// clean close or a timeout.
pub(crate) fn close_reason(qconn: &QuicheConnection) -> Option<String> {
    if let Some(e) = qconn.peer_error() {
        return describe("the peer closed the connection with", e);
    }
    match qconn.local_error() {
        Some(e) if !e.is_app => describe("closed after", e),
        _ => None,
    }
}

fn describe(who: &str, e: &ConnectionError) -> Option<String> {
    describe_code(who, e.is_app, e.error_code, &e.reason)
}

/// `who` followed by what the close code means; `None` for a clean close.
fn describe_code(who: &str, is_app: bool, code: u64, reason: &[u8]) -> Option<String> {
    let what = match (is_app, code) {
        (true, H3_NO_ERROR) => return None,
        (true, code) => format!("HTTP/3 error 0x{code:x}"),
        (false, 0) => return None,
        (false, code @ 0x100..=0x1ff) => {
            let alert = (code - 0x100) as u8;
            format!("TLS alert {alert} ({})", tls_alert_name(alert))
        }
        (false, code) => format!("QUIC error 0x{code:x}"),
    };
    let detail = if reason.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::proto::text::shown(reason))
    };
    Some(format!("{who} {what}{detail}"))
}

/// The name of a TLS alert (RFC 8446 §6), for error messages.
fn tls_alert_name(alert: u8) -> &'static str {
    match alert {
        10 => "unexpected message",
        20 => "bad record MAC",
        40 => "handshake failure",
        42 => "bad certificate",
        43 => "unsupported certificate",
        44 => "certificate revoked",
        45 => "certificate expired",
        46 => "certificate unknown",
        47 => "illegal parameter",
        48 => "unknown CA",
        49 => "access denied",
        50 => "decode error",
        51 => "decrypt error",
        70 => "protocol version",
        80 => "internal error",
        109 => "missing extension",
        110 => "unsupported extension",
        112 => "unrecognized name",
        116 => "certificate required: the server requires a client certificate",
        120 => "no application protocol",
        _ => "see RFC 8446",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_closes_say_nothing() {
        assert_eq!(describe_code("x", true, 0x100, b""), None);
        assert_eq!(describe_code("x", false, 0, b"bye"), None);
    }

    #[test]
    fn codes_are_named() {
        assert_eq!(
            describe_code(
                "the peer closed the connection with",
                false,
                0x100 + 48,
                b""
            )
            .as_deref(),
            Some("the peer closed the connection with TLS alert 48 (unknown CA)")
        );
        assert_eq!(
            describe_code("closed after", false, 0x100 + 116, b"").as_deref(),
            Some("closed after TLS alert 116 (certificate required: the server requires a client certificate)")
        );
        assert_eq!(
            describe_code("w", true, 0x10c, b"gone").as_deref(),
            Some("w HTTP/3 error 0x10c: gone")
        );
        assert_eq!(
            describe_code("w", false, 0x0a, b"").as_deref(),
            Some("w QUIC error 0xa")
        );
        assert_eq!(tls_alert_name(200), "see RFC 8446");
    }

    #[test]
    fn reasons_are_shown_lossily() {
        assert_eq!(
            describe_code("w", true, 0x101, b"bad\xff").as_deref(),
            Some("w HTTP/3 error 0x101: bad\u{fffd}")
        );
    }
}
