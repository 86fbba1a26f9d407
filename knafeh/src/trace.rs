//! Trace context across calls: W3C `traceparent`/`tracestate` in the
//! metadata (PROTOCOL.md §7.2, "Trace context").
//!
//! The server reads the caller's `traceparent` and records its trace id on
//! the call's span (`knafeh.server`); the handler sees it in
//! [`Context::trace_parent`]. A client call carries a `traceparent`:
//!
//! - with the `otel` feature, the OpenTelemetry context of the current
//!   `tracing` span (the call's `knafeh.client` span when it is enabled),
//!   when there is one; the server's span then continues that trace, with
//!   the client's span as its parent;
//! - otherwise, for a call made while a handler runs
//!   ([`Context::current`]), the incoming call's trace id with a new span
//!   id, so that a chain of services shares one trace without
//!   OpenTelemetry.
//!
//! A `traceparent` the caller put in the call's metadata itself is sent as
//! it is. A malformed `traceparent` received is ignored (the call starts a
//! new trace); it never fails the call.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::trace::{TraceParent, TRACEPARENT, TRACESTATE};
use crate::{Context, Metadata, MetadataValue};

/// The valid `traceparent` in `md`, if any: a malformed one, or more than
/// one, counts as none (W3C Trace Context §4.3: restart the trace).
pub(crate) fn parent_in(md: &Metadata) -> Option<TraceParent> {
    let mut all = md.get_all(TRACEPARENT);
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    match first {
        MetadataValue::Ascii(value) => TraceParent::parse(value).ok(),
        MetadataValue::Binary(_) => None,
    }
}

/// Ties the server's per-call `span` to the caller's trace (from the
/// request's `metadata`, when it parsed): records `trace_id` and, with
/// `otel`, makes the caller's span its OpenTelemetry parent.
pub(crate) fn server_span(span: &tracing::Span, metadata: Option<&Metadata>) {
    let parent = metadata.and_then(|md| Some((parent_in(md)?, md.get(TRACESTATE))));
    if let Some((tp, _state)) = &parent {
        span.record("trace_id", tp.trace_id_hex().as_str());
        #[cfg(feature = "otel")]
        otel::set_parent(span, tp, *_state);
    }
    #[cfg(feature = "otel")]
    if parent.is_none() {
        // A new trace: its id (chosen by OpenTelemetry) goes in the logs.
        if let Some((tp, _)) = otel::context_of(span) {
            span.record("trace_id", tp.trace_id_hex().as_str());
        }
    }
}

/// Adds `traceparent` (and `tracestate`) to an outgoing call's metadata
/// unless the caller set its own; records the trace id on the current
/// span (the call's `knafeh.client` span). Runs inside that span.
pub(crate) fn inject(md: &mut Metadata) {
    let current = tracing::Span::current();
    if md.get(TRACEPARENT).is_some() {
        if let Some(tp) = parent_in(md) {
            current.record("trace_id", tp.trace_id_hex().as_str());
        }
        return;
    }
    #[cfg(feature = "otel")]
    let found = otel::context_of(&current).or_else(from_incoming);
    #[cfg(not(feature = "otel"))]
    let found = from_incoming();
    let Some((tp, state)) = found else {
        return;
    };
    // Both values are printable ASCII by construction or by receipt.
    let _ = md.insert(TRACEPARENT, &tp.to_string());
    if let Some(state) = state {
        let _ = md.insert(TRACESTATE, &state);
    }
    current.record("trace_id", tp.trace_id_hex().as_str());
}

/// The incoming call's trace with a new span id, for a call made while
/// its handler runs.
fn from_incoming() -> Option<(TraceParent, Option<String>)> {
    let ctx = Context::current()?;
    let tp = ctx.trace_parent()?.with_parent_id(new_span_id()).ok()?;
    Some((tp, ctx.metadata().get(TRACESTATE).map(str::to_owned)))
}

