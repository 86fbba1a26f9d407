//! `#[knafeh(idempotent)]` on a method, and the schema the generated
//! client gives of the service.

use knafeh::schema::{CallKind, Container, Field, Format};
use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct HelloRequest {
    pub name: String,
}
#[derive(Serialize, Deserialize)]
pub struct HelloReply {
    pub message: String,
}

/// Greets people.
#[knafeh::service(package = "helloworld")]
pub trait Greeter {
    /// Answers with a greeting.
    #[knafeh(idempotent)]
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    async fn chat(&self, req: Streaming<HelloRequest>) -> Result<Streaming<HelloReply>, Status>;
}

fn main() {
    let schema = GreeterClient::schema().unwrap();
    assert_eq!(schema.name, "helloworld.Greeter");
    assert_eq!(schema.doc, "Greets people.");
    let [hello, chat] = &schema.methods[..] else {
        panic!("{:?}", schema.methods)
    };
    assert_eq!(hello.name, "say_hello");
    assert_eq!(hello.path, "/helloworld.Greeter/say_hello");
    assert_eq!(hello.kind, CallKind::Unary);
    assert!(hello.idempotent);
    assert_eq!(hello.doc, "Answers with a greeting.");
    assert_eq!(hello.request, Format::Ref("HelloRequest".into()));
    assert_eq!(hello.response, Format::Ref("HelloReply".into()));
    assert_eq!(chat.kind, CallKind::BidiStreaming);
    assert!(!chat.idempotent);
    assert_eq!(chat.doc, "");
    assert_eq!(
        schema.types["HelloReply"],
        Container::Struct(vec![Field {
            name: "message".into(),
            format: Format::Str,
        }])
    );
}
