//! The sharding demo's objects: persistent `Counter`s that the load adds
//! to with reliable calls, a `ShardMonitor` auto-loaded on every shard
//! (`shard#N/monitor`), which counts the activations of its shard (one
//! per move or failover), and a `NodeMonitor` auto-loaded on every node
//! (`<address>/monitor`), which says which node it is and since when.

use goverse::config::AutoLoad;
use goverse::prelude::*;

/// A counter the load adds to; persistent, so a reliable add counts once.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    value: i64,
}

#[goverse::object(persistent)]
impl Counter {
    /// Adds `request.value` and returns the total.
    pub async fn add(&mut self, _ctx: &Context, request: Int64Value) -> Result<Int64Value> {
        self.value += request.value;
        Ok(Int64Value { value: self.value })
    }

    /// The total.
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> Result<Int64Value> {
        Ok(Int64Value { value: self.value })
    }
}

// ANCHOR: monitors
/// Auto-loaded on every shard: counts how often its shard was activated
/// (it starts on a node, moves, fails over), and where it last was.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ShardMonitor {
    activations: i64,
    node: String,
}

#[goverse::object(persistent)]
impl ShardMonitor {
    /// Where the shard is and how often it was activated: `node activations`.
    pub async fn report(&self, _ctx: &Context, _request: Empty) -> Result<StringValue> {
        Ok(StringValue {
            value: format!("{} {}", self.node, self.activations),
        })
    }

    #[on_activate]
    async fn activated(&mut self, ctx: &Context) -> Result<()> {
        self.activations += 1;
        self.node = ctx.node_id().to_string();
        Ok(())
    }
}

/// Auto-loaded on every node: which node it is, and when it started.
#[derive(Debug, Default)]
pub struct NodeMonitor {
    node: String,
    since_unix_ms: u128,
}

#[goverse::object]
impl NodeMonitor {
    /// `node since_unix_ms`.
    pub async fn report(&self, _ctx: &Context, _request: Empty) -> Result<StringValue> {
        Ok(StringValue {
            value: format!("{} {}", self.node, self.since_unix_ms),
        })
    }

    #[on_activate]
    async fn activated(&mut self, ctx: &Context) -> Result<()> {
        self.node = ctx.node_id().to_string();
        self.since_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(())
    }
}

/// A node of the demo: the three types, and the monitors auto-loaded.
pub fn builder() -> goverse::NodeBuilder {
    Node::builder()
        .register::<Counter>()
        .register::<ShardMonitor>()
        .register::<NodeMonitor>()
        .auto_load(AutoLoad::per_shard("ShardMonitor", "monitor"))
        .auto_load(AutoLoad::per_node("NodeMonitor", "monitor"))
}
// ANCHOR_END: monitors
