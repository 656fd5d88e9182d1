//! Tests of the quick start's `Counter` and `Visits`, written the way a user
//! of goverse tests their own objects, with its public API only: an
//! in-process node, persistent state on `MemoryStorage`, a small cluster
//! on an in-process `MemoryStore`, and calls through a gate. The book's
//! "Testing your objects" chapter includes them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use example_counter::{Counter, CounterClient, Visits, VisitsClient};
use goverse::cluster::{ClusterCoordinator, ClusterOptions, MemoryStore};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::storage::{MemoryStorage, Storage as _};
use goverse::{Client, ClientOptions};

// ANCHOR: eventually
/// Polls `condition` until it holds, failing the test after 10 seconds: a
/// test waits for what it expects, never for a fixed time.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
// ANCHOR_END: eventually

// ANCHOR: one_node
#[tokio::test]
async fn counter_adds_and_reads() -> goverse::Result<()> {
    let node = Node::builder().register::<Counter>().start().await?;
    let counter = CounterClient::new(&node, "c1");

    assert_eq!(counter.add(Int32Value { value: 5 }).await?.value, 5);
    assert_eq!(counter.add(Int32Value { value: -2 }).await?.value, 3);
    assert_eq!(counter.get(Empty {}).await?.value, 3);
    // Another id is another object, activated by its first call.
    assert_eq!(
        CounterClient::new(&node, "c2").get(Empty {}).await?.value,
        0
    );
    assert_eq!(node.stats().activations, 2);

    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: one_node

// ANCHOR: concurrent
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_are_not_lost() -> goverse::Result<()> {
    let node = Node::builder().register::<Counter>().start().await?;
    let counter = CounterClient::new(&node, "shared");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let counter = counter.clone();
        tasks.spawn(async move {
            for _ in 0..100 {
                counter.add(Int32Value { value: 1 }).await?;
            }
            Ok::<_, goverse::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("the task ran to its end")?;
    }
    assert_eq!(counter.get(Empty {}).await?.value, 800);
    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: concurrent

// ANCHOR: persistent
#[tokio::test]
async fn visits_outlive_the_node() -> goverse::Result<()> {
    // One store for both nodes, as a database outlives a process.
    let storage = Arc::new(MemoryStorage::new());

    let node = Node::builder()
        .register::<Visits>()
        .storage(storage.clone())
        .start()
        .await?;
    let visits = VisitsClient::new(&node, "home");
    visits.visit(Empty {}).await?;
    assert_eq!(visits.visit(Empty {}).await?.value, 2);
    node.shutdown().await;

    // The store holds the state's serde form, as JSON.
    let row = storage.load("Visits", "home").await?.expect("stored");
    assert_eq!(row.data, br#"{"count":2}"#);

    let restarted = Node::builder()
        .register::<Visits>()
        .storage(storage.clone())
        .start()
        .await?;
    let visits = VisitsClient::new(&restarted, "home");
    assert_eq!(visits.visit(Empty {}).await?.value, 3);
    restarted.shutdown().await;
    Ok(())
}
// ANCHOR_END: persistent

// ANCHOR: idle
#[tokio::test]
async fn an_idle_object_is_deactivated_and_comes_back() -> goverse::Result<()> {
    let node = Node::builder()
        .register::<Visits>()
        .idle_timeout(Duration::from_millis(1))
        .start()
        .await?;
    let visits = VisitsClient::new(&node, "home");
    visits.visit(Empty {}).await?;

    // Collect idle objects now, rather than at the node's next round.
    eventually("`home` is deactivated", || async {
        node.collect_idle().await;
        node.stats().active == 0
    })
    .await;
    assert_eq!(node.stats().deactivations, 1);

    // The next call activates it again, from the state it saved.
    assert_eq!(visits.visit(Empty {}).await?.value, 2);
    assert_eq!(node.stats().activations, 2);
    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: idle

// ANCHOR: cluster
const SHARDS: u32 = 64;

/// `size` nodes in this process forming one cluster: coordinated through
/// an in-memory store instead of etcd, with one state store between them.
async fn cluster(size: usize) -> goverse::Result<Vec<Node>> {
    let store = MemoryStore::new();
    let storage = Arc::new(MemoryStorage::new());
    let mut nodes = Vec::new();
    for n in 1..=size {
        let options = ClusterOptions::default().lease_ttl(Duration::from_secs(1));
        let node = Node::builder()
            .register::<Counter>()
            .register::<Visits>()
            .node_id(format!("node-{n}"))
            .shard_count(SHARDS)
            .listen("127.0.0.1:0".parse().expect("an address"))
            .storage(storage.clone())
            .coordinator(ClusterCoordinator::in_memory(&store, options))
            .start()
            .await?;
        nodes.push(node);
    }
    let all = &nodes;
    eventually("the shards are spread over the nodes", || async move {
        let view = all[0].cluster_view();
        let served: u64 = all.iter().map(|node| node.stats().shards).sum();
        served == u64::from(SHARDS)
            && all.iter().all(|node| node.stats().shards > 0)
            && (0..SHARDS).all(|shard| !view.is_moving(shard))
    })
    .await;
    Ok(nodes)
}
// ANCHOR_END: cluster

// ANCHOR: cluster_test
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_move_when_their_node_leaves() -> goverse::Result<()> {
    let nodes = cluster(3).await?;

    // Every node reaches the same object: its shard's owner runs the call.
    for (expected, node) in (1..).zip(&nodes) {
        let total = CounterClient::new(node, "home")
            .add(Int32Value { value: 1 })
            .await?;
        assert_eq!(total.value, expected);
        VisitsClient::new(node, "home").visit(Empty {}).await?;
    }

    // The node that owns `home`'s shard leaves the cluster.
    let shard = goverse::placement::shard_of("home", SHARDS);
    let view = nodes[0].cluster_view();
    let owner = view.current_owner(shard).expect("an owner").id.clone();
    let (leaving, staying): (Vec<Node>, Vec<Node>) =
        nodes.into_iter().partition(|node| node.id() == &*owner);
    leaving[0].shutdown().await;

    // The shard moved; the persistent `Visits` kept its count, while the
    // `Counter`, kept in memory only, starts again from zero.
    let visits = VisitsClient::new(&staying[0], "home");
    assert_eq!(visits.visit(Empty {}).await?.value, 4);
    let counter = CounterClient::new(&staying[1], "home");
    assert_eq!(counter.get(Empty {}).await?.value, 0);

    for node in &staying {
        node.shutdown().await;
    }
    Ok(())
}
// ANCHOR_END: cluster_test

// ANCHOR: gate_http
#[tokio::test]
async fn the_gate_answers_http_clients() -> goverse::Result<()> {
    let node = Node::builder().register::<Counter>().start().await?;
    let http = "127.0.0.1:0".parse().expect("an address");
    let gate = Gate::start(&node, GateOptions::default().http(http)).await?;
    let address = gate.http_address().expect("serving HTTP");

    let add = "/api/v1/objects/call/Counter/c1/Add";
    let (status, body) = post(address, add, r#"{"value": 5}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"response":5}"#));

    let reset = "/api/v1/objects/call/Counter/c1/Reset";
    let (status, body) = post(address, reset, "{}").await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""code":"UNKNOWN_METHOD""#), "{body}");

    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}

/// POSTs a JSON `body` to `path` at `address` over one HTTP/1.1
/// connection, as a browser or curl would; returns the status and body.
async fn post(address: SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the gate listens");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok());
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    (status.expect("a status line"), body.to_string())
}
// ANCHOR_END: gate_http

// ANCHOR: gate_client
#[tokio::test]
async fn a_rust_client_calls_through_the_gate() -> goverse::Result<()> {
    let node = Node::builder().register::<Counter>().start().await?;
    let grpc = "127.0.0.1:0".parse().expect("an address");
    let gate = Gate::start(&node, GateOptions::default().grpc(grpc)).await?;
    let address = gate.grpc_address().expect("serving gRPC");
    let client = Client::connect([format!("http://{address}")], ClientOptions::default()).await?;

    // The same typed proxy as inside a node, made from the client.
    let counter = CounterClient::new(&client, "c1");
    assert_eq!(counter.add(Int32Value { value: 5 }).await?.value, 5);
    assert_eq!(counter.get(Empty {}).await?.value, 5);

    // Errors keep their codes through the gate.
    let error = VisitsClient::new(&client, "v1")
        .visit(Empty {})
        .await
        .expect_err("Visits is not registered on this node");
    assert_eq!(error.code(), Code::UnknownObjectType);

    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: gate_client
