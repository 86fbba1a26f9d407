//! Custom call metadata: the HTTP headers and trailers of a call that are
//! not reserved by the protocol.

use std::fmt;

/// Longest allowed metadata key, in bytes.
const MAX_KEY_LEN: usize = 256;
/// Longest allowed metadata value, in bytes (before base64 for binary values).
const MAX_VALUE_LEN: usize = 8192;

/// Header names, besides pseudo-headers and `grpc-*`, that the protocol
/// itself manages and that can therefore not be used as metadata.
const RESERVED: [&str; 7] = [
    "content-type",
    "te",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
];

/// One metadata value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataValue {
    /// A printable-ASCII value, stored under a key that does not end in `-bin`.
    Ascii(String),
    /// An arbitrary binary value, stored under a key ending in `-bin` and
    /// base64-encoded on the wire.
    Binary(Vec<u8>),
}

/// Custom metadata of a call: an ordered list of (key, value) pairs in which a
/// key may occur several times.
///
/// Keys are stored lower-case and looked up case-insensitively. Every entry
/// is validated on the way in, so the contents can always be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
}

impl Metadata {
    /// Creates empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an ASCII value, replacing every existing value of `key`.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), MetadataError> {
        let entry = ascii_entry(key, value)?;
        self.replace(entry);
        Ok(())
    }

    /// Adds one more ASCII value for `key`, keeping the existing ones.
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), MetadataError> {
        let entry = ascii_entry(key, value)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Sets a binary value (`key` must end in `-bin`), replacing every
    /// existing value of `key`.
    pub fn insert_bin(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        let entry = binary_entry(key, value)?;
        self.replace(entry);
        Ok(())
    }

    /// Adds one more binary value (`key` must end in `-bin`), keeping the
    /// existing ones.
    pub fn append_bin(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        let entry = binary_entry(key, value)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Returns the first ASCII value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find_map(|(k, v)| match v {
            MetadataValue::Ascii(s) if k.eq_ignore_ascii_case(key) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Returns the first binary value of `key`, if any.
    pub fn get_bin(&self, key: &str) -> Option<&[u8]> {
        self.entries.iter().find_map(|(k, v)| match v {
            MetadataValue::Binary(b) if k.eq_ignore_ascii_case(key) => Some(b.as_slice()),
            _ => None,
        })
    }

    /// Returns every value of `key`, in insertion order.
    pub fn get_all(&self, key: &str) -> impl Iterator<Item = &MetadataValue> {
        let key = key.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Removes every value of `key`; returns whether there was any.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.entries.len() != before
    }

    /// Iterates over all entries, in insertion order, keys lower-case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Returns the number of entries (counting each value of a repeated key).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends every entry of `other`, keeping existing entries.
    pub fn extend(&mut self, other: Metadata) {
        self.entries.extend(other.entries);
    }

    fn replace(&mut self, entry: (String, MetadataValue)) {
        self.entries.retain(|(k, _)| *k != entry.0);
        self.entries.push(entry);
    }

    /// Appends the entries as wire headers `(name, value)`; binary values are
    /// base64-encoded (standard alphabet, padded).
    pub(crate) fn encode_into(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        out.reserve(self.entries.len());
        for (k, v) in &self.entries {
            let value = match v {
                MetadataValue::Ascii(s) => s.as_bytes().to_vec(),
                MetadataValue::Binary(b) => base64_encode(b).into_bytes(),
            };
            out.push((k.as_bytes().to_vec(), value));
        }
    }

    /// Builds metadata from received headers. Pseudo-headers, `grpc-*` and
    /// the other reserved names are skipped; `-bin` values may be padded or
    /// unpadded base64. Invalid keys, invalid base64, non-printable ASCII
    /// values and values over the size limit are rejected.
    pub(crate) fn decode_headers<'a>(
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Metadata, MetadataError> {
        let mut md = Metadata::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if is_reserved(&lower) {
                continue;
            }
            let key = validate_key_bytes(&lower, name)?;
            let value = if key.ends_with("-bin") {
                let bytes = base64_decode(value)
                    .ok_or_else(|| MetadataError::new(name, ErrorKind::InvalidBase64))?;
                check_len(name, bytes.len())?;
                MetadataValue::Binary(bytes)
            } else {
                check_len(name, value.len())?;
                check_ascii(name, value)?;
                // Printable ASCII is valid UTF-8.
                MetadataValue::Ascii(String::from_utf8_lossy(value).into_owned())
            };
            md.entries.push((key, value));
        }
        Ok(md)
    }
}

fn is_reserved(lower: &[u8]) -> bool {
    lower.first() == Some(&b':')
        || (lower.starts_with(b"grpc-") && !RETRY_KEYS.iter().any(|k| k.as_bytes() == lower))
        || RESERVED.iter().any(|r| r.as_bytes() == lower)
}

/// The `grpc-*` keys of retries (PROTOCOL.md §8.5), which applications
/// see and set as metadata: how many attempts preceded this one, and a
/// server's pushback.
const RETRY_KEYS: [&str; 2] = [
    crate::proto::retry::PREVIOUS_ATTEMPTS,
    crate::proto::retry::PUSHBACK,
];

/// Validates an already lower-cased key; `original` is used for errors.
fn validate_key_bytes(lower: &[u8], original: &[u8]) -> Result<String, MetadataError> {
    if is_reserved(lower) {
        return Err(MetadataError::new(original, ErrorKind::Reserved));
    }
    if lower.is_empty() {
        return Err(MetadataError::new(original, ErrorKind::EmptyKey));
    }
    if lower.len() > MAX_KEY_LEN {
        return Err(MetadataError::new(
            original,
            ErrorKind::KeyTooLong(lower.len()),
        ));
    }
    if let Some(index) = lower
        .iter()
        .position(|&b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
    {
        let byte = original.get(index).copied().unwrap_or(lower[index]);
        return Err(MetadataError::new(
            original,
            ErrorKind::InvalidKeyByte { byte, index },
        ));
    }
    // Only ASCII bytes remain, so this is lossless.
    Ok(String::from_utf8_lossy(lower).into_owned())
}

fn validate_key(key: &str) -> Result<String, MetadataError> {
    validate_key_bytes(key.to_ascii_lowercase().as_bytes(), key.as_bytes())
}

fn check_len(key: &[u8], len: usize) -> Result<(), MetadataError> {
    if len > MAX_VALUE_LEN {
        Err(MetadataError::new(key, ErrorKind::ValueTooLong(len)))
    } else {
        Ok(())
    }
}

fn check_ascii(key: &[u8], value: &[u8]) -> Result<(), MetadataError> {
    match value.iter().position(|b| !(0x20..=0x7E).contains(b)) {
        Some(index) => Err(MetadataError::new(
            key,
            ErrorKind::InvalidValueByte {
                byte: value[index],
                index,
            },
        )),
        None => Ok(()),
    }
}

fn ascii_entry(key: &str, value: &str) -> Result<(String, MetadataValue), MetadataError> {
    let k = validate_key(key)?;
    if k.ends_with("-bin") {
        return Err(MetadataError::new(
            key.as_bytes(),
            ErrorKind::AsciiForBinKey,
        ));
    }
    check_len(key.as_bytes(), value.len())?;
    check_ascii(key.as_bytes(), value.as_bytes())?;
    Ok((k, MetadataValue::Ascii(value.to_owned())))
}

fn binary_entry(key: &str, value: &[u8]) -> Result<(String, MetadataValue), MetadataError> {
    let k = validate_key(key)?;
    if !k.ends_with("-bin") {
        return Err(MetadataError::new(
            key.as_bytes(),
            ErrorKind::BinaryForAsciiKey,
        ));
    }
    check_len(key.as_bytes(), value.len())?;
    Ok((k, MetadataValue::Binary(value.to_vec())))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ErrorKind {
    EmptyKey,
    KeyTooLong(usize),
    InvalidKeyByte { byte: u8, index: usize },
    Reserved,
    AsciiForBinKey,
    BinaryForAsciiKey,
    InvalidValueByte { byte: u8, index: usize },
    ValueTooLong(usize),
    InvalidBase64,
}

/// Why a metadata key or value was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError {
    key: String,
    kind: ErrorKind,
}

impl MetadataError {
    fn new(key: &[u8], kind: ErrorKind) -> Self {
        MetadataError {
            key: String::from_utf8_lossy(key).into_owned(),
            kind,
        }
    }

    /// Returns the offending key as given (non-UTF-8 bytes replaced).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // At most 64 bytes of the key: the text may go back to the peer.
        let key = crate::proto::text::quoted(self.key.as_bytes());
        match &self.kind {
            ErrorKind::EmptyKey => f.write_str("invalid metadata key \"\": keys must not be empty"),
            ErrorKind::KeyTooLong(len) => write!(
                f,
                "invalid metadata key {key}: {len} bytes long, the limit is {MAX_KEY_LEN}"
            ),
            ErrorKind::InvalidKeyByte { byte, index } => write!(
                f,
                "invalid metadata key {key}: byte 0x{byte:02X} at position {index} is not \
                 allowed (keys may contain only a-z, 0-9, '-', '_' and '.')"
            ),
            ErrorKind::Reserved => write!(
                f,
                "invalid metadata key {key}: reserved by the protocol (pseudo-headers, grpc-*, \
                 content-type, te, content-length, host, connection, transfer-encoding and \
                 user-agent cannot be used as metadata)"
            ),
            ErrorKind::AsciiForBinKey => write!(
                f,
                "invalid metadata key {key}: keys ending in \"-bin\" hold binary values; use \
                 insert_bin/append_bin or drop the suffix"
            ),
            ErrorKind::BinaryForAsciiKey => write!(
                f,
                "invalid metadata key {key}: binary values need a key ending in \"-bin\""
            ),
            ErrorKind::InvalidValueByte { byte, index } => write!(
                f,
                "invalid value for metadata key {key}: byte 0x{byte:02X} at position {index} \
                 is not printable ASCII (0x20..=0x7E); use a \"-bin\" key for binary data"
            ),
            ErrorKind::ValueTooLong(len) => write!(
                f,
                "invalid value for metadata key {key}: {len} bytes long, the limit is \
                 {MAX_VALUE_LEN}"
            ),
            ErrorKind::InvalidBase64 => write!(
                f,
                "invalid value for metadata key {key}: not valid base64 (standard alphabet, \
                 padded or unpadded)"
            ),
        }
    }
}

impl std::error::Error for MetadataError {}

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes bytes as base64 with the standard alphabet and `=` padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    let sym = |i: u32| char::from(B64_ALPHABET[(i & 0x3F) as usize]);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk[0]);
        let b1 = chunk.get(1).copied().map_or(0, u32::from);
        let b2 = chunk.get(2).copied().map_or(0, u32::from);
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        } else {
            out.push('=');
        }
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes standard-alphabet base64, padded or unpadded. Returns `None` on a
/// character outside the alphabet, misplaced or partial padding, or an
/// impossible length. Unused low bits of the last symbol are ignored.
pub(crate) fn base64_decode(data: &[u8]) -> Option<Vec<u8>> {
    let pad = data.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 || (pad > 0 && !data.len().is_multiple_of(4)) {
        return None;
    }
    let body = &data[..data.len() - pad];
    let rem = body.len() % 4;
    if rem == 1 || (pad > 0 && rem + pad != 4) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut n: u32 = 0;
        for &c in chunk {
            n = (n << 6) | b64_value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]),
            3 => out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]),
            2 => out.push((n >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

/// Metadata wire encoding for the fuzz targets (built only with
/// `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzz {
    use super::{Metadata, MetadataError};

    /// See the crate-private `Metadata::decode_headers`.
    pub fn decode_headers(headers: &[(&[u8], &[u8])]) -> Result<Metadata, MetadataError> {
        Metadata::decode_headers(headers.iter().copied())
    }

    /// See the crate-private `Metadata::encode_into`.
    pub fn encode(md: &Metadata) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        md.encode_into(&mut out);
        out
    }

    /// See the crate-private `base64_encode`.
    pub fn base64_encode(data: &[u8]) -> String {
        super::base64_encode(data)
    }

    /// See the crate-private `base64_decode`.
    pub fn base64_decode(data: &[u8]) -> Option<Vec<u8>> {
        super::base64_decode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4648: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn base64_rfc4648_vectors() {
        for (plain, enc) in RFC4648 {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
            let unpadded = enc.trim_end_matches('=');
            assert_eq!(
                base64_decode(unpadded.as_bytes()).unwrap(),
                plain.as_bytes()
            );
        }
    }

    #[test]
    fn base64_all_bytes_and_symbols() {
        let all: Vec<u8> = (0..=255).collect();
        let enc = base64_encode(&all);
        assert_eq!(base64_decode(enc.as_bytes()).unwrap(), all);
        assert_eq!(base64_encode(&[0xFB, 0xFF, 0xBF]), "+/+/");
        assert_eq!(base64_decode(b"+/+/").unwrap(), [0xFB, 0xFF, 0xBF]);
        assert_eq!(base64_encode(&[0, 0, 0]), "AAAA");
        assert_eq!(base64_encode(&[0xFF]), "/w==");
    }

    #[test]
    fn base64_rejects_bad_input() {
        for bad in [
            &b"Z"[..],
            b"Zg=",
            b"Zm9v=",
            b"Zm9vY",
            b"Zg===",
            b"====",
            b"=",
            b"Z=g=",
            b"Zm-v",
            b"Zm_v",
            b"Zm9v\n",
            b" Zm9v",
            b"Zm8==",
            b"Zg=A",
            b"\xff\xff\xff\xff",
        ] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn insert_get_append_remove() {
        let mut md = Metadata::new();
        assert!(md.is_empty());
        md.insert("X-Request-Id", "abc").unwrap();
        assert_eq!(md.get("x-request-id"), Some("abc"));
        assert_eq!(md.get("X-REQUEST-ID"), Some("abc"));
        md.append("x-request-id", "def").unwrap();
        assert_eq!(md.len(), 2);
        assert_eq!(md.get("x-request-id"), Some("abc"));
        let all: Vec<_> = md.get_all("X-Request-ID").cloned().collect();
        assert_eq!(
            all,
            [
                MetadataValue::Ascii("abc".into()),
                MetadataValue::Ascii("def".into())
            ]
        );
        md.insert("x-request-id", "ghi").unwrap();
        assert_eq!(md.len(), 1);
        assert_eq!(md.get("x-request-id"), Some("ghi"));

        md.insert_bin("trace-BIN", &[0, 1, 255]).unwrap();
        md.append_bin("trace-bin", &[]).unwrap();
        assert_eq!(md.get_bin("trace-bin"), Some(&[0u8, 1, 255][..]));
        assert_eq!(md.get("trace-bin"), None);
        assert_eq!(md.get_bin("x-request-id"), None);
        assert_eq!(md.get_all("trace-bin").count(), 2);

        let keys: Vec<_> = md.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["x-request-id", "trace-bin", "trace-bin"]);

        assert!(md.remove("TRACE-bin"));
        assert!(!md.remove("trace-bin"));
        assert_eq!(md.len(), 1);

        let mut other = Metadata::new();
        other.append("x-request-id", "z").unwrap();
        md.extend(other);
        assert_eq!(md.get_all("x-request-id").count(), 2);
    }

    #[test]
    fn key_validation() {
        let mut md = Metadata::new();
        let long = "a".repeat(256);
        md.insert(&long, "v").unwrap();
        let err = md.insert(&"a".repeat(257), "v").unwrap_err();
        assert!(err.to_string().contains("257 bytes"), "{err}");
        md.insert("a.b_c-9", "v").unwrap();

        for bad in ["", "a b", "a:b", "é", "a/b", "a\0"] {
            let err = md.insert(bad, "v").unwrap_err();
            assert_eq!(err.key(), bad);
        }
        let err = md.insert("a b", "v").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid metadata key \"a b\": byte 0x20 at position 1 is not allowed \
             (keys may contain only a-z, 0-9, '-', '_' and '.')"
        );

        for reserved in [
            ":path",
            "grpc-status",
            "GRPC-Timeout",
            "grpc-custom",
            "content-type",
            "te",
            "Content-Length",
            "host",
            "connection",
            "transfer-encoding",
            "user-agent",
        ] {
            let err = md.insert(reserved, "v").unwrap_err();
            assert!(err.to_string().contains("reserved"), "{err}");
            assert_eq!(err.key(), reserved);
        }
        // Not reserved: only a prefix of a reserved name.
        md.insert("grpc", "v").unwrap();
        md.insert("tee", "v").unwrap();

        assert!(md.insert("x-bin", "v").is_err());
        assert!(md.append("x-bin", "v").is_err());
        assert!(md.insert_bin("x", b"v").is_err());
        assert!(md.append_bin("x", b"v").is_err());
        assert!(md.insert_bin("grpc-x-bin", b"v").is_err());
    }

    #[test]
    fn value_validation() {
        let mut md = Metadata::new();
        md.insert("k", " !~ ").unwrap();
        md.insert("k", "").unwrap();
        md.insert("k", &"x".repeat(8192)).unwrap();
        let err = md.insert("k", &"x".repeat(8193)).unwrap_err();
        assert!(err.to_string().contains("8193 bytes"), "{err}");
        let err = md.insert("k", "a\tb").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for metadata key \"k\": byte 0x09 at position 1 is not \
             printable ASCII (0x20..=0x7E); use a \"-bin\" key for binary data"
        );
        assert!(md.insert("k", "\x7f").is_err());
        assert!(md.insert("k", "é").is_err());
        md.insert_bin("k-bin", &[0xAB; 8192]).unwrap();
        assert!(md.insert_bin("k-bin", &[0xAB; 8193]).is_err());
    }

    #[test]
    fn encode_headers() {
        let mut md = Metadata::new();
        md.append("a", "1").unwrap();
        md.append_bin("b-bin", b"f").unwrap();
        md.append("a", "2").unwrap();
        let mut out = vec![(b"x".to_vec(), b"y".to_vec())];
        md.encode_into(&mut out);
        assert_eq!(
            out,
            [
                (b"x".to_vec(), b"y".to_vec()),
                (b"a".to_vec(), b"1".to_vec()),
                (b"b-bin".to_vec(), b"Zg==".to_vec()),
                (b"a".to_vec(), b"2".to_vec()),
            ]
        );
    }

    #[test]
    fn decode_headers_skips_reserved_and_decodes() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"0"),
            (b"grpc-message", b"\xff"),
            (b"te", b"trailers"),
            (b"user-agent", b"x"),
            (b"x-id", b"42"),
            (b"X-Up", b"Yes"),
            (b"t-bin", b"Zm8="),
            (b"t-bin", b"Zm8"),
            (b"x-id", b""),
        ];
        let md = Metadata::decode_headers(headers).unwrap();
        let got: Vec<_> = md.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        assert_eq!(
            got,
            [
                ("x-id".to_owned(), MetadataValue::Ascii("42".into())),
                ("x-up".to_owned(), MetadataValue::Ascii("Yes".into())),
                ("t-bin".to_owned(), MetadataValue::Binary(b"fo".to_vec())),
                ("t-bin".to_owned(), MetadataValue::Binary(b"fo".to_vec())),
                ("x-id".to_owned(), MetadataValue::Ascii(String::new())),
            ]
        );
    }

    #[test]
    fn decode_headers_rejects() {
        let cases: [(&[u8], &[u8], &str); 6] = [
            (b"bad key", b"v", "bad key"),
            (b"k\xff", b"v", "k\u{fffd}"),
            (b"", b"v", ""),
            (b"k", b"a\r\nb", "k"),
            (b"k", b"\xc3\xa9", "k"),
            (b"k-bin", b"Zm9v!", "k-bin"),
        ];
        for (name, value, key) in cases {
            let err = Metadata::decode_headers([(name, value)]).unwrap_err();
            assert_eq!(err.key(), key);
        }
        let big = vec![b'x'; 8193];
        assert!(Metadata::decode_headers([(&b"k"[..], &big[..])]).is_err());
        // Found by fuzz/fuzz_targets/metadata.rs: the whole key was quoted,
        // so the refusal's grpc-message grew with the header.
        let long_key = vec![0x01; 1000];
        let err = Metadata::decode_headers([(&long_key[..], &b"v"[..])]).unwrap_err();
        assert_eq!(err.key().len(), 1000);
        assert!(err.to_string().contains("... (1000 bytes)"), "{err}");
        assert!(err.to_string().len() < 700, "{err}");
        let big_bin = base64_encode(&[1; 8193]);
        assert!(Metadata::decode_headers([(&b"k-bin"[..], big_bin.as_bytes())]).is_err());
    }

    #[test]
    fn wire_round_trip() {
        let mut md = Metadata::new();
        md.append("a", "x y").unwrap();
        md.append_bin("b-bin", &[0, 255, 7, 8]).unwrap();
        let mut out = Vec::new();
        md.encode_into(&mut out);
        let back = Metadata::decode_headers(out.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
            .unwrap();
        assert_eq!(back, md);
    }
}
