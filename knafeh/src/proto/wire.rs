//! Building and reading the gRPC-over-HTTP/3 header blocks. No I/O.

use std::time::Duration;

use crate::proto::codec::Codec;
use crate::proto::compression::{parse_encoding, Accepted, Compression, ACCEPT_ENCODING};
use crate::proto::metadata::Metadata;
use crate::proto::status::{Code, Status};
use crate::proto::text::{percent_decode, percent_encode, quoted, shown};
use crate::proto::timeout::{encode_timeout, parse_timeout};

/// A header block as (name, value) byte pairs.
pub(crate) type Block = Vec<(Vec<u8>, Vec<u8>)>;

fn h(name: &str, value: impl Into<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.into())
}

/// The request header block for a call whose messages may be compressed
/// with `encoding`.
pub(crate) fn request_headers(
    authority: &str,
    path: &str,
    codec: Codec,
    encoding: Compression,
    timeout: Option<Duration>,
    metadata: &Metadata,
) -> Block {
    let mut b = vec![
        h(":method", "POST"),
        h(":scheme", "https"),
        h(":authority", authority),
        h(":path", path),
        h("content-type", codec.content_type()),
        h("te", "trailers"),
    ];
    if let Some(t) = timeout {
        b.push(h("grpc-timeout", encode_timeout(t)));
    }
    if encoding != Compression::Identity {
        b.push(h("grpc-encoding", encoding.name()));
    }
    b.push(h("grpc-accept-encoding", ACCEPT_ENCODING));
    b.push(h(
        "user-agent",
        concat!("knafeh/", env!("CARGO_PKG_VERSION")),
    ));
    metadata.encode_into(&mut b);
    b
}

/// A request as the server understands it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) path: String,
    pub(crate) service: String,
    pub(crate) method: String,
    pub(crate) codec: Codec,
    pub(crate) timeout: Option<Duration>,
    pub(crate) metadata: Metadata,
    /// `grpc-encoding`: how compressed request messages are compressed.
    pub(crate) encoding: Compression,
    /// `grpc-accept-encoding`: what the client reads.
    pub(crate) accept: Accepted,
}

/// Why a request head was refused: the status to answer with and the HTTP
/// status of the (trailers-only) response.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) http_status: u16,
    pub(crate) status: Status,
    /// The refusal names the encodings the server reads
    /// (`grpc-accept-encoding`): the request's was not one of them.
    pub(crate) list_encodings: bool,
}

fn refuse(http_status: u16, status: Status) -> Refusal {
    Refusal {
        http_status,
        status,
        list_encodings: false,
    }
}

/// The trailers-only answer to a refused request head.
pub(crate) fn refusal_block(refusal: &Refusal, codec: Codec) -> Block {
    let mut b = trailers_only(refusal.http_status, codec, &refusal.status);
    if refusal.list_encodings {
        b.push(h("grpc-accept-encoding", ACCEPT_ENCODING));
    }
    b
}

/// Validates a request header block.
pub(crate) fn parse_request<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Result<RequestHead, Refusal> {
    let mut method = None;
    let mut path = None;
    let mut content_type = None;
    let mut timeout = None;
    let (mut encoding, mut accept) = (None, None);
    for (name, value) in headers.clone() {
        match name {
            b":method" => method = Some(value),
            b":path" => path = Some(value),
            b"content-type" => content_type = Some(value),
            b"grpc-timeout" => timeout = Some(value),
            b"grpc-encoding" => encoding = Some(value),
            b"grpc-accept-encoding" => accept = Some(value),
            _ => {}
        }
    }
    check_method(method)?;
    let (path, service, method) = request_path(path)?;
    let codec = request_codec(content_type)?;
    let timeout = match timeout.map(parse_timeout) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Err(refuse(200, Status::invalid_argument(e.to_string()))),
    };
    let encoding = parse_encoding(encoding).map_err(|msg| Refusal {
        list_encodings: true,
        ..refuse(200, Status::unimplemented(msg))
    })?;
    let accept = accept.map_or(Accepted::IDENTITY, Accepted::parse);
    let metadata = Metadata::decode_headers(headers)
        .map_err(|e| refuse(200, Status::invalid_argument(format!("bad metadata: {e}"))))?;
    Ok(RequestHead {
        service,
        method,
        path,
        codec,
        timeout,
        metadata,
        encoding,
        accept,
    })
}

