use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Resp {}

pub struct NotSerde {}

#[knafeh::service]
pub trait Uploads {
    async fn upload(&self, req: Streaming<NotSerde>) -> Result<Resp, Status>;
    async fn chat(&self, req: Streaming<NotSerde>) -> Result<Streaming<Resp>, Status>;
}

fn main() {}
