//! Incremental decoding of gRPC length-prefixed messages.
//!
//! Each message on the wire is a 1-byte flag (0 = uncompressed, 1 =
//! compressed with the call's `grpc-encoding`), a 4-byte big-endian
//! payload length, then the payload.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::compression::{decompress, Compression, DecompressError};
use crate::proto::status::Status;
use crate::proto::text::shown;

/// Size of the flag byte plus the 4-byte length that precede every message.
pub(crate) const PREFIX_LEN: usize = 5;

/// Starts a length-prefixed message in `out`: a zero flag byte and room
/// for the length, filled in by [`finish_message`] once the payload has
/// been written after it. Returns where the message starts.
pub(crate) fn begin_message(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.resize(start + PREFIX_LEN, 0);
    start
}

/// Writes the payload length of the message begun at `start` into its
/// prefix; a payload over `u32::MAX` bytes is removed again and refused.
pub(crate) fn finish_message(out: &mut BytesMut, start: usize) -> Result<(), String> {
    let payload_len = out.len() - start - PREFIX_LEN;
    let Ok(len) = u32::try_from(payload_len) else {
        out.truncate(start);
        return Err(format!(
            "message of {payload_len} bytes exceeds the maximum of {} bytes",
            u32::MAX
        ));
    };
    out[start + 1..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Why a stream of length-prefixed messages could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The flag byte was 1 (compressed) but the call's `grpc-encoding` is
    /// `identity` or absent.
    Compressed,
    /// A compressed message did not decompress within the limit.
    Decompress(DecompressError),
    /// The flag byte was neither 0 nor 1.
    BadFlag(u8),
    /// The declared payload length is above the configured limit.
    TooLarge {
        /// Declared payload length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The stream ended in the middle of a message.
    Truncated {
        /// Bytes of the incomplete message that had been received.
        buffered: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Compressed => {
                f.write_str("compressed message (flag 1) but grpc-encoding is identity")
            }
            FrameError::Decompress(e) => e.fmt(f),
            FrameError::BadFlag(flag) => write!(
                f,
                "invalid message flag {flag} (expected 0, or 1 for a compressed message)"
            ),
            FrameError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Truncated { buffered } => {
                write!(
                    f,
                    "stream ended inside a message: {buffered} bytes buffered"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Which message stream a [`FrameError`] was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The request, read by the server: the client's fault.
    Request,
    /// The response, read by the client: the server's fault.
    Response,
}

impl FrameError {
    /// The status a call ends with when its messages cannot be decoded
    /// (PROTOCOL.md §3.2, §6.2): too large, on the wire or once
    /// decompressed, is `RESOURCE_EXHAUSTED` either way; a compressed flag
    /// without an encoding or a payload that does not decompress is
    /// `INTERNAL` (gRPC's compression.md); on a request, a malformed frame
    /// is `INVALID_ARGUMENT`; on a response, anything else is `INTERNAL`.
    pub(crate) fn to_status(&self, path: &str, direction: Direction) -> Status {
        let too_large = matches!(
            self,
            FrameError::TooLarge { .. } | FrameError::Decompress(DecompressError::TooLarge { .. })
        );
        match direction {
            Direction::Request => {
                let msg = format!("{}: {self}", shown(path.as_bytes()));
                match self {
                    _ if too_large => Status::resource_exhausted(msg),
                    FrameError::BadFlag(_) | FrameError::Truncated { .. } => {
                        Status::invalid_argument(msg)
                    }
                    _ => Status::internal(msg),
                }
            }
            Direction::Response => {
                let msg = format!("{path}: response: {self}");
                if too_large {
                    Status::resource_exhausted(msg)
                } else {
                    Status::internal(msg)
                }
            }
        }
    }
}

/// Incremental decoder: feed received bytes with [`push`](Self::push), take
/// complete payloads with [`next_message`](Self::next_message), and call
/// [`finish`](Self::finish) at the end of the stream.
///
/// Each prefix is validated as soon as its 5 bytes have arrived; once a
/// message declares a length above `max_len` (or a bad flag), no further
/// bytes are copied and every method returns that error from then on.
///
/// Memory bound: if the caller drains every complete message with
/// `next_message` after each `push`, the buffer never holds more than
/// `max_len + PREFIX_LEN` bytes of the incomplete message plus the bytes of
/// the current `push` call. Complete messages that are not taken stay
/// buffered. A compressed message (flag 1, accepted only once
/// [`set_encoding`](Self::set_encoding) named an encoding) is limited to
/// `max_len` bytes both on the wire and decompressed; decompression stops
/// at the limit.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Complete messages (prefix included) followed by at most one partial one.
    buf: BytesMut,
    max_len: usize,
    /// Offset in `buf` where the first incomplete message starts; everything
    /// before it is whole, validated messages.
    complete_end: usize,
    /// Payload length of the message at `complete_end`, once its prefix has
    /// been received and validated.
    current_len: Option<usize>,
    error: Option<FrameError>,
    /// The call's `grpc-encoding`: what flag 1 means.
    encoding: Compression,
    /// Where compressed messages are decompressed (reused).
    scratch: Vec<u8>,
}

impl Decoder {
    /// Creates a decoder that accepts payloads of at most `max_len` bytes.
    pub(crate) fn new(max_len: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max_len,
            complete_end: 0,
            current_len: None,
            error: None,
            encoding: Compression::Identity,
            scratch: Vec::new(),
        }
    }

    /// Sets the call's `grpc-encoding`: messages with flag 1 are
    /// decompressed with it (with `identity`, the default, flag 1 is an
    /// error).
    pub(crate) fn set_encoding(&mut self, encoding: Compression) {
        self.encoding = encoding;
    }

    /// The encoding set with [`set_encoding`](Self::set_encoding).
    #[cfg(test)]
    pub(crate) fn encoding(&self) -> Compression {
        self.encoding
    }

    /// Buffers received bytes, validating each message prefix as soon as it
    /// is complete. Stops copying at the first invalid prefix.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut rest = data;
        loop {
            if self.buf.len() == self.complete_end {
                // Between messages: take the run of whole messages at the
                // front of `rest` in one copy.
                let whole = self.whole_messages(rest);
                self.buf.extend_from_slice(&rest[..whole]);
                self.complete_end += whole;
                rest = &rest[whole..];
            }
            if rest.is_empty() {
                return Ok(());
            }
            let len = match self.current_len {
                Some(len) => len,
                None => {
                    let have = self.buf.len() - self.complete_end;
                    rest = self.fill(rest, PREFIX_LEN.saturating_sub(have));
                    if self.buf.len() - self.complete_end < PREFIX_LEN {
                        return Ok(());
                    }
                    match self.check_prefix() {
                        Ok(len) => {
                            self.current_len = Some(len);
                            len
                        }
                        Err(e) => return Err(self.fail(e)),
                    }
                }
            };
            let frame_len = PREFIX_LEN.saturating_add(len);
            let have = self.buf.len() - self.complete_end;
            rest = self.fill(rest, frame_len.saturating_sub(have));
            if self.buf.len() - self.complete_end < frame_len {
                return Ok(());
            }
            self.complete_end += frame_len;
            self.current_len = None;
        }
    }

    /// How many bytes at the start of `data` are whole messages with valid
    /// prefixes (the rest, from the first incomplete or invalid one on, is
    /// left to the byte-wise path, which reports errors).
    fn whole_messages(&self, data: &[u8]) -> usize {
        let mut at = 0;
        while let Some(p) = data.get(at..at + PREFIX_LEN) {
            match self.parse_prefix(p) {
                Ok(len) if data.len() - at - PREFIX_LEN >= len => at += PREFIX_LEN + len,
                _ => break,
            }
        }
        at
    }

    /// Copies up to `want` bytes of `rest` into the buffer; returns what is left.
    fn fill<'a>(&mut self, rest: &'a [u8], want: usize) -> &'a [u8] {
        let (now, later) = rest.split_at(want.min(rest.len()));
        self.buf.extend_from_slice(now);
        later
    }

    /// Validates the complete prefix at `complete_end`; returns the payload length.
    fn check_prefix(&self) -> Result<usize, FrameError> {
        self.parse_prefix(&self.buf[self.complete_end..self.complete_end + PREFIX_LEN])
    }

    /// Validates a 5-byte prefix; returns the payload length.
    fn parse_prefix(&self, p: &[u8]) -> Result<usize, FrameError> {
        match p[0] {
            0 => {}
            1 if self.encoding != Compression::Identity => {}
            1 => return Err(FrameError::Compressed),
            flag => return Err(FrameError::BadFlag(flag)),
        }
        let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        match usize::try_from(len) {
            Ok(l) if l <= self.max_len => Ok(l),
            _ => Err(FrameError::TooLarge {
                len: u64::from(len),
                max: self.max_len,
            }),
        }
    }

    /// Records a sticky error and frees the buffer, except for the complete
    /// messages before the error: they are still handed out, then the
    /// error.
    fn fail(&mut self, e: FrameError) -> FrameError {
        self.buf.truncate(self.complete_end);
        if self.complete_end == 0 {
            self.buf = BytesMut::new();
        }
        self.current_len = None;
        self.error = Some(e.clone());
        e
    }

    /// The payload length of the next complete message and whether it is
    /// compressed, if there is one.
    fn next_len(&self) -> Result<Option<(usize, bool)>, FrameError> {
        if self.complete_end < PREFIX_LEN {
            return match &self.error {
                Some(e) => Err(e.clone()),
                None => Ok(None),
            };
        }
        let p = &self.buf[..PREFIX_LEN];
        // Validated by `push`, so it fits in usize and is within `complete_end`.
        let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
        Ok(Some((len, p[0] == 1)))
    }

    /// Decompresses the compressed message at the front of the buffer into
    /// `scratch` and drops it from the buffer; a failure is sticky.
    fn inflate_front(&mut self, len: usize) -> Result<(), FrameError> {
        let input = &self.buf[PREFIX_LEN..PREFIX_LEN + len];
        let result = decompress(self.encoding, input, self.max_len, &mut self.scratch);
        self.buf.advance(PREFIX_LEN + len);
        self.complete_end -= PREFIX_LEN + len;
        if let Err(e) = result {
            self.scratch = Vec::new();
            // Nothing after a message that failed is handed out.
            self.buf = BytesMut::new();
            self.complete_end = 0;
            return Err(self.fail(FrameError::Decompress(e)));
        }
        Ok(())
    }

    /// Returns the next complete payload (without its prefix, decompressed),
    /// or `None` if more bytes are needed.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some((len, compressed)) = self.next_len()? else {
            return Ok(None);
        };
        if compressed {
            self.inflate_front(len)?;
            return Ok(Some(Bytes::from(std::mem::take(&mut self.scratch))));
        }
        self.buf.advance(PREFIX_LEN);
        let payload = self.buf.split_to(len).freeze();
        self.complete_end -= PREFIX_LEN + len;
        Ok(Some(payload))
    }

    /// Like [`Decoder::next_message`], but hands the payload to `f` where
    /// it lies in the buffer instead of splitting it off (a compressed one
    /// where it was decompressed).
    pub(crate) fn next_message_with<R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, FrameError> {
        let Some((len, compressed)) = self.next_len()? else {
            return Ok(None);
        };
        if compressed {
            self.inflate_front(len)?;
            return Ok(Some(f(&self.scratch)));
        }
        let out = f(&self.buf[PREFIX_LEN..PREFIX_LEN + len]);
        self.buf.advance(PREFIX_LEN + len);
        self.complete_end -= PREFIX_LEN + len;
        Ok(Some(out))
    }

    /// The error that stopped the decoder, if one did.
    pub(crate) fn check(&self) -> Result<(), FrameError> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Checks the end of the stream: `Ok` unless part of a message was
    /// received without its end (complete messages not yet taken with
    /// `next_message` do not count), or an error happened earlier.
    pub(crate) fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let buffered = self.buf.len() - self.complete_end;
        if buffered == 0 {
            Ok(())
        } else {
            Err(FrameError::Truncated { buffered })
        }
    }
}

