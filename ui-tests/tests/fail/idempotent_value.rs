use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    #[knafeh(idempotent = true)]
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
