//! Health checking: the built-in `knafeh.Health` service, with the
//! semantics of gRPC's `grpc.health.v1` (`check` and a server-streaming
//! `watch` per service name; the empty name stands for the whole server).
//!
//! The application owns a [`HealthReporter`] and gives a clone to
//! [`ServerBuilder::health`](crate::ServerBuilder::health), which serves
//! `knafeh.Health`. When the server starts it marks `""` and every added
//! service [`Serving`](ServingStatus::Serving); when a graceful shutdown
//! begins it marks everything [`NotServing`](ServingStatus::NotServing)
//! before draining, so load balancers stop sending work. In between the
//! application sets what it likes:
//!
//! ```no_run
//! use knafeh::health::{HealthReporter, ServingStatus};
//! # #[knafeh::service(package = "helloworld")]
//! # pub trait Greeter { async fn hi(&self, r: u32) -> Result<u32, knafeh::Status>; }
//! # struct G;
//! # impl Greeter for G { async fn hi(&self, r: u32) -> Result<u32, knafeh::Status> { Ok(r) } }
//! # async fn run() -> std::io::Result<()> {
//! let health = HealthReporter::new();
//! let server = knafeh::Server::builder()
//!     .tls("cert.pem", "key.pem")
//!     .add_service(GreeterServer::new(G))
//!     .health(health.clone())
//!     .start()
//!     .await?;
//! assert_eq!(health.status("helloworld.Greeter"), Some(ServingStatus::Serving));
//! // The database went away: tell the load balancers.
//! health.set("helloworld.Greeter", ServingStatus::NotServing);
//! # server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! A client asks with [`HealthClient`]:
//!
//! ```no_run
//! # async fn run(client: knafeh::Client) -> Result<(), knafeh::Status> {
//! use knafeh::health::{HealthCheckRequest, HealthClient, ServingStatus};
//! let health = HealthClient::new(client);
//! let reply = health.check(HealthCheckRequest::new("")).await?;
//! assert_eq!(reply.status, ServingStatus::Serving);
//! let mut changes = health.watch(HealthCheckRequest::new("helloworld.Greeter")).await?;
//! while let Some(reply) = changes.message().await {
//!     println!("now {}", reply?.status);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::service::BoxFuture;
use crate::{Status, Streaming};

pub use wire::HealthClient;

/// The serving status of a service, as `grpc.health.v1` has it. On the
/// wire (JSON) it is the string `"UNKNOWN"`, `"SERVING"`, `"NOT_SERVING"`
/// or `"SERVICE_UNKNOWN"`; in bincode, the variant index 0..=3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServingStatus {
    /// The status is not known (yet).
    Unknown,
    /// The service is serving requests.
    Serving,
    /// The service is not serving requests (e.g. the server is shutting
    /// down).
    NotServing,
    /// Only from `watch`: the reporter does not know the service name.
    ServiceUnknown,
}

impl fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        })
    }
}

/// The request of `check` and `watch`: `{"service": "helloworld.Greeter"}`;
/// the empty name (also when the field is left out) asks about the whole
/// server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthCheckRequest {
    /// The fully qualified service name, or `""` for the whole server.
    #[serde(default)]
    pub service: String,
}

impl HealthCheckRequest {
    /// A request about `service` (`""` for the whole server).
    pub fn new(service: impl Into<String>) -> Self {
        HealthCheckRequest {
            service: service.into(),
        }
    }
}

/// The answer of `check`, and each message of `watch`:
/// `{"status": "SERVING"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealthCheckResponse {
    /// The service's status.
    pub status: ServingStatus,
}

type Statuses = BTreeMap<String, ServingStatus>;

/// The health of a server's services, set by the application and served
/// by `knafeh.Health`. Cheap to clone: clones share the statuses, so keep
/// one and give a clone to [`ServerBuilder::health`](crate::ServerBuilder::health).
#[derive(Clone)]
pub struct HealthReporter {
    statuses: Arc<watch::Sender<Statuses>>,
}

impl Default for HealthReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HealthReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.statuses.borrow().iter())
            .finish()
    }
}

