//! Message compression end to end (PROTOCOL.md §3.2): every call kind
//! compressed both ways with gzip and zstd; what the wire carries (flag 1,
//! `grpc-encoding`) as a raw HTTP/3 client sees it; the server's choice of
//! response encoding; unsupported encodings; and decompression bombs in
//! both directions.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use knafeh::__private::{BoxFuture, Call, Reply, RequestShape, Service};
use knafeh::schema::{SchemaError, ServiceSchema};
use knafeh::{CallOptions, Code, Compression, Status, Streaming};
use knafeh_tests::raw::{self, RawConn, RawResponse};
use knafeh_tests::relay::{Relay, RelayConfig};
use knafeh_tests::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub text: String,
}

/// A service with one method of each call kind, all of them carrying
/// whatever text they are given (so that both directions are large).
#[knafeh::service(package = "knafeh.squeeze")]
pub trait Squeeze {
    /// Unary: the text back.
    async fn echo(&self, req: Text) -> Result<Text, Status>;
    /// Server streaming: the text three times.
    async fn repeat(&self, req: Text) -> Result<Streaming<Text>, Status>;
    /// Client streaming: the texts joined.
    async fn join(&self, req: Streaming<Text>) -> Result<Text, Status>;
    /// Bidirectional: each text back.
    async fn chat(&self, req: Streaming<Text>) -> Result<Streaming<Text>, Status>;
    /// Unary; the test server answers it with a gzip bomb instead.
    async fn gzip_bomb(&self, req: Text) -> Result<Text, Status>;
    /// Unary; the test server answers it with a zstd bomb instead.
    async fn zstd_bomb(&self, req: Text) -> Result<Text, Status>;
}

#[derive(Clone, Default)]
struct SqueezeImpl;

impl Squeeze for SqueezeImpl {
    async fn echo(&self, req: Text) -> Result<Text, Status> {
        Ok(req)
    }

    async fn repeat(&self, req: Text) -> Result<Streaming<Text>, Status> {
        Ok(Streaming::iter(vec![req.clone(), req.clone(), req]))
    }

    async fn join(&self, mut req: Streaming<Text>) -> Result<Text, Status> {
        let mut text = String::new();
        while let Some(t) = req.message().await {
            text.push_str(&t?.text);
        }
        Ok(Text { text })
    }

    async fn chat(&self, mut req: Streaming<Text>) -> Result<Streaming<Text>, Status> {
        let mut all = Vec::new();
        while let Some(t) = req.message().await {
            all.push(t?);
        }
        Ok(Streaming::iter(all))
    }

    async fn gzip_bomb(&self, req: Text) -> Result<Text, Status> {
        Ok(req)
    }

    async fn zstd_bomb(&self, req: Text) -> Result<Text, Status> {
        Ok(req)
    }
}

/// The generated server, except that the two bomb methods answer with a
/// framed, compressed message of 1 GiB of zeros (what a hostile server
/// could send): the runtime leaves a frame already flagged compressed as
/// it is, under the `grpc-encoding` the request chose.
struct Bombing(SqueezeServer<SqueezeImpl>);

impl Service for Bombing {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn schema(&self) -> Result<ServiceSchema, SchemaError> {
        self.0.schema()
    }

    fn request_shape(&self, method: &str) -> Option<RequestShape> {
        self.0.request_shape(method)
    }

    fn call(&self, method: &str, call: Call) -> BoxFuture<Result<Reply, Status>> {
        let bomb = match method {
            "gzip_bomb" => gzip_bomb(GIB),
            "zstd_bomb" => zstd_bomb(GIB),
            _ => return self.0.call(method, call),
        };
        Box::pin(async move { Ok(Reply::Unary(raw::frame(1, &bomb).into())) })
    }
}

const GIB: usize = 1 << 30;
const JSON: &str = "application/grpc+json";

