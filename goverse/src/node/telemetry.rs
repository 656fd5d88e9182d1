//! What a node shows operators: its metrics in the Prometheus text format,
//! and the routes that serve them beside a liveness probe.
//!
//! Everything here is read at scrape time from the counters and tables the
//! node keeps anyway, so serving metrics adds nothing to a call.

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{NodeInner, Ordering};

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The node's metrics, encoded.
pub(crate) fn render(node: &Arc<NodeInner>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector {
        node: Arc::downgrade(node),
    }));
    let mut text = String::new();
    // Writing to a `String` cannot fail; a collector error would be a bug.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(%error, "encoding the node's metrics failed");
    }
    text
}

/// Reads the node's counters and tables on each scrape.
struct NodeCollector {
    node: Weak<NodeInner>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(node) = self.node.upgrade() else {
            return Ok(());
        };
        let node_label = [("node", node.id())];

        let mut active = encoder.encode_descriptor(
            "goverse_objects_active",
            "Objects active on this node now, by object type.",
            None,
            MetricType::Gauge,
        )?;
        let mut types: Vec<_> = node.by_name.iter().collect();
        types.sort_by_key(|(name, _)| **name);
        for (type_name, host) in types {
            let labels = [("node", node.id()), ("type", type_name)];
            active
                .encode_family(&labels)?
                .encode_gauge(&(host.len() as u64))?;
        }

        let counters = [
            (
                "goverse_activations",
                "Objects activated on this node since it started.",
                &node.stats.activations,
            ),
            (
                "goverse_deactivations",
                "Objects deactivated on this node since it started (idle, deleted, moved or at shutdown).",
                &node.stats.deactivations,
            ),
            (
                "goverse_panics",
                "Panics caught in object code on this node since it started.",
                &node.stats.panics,
            ),
            (
                "goverse_stale_writes",
                "Writes the storage refused because a newer owner of the object's shard had written.",
                &node.stats.stale_writes,
            ),
        ];
        for (name, help, value) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_family(&node_label)?
                .encode_counter::<NoLabelSet, u64, f64>(&value.load(Ordering::Relaxed), None)?;
        }

        encoder
            .encode_descriptor(
                "goverse_shards_owned",
                "Shards this node serves now.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&node_label)?
            .encode_gauge(&node.shards_served())?;
        Ok(())
    }
}

/// `/metrics` and `/healthz`, for a node's own ops listener or a user's
/// server.
pub(crate) fn router(node: Weak<NodeInner>) -> axum::Router {
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;

    let metrics = move || {
        let node = node.clone();
        async move {
            match node.upgrade() {
                Some(node) => {
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&node)).into_response()
                }
                None => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    };
    axum::Router::new()
        .route("/metrics", get(metrics))
        // The process answers: the liveness probe needs nothing more.
        .route("/healthz", get(|| async { "ok\n" }))
}
