use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    async fn typed<T>(&self, req: Req) -> Result<Resp, Status>;
    async fn lifetime<'a>(&'a self, req: Req) -> Result<Resp, Status>;
    async fn bounded(&self, req: Req) -> Result<Resp, Status>
    where
        Req: Sized;
}

fn main() {}
