//! Listings of "Architecture" (`book/src/architecture.md`).

use example_counter::Counter;
use goverse::cluster::{ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;
use goverse::storage::MemoryStorage;

// ANCHOR: coordinator
use goverse::Result;
use goverse::cluster::{Coordinator, CoordinatorCounts, Member, Membership, NodeSummary};

/// Hands every method of a seam to the implementation it wraps: the place
/// to add logging or metrics around a coordinator or a storage.
#[derive(Debug)]
pub struct Forward<T>(pub T);

impl<C: Coordinator> Coordinator for Forward<C> {
    async fn join(&self, member: &Member, shard_count: u32) -> Result<Membership> {
        self.0.join(member, shard_count).await
    }

    async fn hand_over(&self, shards: &[(u32, u64)]) -> Result<()> {
        self.0.hand_over(shards).await
    }

    async fn begin_leave(&self) -> Result<()> {
        self.0.begin_leave().await
    }

    async fn leave(&self) -> Result<()> {
        self.0.leave().await
    }

    // Default: INVALID_CONFIG, this coordinator does not place shards.
    async fn pin(&self, shard: u32, node: Option<&str>) -> Result<()> {
        self.0.pin(shard, node).await
    }

    // Default: INVALID_CONFIG, this coordinator cannot raise a shard's epoch.
    async fn raise_epoch(&self, shard: u32, at_least: u64) -> Result<()> {
        self.0.raise_epoch(shard, at_least).await
    }

    // Default: nothing counted.
    fn counts(&self) -> CoordinatorCounts {
        self.0.counts()
    }

    // Default: published nowhere.
    async fn publish_summary(&self, summary: &NodeSummary) -> Result<()> {
        self.0.publish_summary(summary).await
    }
}
// ANCHOR_END: coordinator

// ANCHOR: storage
use std::time::Duration;

use goverse::storage::{CallRecord, Claim, Fence, StateWrite, Storage, StoredState};

impl<S: Storage> Storage for Forward<S> {
    async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
        self.0.load(type_name, id).await
    }

    async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
        self.0.save(type_name, id, data, fence).await
    }

    // Default: save each write in turn; refuse those with a call record.
    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
        self.0.save_batch(writes).await
    }

    // Default: 1. PostgreSQL: 2 batches in flight; SQLite and memory: 1.
    fn concurrent_batches(&self) -> usize {
        self.0.concurrent_batches()
    }

    // Default: STORAGE_ERROR, this storage records no reliable calls.
    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> Result<Option<CallRecord>> {
        self.0.load_call(type_name, id, call_id).await
    }

    // Default: nothing to purge.
    async fn purge_calls(&self, age: Duration) -> Result<u64> {
        self.0.purge_calls(age).await
    }

    // Default: nothing to purge.
    async fn purge_tombstones(&self, age: Duration) -> Result<u64> {
        self.0.purge_tombstones(age).await
    }

    // Default: load, and save back at the newer epoch (a row holding no
    // state, `null`, if there was none).
    async fn claim(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.0.claim(type_name, id, fence).await
    }

    // Default: claim, then load.
    async fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> Result<Option<StoredState>> {
        self.0.claim_and_load(type_name, id, fence).await
    }

    // Default: claim_and_load each in turn.
    async fn claim_batch(&self, claims: &[Claim]) -> Vec<Result<Option<StoredState>>> {
        self.0.claim_batch(claims).await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.0.delete(type_name, id, fence).await
    }
}
// ANCHOR_END: storage

/// Starts a node on the etcd at 127.0.0.1:2379, with its state in memory.
/// Needs that etcd.
#[rustfmt::skip]
pub async fn start_with_both_seams() -> std::result::Result<Node, Box<dyn std::error::Error>> {
// ANCHOR: builder
let node = Node::builder()
    .register::<Counter>()
    .listen("127.0.0.1:0".parse()?)
    .coordinator(ClusterCoordinator::etcd(&["http://127.0.0.1:2379"], ClusterOptions::default()).await?)
    .storage(MemoryStorage::new())
    .start()
    .await?;
// ANCHOR_END: builder
Ok(node)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use goverse::cluster::LocalCoordinator;

    use super::*;
    use crate::state::{Account, AccountClient};

    #[tokio::test]
    async fn a_node_runs_on_forwarded_seams() {
        let storage = Arc::new(MemoryStorage::new());
        let node = Node::builder()
            .register::<Account>()
            .coordinator(Forward(LocalCoordinator::new()))
            .storage(Forward(Arc::clone(&storage)))
            .start()
            .await
            .expect("a node");
        assert_eq!(node.stats().shards, 8192, "the local coordinator gave it every shard");
        let account = AccountClient::new(&node, "erin");
        assert_eq!(account.deposit(Int64Value { value: 3 }).await.expect("deposit").value, 3);
        let stored = storage.load("Account", "erin").await.expect("loaded").expect("a row");
        assert_eq!(stored.epoch, 1);
        node.shutdown().await;
    }
}
