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

use super::{NodeInner, Ordering, call_metrics};

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
        let counters =
            counters.map(|(name, help, value)| (name, help, value.load(Ordering::Relaxed)));
        encode_counters(&mut encoder, node.id(), &counters)?;

        encode_calls(&mut encoder, &node)?;
        encode_meters(&mut encoder, &node)?;
        encode_cluster(&mut encoder, &node)?;
        encode_gate(&mut encoder, &node)?;

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

/// What the node's parts outside its turns have counted: frames sent,
/// storage batches, shard moves, failovers, replays, refusals, and the
/// coordinator's work with etcd.
fn encode_meters(encoder: &mut DescriptorEncoder<'_>, node: &NodeInner) -> std::fmt::Result {
    let meters = &node.meters;
    let labels = [("node", node.id())];
    let coordinator = node.coordinator.counts();
    let counters: [(&str, &str, u64); 8] = [
        (
            "goverse_remote_calls",
            "Frames this node sent to other nodes: calls, creates, deletes and pushes.",
            meters.remote_calls.load(Ordering::Relaxed),
        ),
        (
            "goverse_shard_moves",
            "Shards this node drained and handed over to another node.",
            meters.shard_moves.load(Ordering::Relaxed),
        ),
        (
            "goverse_failovers",
            "Nodes this node saw drop out of the cluster without leaving (their lease ran out).",
            meters.failovers.load(Ordering::Relaxed),
        ),
        (
            "goverse_storage_writes",
            "Object states this node wrote to storage through its group committer.",
            meters.storage_writes.load(Ordering::Relaxed),
        ),
        (
            "goverse_reliable_replays",
            "Reliable calls answered from their recorded outcome instead of running again.",
            meters.reliable_replays.load(Ordering::Relaxed),
        ),
        (
            "goverse_gate_rate_limited",
            "Requests this node's gate refused with RATE_LIMITED.",
            meters.rate_limited.load(Ordering::Relaxed),
        ),
        (
            "goverse_coordinator_errors",
            "Operations on the coordination store (etcd) that failed.",
            coordinator.errors,
        ),
        (
            "goverse_lease_renewals",
            "Times this node renewed its membership lease.",
            coordinator.lease_renewals,
        ),
    ];
    encode_counters(encoder, node.id(), &counters)?;
    let histograms = [
        (
            "goverse_remote_batch_size",
            "Frames per batch written to another node's stream.",
            &meters.remote_batch,
        ),
        (
            "goverse_shard_handoff_seconds",
            "How long each shard handed over took, from the start of its drain.",
            &meters.handoff,
        ),
        (
            "goverse_storage_batch_size",
            "Object states per storage batch.",
            &meters.storage_batch,
        ),
        (
            "goverse_storage_commit_seconds",
            "How long each storage batch took to commit.",
            &meters.storage_commit,
        ),
    ];
    for (name, help, histogram) in histograms {
        let snapshot = histogram.snapshot();
        encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                snapshot.sum,
                snapshot.count,
                &snapshot.buckets,
                None,
            )?;
    }
    let queued: usize = node.by_name.values().map(|host| host.queued()).sum();
    encoder
        .encode_descriptor(
            "goverse_mailbox_depth",
            "Exclusive calls waiting for their object's turn on this node now.",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&labels)?
        .encode_gauge(&(queued as u64))?;
    Ok(())
}

/// Counters of the node: each a name, a help text and a value, labelled
/// with the node's id.
fn encode_counters(
    encoder: &mut DescriptorEncoder<'_>,
    node: &str,
    counters: &[(&str, &str, u64)],
) -> std::fmt::Result {
    for &(name, help, value) in counters {
        encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_family(&[("node", node)])?
            .encode_counter::<NoLabelSet, u64, f64>(&value, None)?;
    }
    Ok(())
}

/// The counts of the gate running on this node, if one does.
fn encode_gate(encoder: &mut DescriptorEncoder<'_>, node: &NodeInner) -> std::fmt::Result {
    let Some(sink) = node.clients() else {
        return Ok(());
    };
    let counts = sink.counts();
    let labels = [("node", node.id())];
    encoder
        .encode_descriptor(
            "goverse_gate_clients",
            "Clients with a push session at this node's gate now (connected, or within their grace).",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&labels)?
        .encode_gauge(&counts.clients)?;
    encoder
        .encode_descriptor(
            "goverse_gate_pushes_buffered",
            "Messages in clients' buffers at this node's gate now, not yet handed to their connections.",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&labels)?
        .encode_gauge(&counts.buffered)?;
    let counters = [
        (
            "goverse_gate_pushes",
            "Messages put in a client's buffer at this node's gate.",
            counts.pushed,
        ),
        (
            "goverse_gate_pushes_dropped",
            "Messages dropped at this node's gate: buffered for a client that overflowed or did not come back within its grace.",
            counts.dropped,
        ),
        (
            "goverse_gate_overflows",
            "Clients this node's gate cut off for falling a whole buffer behind.",
            counts.overflows,
        ),
    ];
    encode_counters(encoder, node.id(), &counters)
}

