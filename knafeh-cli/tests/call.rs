//! `knafeh call` end to end: the four call kinds, request sources,
//! metadata, TLS options, exit statuses and stderr. The `--kind` runs
//! need no describe service; the others take the kind and the request
//! type from the server's `knafeh.Describe`.

mod support;

use greeter::auth::BearerAuth;
use knafeh::Code;
use support::{path_arg, Greeter, TempDir};

const SAY_HELLO: &str = "helloworld.Greeter/say_hello";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_with_explicit_kind() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            SAY_HELLO,
            r#"{"name":"Ada"}"#,
            "--ca",
            "{ca}",
            "--kind",
            "unary",
        ])
        .await;
    assert_eq!(run.ok_lines(), [r#"{"message":"Hello, Ada!"}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_prints_one_line_per_message() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Greeter/count_to",
            "-d",
            r#"{"n":3}"#,
            "--ca={ca}",
            "--kind=server-streaming",
        ])
        .await;
    assert_eq!(
        run.ok_lines(),
        [r#"{"value":1}"#, r#"{"value":2}"#, r#"{"value":3}"#]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_from_stdin() {
    let g = Greeter::start().await;
    let stdin = "{\"value\":1}\n{\"value\":2}\n\n{\"value\":39}\n";
    let args = [
        "call",
        "{addr}",
        "helloworld.Greeter/add_up",
        "--ca",
        "{ca}",
    ];
    let with_kind: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--kind", "client-streaming"])
        .collect();
    let run = g.knafeh_stdin(&with_kind, Some(stdin)).await;
    assert_eq!(run.ok_lines(), [r#"{"sum":42,"count":3}"#]);
    // The same, the kind from the describe service.
    let run = g.knafeh_stdin(&args, Some(stdin)).await;
    assert_eq!(run.ok_lines(), [r#"{"sum":42,"count":3}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_from_a_file_and_arguments() {
    let g = Greeter::start().await;
    let dir = TempDir::new();
    let file = dir.0.join("counts.jsonl");
    std::fs::write(&file, "{\"value\":10}\n{\"value\":20}\n").unwrap();
    let data = format!("@{}", path_arg(&file));
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Greeter/add_up",
            "--ca",
            "{ca}",
            "-d",
            &data,
            "-d",
            r#"{"value":1} {"value":2}"#,
        ])
        .await;
    assert_eq!(run.ok_lines(), [r#"{"sum":33,"count":4}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_from_stdin() {
    let g = Greeter::start().await;
    let stdin = "{\"name\":\"Ada\"}\n{\"name\":\"Grace\"}\n";
    let run = g
        .knafeh_stdin(
            &["call", "{addr}", "helloworld.Greeter/chat", "--ca", "{ca}"],
            Some(stdin),
        )
        .await;
    assert_eq!(
        run.ok_lines(),
        [
            r#"{"message":"Hello, Ada!"}"#,
            r#"{"message":"Hello, Grace!"}"#
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_error_after_replies_keeps_the_replies() {
    let g = Greeter::start().await;
    let stdin = "{\"name\":\"Ada\"}\n{\"name\":\"\"}\n{\"name\":\"Never\"}\n";
    let run = g
        .knafeh_stdin(
            &[
                "call",
                "{addr}",
                "helloworld.Greeter/chat",
                "--ca",
                "{ca}",
                "--kind",
                "bidi",
            ],
            Some(stdin),
        )
        .await;
    assert_eq!(run.stdout, "{\"message\":\"Hello, Ada!\"}\n", "{run:?}");
    run.fails(Code::InvalidArgument, "name must not be empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_with_the_kind_from_describe() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            SAY_HELLO,
            r#"{"name":"Ada"}"#,
            "--ca",
            "{ca}",
        ])
        .await;
    assert_eq!(run.ok_lines(), [r#"{"message":"Hello, Ada!"}"#]);
    let run = g
        .knafeh_stdin(
            &["call", "{addr}", SAY_HELLO, "--ca", "{ca}"],
            Some("{\"name\": \"Bo\"}"),
        )
        .await;
    assert_eq!(run.ok_lines(), [r#"{"message":"Hello, Bo!"}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_from_the_server() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            SAY_HELLO,
            r#"{"name":""}"#,
            "--ca",
            "{ca}",
        ])
        .await;
    assert_eq!(run.stdout, "");
    run.fails(Code::InvalidArgument, "name must not be empty");
    assert_eq!(g.calls(), 1, "the server saw the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_mismatch_is_refused_before_sending() {
    let g = Greeter::start().await;
    let cases = [
        (SAY_HELLO, r#"{"name":1}"#, "name: expected str, got number"),
        (
            SAY_HELLO,
            r#"{"nmae":"Ada"}"#,
            "name: missing field of HelloRequest (expected str)",
        ),
        (
            SAY_HELLO,
            r#"{"name":"Ada","x":1}"#,
            "x: unknown field of HelloRequest (it has name)",
        ),
        (
            "helloworld.Greeter/count_to",
            r#"{"n":-1}"#,
            "n: expected u32, got -1 (out of range)",
        ),
        (
            "helloworld.Greeter/count_to",
            r#"{"n":4294967296}"#,
            "n: expected u32, got 4294967296",
        ),
        (
            "helloworld.Greeter/add_up",
            "{\"value\":1}\n{\"value\":1.5}",
            "message 2: value: expected u32, got 1.5",
        ),
        (
            SAY_HELLO,
            r#"{"name":"a"} {"name":"b"}"#,
            "say_hello takes one request message, 2 given",
        ),
        (SAY_HELLO, r#"{"name":"#, "the request argument: not JSON"),
    ];
    for (method, json, want) in cases {
        let run = g
            .knafeh(&["call", "{addr}", method, "-d", json, "--ca", "{ca}"])
            .await;
        assert_eq!(run.stdout, "", "{method} {json}");
        run.fails(Code::InvalidArgument, want);
    }
    assert_eq!(g.calls(), 0, "nothing reached the Greeter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_mismatch_on_stdin_cancels_the_call() {
    let g = Greeter::start().await;
    let stdin = "{\"name\":\"Ada\"}\n{\"name\":7}\n{\"name\":\"Never\"}\n";
    let run = g
        .knafeh_stdin(
            &["call", "{addr}", "helloworld.Greeter/chat", "--ca", "{ca}"],
            Some(stdin),
        )
        .await;
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("Never")).count(),
        0,
        "{run:?}"
    );
    run.fails(
        Code::InvalidArgument,
        "message 2: name: expected str, got number",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Greeter/say_bye",
            "{}",
            "--ca",
            "{ca}",
        ])
        .await;
    run.fails(
        Code::NotFound,
        "helloworld.Greeter has no method `say_bye` (it has say_hello, count_to, add_up, chat)",
    );
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Nobody/x",
            "{}",
            "--ca",
            "{ca}",
        ])
        .await;
    assert_eq!(run.status, Code::NotFound.as_i32(), "{run:?}");
    assert!(run.stderr.contains("helloworld.Nobody"), "{run:?}");
    // Without the describe service's help the server answers.
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Greeter/say_bye",
            "{}",
            "--ca",
            "{ca}",
            "--kind",
            "unary",
        ])
        .await;
    run.fails(Code::Unimplemented, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reaches_the_server() {
    let auth = BearerAuth::new().allow_all("ops", "s3cret-ops").allow(
        "reader",
        "s3cret-reader",
        &["count_to"],
    );
    let g = Greeter::start_with(|b| b.interceptor(auth)).await;
    let base = [
        "call",
        "{addr}",
        SAY_HELLO,
        r#"{"name":"Ada"}"#,
        "--ca",
        "{ca}",
        "--kind",
        "unary",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };

    let run = g.knafeh(&with(&[])).await;
    run.fails(Code::Unauthenticated, "missing `authorization` metadata");
    let run = g
        .knafeh(&with(&["-H", "authorization: Bearer s3cret-reader"]))
        .await;
    run.fails(
        Code::PermissionDenied,
        "reader may not call /helloworld.Greeter/say_hello",
    );
    let run = g
        .knafeh(&with(&[
            "-H",
            "authorization: Bearer s3cret-ops",
            "-H",
            "x-trace:1",
            "--header=x-trace:2",
            "-Hx-blob-bin:AAEC/w==",
        ]))
        .await;
    assert_eq!(run.ok_lines(), [r#"{"message":"Hello, Ada!"}"#]);
    let seen = g.seen_metadata.lock().unwrap().clone();
    assert!(
        seen.contains(&r#"x-trace=Ascii("1")"#.to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&r#"x-trace=Ascii("2")"#.to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"x-blob-bin=Binary([0, 1, 2, 255])".to_owned()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options() {
    let g = Greeter::start().await;
    let call = [
        "call",
        "{addr}",
        SAY_HELLO,
        r#"{"name":"Ada"}"#,
        "--kind",
        "unary",
        "--timeout",
        "20",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        call.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let hello = [r#"{"message":"Hello, Ada!"}"#];

    // The development CA is in no trust store.
    let run = g.knafeh(&with(&[])).await;
    run.fails(Code::Unavailable, "");
    let run = g.knafeh(&with(&["--insecure"])).await;
    assert_eq!(run.ok_lines(), hello);
    let run = g
        .knafeh(&with(&["--ca", "{ca}", "--server-name", "localhost"]))
        .await;
    assert_eq!(run.ok_lines(), hello);
    let run = g
        .knafeh(&with(&["--ca", "{ca}", "--server-name", "example.com"]))
        .await;
    run.fails(Code::Unavailable, "");
    // Another CA.
    let other = TempDir::new();
    let paths = knafeh::DevCert::generate(&["localhost"])
        .unwrap()
        .write_to(&other.0)
        .unwrap();
    let run = g.knafeh(&with(&["--ca", &path_arg(&paths.ca)])).await;
    run.fails(Code::Unavailable, "");
    let run = g.knafeh(&with(&["--ca", "/nonexistent/ca.pem"])).await;
    assert_ne!(run.status, 0, "{run:?}");
    assert!(run.stderr.contains("/nonexistent/ca.pem"), "{run:?}");
    assert_eq!(g.calls(), 2, "only the verified calls reached the Greeter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let dir = TempDir::new();
    let g0 = Greeter::start().await;
    // A server that wants client certificates from the same CA.
    let ca = g0.paths.ca.clone();
    let g = Greeter::start_with(|b| b.tls(&g0.paths.cert, &g0.paths.key).client_ca(&ca)).await;
    let client = g0.dev.issue_client("knafeh-cli-test").unwrap();
    let (cert, key) = (dir.0.join("client.pem"), dir.0.join("client.key"));
    std::fs::write(&cert, client.cert_pem).unwrap();
    std::fs::write(&key, client.key_pem).unwrap();
    let ca = path_arg(&ca);
    let base = [
        "call",
        "{addr}",
        SAY_HELLO,
        r#"{"name":"Ada"}"#,
        "--kind",
        "unary",
        "--timeout",
        "20",
        "--ca",
        &ca,
    ];

    let run = g.knafeh(&base).await;
    assert_ne!(run.status, 0, "{run:?}");
    let mut with_identity = base.to_vec();
    let (cert, key) = (path_arg(&cert), path_arg(&key));
    with_identity.extend(["--cert", &cert, "--key", &key]);
    let run = g.knafeh(&with_identity).await;
    assert_eq!(run.ok_lines(), [r#"{"message":"Hello, Ada!"}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening() {
    // A port that was just free: nothing answers there, and the dial
    // fails as soon as the ICMP error arrives.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    drop(socket);
    let args: Vec<String> = [
        "call",
        &addr,
        SAY_HELLO,
        "{}",
        "--kind",
        "unary",
        "--insecure",
    ]
    .map(str::to_owned)
    .to_vec();
    let run = support::run(&args, None).await;
    run.fails(Code::Unavailable, "");
    assert!(run.stderr.contains("connection refused"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_while_the_call_runs() {
    let g = Greeter::start().await;
    // A bidirectional call whose stdin never ends: only --timeout ends it.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_knafeh"));
    cmd.args([
        "call",
        &g.addr,
        "helloworld.Greeter/chat",
        "--ca",
        &g.ca(),
        "--timeout",
        "1",
        "--kind",
        "bidi",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let output = tokio::time::timeout(support::RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("--timeout ended it")
        .unwrap();
    drop(stdin);
    let run = support::Run {
        status: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    run.fails(Code::DeadlineExceeded, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    for args in [
        vec!["call"],
        vec!["bogus", "x"],
        vec!["call", "a:1", "no-slash"],
        vec!["list", "a:1", "--nope"],
    ] {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let run = support::run(&args, None).await;
        assert_eq!(run.status, 2, "{run:?}");
        assert!(run.stderr.starts_with("usage error: "), "{run:?}");
        assert!(run.stderr.contains("usage: knafeh list"), "{run:?}");
        assert_eq!(run.stdout, "");
    }
    let run = support::run(&["--help".to_owned()], None).await;
    assert_eq!(run.status, 0);
    assert!(
        run.stdout.contains("although 2 is also UNKNOWN's code"),
        "{run:?}"
    );
}
