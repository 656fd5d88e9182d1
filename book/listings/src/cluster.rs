//! Listings of "Running a cluster" (`book/src/cluster.md`).

use example_counter::{Counter, CounterClient};
use goverse::cluster::{ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;

/// Starts `node-1` of a cluster on etcd. Needs the etcd it names.
#[rustfmt::skip]
pub async fn start_cluster_node() -> Result<Node, Box<dyn std::error::Error>> {
// ANCHOR: etcd_node
use std::time::Duration;

use goverse::cluster::{ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;

let node = Node::builder()
    .register::<Counter>()
    .node_id("node-1")
    .listen("0.0.0.0:7001".parse()?)
    .advertise("10.0.0.5:7001")
    .coordinator(
        ClusterCoordinator::etcd(
            &["http://10.0.0.2:2379", "http://10.0.0.3:2379"],
            ClusterOptions::default()
                .prefix("/goverse")
                .lease_ttl(Duration::from_secs(5))
                .max_moving(1024),
        )
        .await?,
    )
    .start()
    .await?;
// ANCHOR_END: etcd_node
Ok(node)
}

/// Pins the shard of `room/lobby` to `node-2`.
#[rustfmt::skip]
pub async fn pin_the_lobby(node: &Node) -> goverse::Result<()> {
// ANCHOR: pin
let shard = goverse::placement::shard_of("room/lobby", node.cluster_view().shard_count());
node.pin_shard(shard, "node-2").await?;
// ANCHOR_END: pin
Ok(())
}

/// An object that watches the whole cluster: one of it, `Monitor/global`.
#[derive(Debug, Default)]
pub struct Monitor;

#[goverse::object(idle_timeout = "1d")]
impl Monitor {
    /// Answers while the monitor is active.
    pub async fn ping(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

/// An object that watches one shard: one per shard, `shard#N/watch`.
#[derive(Debug, Default)]
pub struct ShardWatch;

#[goverse::object(idle_timeout = "1d")]
impl ShardWatch {
    /// Answers while the watch is active.
    pub async fn ping(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

/// An object that looks after one node: one per node, `<address>/agent`.
#[derive(Debug, Default)]
pub struct NodeAgent;

#[goverse::object(idle_timeout = "1d")]
impl NodeAgent {
    /// Answers while the agent is active.
    pub async fn ping(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

/// Starts a node that activates one `Monitor`, a `ShardWatch` on every
/// shard and a `NodeAgent` of its own, without waiting for calls.
#[rustfmt::skip]
pub async fn start_with_auto_load() -> Result<Node, Box<dyn std::error::Error>> {
// ANCHOR: auto_load
use goverse::config::AutoLoad;

let node = Node::builder()
    .register::<Monitor>()
    .register::<ShardWatch>()
    .register::<NodeAgent>()
    .auto_load(AutoLoad::object("Monitor", "global"))       // Monitor/global
    .auto_load(AutoLoad::per_shard("ShardWatch", "watch"))  // ShardWatch/shard#N/watch
    .auto_load(AutoLoad::per_node("NodeAgent", "agent"))    // NodeAgent/<address>/agent
    .listen("127.0.0.1:0".parse()?)                         // the per-node id needs an address
    .start()
    .await?;
// ANCHOR_END: auto_load
Ok(node)
}

/// Starts a node of a cluster on etcd that hosts nothing and routes its
/// calls, and calls a counter through it. Needs the etcd it names.
#[rustfmt::skip]
pub async fn call_through_a_routing_node() -> goverse::Result<Int32Value> {
// ANCHOR: routing_only
let client = Node::builder()
    .node_id("frontend-1")
    .coordinator(ClusterCoordinator::etcd(&["http://10.0.0.2:2379"], ClusterOptions::default()).await?)
    .start()
    .await?;
let total = CounterClient::new(&client, "my-counter").add(Int32Value { value: 1 }).await?;
// ANCHOR_END: routing_only
Ok(total)
}

/// Starts a cluster of three nodes, `a`, `b` and `c`, in this process.
#[rustfmt::skip]
pub async fn start_in_memory_cluster() -> Result<Vec<Node>, Box<dyn std::error::Error>> {
// ANCHOR: memory_store
use goverse::cluster::{ClusterCoordinator, ClusterOptions, MemoryStore};

let store = MemoryStore::new();
let mut nodes = Vec::new();
for id in ["a", "b", "c"] {
    let node = Node::builder()
        .register::<Counter>()
        .node_id(id)
        .listen("127.0.0.1:0".parse()?)
        .coordinator(ClusterCoordinator::in_memory(&store, ClusterOptions::default()))
        .start()
        .await?;
    nodes.push(node);
}
// ANCHOR_END: memory_store
Ok(nodes)
}

#[cfg(test)]
mod tests {
    use goverse::cluster::MemoryStore;

    use super::*;
    use crate::testing::{PATIENCE, wait_until};

    /// Every node sees them all, no shard is moving, and together they
    /// serve every shard once.
    fn settled(nodes: &[Node]) -> bool {
        let served: u64 = nodes.iter().map(|node| node.stats().shards).sum();
        served == 8192
            && nodes.iter().all(|node| {
                let view = node.cluster_view();
                view.nodes.len() == nodes.len()
                    && (0..view.shard_count())
                        .all(|shard| view.current_owner(shard).is_some() && !view.is_moving(shard))
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_sharing_a_memory_store_call_each_others_objects() {
        let nodes = start_in_memory_cluster().await.expect("a cluster");
        wait_until("the three nodes serve every shard between them", || settled(&nodes)).await;
        // The same counter, through each node in turn, wherever it lives.
        for (i, node) in nodes.iter().enumerate() {
            let total =
                CounterClient::new(node, "shared").add(Int32Value { value: 1 }).await.expect("add");
            assert_eq!(total.value, i32::try_from(i).expect("small") + 1);
        }
        for node in &nodes {
            node.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pinned_shard_moves_to_its_node() {
        let store = MemoryStore::new();
        let mut nodes = Vec::new();
        for id in ["node-1", "node-2"] {
            let node = Node::builder()
                .register::<Counter>()
                .node_id(id)
                .listen("127.0.0.1:0".parse().expect("an address"))
                .coordinator(ClusterCoordinator::in_memory(&store, ClusterOptions::default()))
                .start()
                .await
                .expect("a node");
            nodes.push(node);
        }
        wait_until("the two nodes serve every shard between them", || settled(&nodes)).await;
        let node = &nodes[0];
        // A shard that changes meanwhile fails the pin with UNAVAILABLE:
        // try again.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while let Err(error) = pin_the_lobby(node).await {
            assert_eq!(error.code(), "UNAVAILABLE", "{error}");
            assert!(tokio::time::Instant::now() < deadline, "still failing: {error}");
            tokio::task::yield_now().await;
        }
        let shard = goverse::placement::shard_of("room/lobby", 8192);
        wait_until("the lobby's shard is served by node-2", || {
            let view = node.cluster_view();
            view.current_owner(shard).is_some_and(|owner| &*owner.id == "node-2")
                && view.shard(shard).is_some_and(|state| state.pinned)
        })
        .await;
        for node in &nodes {
            node.shutdown().await;
        }
    }

    #[tokio::test]
    async fn auto_load_activates_its_objects_at_start() {
        let node = start_with_auto_load().await.expect("a node");
        // Monitor/global, one ShardWatch per shard, and the node's agent.
        wait_until("the auto-loaded objects are active", || node.stats().active == 1 + 8192 + 1)
            .await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn pinning_fails_on_an_embedded_node() {
        let node = Node::builder().register::<Counter>().start().await.expect("a node");
        let error = pin_the_lobby(&node).await.expect_err("embedded");
        assert_eq!(error.code(), "INVALID_CONFIG");
        node.shutdown().await;
    }
}
