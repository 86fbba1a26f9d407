use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

// `connect` and `implementation` are members of the generated Python
// classes; `_knafeh*` names are their internals.
#[knafeh_py::pyservice]
pub trait Greeter {
    async fn connect(&self, req: Req) -> Result<Resp, Status>;
    async fn implementation(&self, req: Req) -> Result<Resp, Status>;
    async fn _knafeh_decode(&self, req: Req) -> Result<Resp, Status>;
    async fn fine(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
