//! An operator's handle on a cluster: its state read from the
//! coordination store, without joining it.

use std::sync::Arc;

use super::MemoryStore;
use super::coordinator::{pin_write, view_of, write_shards};
use super::store::{Keys, Op, Store};
use super::{ClusterView, NodeSummary};
use crate::error::{Error, Result};

/// Entries the audit log keeps: older ones are dropped as new ones come.
pub const AUDIT_KEPT: usize = 200;

/// An operator's change to a cluster, as [`ClusterAdmin::apply`] takes it
/// and the audit log records it. In JSON, the kind is the `action` field:
/// `{"action": "move", "shard": 12, "node": "node-2"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AdminAction {
    /// Moves a shard to a node and pins it there ([`ClusterAdmin::pin`]).
    Move {
        /// The shard.
        shard: u32,
        /// The node it goes to.
        node: String,
    },
    /// Pins a shard to the node serving it ([`ClusterAdmin::pin_in_place`]).
    Pin {
        /// The shard.
        shard: u32,
    },
    /// Unpins a shard ([`ClusterAdmin::unpin`]).
    Unpin {
        /// The shard.
        shard: u32,
    },
    /// Drains a node ([`ClusterAdmin::drain`]).
    Drain {
        /// The node.
        node: String,
    },
    /// Ends a node's drain ([`ClusterAdmin::undrain`]).
    Undrain {
        /// The node.
        node: String,
    },
}

impl std::fmt::Display for AdminAction {
    /// The action as `move shard=12 node=node-2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAction::Move { shard, node } => write!(f, "move shard={shard} node={node}"),
            AdminAction::Pin { shard } => write!(f, "pin shard={shard}"),
            AdminAction::Unpin { shard } => write!(f, "unpin shard={shard}"),
            AdminAction::Drain { node } => write!(f, "drain node={node}"),
            AdminAction::Undrain { node } => write!(f, "undrain node={node}"),
        }
    }
}

