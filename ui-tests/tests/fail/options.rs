use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service(pakage = "helloworld")]
pub trait Unknown {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service(package = "a", package = "b")]
pub trait Duplicate {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service(package = helloworld, crate = ::knafeh)]
pub trait NotLiterals {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service(package = "hello-world")]
pub trait BadPackage {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service(package = "")]
pub trait EmptyPackage {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh::service(crate = "not a path")]
pub trait BadCrate {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
