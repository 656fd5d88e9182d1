use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::{Coordinator, Membership, ShardMap};
use crate::error::{Error, Result};
use crate::object::BoxFuture;

/// The embedded coordinator: one node, owning every shard.
///
/// It keeps the cluster rules that do not need a network: the shard count
/// is fixed by the first node to join, and it serves a single node (several
/// nodes form a cluster through etcd).
#[derive(Debug, Default)]
pub struct LocalCoordinator {
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    shard_count: Option<u32>,
    member: Option<String>,
    epoch: u64,
}

impl LocalCoordinator {
    /// A coordinator no node has joined yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Coordinator for LocalCoordinator {
    fn join<'a>(&'a self, node_id: &'a str, shard_count: u32) -> BoxFuture<'a, Result<Membership>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let result = (|| {
            if let Some(existing) = state.shard_count
                && existing != shard_count
            {
                return Err(Error::Unavailable(format!(
                    "this cluster has {existing} shards but node `{node_id}` is configured with {shard_count}; \
                     use the same shard count on every node"
                )));
            }
            if let Some(member) = &state.member {
                return Err(Error::Unavailable(format!(
                    "the local coordinator serves one node and `{member}` has joined; run a cluster on etcd for several nodes"
                )));
            }
            state.shard_count = Some(shard_count);
            state.member = Some(node_id.to_string());
            state.epoch += 1;
            let map = ShardMap::owned_by(node_id, shard_count, state.epoch);
            let (_sender, shards) = watch::channel(Arc::new(map));
            Ok(Membership {
                shard_count,
                shards,
            })
        })();
        Box::pin(std::future::ready(result))
    }

    fn leave<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.member.as_deref() == Some(node_id) {
            state.member = None;
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_node_fixes_the_shard_count() {
        let coordinator = LocalCoordinator::new();
        let membership = coordinator.join("a", 16).await.expect("join");
        assert_eq!(
            membership.shards.borrow().owner(3).map(|o| &*o.node),
            Some("a")
        );
        coordinator.leave("a").await.expect("leave");
        let error = coordinator.join("b", 32).await.unwrap_err();
        assert!(error.to_string().contains("16 shards"), "{error}");
        let again = coordinator.join("b", 16).await.expect("rejoin");
        assert_eq!(again.shards.borrow().owner(0).map(|o| o.epoch), Some(2));
    }

    #[tokio::test]
    async fn it_serves_one_node() {
        let coordinator = LocalCoordinator::new();
        let _a = coordinator.join("a", 8).await.expect("join");
        assert!(coordinator.join("b", 8).await.is_err());
    }
}
