//! Call and connection metrics, recorded through the [`metrics`] facade:
//! whatever recorder the application installs (a Prometheus exporter, a
//! StatsD one...) receives them; without one they cost a thread-local
//! read and an atomic load each.
//!
//! Every series is labelled with `service` and `method` (plus `code` on
//! finished calls). The label sets are built once per method and kept
//! for the life of the process, so recording allocates nothing per call.
//! Only methods a server actually serves (and the paths generated clients
//! call, which the program names) get their own labels: anything else a
//! client sends is labelled `unknown`, so a peer cannot grow the number of
//! series. The names are listed in README.md ("Metrics").

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use ::metrics::{Key, Label, Level, Metadata};

use crate::proto::wire;
use crate::service::Service;
use crate::Code;

/// The label value of a service or method a server does not serve.
pub(crate) const UNKNOWN: &str = "unknown";

/// One side's metric names.
pub(crate) struct Names {
    started: &'static str,
    finished: &'static str,
    duration: &'static str,
    in_flight: &'static str,
    received: &'static str,
    sent: &'static str,
    connections: &'static str,
    connections_opened: &'static str,
}

/// The server's metric names.
pub(crate) static SERVER: Names = Names {
    started: "knafeh_server_calls_started_total",
    finished: "knafeh_server_calls_finished_total",
    duration: "knafeh_server_call_duration_seconds",
    in_flight: "knafeh_server_calls_in_flight",
    received: "knafeh_server_message_bytes_received_total",
    sent: "knafeh_server_message_bytes_sent_total",
    connections: "knafeh_server_connections",
    connections_opened: "knafeh_server_connections_accepted_total",
};

/// The client's metric names.
pub(crate) static CLIENT: Names = Names {
    started: "knafeh_client_calls_started_total",
    finished: "knafeh_client_calls_finished_total",
    duration: "knafeh_client_call_duration_seconds",
    in_flight: "knafeh_client_calls_in_flight",
    received: "knafeh_client_message_bytes_received_total",
    sent: "knafeh_client_message_bytes_sent_total",
    connections: "knafeh_client_connections",
    connections_opened: "knafeh_client_connections_dialled_total",
};

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The labels of one method: `service` and `method`, and the same with
/// each status `code`. Built once per method and never freed.
pub(crate) struct MethodLabels {
    labels: [Label; 2],
    by_code: [[Label; 3]; 17],
}

impl MethodLabels {
    fn new(service: &'static str, method: &'static str) -> Self {
        let svc = Label::from_static_parts("service", service);
        let m = Label::from_static_parts("method", method);
        MethodLabels {
            labels: [svc.clone(), m.clone()],
            by_code: Code::ALL.map(|c| {
                [
                    svc.clone(),
                    m.clone(),
                    Label::from_static_parts("code", c.as_str()),
                ]
            }),
        }
    }

    /// The label values: `(service, method)`.
    #[cfg(test)]
    fn values(&self) -> (&str, &str) {
        (self.labels[0].value(), self.labels[1].value())
    }
}

type Interned = HashMap<&'static str, HashMap<Box<str>, &'static MethodLabels>>;

/// The labels of `method` of `service`, made on first use.
fn labels(service: &str, method: &str) -> &'static MethodLabels {
    static INTERNED: OnceLock<RwLock<Interned>> = OnceLock::new();
    let interned = INTERNED.get_or_init(Default::default);
    let found = interned
        .read()
        .ok()
        .and_then(|map| map.get(service)?.get(method).copied());
    if let Some(found) = found {
        return found;
    }
    let mut map = match interned.write() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    let service: &'static str = match map.get_key_value(service) {
        Some((s, _)) => s,
        None => Box::leak(service.into()),
    };
    let methods = map.entry(service).or_default();
    if let Some(found) = methods.get(method) {
        return found;
    }
    // Bounded: only served methods and the client's own static paths
    // come here (see the module documentation).
    let method_name: &'static str = Box::leak(method.into());
    let made: &'static MethodLabels = Box::leak(Box::new(MethodLabels::new(service, method_name)));
    methods.insert(method.into(), made);
    made
}

/// The labels a server uses for a call to `service`/`method`: their own
/// when `served`, otherwise `unknown` for what it does not serve.
pub(crate) fn server_labels(
    service: Option<&'static str>,
    method: &str,
    served: bool,
) -> &'static MethodLabels {
    match (service, served) {
        (Some(s), true) => labels(s, method),
        (Some(s), false) => labels(s, UNKNOWN),
        (None, _) => labels(UNKNOWN, UNKNOWN),
    }
}

/// Counts a call a server received, labelled by what it routes to.
pub(crate) fn server_call(
    services: &HashMap<&'static str, Arc<dyn Service>>,
    head: Option<&wire::RequestHead>,
) -> CallMetrics {
    let labels = match head {
        Some(h) => match services.get_key_value(h.service.as_str()) {
            Some((name, s)) => {
                server_labels(Some(name), &h.method, s.request_shape(&h.method).is_some())
            }
            None => server_labels(None, &h.method, false),
        },
        None => server_labels(None, UNKNOWN, false),
    };
    CallMetrics::start(Traffic::new(&SERVER, labels))
}

