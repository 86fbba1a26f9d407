//! `knafeh list` and `knafeh describe` end to end, against the Greeter's
//! built-in `knafeh.Describe` service.

mod support;

use knafeh::Code;
use serde_json::Value;
use support::Greeter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_one_service_a_line() {
    let g = Greeter::start().await;
    let run = g.knafeh(&["list", "{addr}", "--ca", "{ca}"]).await;
    let lines = run.ok_lines();
    assert!(lines.contains(&"helloworld.Greeter"), "{run:?}");
    assert!(lines.contains(&"knafeh.Describe"), "{run:?}");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_a_service() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&["describe", "{addr}", "helloworld.Greeter", "--ca", "{ca}"])
        .await;
    let text = run.ok_lines().join("\n");
    for want in [
        "service helloworld.Greeter {",
        "    /// Unary: answers `\"Hello, {name}!\"`.",
        "    rpc say_hello(HelloRequest) -> HelloReply;  // unary",
        "    rpc count_to(CountRequest) -> stream Count;  // server streaming",
        "    rpc add_up(stream Count) -> Total;  // client streaming",
        "    rpc chat(stream HelloRequest) -> stream HelloReply;  // bidirectional streaming",
        "struct HelloRequest {\n    name: str,\n}",
        "struct Total {\n    sum: u64,\n    count: u32,\n}",
    ] {
        assert!(text.contains(want), "{want:?} is not in:\n{text}");
    }
    // Types come in the order the methods reach them.
    let at = |s: &str| text.find(s).unwrap();
    assert!(at("struct HelloRequest") < at("struct HelloReply"));
    assert!(at("struct HelloReply") < at("struct CountRequest"));
    assert!(at("struct Count {") < at("struct Total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_one_method() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "describe",
            "{addr}",
            "helloworld.Greeter/add_up",
            "--ca",
            "{ca}",
        ])
        .await;
    let text = run.ok_lines().join("\n");
    assert!(
        text.contains("rpc add_up(stream Count) -> Total;"),
        "{text}"
    );
    assert!(
        text.contains("struct Count {") && text.contains("struct Total {"),
        "{text}"
    );
    assert!(
        !text.contains("say_hello") && !text.contains("HelloRequest"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_json() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&[
            "describe",
            "{addr}",
            "helloworld.Greeter",
            "--json",
            "--ca",
            "{ca}",
        ])
        .await;
    let lines = run.ok_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    let schema: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(schema["name"], "helloworld.Greeter");
    let kinds: Vec<&str> = schema["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "unary",
            "server_streaming",
            "client_streaming",
            "bidi_streaming"
        ]
    );
    assert_eq!(
        schema["types"]["HelloRequest"],
        serde_json::json!({"struct": [{"name": "name", "type": "str"}]})
    );
    // One method: the same form, narrowed.
    let run = g
        .knafeh(&[
            "describe",
            "{addr}",
            "helloworld.Greeter/count_to",
            "--json",
            "--ca",
            "{ca}",
        ])
        .await;
    let schema: Value = serde_json::from_str(run.ok_lines()[0]).unwrap();
    assert_eq!(schema["methods"].as_array().unwrap().len(), 1);
    assert_eq!(schema["methods"][0]["path"], "/helloworld.Greeter/count_to");
    let mut types: Vec<&String> = schema["types"].as_object().unwrap().keys().collect();
    types.sort();
    assert_eq!(types, ["Count", "CountRequest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_every_service() {
    let g = Greeter::start().await;
    let run = g.knafeh(&["describe", "{addr}", "--ca", "{ca}"]).await;
    let text = run.ok_lines().join("\n");
    assert!(text.contains("service helloworld.Greeter {"), "{text}");
    assert!(text.contains("service knafeh.Describe {"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_not_found() {
    let g = Greeter::start().await;
    let run = g
        .knafeh(&["describe", "{addr}", "helloworld.Nobody", "--ca", "{ca}"])
        .await;
    assert_eq!(run.stdout, "");
    run.fails(Code::NotFound, "");
    assert!(run.stderr.contains("helloworld.Nobody"), "{run:?}");
    let run = g
        .knafeh(&[
            "describe",
            "{addr}",
            "helloworld.Greeter/nope",
            "--ca",
            "{ca}",
        ])
        .await;
    run.fails(Code::NotFound, "helloworld.Greeter has no method `nope`");
}
