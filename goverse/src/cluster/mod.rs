//! The `Coordinator` seam: membership and shard ownership.
//!
//! A node asks its coordinator which node owns each shard, and under which
//! epoch. [`LocalCoordinator`] is the embedded, single-node implementation:
//! the node owns every shard. A coordinator backed by etcd implements the
//! same trait for clusters; the code above this seam does not change.

mod local;

pub use local::LocalCoordinator;

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Result;
use crate::object::BoxFuture;

/// The owner of one shard and the epoch of its ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOwner {
    /// The owning node's id.
    pub node: Arc<str>,
    /// Increases every time the shard changes owner; storage writes are fenced by it.
    pub epoch: u64,
}

/// Who owns each shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    owners: Vec<Option<ShardOwner>>,
}

impl ShardMap {
    /// A map of `shard_count` shards, all owned by `node` at `epoch`.
    pub fn owned_by(node: &str, shard_count: u32, epoch: u64) -> Self {
        let owner = ShardOwner {
            node: node.into(),
            epoch,
        };
        Self {
            owners: vec![Some(owner); shard_count as usize],
        }
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        u32::try_from(self.owners.len()).unwrap_or(u32::MAX)
    }

    /// The owner of `shard`, if it has one.
    pub fn owner(&self, shard: u32) -> Option<&ShardOwner> {
        self.owners.get(shard as usize).and_then(Option::as_ref)
    }
}

/// What a node learns when it joins.
#[derive(Debug)]
pub struct Membership {
    /// The cluster's shard count (agreed by every node).
    pub shard_count: u32,
    /// The shard map, updated as ownership changes.
    pub shards: watch::Receiver<Arc<ShardMap>>,
}

/// Membership and shard ownership for nodes.
pub trait Coordinator: Send + Sync + 'static {
    /// Registers node `node_id`, which expects `shard_count` shards.
    ///
    /// # Errors
    ///
    /// When the cluster was created with a different shard count, or the
    /// coordinator cannot be reached.
    fn join<'a>(&'a self, node_id: &'a str, shard_count: u32) -> BoxFuture<'a, Result<Membership>>;

    /// Deregisters the node; its shards go to others.
    ///
    /// # Errors
    ///
    /// When the coordinator cannot be reached.
    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<()>>;
}
