//! Shared pieces of goverse's benchmarks: a latency recorder and a table
//! printer. Each benchmark measures its baselines in the same run and prints
//! ratios, because absolute numbers on a shared machine mean little.

use std::time::{Duration, Instant};

/// Throughput and latency of one measured configuration.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Completed calls per second.
    pub per_second: f64,
    /// Median call latency.
    pub p50: Duration,
    /// 99th-percentile call latency.
    pub p99: Duration,
}

/// Runs `callers` concurrent loops of `calls_per_caller` calls each and
/// measures them. `make_caller(i)` builds the loop of caller `i`; each loop
/// returns the latency of every call it made.
pub async fn measure<F, Fut>(callers: usize, calls_per_caller: usize, make_caller: F) -> Measurement
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<Duration>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        tasks.spawn(make_caller(caller));
    }
    let mut latencies = Vec::with_capacity(callers * calls_per_caller);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("benchmark caller panicked"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Measurement {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Times each of `calls` runs of `call`.
pub async fn timed_loop<F, Fut>(calls: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        call().await;
        latencies.push(started.elapsed());
    }
    latencies
}

/// Prints one row of a results table.
pub fn print_row(name: &str, m: &Measurement) {
    println!(
        "  {name:<28} {:>12.0} calls/s   p50 {:>9.2?}   p99 {:>9.2?}",
        m.per_second, m.p50, m.p99
    );
}

/// Resident set size of this process in bytes (Linux), if known.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The bare gRPC baselines (`proto/bench.proto`): a unary echo, and a
/// server stream every published payload goes to.
pub mod echo {
    #![allow(
        missing_docs,
        unreachable_pub,
        clippy::all,
        missing_debug_implementations
    )]
    tonic::include_proto!("goverse.bench.v1");
}

/// The baseline server: echoes, and fans published payloads out to every
/// subscriber.
#[derive(Debug, Clone)]
pub struct Echoer {
    /// What `Subscribe` streams carry.
    pub published: tokio::sync::broadcast::Sender<echo::Payload>,
}

impl Default for Echoer {
    fn default() -> Self {
        Self {
            published: tokio::sync::broadcast::channel(4096).0,
        }
    }
}

type Subscription = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<echo::Payload, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl echo::echo_server::Echo for Echoer {
    async fn unary(
        &self,
        request: tonic::Request<echo::Payload>,
    ) -> Result<tonic::Response<echo::Payload>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }

    type SubscribeStream = Subscription;

    async fn subscribe(
        &self,
        _request: tonic::Request<echo::Payload>,
    ) -> Result<tonic::Response<Subscription>, tonic::Status> {
        let stream = tokio_stream::wrappers::BroadcastStream::new(self.published.subscribe());
        let stream = tokio_stream::StreamExt::map(stream, |payload| {
            payload.map_err(|lagged| tonic::Status::data_loss(lagged.to_string()))
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

/// Installs, for the whole process, what a traced deployment runs: the
/// `tracing-opentelemetry` layer over goverse's spans, feeding the SDK's
/// batch processor, whose exporter here drops every batch (a collector's
/// cost is the collector's). Nodes then trace what their
/// `trace_sampling` says.
pub fn install_tracing() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Takes every batch and keeps nothing.
    #[derive(Debug)]
    struct Discard;

    impl opentelemetry_sdk::trace::SpanExporter for Discard {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            drop(batch);
            Ok(())
        }
    }

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    // ANCHOR: layer
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("goverse::trace", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("goverse-bench"))
        // What goverse's spans do not need, each an allocation or a
        // clock read per span or per poll.
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(spans);
    // ANCHOR_END: layer
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the benchmark installs the only subscriber");
}
