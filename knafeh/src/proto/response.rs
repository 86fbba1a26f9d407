//! The client's response reader: response headers, then length-prefixed
//! messages, then trailers with the status (or a trailers-only response).
//! The transport feeds it what arrived on the stream; the call asks it for
//! the next message. It does no I/O: deadlines, resets and closed
//! connections are the caller's, who ends the call with [`fail`].
//!
//! [`fail`]: ResponseReader::fail

use crate::proto::compression::parse_encoding;
use crate::proto::frame::{Decoder, Direction};
use crate::proto::wire::{self, ResponseHead};
use crate::{Code, Metadata, Status};

#[derive(Debug)]
enum State {
    AwaitHeaders,
    Messages,
    /// The final status arrived; buffered messages are still handed out
    /// before it.
    Ending(Status),
    Done,
}

/// What [`ResponseReader::next_message_with`] has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<R> {
    /// A complete message, as `f` made it.
    Message(R),
    /// The call is over: an OK status after the last message, or an
    /// error already reported.
    End,
    /// Feed the next stream event first.
    NeedEvent,
}

/// Reads one call's response.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    path: &'static str,
    state: State,
    decoder: Decoder,
    headers: Metadata,
    trailers: Option<Metadata>,
    /// The server sent its final status (its side of the stream is done).
    server_finished: bool,
}

impl ResponseReader {
    /// A reader for a call to `path` accepting messages up to
    /// `max_message_size` bytes.
    pub(crate) fn new(path: &'static str, max_message_size: usize) -> Self {
        ResponseReader {
            path,
            state: State::AwaitHeaders,
            decoder: Decoder::new(max_message_size),
            headers: Metadata::new(),
            trailers: None,
            server_finished: false,
        }
    }

    /// The response's `grpc-encoding` (`identity` until the headers say
    /// otherwise).
    #[cfg(test)]
    fn encoding(&self) -> crate::Compression {
        self.decoder.encoding()
    }

    /// Still waiting for the response headers.
    pub(crate) fn awaiting_headers(&self) -> bool {
        matches!(self.state, State::AwaitHeaders)
    }

    /// The server sent its final status: there is nothing left to cancel.
    pub(crate) fn server_finished(&self) -> bool {
        self.server_finished
    }

    /// The response headers' metadata (empty until they arrive).
    pub(crate) fn take_headers(&mut self) -> Metadata {
        std::mem::take(&mut self.headers)
    }

    /// The trailers' metadata, once the call ended with OK.
    pub(crate) fn take_trailers(&mut self) -> Option<Metadata> {
        self.trailers.take()
    }

    /// Ends the call with `status`; later calls see [`Next::End`].
    pub(crate) fn fail(&mut self, status: Status) -> Status {
        self.state = State::Done;
        status
    }

    fn protocol_error(&mut self, what: &str) -> Status {
        let status = Status::internal(format!("{}: {what}", self.path));
        self.fail(status)
    }

    /// A header block arrived. A trailers-only response with an error is
    /// returned as that error.
    pub(crate) fn on_headers<'a>(
        &mut self,
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<(), Status> {
        if !self.awaiting_headers() {
            return Ok(());
        }
        match wire::parse_response_head(headers.clone()) {
            ResponseHead::Messages(md) => {
                let encoding = headers
                    .into_iter()
                    .find(|(n, _)| *n == b"grpc-encoding")
                    .map(|(_, v)| v);
                match parse_encoding(encoding) {
                    Ok(encoding) => self.decoder.set_encoding(encoding),
                    Err(e) => return Err(self.protocol_error(&format!("response: {e}"))),
                }
                self.headers = md;
                self.state = State::Messages;
                Ok(())
            }
            ResponseHead::Done(status) => {
                self.server_finished = true;
                if status.code() == Code::Ok {
                    self.state = State::Ending(status);
                    Ok(())
                } else {
                    Err(self.fail(status))
                }
            }
        }
    }

    /// Body bytes arrived.
    pub(crate) fn on_data(&mut self, bytes: &[u8]) -> Result<(), Status> {
        match self.state {
            State::AwaitHeaders => Err(self.protocol_error("response body before headers")),
            State::Done | State::Ending(_) => Ok(()),
            // A framing error comes out of `next_message_with`, after the
            // complete messages before it.
            State::Messages => {
                let _ = self.decoder.push(bytes);
                Ok(())
            }
        }
    }

    /// The trailers arrived.
    pub(crate) fn on_trailers<'a>(
        &mut self,
        trailers: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Result<(), Status> {
        match self.state {
            State::AwaitHeaders => Err(self.protocol_error("response body before headers")),
            State::Messages => {
                self.server_finished = true;
                self.state = State::Ending(wire::parse_trailers(trailers));
                Ok(())
            }
            State::Ending(_) | State::Done => Ok(()),
        }
    }

