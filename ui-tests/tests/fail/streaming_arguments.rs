use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    async fn none(&self, req: Req) -> Result<Streaming, Status>;
    async fn two(&self, req: Req) -> Result<Streaming<Resp, Resp>, Status>;
}

fn main() {}
