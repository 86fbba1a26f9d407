use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Generated {
    async fn new(&self, req: Req) -> Result<Resp, Status>;
    async fn client(&self, req: Req) -> Result<Resp, Status>;
    async fn from_arc(&self, req: Req) -> Result<Resp, Status>;
    async fn service_name(&self, req: Req) -> Result<Resp, Status>;
    async fn schema(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service]
pub trait WithVariant {
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
    async fn say_hello_with(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service]
#[allow(non_snake_case)]
pub trait SameConstant {
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
    async fn Say_Hello(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service]
pub trait Duplicate {
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
    async fn say_hello(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
