//! `knafeh health` end to end, against the Greeter served with a
//! `HealthReporter`; and what the commands say when the built-in services
//! are turned off.

mod support;

use std::process::Stdio;

use knafeh::health::{HealthReporter, ServingStatus};
use knafeh::Code;
use support::Greeter;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_status_and_exits_by_it() {
    let health = HealthReporter::new();
    let reporter = health.clone();
    let g = Greeter::start_with(move |b| b.health(reporter)).await;
    let run = g.knafeh(&["health", "{addr}", "--ca", "{ca}"]).await;
    assert_eq!(run.ok_lines(), ["SERVING"]);
    let run = g
        .knafeh(&["health", "{addr}", "helloworld.Greeter", "--ca", "{ca}"])
        .await;
    assert_eq!(run.ok_lines(), ["SERVING"]);

    health.set("helloworld.Greeter", ServingStatus::NotServing);
    let run = g
        .knafeh(&["health", "{addr}", "helloworld.Greeter", "--ca", "{ca}"])
        .await;
    assert_eq!(run.stdout, "NOT_SERVING\n");
    run.fails(Code::Unavailable, "helloworld.Greeter is NOT_SERVING");

    let run = g
        .knafeh(&["health", "{addr}", "helloworld.Nobody", "--ca", "{ca}"])
        .await;
    assert_eq!(run.stdout, "");
    run.fails(Code::NotFound, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_change() {
    let health = HealthReporter::new();
    let reporter = health.clone();
    let g = Greeter::start_with(move |b| b.health(reporter)).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_knafeh"))
        .args([
            "health",
            &g.addr,
            "helloworld.Greeter",
            "--watch",
            "--ca",
            &g.ca(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for then in [ServingStatus::NotServing, ServingStatus::Serving] {
        let line = tokio::time::timeout(support::RUN_TIMEOUT, lines.next_line())
            .await
            .expect("a status line in time")
            .unwrap();
        seen.push(line.unwrap_or_default());
        health.set("helloworld.Greeter", then);
    }
    let line = tokio::time::timeout(support::RUN_TIMEOUT, lines.next_line())
        .await
        .expect("a status line in time")
        .unwrap();
    seen.push(line.unwrap_or_default());
    assert_eq!(seen, ["SERVING", "NOT_SERVING", "SERVING"]);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_at_the_timeout_with_the_last_status() {
    let health = HealthReporter::new();
    let reporter = health.clone();
    let g = Greeter::start_with(move |b| b.health(reporter)).await;
    let run = g
        .knafeh(&[
            "health",
            "{addr}",
            "--watch",
            "--timeout",
            "1.5",
            "--ca",
            "{ca}",
        ])
        .await;
    assert_eq!(run.ok_lines(), ["SERVING"]);
    health.set("", ServingStatus::NotServing);
    let run = g
        .knafeh(&[
            "health",
            "{addr}",
            "--watch",
            "--timeout",
            "1.5",
            "--ca",
            "{ca}",
        ])
        .await;
    assert_eq!(run.stdout, "NOT_SERVING\n");
    run.fails(Code::Unavailable, "the server is NOT_SERVING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_builtin_services() {
    let g = Greeter::start_with(|b| b.describe(false)).await;
    let run = g.knafeh(&["list", "{addr}", "--ca", "{ca}"]).await;
    run.fails(Code::Unimplemented, "");
    assert!(run.stderr.contains("--kind"), "{run:?}");
    let run = g
        .knafeh(&[
            "call",
            "{addr}",
            "helloworld.Greeter/say_hello",
            "{}",
            "--ca",
            "{ca}",
        ])
        .await;
    run.fails(Code::Unimplemented, "");
    assert_eq!(g.calls(), 0);
    let run = g.knafeh(&["health", "{addr}", "--ca", "{ca}"]).await;
    run.fails(Code::Unimplemented, "");
    assert!(
        run.stderr.contains("does not serve knafeh.Health"),
        "{run:?}"
    );
}
