//! Text on the wire and in messages: received values shown safely in error
//! messages, and the `grpc-message` percent-encoding.

/// At most this many bytes of a received value appear in an error message.
const SHOWN_MAX: usize = 64;

/// A received value for an error message: invalid UTF-8 replaced, cut to
/// its first 64 bytes with the full length noted, so that messages sent
/// back in `grpc-message` stay small whatever the peer sent.
pub(crate) fn shown(v: &[u8]) -> String {
    match v.get(..SHOWN_MAX) {
        Some(head) if head.len() < v.len() => {
            format!("{}... ({} bytes)", String::from_utf8_lossy(head), v.len())
        }
        _ => String::from_utf8_lossy(v).into_owned(),
    }
}

/// Like [`shown`], but quoted and escaped as a Rust string literal.
pub(crate) fn quoted(v: &[u8]) -> String {
    match v.get(..SHOWN_MAX) {
        Some(head) if head.len() < v.len() => {
            format!("{:?}... ({} bytes)", String::from_utf8_lossy(head), v.len())
        }
        _ => format!("{:?}", String::from_utf8_lossy(v)),
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes a `grpc-message` value: bytes `0x20..=0x7E` other than
/// `%` are kept, every other byte of the UTF-8 encoding becomes `%XX`.
pub(crate) fn percent_encode(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for &b in msg.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
        }
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a percent-encoded `grpc-message` value. `%XX` accepts either hex
/// case; a malformed escape is kept literally; invalid UTF-8 is replaced
/// lossily.
pub(crate) fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                v.get(i + 1).copied().and_then(hex_val),
                v.get(i + 2).copied().and_then(hex_val),
            ) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `grpc-message` encoding for the fuzz targets (built only with
/// `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzz {
    /// See the crate-private `percent_encode`.
    pub fn percent_encode(msg: &str) -> String {
        super::percent_encode(msg)
    }

    /// See the crate-private `percent_decode`.
    pub fn percent_decode(v: &[u8]) -> String {
        super::percent_decode(v)
    }
}
