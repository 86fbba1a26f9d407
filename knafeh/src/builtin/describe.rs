//! The built-in `knafeh.Describe` service: the names of the services a
//! server serves, and each one's methods and message schemas.
//!
//! On by default; [`ServerBuilder::describe(false)`](crate::ServerBuilder::describe)
//! turns it off (its path then answers `UNIMPLEMENTED` like any unknown
//! service).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Services;
use crate::service::Service;
use crate::Status;

pub use wire::DescribeClient;

/// The request of `list`: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListRequest {}

impl ListRequest {
    /// The (empty) request.
    pub fn new() -> Self {
        ListRequest {}
    }
}

/// The answer of `list`: `{"services": ["helloworld.Greeter", ...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceList {
    /// Every service the server serves, built-in ones included, sorted.
    pub services: Vec<String>,
}

/// The `knafeh.Describe` trait, its generated server and client. A
/// private module: only the client is public API.
#[allow(unreachable_pub)]
mod wire {
    use super::{ListRequest, ServiceList};
    use crate::Status;

    /// What this server serves.
    #[knafeh_macros::service(package = "knafeh", crate = "crate")]
    pub trait Describe {
        /// The names of every service this server serves, sorted.
        async fn list(&self, req: ListRequest) -> Result<ServiceList, Status>;
    }
}

/// The server's side of `knafeh.Describe`: a snapshot of the server's
/// services, taken when it starts.
pub(crate) struct DescribeService {
    services: BTreeMap<&'static str, Option<Arc<dyn Service>>>,
}

impl DescribeService {
    /// Describes `services` and itself.
    pub(crate) fn new(services: &Services) -> Self {
        let mut map: BTreeMap<_, _> = services
            .iter()
            .map(|(name, svc)| (*name, Some(svc.clone())))
            .collect();
        map.insert(DescribeClient::SERVICE_NAME, None);
        DescribeService { services: map }
    }

    /// The generated server wrapper, ready for the server's service map.
    pub(crate) fn into_server(self) -> wire::DescribeServer<DescribeService> {
        wire::DescribeServer::new(self)
    }
}

impl wire::Describe for DescribeService {
    async fn list(&self, _req: ListRequest) -> Result<ServiceList, Status> {
        Ok(ServiceList {
            services: self.services.keys().map(|s| (*s).to_owned()).collect(),
        })
    }
}
