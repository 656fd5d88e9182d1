//! An in-process coordination store with etcd's semantics: revisions,
//! leases that expire, compare-and-swap transactions and prefix watches.
//!
//! Several nodes in one process form a real cluster through it: the same
//! protocol as on etcd runs over it (leader election, shard moves, failover
//! when a node stops renewing its lease), without a server. It is meant for
//! tests, simulations and demos; production clusters use etcd.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::store::{Compare, KeyValue, LeaseId, Op, Store, WatchEvent, WatchStream};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::sync::MutexExt;

/// Events kept for watches that start at an older revision.
const HISTORY: usize = 200_000;

/// The in-process store. Clone it to share it between nodes.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("revision", &inner.revision)
            .field("keys", &inner.kv.len())
            .field("leases", &inner.leases.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    revision: i64,
    kv: BTreeMap<String, Entry>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    history: std::collections::VecDeque<(i64, WatchEvent)>,
    watchers: Vec<Watcher>,
    reaper: bool,
}

struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    lease: Option<LeaseId>,
}

struct Lease {
    ttl: Duration,
    expires: Instant,
}

struct Watcher {
    prefix: String,
    events: mpsc::UnboundedSender<Result<Vec<WatchEvent>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    /// Expires leases whose time is up, every 50 ms, while the store lives.
    fn start_reaper(&self, inner: &mut Inner) {
        if inner.reaper {
            return;
        }
        inner.reaper = true;
        let weak: Weak<Mutex<Inner>> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(50));
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                let mut inner = inner.locked();
                let now = Instant::now();
                let expired: Vec<LeaseId> = inner
                    .leases
                    .iter()
                    .filter(|(_, lease)| lease.expires <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for lease in expired {
                    inner.end_lease(lease);
                }
            }
        });
    }
}

impl Inner {
    /// Applies writes as one revision and tells the watchers.
    fn apply(&mut self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        self.revision += 1;
        let revision = self.revision;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let create_revision = self.kv.get(&key).map_or(revision, |e| e.create_revision);
                    self.kv.insert(
                        key.clone(),
                        Entry {
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                            lease,
                        },
                    );
                    events.push(WatchEvent::Put(KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: revision,
                    }));
                }
                Op::Delete { key } => {
                    if self.kv.remove(&key).is_some() {
                        events.push(WatchEvent::Delete {
                            key,
                            mod_revision: revision,
                        });
                    }
                }
            }
        }
        self.publish(events);
    }

    fn publish(&mut self, events: Vec<WatchEvent>) {
        for event in &events {
            self.history.push_back((self.revision, event.clone()));
        }
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.watchers.retain(|watcher| {
            let batch: Vec<WatchEvent> = events
                .iter()
                .filter(|e| e.key().starts_with(&watcher.prefix))
                .cloned()
                .collect();
            batch.is_empty() || watcher.events.send(Ok(batch)).is_ok()
        });
    }

    fn end_lease(&mut self, lease: LeaseId) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let keys: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, entry)| entry.lease == Some(lease))
            .map(|(key, _)| key.clone())
            .collect();
        self.apply(keys.into_iter().map(|key| Op::Delete { key }).collect());
    }
}

