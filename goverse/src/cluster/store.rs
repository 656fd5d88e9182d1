//! The coordination store under a clustered coordinator: the small part of
//! etcd's API the cluster protocol needs (leases, compare-and-swap
//! transactions, prefix reads and watches), and the layout of the cluster's
//! keys in it.
//!
//! etcd implements it for real clusters; [`MemoryStore`](super::MemoryStore)
//! implements the same semantics in process, so the protocol is tested the
//! same way against both.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// A lease id.
pub(crate) type LeaseId = i64;

/// A key and its value as last written, with the revision of that write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, mod_revision: i64 },
}

impl WatchEvent {
    /// The key written or deleted.
    pub(crate) fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The store's revision of the change.
    pub(crate) fn mod_revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A condition of a transaction: the key was last written at `revision`
/// (0: the key does not exist).
#[derive(Debug, Clone)]
pub(crate) struct Compare {
    pub(crate) key: String,
    pub(crate) mod_revision: i64,
}

/// A write of a transaction.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

/// A stream of watch batches; it ends (or yields an error) when the watch
/// breaks, and the watcher then reads again and re-watches.
pub(crate) type WatchStream = mpsc::UnboundedReceiver<Result<Vec<WatchEvent>>>;

/// The coordination store.
pub(crate) trait Store: Send + Sync + 'static {
    /// Grants a lease of `ttl`; returns its id and the ttl granted.
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<(LeaseId, Duration)>>;
    /// Renews a lease; `None` if it no longer exists.
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Option<Duration>>>;
    /// Ends a lease now, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>>;
    /// Every key under `prefix`, and the store's revision at the read.
    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(Vec<KeyValue>, i64)>>;
    /// Applies `ops` if every compare holds; returns the store's revision
    /// after the write if it did, `None` if a compare failed.
    fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> BoxFuture<'_, Result<Option<i64>>>;
    /// Watches `prefix` from revision `from` (inclusive).
    fn watch_prefix<'a>(&'a self, prefix: &'a str, from: i64)
    -> BoxFuture<'a, Result<WatchStream>>;
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<(LeaseId, Duration)>> {
        (**self).grant(ttl)
    }
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Option<Duration>>> {
        (**self).keep_alive(lease)
    }
    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>> {
        (**self).revoke(lease)
    }
    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(Vec<KeyValue>, i64)>> {
        (**self).get_prefix(prefix)
    }
    fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> BoxFuture<'_, Result<Option<i64>>> {
        (**self).txn(compares, ops)
    }
    fn watch_prefix<'a>(
        &'a self,
        prefix: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        (**self).watch_prefix(prefix, from)
    }
}

/// A store that counts its failed operations and renewed leases, for a
/// node's metrics.
pub(crate) struct Counted {
    inner: Arc<dyn Store>,
    pub(crate) errors: std::sync::atomic::AtomicU64,
    pub(crate) renewals: std::sync::atomic::AtomicU64,
}

impl Counted {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            errors: Default::default(),
            renewals: Default::default(),
        }
    }

    /// Passes `result` on, counting it if it is an error.
    fn count<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

impl Store for Counted {
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<(LeaseId, Duration)>> {
        Box::pin(async move { self.count(self.inner.grant(ttl).await) })
    }
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Option<Duration>>> {
        Box::pin(async move {
            let renewed = self.count(self.inner.keep_alive(lease).await);
            if let Ok(Some(_)) = renewed {
                self.renewals
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            renewed
        })
    }
    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.count(self.inner.revoke(lease).await) })
    }
    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(Vec<KeyValue>, i64)>> {
        Box::pin(async move { self.count(self.inner.get_prefix(prefix).await) })
    }
    fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> BoxFuture<'_, Result<Option<i64>>> {
        Box::pin(async move { self.count(self.inner.txn(compares, ops).await) })
    }
    fn watch_prefix<'a>(
        &'a self,
        prefix: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(async move { self.count(self.inner.watch_prefix(prefix, from).await) })
    }
}

