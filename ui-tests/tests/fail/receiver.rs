use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    async fn by_mut(&mut self, req: Req) -> Result<Resp, Status>;
    async fn by_value(self, req: Req) -> Result<Resp, Status>;
    async fn by_mut_value(mut self, req: Req) -> Result<Resp, Status>;
    async fn typed(self: Box<Self>, req: Req) -> Result<Resp, Status>;
    async fn missing(req: Req) -> Result<Resp, Status>;
}

fn main() {}
