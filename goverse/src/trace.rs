//! Traces: a `tracing` span for each hop of a traced call (the gate's
//! request, the call's routing, its remote frame, the turn, the storage
//! commit), all in the trace the call's W3C `traceparent` names.
//!
//! Each hop's span takes the `traceparent` it received as its parent and
//! hands the next hop a `traceparent` naming itself, so with the
//! `tracing-opentelemetry` layer installed (feature `otel`) one trace id
//! covers a client's call through a gate, across nodes, into nested calls
//! and their commits. Without that layer the spans still carry the trace
//! id, for logs, and the `traceparent` passes on unchanged.
//!
//! A call whose `traceparent` is not sampled, or that has none and loses
//! the node's sampling draw, costs one check and makes no span.

use std::future::Future;
use std::sync::Arc;

/// The `tracing` target of every span here: a subscriber's filter can
/// keep or drop them apart from the node's log events.
pub(crate) const TARGET: &str = "goverse::trace";

/// Whether a call carrying `parent` gets spans: a `traceparent` decides by
/// its sampled flag; a call without one starts a trace with probability
/// `ratio` (the node's `trace_sampling`), and only with the `otel`
/// feature, which gives new traces their ids.
pub(crate) fn wanted(parent: Option<&Arc<str>>, ratio: f64) -> bool {
    match parent {
        Some(parent) => sampled(parent),
        None => cfg!(feature = "otel") && ratio > 0.0 && (ratio >= 1.0 || draw() < ratio),
    }
}

/// The sampled bit of a well-formed `traceparent`'s flags.
fn sampled(traceparent: &str) -> bool {
    traceparent
        .get(53..55)
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 1)
}

/// The trace id of a well-formed `traceparent`.
fn trace_id(traceparent: &str) -> &str {
    traceparent.get(3..35).unwrap_or_default()
}

/// A uniform draw in `[0, 1)`, from a per-thread generator: sampling needs
/// no cryptographic quality, and must not contend.
fn draw() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|state| {
        // xorshift64*
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// What a hop is, and so which span it gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hop<'a> {
    /// A request arriving at a gate (`route`: the HTTP route or gRPC method).
    #[cfg(feature = "gate")]
    Gate { route: &'a str },
    /// A call leaving its caller, routed to the object's owner.
    Call {
        type_name: &'a str,
        method: &'a str,
        id: &'a str,
    },
    /// A call's frame sent to the node that owns its object.
    Remote { method: &'a str, peer: &'a str },
    /// An object's turn running a call.
    Turn {
        type_name: &'a str,
        method: &'a str,
        id: &'a str,
    },
    /// A turn's state made durable.
    Commit { type_name: &'a str, id: &'a str },
}

/// A hop's span, and the `traceparent` the next hop carries.
#[derive(Debug)]
pub(crate) struct Span {
    pub(crate) span: tracing::Span,
    pub(crate) child: Option<Arc<str>>,
}

impl Span {
    /// Passes a call's result on, marking the span failed if it is an error.
    pub(crate) fn outcome<T>(&self, result: crate::Result<T>) -> crate::Result<T> {
        if let Err(error) = &result {
            failed(&self.span, error.code().as_str());
        }
        result
    }
}

impl Hop<'_> {
    /// Opens this hop's span under `parent` (`None`: a new trace), or
    /// `None` when no subscriber takes the span.
    pub(crate) fn open(self, parent: Option<&Arc<str>>) -> Option<Span> {
        let span = self.span();
        if span.is_disabled() {
            return None;
        }
        let child = adopt(&span, parent);
        if let Some(traceparent) = child.as_deref().or(parent.map(|p| &**p)) {
            span.record("trace_id", trace_id(traceparent));
        }
        Some(Span {
            span,
            child: child.or_else(|| parent.cloned()),
        })
    }

    fn span(self) -> tracing::Span {
        use tracing::field::Empty;
        /// The span of one side of a call: the caller's or the turn's.
        macro_rules! rpc_span {
            ($name:literal, $verb:literal, $kind:literal, $type_name:ident, $method:ident, $id:ident) => {
                tracing::info_span!(
                    target: TARGET,
                    $name,
                    otel.name = %format_args!("{} {}.{}", $verb, $type_name, $method),
                    otel.kind = $kind,
                    rpc.system = "goverse",
                    rpc.service = $type_name,
                    rpc.method = $method,
                    object_id = $id,
                    trace_id = Empty,
                    otel.status_code = Empty,
                    error.code = Empty,
                )
            };
        }
        match self {
            #[cfg(feature = "gate")]
            Hop::Gate { route } => tracing::info_span!(
                target: TARGET,
                "goverse.gate",
                otel.name = %format_args!("gate {route}"),
                otel.kind = "server",
                rpc.system = "goverse",
                route,
                trace_id = Empty,
                otel.status_code = Empty,
                error.code = Empty,
            ),
            Hop::Call {
                type_name,
                method,
                id,
            } => rpc_span!("goverse.call", "call", "client", type_name, method, id),
            Hop::Remote { method, peer } => tracing::info_span!(
                target: TARGET,
                "goverse.remote",
                otel.name = %format_args!("remote {method}"),
                otel.kind = "client",
                rpc.system = "goverse",
                rpc.method = method,
                peer,
                trace_id = Empty,
            ),
            Hop::Turn {
                type_name,
                method,
                id,
            } => rpc_span!("goverse.turn", "turn", "server", type_name, method, id),
            Hop::Commit { type_name, id } => tracing::info_span!(
                target: TARGET,
                "goverse.commit",
                otel.name = %format_args!("commit {type_name}"),
                otel.kind = "client",
                db.operation = "save",
                object_id = id,
                trace_id = Empty,
            ),
        }
    }
}

