//! Message compression (PROTOCOL.md §3.2): the encodings, the
//! `grpc-encoding` / `grpc-accept-encoding` values, the choice of the
//! response encoding, compressing a framed message, and decompression that
//! stops as soon as the output would pass the message limit.

use std::fmt;
use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};

use crate::proto::frame::PREFIX_LEN;

/// How message payloads are compressed on the wire (`grpc-encoding`).
///
/// Compression is per message: a sender may still send a message
/// uncompressed (flag 0) on a compressed call; knafeh does so for payloads
/// under [`Compression::MIN_SIZE`] bytes and when compression would not
/// make a payload smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (`identity`), the default.
    #[default]
    Identity,
    /// gzip (RFC 1952), level 1; `grpc-encoding: gzip`.
    Gzip,
    /// Zstandard (RFC 8878), level 1; `grpc-encoding: zstd`.
    Zstd,
}

/// The encodings this implementation reads, in the order it lists them.
const SUPPORTED: [Compression; 3] = [Compression::Identity, Compression::Gzip, Compression::Zstd];

/// `grpc-accept-encoding` as knafeh sends it: every encoding it reads.
pub(crate) const ACCEPT_ENCODING: &str = "identity,gzip,zstd";

impl Compression {
    /// Payloads shorter than this are sent uncompressed (flag 0) even when
    /// the call is compressed: the gzip or zstd frame around them would
    /// cost more than it saves.
    pub const MIN_SIZE: usize = 128;

    /// The name on the wire: `identity`, `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses a wire name (ASCII case ignored, surrounding spaces trimmed);
    /// `None` for an encoding knafeh does not support.
    pub fn from_name(name: &[u8]) -> Option<Compression> {
        let name = name.trim_ascii();
        SUPPORTED
            .into_iter()
            .find(|c| c.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses `identity` (or `none`), `gzip` or `zstd`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(Compression::Identity);
        }
        Compression::from_name(s.as_bytes()).ok_or_else(|| {
            format!("unknown compression {s:?}: expected one of identity, none, gzip, zstd")
        })
    }
}

/// The encodings a peer reads, from its `grpc-accept-encoding`.
/// `identity` is always in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accepted(u8);

impl Accepted {
    /// Only `identity` (no `grpc-accept-encoding`).
    pub(crate) const IDENTITY: Accepted = Accepted(1);

    fn bit(c: Compression) -> u8 {
        match c {
            Compression::Identity => 1,
            Compression::Gzip => 2,
            Compression::Zstd => 4,
        }
    }

    /// Parses a comma-separated `grpc-accept-encoding` value; names knafeh
    /// does not know are skipped.
    pub(crate) fn parse(value: &[u8]) -> Accepted {
        let mut set = Accepted::IDENTITY.0;
        for token in value.split(|&b| b == b',') {
            if let Some(c) = Compression::from_name(token) {
                set |= Accepted::bit(c);
            }
        }
        Accepted(set)
    }

    /// Whether the peer reads `c`.
    pub(crate) fn contains(self, c: Compression) -> bool {
        self.0 & Accepted::bit(c) != 0
    }
}

/// A `grpc-encoding` value: the encoding, or the refusal's message for
/// one knafeh does not support (`UNIMPLEMENTED`, PROTOCOL.md §6.2 row 8b).
pub(crate) fn parse_encoding(value: Option<&[u8]>) -> Result<Compression, String> {
    let Some(v) = value else {
        return Ok(Compression::Identity);
    };
    Compression::from_name(v).ok_or_else(|| {
        format!(
            "unsupported grpc-encoding {}: supported are {ACCEPT_ENCODING}",
            crate::proto::text::quoted(v)
        )
    })
}

/// The encoding of a response: the server's own choice if the client
/// reads it, else the request's encoding if the client reads it, else
/// `identity` (gRPC's compression.md: never compress in an encoding the
/// client did not list).
pub(crate) fn response_encoding(
    server: Option<Compression>,
    request: Compression,
    accepted: Accepted,
) -> Compression {
    [server, Some(request)]
        .into_iter()
        .flatten()
        .find(|&c| accepted.contains(c))
        .unwrap_or(Compression::Identity)
}

/// Compresses the one message framed at `out[start..]` (prefix and
/// payload) in place: flag 1 and the compressed payload, unless the
/// payload is under [`Compression::MIN_SIZE`] or would not get smaller.
pub(crate) fn compress_tail(out: &mut BytesMut, start: usize, c: Compression) {
    let payload_at = start + PREFIX_LEN;
    let len = out.len().saturating_sub(payload_at);
    if c == Compression::Identity || len < Compression::MIN_SIZE || out[start] != 0 {
        return;
    }
    let Some(packed) = compress(c, &out[payload_at..]) else {
        return;
    };
    if packed.len() >= len {
        return;
    }
    out.truncate(payload_at);
    out.extend_from_slice(&packed);
    out[start] = 1;
    // Smaller than the payload, which fitted in the prefix's 32 bits.
    out[start + 1..payload_at].copy_from_slice(&(packed.len() as u32).to_be_bytes());
}