/// A gzip member of `total` zero bytes: one deflate block of 1 MiB of
/// zeros, ended byte-aligned by a sync flush, repeated (about 1 KiB per
/// MiB; deflate cannot do better than ~1:1000). The CRC is left 0: the
/// receiver must refuse the bomb long before it.
fn gzip_bomb(total: usize) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    let mut raw = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(4096);
    raw.compress_vec(&vec![0; BLOCK], &mut block, flate2::FlushCompress::Sync)
        .unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..total / BLOCK {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0x03, 0x00, 0, 0, 0, 0]);
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// A zstd frame of `total` zero bytes in RLE blocks of 128 KiB (4 bytes
/// each: 1 GiB in 32 KiB), with no declared content size.
fn zstd_bomb(total: usize) -> Vec<u8> {
    const BLOCK: usize = 128 * 1024;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3];
    let blocks = total / BLOCK;
    for i in 0..blocks {
        let header = u32::from(i + 1 == blocks) | (1 << 1) | ((BLOCK as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

/// `len` bytes of text that compress well (but not to nothing).
fn prose(len: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0u32;
    while s.len() < len {
        s.push_str(&format!("message {i} of a compressible text; "));
        i += 1;
    }
    s.truncate(len);
    s
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The JSON payload of a `Text` (the texts here need no escaping).
fn json(text: &str) -> Vec<u8> {
    format!(r#"{{"text":"{text}"}}"#).into_bytes()
}

async fn start_server(
    certs: &Certs,
    configure: impl FnOnce(knafeh::ServerBuilder) -> knafeh::ServerBuilder,
) -> knafeh::ServerHandle {
    configure(
        certs
            .server_builder()
            .add_service(Bombing(SqueezeServer::new(SqueezeImpl))),
    )
    .start()
    .await
    .unwrap()
}

/// Datagrams through the relay so far: (to the server, to the client).
fn datagrams(relay: &Relay) -> (u64, u64) {
    let s = relay.stats();
    (
        s.to_server.sent.load(Ordering::SeqCst),
        s.to_client.sent.load(Ordering::SeqCst),
    )
}

/// Runs one call of each kind with 128 KiB of text each way; returns the
/// datagrams each kind took (to the server, to the client).
async fn every_kind(
    client: &SqueezeClient,
    relay: &Relay,
    options: impl Fn() -> CallOptions,
) -> Vec<(&'static str, u64, u64)> {
    let text = prose(128 * 1024);
    let half = || Text {
        text: text[..text.len() / 2].to_owned(),
    };
    let whole = Text { text: text.clone() };
    let mut out = Vec::new();
    let mut measure = |kind, before: (u64, u64)| {
        let after = datagrams(relay);
        out.push((kind, after.0 - before.0, after.1 - before.1));
    };

    let before = datagrams(relay);
    let reply = client.echo_with(whole.clone(), options()).await.unwrap();
    assert_eq!(reply.into_inner(), whole);
    measure("unary", before);

    let before = datagrams(relay);
    let items = client.repeat_with(whole.clone(), options()).await.unwrap();
    let items = collect(items).await;
    assert_eq!(items, vec![whole.clone(), whole.clone(), whole.clone()]);
    measure("server streaming", before);

    let before = datagrams(relay);
    let parts = Streaming::iter(vec![half(), half()]);
    let joined = client.join_with(parts, options()).await.unwrap();
    assert_eq!(joined.into_inner().text.len(), text.len() / 2 * 2);
    measure("client streaming", before);

    let before = datagrams(relay);
    let parts = Streaming::iter(vec![whole.clone(), whole.clone()]);
    let replies = collect(client.chat_with(parts, options()).await.unwrap()).await;
    assert_eq!(replies, vec![whole.clone(), whole]);
    measure("bidirectional", before);
    out
}

async fn collect<T>(mut s: Streaming<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(m) = s.message().await {
        out.push(m.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_kind_is_compressed_both_ways() {
    bounded(async {
        let certs = Certs::new();
        let server = start_server(&certs, |b| b).await;
        let relay = Relay::start(server.local_addr(), RelayConfig::default())
            .await
            .unwrap();
        let connect = |c: Compression| {
            certs
                .client_builder(relay.addr().to_string())
                .server_name("localhost")
                .compression(c)
                .connect()
        };
        let plain = SqueezeClient::new(connect(Compression::Identity).await.unwrap());
        let baseline = every_kind(&plain, &relay, CallOptions::new).await;
        // gzip per call, zstd as the client's default; the server answers
        // in the request's encoding.
        let gzip = every_kind(&plain, &relay, || {
            CallOptions::new().compression(Compression::Gzip)
        })
        .await;
        let zstd_client = SqueezeClient::new(connect(Compression::Zstd).await.unwrap());
        let zstd = every_kind(&zstd_client, &relay, CallOptions::new).await;
        for (name, runs) in [("gzip", gzip), ("zstd", zstd)] {
            for ((kind, up, down), (_, base_up, base_down)) in runs.into_iter().zip(&baseline) {
                // 128 KiB or more each way is 100+ datagrams uncompressed;
                // compressed, a few.
                assert!(
                    up * 4 < *base_up && down * 4 < *base_down,
                    "{name} {kind}: {up} datagrams up and {down} down, \
                     uncompressed {base_up} and {base_down}"
                );
            }
        }
        server.shutdown().await;
    })
    .await
}

/// Sends one request with `headers` added to a JSON call of `method`.
async fn send(conn: &RawConn, method: &str, extra: &[(&str, &str)], body: Vec<u8>) -> RawResponse {
    let path = format!("/knafeh.squeeze.Squeeze/{method}");
    let mut headers: Vec<(String, String)> = raw::headers(&path, JSON)
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    conn.open(headers, body, true).response().await
}

/// The messages of a response body as (flag, payload).
fn frames(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = body;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push((rest[0], rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_carries_flag_1_and_the_encoding_the_client_reads() {
    bounded(async {
        let certs = Certs::new();
        // The server prefers zstd; a client that reads only gzip gets gzip.
        let server = start_server(&certs, |b| b.compression(Compression::Zstd)).await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        let text = prose(20_000);
        let request = gzip(&json(&text));
        let gzip_in = [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")];
        let r = send(&conn, "echo", &gzip_in, raw::frame(1, &request)).await;
        assert_eq!(r.grpc_status(), Some(0), "{r:?}");
        let head = r.headers.as_ref().unwrap();
        assert_eq!(raw::get(head, "grpc-encoding"), Some("gzip"));
        let got = frames(&r.body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1, "flag");
        assert!(got[0].1.len() < text.len() / 4);
        assert_eq!(gunzip(&got[0].1), json(&text));

        // A client reading zstd gets the server's choice, on every message
        // of a stream; an uncompressed request may get a compressed answer.
        let zstd_in = [("grpc-accept-encoding", "identity, zstd")];
        let r = send(&conn, "repeat", &zstd_in, raw::frame(0, &json(&text))).await;
        assert_eq!(r.grpc_status(), Some(0), "{r:?}");
        assert_eq!(
            raw::get(r.headers.as_ref().unwrap(), "grpc-encoding"),
            Some("zstd")
        );
        let got = frames(&r.body);
        assert_eq!(got.len(), 3);
        for (flag, payload) in got {
            assert_eq!(flag, 1);
            assert_eq!(zstd::decode_all(&payload[..]).unwrap(), json(&text));
        }

        // A client that lists nothing reads identity only: flag 0 and no
        // grpc-encoding, even for a compressed request.
        let r = send(
            &conn,
            "echo",
            &[("grpc-encoding", "gzip")],
            raw::frame(1, &request),
        )
        .await;
        assert_eq!(r.grpc_status(), Some(0), "{r:?}");
        assert_eq!(raw::get(r.headers.as_ref().unwrap(), "grpc-encoding"), None);
        assert_eq!(frames(&r.body), vec![(0, json(&text))]);

        // Small messages go uncompressed (flag 0) on a compressed call.
        let r = send(&conn, "echo", &gzip_in, raw::frame(0, &json("hi"))).await;
        assert_eq!(
            raw::get(r.headers.as_ref().unwrap(), "grpc-encoding"),
            Some("gzip")
        );
        assert_eq!(frames(&r.body), vec![(0, json("hi"))]);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_encoding_is_unimplemented_and_lists_the_supported_ones() {
    bounded(async {
        let certs = Certs::new();
        let server = start_server(&certs, |b| b).await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        let r = send(
            &conn,
            "echo",
            &[("grpc-encoding", "br")],
            raw::frame(1, b"whatever"),
        )
        .await;
        assert!(r.is_trailers_only(), "{r:?}");
        assert_eq!(r.grpc_status(), Some(Code::Unimplemented.as_i32()));
        let head = r.headers.as_ref().unwrap();
        assert_eq!(
            raw::get(head, "grpc-accept-encoding"),
            Some("identity,gzip,zstd")
        );
        assert!(
            r.grpc_message()
                .unwrap()
                .contains("unsupported grpc-encoding"),
            "{r:?}"
        );

        // Flag 1 without grpc-encoding: INTERNAL (gRPC's compression.md).
        let r = send(&conn, "echo", &[], raw::frame(1, &gzip(&json("x")))).await;
        assert_eq!(r.grpc_status(), Some(Code::Internal.as_i32()), "{r:?}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_bomb_is_refused_while_decompressing() {
    bounded(async {
        let certs = Certs::new();
        let server = start_server(&certs, |b| b).await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        for (name, bomb) in [("gzip", gzip_bomb(GIB)), ("zstd", zstd_bomb(GIB))] {
            let r = send(
                &conn,
                "echo",
                &[("grpc-encoding", name)],
                raw::frame(1, &bomb),
            )
            .await;
            assert_eq!(
                r.grpc_status(),
                Some(Code::ResourceExhausted.as_i32()),
                "{name}: {r:?}"
            );
            let message = r.grpc_message().unwrap();
            assert!(
                message.contains("decompresses to more than the limit of 4194304 bytes"),
                "{name}: {message}"
            );
        }
        // The server goes on serving.
        let r = send(&conn, "echo", &[], raw::frame(0, &json("after"))).await;
        assert_eq!(r.grpc_status(), Some(0), "{r:?}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_bomb_is_refused_by_the_client_while_decompressing() {
    bounded(async {
        let certs = Certs::new();
        let server = start_server(&certs, |b| b).await;
        let client = SqueezeClient::new(client_for(&certs, server.local_addr()).await);
        let hi = || Text { text: "hi".into() };
        let gzip = CallOptions::new().compression(Compression::Gzip);
        let err = client.gzip_bomb_with(hi(), gzip).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert!(
            err.message()
                .contains("gzip message decompresses to more than the limit of 4194304 bytes"),
            "{err}"
        );
        let zstd = CallOptions::new().compression(Compression::Zstd);
        let err = client.zstd_bomb_with(hi(), zstd).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // The connection and the client go on.
        assert_eq!(client.echo(hi()).await.unwrap(), hi());
        server.shutdown().await;
    })
    .await
}