    /// The server's side of the stream ended.
    pub(crate) fn on_finished(&mut self) -> Result<(), Status> {
        match self.state {
            State::AwaitHeaders => Err(self.protocol_error("response ended without headers")),
            State::Messages => Err(self.protocol_error("response ended without grpc-status")),
            State::Ending(_) | State::Done => Ok(()),
        }
    }

    /// The next message, handed to `f` where it lies in the receive buffer;
    /// the end of the call; or a request for more events. A non-OK final
    /// status comes out as the error, after the messages before it.
    pub(crate) fn next_message_with<R>(
        &mut self,
        f: &mut impl FnMut(&[u8]) -> R,
    ) -> Result<Next<R>, Status> {
        match self.state {
            State::AwaitHeaders => return Ok(Next::NeedEvent),
            State::Done => return Ok(Next::End),
            State::Messages | State::Ending(_) => {}
        }
        match self.decoder.next_message_with(f) {
            Ok(Some(m)) => return Ok(Next::Message(m)),
            Ok(None) => {}
            Err(e) => {
                let status = e.to_status(self.path, Direction::Response);
                return Err(self.fail(status));
            }
        }
        let status = match std::mem::replace(&mut self.state, State::Done) {
            State::Ending(status) => status,
            other => {
                self.state = other;
                return Ok(Next::NeedEvent);
            }
        };
        if let Err(e) = self.decoder.finish() {
            return Err(e.to_status(self.path, Direction::Response));
        }
        if status.code() == Code::Ok {
            self.trailers = Some(status.metadata().clone());
            Ok(Next::End)
        } else {
            Err(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/p.S/m";
    const OK_HEAD: &[(&[u8], &[u8])] = &[
        (b":status", b"200"),
        (b"content-type", b"application/grpc+bincode"),
        (b"x-h", b"1"),
    ];
    const OK_TRAILERS: &[(&[u8], &[u8])] = &[(b"grpc-status", b"0"), (b"x-t", b"2")];

    fn pairs(
        p: &'static [(&'static [u8], &'static [u8])],
    ) -> impl Iterator<Item = (&'static [u8], &'static [u8])> + Clone {
        p.iter().copied()
    }

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.push(0);
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    fn next(r: &mut ResponseReader) -> Result<Next<Vec<u8>>, Status> {
        r.next_message_with(&mut |b: &[u8]| b.to_vec())
    }

    /// Feeds `body` split at every point, then trailers; collects messages.
    fn messages_when_split(body: &[u8]) -> Vec<Vec<Vec<u8>>> {
        (0..=body.len())
            .map(|cut| {
                let mut r = ResponseReader::new(PATH, 1024);
                let mut got = Vec::new();
                r.on_headers(pairs(OK_HEAD)).unwrap();
                for part in [&body[..cut], &body[cut..]] {
                    r.on_data(part).unwrap();
                    while let Next::Message(m) = next(&mut r).unwrap() {
                        got.push(m);
                    }
                }
                r.on_trailers(pairs(OK_TRAILERS)).unwrap();
                assert_eq!(next(&mut r).unwrap(), Next::End);
                got
            })
            .collect()
    }

    #[test]
    fn headers_messages_trailers_at_every_split_point() {
        let body = framed(&[b"ab", b"", b"xyz"]);
        for got in messages_when_split(&body) {
            assert_eq!(got, vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]);
        }
    }

    #[test]
    fn metadata_from_headers_and_trailers() {
        let mut r = ResponseReader::new(PATH, 1024);
        assert!(r.awaiting_headers());
        assert_eq!(next(&mut r).unwrap(), Next::NeedEvent);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        assert_eq!(r.take_headers().get("x-h"), Some("1"));
        r.on_trailers(pairs(OK_TRAILERS)).unwrap();
        assert!(r.server_finished());
        assert_eq!(next(&mut r).unwrap(), Next::End);
        assert_eq!(r.take_trailers().unwrap().get("x-t"), Some("2"));
        // Later events change nothing.
        r.on_data(&framed(&[b"late"])).unwrap();
        r.on_finished().unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::End);
    }

    #[test]
    fn an_error_status_comes_after_the_messages_before_it() {
        let mut r = ResponseReader::new(PATH, 1024);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        r.on_data(&framed(&[b"1", b"2"])).unwrap();
        r.on_trailers(pairs(&[
            (b"grpc-status", b"5"),
            (b"grpc-message", b"gone%20away"),
        ]))
        .unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::Message(b"1".to_vec()));
        assert_eq!(next(&mut r).unwrap(), Next::Message(b"2".to_vec()));
        let err = next(&mut r).unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::NotFound, "gone away"));
        assert_eq!(next(&mut r).unwrap(), Next::End);
    }

    #[test]
    fn trailers_only_responses() {
        let mut r = ResponseReader::new(PATH, 1024);
        let err = r
            .on_headers(pairs(&[(b":status", b"200"), (b"grpc-status", b"12")]))
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(r.server_finished());
        assert_eq!(next(&mut r).unwrap(), Next::End);

        let mut r = ResponseReader::new(PATH, 1024);
        r.on_headers(pairs(&[(b":status", b"200"), (b"grpc-status", b"0")]))
            .unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::End);
        assert!(r.take_trailers().is_some());
    }

    #[test]
    fn an_http_error_without_grpc_status_is_mapped() {
        let mut r = ResponseReader::new(PATH, 1024);
        let err = r.on_headers(pairs(&[(b":status", b"503")])).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }

    #[test]
    fn out_of_order_and_missing_parts_are_internal() {
        type Feed = fn(&mut ResponseReader) -> Result<(), Status>;
        let cases: [(&str, Feed); 4] = [
            ("/p.S/m: response body before headers", |r| r.on_data(b"\0")),
            ("/p.S/m: response body before headers", |r| {
                r.on_trailers(pairs(OK_TRAILERS))
            }),
            ("/p.S/m: response ended without headers", |r| {
                r.on_finished()
            }),
            ("/p.S/m: response ended without grpc-status", |r| {
                r.on_headers(pairs(OK_HEAD))?;
                r.on_finished()
            }),
        ];
        for (message, feed) in cases {
            let mut r = ResponseReader::new(PATH, 1024);
            let err = feed(&mut r).unwrap_err();
            assert_eq!((err.code(), err.message()), (Code::Internal, message));
            assert!(!r.server_finished());
            assert_eq!(next(&mut r).unwrap(), Next::End);
        }
    }

    #[test]
    fn frame_errors() {
        // Too large: RESOURCE_EXHAUSTED once the prefix arrives, after the
        // messages before it.
        let mut r = ResponseReader::new(PATH, 4);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        r.on_data(&framed(&[b"ok", b"12345"])[..12]).unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::Message(b"ok".to_vec()));
        let err = next(&mut r).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(next(&mut r).unwrap(), Next::End);
        // A message cut short by the trailers.
        let mut r = ResponseReader::new(PATH, 1024);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        r.on_data(&framed(&[b"abc"])[..6]).unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::NeedEvent);
        r.on_trailers(pairs(OK_TRAILERS)).unwrap();
        let err = next(&mut r).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(
            err.message().contains("stream ended inside a message"),
            "{err}"
        );
    }

    #[test]
    fn failing_ends_the_call() {
        let mut r = ResponseReader::new(PATH, 1024);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        r.on_data(&framed(&[b"x"])).unwrap();
        let s = r.fail(Status::deadline_exceeded("late"));
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert_eq!(next(&mut r).unwrap(), Next::End);
    }

    #[test]
    fn compressed_responses_follow_the_headers_encoding() {
        use crate::proto::compression::{compress_tail, framed, zstd_bomb};
        use crate::Compression;
        let big = vec![b'q'; 4000];
        let mut body = bytes::BytesMut::from(&framed(0, b"small")[..]);
        body.extend_from_slice(&framed(0, &big));
        compress_tail(&mut body, 10, Compression::Zstd);
        assert_eq!(body[10], 1);
        let head: &[(&[u8], &[u8])] = &[(b":status", b"200"), (b"grpc-encoding", b"zstd")];
        let mut r = ResponseReader::new(PATH, 4096);
        r.on_headers(head.iter().copied()).unwrap();
        assert_eq!(r.encoding(), Compression::Zstd);
        r.on_data(&body).unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::Message(b"small".to_vec()));
        assert_eq!(next(&mut r).unwrap(), Next::Message(big));
        // Without grpc-encoding, flag 1 is INTERNAL.
        let mut r = ResponseReader::new(PATH, 4096);
        r.on_headers(pairs(OK_HEAD)).unwrap();
        r.on_data(&body).unwrap();
        assert_eq!(next(&mut r).unwrap(), Next::Message(b"small".to_vec()));
        assert_eq!(next(&mut r).unwrap_err().code(), Code::Internal);
        // An encoding this client does not read: INTERNAL at the headers.
        let mut r = ResponseReader::new(PATH, 4096);
        let br: &[(&[u8], &[u8])] = &[(b":status", b"200"), (b"grpc-encoding", b"br")];
        let err = r.on_headers(br.iter().copied()).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                Code::Internal,
                "/p.S/m: response: unsupported grpc-encoding \"br\": supported are identity,gzip,zstd"
            )
        );
        // A bomb: RESOURCE_EXHAUSTED, without inflating it.
        let mut r = ResponseReader::new(PATH, 4 << 20);
        r.on_headers(head.iter().copied()).unwrap();
        r.on_data(&framed(1, &zstd_bomb(1 << 30))).unwrap();
        let err = next(&mut r).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(next(&mut r).unwrap(), Next::End);
    }
}
