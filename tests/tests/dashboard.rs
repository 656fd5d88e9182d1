//! The Grafana dashboard in `ops/grafana/goverse.json` against a real
//! node's `/metrics`: a renamed or dropped metric shows up here, not as an
//! empty panel in someone's Grafana.

use std::collections::BTreeSet;
use std::sync::Arc;

use example_counter::{Counter, CounterClient};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::storage::{MemoryStorage, Storage as _};
use goverse_tests::gate_objects::{Purse, PurseClient};
use goverse_tests::{PATIENCE, wait_until};
use serde_json::Value;

/// The dashboard, read from the repository rather than embedded, so the
/// test checks the file operators import.
fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/grafana/goverse.json");
    let text = std::fs::read_to_string(path).expect("the dashboard is in ops/grafana");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, with the panels of collapsed rows (which Grafana nests
/// under the row) beside the top-level ones.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL query: panel targets and template variable queries (a
/// string, or an object holding one in `query`, depending on Grafana's
/// version).
fn queries(dashboard: &Value) -> Vec<String> {
    let mut out: Vec<String> = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        // A datasource variable's query is a plugin id, not PromQL.
        if variable["type"] == "datasource" {
            continue;
        }
        let query = &variable["query"];
        if let Some(text) = query.as_str().or_else(|| query["query"].as_str()) {
            out.push(text.to_owned());
        }
    }
    out
}

/// The `goverse_*` identifiers in `query`: metric names, since no label
/// or function is spelled that way.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("goverse_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names of a scrape: what a query selects (`_total`,
/// `_bucket` and all), not the family names of `# TYPE` lines.
fn sample_names(metrics: &str) -> BTreeSet<&str> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect()
}

/// The panels operators look for, in the rows they look in: renaming
/// one is a choice to make here too.
#[test]
fn the_dashboard_has_its_rows_and_panels() {
    let dashboard = dashboard();
    let all = panels(&dashboard);
    let titles = |kind: &str| -> Vec<&str> {
        all.iter()
            .filter(|panel| panel["type"] == kind)
            .filter_map(|panel| panel["title"].as_str())
            .collect()
    };
    assert_eq!(
        titles("row"),
        [
            "Calls",
            "Objects & shards",
            "Storage",
            "Gate",
            "Cluster health"
        ]
    );
    let timeseries = titles("timeseries");
    for title in [
        "Calls/s by type and method",
        "p99 call duration by method",
        "Errors by code",
        "Calls in flight and mailbox depth",
        "Remote calls/s",
        "Remote batch size",
        "Reliable call replays/s",
        "Objects active by type",
        "Activations, deactivations and panics/s",
        "Shards per node",
        "Shards moving and moves/s",
        "Shard handoff p99",
        "Storage writes/s",
        "Storage batch size",
        "Storage commit latency p99",
        "Stale writes/s",
        "Gate sessions and buffered pushes",
        "Gate pushes/s",
        "Dropped pushes and overflows/s",
        "Rate-limited requests/s",
        "Failovers/s",
        "Coordinator errors and lease renewals/s",
    ] {
        assert!(
            timeseries.contains(&title),
            "no {title:?} in {timeseries:?}"
        );
    }
    assert_eq!(
        titles("stat"),
        ["Ready", "Membership proven", "Cluster nodes"]
    );

    // Importable anywhere: the data source is picked at import, and the
    // node list comes from a gauge every node exports.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "{variables:?}"
    );
    assert!(
        queries(&dashboard)
            .iter()
            .any(|q| q == "label_values(goverse_ready, node)"),
        "{variables:?}"
    );
}

/// One node with everything a dashboard panel reads switched on: call
/// metrics, a gate, and a persistent object whose writes reach storage.
/// Series that come only with traffic (calls by method, storage commits)
/// get some before the scrape, so a missing name means the node does not
/// export it at all.
#[tokio::test]
async fn every_metric_the_dashboard_queries_is_in_a_nodes_scrape() {
    let storage = Arc::new(MemoryStorage::new());
    let node = Node::builder()
        .node_id("dashboard-node")
        .register::<Counter>()
        .register::<Purse>()
        .storage(storage.clone())
        .call_metrics(true)
        .start()
        .await
        .expect("node starts");
    let gate = Gate::start(
        &node,
        GateOptions::default().http("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("gate starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ops = listener.local_addr().expect("address");
    let router = node.ops_router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    for id in ["a", "b", "c"] {
        CounterClient::new(&node, id)
            .add(Int32Value { value: 1 })
            .await
            .expect("counter call");
        PurseClient::new(&node, id)
            .add(Int32Value { value: 1 })
            .await
            .expect("purse call");
    }
    // Storage metrics count commits, which may land after the call answers.
    wait_until("the purses are stored", PATIENCE, || {
        let storage = storage.clone();
        async move {
            let mut stored = 0;
            for id in ["a", "b", "c"] {
                if matches!(storage.load("Purse", id).await, Ok(Some(_))) {
                    stored += 1;
                }
            }
            stored == 3
        }
    })
    .await;

    let (status, metrics) = goverse_tests::http_get(&ops.to_string(), "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let scraped = sample_names(&metrics);

    let queries = queries(&dashboard());
    let queried: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(queried.len() > 20, "too few metrics queried: {queried:?}");
    // All at once: one run names every metric that needs attention.
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !scraped.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics a node does not export: {missing:?}\n\nit exports: {scraped:?}"
    );

    gate.shutdown().await;
    node.shutdown().await;
}