/// Gauges of the node's place in the cluster, read from its view.
fn encode_cluster(encoder: &mut DescriptorEncoder<'_>, node: &NodeInner) -> std::fmt::Result {
    let view = node.view();
    let me = node.id();
    let moving_away = (0..view.shard_count())
        .filter(|&shard| {
            view.is_moving(shard)
                && view.shard(shard).and_then(|state| state.owner.as_deref()) == Some(me)
        })
        .count();
    let in_flight = node.in_flight.load(Ordering::Relaxed);
    let gauges: [(&str, &str, u64); 5] = [
        (
            "goverse_calls_in_flight",
            "Calls from outside the node's own code running or waiting on it now.",
            in_flight as u64,
        ),
        (
            "goverse_shards_moving_away",
            "Shards this node owns that are moving to another node now.",
            moving_away as u64,
        ),
        (
            "goverse_cluster_nodes",
            "Live nodes in the cluster, as this node sees it.",
            view.nodes.len() as u64,
        ),
        (
            "goverse_membership_proven",
            "1 while the node can prove its membership of the cluster (its lease is alive), else 0.",
            u64::from(view.online),
        ),
        (
            "goverse_ready",
            "1 while the node should be sent traffic (what /ready answers), else 0.",
            u64::from(unready(node).is_none()),
        ),
    ];
    for (name, help, value) in gauges {
        encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_family(&[("node", me)])?
            .encode_gauge(&value)?;
    }
    Ok(())
}

/// Every object type's calls served: a counter by method and outcome code
/// (only the codes that occurred), and a duration histogram by method.
fn encode_calls(encoder: &mut DescriptorEncoder<'_>, node: &NodeInner) -> std::fmt::Result {
    let mut types: Vec<_> = node
        .by_name
        .iter()
        .filter_map(|(name, host)| Some((*name, host.call_totals()?)))
        .collect();
    if types.is_empty() {
        return Ok(());
    }
    types.sort_by_key(|(name, _)| *name);
    let mut calls = encoder.encode_descriptor(
        "goverse_calls",
        "Calls this node served, by object type, method and outcome code (OK on success).",
        None,
        MetricType::Counter,
    )?;
    for (type_name, methods) in &types {
        for (method, totals) in methods {
            for (index, &count) in totals.outcomes.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let labels = [
                    ("node", node.id()),
                    ("type", type_name),
                    ("method", method),
                    ("code", call_metrics::outcome_label(index)),
                ];
                calls
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, f64>(&count, None)?;
            }
        }
    }
    let mut durations = encoder.encode_descriptor(
        "goverse_call_duration_seconds",
        "How long the calls this node served took, from arrival to answer, by object type and method.",
        None,
        MetricType::Histogram,
    )?;
    for (type_name, methods) in &types {
        for (method, totals) in methods {
            let labels = [("node", node.id()), ("type", type_name), ("method", method)];
            // Per bucket, not cumulative: the encoder adds them up, and
            // writes `f64::MAX` as `+Inf`.
            let buckets: Vec<(f64, u64)> = call_metrics::BUCKETS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(totals.buckets)
                .collect();
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    totals.sum.as_secs_f64(),
                    totals.buckets.iter().sum(),
                    &buckets,
                    None,
                )?;
        }
    }
    Ok(())
}

/// Why the node should not be sent traffic now, or `None` when it should.
pub(crate) fn unready(node: &NodeInner) -> Option<String> {
    node.unready()
}

/// `/metrics`, `/healthz` and `/ready`, for a node's own ops listener or a
/// user's server.
pub(crate) fn router(node: Weak<NodeInner>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    #[cfg(feature = "profiling")]
    let profiling = node.upgrade().is_some_and(|node| node.config.profiling);
    let scraped = node.clone();
    let metrics = move || {
        let node = scraped.clone();
        async move {
            match node.upgrade() {
                Some(node) => {
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&node)).into_response()
                }
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    };
    let ready = move || {
        let node = node.clone();
        async move {
            let reason = match node.upgrade() {
                Some(node) => unready(&node),
                None => Some("the node is gone".into()),
            };
            match reason {
                None => (StatusCode::OK, "ready\n".to_string()),
                Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            }
        }
    };
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        // The process answers: the liveness probe needs nothing more.
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready));
    #[cfg(feature = "profiling")]
    if profiling {
        return router.route("/debug/pprof/profile", get(super::profiling::profile));
    }
    router
}
