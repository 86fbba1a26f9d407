use knafeh::{Status, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

#[knafeh::service]
pub trait Uploads {
    async fn no_item(&self, req: Streaming) -> Result<Resp, Status>;
    async fn two_items(&self, req: Streaming<Req, Req>) -> Result<Resp, Status>;
    async fn impl_stream(&self, req: impl Iterator<Item = Req>) -> Result<Resp, Status>;
    async fn in_option(&self, req: Option<Streaming<Req>>) -> Result<Resp, Status>;
    async fn nested(&self, req: Streaming<Streaming<Req>>) -> Result<Resp, Status>;
    async fn result_item(&self, req: Streaming<Result<Req, Status>>) -> Result<Resp, Status>;
    async fn in_vec(&self, req: Req) -> Result<Vec<Streaming<Resp>>, Status>;
    async fn result_reply(&self, req: Streaming<Req>) -> Result<Streaming<Result<Resp, Status>>, Status>;
    async fn as_context(&self, req: Req, ctx: Streaming<Req>) -> Result<Resp, Status>;
}

fn main() {}
