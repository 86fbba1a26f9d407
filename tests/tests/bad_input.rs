//! Bad input on the wire: requests knafeh's client would never send,
//! spoken in raw HTTP/3 (tests/src/raw.rs), and garbage datagrams. Each
//! case expects the status PROTOCOL.md documents (§6.2), or a clean stream
//! or connection close. Throughout every test a well-behaved client on its
//! own connection (`Canary`) keeps calling the same server and must get
//! every answer right.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use knafeh::{Code, ServerBuilder};
use knafeh_tests::raw::{self, RawConn, RawEnd, RawEvent, RawResponse};
use knafeh_tests::relay::SplitMix64;
use knafeh_tests::*;

const JSON: &str = "application/grpc+json";
const BINCODE: &str = "application/grpc+bincode";

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn base(path: &str, content_type: &str) -> Headers {
    raw::headers(path, content_type)
        .into_iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// `h` with field `name` set to `value` (replaced if present, else added).
fn with(mut h: Headers, name: &str, value: impl AsRef<[u8]>) -> Headers {
    let value = value.as_ref().to_vec();
    match h.iter_mut().find(|(n, _)| n == name.as_bytes()) {
        Some(f) => f.1 = value,
        None => h.push((name.as_bytes().to_vec(), value)),
    }
    h
}

/// `h` without field `name`.
fn without(mut h: Headers, name: &str) -> Headers {
    h.retain(|(n, _)| n != name.as_bytes());
    h
}

fn echo_json(text: &str) -> Vec<u8> {
    raw::frame(0, format!(r#"{{"text":"{text}"}}"#).as_bytes())
}

/// A probe server, a well-behaved client calling it all along, and one raw
/// connection for the test's bad requests.
struct Suite {
    fx: ProbeFixture,
    canary: Canary,
    raw: RawConn,
}

impl Suite {
    async fn start(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Suite {
        let fx = ProbeFixture::start(configure).await;
        let canary = Canary::start(&fx.certs, fx.server.local_addr()).await;
        let raw = RawConn::connect(fx.server.local_addr()).await.unwrap();
        Suite { fx, canary, raw }
    }

    fn addr(&self) -> SocketAddr {
        self.fx.server.local_addr()
    }

    /// One request on the shared raw connection; everything the server
    /// answered on that stream.
    async fn send(&self, headers: Headers, body: Vec<u8>) -> RawResponse {
        self.raw.open(headers, body, true).response().await
    }

    /// The canary saw nothing wrong, the raw connection survived every
    /// stream-level refusal, and the server shuts down cleanly.
    async fn finish(self) {
        self.canary.check().await;
        assert_eq!(self.raw.close_info(), None, "the raw connection was closed");
        self.fx.server.shutdown().await;
    }
}

/// A trailers-only refusal with this `:status` and `grpc-status`.
#[track_caller]
fn refused(r: &RawResponse, http: &str, code: Code, case: &str) {
    assert!(r.is_trailers_only(), "{case}: not trailers-only: {r:?}");
    assert_eq!(r.http_status(), Some(http), "{case}: {r:?}");
    assert_eq!(r.grpc_status(), Some(code.as_i32()), "{case}: {r:?}");
}

/// A successful unary answer carrying exactly `payload`.
#[track_caller]
fn answered(r: &RawResponse, payload: &[u8], case: &str) {
    assert_eq!(r.http_status(), Some("200"), "{case}: {r:?}");
    assert_eq!(r.grpc_status(), Some(0), "{case}: {r:?}");
    assert!(r.trailers.is_some(), "{case}: no trailers: {r:?}");
    assert_eq!(r.messages(), Some(vec![payload.to_vec()]), "{case}: {r:?}");
}

/// Controls for the framing test: a well-formed request, the same message
/// one byte per DATA frame (frame boundaries do not matter), and request
/// trailers after the message (ignored) are all answered.
async fn well_formed_variants_are_answered(s: &Suite) {
    let echo = ProbeClient::ECHO;
    let ok = br#"{"text":"hi"}"#;
    // Control: a well-formed request, then the same message one byte
    // per DATA frame (frame boundaries do not matter).
    let r = s.send(base(echo, JSON), echo_json("hi")).await;
    answered(&r, ok, "control");
    assert_eq!(
        raw::get(r.headers.as_ref().unwrap(), "content-type"),
        Some(JSON)
    );
    let mut st = s.raw.open(base(echo, JSON), vec![], false);
    let bytes = echo_json("hi");
    for (i, b) in bytes.iter().enumerate() {
        st.send(vec![*b], i + 1 == bytes.len()).await;
    }
    answered(&st.response().await, ok, "one byte per DATA frame");
    // Request trailers after the message are ignored.
    let mut st = s.raw.open(base(echo, JSON), echo_json("hi"), false);
    st.send_trailers([("x-trailer", "1"), ("grpc-status", "13")])
        .await;
    answered(&st.response().await, ok, "request trailers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_framing_gets_the_documented_status() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let ok = br#"{"text":"hi"}"#;

        well_formed_variants_are_answered(&s).await;

        let cases: Vec<(&str, Vec<u8>, Code)> = vec![
            ("truncated prefix", vec![0, 0, 0], Code::InvalidArgument),
            ("one prefix byte", vec![0], Code::InvalidArgument),
            ("empty body", vec![], Code::InvalidArgument),
            (
                "prefix longer than the body",
                {
                    let mut f = echo_json("hi");
                    f[4] += 5;
                    f
                },
                Code::InvalidArgument,
            ),
            (
                "a message and a partial one",
                [echo_json("hi"), vec![0, 0]].concat(),
                Code::InvalidArgument,
            ),
            (
                "two messages",
                [echo_json("a"), echo_json("b")].concat(),
                Code::InvalidArgument,
            ),
            // Flag 1 without grpc-encoding (gRPC's compression.md: INTERNAL).
            ("compressed flag", raw::frame(1, ok), Code::Internal),
            ("flag 2", raw::frame(2, ok), Code::InvalidArgument),
            ("flag 0x80", raw::frame(0x80, ok), Code::InvalidArgument),
            ("flag 0xff", raw::frame(0xff, ok), Code::InvalidArgument),
        ];
        for (case, body, code) in cases {
            let r = s.send(base(echo, JSON), body).await;
            refused(&r, "200", code, case);
            assert_eq!(
                raw::get(r.headers.as_ref().unwrap(), "content-type"),
                Some(JSON)
            );
            assert!(
                r.grpc_message().unwrap_or("").contains(echo),
                "{case}: message does not name the method: {r:?}"
            );
        }

        // HEADERS with FIN: no body at all.
        let r = s.raw.open(base(echo, JSON), vec![], true).response().await;
        refused(&r, "200", Code::InvalidArgument, "headers with FIN");

        // A second message is refused as soon as it is complete, without
        // waiting for FIN (the stream stays open), and the server stops
        // reading.
        let mut st = s.raw.open(
            base(echo, JSON),
            [echo_json("a"), echo_json("b")].concat(),
            false,
        );
        let r = st.response().await;
        refused(&r, "200", Code::InvalidArgument, "two messages, no FIN");
        let stop = match r.stop_sending {
            Some(code) => Some(code),
            None => st.stop_sending().await,
        };
        assert_eq!(stop, Some(raw::H3_NO_ERROR));

        // Same for a bad flag: the server stops at the prefix.
        let mut st = s
            .raw
            .open(base(echo, JSON), vec![1, 0, 0, 0, 100, b'{'], false);
        let r = st.response().await;
        refused(&r, "200", Code::Internal, "compressed, no FIN");
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_its_payload_arrives() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        // Declared lengths far over the 4 MiB default; a few payload bytes
        // follow and the stream stays open. If the server waited for (or
        // reserved room for) the declared payload, no answer would come.
        for declared in [1u32 << 30, u32::MAX, 4 * 1024 * 1024 + 1] {
            let mut body = vec![0];
            body.extend_from_slice(&declared.to_be_bytes());
            body.extend_from_slice(br#"{"text":"#);
            let mut st = s.raw.open(base(echo, JSON), body, false);
            let r = tokio::time::timeout(Duration::from_secs(20), st.response())
                .await
                .unwrap_or_else(|_| panic!("no answer to a declared length of {declared}"));
            refused(&r, "200", Code::ResourceExhausted, &format!("{declared}"));
            let stop = match r.stop_sending {
                Some(code) => Some(code),
                None => st.stop_sending().await,
            };
            assert_eq!(stop, Some(raw::H3_NO_ERROR));
        }
        // Only the prefix, nothing else.
        let mut st = s
            .raw
            .open(base(echo, BINCODE), vec![0, 0x7f, 0xff, 0xff, 0xff], false);
        refused(
            &st.response().await,
            "200",
            Code::ResourceExhausted,
            "prefix only",
        );
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_message_limit_is_exact() {
    bounded(async {
        let s = Suite::start(|b| b.max_message_size(1000)).await;
        let echo = ProbeClient::ECHO;
        // {"text":"…"} is 11 bytes plus the text.
        let at_limit = "a".repeat(1000 - 11);
        let payload = format!(r#"{{"text":"{at_limit}"}}"#);
        assert_eq!(payload.len(), 1000);
        let r = s
            .send(base(echo, JSON), raw::frame(0, payload.as_bytes()))
            .await;
        answered(&r, payload.as_bytes(), "exactly the limit");
        let over = format!(r#"{{"text":"{at_limit}a"}}"#);
        let r = s
            .send(base(echo, JSON), raw::frame(0, over.as_bytes()))
            .await;
        refused(&r, "200", Code::ResourceExhausted, "one byte over");
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_types_and_methods_are_refused() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let body = echo_json("hi");
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/json",
            "application/grpc+jsonx",
            "application/grpc+json+bincode",
            "text/plain",
            "",
            "application/grpc+json\u{0}",
        ] {
            let r = s
                .send(with(base(echo, JSON), "content-type", ct), body.clone())
                .await;
            refused(
                &r,
                "415",
                Code::InvalidArgument,
                &format!("content-type {ct:?}"),
            );
            // Answered in the default codec when the request named none.
            assert_eq!(
                raw::get(r.headers.as_ref().unwrap(), "content-type"),
                Some(BINCODE)
            );
        }
        let r = s
            .send(without(base(echo, JSON), "content-type"), body.clone())
            .await;
        refused(&r, "415", Code::InvalidArgument, "no content-type");

        // Parameters and case do not matter.
        let r = s
            .send(
                with(
                    base(echo, JSON),
                    "content-type",
                    "Application/GRPC+JSON; charset=utf-8",
                ),
                body.clone(),
            )
            .await;
        answered(&r, br#"{"text":"hi"}"#, "content-type with parameters");

        for m in ["GET", "PUT", "post", "CONNECT", ""] {
            let r = s
                .send(with(base(echo, JSON), ":method", m), body.clone())
                .await;
            refused(&r, "405", Code::Unimplemented, &format!(":method {m:?}"));
        }
        let r = s
            .send(without(base(echo, JSON), ":method"), body.clone())
            .await;
        refused(&r, "400", Code::InvalidArgument, "no :method");
        // GET without a body, as a browser would send it.
        let r = s
            .raw
            .open(with(base(echo, JSON), ":method", "GET"), vec![], true)
            .response()
            .await;
        refused(&r, "405", Code::Unimplemented, "GET without body");
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_and_unknown_paths_are_refused() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let body = echo_json("hi");
        let r = s.send(without(base("", JSON), ":path"), body.clone()).await;
        refused(&r, "400", Code::InvalidArgument, "no :path");
        let r = s
            .send(
                with(
                    base("", JSON),
                    ":path",
                    b"/knafeh.test.Probe/ech\xff".as_slice(),
                ),
                body.clone(),
            )
            .await;
        refused(&r, "400", Code::InvalidArgument, ":path not UTF-8");

        let long = format!("/knafeh.test.Probe/{}", "e".repeat(10_000));
        for path in [
            "",
            "x",
            "/",
            "//",
            "/knafeh.test.Probe",
            "/knafeh.test.Probe/",
            "knafeh.test.Probe/echo",
            "/knafeh.test.Probe/echo/",
            "/knafeh.test.Probe/echo/extra",
            "//echo",
            "/knafeh.test.Nope/echo",
            "/Probe/echo",
            "/knafeh.test.probe/echo",
            "/knafeh.test.Probe/Echo",
            "/knafeh.test.Probe/echo?x=1",
            "/knafeh.test.Probe/echo ",
            "*",
            long.as_str(),
        ] {
            let r = s.send(base(path, JSON), body.clone()).await;
            refused(
                &r,
                "200",
                Code::Unimplemented,
                &format!(":path {path:.40?}"),
            );
            // The message quotes at most a bounded part of what was sent.
            let msg = r.grpc_message().unwrap_or_default();
            assert!(msg.len() <= 1024, ":path {path:.40?}: {} bytes", msg.len());
        }
        // Unknown services and methods with long names, too.
        for path in [
            format!("/knafeh.test.{}/echo", "N".repeat(10_000)),
            format!("/knafeh.test.Probe/{}", "m".repeat(10_000)),
        ] {
            let r = s.send(base(&path, JSON), body.clone()).await;
            refused(&r, "200", Code::Unimplemented, "long unknown name");
            let msg = r.grpc_message().unwrap_or_default();
            assert!(msg.len() <= 1024, "{} bytes: {msg:.100}", msg.len());
        }
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_timeouts_are_refused() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let body = echo_json("hi");
        for t in [
            "soon",
            "10x",
            "123456789S",
            "1s",
            "1h",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1.5S",
            "",
            "S",
            "1SS",
            "1 S",
            "0x10S",
            "\u{FF11}S",
        ] {
            let r = s
                .send(with(base(echo, JSON), "grpc-timeout", t), body.clone())
                .await;
            refused(
                &r,
                "200",
                Code::InvalidArgument,
                &format!("grpc-timeout {t:?}"),
            );
        }
        // Valid edge cases.
        for t in ["00000010S", "99999999H", "1M"] {
            let r = s
                .send(with(base(echo, JSON), "grpc-timeout", t), body.clone())
                .await;
            answered(&r, br#"{"text":"hi"}"#, t);
        }
        let r = s
            .send(with(base(echo, JSON), "grpc-timeout", "0n"), body)
            .await;
        refused(&r, "200", Code::DeadlineExceeded, "0n");
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_is_refused_and_reserved_names_are_ignored() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let body = echo_json("hi");
        let long_key = "k".repeat(257);
        let long_value = "v".repeat(8193);
        let long_bin = "A".repeat(10_924 + 4); // decodes to more than 8192 bytes
        let cases: Vec<(&str, &[u8])> = vec![
            ("a b", b"x"),
            ("x-é", b"x"),
            ("x(y)", b"x"),
            ("", b"x"),
            (long_key.as_str(), b"x"),
            ("x-ctl", b"a\x01b"),
            ("x-del", b"a\x7fb"),
            ("x-utf8", "é".as_bytes()),
            ("x-long", long_value.as_bytes()),
            ("x-raw-bin", b"!!!!"),
            ("x-raw-bin", b"Zg=a"),
            ("x-raw-bin", b"Zg =="),
            ("x-raw-bin", b"Z"),
            ("x-raw-bin", b"-_-_"),
            ("x-raw-bin", long_bin.as_bytes()),
        ];
        for (name, value) in cases {
            let r = s
                .send(
                    [base(echo, JSON), vec![(name.into(), value.to_vec())]].concat(),
                    body.clone(),
                )
                .await;
            refused(
                &r,
                "200",
                Code::InvalidArgument,
                &format!(
                    "metadata {name:.20?}: {:.20?}",
                    String::from_utf8_lossy(value)
                ),
            );
        }
        // Upper-case field names are malformed in HTTP/3 (RFC 9114 §4.2);
        // quiche passes them on and the server accepts them, lower-cased.
        let r = s
            .send(
                [
                    base(ProbeClient::META, JSON),
                    vec![(b"X-In".to_vec(), b"up".to_vec())],
                ]
                .concat(),
                body.clone(),
            )
            .await;
        answered(&r, br#"{"text":"hi|up|127.0.0.1"}"#, "upper-case name");

        // Reserved names are not metadata and are skipped; unpadded base64
        // and the largest values are fine.
        let max_value = "v".repeat(8192);
        let fine: Vec<(&str, &str)> = vec![
            ("grpc-whatever", "\u{1}"),
            ("grpc-encoding", "gzip"),
            ("content-length", "99999"),
            ("user-agent", "curl/8"),
            ("x-raw-bin", "Zg"),
            ("x-in", max_value.as_str()),
            ("x.dotted_under-score", "ok"),
        ];
        for (name, value) in fine {
            let r = s
                .send(
                    [base(echo, JSON), vec![(name.into(), value.into())]].concat(),
                    body.clone(),
                )
                .await;
            answered(&r, br#"{"text":"hi"}"#, name);
        }
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_blocks_close_the_connection_with_excessive_load() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let body = echo_json("hi");
        // Under the 32 KiB limit (about 40 bytes counted per field), many
        // fields are fine and reach the handler as metadata.
        let mut h = base(echo, JSON);
        for i in 0..600 {
            h.push((format!("x-m{i}").into_bytes(), b"v".to_vec()));
        }
        answered(
            &s.send(h, body.clone()).await,
            br#"{"text":"hi"}"#,
            "600 fields",
        );

        let too_many = {
            let mut h = base(echo, JSON);
            for i in 0..2000 {
                h.push((format!("x-m{i}").into_bytes(), b"v".to_vec()));
            }
            h
        };
        let too_big = {
            let mut h = base(echo, JSON);
            for i in 0..5 {
                h.push((format!("x-big{i}").into_bytes(), vec![b'v'; 8000]));
            }
            h
        };
        let one_huge = with(base(echo, JSON), "x-huge", vec![b'v'; 100_000]);
        for (case, h) in [
            ("2000 fields", too_many),
            ("40 KB of values", too_big),
            ("one 100 KB value", one_huge),
        ] {
            let conn = RawConn::connect(s.addr()).await.unwrap();
            let r = conn.open(h, body.clone(), true).response().await;
            let info = conn.closed().await;
            assert!(
                info.by_peer && info.is_app && info.error_code == raw::H3_EXCESSIVE_LOAD,
                "{case}: {info:?}"
            );
            assert!(r.headers.is_none(), "{case}: {r:?}");
            assert!(
                matches!(r.end, Some(RawEnd::ConnectionClosed(_))),
                "{case}: {r:?}"
            );
        }
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_header_blocks_under_the_limit_get_through_both_ways() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        // Request metadata of about 24 KB, under the 32 KiB limit, from
        // knafeh's own client.
        let mut md = knafeh::Metadata::new();
        for i in 0..3 {
            md.insert(&format!("x-big{i}"), &"v".repeat(8000)).unwrap();
        }
        md.insert("x-in", "big").unwrap();
        let r =
            s.fx.client
                .meta_with(
                    Echo { text: "t".into() },
                    knafeh::CallOptions::new()
                        .metadata(md)
                        .timeout(Duration::from_secs(20)),
                )
                .await
                .expect("a request with 24 KB of metadata failed");
        assert_eq!(r.get_ref().text, "t|big|127.0.0.1");
        // Response headers of about 16 KB (the probe echoes x-in and
        // x-raw-bin back), asked for through the raw client.
        let h = [
            base(ProbeClient::META, JSON),
            vec![
                (b"x-in".to_vec(), vec![b'v'; 8000]),
                (b"x-raw-bin".to_vec(), b"AAAA".repeat(1500)),
            ],
        ]
        .concat();
        let r = s.send(h, echo_json("t")).await;
        assert_eq!(r.grpc_status(), Some(0), "{r:?}");
        let headers = r.headers.as_ref().unwrap();
        assert_eq!(raw::get(headers, "x-out").map(str::len), Some(8001));
        assert_eq!(raw::get(headers, "x-raw-bin").map(str::len), Some(6000));
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_do_not_decode_are_invalid_argument() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        let echo = ProbeClient::ECHO;
        let stream = ProbeClient::STREAM;
        let blob = ProbeClient::BLOB;
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let json: Vec<(&str, &[u8])> = vec![
            (echo, b"[1,2]"),
            (echo, b"{}"),
            (echo, br#"{"text":1}"#),
            (echo, br#"{"text":null}"#),
            (echo, b"not json"),
            (echo, b"\xff\xfe"),
            (echo, b""),
            (echo, b" "),
            (echo, br#"{"text":"a"} x"#),
            (echo, br#"{"text":"a"}{"text":"b"}"#),
            (echo, br#"{"text":"\ud800"}"#),
            (echo, br#"{"text":"a"#),
            (echo, deep.as_bytes()),
            (stream, br#""Nope""#),
            (stream, br#"{"Count":-1}"#),
            (stream, br#"{"Count":4294967296}"#),
            (stream, br#"{"Count":1,"Endless":null}"#),
            (blob, br#"{"data":[256]}"#),
            (blob, br#"{"data":"AAEC"}"#),
        ];
        for (path, payload) in json {
            let r = s.send(base(path, JSON), raw::frame(0, payload)).await;
            let case = format!("JSON {path} {:.30?}", String::from_utf8_lossy(payload));
            refused(&r, "200", Code::InvalidArgument, &case);
            assert!(
                r.grpc_message().unwrap_or("").contains(path),
                "{case}: {r:?}"
            );
        }
        let mut huge_len = vec![0xfd];
        huge_len.extend_from_slice(&u64::MAX.to_le_bytes());
        let bincode: Vec<(&str, Vec<u8>)> = vec![
            (echo, vec![]),
            (echo, vec![0xfb, 0xff, 0xff]),
            (echo, vec![5, b'a']),
            (echo, vec![2, 0xff, 0xfe]),
            (echo, vec![1, b'a', 0]),
            (echo, huge_len.clone()),
            (echo, vec![0xfc, 0xff, 0xff, 0xff, 0xff, b'a']),
            (echo, vec![0xfe]),
            (echo, vec![0xff]),
            // A 1 GiB byte vector claimed in a few bytes: must be refused
            // without allocating it.
            (blob, vec![0xfc, 0, 0, 0, 0x40, 1, 2, 3]),
            (blob, huge_len),
            (stream, vec![9]),
            (stream, vec![0]),
            (stream, vec![0xfc, 0xff, 0xff, 0xff, 0xff]),
        ];
        for (path, payload) in bincode {
            let r = s.send(base(path, BINCODE), raw::frame(0, &payload)).await;
            let case = format!("bincode {path} {payload:02x?}");
            refused(&r, "200", Code::InvalidArgument, &case);
            assert_eq!(
                raw::get(r.headers.as_ref().unwrap(), "content-type"),
                Some(BINCODE)
            );
        }
        // Control: valid bincode.
        let r = s
            .send(base(echo, BINCODE), raw::frame(0, &[2, b'h', b'i']))
            .await;
        answered(&r, &[2, b'h', b'i'], "bincode control");
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_is_bounded_by_its_deadline_or_the_read_timeout() {
    bounded(async {
        let s = Suite::start(|b| {
            b.idle_timeout(Duration::from_secs(3))
                .request_read_timeout(Duration::from_secs(6))
        })
        .await;
        let echo = ProbeClient::ECHO;

        // With a deadline: DEADLINE_EXCEEDED once it passes, whether part
        // of the body came or none of it, and the server stops reading.
        for (case, body) in [
            ("part of a message", vec![0, 0, 0, 0, 20, b'{']),
            ("no body", vec![]),
            ("a whole message, no FIN", echo_json("hi")),
        ] {
            let mut st = s
                .raw
                .open(with(base(echo, JSON), "grpc-timeout", "300m"), body, false);
            let r = st.response().await;
            refused(&r, "200", Code::DeadlineExceeded, case);
            let stop = match r.stop_sending {
                Some(code) => Some(code),
                None => st.stop_sending().await,
            };
            assert_eq!(stop, Some(raw::H3_NO_ERROR), "{case}");
        }
        // (A client that gives up on its stalled request is tested in
        // a_reset_frees_a_stalled_request_at_once.)
        let Suite { fx, canary, raw } = s;
        canary.check().await;
        assert_eq!(raw.close_info(), None, "the raw connection was closed");
        drop(raw);
        eventually(|| fx.server.stats().active_calls == 0).await;

        // Without a deadline the server's read timeout (6 s here) ends it,
        // although traffic on other streams keeps the connection busy.
        let conn = RawConn::connect(fx.server.local_addr()).await.unwrap();
        let mut stalled = conn.open(base(echo, JSON), vec![0, 0, 0, 0, 20, b'{'], false);
        stalled.id().await.unwrap();
        eventually(|| fx.server.stats().active_calls == 1).await;
        let mut i = 0;
        while stalled.try_next().is_none() {
            i += 1;
            let text = format!("busy{i}");
            let r = conn
                .open(base(echo, JSON), echo_json(&text), true)
                .response()
                .await;
            answered(&r, format!(r#"{{"text":"{text}"}}"#).as_bytes(), &text);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = stalled.response().await;
        refused(
            &r,
            "200",
            Code::DeadlineExceeded,
            "no deadline: read timeout",
        );
        // The configured read timeout ended it, not a default.
        assert!(
            r.grpc_message()
                .is_some_and(|m| m.contains("did not arrive within 6s")),
            "{r:?}"
        );
        eventually(|| fx.server.stats().active_calls == 0).await;
        assert_eq!(conn.close_info(), None, "the connection itself stays");
        fx.server.shutdown().await;
    })
    .await
}

/// A client that gives up on its stalled request (RESET_STREAM) frees it
/// at once: the server's read and idle timeouts are far longer than this
/// test may wait, and the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_frees_a_stalled_request_at_once() {
    bounded(async {
        let certs = Certs::new();
        let (server, _) = start_probe_server(&certs, |b| {
            b.idle_timeout(Duration::from_secs(120))
                .request_read_timeout(Duration::from_secs(120))
        })
        .await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        let mut st = conn.open(base(ProbeClient::ECHO, JSON), vec![0, 0, 0, 0, 20], false);
        st.id().await.unwrap();
        eventually(|| server.stats().active_calls == 1).await;
        st.abort(raw::H3_REQUEST_CANCELLED).await;
        tokio::time::timeout(
            Duration::from_secs(20),
            eventually(|| server.stats().active_calls == 0),
        )
        .await
        .expect("the reset did not free the stalled request");
        assert_eq!(conn.close_info(), None, "the connection was closed");
        assert_eq!(server.stats().connections, 1);
        // The same connection still serves calls.
        let r = conn
            .open(base(ProbeClient::ECHO, JSON), echo_json("after"), true)
            .response()
            .await;
        answered(&r, br#"{"text":"after"}"#, "after the reset");
        server.shutdown().await;
    })
    .await
}

/// The server's keepalive PINGs a silent client while a call is in
/// progress and the client's QUIC stack acknowledges them, so neither the
/// idle timeout nor the keepalive ends a call whose request never comes:
/// the read timeout does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_cannot_hold_a_call_past_the_read_timeout() {
    bounded(async {
        let certs = Certs::new();
        let (server, _) = start_probe_server(&certs, |b| {
            b.idle_timeout(Duration::from_secs(3))
                .keepalive(Duration::from_millis(200), Duration::from_secs(5))
                .request_read_timeout(Duration::from_secs(6))
        })
        .await;
        let conn = RawConn::connect(server.local_addr()).await.unwrap();
        let mut stalled = conn.open(base(ProbeClient::ECHO, JSON), vec![0, 0, 0, 0, 20], false);
        stalled.id().await.unwrap();
        eventually(|| server.stats().active_calls == 1).await;
        // Complete silence from the client from here on.
        let r = stalled.response().await;
        refused(&r, "200", Code::DeadlineExceeded, "silent client");
        assert!(
            r.grpc_message()
                .is_some_and(|m| m.contains("did not arrive within 6s")),
            "{r:?}"
        );
        eventually(|| server.stats().active_calls == 0).await;
        // The connection (kept alive by the keepalive) is freed when the
        // client closes it.
        conn.close(raw::H3_NO_ERROR);
        eventually(|| {
            let st = server.stats();
            st.active_calls == 0 && st.connections == 0
        })
        .await;
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_wait_for_credit() {
    bounded(async {
        let s = Suite::start(|b| b.max_concurrent_streams(4)).await;
        let state = s.fx.state.clone();
        let slow = raw::frame(0, br#"{"millis":60000}"#);
        // Four calls that take a minute fill the connection's credit.
        let mut busy = Vec::new();
        for _ in 0..4 {
            let mut st = s
                .raw
                .open(base(ProbeClient::SLOW, JSON), slow.clone(), true);
            st.id().await.unwrap();
            busy.push(st);
        }
        eventually(|| state.active.load(Ordering::SeqCst) == 4).await;
        // Two more cannot be opened: QUIC stream credit is what enforces
        // the limit.
        let mut extra: Vec<_> = (0..2)
            .map(|i| {
                s.raw.open(
                    base(ProbeClient::ECHO, JSON),
                    echo_json(&format!("x{i}")),
                    true,
                )
            })
            .collect();
        assert_eq!(s.raw.streams_left().await, Some(0));
        assert!(extra.iter_mut().all(|st| st.try_id().is_none()));
        assert_eq!(state.active.load(Ordering::SeqCst), 4);

        // Giving up one slow call frees a slot: one extra call is opened
        // and answered.
        busy[0].abort(raw::H3_REQUEST_CANCELLED).await;
        let r = extra[0].response().await;
        answered(&r, br#"{"text":"x0"}"#, "first extra call");
        for st in &mut busy[1..] {
            st.abort(raw::H3_REQUEST_CANCELLED).await;
        }
        let r = extra[1].response().await;
        answered(&r, br#"{"text":"x1"}"#, "second extra call");
        eventually(|| state.active.load(Ordering::SeqCst) == 0).await;
        assert_eq!(state.max_active.load(Ordering::SeqCst), 4);
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_on_one_connection_are_all_answered() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        // 250 calls at once on one connection with the default limit of
        // 100: the rest wait for credit and are answered too.
        let mut streams: Vec<_> = (0..250)
            .map(|i| {
                s.raw.open(
                    base(ProbeClient::ECHO, JSON),
                    echo_json(&format!("m{i}")),
                    true,
                )
            })
            .collect();
        for (i, st) in streams.iter_mut().enumerate() {
            let r = st.response().await;
            answered(
                &r,
                format!(r#"{{"text":"m{i}"}}"#).as_bytes(),
                &format!("call {i}"),
            );
        }
        s.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_abandoned_streams_leaves_nothing_behind() {
    bounded(async {
        let s = Suite::start(|b| b).await;
        // 300 requests (the limit is 100 at a time), each abandoned with
        // RESET_STREAM part-way through its body; then 100 more with the
        // whole body whose client stops reading before the answer.
        for i in 0..300 {
            let mut st = s.raw.open(
                base(ProbeClient::ECHO, JSON),
                vec![0, 0, 0, 0, 50, b'{'],
                false,
            );
            st.id()
                .await
                .unwrap_or_else(|| panic!("stream {i} never opened"));
            st.abort(raw::H3_REQUEST_CANCELLED).await;
        }
        let slow = raw::frame(0, br#"{"millis":60000}"#);
        for _ in 0..100 {
            let mut st = s
                .raw
                .open(base(ProbeClient::SLOW, JSON), slow.clone(), true);
            st.id().await.unwrap();
            st.abort(raw::H3_REQUEST_CANCELLED).await;
        }
        // Every abandoned call is gone (the canary has at most one call
        // in progress), every slow handler was cancelled, and the same
        // connection still works.
        eventually(|| s.fx.server.stats().active_calls <= 1).await;
        eventually(|| s.fx.state.active.load(Ordering::SeqCst) == 0).await;
        let r = s
            .send(base(ProbeClient::ECHO, JSON), echo_json("after"))
            .await;
        answered(&r, br#"{"text":"after"}"#, "after the flood");
        s.finish().await;
    })
    .await
}

/// Datagrams no QUIC server should accept: random bytes of many sizes,
/// QUIC v1 long headers (Initial, 0-RTT, Handshake, Retry) with random
/// connection ids, tokens and payload, an unknown version, short headers.
fn garbage(rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    // Random bytes of many sizes.
    for size in [
        0, 1, 2, 5, 20, 21, 40, 100, 500, 1199, 1200, 1201, 1350, 1400, 1500, 9000, 65000,
    ] {
        for _ in 0..8 {
            let mut d = vec![0; size];
            rng.fill(&mut d);
            datagrams.push(d);
        }
    }
    // Look-alikes: QUIC v1 long headers (Initial, 0-RTT, Handshake,
    // Retry) with random connection ids, tokens and payload, padded
    // to the 1200 bytes an Initial needs; an unknown version (answered
    // with Version Negotiation); short headers.
    for i in 0..400u64 {
        let mut d = vec![0; 1200 + (i as usize % 150)];
        rng.fill(&mut d);
        let kind = (i % 4) as u8;
        d[0] = 0xc0 | (kind << 4) | (d[0] & 0x0f);
        let version: u32 = if i % 10 == 9 { 0x1a2a_3a4a } else { 1 };
        d[1..5].copy_from_slice(&version.to_be_bytes());
        d[5] = 8; // DCID length
        d[14] = 8; // SCID length
        if i % 3 == 0 {
            d[23] = 0; // empty token: a Retry is the answer
        }
        datagrams.push(d);
    }
    for _ in 0..200 {
        let mut d = vec![0; 60];
        rng.fill(&mut d);
        d[0] = 0x40 | (d[0] & 0x3f);
        datagrams.push(d);
    }
    datagrams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_ignored() {
    garbage_datagrams_leave_no_connection(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_create_no_state_with_address_validation() {
    garbage_datagrams_leave_no_connection(true).await
}

/// Sends [`garbage`] to a server. With `validate` (a stateless Retry for
/// every new client) the answers are stateless and no connection is ever
/// created; without it (the default) an Initial look-alike may start a
/// handshake that ends at once, when its payload does not decrypt.
/// Either way real clients still get in and no garbage connection stays.
async fn garbage_datagrams_leave_no_connection(validate: bool) {
    bounded(async {
        let s = Suite::start(|b| b.validate_client_address(validate)).await;
        let addr = s.addr();
        let baseline = s.fx.server.stats().connections;
        let mut rng = SplitMix64::new(0x6A5B_A6E0);
        let sockets = {
            let mut v = Vec::new();
            for _ in 0..8 {
                let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                u.connect(addr).await.unwrap();
                v.push(u);
            }
            v
        };
        let datagrams = garbage(&mut rng);
        for (i, d) in datagrams.iter().enumerate() {
            sockets[i % sockets.len()].send(d).await.unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Real clients still get in. The server has one socket, read in
        // order: once the fresh client's call is answered, every garbage
        // datagram sent before it has been read.
        let fresh = ProbeClient::new(client_for(&s.fx.certs, addr).await);
        assert_eq!(
            fresh
                .echo(Echo {
                    text: "after".into()
                })
                .await
                .unwrap()
                .text,
            "after"
        );
        if validate {
            // Whatever came back was stateless (Retry, Version
            // Negotiation): the fresh connection is the only new one.
            assert_eq!(
                s.fx.server.stats().connections,
                baseline + 1,
                "garbage created connections"
            );
        } else {
            // The handshakes garbage started have ended.
            eventually(|| s.fx.server.stats().connections == baseline + 1).await;
        }
        assert!(matches!(
            s.send(base(ProbeClient::ECHO, JSON), echo_json("raw"))
                .await
                .grpc_status(),
            Some(0)
        ));
        // No stray events on the raw connection either.
        let mut st = s
            .raw
            .open(base(ProbeClient::ECHO, JSON), echo_json("last"), true);
        let mut saw_headers = false;
        while let Some(ev) = st.next().await {
            match ev {
                RawEvent::Headers(_) => saw_headers = true,
                RawEvent::Finished => break,
                RawEvent::Data(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(saw_headers);
        s.finish().await;
    })
    .await
}
