//! Generated code names only `::core`, `::std` and the runtime through the
//! `crate` option: it compiles with no prelude, the runtime renamed, and
//! user items shadowing common names.
#![no_implicit_prelude]

// At the crate root, this puts `renamed` in the extern prelude: `::renamed`.
extern crate knafeh as renamed;
extern crate serde;
extern crate std;

use renamed::{Status, Streaming};

// Decoys: generated code must not pick these up.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Arc;
#[allow(dead_code)]
struct Send;
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod knafeh {}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Ping {
    pub n: u32,
}

#[renamed::service(crate = "::renamed", package = "a.b")]
pub trait Pinger {
    async fn ping(&self, req: Ping) -> ::std::result::Result<Ping, Status>;
    async fn pings(&self, req: Ping) -> ::std::result::Result<Streaming<Ping>, Status>;
    async fn ctx(&self, req: Ping, ctx: renamed::Context) -> ::std::result::Result<Ping, Status>;
    async fn upload(&self, req: Streaming<Ping>) -> ::std::result::Result<Ping, Status>;
    async fn chat(&self, req: Streaming<Ping>) -> ::std::result::Result<Streaming<Ping>, Status>;
}

struct Impl;

impl Pinger for Impl {
    async fn ping(&self, req: Ping) -> ::std::result::Result<Ping, Status> {
        ::std::result::Result::Ok(req)
    }
    async fn pings(&self, req: Ping) -> ::std::result::Result<Streaming<Ping>, Status> {
        ::std::result::Result::Ok(Streaming::iter(::std::iter::once(req)))
    }
    async fn ctx(&self, req: Ping, _ctx: renamed::Context) -> ::std::result::Result<Ping, Status> {
        ::std::result::Result::Ok(req)
    }
    async fn upload(&self, _req: Streaming<Ping>) -> ::std::result::Result<Ping, Status> {
        ::std::result::Result::Ok(Ping { n: 0 })
    }
    async fn chat(&self, req: Streaming<Ping>) -> ::std::result::Result<Streaming<Ping>, Status> {
        ::std::result::Result::Ok(req)
    }
}

fn main() {
    let server = PingerServer::new(Impl);
    let _ = ::std::clone::Clone::clone(&server);
    ::std::assert_eq!(PingerClient::PING, "/a.b.Pinger/ping");
    ::std::assert_eq!(renamed::__private::Service::name(&server), "a.b.Pinger");
}
