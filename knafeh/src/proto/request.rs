//! The server's request readers: [`RequestReader`] for unary and
//! server-streaming methods (exactly one length-prefixed message, then the
//! end of the stream), [`MessagesReader`] for client-streaming and
//! bidirectional ones (any number of messages, each handed out as soon as
//! it is complete). The transport feeds them the body as it arrives; when
//! the read is cut short by time, [`read_timeout_status`] says how the
//! call ends.

use std::time::Duration;

use bytes::Bytes;

use crate::proto::compression::Compression;
use crate::proto::frame::{Decoder, Direction};
use crate::proto::text::shown;
use crate::Status;

/// Reads the single request message of one call.
#[derive(Debug)]
pub(crate) struct RequestReader<'a> {
    path: &'a str,
    decoder: Decoder,
    message: Option<Bytes>,
}

impl<'a> RequestReader<'a> {
    /// A reader for a call to `path` accepting a message of up to
    /// `max_message_size` bytes.
    pub(crate) fn new(path: &'a str, max_message_size: usize) -> Self {
        RequestReader {
            path,
            decoder: Decoder::new(max_message_size),
            message: None,
        }
    }

    /// Decompresses messages with flag 1 with `encoding` (the request's
    /// `grpc-encoding`).
    pub(crate) fn with_encoding(mut self, encoding: Compression) -> Self {
        self.decoder.set_encoding(encoding);
        self
    }

    /// Body bytes arrived.
    pub(crate) fn on_data(&mut self, bytes: &[u8]) -> Result<(), Status> {
        let frame_err =
            |e: crate::proto::frame::FrameError| e.to_status(self.path, Direction::Request);
        self.decoder.push(bytes).map_err(frame_err)?;
        while let Some(m) = self.decoder.next_message().map_err(frame_err)? {
            if self.message.is_some() {
                return Err(Status::invalid_argument(format!(
                    "{}: more than one request message for a unary or server-streaming method",
                    self.path
                )));
            }
            self.message = Some(m);
        }
        Ok(())
    }

    /// The client's side of the stream ended: the request message.
    pub(crate) fn on_finished(self) -> Result<Bytes, Status> {
        self.decoder
            .finish()
            .map_err(|e| e.to_status(self.path, Direction::Request))?;
        self.message.ok_or_else(|| {
            Status::invalid_argument(format!("{}: request has no message", self.path))
        })
    }
}

/// Reads the request messages of a client-streaming or bidirectional call,
/// one at a time, as they complete.
#[derive(Debug)]
pub(crate) struct MessagesReader {
    path: String,
    decoder: Decoder,
    /// The client ended its side of the stream.
    finished: bool,
}

/// What [`MessagesReader::next`] has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NextRequest {
    /// A complete message (its payload).
    Message(Bytes),
    /// The client ended its side after its last message.
    End,
    /// Feed more of the body first.
    NeedData,
}

impl MessagesReader {
    /// A reader for a call to `path` accepting messages of up to
    /// `max_message_size` bytes each.
    pub(crate) fn new(path: &str, max_message_size: usize) -> Self {
        MessagesReader {
            path: path.to_owned(),
            decoder: Decoder::new(max_message_size),
            finished: false,
        }
    }

    /// Decompresses messages with flag 1 with `encoding` (the request's
    /// `grpc-encoding`).
    pub(crate) fn with_encoding(mut self, encoding: Compression) -> Self {
        self.decoder.set_encoding(encoding);
        self
    }

    /// Body bytes arrived. A framing error comes out of [`Self::next`],
    /// after the complete messages before it.
    pub(crate) fn on_data(&mut self, bytes: &[u8]) {
        let _ = self.decoder.push(bytes);
    }

    /// The client ended its side of the stream.
    pub(crate) fn on_finished(&mut self) {
        self.finished = true;
    }

    /// The next complete message, the end, or a need for more data. A body
    /// that ends inside a message, or a message the decoder refuses, is the
    /// client's error.
    pub(crate) fn next(&mut self) -> Result<NextRequest, Status> {
        let frame_err =
            |e: crate::proto::frame::FrameError| e.to_status(&self.path, Direction::Request);
        if let Some(m) = self.decoder.next_message().map_err(frame_err)? {
            return Ok(NextRequest::Message(m));
        }
        // Nothing more can come after a framing error.
        self.decoder.check().map_err(frame_err)?;
        if !self.finished {
            return Ok(NextRequest::NeedData);
        }
        self.decoder.finish().map_err(frame_err)?;
        Ok(NextRequest::End)
    }
}

