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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_bytes() {
        assert_eq!(percent_encode(""), "");
        assert_eq!(percent_encode("hello world"), "hello world");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode(" ~"), " ~");
        assert_eq!(percent_encode("a\nb\tc\x7f"), "a%0Ab%09c%7F");
        // U+00E9 is C3 A9, U+1F600 is F0 9F 98 80.
        assert_eq!(percent_encode("\u{e9}"), "%C3%A9");
        assert_eq!(percent_encode("\u{1f600}"), "%F0%9F%98%80");
        assert_eq!(percent_encode("\0"), "%00");
    }

    #[test]
    fn percent_decode_bytes() {
        assert_eq!(percent_decode(b""), "");
        assert_eq!(percent_decode(b"plain"), "plain");
        assert_eq!(percent_decode(b"100%25"), "100%");
        assert_eq!(percent_decode(b"%c3%a9"), "\u{e9}");
        assert_eq!(percent_decode(b"%C3%A9"), "\u{e9}");
        assert_eq!(percent_decode(b"%F0%9F%98%80"), "\u{1f600}");
        // Malformed escapes are kept literally.
        assert_eq!(percent_decode(b"%"), "%");
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"%zz"), "%zz");
        assert_eq!(percent_decode(b"%4g1"), "%4g1");
        assert_eq!(percent_decode(b"a%%41"), "a%A");
        // Invalid UTF-8 becomes U+FFFD.
        assert_eq!(percent_decode(b"%FF"), "\u{fffd}");
        assert_eq!(percent_decode(b"\xff"), "\u{fffd}");
    }

    #[test]
    fn received_values_in_messages_are_bounded() {
        assert_eq!(shown(b"GET"), "GET");
        assert_eq!(quoted(b"a\"b\n\xff"), "\"a\\\"b\\n\u{fffd}\"");
        let long = [b'x'; 65];
        assert_eq!(shown(&long[..64]), "x".repeat(64));
        assert_eq!(shown(&long), format!("{}... (65 bytes)", "x".repeat(64)));
        assert_eq!(quoted(&long), format!("{:?}... (65 bytes)", "x".repeat(64)));
        // Found by the fuzz targets: a 32 KiB header value came back whole
        // (and up to 9 times larger once escaped and percent-encoded).
        let big = vec![0x01; 32 * 1024];
        assert!(quoted(&big).len() < 400, "{}", quoted(&big).len());
        assert!(percent_encode(&shown(&[0xFF; 32 * 1024])).len() < 600);
    }

    #[test]
    fn percent_round_trip() {
        for s in ["", "abc", "50% off\r\n", "\u{e9}t\u{e9}", "\u{1f600} %41"] {
            assert_eq!(percent_decode(percent_encode(s).as_bytes()), s);
        }
    }
}
