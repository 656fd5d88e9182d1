//! One trace across a cluster: a client's call through an HTTP gate, into
//! an object on one node, its nested call over loopback gRPC to an object
//! on another node, and that object's storage commit, all recorded by the
//! OpenTelemetry SDK (an in-memory exporter) under the trace id the
//! client's `traceparent` named, each span the child of the hop before.
//!
//! Runs over the in-process store with memory storage, and over real etcd
//! with PostgreSQL.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::storage::{MemoryStorage, PostgresOptions, PostgresStorage, Storage};
use goverse_tests::{Backend, PATIENCE, database_url, unique_prefix, wait_until};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

/// A persistent safe: every deposit is committed before it is answered.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Safe {
    total: i64,
}

#[goverse::object(persistent)]
impl Safe {
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }
}

/// Deposits into the safe its request names: a nested call.
#[derive(Debug, Default)]
pub struct Clerk;

#[goverse::object]
impl Clerk {
    pub async fn file(&self, ctx: &Context, request: StringValue) -> goverse::Result<Int64Value> {
        SafeClient::new(ctx, request.value)
            .deposit(Int64Value { value: 5 })
            .await
    }
}

/// The spans every test's nodes record, exported as each one ends. The
/// process has one global subscriber, so the tests share it and each reads
/// only its own trace.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        // ANCHOR: layer
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("goverse-tests")));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        // ANCHOR_END: layer
        exporter
    })
}

/// The finished spans of trace `trace`.
fn spans_of(trace: TraceId) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .collect()
}

/// The one span whose name starts with `prefix`.
fn span<'a>(spans: &'a [SpanData], prefix: &str) -> &'a SpanData {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect();
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(found.len(), 1, "one `{prefix}` span among {names:?}");
    found[0]
}

/// A chain of spans as a tree, one line each: name, kind, and whether its
/// parent came from another process.
fn draw(trace: TraceId, chain: &[&SpanData]) -> String {
    let mut text = format!("trace {trace}, from the client's traceparent\n");
    for (depth, span) in chain.iter().enumerate() {
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(depth - 1))
        };
        let kind = format!("{:?}", span.span_kind).to_lowercase();
        let remote = if span.parent_span_is_remote {
            "   parent from another process"
        } else {
            ""
        };
        let name = format!("{indent}{}", span.name);
        let line = format!("{name:<44}{kind:<8}{remote}");
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Asserts that `child` is a child of `parent`.
fn assert_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "`{}` is a child of `{}`",
        child.name,
        parent.name
    );
}

async fn a_call_through_a_gate_is_one_trace_across_two_nodes<S: Storage>(
    backend: Backend,
    storage: Arc<S>,
    trace: &str,
) {
    exporter();
    let prefix = unique_prefix("traces");
    let start = |id: &'static str| {
        let (backend, storage, prefix) = (backend.clone(), storage.clone(), prefix.clone());
        async move {
            Node::builder()
                .register::<Clerk>()
                .register::<Safe>()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .storage(storage)
                .coordinator(backend.coordinator(&prefix, Duration::from_secs(2)).await)
                .start()
                .await
                .expect("node starts")
        }
    };
    let (front, back) = (start("trace-front").await, start("trace-back").await);
    wait_until("both nodes see the whole cluster", PATIENCE, || async {
        [&front, &back]
            .iter()
            .all(|n| n.ready().is_ok() && n.cluster_view().nodes.len() == 2)
    })
    .await;
    let gate = Gate::start(
        &front,
        GateOptions::default().http("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("gate");
    let http = gate.http_address().expect("http").to_string();

    // The clerk is pinned to the front node, the safe to the back one.
    let clerk = format!("{}/clerk", front.address()).replace('/', "%2F");
    let safe = format!("{}/safe-{}", back.address(), prefix.replace('/', "-"));
    // Each test its own trace id: the tests share one exporter.
    let trace = TraceId::from_hex(trace).expect("id");
    let client_span = SpanId::from_hex("00f067aa0ba902b7").expect("id");
    let traceparent = format!("00-{trace}-{client_span}-01");
    let (status, answer) = goverse_tests::http_post(
        &http,
        &format!("/api/v1/objects/call/Clerk/{clerk}/File"),
        &[("traceparent", &traceparent)],
        &serde_json::to_string(&safe).expect("json"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let expected = [
        "gate ",
        "call Clerk.",
        "turn Clerk.",
        "call Safe.",
        "remote ",
        "turn Safe.",
        "commit Safe",
    ];
    wait_until("every hop's span has ended", PATIENCE, || async {
        let spans = spans_of(trace);
        expected
            .iter()
            .all(|prefix| spans.iter().any(|s| s.name.starts_with(prefix)))
    })
    .await;
    let spans = spans_of(trace);
    let hops: Vec<&SpanData> = expected.iter().map(|p| span(&spans, p)).collect();
    // The gate's span continues the client's.
    assert_eq!(hops[0].parent_span_id, client_span);
    assert!(hops[0].parent_span_is_remote);
    for pair in hops.windows(2) {
        assert_child(pair[1], pair[0]);
    }
    // The safe's turn ran on the other node, under the frame's span.
    // Parents from another process: the client's, at the gate, and the
    // calling node's, at the safe's turn; every other hop's is local.
    let remote: Vec<bool> = hops.iter().map(|s| s.parent_span_is_remote).collect();
    assert_eq!(remote, [true, false, false, false, false, true, false]);
    // The book shows this very trace (the one under its trace id).
    let drawn = draw(trace, &hops);
    if drawn.starts_with("trace 4bf92f3577b34da6a3ce929d0e0e4736") {
        assert_eq!(
            drawn,
            include_str!("../../book/src/traces-example.txt"),
            "the book's trace example:\n{drawn}"
        );
    }

    gate.shutdown().await;
    front.shutdown().await;
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_gate_is_one_trace_across_two_nodes_in_memory() {
    a_call_through_a_gate_is_one_trace_across_two_nodes(
        Backend::memory(),
        Arc::new(MemoryStorage::new()),
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_gate_is_one_trace_across_two_nodes_on_etcd_and_postgres() {
    let storage =
        PostgresStorage::connect(&database_url(), PostgresOptions::default().migrate(true))
            .await
            .expect("PostgreSQL is reachable");
    a_call_through_a_gate_is_one_trace_across_two_nodes(
        Backend::etcd(),
        Arc::new(storage),
        "5cea303688c45eb7b4dfa3ae1f1f5847",
    )
    .await;
}
