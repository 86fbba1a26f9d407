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
    /// Client streaming.
    async fn add_up(&self, req: Streaming<Count>) -> Result<Count, Status>;
    /// Bidirectional, with the call context.
    async fn chat(
        &self,
        req: knafeh::Streaming<HelloRequest>,
        ctx: Context,
    ) -> Result<Streaming<HelloReply>, Status>;
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

    async fn add_up(&self, mut req: Streaming<Count>) -> Result<Count, Status> {
        let mut value = 0;
        while let Some(count) = req.message().await {
            value += count?.value;
        }
        Ok(Count { value })
    }

    async fn chat(
        &self,
        mut req: Streaming<HelloRequest>,
        _ctx: Context,
    ) -> Result<Streaming<HelloReply>, Status> {
        let (tx, replies) = Streaming::channel(4);
        tokio::spawn(async move {
            while let Some(Ok(r)) = req.message().await {
                let message = format!("Hello, {}!", r.name);
                if tx.send(HelloReply { message }).await.is_err() {
                    break;
                }
            }
        });
        Ok(replies)
    }
}

fn is_service<S: knafeh::__private::Service + Clone>(s: S) -> S {
    s
}

#[allow(dead_code)]
async fn call(client: GreeterClient) -> Result<(), Status> {
    let reply: HelloReply = client
        .say_hello(HelloRequest { name: "Ada".into() })
        .await?;
    let _: String = reply.message;
    let with: knafeh::Response<HelloReply> = client
        .say_hello_with(
            HelloRequest { name: "Ada".into() },
            knafeh::CallOptions::new(),
        )
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
    // Request streams: a `Streaming`, or any `Stream` of requests.
    let counts = Streaming::iter([Count { value: 1 }]);
    let _: Count = client.add_up(counts).await?;
    let (tx, requests) = Streaming::channel(8);
    let mut replies: Streaming<HelloReply> = client.chat(requests).await?;
    tx.send(HelloRequest { name: "Ada".into() }).await.ok();
    let _ = replies.message().await;
    let plain = Streaming::iter([HelloRequest { name: "Bo".into() }]);
    let _: knafeh::Response<Count> = client
        .add_up_with(Streaming::empty(), knafeh::CallOptions::new())
        .await?;
    let _: Streaming<HelloReply> = client.chat_with(plain, knafeh::CallOptions::new()).await?;
    let _: &knafeh::Client = client.client();
    let _ = GreeterClient::new(client.client().clone()).clone();
    Ok(())
}

fn main() {
    let server = is_service(GreeterServer::new(MyGreeter));
    let shared = GreeterServer::from_arc(std::sync::Arc::new(MyGreeter));
    let _ = shared.clone();
    assert_eq!(Service::name(&server), "helloworld.Greeter");
    use knafeh::__private::{RequestShape, Service};
    assert_eq!(server.request_shape("count_to"), Some(RequestShape::One));
    assert_eq!(server.request_shape("add_up"), Some(RequestShape::Stream));
    assert_eq!(server.request_shape("chat"), Some(RequestShape::Stream));
    assert_eq!(server.request_shape("nope"), None);
    assert_eq!(GreeterClient::SERVICE_NAME, "helloworld.Greeter");
    assert_eq!(GreeterClient::SAY_HELLO, "/helloworld.Greeter/say_hello");
    assert_eq!(GreeterClient::COUNT_TO, "/helloworld.Greeter/count_to");
    assert_eq!(GreeterClient::WHOAMI, "/helloworld.Greeter/whoami");
    // The trait is object-safe enough to be shared across threads.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<GreeterServer<MyGreeter>>();
    send_sync::<GreeterClient>();
}
