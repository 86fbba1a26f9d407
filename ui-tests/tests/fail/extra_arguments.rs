use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    /// The second argument is not a `Context`.
    async fn two(&self, req: Req, other: Req) -> Result<Resp, Status>;
    /// A third argument, after a valid context.
    async fn three(&self, req: Req, ctx: knafeh::Context, more: u32) -> Result<Resp, Status>;
}

fn main() {}
