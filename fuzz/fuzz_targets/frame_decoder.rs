//! The length-prefixed message decoder (knafeh/src/proto/frame.rs).
//!
//! Input: byte 0 picks the size limit, bytes 1-2 seed a chunking, the rest
//! is the received stream. Checked against a whole-stream reference model:
//! - fed whole, in pseudo-random chunks (empty ones included) and byte by
//!   byte, the decoder ends with the model's error or truncation, and yields
//!   the model's messages (all of them unless a bad prefix stopped it; a
//!   prefix of them then, since a failing `push` drops the messages it
//!   completed);
//! - no message is longer than the limit, and after draining, the buffer
//!   holds less than one frame (`PREFIX_LEN + limit`);
//! - errors are sticky: after one, every method returns it.
#![no_main]

use knafeh::__fuzz::frame::{Decoder, PREFIX_LEN};
use knafeh_fuzz::chunks;
use libfuzzer_sys::fuzz_target;

/// The result of decoding a stream: messages, then how it ended (`None`:
/// cleanly at a message boundary; `Some`: the decoder's error, as `Debug`).
type Outcome = (Vec<Vec<u8>>, Option<String>);

/// Straightforward decoding of a complete stream.
fn model(mut rest: &[u8], max: usize) -> Outcome {
    let mut messages = Vec::new();
    loop {
        if rest.is_empty() {
            return (messages, None);
        }
        let truncated = Some(format!("Truncated {{ buffered: {} }}", rest.len()));
        if rest.len() < PREFIX_LEN {
            return (messages, truncated);
        }
        match rest[0] {
            0 => {}
            1 => return (messages, Some("Compressed".into())),
            flag => return (messages, Some(format!("BadFlag({flag})"))),
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        if u64::from(len) > max as u64 {
            return (
                messages,
                Some(format!("TooLarge {{ len: {len}, max: {max} }}")),
            );
        }
        let len = len as usize;
        if rest.len() - PREFIX_LEN < len {
            return (messages, truncated);
        }
        messages.push(rest[PREFIX_LEN..PREFIX_LEN + len].to_vec());
        rest = &rest[PREFIX_LEN + len..];
    }
}

fn sticky(d: &mut Decoder, e: &str) {
    assert_eq!(d.push(b"\0\0\0\0\0").unwrap_err(), e);
    assert_eq!(d.next_message().unwrap_err(), e);
    assert_eq!(d.finish().unwrap_err(), e);
}

/// Decodes the stream given as `pieces`, draining after every push as the
/// server and client do.
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>, max: usize) -> Outcome {
    let mut d = Decoder::new(max);
    let mut messages = Vec::new();
    let mut pushed = 0usize;
    for piece in pieces {
        pushed += piece.len();
        if let Err(e) = d.push(piece) {
            assert_eq!(d.buffered(), 0, "an error frees the buffer");
            sticky(&mut d, &e);
            return (messages, Some(e));
        }
        assert!(d.buffered() <= pushed);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    assert!(m.len() <= max, "{} > limit {max}", m.len());
                    messages.push(m.to_vec());
                }
                Ok(None) => break,
                Err(e) => panic!("next_message failed after a successful push: {e}"),
            }
        }
        assert!(
            d.buffered() < PREFIX_LEN.saturating_add(max),
            "{} bytes buffered after draining, limit {max}",
            d.buffered()
        );
    }
    match d.finish() {
        Ok(()) => {
            assert_eq!(d.buffered(), 0);
            (messages, None)
        }
        Err(e) => {
            assert!(e.starts_with("Truncated"), "finish: {e}");
            // Truncation is not sticky: the partial message stays buffered.
            assert_eq!(d.finish().unwrap_err(), e);
            (messages, Some(e))
        }
    }
}

fn check(name: &str, got: Outcome, want: &Outcome, exact: bool) {
    assert_eq!(got.1, want.1, "{name}: end of stream");
    let pushed_error = want
        .1
        .as_deref()
        .is_some_and(|e| !e.starts_with("Truncated"));
    if exact || !pushed_error {
        assert_eq!(got.0, want.0, "{name}: messages");
    } else {
        assert!(
            want.0.starts_with(&got.0),
            "{name}: messages are not a prefix of the model's"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, s0, s1, stream @ ..] = data else {
        return;
    };
    let max = match pick % 4 {
        0 => usize::from(*pick >> 2),
        1 => 0,
        2 => knafeh::DEFAULT_MAX_MESSAGE_SIZE,
        _ => usize::MAX,
    };
    let seed = u64::from(u16::from_le_bytes([*s0, *s1]));
    let want = model(stream, max);
    check("whole", run(std::iter::once(stream), max), &want, false);
    check("chunked", run(chunks(stream, seed), max), &want, false);
    // One byte at a time, every complete message is drained before the
    // next prefix can fail, so nothing is lost.
    check("bytewise", run(stream.chunks(1), max), &want, true);
});
