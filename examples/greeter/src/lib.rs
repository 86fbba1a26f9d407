//! The Greeter service of knafeh's design brief: its types, its trait and
//! an implementation, shared by the example server and client.

use knafeh::{Status, Streaming};

pub mod auth;
use serde::{Deserialize, Serialize};

/// Request of [`Greeter::say_hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who to greet.
    pub name: String,
}

/// Reply of [`Greeter::say_hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    /// `"Hello, {name}!"`.
    pub message: String,
}

/// Request of [`Greeter::count_to`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountRequest {
    /// Count up to this number.
    pub n: u32,
}

/// One item of [`Greeter::count_to`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// The current number.
    pub value: u32,
}

/// Reply of [`Greeter::add_up`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Total {
    /// The sum of the `value`s received.
    pub sum: u64,
    /// How many messages were received.
    pub count: u32,
}

/// Greets people and counts.
#[knafeh::service(package = "helloworld")]
pub trait Greeter {
    /// Unary: answers `"Hello, {name}!"`.
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    /// Server streaming: `1..=n`, one message each.
    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
    /// Client streaming: sums the `value`s and counts the messages.
    async fn add_up(&self, req: Streaming<Count>) -> Result<Total, Status>;
    /// Bidirectional: one `"Hello, {name}!"` per request, sent as soon as
    /// that request arrives. An empty `name` ends the call with
    /// `INVALID_ARGUMENT` after the replies before it.
    async fn chat(&self, req: Streaming<HelloRequest>) -> Result<Streaming<HelloReply>, Status>;
}

/// The example implementation.
#[derive(Clone, Debug, Default)]
pub struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status> {
        if req.name.is_empty() {
            return Err(Status::invalid_argument("name must not be empty"));
        }
        Ok(HelloReply {
            message: format!("Hello, {}!", req.name),
        })
    }

    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status> {
        Ok(Streaming::iter((1..=req.n).map(|value| Count { value })))
    }

    async fn add_up(&self, mut req: Streaming<Count>) -> Result<Total, Status> {
        let mut total = Total { sum: 0, count: 0 };
        while let Some(count) = req.message().await {
            total.sum += u64::from(count?.value);
            total.count += 1;
        }
        Ok(total)
    }

    async fn chat(
        &self,
        mut req: Streaming<HelloRequest>,
    ) -> Result<Streaming<HelloReply>, Status> {
        let (tx, replies) = Streaming::channel(16);
        tokio::spawn(async move {
            while let Some(next) = req.message().await {
                let reply = match next {
                    Ok(r) if r.name.is_empty() => {
                        Err(Status::invalid_argument("name must not be empty"))
                    }
                    Ok(r) => Ok(HelloReply {
                        message: format!("Hello, {}!", r.name),
                    }),
                    Err(status) => Err(status),
                };
                match reply {
                    Ok(reply) => {
                        if tx.send(reply).await.is_err() {
                            return; // the call ended
                        }
                    }
                    // The error ends the stream after the replies before it.
                    Err(status) => {
                        let _ = tx.send_error(status).await;
                        return;
                    }
                }
            }
        });
        Ok(replies)
    }
}