/// Compresses every message of a buffer of framed messages (as
/// [`compress_tail`] does one); the buffer as it is for `identity`.
pub(crate) fn compress_frames(frames: Bytes, c: Compression) -> Bytes {
    if c == Compression::Identity {
        return frames;
    }
    let mut out = BytesMut::with_capacity(frames.len());
    let mut rest = &frames[..];
    while rest.len() >= PREFIX_LEN {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = PREFIX_LEN.saturating_add(len).min(rest.len());
        let start = out.len();
        out.extend_from_slice(&rest[..end]);
        compress_tail(&mut out, start, c);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out.freeze()
}

/// Compresses one payload; `None` if the encoder fails (it does not on
/// in-memory buffers) or for `identity`.
fn compress(c: Compression, payload: &[u8]) -> Option<Vec<u8>> {
    match c {
        Compression::Identity => None,
        Compression::Gzip => {
            let out = Vec::with_capacity(payload.len() / 2 + 32);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            enc.write_all(payload).ok()?;
            enc.finish().ok()
        }
        Compression::Zstd => zstd::bulk::compress(payload, 1).ok(),
    }
}

/// Why a compressed payload could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecompressError {
    /// The output would pass the message limit; decompression stopped
    /// there.
    TooLarge {
        /// The encoding.
        encoding: Compression,
        /// The message limit.
        max: usize,
    },
    /// The payload is not valid data of its encoding.
    Corrupt {
        /// The encoding.
        encoding: Compression,
        /// What the decoder said.
        reason: String,
    },
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::TooLarge { encoding, max } => write!(
                f,
                "{encoding} message decompresses to more than the limit of {max} bytes"
            ),
            DecompressError::Corrupt { encoding, reason } => {
                write!(f, "{encoding} message does not decompress: {reason}")
            }
        }
    }
}

/// Output is grown by at most this much at a time.
const CHUNK: usize = 64 * 1024;

/// Decompresses `input` into `out` (cleared first), stopping with
/// [`DecompressError::TooLarge`] as soon as the output would pass `max`
/// bytes: the decoder writes into a buffer that never grows past `max`,
/// so a small payload that inflates to gigabytes costs at most `max` bytes
/// and the time to produce them.
pub(crate) fn decompress(
    c: Compression,
    input: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    out.clear();
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        encoding: c,
        reason: e.to_string(),
    };
    match c {
        Compression::Identity => {
            if input.len() > max {
                return Err(DecompressError::TooLarge { encoding: c, max });
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => read_capped(flate2::bufread::MultiGzDecoder::new(input), c, max, out),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            // The frame's window is allocated up front: at most what the
            // limit needs (rounded up to a power of two), but not less than
            // 8 MiB, the window streaming encoders commonly declare whatever
            // the message size; never over zstd's default of 128 MiB.
            dec.window_log_max(window_log(max)).map_err(corrupt)?;
            read_capped(dec, c, max, out)
        }
    }
}

/// The zstd window log that covers `max` bytes, within 23..=27 (8 MiB to
/// 128 MiB).
fn window_log(max: usize) -> u32 {
    let bits = usize::BITS - max.saturating_sub(1).leading_zeros();
    bits.clamp(23, 27)
}

