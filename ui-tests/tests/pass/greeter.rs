//! The brief's Greeter: unary, server streaming and a context method, served
//! by an implementation written with `async fn`, and called through the
//! generated client.

use knafeh::{Context, Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct HelloRequest {
    pub name: String,
}
#[derive(Serialize, Deserialize)]
pub struct HelloReply {
    pub message: String,
}
#[derive(Serialize, Deserialize)]
pub struct CountRequest {
    pub n: u32,
}
#[derive(Serialize, Deserialize)]
pub struct Count {
    pub value: u32,
}
#[derive(Serialize, Deserialize)]
pub struct Empty {}
#[derive(Serialize, Deserialize)]
pub struct Who {
    pub peer: String,
}

/// Greets.
#[knafeh::service(package = "helloworld")]
pub trait Greeter {
    /// Unary.
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    /// Server streaming.
    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
    /// With the call context.
    async fn whoami(&self, _: Empty, ctx: knafeh::Context) -> Result<Who, Status>;
}

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status> {
        Ok(HelloReply {
            message: format!("Hello, {}!", req.name),
        })
    }

    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status> {
        Ok(Streaming::iter((1..=req.n).map(|value| Count { value })))
    }

    async fn whoami(&self, _: Empty, ctx: Context) -> Result<Who, Status> {
        Ok(Who {
            peer: ctx.peer_addr().to_string(),
        })
    }
}

fn is_service<S: knafeh::__private::Service + Clone>(s: S) -> S {
    s
}

#[allow(dead_code)]
async fn call(client: GreeterClient) -> Result<(), Status> {
    let reply: HelloReply = client
        .say_hello(HelloRequest {
            name: "Ada".into(),
        })
        .await?;
    let _: String = reply.message;
    let with: knafeh::Response<HelloReply> = client
        .say_hello_with(HelloRequest { name: "Ada".into() }, knafeh::CallOptions::new())
        .await?;
    let _ = with.metadata();
    let mut counts: Streaming<Count> = client.count_to(CountRequest { n: 3 }).await?;
    while let Some(count) = counts.message().await {
        let _: u32 = count?.value;
    }
    let _: Streaming<Count> = client
        .count_to_with(CountRequest { n: 3 }, knafeh::CallOptions::new())
        .await?;
    let _: Who = client.whoami(Empty {}).await?;
    let _: &knafeh::Client = client.client();
    let _ = GreeterClient::new(client.client().clone()).clone();
    Ok(())
}

fn main() {
    let server = is_service(GreeterServer::new(MyGreeter));
    let shared = GreeterServer::from_arc(std::sync::Arc::new(MyGreeter));
    let _ = shared.clone();
    assert_eq!(knafeh::__private::Service::name(&server), "helloworld.Greeter");
    assert!(knafeh::__private::Service::has_method(&server, "count_to"));
    assert!(!knafeh::__private::Service::has_method(&server, "nope"));
    assert_eq!(GreeterClient::SERVICE_NAME, "helloworld.Greeter");
    assert_eq!(GreeterClient::SAY_HELLO, "/helloworld.Greeter/say_hello");
    assert_eq!(GreeterClient::COUNT_TO, "/helloworld.Greeter/count_to");
    assert_eq!(GreeterClient::WHOAMI, "/helloworld.Greeter/whoami");
    // The trait is object-safe enough to be shared across threads.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<GreeterServer<MyGreeter>>();
    send_sync::<GreeterClient>();
}