/// Marks a span as failed, with the error's stable code.
pub(crate) fn failed(span: &tracing::Span, code: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.code", code);
}

/// Opens the span of a request arriving at a gate with the `traceparent`
/// header `header`, when its trace is sampled (or, without one, when the
/// node's sampling draw says so). The `traceparent` the request's call
/// carries is the span's, or the header's when no span opens.
#[cfg(feature = "gate")]
pub(crate) fn gate_request(
    route: &str,
    header: Option<&str>,
    ratio: f64,
) -> (Option<Span>, Option<Arc<str>>) {
    let received = header
        .filter(|t| crate::chain::valid_traceparent(t))
        .map(Arc::<str>::from);
    if !wanted(received.as_ref(), ratio) {
        return (None, received);
    }
    match (Hop::Gate { route }).open(received.as_ref()) {
        Some(mut span) => {
            let child = span.child.take();
            (Some(span), child)
        }
        None => (None, received),
    }
}

/// Makes `span` a child of `parent` in OpenTelemetry's view and returns
/// the `traceparent` naming it, or `None` without the OpenTelemetry layer.
#[cfg(feature = "otel")]
fn adopt(span: &tracing::Span, parent: Option<&Arc<str>>) -> Option<Arc<str>> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent) = parent {
        let (Ok(trace), Ok(span_id)) = (
            TraceId::from_hex(trace_id(parent)),
            SpanId::from_hex(parent.get(36..52).unwrap_or_default()),
        ) else {
            return None;
        };
        // A parent in this process is the span the new one was opened
        // in: the layer links them itself, as a local parent.
        let current = tracing::Span::current().context();
        let opened_in = current.span().span_context().clone();
        let local =
            opened_in.is_valid() && opened_in.span_id() == span_id && opened_in.trace_id() == trace;
        if local {
            return child_of(span);
        }
        let flags = if sampled(parent) {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(trace, span_id, flags, true, TraceState::default());
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Fails only without the layer, which `context` below shows too.
        let _ = span.set_parent(context);
    }
    child_of(span)
}

/// The `traceparent` naming `span`, or `None` without the OpenTelemetry
/// layer.
#[cfg(feature = "otel")]
fn child_of(span: &tracing::Span) -> Option<Arc<str>> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| {
        Arc::from(format!(
            "00-{}-{}-{:02x}",
            own.trace_id(),
            own.span_id(),
            own.trace_flags().to_u8()
        ))
    })
}

#[cfg(not(feature = "otel"))]
fn adopt(_span: &tracing::Span, _parent: Option<&Arc<str>>) -> Option<Arc<str>> {
    None
}

/// `future`, polled inside `span` when there is one: what the future logs,
/// and the spans it opens, belong to the hop.
pub(crate) fn within<F: Future>(
    span: Option<&tracing::Span>,
    future: F,
) -> tracing::instrument::Instrumented<F> {
    use tracing::Instrument;
    future.instrument(span.cloned().unwrap_or_else(tracing::Span::none))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    #[test]
    fn a_traceparent_decides_by_its_sampled_flag() {
        assert!(wanted(Some(&Arc::from(SAMPLED)), 0.0));
        assert!(!wanted(Some(&Arc::from(UNSAMPLED)), 1.0));
        assert_eq!(trace_id(SAMPLED), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn a_call_without_one_is_drawn_at_the_ratio() {
        assert!(!wanted(None, 0.0));
        assert_eq!(wanted(None, 1.0), cfg!(feature = "otel"));
        let hits = (0..100_000).filter(|_| draw() < 0.01).count();
        assert!((500..1500).contains(&hits), "{hits} of 100000 at 1%");
    }

    #[test]
    fn without_a_subscriber_no_span_opens() {
        let hop = Hop::Turn {
            type_name: "T",
            method: "m",
            id: "1",
        };
        assert!(hop.open(Some(&Arc::from(SAMPLED))).is_none());
    }
}
