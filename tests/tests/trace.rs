//! Trace context across calls along a chain client → A → B over loopback:
//! with OpenTelemetry (the `otel` feature, spans captured in memory) the
//! spans of both sides form one trace with parent links; without it, the
//! `traceparent` the client sent is passed on with the same trace id. And
//! the runtime's warnings about a call carry the call's fields.

use std::sync::{Arc, Mutex};

use knafeh::{CallOptions, Code, Context, ServerHandle, Status, TraceParent};
use knafeh_tests::{bounded, client_for, start, Certs};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HopReq {
    /// The last node fails the call with `INTERNAL`.
    fail: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seen {
    /// What each node's `Context::trace_parent` showed, A first.
    trace_parents: Vec<Option<String>>,
}

#[knafeh::service(package = "test.trace")]
pub trait Hop {
    async fn hop(&self, req: HopReq, ctx: Context) -> Result<Seen, Status>;
}

struct Node {
    next: Option<HopClient>,
}

impl Hop for Node {
    async fn hop(&self, req: HopReq, ctx: Context) -> Result<Seen, Status> {
        let mine = ctx.trace_parent().map(|tp| tp.to_string());
        let Some(next) = &self.next else {
            if req.fail {
                return Err(Status::internal("the last node fails"));
            }
            return Ok(Seen {
                trace_parents: vec![mine],
            });
        };
        // No metadata passed on by hand: the trace goes along by itself.
        let mut seen = next.hop(req).await?;
        seen.trace_parents.insert(0, mine);
        Ok(seen)
    }
}

/// Servers B then A (A calls B), and a client of A.
struct Chain {
    servers: Vec<ServerHandle>,
    a: HopClient,
    _certs: Certs,
}

impl Chain {
    async fn start() -> Chain {
        let certs = Certs::new();
        let b = start(&certs, |s| {
            s.add_service(HopServer::new(Node { next: None }))
        })
        .await;
        let to_b = HopClient::new(client_for(&certs, b.local_addr()).await);
        let a = start(&certs, |s| {
            s.add_service(HopServer::new(Node { next: Some(to_b) }))
        })
        .await;
        let client = HopClient::new(client_for(&certs, a.local_addr()).await);
        Chain {
            servers: vec![a, b],
            a: client,
            _certs: certs,
        }
    }

    async fn call(&self, traceparent: Option<&str>, fail: bool) -> Result<Seen, Status> {
        let mut opts = CallOptions::new();
        if let Some(tp) = traceparent {
            opts = opts.header("traceparent", tp);
        }
        let reply = self.a.hop_with(HopReq { fail }, opts).await?;
        Ok(reply.into_inner())
    }

    /// Shuts A then B down: every call has ended, and its spans closed.
    async fn stop(self) {
        for server in self.servers {
            server.shutdown().await;
        }
    }
}

fn parse(seen: &Option<String>) -> TraceParent {
    seen.as_deref().expect("a traceparent").parse().unwrap()
}

#[tokio::test]
async fn without_opentelemetry_the_callers_trace_is_passed_along() {
    bounded(async {
        let chain = Chain::start().await;
        let seen = chain.call(Some(TP), false).await.unwrap().trace_parents;
        // A sees exactly what the client sent; B the same trace, with a
        // new parent id (A's call to B).
        assert_eq!(seen[0].as_deref(), Some(TP));
        let (a, b) = (parse(&seen[0]), parse(&seen[1]));
        assert_eq!(b.trace_id_hex(), TRACE_HEX);
        assert_ne!(b.parent_id(), a.parent_id());
        assert_eq!(b.flags(), a.flags());

        // Malformed: ignored, never refused; nothing is made up.
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            let seen = chain.call(Some(bad), false).await.unwrap().trace_parents;
            assert_eq!(seen, vec![None, None], "{bad}");
        }
        // No traceparent, no subscriber: no trace.
        let seen = chain.call(None, false).await.unwrap().trace_parents;
        assert_eq!(seen, vec![None, None]);
        chain.stop().await;
    })
    .await
}

/// A tracing subscriber exporting spans to memory through OpenTelemetry;
/// the spans are there as long as the provider lives (its shutdown, when
/// it is dropped, clears them).
fn otel_subscriber() -> (
    impl Subscriber + Send + Sync,
    InMemorySpanExporter,
    SdkTracerProvider,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("knafeh-tests");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    let subscriber = tracing_subscriber::registry().with(layer);
    (subscriber, exporter, provider)
}

