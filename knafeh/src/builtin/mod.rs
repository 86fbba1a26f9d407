//! The built-in services a server adds to the application's:
//! `knafeh.Describe` (what the server serves, with message schemas; on by
//! default) and `knafeh.Health` (health checking; on when the builder is
//! given a [`HealthReporter`](health::HealthReporter)).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::service::Service;

pub mod describe;
pub mod health;

use health::{HealthReporter, HealthService, ServingStatus};

/// The service map of a server.
pub(crate) type Services = HashMap<&'static str, Arc<dyn Service>>;

/// The built-in services of one running server: what it must tell them
/// when it starts and when it begins to shut down.
#[derive(Default)]
pub(crate) struct Builtins {
    /// The reporter, and the switch that ends open watches.
    health: Option<(HealthReporter, watch::Sender<bool>)>,
    /// The application's services, marked SERVING at start.
    app_services: Vec<&'static str>,
}

impl Builtins {
    /// Adds the built-in services to `services` (the application's).
    ///
    /// # Errors
    /// The application added a service under a built-in name that is on.
    pub(crate) fn install(
        services: &mut Services,
        describe: bool,
        health: Option<HealthReporter>,
    ) -> Result<Builtins, String> {
        let taken = |name: &str, switch: &str| {
            format!(
                "service {name} is a built-in service of knafeh; to serve your own, \
                 turn the built-in off ({switch})"
            )
        };
        let mut app_services: Vec<_> = services.keys().copied().collect();
        app_services.sort_unstable();
        let mut builtins = Builtins {
            health: None,
            app_services,
        };
        if let Some(reporter) = health {
            let (svc, closing) = HealthService::new(reporter.clone());
            let svc = svc.into_server();
            if services.contains_key(svc.name()) {
                return Err(taken(svc.name(), "do not call ServerBuilder::health"));
            }
            services.insert(svc.name(), Arc::new(svc));
            builtins.health = Some((reporter, closing));
        }
        if describe {
            let svc = describe::DescribeService::new(services).into_server();
            if services.contains_key(svc.name()) {
                return Err(taken(svc.name(), "ServerBuilder::describe(false)"));
            }
            services.insert(svc.name(), Arc::new(svc));
        }
        Ok(builtins)
    }

    /// The server has started: `""` and every application service are
    /// SERVING.
    pub(crate) fn started(&self) {
        if let Some((reporter, _)) = &self.health {
            reporter.set("", ServingStatus::Serving);
            for name in &self.app_services {
                reporter.set(*name, ServingStatus::Serving);
            }
        }
    }

    /// Graceful shutdown begins (before the drain): everything is
    /// NOT_SERVING, and open watches send that and end.
    pub(crate) fn shutting_down(&self) {
        if let Some((reporter, closing)) = &self.health {
            reporter.set_all(ServingStatus::NotServing);
            // After the statuses: a watch that sees `closing` must also
            // see NOT_SERVING.
            closing.send_replace(true);
        }
    }
}