impl Store for MemoryStore {
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<(LeaseId, Duration)>> {
        let mut inner = self.lock();
        self.start_reaper(&mut inner);
        inner.next_lease += 1;
        let id = inner.next_lease;
        inner.leases.insert(
            id,
            Lease {
                ttl,
                expires: Instant::now() + ttl,
            },
        );
        Box::pin(std::future::ready(Ok((id, ttl))))
    }

    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Option<Duration>>> {
        let mut inner = self.lock();
        let renewed = inner.leases.get_mut(&lease).map(|lease| {
            lease.expires = Instant::now() + lease.ttl;
            lease.ttl
        });
        Box::pin(std::future::ready(Ok(renewed)))
    }

    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>> {
        self.lock().end_lease(lease);
        Box::pin(std::future::ready(Ok(())))
    }

    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(Vec<KeyValue>, i64)>> {
        let inner = self.lock();
        let found = inner
            .kv
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| KeyValue {
                key: key.clone(),
                value: entry.value.clone(),
                create_revision: entry.create_revision,
                mod_revision: entry.mod_revision,
            })
            .collect();
        Box::pin(std::future::ready(Ok((found, inner.revision))))
    }

    fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> BoxFuture<'_, Result<Option<i64>>> {
        let mut inner = self.lock();
        let mut keys = std::collections::HashSet::new();
        let duplicate = ops.iter().any(|op| {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            !keys.insert(key.as_str())
        });
        if duplicate {
            // As etcd: one transaction writes a key at most once.
            return Box::pin(std::future::ready(Err(Error::Unavailable(
                "duplicate key given in txn request".into(),
            ))));
        }
        let holds = compares.iter().all(|c| {
            let current = inner.kv.get(&c.key).map_or(0, |e| e.mod_revision);
            current == c.mod_revision
        });
        let leases_live = ops.iter().all(|op| match op {
            Op::Put {
                lease: Some(lease), ..
            } => inner.leases.contains_key(lease),
            _ => true,
        });
        let result = if !leases_live {
            Err(Error::Unavailable("lease not found".into()))
        } else {
            if holds {
                inner.apply(ops);
                Ok(Some(inner.revision))
            } else {
                Ok(None)
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn watch_prefix<'a>(
        &'a self,
        prefix: &'a str,
        from: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        let mut inner = self.lock();
        let (events, stream) = mpsc::unbounded_channel();
        let oldest = inner
            .history
            .front()
            .map_or(inner.revision + 1, |(r, _)| *r);
        let result = if from < oldest && from <= inner.revision && !inner.history.is_empty() {
            Err(Error::Unavailable(format!(
                "revision {from} has been compacted (oldest kept: {oldest})"
            )))
        } else {
            // Replay what happened since `from`, grouped by revision.
            let mut batch: Vec<WatchEvent> = Vec::new();
            let mut batch_revision = None;
            for (revision, event) in inner.history.iter() {
                if *revision < from || !event.key().starts_with(prefix) {
                    continue;
                }
                if batch_revision != Some(*revision) && !batch.is_empty() {
                    let _ = events.send(Ok(std::mem::take(&mut batch)));
                }
                batch_revision = Some(*revision);
                batch.push(event.clone());
            }
            if !batch.is_empty() {
                let _ = events.send(Ok(batch));
            }
            inner.watchers.push(Watcher {
                prefix: prefix.to_string(),
                events,
            });
            Ok(stream)
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    #[tokio::test]
    async fn transactions_compare_revisions() {
        let store = MemoryStore::new();
        let create = Compare {
            key: "/k".into(),
            mod_revision: 0,
        };
        assert!(
            store
                .txn(vec![create.clone()], vec![put("/k", "1")])
                .await
                .expect("txn")
                .is_some()
        );
        assert!(
            store
                .txn(vec![create], vec![put("/k", "2")])
                .await
                .expect("txn")
                .is_none()
        );
        let (found, revision) = store.get_prefix("/").await.expect("get");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value, b"1");
        let swap = Compare {
            key: "/k".into(),
            mod_revision: found[0].mod_revision,
        };
        assert!(
            store
                .txn(vec![swap], vec![put("/k", "3")])
                .await
                .expect("txn")
                .is_some()
        );
        assert_eq!(store.get_prefix("/").await.expect("get").1, revision + 1);
    }

    #[tokio::test]
    async fn watches_replay_then_follow_and_leases_expire() {
        let store = MemoryStore::new();
        store
            .txn(vec![], vec![put("/a/1", "x")])
            .await
            .expect("txn");
        let (lease, _) = store
            .grant(Duration::from_millis(100))
            .await
            .expect("grant");
        store
            .txn(
                vec![],
                vec![Op::Put {
                    key: "/a/2".into(),
                    value: b"y".to_vec(),
                    lease: Some(lease),
                }],
            )
            .await
            .expect("txn");
        let mut watch = store.watch_prefix("/a/", 1).await.expect("watch");
        let first = watch.recv().await.expect("open").expect("events");
        assert!(matches!(&first[0], WatchEvent::Put(kv) if kv.key == "/a/1"));
        let second = watch.recv().await.expect("open").expect("events");
        assert!(matches!(&second[0], WatchEvent::Put(kv) if kv.key == "/a/2"));
        // Not renewed: the lease ends and its key goes.
        let expired = tokio::time::timeout(Duration::from_secs(10), watch.recv())
            .await
            .expect("expires in time")
            .expect("open")
            .expect("events");
        assert!(matches!(&expired[0], WatchEvent::Delete { key, .. } if key == "/a/2"));
        assert_eq!(store.keep_alive(lease).await.expect("keep alive"), None);
    }
}
