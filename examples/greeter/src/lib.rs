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

/// Greets people and counts.
#[knafeh::service(package = "helloworld")]
pub trait Greeter {
    /// Unary: answers `"Hello, {name}!"`.
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    /// Server streaming: `1..=n`, one message each.
    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
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
}