/// One action in a cluster's audit log: who did what, when, and how it
/// went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Who: an inspector's operator (from their token), or the user
    /// running a `goverse` command.
    pub user: String,
    /// What.
    pub action: AdminAction,
    /// `OK`, or the error's code and message.
    pub outcome: String,
}

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
        self.view_from(found)
    }

    /// The view, the nodes' summaries and the audit log together, from one
    /// read of the store (what [`view`](ClusterAdmin::view),
    /// [`summaries`](ClusterAdmin::summaries) and
    /// [`audit_log`](ClusterAdmin::audit_log) give, in one round trip).
    ///
    /// # Errors
    ///
    /// As for [`view`](ClusterAdmin::view).
    pub async fn snapshot(&self) -> Result<ClusterSnapshot> {
        let (found, _) = self.store.get_prefix(&self.keys.root()).await?;
        let (summaries, audit) = (self.keys.summaries(), self.keys.audit());
        let summaries = summaries_of(found.iter().filter(|kv| kv.key.starts_with(&summaries)));
        let audit = audit_of(found.iter().filter(|kv| kv.key.starts_with(&audit)));
        Ok(ClusterSnapshot {
            view: self.view_from(found)?,
            summaries,
            audit,
        })
    }

    /// The view `found` (every key of the cluster) makes.
    fn view_from(&self, found: Vec<super::store::KeyValue>) -> Result<ClusterView> {
        view_of(&self.keys, found).ok_or_else(|| {
            Error::Config(format!(
                "no cluster has started under `{}`: no node has joined there",
                self.prefix
            ))
        })
    }

    /// Follows the cluster's state in the store: the receiver's value is
    /// the store's revision, and changes whenever anything of the cluster
    /// is written or goes (a node, a shard, a drain, a summary, an audit
    /// entry), so a watcher re-reads only when there is something new. A
    /// broken watch is re-established by itself; following stops once
    /// every receiver is dropped.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be read at the start.
    pub async fn watch(&self) -> Result<tokio::sync::watch::Receiver<i64>> {
        let root = self.keys.root();
        let (_, revision) = self.store.get_prefix(&root).await?;
        let (changes, receiver) = tokio::sync::watch::channel(revision);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut from = revision + 1;
            let mut backoff = std::time::Duration::from_millis(50);
            loop {
                if let Ok(mut stream) = store.watch_prefix(&root, from).await {
                    while let Some(Ok(events)) = stream.recv().await {
                        backoff = std::time::Duration::from_millis(50);
                        let latest = events.iter().map(|event| event.mod_revision()).max();
                        if let Some(latest) = latest {
                            from = latest + 1;
                            if changes.send(latest).is_err() {
                                return;
                            }
                        }
                    }
                }
                if changes.is_closed() {
                    return;
                }
                // The watch broke: wait, then watch again from what the
                // store holds now (changes meanwhile count as one).
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                if let Ok((_, revision)) = store.get_prefix(&root).await {
                    from = revision + 1;
                    if changes.send(revision).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }

    /// The latest summary of every live node (a node's goes with its
    /// lease), by node id. A summary that cannot be read is left out.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be read.
    pub async fn summaries(&self) -> Result<Vec<NodeSummary>> {
        let (found, _) = self.store.get_prefix(&self.keys.summaries()).await?;
        Ok(summaries_of(found.iter()))
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

    /// Takes `action` for `user` and records it, with its outcome, in the
    /// cluster's audit log, which [`audit_log`](ClusterAdmin::audit_log)
    /// reads (the inspector's page shows it). Returns the node a moved or
    /// pinned shard stays on, none for the other actions.
    ///
    /// The record is kept even when the action fails; an action that
    /// succeeds is not undone if its record cannot be written (that is
    /// logged).
    ///
    /// # Errors
    ///
    /// The action's: as for the method it names.
    pub async fn apply(&self, user: &str, action: &AdminAction) -> Result<Option<Arc<str>>> {
        let done = match action {
            AdminAction::Move { shard, node } => self
                .pin(*shard, node)
                .await
                .map(|()| Some(node.as_str().into())),
            AdminAction::Pin { shard } => self.pin_in_place(*shard).await.map(Some),
            AdminAction::Unpin { shard } => self.unpin(*shard).await.map(|()| None),
            AdminAction::Drain { node } => self.drain(node).await.map(|()| None),
            AdminAction::Undrain { node } => self.undrain(node).await.map(|()| None),
        };
        let entry = AuditEntry {
            at_unix_ms: super::unix_now_ms(),
            user: user.to_string(),
            action: action.clone(),
            outcome: match &done {
                Ok(_) => "OK".to_string(),
                Err(error) => format!("{}: {error}", error.code()),
            },
        };
        tracing::debug!(user, %action, outcome = %entry.outcome, "operator action");
        if let Err(error) = self.record(&entry).await {
            tracing::warn!(%error, %action, "the action's audit record was not written");
        }
        done
    }

    /// The cluster's audit log, oldest first: the last [`AUDIT_KEPT`]
    /// actions taken through [`apply`](ClusterAdmin::apply).
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the store cannot be read.
    pub async fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        let (found, _) = self.store.get_prefix(&self.keys.audit()).await?;
        Ok(audit_of(found.iter()))
    }

    /// Adds `entry` to the audit log and drops the oldest past
    /// [`AUDIT_KEPT`].
    async fn record(&self, entry: &AuditEntry) -> Result<()> {
        use std::hash::BuildHasher;
        // The store's revisions order the entries; the key only has to be
        // new, and readable.
        let nonce = std::collections::hash_map::RandomState::new().hash_one(&entry.user) as u32;
        let key = format!("{}{:016}-{nonce:08x}", self.keys.audit(), entry.at_unix_ms);
        let value = serde_json::to_vec(entry)
            .map_err(|error| Error::Internal(format!("an audit entry did not encode: {error}")))?;
        let put = Op::Put {
            key,
            value,
            lease: None,
        };
        self.store.txn(Vec::new(), vec![put]).await?;
        let (mut found, _) = self.store.get_prefix(&self.keys.audit()).await?;
        if found.len() > AUDIT_KEPT {
            found.sort_by_key(|kv| kv.create_revision);
            let extra = found.len() - AUDIT_KEPT;
            let deletes = found
                .into_iter()
                .take(extra)
                .map(|kv| Op::Delete { key: kv.key })
                .collect();
            self.store.txn(Vec::new(), deletes).await?;
        }
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

/// A cluster at one moment: what [`ClusterAdmin::snapshot`] reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterSnapshot {
    /// The cluster's nodes, leader and shards.
    pub view: ClusterView,
    /// The latest summary of every live node.
    pub summaries: Vec<NodeSummary>,
    /// The audit log, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// The summaries among `found`; one that cannot be read is left out.
fn summaries_of<'a>(found: impl Iterator<Item = &'a super::store::KeyValue>) -> Vec<NodeSummary> {
    found
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect()
}

/// The audit entries among `found`, in the order the store took them.
fn audit_of<'a>(found: impl Iterator<Item = &'a super::store::KeyValue>) -> Vec<AuditEntry> {
    let mut entries: Vec<(i64, AuditEntry)> = found
        .filter_map(|kv| Some((kv.create_revision, serde_json::from_slice(&kv.value).ok()?)))
        .collect();
    entries.sort_by_key(|(revision, _)| *revision);
    entries.into_iter().map(|(_, entry)| entry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_audit_log_keeps_the_latest_actions_in_order_with_their_outcomes() {
        let store = MemoryStore::new();
        let admin = ClusterAdmin::in_memory(&store, "/audit-test");
        for i in 0..AUDIT_KEPT + 5 {
            let node = format!("node-{i}");
            admin
                .apply("carol", &AdminAction::Undrain { node })
                .await
                .expect("an undrain needs no cluster");
        }
        // A refused action is recorded with its code.
        let refused = admin
            .apply("dave", &AdminAction::Unpin { shard: 3 })
            .await
            .expect_err("no cluster has started");
        let log = admin.audit_log().await.expect("log");
        assert_eq!(log.len(), AUDIT_KEPT);
        // The oldest six went; the rest are in the order taken.
        assert_eq!(
            log[0].action,
            AdminAction::Undrain {
                node: "node-6".into()
            }
        );
        let last = log.last().expect("an entry");
        assert_eq!(
            (last.user.as_str(), &last.action),
            ("dave", &AdminAction::Unpin { shard: 3 })
        );
        assert_eq!(
            last.outcome,
            format!("{}: {refused}", refused.code()),
            "{last:?}"
        );
        assert!(log.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
    }

    #[tokio::test]
    async fn a_watcher_sees_each_change_of_the_cluster() {
        let store = MemoryStore::new();
        let admin = ClusterAdmin::in_memory(&store, "/watch-test");
        let mut changes = admin.watch().await.expect("watch");
        let start = *changes.borrow_and_update();
        // An audit entry is a change like any other.
        admin
            .apply("erin", &AdminAction::Undrain { node: "n".into() })
            .await
            .expect("undrain");
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
            .await
            .expect("a change in time")
            .expect("still watching");
        assert!(*changes.borrow() > start);
        // Nothing else happened: no change is announced.
        let quiet =
            tokio::time::timeout(std::time::Duration::from_millis(50), changes.changed()).await;
        assert!(quiet.is_err(), "a change without a write");
    }

    #[test]
    fn actions_read_and_write_as_the_api_shows_them() {
        let action: AdminAction =
            serde_json::from_str(r#"{"action": "move", "shard": 12, "node": "node-2"}"#)
                .expect("parses");
        assert_eq!(
            action,
            AdminAction::Move {
                shard: 12,
                node: "node-2".into()
            }
        );
        assert!(
            serde_json::from_str::<AdminAction>(
                r#"{"action": "move", "shard": 1, "node": "a", "x": 1}"#
            )
            .is_err(),
            "unknown fields are refused"
        );
        assert!(serde_json::from_str::<AdminAction>(r#"{"action": "explode"}"#).is_err());
        assert_eq!(action.to_string(), "move shard=12 node=node-2");
        assert_eq!(AdminAction::Unpin { shard: 3 }.to_string(), "unpin shard=3");
    }
}