/// The decoder for the fuzz targets (built only with `--cfg fuzzing`);
/// errors are their `Debug` text.
#[cfg(fuzzing)]
pub mod fuzz {
    /// Size of the flag byte plus the 4-byte length.
    pub const PREFIX_LEN: usize = super::PREFIX_LEN;

    /// The incremental decoder.
    #[derive(Debug)]
    pub struct Decoder(super::Decoder);

    impl Decoder {
        /// See the crate-private `Decoder::new`.
        pub fn new(max_len: usize) -> Self {
            Decoder(super::Decoder::new(max_len))
        }

        /// See the crate-private `Decoder::push`.
        pub fn push(&mut self, data: &[u8]) -> Result<(), String> {
            self.0.push(data).map_err(|e| format!("{e:?}"))
        }

        /// See the crate-private `Decoder::next_message`.
        pub fn next_message(&mut self) -> Result<Option<bytes::Bytes>, String> {
            self.0.next_message().map_err(|e| format!("{e:?}"))
        }

        /// See the crate-private `Decoder::finish`.
        pub fn finish(&self) -> Result<(), String> {
            self.0.finish().map_err(|e| format!("{e:?}"))
        }

        /// Bytes held in the buffer (complete messages not yet taken plus
        /// the incomplete one).
        pub fn buffered(&self) -> usize {
            self.0.buf.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_writer_and_the_decoder_agree() {
        let mut out = BytesMut::from(&b"before"[..]);
        let start = begin_message(&mut out);
        assert_eq!(start, 6);
        out.extend_from_slice(b"payload");
        finish_message(&mut out, start).unwrap();
        assert_eq!(&out[6..], b"\x00\x00\x00\x00\x07payload");
        let mut d = Decoder::new(64);
        d.push(&out[6..]).unwrap();
        assert_eq!(&d.next_message().unwrap().unwrap()[..], b"payload");
        d.finish().unwrap();
    }

    #[test]
    fn frame_errors_map_to_one_status_per_direction() {
        use crate::Code;
        let too_large = FrameError::TooLarge { len: 9, max: 4 };
        let cases = [
            (
                too_large.clone(),
                Direction::Request,
                Code::ResourceExhausted,
            ),
            (FrameError::Compressed, Direction::Request, Code::Internal),
            (
                FrameError::Decompress(DecompressError::TooLarge {
                    encoding: Compression::Gzip,
                    max: 4,
                }),
                Direction::Request,
                Code::ResourceExhausted,
            ),
            (
                FrameError::Decompress(DecompressError::TooLarge {
                    encoding: Compression::Zstd,
                    max: 4,
                }),
                Direction::Response,
                Code::ResourceExhausted,
            ),
            (
                FrameError::Decompress(DecompressError::Corrupt {
                    encoding: Compression::Gzip,
                    reason: "bad".into(),
                }),
                Direction::Request,
                Code::Internal,
            ),
            (
                FrameError::BadFlag(7),
                Direction::Request,
                Code::InvalidArgument,
            ),
            (
                FrameError::Truncated { buffered: 3 },
                Direction::Request,
                Code::InvalidArgument,
            ),
            (too_large, Direction::Response, Code::ResourceExhausted),
            (FrameError::Compressed, Direction::Response, Code::Internal),
            (FrameError::BadFlag(7), Direction::Response, Code::Internal),
            (
                FrameError::Truncated { buffered: 3 },
                Direction::Response,
                Code::Internal,
            ),
        ];
        for (e, d, code) in cases {
            assert_eq!(e.to_status("/p.S/m", d).code(), code, "{e:?} {d:?}");
        }
        assert_eq!(
            FrameError::BadFlag(7)
                .to_status("/p.S/m", Direction::Request)
                .message(),
            "/p.S/m: invalid message flag 7 (expected 0, or 1 for a compressed message)"
        );
        assert_eq!(
            FrameError::Compressed
                .to_status("/p.S/m", Direction::Response)
                .message(),
            "/p.S/m: response: compressed message (flag 1) but grpc-encoding is identity"
        );
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn drain(d: &mut Decoder, out: &mut Vec<Vec<u8>>) {
        while let Some(m) = d.next_message().unwrap() {
            out.push(m.to_vec());
        }
    }

    fn messages() -> Vec<Vec<u8>> {
        vec![b"hello".to_vec(), Vec::new(), vec![0, 1, 2], b"x".to_vec()]
    }

    fn stream() -> Vec<u8> {
        messages().iter().flat_map(|m| frame(m)).collect()
    }

    #[test]
    fn split_at_every_boundary() {
        let s = stream();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                let mut d = Decoder::new(16);
                let mut got = Vec::new();
                for part in [&s[..i], &s[i..j], &s[j..]] {
                    d.push(part).unwrap();
                    drain(&mut d, &mut got);
                }
                d.finish().unwrap();
                assert_eq!(got, messages(), "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn payloads_in_place_match_split_payloads() {
        let s = stream();
        for i in 0..=s.len() {
            let mut d = Decoder::new(16);
            let mut got = Vec::new();
            for part in [&s[..i], &s[i..]] {
                d.push(part).unwrap();
                while let Some(m) = d.next_message_with(<[u8]>::to_vec).unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, messages(), "split at {i}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let s = stream();
        let mut d = Decoder::new(16);
        let mut got = Vec::new();
        for (i, b) in s.iter().enumerate() {
            d.push(&[*b]).unwrap();
            drain(&mut d, &mut got);
            // Bytes of the incomplete message never exceed one frame.
            assert!(d.buf.len() <= 16 + PREFIX_LEN);
            // Between messages nothing is pending; inside one, finish fails.
            let boundary = d.buf.is_empty();
            assert_eq!(d.finish().is_ok(), boundary, "after byte {i}");
        }
        assert_eq!(got, messages());
        d.finish().unwrap();
    }

    #[test]
    fn several_in_one_push() {
        let mut d = Decoder::new(16);
        d.push(&stream()).unwrap();
        let mut got = Vec::new();
        drain(&mut d, &mut got);
        assert_eq!(got, messages());
        assert_eq!(d.next_message(), Ok(None));
        d.finish().unwrap();
    }

    #[test]
    fn zero_length_messages() {
        let mut d = Decoder::new(0);
        d.push(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(d.next_message(), Ok(Some(Bytes::new())));
        assert_eq!(d.next_message(), Ok(Some(Bytes::new())));
        assert_eq!(d.next_message(), Ok(None));
        d.finish().unwrap();
        d.push(&[0, 0, 0, 0]).unwrap();
        assert_eq!(d.next_message(), Ok(None));
        d.push(&[0]).unwrap();
        assert_eq!(d.next_message(), Ok(Some(Bytes::new())));
        d.finish().unwrap();
    }

    #[test]
    fn limit_exactly_max_is_accepted() {
        let mut d = Decoder::new(3);
        d.push(&[0, 0, 0, 0, 3, b'a', b'b', b'c']).unwrap();
        assert_eq!(d.next_message(), Ok(Some(Bytes::from_static(b"abc"))));
        d.finish().unwrap();
    }

    #[test]
    fn limit_exceeded_rejected_before_body() {
        let too_large = FrameError::TooLarge { len: 4, max: 3 };
        // The prefix alone is enough to reject.
        let mut d = Decoder::new(3);
        d.push(&[0, 0, 0]).unwrap();
        assert_eq!(d.push(&[0, 4]), Err(too_large.clone()));
        assert!(d.buf.is_empty());
        assert_eq!(d.push(b"abcd"), Err(too_large.clone()));
        assert!(d.buf.is_empty());
        assert_eq!(d.next_message(), Err(too_large.clone()));
        assert_eq!(d.finish(), Err(too_large.clone()));

        // With the body in the same push, nothing past the prefix is kept.
        let mut d = Decoder::new(3);
        assert_eq!(d.push(&[0, 0, 0, 0, 4, 1, 2, 3, 4]), Err(too_large));
        assert!(d.buf.is_empty());

        // Largest declared length.
        let mut d = Decoder::new(usize::MAX);
        d.push(&[0, 0xFF, 0xFF, 0xFF, 0xFF, 1]).unwrap();
        assert_eq!(d.next_message(), Ok(None));
        let mut d = Decoder::new(10);
        assert_eq!(
            d.push(&[0, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: 10
            })
        );
    }

    #[test]
    fn error_after_good_message_in_same_push() {
        let mut d = Decoder::new(8);
        let mut data = frame(b"ok");
        data.extend_from_slice(&[1, 0, 0, 0, 0]);
        assert_eq!(d.push(&data), Err(FrameError::Compressed));
        // The complete message before the error still comes out first.
        assert_eq!(d.next_message().unwrap().unwrap(), &b"ok"[..]);
        assert_eq!(d.next_message(), Err(FrameError::Compressed));
        assert_eq!(d.buf.len(), 0);
    }

    #[test]
    fn compressed_flag() {
        let mut d = Decoder::new(8);
        d.push(&[1, 0, 0, 0]).unwrap();
        assert_eq!(d.push(&[1, b'x']), Err(FrameError::Compressed));
        assert_eq!(d.push(&[]), Err(FrameError::Compressed));
        assert_eq!(d.next_message(), Err(FrameError::Compressed));
        assert_eq!(d.finish(), Err(FrameError::Compressed));
        assert_eq!(
            FrameError::Compressed.to_string(),
            "compressed message (flag 1) but grpc-encoding is identity"
        );
    }

    #[test]
    fn bad_flag() {
        for flag in [2u8, 0x80, 0xFF] {
            let mut d = Decoder::new(8);
            assert_eq!(d.push(&[flag, 0, 0, 0, 0]), Err(FrameError::BadFlag(flag)));
            assert_eq!(d.next_message(), Err(FrameError::BadFlag(flag)));
        }
        assert_eq!(
            FrameError::BadFlag(2).to_string(),
            "invalid message flag 2 (expected 0, or 1 for a compressed message)"
        );
    }

    #[test]
    fn truncated_at_fin() {
        let s = frame(b"abc");
        for cut in 1..s.len() {
            let mut d = Decoder::new(8);
            d.push(&s[..cut]).unwrap();
            assert_eq!(d.next_message(), Ok(None));
            assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: cut }));
        }
        // A complete message followed by a partial one.
        let mut d = Decoder::new(8);
        let mut data = frame(b"abc");
        data.extend_from_slice(&[0, 0]);
        d.push(&data).unwrap();
        assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 2 }));
        assert_eq!(d.next_message(), Ok(Some(Bytes::from_static(b"abc"))));
        assert_eq!(d.finish(), Err(FrameError::Truncated { buffered: 2 }));
        assert_eq!(
            FrameError::Truncated { buffered: 2 }.to_string(),
            "stream ended inside a message: 2 bytes buffered"
        );
        assert_eq!(
            FrameError::TooLarge { len: 9, max: 8 }.to_string(),
            "message of 9 bytes exceeds the limit of 8 bytes"
        );
    }

