//! The schema of the example Greeter, as `GreeterClient::schema()` and the
//! server's `Service::schema()` give it, in the documented JSON form. No
//! network: the schema is traced from the message types.

use greeter::{GreeterClient, GreeterServer, MyGreeter};
use knafeh::__private::Service;
use knafeh::schema::{CallKind, ServiceSchema};

/// The JSON of the example's schema, as PROTOCOL.md documents it.
const EXPECTED: &str = concat!(
    r#"{"name":"helloworld.Greeter","doc":"Greets people and counts.","methods":["#,
    r#"{"name":"say_hello","path":"/helloworld.Greeter/say_hello","kind":"unary","#,
    r#""idempotent":false,"doc":"Unary: answers `\"Hello, {name}!\"`.","#,
    r#""request":{"ref":"HelloRequest"},"response":{"ref":"HelloReply"}},"#,
    r#"{"name":"count_to","path":"/helloworld.Greeter/count_to","kind":"server_streaming","#,
    r#""idempotent":false,"doc":"Server streaming: `1..=n`, one message each.","#,
    r#""request":{"ref":"CountRequest"},"response":{"ref":"Count"}},"#,
    r#"{"name":"add_up","path":"/helloworld.Greeter/add_up","kind":"client_streaming","#,
    r#""idempotent":false,"doc":"Client streaming: sums the `value`s and counts the messages.","#,
    r#""request":{"ref":"Count"},"response":{"ref":"Total"}},"#,
    r#"{"name":"chat","path":"/helloworld.Greeter/chat","kind":"bidi_streaming","#,
    r#""idempotent":false,"doc":"Bidirectional: one `\"Hello, {name}!\"` per request, sent as soon as\nthat request arrives. An empty `name` ends the call with\n`INVALID_ARGUMENT` after the replies before it.","#,
    r#""request":{"ref":"HelloRequest"},"response":{"ref":"HelloReply"}}],"#,
    r#""types":{"Count":{"struct":[{"name":"value","type":"u32"}]},"#,
    r#""CountRequest":{"struct":[{"name":"n","type":"u32"}]},"#,
    r#""HelloReply":{"struct":[{"name":"message","type":"str"}]},"#,
    r#""HelloRequest":{"struct":[{"name":"name","type":"str"}]},"#,
    r#""Total":{"struct":[{"name":"sum","type":"u64"},{"name":"count","type":"u32"}]}}}"#
);

#[test]
fn the_greeter_client_describes_the_service_as_documented() {
    let schema = GreeterClient::schema().expect("the Greeter's types are describable");
    assert_eq!(schema.to_json(), EXPECTED);
    assert_eq!(ServiceSchema::from_json(EXPECTED), Ok(schema.clone()));
    let kinds: Vec<CallKind> = schema.methods.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            CallKind::Unary,
            CallKind::ServerStreaming,
            CallKind::ClientStreaming,
            CallKind::BidiStreaming
        ]
    );
    // The paths are the ones the client calls.
    assert_eq!(schema.methods[0].path, GreeterClient::SAY_HELLO);
    assert_eq!(schema.methods[3].path, GreeterClient::CHAT);
}

#[test]
fn the_server_gives_the_same_schema() {
    let server = GreeterServer::new(MyGreeter);
    assert_eq!(server.schema(), GreeterClient::schema());
    // Against the documented text too, not only against the client.
    assert_eq!(server.schema().unwrap().to_json(), EXPECTED);
    assert_eq!(server.schema().unwrap().name, server.name());
}
