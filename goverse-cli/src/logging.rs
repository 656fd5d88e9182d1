//! Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or,
//! with `GOVERSE_LOG_FORMAT=json`, one JSON object per line for log
//! collectors; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector, traces of the
//! calls the process serves, exported over OTLP/gRPC.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The process's telemetry; dropped at exit, it sends the spans still
/// buffered.
pub(crate) struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = self.traces.take()
            && let Err(error) = traces.shutdown()
        {
            eprintln!("sending the last traces failed: {error}");
        }
    }
}

/// Installs the process's tracing subscriber; `service` names the process
/// in its traces unless `OTEL_SERVICE_NAME` does.
///
/// # Errors
///
/// When `GOVERSE_LOG_FORMAT` is neither `text` nor `json`, or the OTLP
/// exporter cannot be set up.
pub(crate) fn init(service: &str) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("GOVERSE_LOG_FORMAT").unwrap_or_default();
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: BoxedLayer = match format.as_str() {
        "" | "text" => logs.with_filter(filter).boxed(),
        "json" => logs.json().with_filter(filter).boxed(),
        other => {
            return Err(format!(
                "GOVERSE_LOG_FORMAT must be `text` or `json`, not `{other}`"
            ));
        }
    };
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers = vec![logs];
    #[cfg(feature = "otlp")]
    let traces = otlp(service)?.map(|(layer, provider)| {
        layers.push(layer);
        provider
    });
    #[cfg(not(feature = "otlp"))]
    let _ = service;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|error| format!("the log subscriber could not be installed: {error}"))?;
    Ok(Telemetry {
        #[cfg(feature = "otlp")]
        traces,
    })
}

/// The layer exporting goverse's spans over OTLP, when a collector is
/// configured. Sampling is goverse's own (`--trace-sampling`, and the
/// sampled flag of a received `traceparent`), so the SDK keeps every span
/// it is given.
#[cfg(feature = "otlp")]
fn otlp(
    service: &str,
) -> Result<Option<(BoxedLayer, opentelemetry_sdk::trace::SdkTracerProvider)>, String> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| format!("the OTLP exporter could not be set up: {error}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("goverse::trace", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("goverse"))
        // What goverse's spans do not need, each an allocation or a
        // clock read per span or per poll.
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(spans)
        .boxed();
    Ok(Some((layer, provider)))
}
