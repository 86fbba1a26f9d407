//! Every call gets a span on both sides with service, method, status code
//! and duration.

use std::sync::{Arc, Mutex};

use greeter::{GreeterClient, GreeterServer, HelloRequest, MyGreeter};
use knafeh_tests::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span's fields as (name, value) strings.
type FieldList = Vec<(String, String)>;

/// Closed spans: (name, fields).
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(String, FieldList)>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        ));
    }
}

struct Fieldset(Vec<(String, String)>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Vec::new();
        attrs.record(&mut Fields(&mut f));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Fieldset(f));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fs) = span.extensions_mut().get_mut::<Fieldset>() {
                values.record(&mut Fields(&mut fs.0));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fieldset>()
                .map(|f| f.0.clone())
                .unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push((span.name().to_owned(), fields));
        }
    }
}

#[test]
fn calls_are_traced_on_both_sides() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    // A current-thread runtime keeps every span on this thread's
    // subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bounded(async {
        let certs = Certs::new();
        let server = start(&certs, |b| b.add_service(GreeterServer::new(MyGreeter))).await;
        let client = client_for(&certs, server.local_addr()).await;
        let g = GreeterClient::new(client);
        g.say_hello(HelloRequest { name: "T".into() })
            .await
            .unwrap();
        let err = g
            .say_hello(HelloRequest {
                name: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), knafeh::Code::InvalidArgument);
        server.shutdown().await;
    }));
    drop(rt);
    let spans = spans.0.lock().unwrap().clone();
    for side in ["knafeh.server", "knafeh.client"] {
        let mine: Vec<_> = spans.iter().filter(|(n, _)| n == side).collect();
        let has = |fields: &Vec<(String, String)>, k: &str, v: &str| {
            fields.iter().any(|(a, b)| a == k && b == v)
        };
        for code in ["OK", "INVALID_ARGUMENT"] {
            let found = mine.iter().any(|(_, f)| {
                has(f, "service", "helloworld.Greeter")
                    && has(f, "method", "say_hello")
                    && has(f, "code", code)
                    && f.iter().any(|(k, _)| k == "duration_us")
            });
            assert!(found, "no {side} span with code {code}: {mine:?}");
        }
    }
}
