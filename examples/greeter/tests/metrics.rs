//! Metrics end to end: `greeter-server --metrics-addr` serves the server's
//! metrics at `/metrics` (scraped here over plain HTTP/1.1), and this
//! process's own recorder gets the client's. Its own test binary: it
//! installs a global recorder.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use greeter::{CountRequest, GreeterClient, HelloReply, HelloRequest};
use knafeh::Code;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncBufReadExt, BufReader};

const SERVICE: &str = "helloworld.Greeter";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_metrics() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the metrics test took over 2 minutes");
}

async fn run() {
    let client_metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("install the client's recorder");
    let server = start_server().await;
    let client = knafeh::Client::builder(server.addr.clone())
        .ca_file(&server.ca)
        .connect()
        .await
        .expect("connect");
    let greeter = GreeterClient::new(client.clone());
    // A method the server does not have: `unknown` there, whatever its name.
    let req = HelloRequest { name: "x".into() };
    let options = knafeh::CallOptions::default();
    let nope = client.unary::<_, HelloReply>("/helloworld.Greeter/nope", &req, options);
    assert_eq!(nope.await.unwrap_err().code(), Code::Unimplemented);
    for i in 0..5 {
        let name = format!("Ada {i}");
        greeter
            .say_hello(HelloRequest { name })
            .await
            .expect("say_hello");
    }
    for _ in 0..2 {
        let name = String::new();
        let err = greeter.say_hello(HelloRequest { name }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let mut counts = greeter
        .count_to(CountRequest { n: 3 })
        .await
        .expect("count_to");
    let mut items = 0;
    while let Some(c) = counts.message().await {
        c.expect("count");
        items += 1;
    }
    assert_eq!(items, 3);

    // The server records a call's end just after sending its last frame,
    // which the client may see first: scrape until all 8 calls ended.
    let text = loop {
        let text = scrape(server.metrics_port).await;
        let m = Samples::parse(&text);
        let ended = m.get(
            "knafeh_server_call_duration_seconds_count",
            &[("method", "say_hello")],
        );
        let unknown = m.get(
            "knafeh_server_call_duration_seconds_count",
            &[("method", "unknown")],
        );
        if ended == Some(7.0)
            && unknown == Some(1.0)
            && m.in_flight("knafeh_server_calls_in_flight", "count_to") == Some(0.0)
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let server = Samples::parse(&text);
    check(&server, "knafeh_server");
    assert_eq!(
        server.get("knafeh_server_connections_accepted_total", &[]),
        Some(1.0)
    );
    let unimplemented = [("method", "unknown"), ("code", "UNIMPLEMENTED")];
    assert_eq!(
        server.get("knafeh_server_calls_finished_total", &unimplemented),
        Some(1.0)
    );
    assert_eq!(
        server.get("knafeh_server_calls_started_total", &[("method", "nope")]),
        None
    );
    let client = Samples::parse(&client_metrics.render());
    check(&client, "knafeh_client");
    assert_eq!(
        client.get("knafeh_client_connections_dialled_total", &[]),
        Some(1.0)
    );
    // The client labels its calls with its own (static) paths.
    let nope = [("method", "nope"), ("code", "UNIMPLEMENTED")];
    assert_eq!(
        client.get("knafeh_client_calls_finished_total", &nope),
        Some(1.0)
    );
    println!("{text}");
}

/// The counts the calls above leave, on either side.
fn check(m: &Samples, side: &str) {
    let say_hello = [("service", SERVICE), ("method", "say_hello")];
    let count_to = [("service", SERVICE), ("method", "count_to")];
    let name = |n: &str| format!("{side}_{n}");
    let with_code = |code| {
        [
            ("service", SERVICE),
            ("method", "say_hello"),
            ("code", code),
        ]
    };
    assert_eq!(m.get(&name("calls_started_total"), &say_hello), Some(7.0));
    assert_eq!(
        m.get(&name("calls_finished_total"), &with_code("OK")),
        Some(5.0)
    );
    assert_eq!(
        m.get(
            &name("calls_finished_total"),
            &with_code("INVALID_ARGUMENT")
        ),
        Some(2.0)
    );
    let stream_ok = [("service", SERVICE), ("method", "count_to"), ("code", "OK")];
    assert_eq!(m.get(&name("calls_finished_total"), &stream_ok), Some(1.0));
    assert_eq!(
        m.get(&name("call_duration_seconds_count"), &say_hello),
        Some(7.0)
    );
    assert_eq!(
        m.get(&name("call_duration_seconds_count"), &count_to),
        Some(1.0)
    );
    for method in ["say_hello", "count_to"] {
        assert_eq!(
            m.in_flight(&name("calls_in_flight"), method),
            Some(0.0),
            "{side} {method}"
        );
        let labels = [("service", SERVICE), ("method", method)];
        for bytes in ["message_bytes_received_total", "message_bytes_sent_total"] {
            let n = m.get(&name(bytes), &labels).unwrap_or(0.0);
            assert!(n > 0.0, "{side}_{bytes} of {method}: {n}");
        }
    }
    // 5 requests of "Ada N" and 2 empty ones, each framed (5-byte prefix).
    let sent = if side == "knafeh_server" {
        "message_bytes_received_total"
    } else {
        "message_bytes_sent_total"
    };
    let request_bytes = m.get(&name(sent), &say_hello).unwrap();
    assert!(
        request_bytes >= 7.0 * 5.0 + 5.0 * 5.0,
        "{side}_{sent}: {request_bytes}"
    );
    assert_eq!(m.get(&name("connections"), &[]), Some(1.0));
}

/// A running `greeter-server` (killed when dropped).
struct ServerProcess {
    _child: tokio::process::Child,
    addr: String,
    ca: String,
    metrics_port: u16,
}

async fn start_server() -> ServerProcess {
    let dir = std::env::temp_dir().join(format!("knafeh-metrics-test-{}", std::process::id()));
    // A free port for the exporter (it cannot report one it chose).
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_greeter-server"))
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--dev-cert-dir")
        .arg(&dir)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start greeter-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut ca, mut addr) = (None, None);
    while addr.is_none() {
        let line = lines
            .next_line()
            .await
            .expect("read stdout")
            .expect("server exited");
        if let Some(path) = line.strip_prefix("development CA written to ") {
            ca = Some(path.to_owned());
        }
        if let Some(a) = line.strip_prefix("greeter listening on ") {
            addr = Some(a.to_owned());
        }
    }
    ServerProcess {
        _child: child,
        addr: addr.unwrap(),
        ca: ca.expect("the server printed its CA"),
        metrics_port,
    }
}

/// `GET /metrics` over HTTP/1.1: the body.
async fn scrape(port: u16) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read /metrics");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    })
    .await
    .unwrap()
}

/// The samples of a Prometheus text exposition.
struct Samples(Vec<(String, HashMap<String, String>, f64)>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            samples.push((name.to_owned(), labels, value.parse().expect("a value")));
        }
        Samples(samples)
    }

    /// The value of `name` whose labels include `labels` (summed over
    /// the series that match).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// A method's calls in flight.
    fn in_flight(&self, name: &str, method: &str) -> Option<f64> {
        let labels = [("service", SERVICE), ("method", method)];
        self.get(name, &labels)
    }
}
