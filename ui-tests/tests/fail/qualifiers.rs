use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Greeter {
    async unsafe fn a(&self, req: Req) -> Result<Resp, Status>;
    async extern "C" fn b(&self, req: Req) -> Result<Resp, Status>;
    const fn c(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
