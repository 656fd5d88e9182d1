//! The `Coordinator` seam: membership, leadership and shard ownership.
//!
//! A node joins through a coordinator and from then on watches a
//! [`ClusterView`]: the live nodes, and for every shard its owner, the node
//! it is moving to, its ownership epoch and whether it is pinned. Two kinds
//! of coordinator exist:
//!
//! - [`LocalCoordinator`], the embedded default: one node owning every shard;
//! - [`ClusterCoordinator`], the cluster protocol over a coordination store:
//!   etcd (feature `etcd`) in production, or a [`MemoryStore`] shared by
//!   several nodes in one process for tests and demos.
//!
//! An operator reads a cluster's state without joining it through
//! [`ClusterAdmin`].
//!
//! Everything above this seam (routing, turns, storage fencing, proxies) is
//! the same code in every mode.

mod admin;
mod coordinator;
#[cfg(feature = "etcd")]
mod etcd;
mod local;
mod memory;
mod store;

pub use admin::{AUDIT_KEPT, AdminAction, AuditEntry, ClusterAdmin, ClusterSnapshot};
pub use coordinator::{ClusterCoordinator, ClusterOptions};
pub use local::LocalCoordinator;
pub use memory::MemoryStore;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Result;
use crate::future::BoxFuture;

/// A node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: Arc<str>,
    /// Where other nodes reach it (`host:port`).
    pub address: Arc<str>,
    /// It hosts objects; a node without object types only routes calls
    /// and gets no shards.
    pub hosts_objects: bool,
    /// It is shutting down: it gets no new shards and hands its own over.
    pub leaving: bool,
    /// An operator drained it (before a restart, say): like a leaving
    /// node it gets no shards and hands its own over, but it keeps
    /// running. Its next incarnation takes shards again.
    pub draining: bool,
    /// The coordination revision at which this incarnation of the node
    /// registered. Ownership recorded before it belonged to an earlier
    /// incarnation with the same id and is not trusted.
    pub since: i64,
}

impl NodeInfo {
    /// Whether the cluster gives this node shards: it hosts objects, and
    /// is neither leaving nor drained.
    pub fn takes_shards(&self) -> bool {
        self.hosts_objects && !self.leaving && !self.draining
    }
}

/// What a node last said of itself: published by every node of a
/// cluster at its `summary_interval` (one small write per node per
/// interval, never one per call), read by `goverse status` and
/// [`ClusterAdmin::summaries`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct NodeSummary {
    /// The node's id.
    pub node: String,
    /// The goverse version the node runs.
    pub version: String,
    /// When the summary was made, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// How often the node publishes one, in milliseconds: a summary much
    /// older than this says the node has stopped.
    pub interval_ms: u64,
    /// Objects active on the node now, by type.
    pub objects: BTreeMap<String, u64>,
    /// Objects activated since the node started.
    pub activations: u64,
    /// Calls the node served since it started, when it counts them (call
    /// metrics on).
    pub calls: Option<u64>,
    /// The same calls by object type (empty without call metrics).
    #[serde(default)]
    pub calls_by_type: BTreeMap<String, u64>,
    /// The same calls by duration: per bucket, not cumulative, each
    /// bucket's upper bound in seconds (the last unbounded, written as
    /// `null`); empty without call metrics. Two summaries' difference
    /// gives the latencies of the calls between them.
    #[serde(default)]
    pub call_durations: Vec<(Option<f64>, u64)>,
    /// The same buckets by object type: each type's counts, bucket by
    /// bucket in the order of `call_durations` (empty without call
    /// metrics).
    #[serde(default)]
    pub call_durations_by_type: BTreeMap<String, Vec<u64>>,
    /// Shards the node serves now.
    pub shards: u64,
    /// Whether the node should be sent traffic (what `/ready` answers).
    pub ready: bool,
    /// Why not, when it is not ready.
    #[serde(default)]
    pub unready: Option<String>,
    /// Whether the node has proven its lease (its membership of the
    /// cluster) recently enough to serve its shards.
    #[serde(default)]
    pub membership_proven: bool,
    /// Clients connected to the gate running on this node (within their
    /// reconnect grace), when a gate runs there.
    #[serde(default)]
    pub gate_clients: Option<u64>,
}

/// One shard's ownership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardState {
    /// The node serving the shard, if any.
    pub owner: Option<Arc<str>>,
    /// The node the shard should be served by; differs from `owner` while
    /// the shard moves.
    pub target: Option<Arc<str>>,
    /// Increases on every change of owner; storage writes are fenced by it.
    pub epoch: u64,
    /// A pinned shard is not moved to balance load.
    pub pinned: bool,
    /// The coordination revision of the last change to this shard.
    pub revision: i64,
}

