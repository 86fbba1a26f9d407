//! Custom metadata (knafeh/src/metadata.rs), `-bin` values (base64), and
//! the status trailers with their percent-encoded `grpc-message`
//! (knafeh/src/proto/status.rs, proto/wire.rs).
//!
//! Input: a header block as text (see `knafeh_fuzz::parse_headers`).
//! - Decoded metadata is valid (keys lower-case, allowed bytes, not
//!   reserved, within limits; ASCII values printable), keeps one entry per
//!   non-reserved header, survives encode -> decode and rebuilding through
//!   the public `append`/`append_bin` unchanged.
//! - base64: every decodable value re-encodes to the same symbols (the last
//!   one may differ in ignored low bits); any bytes survive encode -> decode.
//! - percent-encoding: any string encodes to printable ASCII and decodes
//!   back; decoding arbitrary bytes never panics.
//! - Trailers and response heads never panic, and a status read from
//!   trailers survives `trailers` -> `parse_trailers`.
#![no_main]

use knafeh::__fuzz::metadata::{base64_decode, base64_encode, decode_headers, encode};
use knafeh::__fuzz::status::{percent_decode, percent_encode};
use knafeh::__fuzz::wire::{parse_response_head, parse_trailers, trailers};
use knafeh::{Code, Metadata, MetadataValue};
use knafeh_fuzz::{parse_headers, view};
use libfuzzer_sys::fuzz_target;

const RESERVED: [&[u8]; 7] = [
    b"content-type",
    b"te",
    b"content-length",
    b"host",
    b"connection",
    b"transfer-encoding",
    b"user-agent",
];

fn reserved(lower: &[u8]) -> bool {
    lower.first() == Some(&b':') || lower.starts_with(b"grpc-") || RESERVED.contains(&lower)
}

fn check_metadata(headers: &[(&[u8], &[u8])]) {
    let md = match decode_headers(headers) {
        Ok(md) => md,
        Err(e) => {
            // Some non-reserved header must have been at fault.
            assert!(headers
                .iter()
                .any(|(n, _)| !reserved(&n.to_ascii_lowercase())));
            // The text ends up in a status message sent back: it stays small.
            let text = e.to_string();
            assert!(text.len() <= 1024, "{} byte error", text.len());
            return;
        }
    };
    let kept: Vec<_> = headers
        .iter()
        .filter(|(n, _)| !reserved(&n.to_ascii_lowercase()))
        .collect();
    assert_eq!(md.len(), kept.len());
    let mut rebuilt = Metadata::new();
    for ((key, value), (name, raw)) in md.iter().zip(kept) {
        assert_eq!(key.as_bytes(), name.to_ascii_lowercase());
        assert!((1..=256).contains(&key.len()), "{key:?}");
        assert!(key
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.')));
        assert!(!reserved(key.as_bytes()));
        match value {
            MetadataValue::Ascii(s) => {
                assert!(!key.ends_with("-bin"));
                assert_eq!(s.as_bytes(), *raw);
                assert!(s.len() <= 8192 && s.bytes().all(|b| (0x20..=0x7E).contains(&b)));
                rebuilt.append(key, s).expect("decoded entry re-appends");
            }
            MetadataValue::Binary(b) => {
                assert!(key.ends_with("-bin"));
                assert!(b.len() <= 8192);
                assert_eq!(base64_decode(raw).as_ref(), Some(b));
                rebuilt
                    .append_bin(key, b)
                    .expect("decoded entry re-appends");
            }
        }
    }
    assert_eq!(rebuilt, md);
    let wire = encode(&md);
    assert_eq!(decode_headers(&view(&wire)).as_ref(), Ok(&md));
}

fn check_base64(v: &[u8]) {
    let enc = base64_encode(v);
    assert_eq!(enc.len(), v.len().div_ceil(3) * 4);
    assert_eq!(base64_decode(enc.as_bytes()).as_deref(), Some(v));
    assert_eq!(
        base64_decode(enc.trim_end_matches('=').as_bytes()).as_deref(),
        Some(v)
    );
    if let Some(bytes) = base64_decode(v) {
        let canon = base64_encode(&bytes);
        let canon = canon.trim_end_matches('=').as_bytes();
        let given = v.strip_suffix(b"==").or(v.strip_suffix(b"=")).unwrap_or(v);
        assert_eq!(canon.len(), given.len(), "{:?}", String::from_utf8_lossy(v));
        if let Some(last) = canon.len().checked_sub(1) {
            assert_eq!(canon[..last], given[..last]);
        }
    }
}

fn check_percent(v: &[u8]) {
    let _ = percent_decode(v);
    let s = String::from_utf8_lossy(v);
    let enc = percent_encode(&s);
    assert!(enc.bytes().all(|b| (0x20..=0x7E).contains(&b)), "{enc:?}");
    assert_eq!(percent_decode(enc.as_bytes()), s);
    if v.iter().all(|b| (0x20..=0x7E).contains(b) && *b != b'%') {
        assert_eq!(percent_decode(v).as_bytes(), v);
    }
}

fuzz_target!(|data: &[u8]| {
    let headers = parse_headers(data);
    check_metadata(&headers);
    for (name, value) in &headers {
        check_base64(value);
        check_percent(value);
        let code = Code::from_header(value);
        assert_eq!(
            code.is_some(),
            !value.is_empty() && value.iter().all(u8::is_ascii_digit)
        );
        let _ = Code::from_header(name);
    }
    let _ = parse_response_head(&headers);
    let status = parse_trailers(&headers);
    if headers.iter().any(|(n, _)| *n == b"grpc-status") {
        let back = parse_trailers(&view(&trailers(&status)));
        assert_eq!(back.code(), status.code());
        assert_eq!(back.message(), status.message());
        assert_eq!(back.metadata(), status.metadata());
    } else {
        assert_eq!(status.code(), Code::Internal);
    }
});
