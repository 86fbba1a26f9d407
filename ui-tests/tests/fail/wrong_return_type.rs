use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[derive(Debug)]
pub struct MyError;

#[knafeh::service]
pub trait Greeter {
    async fn not_result(&self, req: Req) -> Resp;
    async fn wrong_error(&self, req: Req) -> Result<Resp, MyError>;
    async fn option(&self, req: Req) -> Option<Resp>;
}

fn main() {}
