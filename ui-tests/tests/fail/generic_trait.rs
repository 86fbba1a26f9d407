use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Typed<T> {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service]
pub trait Lifetime<'a> {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service]
pub trait Where
where
    Self: Sized,
{
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
