use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}

pub struct NotSerde {}

#[knafeh::service]
pub trait Greeter {
    async fn say_hello(&self, req: Req) -> Result<NotSerde, Status>;
    async fn count_to(&self, req: Req) -> Result<Streaming<NotSerde>, Status>;
}

fn main() {}
