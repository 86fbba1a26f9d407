use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[derive(Serialize, Deserialize)]
pub struct Pair(u32, u32);

#[knafeh::service]
pub trait Greeter {
    async fn tuple(&self, Pair(a, b): Pair) -> Result<Resp, Status>;
    async fn mutable(&self, mut req: Req) -> Result<Resp, Status>;
}

fn main() {}
