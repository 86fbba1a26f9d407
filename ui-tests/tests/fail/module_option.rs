use knafeh::Status;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {}
#[derive(Serialize, Deserialize)]
pub struct Resp {}

// `module` is for #[pyservice] only.
#[knafeh::service(module = "greeter")]
pub trait NotPython {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh_py::pyservice(module = "my-module")]
pub trait BadModule {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

#[knafeh_py::pyservice(modul = "greeter")]
pub trait Misspelt {
    async fn m(&self, req: Req) -> Result<Resp, Status>;
}

fn main() {}