/// How a call ends when its request did not arrive in time: at the call's
/// own deadline (`by_deadline`), or at the server's `read_timeout`.
pub(crate) fn read_timeout_status(path: &str, by_deadline: bool, read_timeout: Duration) -> Status {
    if by_deadline {
        Status::deadline_exceeded("deadline passed while reading the request")
    } else {
        Status::deadline_exceeded(format!(
            "{}: the request message did not arrive within {read_timeout:?} of the call's start",
            shown(path.as_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    const PATH: &str = "/p.S/m";

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn one_message_at_every_split_point() {
        let body = framed(b"hello");
        for cut in 0..=body.len() {
            for second in [cut, body.len()] {
                let mut r = RequestReader::new(PATH, 64);
                r.on_data(&body[..cut]).unwrap();
                r.on_data(&body[cut..second]).unwrap();
                r.on_data(&body[second..]).unwrap();
                assert_eq!(&r.on_finished().unwrap()[..], b"hello");
            }
        }
    }

    #[test]
    fn an_empty_message_is_a_message() {
        let mut r = RequestReader::new(PATH, 64);
        r.on_data(&framed(b"")).unwrap();
        assert_eq!(r.on_finished().unwrap().len(), 0);
    }

    #[test]
    fn no_message_or_two_are_invalid() {
        let err = RequestReader::new(PATH, 64).on_finished().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::InvalidArgument, "/p.S/m: request has no message")
        );
        let mut r = RequestReader::new(PATH, 64);
        let mut two = framed(b"a");
        two.extend(framed(b"b"));
        let err = r.on_data(&two).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("more than one request message"),
            "{err}"
        );
    }

    #[test]
    fn frame_errors_are_the_clients_fault() {
        let mut r = RequestReader::new(PATH, 4);
        assert_eq!(
            r.on_data(&framed(b"12345")).unwrap_err().code(),
            Code::ResourceExhausted
        );
        let mut r = RequestReader::new(PATH, 64);
        assert_eq!(
            r.on_data(&[1, 0, 0, 0, 0]).unwrap_err().code(),
            Code::Internal
        );
        let mut r = RequestReader::new(PATH, 64);
        assert_eq!(
            r.on_data(&[9, 0, 0, 0, 0]).unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut r = RequestReader::new(PATH, 64);
        r.on_data(&framed(b"abc")[..6]).unwrap();
        let err = r.on_finished().unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("stream ended inside a message"),
            "{err}"
        );
    }

    /// Drains `r`: the messages it has, then how it stands.
    fn drain(r: &mut MessagesReader) -> (Vec<Vec<u8>>, Result<NextRequest, Status>) {
        let mut got = Vec::new();
        loop {
            match r.next() {
                Ok(NextRequest::Message(m)) => got.push(m.to_vec()),
                other => return (got, other),
            }
        }
    }

    #[test]
    fn messages_come_out_as_each_completes_at_every_split_point() {
        let mut body = framed(b"one");
        body.extend(framed(b""));
        body.extend(framed(b"three"));
        for cut in 0..=body.len() {
            let mut r = MessagesReader::new(PATH, 64);
            r.on_data(&body[..cut]);
            let (first, state) = drain(&mut r);
            assert_eq!(state.unwrap(), NextRequest::NeedData);
            r.on_data(&body[cut..]);
            let (rest, state) = drain(&mut r);
            assert_eq!(state.unwrap(), NextRequest::NeedData);
            let all: Vec<Vec<u8>> = first.into_iter().chain(rest).collect();
            assert_eq!(
                all,
                [b"one".to_vec(), vec![], b"three".to_vec()],
                "cut {cut}"
            );
            r.on_finished();
            assert_eq!(r.next().unwrap(), NextRequest::End);
        }
    }

    #[test]
    fn zero_messages_then_the_end() {
        let mut r = MessagesReader::new(PATH, 64);
        assert_eq!(r.next().unwrap(), NextRequest::NeedData);
        r.on_finished();
        assert_eq!(r.next().unwrap(), NextRequest::End);
    }

    #[test]
    fn a_stream_is_refused_at_its_first_bad_message_after_the_ones_before() {
        let mut r = MessagesReader::new(PATH, 4);
        let mut body = framed(b"ok");
        body.extend(framed(b"too long"));
        body.extend(framed(b"ok"));
        r.on_data(&body);
        let (got, state) = drain(&mut r);
        assert_eq!(got, [b"ok".to_vec()]);
        assert_eq!(state.unwrap_err().code(), Code::ResourceExhausted);
        r.on_data(&framed(b"ok"));
        assert_eq!(r.next().unwrap_err().code(), Code::ResourceExhausted);
        let mut r = MessagesReader::new(PATH, 64);
        r.on_data(&framed(b"abc")[..4]);
        r.on_finished();
        let err = r.next().unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("stream ended inside a message"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_say_which_limit_passed() {
        let d = read_timeout_status(PATH, true, Duration::from_secs(30));
        assert_eq!(
            (d.code(), d.message()),
            (
                Code::DeadlineExceeded,
                "deadline passed while reading the request"
            )
        );
        let t = read_timeout_status(PATH, false, Duration::from_secs(30));
        assert_eq!(t.code(), Code::DeadlineExceeded);
        assert_eq!(
            t.message(),
            "/p.S/m: the request message did not arrive within 30s of the call's start"
        );
    }

    #[test]
    fn compressed_requests_are_read_with_the_calls_encoding() {
        use crate::proto::compression::{compress_tail, framed, gzip_bomb};
        let big = vec![b'z'; 5000];
        let mut body = bytes::BytesMut::from(&framed(0, &big)[..]);
        compress_tail(&mut body, 0, Compression::Gzip);
        assert_eq!(body[0], 1);
        let mut r = RequestReader::new(PATH, 8192).with_encoding(Compression::Gzip);
        r.on_data(&body).unwrap();
        assert_eq!(r.on_finished().unwrap(), big);
        // Compressed without an encoding: INTERNAL (gRPC's compression.md).
        let err = RequestReader::new(PATH, 8192).on_data(&body).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                Code::Internal,
                "/p.S/m: compressed message (flag 1) but grpc-encoding is identity"
            )
        );
        // A bomb: RESOURCE_EXHAUSTED while decompressing.
        let mut r = MessagesReader::new(PATH, 1 << 20).with_encoding(Compression::Gzip);
        r.on_data(&framed(1, &gzip_bomb(64 << 20)));
        let err = r.next().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "/p.S/m: gzip message decompresses to more than the limit of 1048576 bytes"
        );
    }
}