    #[test]
    fn empty_stream_finishes() {
        let d = Decoder::new(8);
        d.finish().unwrap();
        let mut d = Decoder::new(8);
        d.push(&[]).unwrap();
        assert_eq!(d.next_message(), Ok(None));
        d.finish().unwrap();
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed: u32 = 0x1234_5678;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        };
        for _ in 0..200 {
            let mut d = Decoder::new(usize::from(next() % 8));
            for _ in 0..20 {
                // Mostly valid flags so that lengths get exercised too.
                let mut chunk: Vec<u8> = (0..next() % 12).map(|_| next() % 4).collect();
                if next() % 3 == 0 {
                    chunk.insert(0, 0);
                }
                let _ = d.push(&chunk);
                while let Ok(Some(m)) = d.next_message() {
                    assert!(m.len() <= d.max_len);
                }
            }
            let _ = d.finish();
        }
    }

    #[test]
    fn compressed_messages_come_out_decompressed_at_every_split_point() {
        use crate::proto::compression::{compress_tail, framed};
        let big: Vec<u8> = b"abcdefgh".iter().copied().cycle().take(3000).collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut s = BytesMut::new();
            s.extend_from_slice(&framed(0, b"plain"));
            let start = s.len();
            s.extend_from_slice(&framed(0, &big));
            compress_tail(&mut s, start, c);
            assert_eq!(s[start], 1);
            s.extend_from_slice(&framed(0, b"after"));
            for cut in 0..=s.len() {
                let mut d = Decoder::new(4096);
                d.set_encoding(c);
                let mut got = Vec::new();
                for part in [&s[..cut], &s[cut..]] {
                    d.push(part).unwrap();
                    while let Some(m) = d.next_message_with(<[u8]>::to_vec).unwrap() {
                        got.push(m);
                    }
                }
                d.finish().unwrap();
                assert_eq!(got, [b"plain".to_vec(), big.clone(), b"after".to_vec()]);
            }
            // Decompressed over the limit: refused, and nothing after it.
            let mut d = Decoder::new(2999);
            d.set_encoding(c);
            d.push(&s).unwrap();
            assert_eq!(&d.next_message().unwrap().unwrap()[..], b"plain");
            let err = d.next_message().unwrap_err();
            assert_eq!(
                err,
                FrameError::Decompress(DecompressError::TooLarge {
                    encoding: c,
                    max: 2999
                })
            );
            assert_eq!(d.next_message(), Err(err.clone()));
            assert_eq!(d.finish(), Err(err));
            assert!(d.buf.is_empty());
        }
    }

    #[test]
    fn a_bomb_within_the_wire_limit_is_refused_when_decompressed() {
        use crate::proto::compression::{framed, zstd_bomb};
        let mut d = Decoder::new(64 * 1024);
        d.set_encoding(Compression::Zstd);
        d.push(&framed(1, &zstd_bomb(1 << 30))).unwrap();
        let err = d.next_message_with(|m| m.len()).unwrap_err();
        assert!(matches!(
            err,
            FrameError::Decompress(DecompressError::TooLarge { max: 65536, .. })
        ));
        assert_eq!(
            err.to_status("/p.S/m", Direction::Request).message(),
            "/p.S/m: zstd message decompresses to more than the limit of 65536 bytes"
        );
    }
}