/// What a node knows of the cluster at one moment.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The live nodes by id.
    pub nodes: Arc<BTreeMap<Arc<str>, NodeInfo>>,
    /// Every shard, by number.
    pub shards: Arc<Vec<ShardState>>,
    /// The node acting as leader, if one is elected.
    pub leader: Option<Arc<str>>,
    /// Whether this node's membership is current. A node that can no longer
    /// prove it (its lease lapsed) serves nothing until it rejoins.
    pub online: bool,
}

impl ClusterView {
    /// A view of one node owning every shard (the embedded mode).
    pub fn single(node: NodeInfo, shard_count: u32) -> Self {
        let id = node.id.clone();
        let state = ShardState {
            owner: Some(id.clone()),
            target: Some(id.clone()),
            epoch: 1,
            pinned: false,
            revision: node.since,
        };
        Self {
            nodes: Arc::new(BTreeMap::from([(id.clone(), node)])),
            shards: Arc::new(vec![state; shard_count as usize]),
            leader: Some(id),
            online: true,
        }
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        u32::try_from(self.shards.len()).unwrap_or(u32::MAX)
    }

    /// The state of `shard`.
    pub fn shard(&self, shard: u32) -> Option<&ShardState> {
        self.shards.get(shard as usize)
    }

    /// The owner of `shard` if it is a live node of this incarnation: the
    /// node whose ownership is trusted.
    pub fn current_owner(&self, shard: u32) -> Option<&NodeInfo> {
        let state = self.shard(shard)?;
        let node = self.nodes.get(state.owner.as_ref()?)?;
        (state.revision >= node.since).then_some(node)
    }

    /// Whether `shard` is moving: its target is another node than its owner.
    pub fn is_moving(&self, shard: u32) -> bool {
        self.shard(shard)
            .is_some_and(|s| s.target.is_some() && s.target != s.owner)
    }

    /// The live node whose address is `address`.
    pub fn node_at(&self, address: &str) -> Option<&NodeInfo> {
        self.nodes.values().find(|n| &*n.address == address)
    }
}

/// A node asking to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: String,
    /// Where other nodes reach it (`host:port`).
    pub address: String,
    /// Whether it hosts objects (and so should get shards).
    pub hosts_objects: bool,
}

/// What a node gets when it joins.
#[derive(Debug)]
pub struct Membership {
    /// The cluster's shard count (agreed by every node).
    pub shard_count: u32,
    /// The cluster as this node sees it, updated as it changes.
    pub view: watch::Receiver<Arc<ClusterView>>,
}

/// What a coordinator's work with its store came to since it started,
/// for the node's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoordinatorCounts {
    /// Operations on the store (etcd) that failed.
    pub errors: u64,
    /// Times the node's lease was renewed.
    pub lease_renewals: u64,
}