/// The labels a client uses for a call to `path` (a generated client's
/// static path).
pub(crate) fn client_labels(path: &'static str) -> &'static MethodLabels {
    match wire::split_path(path) {
        Some((service, method)) => labels(service, method),
        None => labels(UNKNOWN, UNKNOWN),
    }
}

/// Where a client's call to `path` counts its message bytes.
pub(crate) fn client_traffic(path: &'static str) -> Traffic {
    Traffic::new(&CLIENT, client_labels(path))
}

fn counter(name: &'static str, labels: &'static [Label]) -> ::metrics::Counter {
    ::metrics::with_recorder(|r| r.register_counter(&Key::from_static_parts(name, labels), &META))
}

fn gauge(name: &'static str, labels: &'static [Label]) -> ::metrics::Gauge {
    ::metrics::with_recorder(|r| r.register_gauge(&Key::from_static_parts(name, labels), &META))
}

/// Where a call's message bytes are counted: its side and labels.
#[derive(Clone, Copy)]
pub(crate) struct Traffic {
    names: &'static Names,
    labels: &'static MethodLabels,
}

impl Traffic {
    /// A call's traffic on the `names` side.
    pub(crate) fn new(names: &'static Names, labels: &'static MethodLabels) -> Self {
        Traffic { names, labels }
    }

    /// Counts `n` framed message bytes received.
    pub(crate) fn received(self, n: usize) {
        counter(self.names.received, &self.labels.labels).increment(n as u64);
    }

    /// Counts `n` framed message bytes sent.
    pub(crate) fn sent(self, n: usize) {
        counter(self.names.sent, &self.labels.labels).increment(n as u64);
    }
}

/// One call from its start to its end: counted as started and in flight
/// when made, as finished (with its code and duration) by [`finish`];
/// dropped unfinished, it counts as `CANCELLED`.
///
/// [`finish`]: CallMetrics::finish
pub(crate) struct CallMetrics {
    traffic: Traffic,
    started: Instant,
    done: bool,
}

impl CallMetrics {
    /// Counts a call as started.
    pub(crate) fn start(traffic: Traffic) -> Self {
        let Traffic { names, labels } = traffic;
        counter(names.started, &labels.labels).increment(1);
        gauge(names.in_flight, &labels.labels).increment(1.0);
        CallMetrics {
            traffic,
            started: Instant::now(),
            done: false,
        }
    }

    /// Where this call's message bytes are counted.
    pub(crate) fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Counts the call as finished with `code` (once; later calls do
    /// nothing).
    pub(crate) fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Traffic { names, labels } = self.traffic;
        let by_code = &labels.by_code[code as usize];
        counter(names.finished, by_code).increment(1);
        let seconds = self.started.elapsed().as_secs_f64();
        ::metrics::with_recorder(|r| {
            r.register_histogram(
                &Key::from_static_parts(names.duration, &labels.labels),
                &META,
            )
        })
        .record(seconds);
        gauge(names.in_flight, &labels.labels).decrement(1.0);
    }
}

impl Drop for CallMetrics {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// One open connection, counted until dropped.
pub(crate) struct OpenConnection(&'static Names);

impl OpenConnection {
    /// Counts a connection accepted (server) or dialled (client) and open.
    pub(crate) fn open(names: &'static Names) -> Self {
        counter(names.connections_opened, &[]).increment(1);
        gauge(names.connections, &[]).increment(1.0);
        OpenConnection(names)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge(self.0.connections, &[]).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_made_once_per_method() {
        let a = labels("test.Svc", "Hello");
        let b = labels(&String::from("test.Svc"), &String::from("Hello"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.values(), ("test.Svc", "Hello"));
        assert!(!std::ptr::eq(a, labels("test.Svc", "Other")));
    }

    #[test]
    fn unknown_services_and_methods_share_one_label_set() {
        let unknown = labels(UNKNOWN, UNKNOWN);
        assert!(std::ptr::eq(server_labels(None, "x", false), unknown));
        assert!(std::ptr::eq(server_labels(None, "y", true), unknown));
        let svc = server_labels(Some("test.Known"), "Nope", false);
        assert_eq!(svc.values(), ("test.Known", UNKNOWN));
        let served = server_labels(Some("test.Known"), "Yes", true);
        assert_eq!(served.values(), ("test.Known", "Yes"));
    }

    #[test]
    fn client_labels_split_the_path() {
        assert_eq!(client_labels("/pkg.Svc/Do").values(), ("pkg.Svc", "Do"));
        assert_eq!(client_labels("nonsense").values(), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn each_code_gets_its_name_as_label() {
        let l = labels("test.Codes", "M");
        for code in Code::ALL {
            let set = &l.by_code[code as usize];
            assert_eq!(set[2].key(), "code");
            assert_eq!(set[2].value(), code.as_str());
            assert_eq!((set[0].value(), set[1].value()), ("test.Codes", "M"));
        }
        assert_eq!(
            l.by_code[Code::InvalidArgument as usize][2].value(),
            "INVALID_ARGUMENT"
        );
    }
}
