//! CPU profiles of the running process, for `go tool pprof`, `pprof` and
//! flame graph viewers: `GET /debug/pprof/profile?seconds=N` samples every
//! thread for N seconds and answers the pprof protobuf, or with
//! `&format=svg` a flame graph.

use std::time::Duration;

use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Samples per second: prime, so sampling does not beat with periodic work.
const FREQUENCY: i32 = 99;

/// The longest profile a request may ask for.
const LONGEST: u64 = 300;

/// What `/debug/pprof/profile` takes.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ProfileQuery {
    /// How long to sample (default 30, as Go's endpoint).
    seconds: Option<String>,
    /// `svg` for a flame graph; anything else (or none) for pprof protobuf.
    format: Option<String>,
}

/// Answers a profile request; a bad query is `400`, a profile already
/// being taken (one at a time per process) is `409`.
pub(super) async fn profile(Query(query): Query<ProfileQuery>) -> Response {
    let seconds = match query.seconds.as_deref().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(seconds)) if (1..=LONGEST).contains(&seconds) => seconds,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("`seconds` must be a whole number from 1 to {LONGEST}\n"),
            )
                .into_response();
        }
    };
    let svg = match query.format.as_deref() {
        None | Some("pprof" | "proto") => false,
        Some("svg") => true,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "`format` is `svg` or `pprof`\n".to_string(),
            )
                .into_response();
        }
    };
    // The sampling thread sleeps and the report symbolizes: both block,
    // so neither runs on the runtime's workers.
    let taken = tokio::task::spawn_blocking(move || take(Duration::from_secs(seconds), svg)).await;
    match taken {
        Ok(Ok(body)) => {
            let content_type = if svg {
                "image/svg+xml"
            } else {
                "application/octet-stream"
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(Err(Refused::Busy)) => (
            StatusCode::CONFLICT,
            "a profile is being taken already; try again when it is done\n".to_string(),
        )
            .into_response(),
        Ok(Err(Refused::Failed(message))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
        }
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the profiling task failed: {error}\n"),
        )
            .into_response(),
    }
}

enum Refused {
    Busy,
    Failed(String),
}

/// Samples the process for `length`, then encodes the report.
fn take(length: Duration, svg: bool) -> Result<Vec<u8>, Refused> {
    use pprof::protos::Message as _;

    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        // Unwinding inside these while they hold their own locks can
        // deadlock the signal handler.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|error| match error {
            pprof::Error::Running => Refused::Busy,
            other => Refused::Failed(format!("the profiler did not start: {other}")),
        })?;
    std::thread::sleep(length);
    let report = guard
        .report()
        .build()
        .map_err(|error| Refused::Failed(format!("the profile could not be read: {error}")))?;
    let mut body = Vec::new();
    if svg {
        report
            .flamegraph(&mut body)
            .map_err(|error| Refused::Failed(format!("the flame graph failed: {error}")))?;
    } else {
        let profile = report.pprof().map_err(|error| {
            Refused::Failed(format!("the profile could not be encoded: {error}"))
        })?;
        profile.encode(&mut body).map_err(|error| {
            Refused::Failed(format!("the profile could not be encoded: {error}"))
        })?;
    }
    Ok(body)
}