/// Membership and shard ownership for one node.
///
/// A node owns its coordinator: one coordinator per node. Implement the
/// methods as `async fn`s; their futures must be `Send`.
pub trait Coordinator: Send + Sync + 'static {
    /// Registers the node `member`, which expects `shard_count` shards.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when the cluster has a different shard count;
    /// `UNAVAILABLE` when the coordinator cannot be reached.
    fn join(
        &self,
        member: &Member,
        shard_count: u32,
    ) -> impl Future<Output = Result<Membership>> + Send;

    /// The node has drained these shards (`(shard, epoch)`): ownership goes
    /// to their targets, with the epoch increased.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be reached.
    fn hand_over(&self, shards: &[(u32, u64)]) -> impl Future<Output = Result<()>> + Send;

    /// The node is shutting down: it should get no new shards and its own
    /// should be moved away.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be reached.
    fn begin_leave(&self) -> impl Future<Output = Result<()>> + Send;

    /// Deregisters the node.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be reached.
    fn leave(&self) -> impl Future<Output = Result<()>> + Send;

    /// Pins `shard` to node `node` (it moves there and stays while that
    /// node lives), or unpins it with `None` (it is balanced again).
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for an unknown shard or node, or a coordinator
    /// without placement (the embedded one); `UNAVAILABLE` when the
    /// coordinator cannot be reached or the shard changed meanwhile.
    fn pin(&self, shard: u32, node: Option<&str>) -> impl Future<Output = Result<()>> + Send {
        let _ = (shard, node);
        std::future::ready(Err(crate::error::Error::Config(
            "this coordinator does not place shards".into(),
        )))
    }

    /// Raises the epoch of `shard`, which this node owns, to at least
    /// `at_least`, keeping its owner: storage holds a write of one of its
    /// objects at an epoch this node's is not past, which only an earlier
    /// incarnation of the cluster can have made (a cluster re-created under
    /// a new prefix or on a wiped or restored coordination store, or an
    /// embedded node on a cluster's database). Epochs in one incarnation
    /// only grow, so no current owner is fenced out: a node whose view is
    /// stale has its compare-and-swap refused.
    ///
    /// The new epoch reaches the node through its view.
    ///
    /// # Errors
    ///
    /// `SHARD_MOVED` when the node does not own the shard (or it is
    /// moving); `UNAVAILABLE` when the coordinator cannot be reached or the
    /// shard changed meanwhile (wait for the view and try again);
    /// `INVALID_CONFIG` for a coordinator that cannot raise epochs.
    fn raise_epoch(&self, shard: u32, at_least: u64) -> impl Future<Output = Result<()>> + Send {
        let _ = (shard, at_least);
        std::future::ready(Err(crate::error::Error::Config(
            "this coordinator cannot raise a shard's epoch".into(),
        )))
    }

    /// How the coordinator's work with its store went so far (default:
    /// nothing counted, for a coordinator without a store).
    fn counts(&self) -> CoordinatorCounts {
        CoordinatorCounts::default()
    }

    /// Publishes the node's summary for operators, replacing its last one
    /// (default: nowhere, for a coordinator without a store).
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be reached.
    fn publish_summary(&self, summary: &NodeSummary) -> impl Future<Output = Result<()>> + Send {
        let _ = summary;
        std::future::ready(Ok(()))
    }

    /// Stops all activity at once without deregistering, as if the process
    /// died: the cluster notices when the node's lease expires. For tests
    /// of failover (feature `test-util`).
    #[cfg(feature = "test-util")]
    fn crash(&self) {}
}

/// [`Coordinator`] behind a pointer: the node keeps its coordinator as
/// `Arc<dyn ErasedCoordinator>`, boxing each call's future.
pub(crate) trait ErasedCoordinator: Send + Sync + 'static {
    fn join<'a>(
        &'a self,
        member: &'a Member,
        shard_count: u32,
    ) -> BoxFuture<'a, Result<Membership>>;
    fn hand_over<'a>(&'a self, shards: &'a [(u32, u64)]) -> BoxFuture<'a, Result<()>>;
    fn begin_leave(&self) -> BoxFuture<'_, Result<()>>;
    fn leave(&self) -> BoxFuture<'_, Result<()>>;
    fn pin<'a>(&'a self, shard: u32, node: Option<&'a str>) -> BoxFuture<'a, Result<()>>;
    fn raise_epoch(&self, shard: u32, at_least: u64) -> BoxFuture<'_, Result<()>>;
    #[cfg_attr(not(feature = "ops"), allow(dead_code))]
    fn counts(&self) -> CoordinatorCounts;
    fn publish_summary<'a>(&'a self, summary: &'a NodeSummary) -> BoxFuture<'a, Result<()>>;
    #[cfg(feature = "test-util")]
    fn crash(&self);
}

impl<C: Coordinator> ErasedCoordinator for C {
    fn join<'a>(
        &'a self,
        member: &'a Member,
        shard_count: u32,
    ) -> BoxFuture<'a, Result<Membership>> {
        Box::pin(Coordinator::join(self, member, shard_count))
    }

    fn hand_over<'a>(&'a self, shards: &'a [(u32, u64)]) -> BoxFuture<'a, Result<()>> {
        Box::pin(Coordinator::hand_over(self, shards))
    }

    fn begin_leave(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Coordinator::begin_leave(self))
    }

    fn leave(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Coordinator::leave(self))
    }

    fn pin<'a>(&'a self, shard: u32, node: Option<&'a str>) -> BoxFuture<'a, Result<()>> {
        Box::pin(Coordinator::pin(self, shard, node))
    }

    fn raise_epoch(&self, shard: u32, at_least: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(Coordinator::raise_epoch(self, shard, at_least))
    }

    fn counts(&self) -> CoordinatorCounts {
        Coordinator::counts(self)
    }

    fn publish_summary<'a>(&'a self, summary: &'a NodeSummary) -> BoxFuture<'a, Result<()>> {
        Box::pin(Coordinator::publish_summary(self, summary))
    }

    #[cfg(feature = "test-util")]
    fn crash(&self) {
        Coordinator::crash(self);
    }
}

/// Now, in milliseconds since the Unix epoch (summaries' and audit
/// entries' time).
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
