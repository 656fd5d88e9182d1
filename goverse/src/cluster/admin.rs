//! An operator's handle on a cluster: its state read from the
//! coordination store, without joining it.

use std::sync::Arc;

use super::ClusterView;
use super::MemoryStore;
use super::coordinator::view_of;
use super::store::{Keys, Store};
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
}
