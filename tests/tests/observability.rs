//! A node's ops routes, read over HTTP the way Prometheus and a liveness
//! probe read them.

use std::time::Duration;

use example_counter::{Counter, CounterClient};
use goverse::prelude::*;
use goverse_tests::{PATIENCE, wait_until};

/// Serves `node.ops_router()` on a free loopback port.
async fn serve_ops(node: &Node) -> std::net::SocketAddr {
    // ANCHOR: mount
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = node.ops_router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    // ANCHOR_END: mount
    address
}

/// `GET path` on the ops listener at `address`: the status and body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    goverse_tests::http_get(&address.to_string(), path).await
}

/// The value of the sample whose line starts with `series ` (name and
/// labels as the text format writes them).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_activations_and_the_active_gauge_falls_after_idle_deactivation() {
    let node = Node::builder()
        .node_id("ops-node")
        .register::<Counter>()
        .idle_timeout(Duration::from_millis(50))
        .call_metrics(true)
        .start()
        .await
        .expect("node starts");
    let ops = serve_ops(&node).await;
    for id in ["a", "b", "c"] {
        CounterClient::new(&node, id)
            .add(Int32Value { value: 1 })
            .await
            .expect("call");
    }

    let (status, metrics) = get(ops, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let active = r#"goverse_objects_active{node="ops-node",type="Counter"}"#;
    assert_eq!(sample(&metrics, active), Some(3.0), "{metrics}");
    assert_eq!(
        sample(&metrics, r#"goverse_activations_total{node="ops-node"}"#),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE goverse_objects_active gauge"),
        "{metrics}"
    );
    // Three adds served, each under five seconds.
    let add = r#"type="Counter",method="Add""#;
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"goverse_calls_total{{node="ops-node",{add},code="OK"}}"#)
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"goverse_call_duration_seconds_count{{node="ops-node",{add}}}"#)
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"goverse_call_duration_seconds_bucket{{le="5.0",node="ops-node",{add}}}"#)
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"goverse_call_duration_seconds_bucket{{le="+Inf",node="ops-node",{add}}}"#)
        ),
        Some(3.0),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    for (gauge, value) in [
        ("goverse_cluster_nodes", 1.0),
        ("goverse_membership_proven", 1.0),
        ("goverse_ready", 1.0),
        ("goverse_calls_in_flight", 0.0),
        ("goverse_shards_moving_away", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, &format!(r#"{gauge}{{node="ops-node"}}"#)),
            Some(value),
            "{gauge}: {metrics}"
        );
    }

    // Idle past their timeout, the three go, and the gauge comes down.
    wait_until("the counters are deactivated", PATIENCE, || {
        let node = node.clone();
        async move {
            node.collect_idle().await;
            node.stats().active == 0
        }
    })
    .await;
    let (_, metrics) = get(ops, "/metrics").await;
    assert_eq!(sample(&metrics, active), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, r#"goverse_deactivations_total{node="ops-node"}"#),
        Some(3.0),
        "{metrics}"
    );
    let shards = node.stats().shards;
    assert!(shards > 0, "a lone node serves every shard");
    assert_eq!(
        sample(&metrics, r#"goverse_shards_owned{node="ops-node"}"#),
        Some(shards as f64),
        "{metrics}"
    );

    let (status, body) = get(ops, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "ok\n");
    node.shutdown().await;
}

/// Polls `path` until it answers `status`.
async fn wait_for_status(ops: std::net::SocketAddr, path: &str, status: u16) {
    wait_until(
        &format!("{path} answers {status}"),
        PATIENCE,
        || async move { get(ops, path).await.0 == status },
    )
    .await;
}

#[tokio::test]
async fn ready_falls_while_etcd_is_down_and_rises_when_it_is_back() {
    let dir = std::env::temp_dir().join(goverse_tests::unique_prefix("ready").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut etcd = goverse_tests::etcd::Etcd::start(&dir).await;
    let prefix = goverse_tests::unique_prefix("ready");
    let node = Node::builder()
        .node_id("ready-node")
        .register::<Counter>()
        .shard_count(16)
        .coordinator(
            goverse_tests::Backend::Etcd(etcd.endpoint())
                .coordinator(&prefix, Duration::from_secs(2))
                .await,
        )
        .start()
        .await
        .expect("node starts");
    let ops = serve_ops(&node).await;
    wait_for_status(ops, "/ready", 200).await;
    assert_eq!(node.ready(), Ok(()));

    // Without etcd the node cannot renew its lease: once it lapses, the
    // node can no longer prove it owns its shards.
    etcd.stop().await;
    wait_for_status(ops, "/ready", 503).await;
    let (_, reason) = get(ops, "/ready").await;
    assert!(reason.contains("membership"), "{reason}");
    let (_, metrics) = get(ops, "/metrics").await;
    for gauge in ["goverse_ready", "goverse_membership_proven"] {
        assert_eq!(
            sample(&metrics, &format!(r#"{gauge}{{node="ready-node"}}"#)),
            Some(0.0),
            "{gauge}: {metrics}"
        );
    }
    // Still alive: the liveness probe does not ask for a restart.
    assert_eq!(get(ops, "/healthz").await.0, 200);

    etcd.resume().await;
    wait_for_status(ops, "/ready", 200).await;
    CounterClient::new(&node, "after")
        .add(Int32Value { value: 1 })
        .await
        .expect("the node serves again");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_node_serves_its_ops_routes_on_its_ops_listener() {
    let node = Node::builder()
        .node_id("listening-node")
        .register::<Counter>()
        .ops_listen("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("node starts");
    let ops = node.ops_address().expect("an ops listener");
    assert_ne!(ops.port(), 0, "the bound port is reported");
    let (status, body) = get(ops, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = get(ops, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains(r#"goverse_shards_owned{node="listening-node"}"#),
        "{metrics}"
    );
    // Calls are counted only when asked for.
    assert!(!metrics.contains("goverse_calls_total"), "{metrics}");
    assert!(!metrics.contains("goverse_call_duration"), "{metrics}");
    node.shutdown().await;
    // Shut down with its node.
    wait_until("the ops listener closes", PATIENCE, || async move {
        tokio::net::TcpStream::connect(ops).await.is_err()
    })
    .await;
}

/// The value of the sample `name{node="<node>"}` in `node`'s metrics.
fn node_sample(node: &Node, name: &str) -> f64 {
    let series = format!(r#"{name}{{node="{}"}}"#, node.id());
    sample(&node.metrics_text(), &series).unwrap_or(-1.0)
}

/// `node_sample` summed over `nodes`.
fn cluster_sample(nodes: &[&Node], name: &str) -> f64 {
    nodes.iter().map(|node| node_sample(node, name)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_remote_frames_storage_batches_replays_queues_moves_and_failovers() {
    use goverse_tests::processes::{Vault, VaultClient};

    let store = goverse::cluster::MemoryStore::new();
    let storage = std::sync::Arc::new(goverse::storage::MemoryStorage::new());
    let start = |id: &'static str| {
        let (store, storage) = (store.clone(), storage.clone());
        async move {
            let options = goverse::cluster::ClusterOptions::default()
                .prefix("/ops-meters")
                .lease_ttl(Duration::from_secs(1));
            Node::builder()
                .register::<Vault>()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .storage(storage)
                .coordinator(goverse::cluster::ClusterCoordinator::in_memory(
                    &store, options,
                ))
                .start()
                .await
                .expect("node starts")
        }
    };
    let (a, b) = (start("meters-a").await, start("meters-b").await);
    wait_until("both nodes own shards", PATIENCE, || {
        let (a, b) = (a.stats().shards, b.stats().shards);
        async move { a > 0 && b > 0 && a + b == 16 }
    })
    .await;

    // Twenty deposits from `a`: those on `b` go as frames; each is one
    // state write, committed in batches.
    for i in 0..20 {
        VaultClient::new(&a, format!("v{i}"))
            .deposit(Int64Value { value: 1 })
            .await
            .expect("deposit");
    }
    let nodes = [&a, &b];
    assert!(node_sample(&a, "goverse_remote_calls_total") >= 1.0);
    assert!(node_sample(&a, "goverse_remote_batch_size_count") >= 1.0);
    assert_eq!(cluster_sample(&nodes, "goverse_storage_writes_total"), 20.0);
    let batches = cluster_sample(&nodes, "goverse_storage_batch_size_count");
    assert!((1.0..=20.0).contains(&batches), "{batches} batches");
    assert_eq!(
        cluster_sample(&nodes, "goverse_storage_commit_seconds_count"),
        batches
    );

    // A reliable call sent twice runs once; the second is a replay.
    let reliable = VaultClient::new(&a, "r".to_string()).reliable("deposit-1");
    for _ in 0..2 {
        reliable
            .deposit(Int64Value { value: 1 })
            .await
            .expect("reliable");
    }
    assert_eq!(
        cluster_sample(&nodes, "goverse_reliable_replays_total"),
        1.0
    );

    // Calls behind a slow one wait in the object's mailbox.
    let slow = VaultClient::new(&a, "slow".to_string());
    let mut waiting = Vec::new();
    waiting.push(tokio::spawn({
        let slow = slow.clone();
        async move { slow.slow_deposit(Int64Value { value: 1 }).await }
    }));
    for _ in 0..3 {
        let slow = slow.clone();
        waiting.push(tokio::spawn(async move {
            slow.deposit(Int64Value { value: 1 }).await
        }));
    }
    wait_until(
        "calls wait in the slow vault's mailbox",
        PATIENCE,
        || async { cluster_sample(&nodes, "goverse_mailbox_depth") >= 1.0 },
    )
    .await;
    for call in waiting {
        call.await.expect("task").expect("deposit");
    }
    assert_eq!(cluster_sample(&nodes, "goverse_mailbox_depth"), 0.0);

    // Leases are renewed every third of their time to live.
    wait_until("the nodes renew their leases", PATIENCE, || async {
        node_sample(&a, "goverse_lease_renewals_total") >= 1.0
    })
    .await;
    assert_eq!(node_sample(&a, "goverse_coordinator_errors_total"), 0.0);

    // A third node takes shards over by handoff; when it dies, the
    // others see one failover.
    let c = start("meters-c").await;
    wait_until(
        "shards are handed over to the new node",
        PATIENCE,
        || async {
            cluster_sample(&nodes, "goverse_shard_moves_total") >= 1.0 && c.stats().shards > 0
        },
    )
    .await;
    assert_eq!(
        cluster_sample(&nodes, "goverse_shard_handoff_seconds_count"),
        cluster_sample(&nodes, "goverse_shard_moves_total")
    );
    assert_eq!(node_sample(&a, "goverse_failovers_total"), 0.0);
    c.crash();
    wait_until("the survivors see the failover", PATIENCE, || async {
        node_sample(&a, "goverse_failovers_total") == 1.0
            && node_sample(&b, "goverse_failovers_total") == 1.0
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_cpu_profile_under_load_parses_as_pprof_and_draws_as_svg() {
    use pprof::protos::Message as _;

    let node = Node::builder()
        .register::<Counter>()
        .profiling(true)
        .start()
        .await
        .expect("node starts");
    let ops = serve_ops(&node).await;
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = tokio::spawn({
        let (node, busy) = (node.clone(), busy.clone());
        async move {
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                for id in 0..16 {
                    let _ = CounterClient::new(&node, id.to_string())
                        .add(Int32Value { value: 1 })
                        .await;
                }
                tokio::task::yield_now().await;
            }
        }
    });

    let address = ops.to_string();
    let (status, body) =
        goverse_tests::http_get_bytes(&address, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let profile = pprof::protos::Profile::decode(body.as_slice()).expect("a pprof protobuf");
    assert!(
        !profile.sample.is_empty(),
        "a second under load has samples"
    );
    assert!(
        profile.string_table.iter().any(|s| s.contains("goverse")),
        "goverse's own functions are named"
    );
    let (status, svg) =
        goverse_tests::http_get(&address, "/debug/pprof/profile?seconds=1&format=svg").await;
    assert_eq!(status, 200, "{svg}");
    assert!(svg.contains("<svg"), "{svg}");
    // Bad input is refused with a reason.
    for bad in ["seconds=0", "seconds=soon", "seconds=1&format=gif"] {
        let (status, reason) =
            goverse_tests::http_get(&address, &format!("/debug/pprof/profile?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {reason}");
    }

    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    load.await.expect("load");
    node.shutdown().await;
}

#[tokio::test]
async fn profiles_are_off_unless_turned_on_and_sampling_is_a_share() {
    let node = Node::builder().start().await.expect("node starts");
    let ops = serve_ops(&node).await;
    let (status, _) = get(ops, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 404);
    node.shutdown().await;
    let refused = Node::builder().trace_sampling(1.5).start().await;
    assert_eq!(
        refused.map(|_| ()).expect_err("refused").code(),
        "INVALID_CONFIG"
    );
}