/// Only `POST` carries a call.
fn check_method(method: Option<&[u8]>) -> Result<(), Refusal> {
    match method {
        Some(b"POST") => Ok(()),
        Some(other) => Err(refuse(
            405,
            Status::unimplemented(format!(
                "method {} not allowed: gRPC calls use POST",
                shown(other)
            )),
        )),
        None => Err(refuse(400, Status::invalid_argument("missing :method"))),
    }
}

/// `:path` as `(path, service, method)`.
fn request_path(path: Option<&[u8]>) -> Result<(String, String, String), Refusal> {
    let path = match path.map(std::str::from_utf8) {
        Some(Ok(p)) => p.to_owned(),
        Some(Err(_)) => return Err(refuse(400, Status::invalid_argument(":path is not UTF-8"))),
        None => return Err(refuse(400, Status::invalid_argument("missing :path"))),
    };
    let (service, method) = match split_path(&path) {
        Some(x) => x,
        None => {
            return Err(refuse(
                200,
                Status::unimplemented(format!(
                    "malformed path {}: expected /{{package.}}{{Service}}/{{method}}",
                    quoted(path.as_bytes())
                )),
            ))
        }
    };
    let (service, method) = (service.to_owned(), method.to_owned());
    Ok((path, service, method))
}

/// The codec `content-type` names.
fn request_codec(content_type: Option<&[u8]>) -> Result<Codec, Refusal> {
    let expected = format!(
        "expected {} or {}",
        Codec::Bincode.content_type(),
        Codec::Json.content_type()
    );
    let Some(ct) = content_type else {
        let msg = format!("missing content-type: {expected}");
        return Err(refuse(415, Status::invalid_argument(msg)));
    };
    Codec::from_content_type(ct).ok_or_else(|| {
        let msg = format!("unsupported content-type {}: {expected}", quoted(ct));
        refuse(415, Status::invalid_argument(msg))
    })
}

/// Splits `/{service}/{method}`; both parts non-empty, no further `/`.
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// Response headers before the first message, whose messages may be
/// compressed with `encoding`.
pub(crate) fn response_headers(codec: Codec, encoding: Compression, metadata: &Metadata) -> Block {
    let mut b = vec![h(":status", "200"), h("content-type", codec.content_type())];
    if encoding != Compression::Identity {
        b.push(h("grpc-encoding", encoding.name()));
    }
    metadata.encode_into(&mut b);
    b
}

fn push_status(b: &mut Block, status: &Status) {
    b.push(h("grpc-status", status.code().as_i32().to_string()));
    if !status.message().is_empty() {
        b.push(h("grpc-message", percent_encode(status.message())));
    }
    status.metadata().encode_into(b);
}

/// Trailers ending a response.
pub(crate) fn trailers(status: &Status) -> Block {
    let mut b = Vec::with_capacity(2);
    push_status(&mut b, status);
    b
}

/// The single header block of a response that carries no message.
pub(crate) fn trailers_only(http_status: u16, codec: Codec, status: &Status) -> Block {
    let mut b = vec![
        h(":status", http_status.to_string()),
        h("content-type", codec.content_type()),
    ];
    if http_status == 405 {
        // RFC 9110 §15.5.6: a 405 lists the methods the resource allows.
        b.push(h("allow", "POST"));
    }
    push_status(&mut b, status);
    b
}

/// What the first response header block says.
#[derive(Debug)]
pub(crate) enum ResponseHead {
    /// Messages follow; custom metadata attached.
    Messages(Metadata),
    /// Trailers-only: the call is over with this status (which may be OK).
    Done(Status),
}

