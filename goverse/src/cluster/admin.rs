//! An operator's handle on a cluster: its state read from the
//! coordination store, without joining it.

use std::sync::Arc;

use super::MemoryStore;
use super::coordinator::{pin_write, view_of, write_shards};
use super::store::{Keys, Op, Store};
use super::{ClusterView, NodeSummary};
use crate::error::{Error, Result};

/// Reads a cluster's state (its live nodes, its leader, every shard's
/// owner, target, epoch and pin) straight from the coordination store, as
/// an admin tool or an inspector does, without registering as a node.
///
/// ```
/// # async fn demo() -> goverse::Result<()> {
/// use goverse::cluster::{ClusterAdmin, MemoryStore};
///
/// let store = MemoryStore::new();
/// let admin = ClusterAdmin::in_memory(&store, "/goverse");
/// // Nothing has started there yet.
/// assert_eq!(admin.view().await.unwrap_err().code(), "INVALID_CONFIG");
/// # Ok(())
/// # }
/// ```
pub struct ClusterAdmin {
    store: Arc<dyn Store>,
    keys: Keys,
    prefix: String,
}

impl std::fmt::Debug for ClusterAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdmin")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ClusterAdmin {
    /// A handle on the cluster under `prefix` in `store`, in this process
    /// (tests and demos).
    pub fn in_memory(store: &MemoryStore, prefix: &str) -> Self {
        Self::over(Arc::new(store.clone()), prefix)
    }

    pub(super) fn over(store: Arc<dyn Store>, prefix: &str) -> Self {
        Self {
            store,
            keys: Keys::new(prefix),
            prefix: prefix.to_string(),
        }
    }

    /// The cluster as the store holds it now. The view's `online` is
    /// false: the reader is not a member.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be read; `INVALID_CONFIG` when
    /// no cluster has started under the prefix.
    pub async fn view(&self) -> Result<ClusterView> {
        let (found, _) = self.store.get_prefix(&self.keys.root()).await?;
        view_of(&self.keys, found).ok_or_else(|| {
            Error::Config(format!(
                "no cluster has started under `{}`: no node has joined there",
                self.prefix
            ))
        })
    }

    /// The latest summary of every live node (a node's goes with its
    /// lease), by node id. A summary that cannot be read is left out.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be read.
    pub async fn summaries(&self) -> Result<Vec<NodeSummary>> {
        let (found, _) = self.store.get_prefix(&self.keys.summaries()).await?;
        Ok(found
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// Moves `shard` to `node` and pins it there: the cluster's leader
    /// hands it over as it does any move (drained, then fenced by a new
    /// epoch), and balancing leaves it there while `node` lives.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a shard the cluster does not have or a node
    /// that is not live, hosting objects and staying; `UNAVAILABLE` when
    /// the shard changed meanwhile (try again) or the store cannot be
    /// reached.
    pub async fn pin(&self, shard: u32, node: &str) -> Result<()> {
        self.write_pin(shard, Some(node)).await
    }

    /// Pins `shard` to the node serving it now, and returns that node.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a shard the cluster does not have or one
    /// without a live owner; otherwise as for [`pin`](ClusterAdmin::pin).
    pub async fn pin_in_place(&self, shard: u32) -> Result<Arc<str>> {
        let view = self.view().await?;
        let Some(owner) = view.current_owner(shard).map(|n| n.id.clone()) else {
            return Err(Error::Config(format!(
                "shard {shard} has no live owner to pin it to; move it to a node instead"
            )));
        };
        self.write_pin_in(&view, shard, Some(&owner)).await?;
        Ok(owner)
    }

    /// Unpins `shard`: balancing places it again.
    ///
    /// # Errors
    ///
    /// As for [`pin`](ClusterAdmin::pin).
    pub async fn unpin(&self, shard: u32) -> Result<()> {
        self.write_pin(shard, None).await
    }

    /// Drains `node`: the cluster gives it no shards and moves its own to
    /// the other nodes, the way a leaving node's move, while it keeps
    /// running (and routing calls). Shards pinned to it move too. The
    /// drain ends with [`undrain`](ClusterAdmin::undrain), or when the
    /// node restarts: its next incarnation takes shards again.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a node that is not live or hosts no objects,
    /// or when no other node would take its shards; `UNAVAILABLE` when the
    /// store cannot be reached.
    pub async fn drain(&self, node: &str) -> Result<()> {
        let view = self.view().await?;
        let Some(info) = view.nodes.get(node).filter(|n| n.hosts_objects) else {
            return Err(Error::Config(format!(
                "node `{node}` is not a live node hosting objects"
            )));
        };
        if !view
            .nodes
            .values()
            .any(|other| other.id != info.id && other.takes_shards())
        {
            return Err(Error::Config(format!(
                "node `{node}` is the last node taking shards: draining it would leave its shards nowhere to go"
            )));
        }
        let put = Op::Put {
            key: self.keys.drain(node),
            value: info.since.to_string().into_bytes(),
            lease: None,
        };
        self.store.txn(Vec::new(), vec![put]).await?;
        Ok(())
    }

    /// Ends a drain: the node takes shards again as balancing gives them.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be reached.
    pub async fn undrain(&self, node: &str) -> Result<()> {
        let delete = Op::Delete {
            key: self.keys.drain(node),
        };
        self.store.txn(Vec::new(), vec![delete]).await?;
        Ok(())
    }

    async fn write_pin(&self, shard: u32, node: Option<&str>) -> Result<()> {
        let view = self.view().await?;
        self.write_pin_in(&view, shard, node).await
    }

    /// Pins or unpins `shard` as `view` shows it: refused if it changed since.
    async fn write_pin_in(&self, view: &ClusterView, shard: u32, node: Option<&str>) -> Result<()> {
        let write = pin_write(view, shard, node)?;
        match write_shards(&*self.store, &self.keys, vec![write]).await? {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(format!(
                "shard {shard} changed while it was being pinned; try again"
            ))),
        }
    }
}
