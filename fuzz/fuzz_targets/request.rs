//! The server's path from a request's header block and body bytes to a
//! typed request: `parse_request` (knafeh/src/proto/wire.rs), the frame decoder
//! fed the body in pseudo-random chunks with the server's rules (exactly
//! one message, `finish` at the end of the stream; knafeh/src/proto/frame.rs) and
//! `Message::decode_message` with the request's codec (knafeh/src/codec.rs),
//! as the generated server code calls it.
//!
//! Input: byte 0 picks the message size limit (and with byte 1 seeds the
//! chunking), then the header block as text (see
//! `knafeh_fuzz::parse_headers`), then `\n\n`, then the body. The method
//! picks the type: `say_hello` -> greeter's `HelloRequest`, `count_to` ->
//! `CountRequest`, anything else -> `knafeh_fuzz::Order`.
//!
//! Checked:
//! - a refusal carries a non-OK status and an HTTP status the server uses,
//!   and its message (sent back in `grpc-message`) is at most 1 KiB;
//! - an accepted head is consistent with its path, and the head rebuilt by
//!   the client's `request_headers` parses to the same head;
//! - the message is within the limit;
//! - a decoded request re-encodes (framed) in its codec and in the other
//!   codec, and both decode to the same value.
//!
//! With `KNAFEH_FUZZ_VERBOSE` set, prints what happened to each input (to
//! look at seeds and crashes).
#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use greeter::{CountRequest, HelloRequest};
use knafeh::__fuzz::frame::Decoder;
use knafeh::__fuzz::wire::{parse_request, request_headers};
use knafeh::__private::Message;
use knafeh::{Code, Codec};
use knafeh_fuzz::{chunks, parse_headers, view, Order};
use libfuzzer_sys::fuzz_target;

/// Longest refusal message allowed, in bytes.
const MAX_REFUSAL_MESSAGE: usize = 1024;

fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("KNAFEH_FUZZ_VERBOSE").is_some())
}

macro_rules! say {
    ($($t:tt)*) => {
        if verbose() {
            eprintln!($($t)*);
        }
    };
}

/// What the server's request reader (knafeh/src/proto/request.rs) does with the body.
fn read_body(body: &[u8], max: usize, seed: u64) -> Result<Bytes, String> {
    let mut decoder = Decoder::new(max);
    let mut message = None;
    for piece in chunks(body, seed) {
        decoder.push(piece)?;
        while let Some(m) = decoder.next_message()? {
            if message.is_some() {
                return Err("more than one request message".into());
            }
            message = Some(m);
        }
    }
    decoder.finish()?;
    message.ok_or_else(|| "request has no message".into())
}

fn other(codec: Codec) -> Codec {
    match codec {
        Codec::Bincode => Codec::Json,
        Codec::Json => Codec::Bincode,
    }
}

/// Encodes `value` as one framed message and decodes it back. The codecs
/// count nesting differently (serde_json: 128 arrays/objects; knafeh's
/// bincode: 256 levels of any kind), so a deep value read with one codec may
/// exceed the other's limit: `depth_may_fail` allows that error only.
fn round_trip<T: Message + PartialEq + Debug>(value: &T, codec: Codec, depth_may_fail: bool) {
    let mut framed = BytesMut::new();
    value
        .encode_message(codec, &mut framed)
        .unwrap_or_else(|e| panic!("{value:?} does not encode as {codec:?}: {e}"));
    let payload = read_body(&framed, framed.len(), 0).expect("an encoded message frames");
    match T::decode_message(codec, &payload) {
        Ok(back) => assert_eq!(&back, value, "{codec:?} round trip"),
        Err(e)
            if depth_may_fail && (e.contains("recursion limit") || e.contains("nested deeper")) =>
        {
            say!("too deep for {codec:?}: {e}");
        }
        Err(e) => panic!("{value:?} encoded as {codec:?} does not decode: {e}"),
    }
}

fn check<T: Message + PartialEq + Debug>(codec: Codec, payload: &[u8]) {
    match T::decode_message(codec, payload) {
        Ok(value) => {
            say!("decoded {value:?}");
            round_trip(&value, codec, false);
            round_trip(&value, other(codec), true);
        }
        Err(e) => say!("does not decode as {}: {e}", std::any::type_name::<T>()),
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, s1, rest @ ..] = data else {
        return;
    };
    let max = match pick % 4 {
        0 => knafeh::DEFAULT_MAX_MESSAGE_SIZE,
        1 => 64,
        2 => 0,
        _ => 1024,
    };
    let seed = u64::from(u16::from_le_bytes([*pick >> 2, *s1]));
    let (text, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let headers = parse_headers(text);

    let head = match parse_request(&headers) {
        Ok(head) => head,
        Err((http, status)) => {
            say!("refused: HTTP {http}, {status}");
            assert!(matches!(http, 200 | 400 | 405 | 415), "HTTP {http}");
            assert_ne!(status.code(), Code::Ok);
            assert!(!status.message().is_empty());
            // The message goes back in a header: whatever the request
            // carried, it stays small.
            assert!(
                status.message().len() <= MAX_REFUSAL_MESSAGE,
                "{} byte message for a {} byte request head",
                status.message().len(),
                text.len()
            );
            return;
        }
    };
    say!("head: {head:?}");
    assert_eq!(head.path, format!("/{}/{}", head.service, head.method));
    assert!(!head.service.is_empty() && !head.method.contains('/'));
    let rebuilt = request_headers(
        "localhost",
        &head.path,
        head.codec,
        head.timeout,
        &head.metadata,
    );
    let again = parse_request(&view(&rebuilt)).expect("the client's own head is accepted");
    assert_eq!(
        (&again.path, again.codec, again.timeout, &again.metadata),
        (&head.path, head.codec, head.timeout, &head.metadata)
    );

    let payload = match read_body(body, max, seed) {
        Ok(p) => p,
        Err(e) => {
            say!("body refused: {e}");
            return;
        }
    };
    assert!(payload.len() <= max);
    match head.method.as_str() {
        "say_hello" => check::<HelloRequest>(head.codec, &payload),
        "count_to" => check::<CountRequest>(head.codec, &payload),
        _ => check::<Order>(head.codec, &payload),
    }
});
