use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

// Every independent mistake is reported in one compile.
#[knafeh::service(packag = "x")]
pub trait Greeter<T> {
    type Extra;
    fn not_async(&self, req: Req) -> Result<Resp, Status>;
    async fn by_mut(&mut self, req: Req) -> Result<Resp, Status>;
    async fn no_request(&self) -> Result<Resp, Status>;
    async fn wrong_return(&self, req: Req) -> Resp;
    async fn new(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
