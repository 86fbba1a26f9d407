use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

macro_rules! nothing {
    () => {};
}

#[knafeh::service]
pub trait Greeter {
    type Extra;
    const LIMIT: usize;
    nothing!();
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