/// Runs `test` on a current-thread runtime, so that every span goes to
/// `subscriber` (set on this thread only).
fn run_with<S, F>(subscriber: S, test: F)
where
    S: Subscriber + Send + Sync + 'static,
    F: std::future::Future<Output = ()>,
{
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bounded(test));
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn by_id(spans: &[SpanData], id: SpanId) -> &SpanData {
    spans
        .iter()
        .find(|s| s.span_context.span_id() == id)
        .unwrap_or_else(|| panic!("no span {id}"))
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[test]
fn with_opentelemetry_both_sides_and_both_hops_share_one_trace() {
    let (subscriber, exporter, _provider) = otel_subscriber();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    run_with(subscriber, async move {
        let chain = Chain::start().await;
        let root = tracing::info_span!("test.root");
        let got = chain.call(None, false).instrument(root).await.unwrap();
        *out.lock().unwrap() = got.trace_parents;
        chain.stop().await;
    });
    let spans = exporter.get_finished_spans().unwrap();
    let root = named(&spans, "test.root")[0];
    let trace_id = root.span_context.trace_id();
    assert_ne!(trace_id, TraceId::INVALID);
    // root → client → server A → client → server B.
    let servers = named(&spans, "knafeh.server");
    assert_eq!(servers.len(), 2, "{spans:#?}");
    assert_eq!(named(&spans, "knafeh.client").len(), 2, "{spans:#?}");
    let mut server_parents = Vec::new();
    for server in &servers {
        assert_eq!(server.span_context.trace_id(), trace_id);
        assert!(server.parent_span_is_remote);
        let client = by_id(&spans, server.parent_span_id);
        assert_eq!(client.name, "knafeh.client");
        assert_eq!(client.span_context.trace_id(), trace_id);
        assert_eq!(
            attribute(server, "trace_id").as_deref(),
            Some(trace_id.to_string().as_str())
        );
        server_parents.push((server.span_context.span_id(), client));
    }
    // One client span is the root's child (the test's call), the other
    // server A's (A's call to B).
    let a = servers
        .iter()
        .find(|s| by_id(&spans, s.parent_span_id).parent_span_id == root.span_context.span_id())
        .expect("server A's client span is the root's child");
    let b = servers
        .iter()
        .find(|s| s.span_context != a.span_context)
        .unwrap();
    assert_eq!(
        by_id(&spans, b.parent_span_id).parent_span_id,
        a.span_context.span_id()
    );
    // The handlers' contexts show the same: each caller's span.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(parse(&seen[0]).parent_id(), a.parent_span_id.to_bytes());
    assert_eq!(parse(&seen[1]).parent_id(), b.parent_span_id.to_bytes());
    assert_eq!(parse(&seen[1]).trace_id(), trace_id.to_bytes());
}

#[test]
fn with_opentelemetry_a_malformed_traceparent_starts_a_new_trace() {
    let (subscriber, exporter, _provider) = otel_subscriber();
    run_with(subscriber, async move {
        let chain = Chain::start().await;
        let bad = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let seen = chain.call(Some(bad), false).await.unwrap().trace_parents;
        assert_eq!(seen[0], None, "A ignores it");
        // B continues A's new trace.
        assert!(seen[1].is_some());
        chain.stop().await;
    });
    let spans = exporter.get_finished_spans().unwrap();
    let servers = named(&spans, "knafeh.server");
    assert_eq!(servers.len(), 2, "{spans:#?}");
    let a = servers
        .iter()
        .find(|s| s.parent_span_id == SpanId::INVALID)
        .expect("server A's span is a root");
    assert_ne!(a.span_context.trace_id().to_string(), TRACE_HEX);
    for server in &servers {
        assert_eq!(server.span_context.trace_id(), a.span_context.trace_id());
    }
}

/// A span's or event's fields as (name, value) strings.
type FieldList = Vec<(String, String)>;

struct Fields<'a>(&'a mut FieldList);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        ));
    }
}

struct SpanFields(FieldList);

/// WARN and ERROR events with their own fields and those of the spans
/// they are in.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<FieldList>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Warnings {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut f = Vec::new();
        attrs.record(&mut Fields(&mut f));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fs) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut fs.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut f = Vec::new();
        event.record(&mut Fields(&mut f));
        for span in ctx.event_scope(event).into_iter().flatten() {
            if let Some(fs) = span.extensions().get::<SpanFields>() {
                f.extend(fs.0.iter().cloned());
            }
        }
        self.0.lock().unwrap().push(f);
    }
}

#[test]
fn a_failed_calls_warning_carries_service_method_peer_and_trace_id() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    run_with(subscriber, async {
        let chain = Chain::start().await;
        let err = chain.call(Some(TP), true).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        chain.stop().await;
    });
    let warnings = warnings.0.lock().unwrap().clone();
    let failed: Vec<_> = warnings
        .iter()
        .filter(|f| f.iter().any(|(k, v)| k == "message" && v == "call failed"))
        .collect();
    // B's handler failed; A passed B's INTERNAL on: both warn.
    assert_eq!(failed.len(), 2, "{warnings:#?}");
    for fields in failed {
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("service"), Some("test.trace.Hop"), "{fields:?}");
        assert_eq!(get("method"), Some("hop"), "{fields:?}");
        assert_eq!(get("trace_id"), Some(TRACE_HEX), "{fields:?}");
        let peer: std::net::SocketAddr = get("peer").unwrap().parse().unwrap();
        assert!(peer.ip().is_loopback(), "{fields:?}");
    }
}
