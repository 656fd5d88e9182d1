//! Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or,
//! with `GOVERSE_LOG_FORMAT=json`, one JSON object per line for log
//! collectors.

/// Installs the process's tracing subscriber.
///
/// # Errors
///
/// When `GOVERSE_LOG_FORMAT` is neither `text` nor `json`.
pub(crate) fn init() -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("GOVERSE_LOG_FORMAT").unwrap_or_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "" | "text" => logs.init(),
        "json" => logs.json().init(),
        other => {
            return Err(format!(
                "GOVERSE_LOG_FORMAT must be `text` or `json`, not `{other}`"
            ));
        }
    }
    Ok(())
}
