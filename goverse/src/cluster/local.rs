use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{ClusterView, Coordinator, Member, Membership, NodeInfo};
use crate::error::{Error, Result};
use crate::sync::MutexExt;

/// The embedded coordinator: one node, owning every shard.
///
/// It keeps the cluster rules that do not need a network: the shard count
/// is fixed by the first node to join, and it serves a single node (several
/// nodes form a cluster through a [`ClusterCoordinator`](super::ClusterCoordinator)).
#[derive(Debug, Default)]
pub struct LocalCoordinator {
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    shard_count: Option<u32>,
    member: Option<String>,
    incarnation: i64,
    /// Kept so the node's view stays open (it never changes).
    view: Option<watch::Sender<Arc<ClusterView>>>,
}

impl LocalCoordinator {
    /// A coordinator no node has joined yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Coordinator for LocalCoordinator {
    async fn join(&self, member: &Member, shard_count: u32) -> Result<Membership> {
        let (id, address) = (member.id.as_str(), member.address.as_str());
        let mut state = self.state.locked();
        if let Some(existing) = state.shard_count
            && existing != shard_count
        {
            return Err(Error::Config(format!(
                "this cluster has {existing} shards but node `{id}` is configured with {shard_count}; \
                     use the same shard count on every node"
            )));
        }
        if let Some(member) = &state.member {
            return Err(Error::Config(format!(
                "the local coordinator serves one node and `{member}` has joined; run a cluster for several nodes"
            )));
        }
        state.shard_count = Some(shard_count);
        state.member = Some(id.to_string());
        state.incarnation += 1;
        let node = NodeInfo {
            id: id.into(),
            address: address.into(),
            hosts_objects: true,
            leaving: false,
            draining: false,
            since: state.incarnation,
        };
        let (sender, view) = watch::channel(Arc::new(ClusterView::single(node, shard_count)));
        state.view = Some(sender);
        Ok(Membership { shard_count, view })
    }

    async fn hand_over(&self, _shards: &[(u32, u64)]) -> Result<()> {
        Ok(())
    }

    async fn begin_leave(&self) -> Result<()> {
        Ok(())
    }

    async fn raise_epoch(&self, shard: u32, at_least: u64) -> Result<()> {
        let state = self.state.locked();
        match &state.view {
            Some(view) if (shard as usize) < view.borrow().shards.len() => {
                view.send_if_modified(|view| {
                    if view.shards[shard as usize].epoch >= at_least {
                        return false;
                    }
                    let mut shards = (*view.shards).clone();
                    shards[shard as usize].epoch = at_least;
                    let mut next = (**view).clone();
                    next.shards = Arc::new(shards);
                    *view = Arc::new(next);
                    true
                });
                Ok(())
            }
            Some(_) => Err(Error::Config(format!("no shard {shard}"))),
            None => Err(Error::Unavailable("no node has joined".into())),
        }
    }

    async fn leave(&self) -> Result<()> {
        self.state.locked().member = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            address: String::new(),
            hosts_objects: true,
        }
    }

    #[tokio::test]
    async fn the_first_node_fixes_the_shard_count() {
        let coordinator = LocalCoordinator::new();
        let membership = coordinator.join(&member("a"), 16).await.expect("join");
        let view = membership.view.borrow().clone();
        assert_eq!(view.current_owner(3).map(|n| &*n.id), Some("a"));
        coordinator.leave().await.expect("leave");
        let error = coordinator.join(&member("b"), 32).await.unwrap_err();
        assert_eq!(error.code(), "INVALID_CONFIG");
        assert!(error.to_string().contains("16 shards"), "{error}");
        coordinator.join(&member("b"), 16).await.expect("rejoin");
    }

    #[tokio::test]
    async fn it_serves_one_node() {
        let coordinator = LocalCoordinator::new();
        let _a = coordinator.join(&member("a"), 8).await.expect("join");
        assert!(coordinator.join(&member("b"), 8).await.is_err());
    }
}
