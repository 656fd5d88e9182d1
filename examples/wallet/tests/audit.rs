//! The wallet audit through a real gate and `goverse::Client`: balanced on
//! an embedded node and on a cluster on etcd and PostgreSQL, and caught
//! out when the client retries without its call ids.

use std::time::Duration;

use example_wallet::{Audit, AuditPlan, Wallet, audit};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::storage::{PostgresOptions, PostgresStorage};
use goverse::{Client, ClientOptions};
use goverse_tests::{Backend, PATIENCE, database_url, unique_prefix, wait_until};

/// A gate serving gRPC on `node`, and a client of it.
async fn through_gate(node: &Node) -> (Gate, Client) {
    let gate = Gate::start(
        node,
        GateOptions::default().grpc("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("gate");
    let address = gate.grpc_address().expect("gRPC");
    let client = Client::connect([format!("http://{address}")], ClientOptions::default())
        .await
        .expect("client");
    (gate, client)
}

async fn embedded_audit(plan: &AuditPlan) -> Audit {
    let node = Node::builder()
        .register::<Wallet>()
        .storage(goverse::storage::MemoryStorage::new())
        .start()
        .await
        .expect("node");
    let (gate, client) = through_gate(&node).await;
    let audit = audit(client.caller(), plan).await.expect("audit");
    gate.shutdown().await;
    node.shutdown().await;
    audit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_with_their_call_ids_transfers_move_money_once() {
    let audit = embedded_audit(&AuditPlan::new(unique_prefix("wallet"))).await;
    assert!(audit.balanced(), "{audit}");
    // The run tested something: timeouts cut attempts short and were
    // retried, some transfers moved money and some were refused.
    assert!(audit.injected_timeouts > 0 && audit.retries > 0, "{audit}");
    assert!(audit.done > 0 && audit.refused > 0, "{audit}");
    assert_eq!(audit.before, 8 * 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_with_fresh_call_ids_the_audit_finds_money_moved_twice() {
    let mut plan = AuditPlan::new(unique_prefix("wallet-wrong"));
    plan.same_call_id = false;
    // Every other attempt cut short, so some of them run and are then
    // run again.
    plan.timeout_one_in = 2;
    let audit = embedded_audit(&plan).await;
    assert!(!audit.balanced(), "the audit missed double moves: {audit}");
    assert!(!audit.mismatches.is_empty(), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_balances_on_a_cluster_on_etcd_and_postgres() {
    let backend = Backend::etcd();
    let prefix = unique_prefix("wallet-cluster");
    let storage =
        PostgresStorage::connect(&database_url(), PostgresOptions::default().migrate(true))
            .await
            .expect("PostgreSQL");
    let start = |id: &'static str, hosts: bool| {
        let (backend, prefix, storage) = (backend.clone(), prefix.clone(), storage.clone());
        async move {
            let builder = Node::builder()
                .node_id(id)
                .shard_count(64)
                .listen("127.0.0.1:0".parse().expect("address"))
                .storage(storage)
                .coordinator(backend.coordinator(&prefix, Duration::from_secs(2)).await);
            let builder = if hosts {
                builder.register::<Wallet>()
            } else {
                builder
            };
            builder.start().await.expect("node")
        }
    };
    let (a, b) = (start("wallet-a", true).await, start("wallet-b", true).await);
    let gate_node = start("wallet-gate", false).await;
    wait_until("both nodes serve shards", PATIENCE, || {
        let (x, y) = (a.stats().shards, b.stats().shards);
        async move { x > 0 && y > 0 && x + y == 64 }
    })
    .await;
    let (gate, client) = through_gate(&gate_node).await;
    let mut plan = AuditPlan::new(unique_prefix("wallet-cluster"));
    plan.transfers = 200;
    let audit = audit(client.caller(), &plan).await.expect("audit");
    assert!(audit.balanced(), "{audit}");
    assert!(audit.retries > 0 && audit.done > 0, "{audit}");
    gate.shutdown().await;
    for node in [gate_node, a, b] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_balances_through_the_grpc_gate() {
    let node = Node::builder()
        .register::<Wallet>()
        .storage(goverse::storage::MemoryStorage::new())
        .start()
        .await
        .expect("node");
    let (gate, _client) = through_gate(&node).await;
    let address = gate.grpc_address().expect("gRPC").to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("client.py");
    let run = unique_prefix("py").replace(['/', '-'], "");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(&script)
            .args([&address, &run])
            .output(),
    )
    .await
    .expect("the Python client ends in time")
    .expect("python3 runs (scripts/test.sh installs grpcio and grpcio-tools)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("balanced: no money created or lost"),
        "{text}"
    );
    // Timeouts were injected and retried.
    assert!(!text.contains("retried with the same call id: 0"), "{text}");
    gate.shutdown().await;
    node.shutdown().await;
}