/// Reads the first response header block.
pub(crate) fn parse_response_head<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> ResponseHead {
    let mut http_status = None;
    let mut has_grpc_status = false;
    for (name, value) in headers.clone() {
        match name {
            b":status" => http_status = Some(value),
            b"grpc-status" => has_grpc_status = true,
            _ => {}
        }
    }
    if has_grpc_status {
        return ResponseHead::Done(parse_trailers(headers));
    }
    match http_status {
        Some(b"200") => {}
        Some(s) => {
            let code = match &*String::from_utf8_lossy(s) {
                "400" => Code::Internal,
                "401" => Code::Unauthenticated,
                "403" => Code::PermissionDenied,
                "404" => Code::Unimplemented,
                "429" | "502" | "503" | "504" => Code::Unavailable,
                _ => Code::Unknown,
            };
            return ResponseHead::Done(Status::new(
                code,
                format!("HTTP status {} without grpc-status", shown(s)),
            ));
        }
        None => return ResponseHead::Done(Status::internal("response without :status")),
    }
    match Metadata::decode_headers(headers) {
        Ok(md) => ResponseHead::Messages(md),
        Err(e) => ResponseHead::Done(Status::internal(format!("bad response metadata: {e}"))),
    }
}

/// Reads `grpc-status`, `grpc-message` and metadata from trailers.
pub(crate) fn parse_trailers<'a>(
    headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Status {
    let mut code = None;
    let mut message = String::new();
    for (name, value) in headers.clone() {
        match name {
            b"grpc-status" => code = Some(value),
            b"grpc-message" => message = percent_decode(value),
            _ => {}
        }
    }
    let code = match code {
        None => return Status::internal("trailers without grpc-status"),
        Some(v) => match Code::from_header(v) {
            Some(c) => c,
            None => return Status::internal(format!("malformed grpc-status {}", quoted(v))),
        },
    };
    let metadata = Metadata::decode_headers(headers).unwrap_or_default();
    Status::new(code, message).with_metadata(metadata)
}