/// A random, non-zero span id. Not cryptographic: ids only need to be
/// unlikely to collide.
fn new_span_id() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        // Each `RandomState` has fresh keys (randomly seeded per thread).
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let id = h.finish();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// The bridge to OpenTelemetry through `tracing-opentelemetry`.
#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    /// Makes the caller's span (`tp`, with its `tracestate`) the parent of
    /// the server's `span`. A span that is disabled, or a subscriber
    /// without the OpenTelemetry layer, leaves it as it is.
    pub(super) fn set_parent(span: &tracing::Span, tp: &TraceParent, state: Option<&str>) {
        // A malformed `tracestate` is dropped; the trace goes on.
        let state = state
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(tp.trace_id()),
            SpanId::from_bytes(tp.parent_id()),
            TraceFlags::new(tp.flags()),
            true,
            state,
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        if let Err(e) = span.set_parent(cx) {
            tracing::trace!(error = %e, "the call's span does not join the caller's trace");
        }
    }

    /// The OpenTelemetry span context of `span` as a `traceparent` (and
    /// its `tracestate`), when it has a valid one.
    pub(super) fn context_of(span: &tracing::Span) -> Option<(TraceParent, Option<String>)> {
        let cx = span.context();
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if !sc.is_valid() {
            return None;
        }
        let tp = TraceParent::new(
            sc.trace_id().to_bytes(),
            sc.span_id().to_bytes(),
            sc.trace_flags().to_u8(),
        )
        .ok()?;
        let state = sc.trace_state().header();
        Some((tp, (!state.is_empty()).then_some(state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn ctx(md: Metadata) -> Context {
        Context::new("/p.S/m".into(), md, None, "127.0.0.1:9".parse().unwrap())
    }

    #[test]
    fn one_valid_traceparent_counts_and_anything_else_is_none() {
        let mut md = Metadata::new();
        assert_eq!(parent_in(&md), None);
        md.insert(TRACEPARENT, TP).unwrap();
        assert_eq!(parent_in(&md).unwrap().to_string(), TP);
        md.append(TRACEPARENT, TP).unwrap();
        assert_eq!(parent_in(&md), None, "two traceparents");
        let mut bad = Metadata::new();
        bad.insert(TRACEPARENT, "00-xyz").unwrap();
        assert_eq!(parent_in(&bad), None);
    }

    #[test]
    fn span_ids_are_non_zero_and_differ() {
        let a = new_span_id();
        let b = new_span_id();
        assert_ne!(a, [0; 8]);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_call_made_in_a_handler_continues_its_trace_with_a_new_span_id() {
        let mut incoming = Metadata::new();
        incoming.insert(TRACEPARENT, TP).unwrap();
        incoming.insert(TRACESTATE, "congo=t61rcWkgMzE").unwrap();
        let md = ctx(incoming)
            .scope(async {
                let mut md = Metadata::new();
                inject(&mut md);
                md
            })
            .await;
        let sent = parent_in(&md).unwrap();
        let got = TraceParent::parse(TP).unwrap();
        assert_eq!(sent.trace_id(), got.trace_id());
        assert_ne!(sent.parent_id(), got.parent_id());
        assert_eq!(sent.flags(), got.flags());
        assert_eq!(md.get(TRACESTATE), Some("congo=t61rcWkgMzE"));
    }

    #[tokio::test]
    async fn the_callers_own_traceparent_is_kept_and_none_is_made_up() {
        let mut incoming = Metadata::new();
        incoming.insert(TRACEPARENT, TP).unwrap();
        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let md = ctx(incoming)
            .scope(async {
                let mut md = Metadata::new();
                md.insert(TRACEPARENT, own).unwrap();
                inject(&mut md);
                md
            })
            .await;
        assert_eq!(md.get(TRACEPARENT), Some(own));
        // Outside a handler, without OpenTelemetry: nothing to continue.
        let mut md = Metadata::new();
        inject(&mut md);
        assert!(md.is_empty());
        // A handler whose caller sent no valid trace starts none either.
        let mut bad = Metadata::new();
        bad.insert(TRACEPARENT, "garbage").unwrap();
        let md = ctx(bad)
            .scope(async {
                let mut md = Metadata::new();
                inject(&mut md);
                md
            })
            .await;
        assert!(md.is_empty());
    }
}