impl HealthReporter {
    /// A reporter that knows no service yet.
    pub fn new() -> Self {
        HealthReporter {
            statuses: Arc::new(watch::Sender::new(Statuses::new())),
        }
    }

    /// Sets the status of `service` (`""` for the whole server); open
    /// `watch` calls on it see the change.
    pub fn set(&self, service: impl Into<String>, status: ServingStatus) {
        let service = service.into();
        self.statuses
            .send_if_modified(|m| m.insert(service, status) != Some(status));
    }

    /// Forgets `service`: `check` answers `NOT_FOUND` for it again, and
    /// open `watch` calls on it see `SERVICE_UNKNOWN`.
    pub fn remove(&self, service: &str) {
        self.statuses
            .send_if_modified(|m| m.remove(service).is_some());
    }

    /// The status of `service`, `None` when it was never set (or removed).
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.statuses.borrow().get(service).copied()
    }

    /// Sets every known service (and `""`) to `status`, at once.
    pub(crate) fn set_all(&self, status: ServingStatus) {
        self.statuses.send_if_modified(|m| {
            let mut changed = !m.contains_key("");
            m.insert(String::new(), status);
            for s in m.values_mut() {
                changed |= *s != status;
                *s = status;
            }
            changed
        });
    }

    fn known(&self) -> Vec<String> {
        self.statuses
            .borrow()
            .keys()
            .map(|k| format!("{k:?}"))
            .collect()
    }
}

/// The `knafeh.Health` trait, its generated server and client. A private
/// module: only the client is public API.
#[allow(unreachable_pub)]
mod wire {
    use super::{HealthCheckRequest, HealthCheckResponse};
    use crate::{Status, Streaming};

    /// Health checking, as `grpc.health.v1.Health`.
    #[knafeh_macros::service(package = "knafeh", crate = "crate")]
    pub trait Health {
        /// The current status of `service` ("" = the whole server);
        /// NOT_FOUND when the server does not know the name.
        async fn check(&self, req: HealthCheckRequest) -> Result<HealthCheckResponse, Status>;
        /// The status of `service` at once, then each change, until the
        /// server shuts down; SERVICE_UNKNOWN while the name is unknown.
        async fn watch(
            &self,
            req: HealthCheckRequest,
        ) -> Result<Streaming<HealthCheckResponse>, Status>;
    }
}

/// The server's side of `knafeh.Health`.
pub(crate) struct HealthService {
    reporter: HealthReporter,
    /// Becomes `true` when the server's graceful shutdown begins (after
    /// everything was marked NOT_SERVING): open watches then end.
    closing: watch::Receiver<bool>,
}

impl HealthService {
    /// The service, and the switch that ends its watches at shutdown.
    pub(crate) fn new(reporter: HealthReporter) -> (Self, watch::Sender<bool>) {
        let (tx, closing) = watch::channel(false);
        (HealthService { reporter, closing }, tx)
    }

    /// The generated server wrapper, ready for the server's service map.
    pub(crate) fn into_server(self) -> wire::HealthServer<HealthService> {
        wire::HealthServer::new(self)
    }
}

impl wire::Health for HealthService {
    async fn check(&self, req: HealthCheckRequest) -> Result<HealthCheckResponse, Status> {
        match self.reporter.status(&req.service) {
            Some(status) => Ok(HealthCheckResponse { status }),
            None => Err(Status::not_found(format!(
                "unknown service {:?}; the health reporter knows: {}",
                req.service,
                self.reporter.known().join(", ")
            ))),
        }
    }

    async fn watch(
        &self,
        req: HealthCheckRequest,
    ) -> Result<Streaming<HealthCheckResponse>, Status> {
        let watcher = Watcher {
            service: req.service,
            statuses: self.reporter.statuses.subscribe(),
            closing: self.closing.clone(),
            last: None,
        };
        Ok(Streaming::new(WatchStream {
            next: Some(Box::pin(watcher.next())),
        }))
    }
}

/// One `watch` call's view of the statuses.
struct Watcher {
    service: String,
    statuses: watch::Receiver<Statuses>,
    closing: watch::Receiver<bool>,
    /// The status last sent.
    last: Option<ServingStatus>,
}