/// Header blocks for the fuzz targets (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzz {
    use std::time::Duration;

    use crate::{Codec, Metadata, Status};

    /// A header block as (name, value) byte pairs.
    pub type Block = Vec<(Vec<u8>, Vec<u8>)>;

    /// A validated request head (the crate-private `RequestHead`).
    #[derive(Debug)]
    pub struct RequestHead {
        /// `:path`.
        pub path: String,
        /// Service part of the path.
        pub service: String,
        /// Method part of the path.
        pub method: String,
        /// Codec named by `content-type`.
        pub codec: Codec,
        /// Parsed `grpc-timeout`.
        pub timeout: Option<Duration>,
        /// Custom metadata.
        pub metadata: Metadata,
    }

    /// See the crate-private `parse_request`; a refusal is its HTTP status
    /// and gRPC status.
    pub fn parse_request(headers: &[(&[u8], &[u8])]) -> Result<RequestHead, (u16, Status)> {
        match super::parse_request(headers.iter().copied()) {
            Ok(h) => Ok(RequestHead {
                path: h.path,
                service: h.service,
                method: h.method,
                codec: h.codec,
                timeout: h.timeout,
                metadata: h.metadata,
            }),
            Err(r) => Err((r.http_status, r.status)),
        }
    }

    /// See the crate-private `request_headers`.
    pub fn request_headers(
        authority: &str,
        path: &str,
        codec: Codec,
        timeout: Option<Duration>,
        metadata: &Metadata,
    ) -> Block {
        super::request_headers(
            authority,
            path,
            codec,
            crate::Compression::Identity,
            timeout,
            metadata,
        )
    }

    /// See the crate-private `trailers`.
    pub fn trailers(status: &Status) -> Block {
        super::trailers(status)
    }

    /// See the crate-private `parse_trailers`.
    pub fn parse_trailers(headers: &[(&[u8], &[u8])]) -> Status {
        super::parse_trailers(headers.iter().copied())
    }

    /// See the crate-private `parse_response_head`: `Ok` with the metadata
    /// when messages follow, `Err` with the status when the call is over.
    pub fn parse_response_head(headers: &[(&[u8], &[u8])]) -> Result<Metadata, Status> {
        match super::parse_response_head(headers.iter().copied()) {
            super::ResponseHead::Messages(md) => Ok(md),
            super::ResponseHead::Done(s) => Err(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(b: &Block) -> Vec<(&[u8], &[u8])> {
        b.iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect()
    }

    #[test]
    fn request_round_trip() {
        let mut md = Metadata::new();
        md.insert("x-id", "7").unwrap();
        md.insert_bin("trace-bin", &[0, 1, 2]).unwrap();
        let b = request_headers(
            "localhost",
            "/helloworld.Greeter/say_hello",
            Codec::Json,
            Compression::Zstd,
            Some(Duration::from_millis(250)),
            &md,
        );
        let v = view(&b);
        assert!(v.contains(&(&b":method"[..], &b"POST"[..])));
        assert!(
            v.contains(&(&b"grpc-timeout"[..], &b"250000u"[..]))
                || v.iter().any(|(n, _)| *n == b"grpc-timeout")
        );
        assert!(v.contains(&(&b"trace-bin"[..], &b"AAEC"[..])));
        let head = parse_request(v.iter().copied()).unwrap();
        assert_eq!(head.service, "helloworld.Greeter");
        assert_eq!(head.method, "say_hello");
        assert_eq!(head.codec, Codec::Json);
        assert!(head.timeout.unwrap() >= Duration::from_millis(250));
        assert_eq!(head.metadata.get("x-id"), Some("7"));
        assert_eq!(head.metadata.get_bin("trace-bin"), Some(&[0u8, 1, 2][..]));
        assert_eq!(head.encoding, Compression::Zstd);
        assert!(head.accept.contains(Compression::Gzip) && head.accept.contains(Compression::Zstd));
        assert!(v.contains(&(&b"grpc-encoding"[..], &b"zstd"[..])));
        assert!(v.contains(&(&b"grpc-accept-encoding"[..], &b"identity,gzip,zstd"[..])));
        let plain = request_headers("h", "/a.B/c", Codec::Json, Compression::Identity, None, &md);
        assert!(!view(&plain).iter().any(|(n, _)| *n == b"grpc-encoding"));
    }

    #[test]
    fn an_unsupported_request_encoding_is_refused_with_the_supported_list() {
        let head = |enc: &'static [u8]| -> Vec<(&'static [u8], &'static [u8])> {
            vec![
                (b":method", b"POST"),
                (b":path", b"/a.B/c"),
                (b"content-type", b"application/grpc+json"),
                (b"grpc-encoding", enc),
            ]
        };
        let r = parse_request(head(b"br")).unwrap_err();
        assert_eq!(r.status.code(), Code::Unimplemented);
        assert_eq!(
            r.status.message(),
            "unsupported grpc-encoding \"br\": supported are identity,gzip,zstd"
        );
        let b = refusal_block(&r, Codec::Json);
        assert_eq!(
            b.last(),
            Some(&(
                b"grpc-accept-encoding".to_vec(),
                b"identity,gzip,zstd".to_vec()
            ))
        );
        assert!(b.contains(&(b"grpc-status".to_vec(), b"12".to_vec())));
        // Without grpc-accept-encoding the client reads identity only.
        let ok = parse_request(head(b"gzip")).unwrap();
        assert_eq!(
            (ok.encoding, ok.accept),
            (Compression::Gzip, Accepted::IDENTITY)
        );
        // Other refusals do not list encodings.
        let r = parse_request(vec![(&b":method"[..], &b"GET"[..])]).unwrap_err();
        assert!(!refusal_block(&r, Codec::Json)
            .iter()
            .any(|(n, _)| n == b"grpc-accept-encoding"));
        let rh = response_headers(Codec::Json, Compression::Gzip, &Metadata::new());
        assert!(rh.contains(&(b"grpc-encoding".to_vec(), b"gzip".to_vec())));
    }

    #[test]
    fn bad_requests_are_refused_with_the_right_code() {
        let base = |m: &'static [u8],
                    p: &'static [u8],
                    ct: &'static [u8]|
         -> Vec<(&'static [u8], &'static [u8])> {
            vec![(b":method", m), (b":path", p), (b"content-type", ct)]
        };
        let r = parse_request(base(b"GET", b"/a.B/c", b"application/grpc+json")).unwrap_err();
        assert_eq!((r.http_status, r.status.code()), (405, Code::Unimplemented));
        let r = parse_request(base(b"POST", b"nope", b"application/grpc+json")).unwrap_err();
        assert_eq!(r.status.code(), Code::Unimplemented);
        let r = parse_request(base(b"POST", b"/a.B/c", b"application/grpc")).unwrap_err();
        assert_eq!(
            (r.http_status, r.status.code()),
            (415, Code::InvalidArgument)
        );
        let mut v = base(b"POST", b"/a.B/c", b"application/grpc+bincode");
        v.push((b"grpc-timeout", b"10x"));
        assert_eq!(
            parse_request(v).unwrap_err().status.code(),
            Code::InvalidArgument
        );
        assert!(split_path("/a/b/c").is_none());
        assert!(split_path("//b").is_none());
    }

    #[test]
    fn refusals_quote_at_most_64_bytes() {
        // Found by fuzz/fuzz_targets/request.rs: refusals quoted whole header
        // values, so a large request head came back as a larger grpc-message.
        let long = vec![0xFF; 20_000];
        let long_path = [&b"/"[..], &[b'x'; 20_000]].concat();
        let ok: [&[u8]; 4] = [b"POST", b"/a.B/c", b"application/grpc+json", b"1S"];
        for (i, bad) in [&long[..], &long_path, &long, &long]
            .into_iter()
            .enumerate()
        {
            let mut values = ok;
            values[i] = bad;
            let names: [&[u8]; 4] = [b":method", b":path", b"content-type", b"grpc-timeout"];
            let r = parse_request(names.into_iter().zip(values)).unwrap_err();
            let msg = r.status.message();
            assert!(msg.len() < 1024, "{i}: {} bytes", msg.len());
            assert!(msg.contains("bytes)"), "{i}: {msg}");
        }
        let v: Vec<(&[u8], &[u8])> = vec![(b"grpc-status", &long)];
        assert!(parse_trailers(v).message().len() < 1024);
        let v: Vec<(&[u8], &[u8])> = vec![(b":status", &long)];
        match parse_response_head(v) {
            ResponseHead::Done(s) => assert!(s.message().len() < 1024),
            other => panic!("{other:?}"),
        }
        // Short values are quoted whole, as before.
        let v: Vec<(&[u8], &[u8])> = vec![(b":method", b"GET")];
        assert_eq!(
            parse_request(v).unwrap_err().status.message(),
            "method GET not allowed: gRPC calls use POST"
        );
    }

    #[test]
    fn status_travels_in_trailers() {
        let s = Status::not_found("no such user: 100%");
        let t = trailers(&s);
        let v = view(&t);
        assert!(v.contains(&(&b"grpc-status"[..], &b"5"[..])));
        assert!(v.contains(&(&b"grpc-message"[..], &b"no such user: 100%25"[..])));
        let back = parse_trailers(v.iter().copied());
        assert_eq!(back.code(), Code::NotFound);
        assert_eq!(back.message(), "no such user: 100%");
    }

    #[test]
    fn trailers_only_and_http_errors() {
        let t = trailers_only(200, Codec::Bincode, &Status::unimplemented("x"));
        match parse_response_head(view(&t).iter().copied()) {
            ResponseHead::Done(s) => assert_eq!(s.code(), Code::Unimplemented),
            other => panic!("{other:?}"),
        }
        let v: Vec<(&[u8], &[u8])> = vec![(b":status", b"503")];
        match parse_response_head(v) {
            ResponseHead::Done(s) => assert_eq!(s.code(), Code::Unavailable),
            other => panic!("{other:?}"),
        }
        let v: Vec<(&[u8], &[u8])> = vec![(b":status", b"200"), (b"x-a", b"b")];
        match parse_response_head(v) {
            ResponseHead::Messages(md) => assert_eq!(md.get("x-a"), Some("b")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_405_says_which_method_is_allowed() {
        let t = trailers_only(405, Codec::Bincode, &Status::unimplemented("x"));
        assert!(view(&t).contains(&(&b"allow"[..], &b"POST"[..])));
        let t = trailers_only(415, Codec::Bincode, &Status::unimplemented("x"));
        assert!(!view(&t).iter().any(|(n, _)| *n == b"allow"));
    }
}
