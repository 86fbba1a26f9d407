//! The built-in `knafeh.Describe` service: the names of the services a
//! server serves, and each one's methods and message schemas (see
//! [`crate::schema`] and `PROTOCOL.md` §12).
//!
//! On by default; [`ServerBuilder::describe(false)`](crate::ServerBuilder::describe)
//! turns it off (its path then answers `UNIMPLEMENTED` like any unknown
//! service). A client asks with [`DescribeClient`]:
//!
//! ```no_run
//! # async fn run(client: knafeh::Client) -> Result<(), knafeh::Status> {
//! use knafeh::describe::{DescribeClient, DescribeRequest, ListRequest};
//! let describe = DescribeClient::new(client);
//! for name in describe.list(ListRequest::new()).await?.services {
//!     let schema = describe.describe(DescribeRequest::new(name)).await?;
//!     for method in &schema.methods {
//!         println!("{} ({:?})", method.path, method.kind);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::Services;
use crate::schema::{SchemaError, ServiceSchema};
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

/// The request of `describe`: `{"service": "helloworld.Greeter"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DescribeRequest {
    /// The fully qualified name of the service to describe.
    pub service: String,
}

impl DescribeRequest {
    /// A request for the schema of `service`.
    pub fn new(service: impl Into<String>) -> Self {
        DescribeRequest {
            service: service.into(),
        }
    }
}

/// The `knafeh.Describe` trait, its generated server and client. A
/// private module: only the client is public API.
#[allow(unreachable_pub)]
mod wire {
    use super::{DescribeRequest, ListRequest, ServiceList};
    use crate::schema::ServiceSchema;
    use crate::Status;

    /// What this server serves: its services, their methods and the
    /// formats of their messages.
    #[knafeh_macros::service(package = "knafeh", crate = "crate")]
    pub trait Describe {
        /// The names of every service this server serves, built-in ones
        /// included, sorted.
        async fn list(&self, req: ListRequest) -> Result<ServiceList, Status>;
        /// The schema of one service; NOT_FOUND for a name this server
        /// does not serve, INTERNAL when one of its types cannot be
        /// described.
        async fn describe(&self, req: DescribeRequest) -> Result<ServiceSchema, Status>;
    }
}

type SchemaFn = Box<dyn Fn() -> Result<ServiceSchema, SchemaError> + Send + Sync>;

/// One service to describe: how to compute its schema, and the schema
/// (or the error) once computed.
struct Entry {
    compute: SchemaFn,
    cached: OnceLock<Result<ServiceSchema, SchemaError>>,
}

impl Entry {
    fn new(compute: SchemaFn) -> Self {
        Entry {
            compute,
            cached: OnceLock::new(),
        }
    }

    /// The schema, computed on first use.
    fn schema(&self) -> &Result<ServiceSchema, SchemaError> {
        self.cached.get_or_init(|| (self.compute)())
    }
}

/// The server's side of `knafeh.Describe`: the server's services, taken
/// when it starts.
pub(crate) struct DescribeService {
    services: BTreeMap<&'static str, Entry>,
}

impl DescribeService {
    /// Describes `services` and itself.
    pub(crate) fn new(services: &Services) -> Self {
        let mut map: BTreeMap<_, _> = services
            .iter()
            .map(|(name, svc)| {
                let svc = Arc::clone(svc);
                (*name, Entry::new(Box::new(move || svc.schema())))
            })
            .collect();
        map.insert(
            DescribeClient::SERVICE_NAME,
            Entry::new(Box::new(DescribeClient::schema)),
        );
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

    async fn describe(&self, req: DescribeRequest) -> Result<ServiceSchema, Status> {
        let Some(entry) = self.services.get(req.service.as_str()) else {
            let names: Vec<_> = self.services.keys().copied().collect();
            return Err(Status::not_found(format!(
                "unknown service {:?}; this server serves: {}",
                req.service,
                names.join(", ")
            )));
        };
        match entry.schema() {
            Ok(schema) => Ok(schema.clone()),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wire::Describe;

    fn service(computed: Arc<AtomicUsize>, result: Result<ServiceSchema, SchemaError>) -> Entry {
        Entry::new(Box::new(move || {
            computed.fetch_add(1, Ordering::SeqCst);
            result.clone()
        }))
    }

    #[tokio::test]
    async fn schemas_are_computed_once_on_first_use_errors_too() {
        let good = DescribeClient::schema().unwrap();
        let (ok_count, err_count) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut services = BTreeMap::new();
        services.insert("a.Good", service(ok_count.clone(), Ok(good.clone())));
        let err = SchemaError::new("x::Loose", "untagged");
        services.insert("a.Bad", service(err_count.clone(), Err(err.clone())));
        let d = DescribeService { services };
        assert_eq!(ok_count.load(Ordering::SeqCst), 0, "computed before use");
        for _ in 0..3 {
            assert_eq!(
                d.describe(DescribeRequest::new("a.Good")).await.unwrap(),
                good
            );
            let status = d.describe(DescribeRequest::new("a.Bad")).await.unwrap_err();
            assert_eq!(status.code(), crate::Code::Internal);
            assert_eq!(status.message(), err.to_string());
        }
        assert_eq!(ok_count.load(Ordering::SeqCst), 1);
        assert_eq!(err_count.load(Ordering::SeqCst), 1);
        let missing = d
            .describe(DescribeRequest::new("a.Nope"))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), crate::Code::NotFound);
        assert!(missing.message().contains("a.Bad, a.Good"), "{missing:?}");
    }
}