/// What a watch sends next: a status, or the end of the stream.
enum Next {
    Status(ServingStatus, Watcher),
    End(Option<Status>),
}

impl Watcher {
    /// Waits for the next status that differs from the last one sent.
    /// Quick successive changes may be coalesced: a slow reader always
    /// gets the latest status, not every intermediate one.
    async fn next(mut self) -> Next {
        loop {
            // `closing` is read before the status: the server marks
            // everything NOT_SERVING before it sets `closing`, so a watch
            // that sees `closing` also sees NOT_SERVING and sends it
            // before ending.
            let closing = *self.closing.borrow_and_update();
            let now = self
                .statuses
                .borrow_and_update()
                .get(&self.service)
                .copied()
                .unwrap_or(ServingStatus::ServiceUnknown);
            if self.last != Some(now) {
                self.last = Some(now);
                return Next::Status(now, self);
            }
            if closing {
                return Next::End(Some(shutting_down()));
            }
            tokio::select! {
                changed = self.statuses.changed() => {
                    if changed.is_err() {
                        return Next::End(None);
                    }
                }
                changed = self.closing.changed() => {
                    if changed.is_err() {
                        return Next::End(Some(shutting_down()));
                    }
                }
            }
        }
    }
}

/// How a watch ends when the server shuts down.
fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down")
}

/// The response stream of one `watch` call.
struct WatchStream {
    next: Option<BoxFuture<Next>>,
}

impl Stream for WatchStream {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        let next = std::task::ready!(next.as_mut().poll(cx));
        self.next = None;
        Poll::Ready(match next {
            Next::Status(status, watcher) => {
                self.next = Some(Box::pin(watcher.next()));
                Some(Ok(HealthCheckResponse { status }))
            }
            Next::End(status) => status.map(Err),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(reporter: &HealthReporter, closing: &watch::Sender<bool>, name: &str) -> Watcher {
        Watcher {
            service: name.into(),
            statuses: reporter.statuses.subscribe(),
            closing: closing.subscribe(),
            last: None,
        }
    }

    async fn expect_status(w: Watcher, want: ServingStatus) -> Watcher {
        match w.next().await {
            Next::Status(got, w) => {
                assert_eq!(got, want);
                w
            }
            Next::End(s) => panic!("ended with {s:?}, wanted {want}"),
        }
    }

    #[tokio::test]
    async fn shutdown_at_once_still_sends_not_serving_before_the_end() {
        let reporter = HealthReporter::new();
        let (closing, _) = watch::channel(false);
        reporter.set("", ServingStatus::Serving);
        let w = watcher(&reporter, &closing, "");
        let w = expect_status(w, ServingStatus::Serving).await;
        // Both happen before the watcher runs again, as at shutdown.
        reporter.set_all(ServingStatus::NotServing);
        closing.send_replace(true);
        let w = expect_status(w, ServingStatus::NotServing).await;
        match w.next().await {
            Next::End(Some(s)) => assert_eq!(s.code(), crate::Code::Unavailable),
            Next::End(None) => panic!("ended without a status"),
            Next::Status(s, _) => panic!("another status after shutdown: {s}"),
        }
    }

    #[test]
    fn set_all_covers_every_name_and_the_whole_server() {
        let reporter = HealthReporter::new();
        reporter.set("a", ServingStatus::Serving);
        reporter.set("b", ServingStatus::Unknown);
        reporter.set_all(ServingStatus::NotServing);
        for name in ["", "a", "b"] {
            assert_eq!(reporter.status(name), Some(ServingStatus::NotServing));
        }
        assert_eq!(reporter.status("c"), None);
    }

    #[test]
    fn statuses_are_the_documented_json() {
        for (status, json) in [
            (ServingStatus::Unknown, "\"UNKNOWN\""),
            (ServingStatus::Serving, "\"SERVING\""),
            (ServingStatus::NotServing, "\"NOT_SERVING\""),
            (ServingStatus::ServiceUnknown, "\"SERVICE_UNKNOWN\""),
        ] {
            assert_eq!(serde_json::to_string(&status).unwrap(), json);
            assert_eq!(format!("\"{status}\""), json);
        }
        let req: HealthCheckRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req, HealthCheckRequest::new(""));
    }
}