/// The keys of one cluster under its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Everything of the cluster.
    pub(crate) fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub(crate) fn shard_count(&self) -> String {
        format!("{}/meta/shard_count", self.prefix)
    }

    pub(crate) fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    pub(crate) fn node(&self, id: &str) -> String {
        format!("{}/nodes/{id}", self.prefix)
    }

    /// An operator's drain of a node: its value is the incarnation (the
    /// `since` revision) drained, so a restarted node takes shards again.
    pub(crate) fn drain(&self, id: &str) -> String {
        format!("{}/drains/{id}", self.prefix)
    }

    /// A node's latest summary, under its lease.
    pub(crate) fn summary(&self, id: &str) -> String {
        format!("{}/summaries/{id}", self.prefix)
    }

    /// Every node's summary.
    pub(crate) fn summaries(&self) -> String {
        format!("{}/summaries/", self.prefix)
    }

    /// The operators' audit log: one key per action taken.
    pub(crate) fn audit(&self) -> String {
        format!("{}/audit/", self.prefix)
    }

    pub(crate) fn shard(&self, shard: u32) -> String {
        format!("{}/shards/{shard:05}", self.prefix)
    }

    /// What a key of this cluster is.
    pub(crate) fn parse<'k>(&self, key: &'k str) -> Option<ClusterKey<'k>> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        if rest == "leader" {
            return Some(ClusterKey::Leader);
        }
        if rest == "meta/shard_count" {
            return Some(ClusterKey::ShardCount);
        }
        if let Some(id) = rest.strip_prefix("nodes/") {
            return Some(ClusterKey::Node(id));
        }
        if let Some(number) = rest.strip_prefix("shards/") {
            return number.parse().ok().map(ClusterKey::Shard);
        }
        if let Some(id) = rest.strip_prefix("drains/") {
            return Some(ClusterKey::Drain(id));
        }
        if rest.starts_with("summaries/") {
            return Some(ClusterKey::Summary);
        }
        if rest.starts_with("audit/") {
            return Some(ClusterKey::Audit);
        }
        None
    }
}

/// A parsed cluster key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterKey<'k> {
    ShardCount,
    Leader,
    Node(&'k str),
    Shard(u32),
    Drain(&'k str),
    /// A node's summary: nothing the view holds.
    Summary,
    /// An entry of the operators' audit log: nothing the view holds.
    Audit,
}

/// A shard record as stored: `owner|target|epoch|pinned`, empty owner or
/// target meaning none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ShardRecord {
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) target: Option<Arc<str>>,
    pub(crate) epoch: u64,
    pub(crate) pinned: bool,
}

impl ShardRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        format!(
            "{}|{}|{}|{}",
            self.owner.as_deref().unwrap_or(""),
            self.target.as_deref().unwrap_or(""),
            self.epoch,
            u8::from(self.pinned)
        )
        .into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Unavailable("a shard record is not UTF-8".into()))?;
        let mut parts = text.split('|');
        let mut node = || {
            parts
                .next()
                .map(|p| (!p.is_empty()).then(|| Arc::<str>::from(p)))
        };
        let (Some(owner), Some(target)) = (node(), node()) else {
            return Err(Error::Unavailable(format!(
                "malformed shard record `{text}`"
            )));
        };
        let mut rest = text.rsplit('|');
        let pinned = rest.next() == Some("1");
        let epoch = rest
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| Error::Unavailable(format!("malformed shard record `{text}`")))?;
        Ok(Self {
            owner,
            target,
            epoch,
            pinned,
        })
    }
}

/// A node's registration: its address, whether it hosts objects (a node
/// with no object types only routes), and whether it is leaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRecord {
    pub(crate) address: Arc<str>,
    pub(crate) hosts_objects: bool,
    pub(crate) leaving: bool,
}

impl NodeRecord {
    /// `address` then `|`-separated flags: `client`, `leaving`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = self.address.to_string();
        if !self.hosts_objects {
            text.push_str("|client");
        }
        if self.leaving {
            text.push_str("|leaving");
        }
        text.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Unavailable("a node record is not UTF-8".into()))?;
        let mut parts = text.split('|');
        let address = parts.next().unwrap_or_default();
        let mut record = Self {
            address: address.into(),
            hosts_objects: true,
            leaving: false,
        };
        for flag in parts {
            match flag {
                "client" => record.hosts_objects = false,
                "leaving" => record.leaving = true,
                _ => {}
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = ShardRecord {
            owner: Some("a".into()),
            target: Some("b".into()),
            epoch: 7,
            pinned: true,
        };
        assert_eq!(
            ShardRecord::decode(&record.encode()).expect("decode"),
            record
        );
        let empty = ShardRecord::default();
        assert_eq!(ShardRecord::decode(&empty.encode()).expect("decode"), empty);
        assert!(ShardRecord::decode(b"nonsense").is_err());
        let node = NodeRecord {
            address: "127.0.0.1:7000".into(),
            hosts_objects: false,
            leaving: true,
        };
        assert_eq!(NodeRecord::decode(&node.encode()).expect("decode"), node);
    }

    #[test]
    fn keys_parse_back() {
        let keys = Keys::new("/goverse/");
        assert_eq!(keys.shard(42), "/goverse/shards/00042");
        assert_eq!(keys.parse(&keys.shard(42)), Some(ClusterKey::Shard(42)));
        assert_eq!(keys.parse(&keys.node("n1")), Some(ClusterKey::Node("n1")));
        assert_eq!(keys.parse(&keys.leader()), Some(ClusterKey::Leader));
        assert_eq!(
            keys.parse(&keys.shard_count()),
            Some(ClusterKey::ShardCount)
        );
        assert_eq!(keys.parse("/other/leader"), None);
    }
}
