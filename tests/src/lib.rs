//! Helpers shared by goverse's workspace-level tests.

use std::future::Future;
use std::time::Duration;

/// Polls `condition` until it holds, failing the test after `limit`.
///
/// Tests wait for conditions, never for fixed sleeps: a loaded machine makes
/// every timing slower, and a generous limit costs nothing when things work.
///
/// # Panics
///
/// When the condition does not hold within `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The generous limit for conditions that should hold within milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);