/// Reads `r` to its end into `out`, which never grows past `max` bytes;
/// one more byte after `max` is [`DecompressError::TooLarge`].
fn read_capped(
    mut r: impl Read,
    c: Compression,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        encoding: c,
        reason: e.to_string(),
    };
    loop {
        let have = out.len();
        if have == max {
            let mut probe = [0u8; 1];
            return match r.read(&mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(DecompressError::TooLarge { encoding: c, max }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(corrupt(e)),
            };
        }
        let want = (max - have).min(CHUNK);
        if out.capacity() < have + want {
            // Double, but never past the limit.
            let target = (out.capacity() * 2).max(have + want).min(max);
            out.reserve_exact(target - have);
        }
        out.resize(have + want, 0);
        match r.read(&mut out[have..]) {
            Ok(0) => {
                out.truncate(have);
                return Ok(());
            }
            Ok(n) => out.truncate(have + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(have),
            Err(e) => {
                out.truncate(have);
                return Err(corrupt(e));
            }
        }
    }
}

/// One length-prefixed message with the given flag (for tests).
#[cfg(test)]
pub(crate) fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A gzip member of `total` zero bytes, built from one deflate block of
/// zeros repeated (each ends byte-aligned by a sync flush), so that a
/// gigabyte costs the test milliseconds. About 1 KiB per MiB: deflate
/// cannot do better than ~1:1000.
#[cfg(test)]
pub(crate) fn gzip_bomb(total: usize) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    assert_eq!(total % BLOCK, 0);
    let mut raw = flate2::Compress::new(flate2::Compression::best(), false);
    let zeros = vec![0u8; BLOCK];
    let mut block = Vec::with_capacity(4096);
    raw.compress_vec(&zeros, &mut block, flate2::FlushCompress::Sync)
        .unwrap();
    assert_eq!(raw.total_in(), BLOCK as u64);
    // gzip header: magic, deflate, no flags, no time, no extra flags, OS unknown.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..total / BLOCK {
        out.extend_from_slice(&block);
    }
    // A final empty fixed-Huffman block, then CRC-32 and size (mod 2^32).
    // The CRC of a large bomb is left out (0): the decoder refuses it long
    // before the trailer.
    out.extend_from_slice(&[0x03, 0x00]);
    let mut crc = flate2::Crc::new();
    if total <= 8 * BLOCK {
        for _ in 0..total / BLOCK {
            crc.update(&zeros);
        }
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// A zstd frame of `total` zero bytes made of RLE blocks (4 bytes per
/// 128 KiB), declaring no content size: 1 GiB in 32 KiB.
#[cfg(test)]
pub(crate) fn zstd_bomb(total: usize) -> Vec<u8> {
    const BLOCK: usize = 128 * 1024;
    assert_eq!(total % BLOCK, 0);
    // Magic; frame header: no checksum, no content size, not single
    // segment, so a window descriptor follows: 2^17 = 128 KiB.
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3];
    let blocks = total / BLOCK;
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        // Block header: last flag, type 1 (RLE), size; then the byte.
        let header = last | (1 << 1) | ((BLOCK as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        b"knafeh compresses messages; "
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_none() {
        for c in SUPPORTED {
            assert_eq!(Compression::from_name(c.name().as_bytes()), Some(c));
            assert_eq!(c.to_string(), c.name());
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
        }
        assert_eq!(Compression::from_name(b" GZip "), Some(Compression::Gzip));
        assert_eq!(Compression::from_name(b"br"), None);
        assert_eq!(Compression::from_name(b"deflate"), None);
        assert_eq!(Compression::from_name(b""), None);
        assert_eq!("none".parse(), Ok(Compression::Identity));
        assert_eq!(
            "lz4".parse::<Compression>().unwrap_err(),
            "unknown compression \"lz4\": expected one of identity, none, gzip, zstd"
        );
    }

    #[test]
    fn encoding_header() {
        assert_eq!(parse_encoding(None), Ok(Compression::Identity));
        assert_eq!(parse_encoding(Some(b"zstd")), Ok(Compression::Zstd));
        assert_eq!(parse_encoding(Some(b"identity")), Ok(Compression::Identity));
        assert_eq!(
            parse_encoding(Some(b"br")).unwrap_err(),
            "unsupported grpc-encoding \"br\": supported are identity,gzip,zstd"
        );
    }

    #[test]
    fn accept_encoding_lists() {
        let a = Accepted::parse(b"gzip");
        assert!(a.contains(Compression::Identity) && a.contains(Compression::Gzip));
        assert!(!a.contains(Compression::Zstd));
        let a = Accepted::parse(b" br , ZSTD,deflate,");
        assert!(a.contains(Compression::Zstd) && !a.contains(Compression::Gzip));
        let a = Accepted::parse(ACCEPT_ENCODING.as_bytes());
        assert!(SUPPORTED.into_iter().all(|c| a.contains(c)));
        assert_eq!(Accepted::parse(b""), Accepted::IDENTITY);
    }

    #[test]
    fn the_response_is_in_an_encoding_the_client_reads() {
        use Compression::*;
        let gzip_only = Accepted::parse(b"gzip");
        let all = Accepted::parse(ACCEPT_ENCODING.as_bytes());
        let cases = [
            // (server's choice, request's encoding, accepted, answer)
            (None, Identity, all, Identity),
            (None, Gzip, all, Gzip),
            (None, Zstd, gzip_only, Identity),
            (Some(Zstd), Gzip, all, Zstd),
            (Some(Zstd), Gzip, gzip_only, Gzip),
            (Some(Zstd), Identity, gzip_only, Identity),
            (Some(Gzip), Identity, Accepted::IDENTITY, Identity),
            (Some(Identity), Gzip, all, Identity),
        ];
        for (server, request, accepted, want) in cases {
            assert_eq!(
                response_encoding(server, request, accepted),
                want,
                "{server:?} {request:?} {accepted:?}"
            );
        }
    }

    #[test]
    fn compressed_messages_round_trip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let payload = text(10_000);
            let mut out = BytesMut::from(&b"xy"[..]);
            out.extend_from_slice(&framed(0, &payload));
            compress_tail(&mut out, 2, c);
            assert_eq!(&out[..2], b"xy");
            assert_eq!(out[2], 1, "{c}: flag");
            let len = u32::from_be_bytes([out[3], out[4], out[5], out[6]]) as usize;
            assert_eq!(len, out.len() - 7);
            assert!(len < 1000, "{c}: {len} bytes");
            let mut back = Vec::new();
            decompress(c, &out[7..], payload.len(), &mut back).unwrap();
            assert_eq!(back, payload);
            // One byte less than the size is over the limit.
            assert_eq!(
                decompress(c, &out[7..], payload.len() - 1, &mut back),
                Err(DecompressError::TooLarge {
                    encoding: c,
                    max: payload.len() - 1
                })
            );
        }
    }

    #[test]
    fn small_or_incompressible_payloads_stay_uncompressed() {
        let small = framed(0, &text(Compression::MIN_SIZE - 1));
        let mut seed = 7u32;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            for original in [small.clone(), framed(0, &noise)] {
                let mut out = BytesMut::from(&original[..]);
                compress_tail(&mut out, 0, c);
                assert_eq!(&out[..], &original[..], "{c}");
            }
        }
        let mut out = BytesMut::from(&framed(0, &text(1000))[..]);
        compress_tail(&mut out, 0, Compression::Identity);
        assert_eq!(&out[..], &framed(0, &text(1000))[..]);
    }

    #[test]
    fn every_message_of_a_buffer_is_compressed_on_its_own() {
        let mut frames = framed(0, &text(5000));
        frames.extend(framed(0, b"tiny"));
        frames.extend(framed(0, &text(3000)));
        let packed = compress_frames(Bytes::from(frames.clone()), Compression::Zstd);
        let mut d = crate::proto::frame::Decoder::new(1 << 20);
        d.set_encoding(Compression::Zstd);
        d.push(&packed).unwrap();
        let mut got = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            got.push(m.to_vec());
        }
        assert_eq!(got, [text(5000), b"tiny".to_vec(), text(3000)]);
        assert_eq!(packed[0], 1);
        assert!(packed.len() < frames.len() / 10);
        let same = compress_frames(Bytes::from(frames.clone()), Compression::Identity);
        assert_eq!(same, frames);
    }

    #[test]
    fn a_gigabyte_bomb_is_refused_at_the_limit_without_allocating_it() {
        const GIB: usize = 1 << 30;
        const MAX: usize = 4 << 20;
        for (c, bomb) in [
            (Compression::Gzip, gzip_bomb(GIB)),
            (Compression::Zstd, zstd_bomb(GIB)),
        ] {
            let mut out = Vec::new();
            let err = decompress(c, &bomb, MAX, &mut out).unwrap_err();
            assert_eq!(
                err,
                DecompressError::TooLarge {
                    encoding: c,
                    max: MAX
                }
            );
            assert!(out.capacity() <= MAX, "{c}: grew to {}", out.capacity());
            assert_eq!(
                err.to_string(),
                format!("{c} message decompresses to more than the limit of 4194304 bytes")
            );
        }
        // The bombs are real: a small one inflates in full.
        for (c, bomb) in [
            (Compression::Gzip, gzip_bomb(2 << 20)),
            (Compression::Zstd, zstd_bomb(2 << 20)),
        ] {
            let mut out = Vec::new();
            decompress(c, &bomb, 2 << 20, &mut out).unwrap();
            assert_eq!(out.len(), 2 << 20, "{c}");
            assert!(out.iter().all(|&b| b == 0));
        }
        assert!(zstd_bomb(GIB).len() <= 32 * 1024 + 6);
    }

    #[test]
    fn corrupt_and_truncated_payloads_are_errors() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut out = BytesMut::from(&framed(0, &text(4000))[..]);
            compress_tail(&mut out, 0, c);
            let payload = &out[PREFIX_LEN..];
            let mut back = Vec::new();
            for bad in [&payload[..payload.len() / 2], b"not compressed at all"] {
                match decompress(c, bad, 1 << 20, &mut back) {
                    Err(DecompressError::Corrupt { encoding, .. }) => assert_eq!(encoding, c),
                    other => panic!("{c}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_zstd_window_follows_the_limit() {
        assert_eq!(window_log(0), 23);
        assert_eq!(window_log(4 << 20), 23);
        assert_eq!(window_log((16 << 20) + 1), 25);
        assert_eq!(window_log(usize::MAX), 27);
    }
}
