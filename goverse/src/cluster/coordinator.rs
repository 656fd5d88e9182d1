//! The cluster protocol over a coordination store (etcd, or the in-process
//! [`MemoryStore`]).
//!
//! Each node:
//! - registers `<prefix>/nodes/<id>` under a lease it renews every third of
//!   the TTL, and stops claiming anything once it can no longer prove the
//!   lease is alive (it re-registers as soon as it can);
//! - watches everything under the prefix and publishes a [`ClusterView`];
//! - campaigns for `<prefix>/leader`, a key bound to its lease.
//!
//! The leader reacts to every change of the view (no polling, no stability
//! window): it plans with [`placement::plan`] and writes, each as a
//! compare-and-swap on the shard record's revision,
//! - for a shard without a trusted owner: owner and target set directly,
//!   epoch + 1 (failover, first start);
//! - for a shard whose owner should change: the target only; the owner
//!   drains the shard and hands it over with [`Coordinator::hand_over`],
//!   which sets the owner to the target with epoch + 1.
//!
//! At most `max_moving` shards move at once, so a scale-out proceeds in
//! bounded waves.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::store::{
    ClusterKey, Compare, Counted, KeyValue, Keys, LeaseId, NodeRecord, Op, ShardRecord, Store,
    WatchEvent,
};
use super::{
    ClusterView, Coordinator, CoordinatorCounts, Member, Membership, MemoryStore, NodeInfo,
    NodeSummary, ShardState,
};
use crate::error::{Error, Result};
use crate::placement::{self, ShardPlacement};
use crate::sync::MutexExt;

/// Writes per transaction (etcd allows 128 operations by default).
const TXN_BATCH: usize = 64;

/// Settings of a clustered coordinator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// The key prefix of the cluster in the store (default `/goverse`).
    /// Clusters with different prefixes share a store without meeting.
    pub prefix: String,
    /// The TTL of a node's lease (default 5 s; etcd's minimum is 2 s). A
    /// node that dies loses its shards once this has passed.
    pub lease_ttl: Duration,
    /// How many shards may be moving at once (default 1024).
    pub max_moving: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            prefix: "/goverse".into(),
            lease_ttl: Duration::from_secs(5),
            max_moving: 1024,
        }
    }
}

impl ClusterOptions {
    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the lease TTL.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets how many shards may move at once.
    pub fn max_moving(mut self, shards: usize) -> Self {
        self.max_moving = shards.max(1);
        self
    }
}

/// A coordinator running the cluster protocol over a coordination store.
///
/// One per node. Build it with [`ClusterCoordinator::in_memory`] (nodes in
/// one process sharing a [`MemoryStore`]) or, with the `etcd` feature,
/// `ClusterCoordinator::etcd`.
pub struct ClusterCoordinator {
    shared: Arc<Shared>,
}

impl fmt::Debug for ClusterCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCoordinator")
            .field("options", &self.shared.options)
            .field("node", &self.shared.session.get().map(|s| s.id.clone()))
            .finish_non_exhaustive()
    }
}

struct Shared {
    store: Arc<Counted>,
    options: ClusterOptions,
    keys: Keys,
    session: OnceLock<Arc<Session>>,
}

/// What a joined node's coordinator keeps.
struct Session {
    id: Arc<str>,
    address: Arc<str>,
    hosts_objects: bool,
    lease: Mutex<LeaseId>,
    /// The lease is known to be alive (renewed within its TTL).
    lease_valid: AtomicBool,
    leaving: AtomicBool,
    state: Mutex<State>,
    view: watch::Sender<Arc<ClusterView>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The master copy of the cluster state, rebuilt from the store's watch.
struct State {
    nodes: Arc<BTreeMap<Arc<str>, NodeInfo>>,
    /// Drained nodes, by id, with the incarnation drained.
    drains: BTreeMap<Arc<str>, i64>,
    shards: Arc<Vec<ShardState>>,
    leader: Option<Arc<str>>,
    revision: i64,
}

impl ClusterCoordinator {
    /// A coordinator for a node of a cluster living in `store`, in this
    /// process.
    pub fn in_memory(store: &MemoryStore, options: ClusterOptions) -> Self {
        Self::over(Arc::new(store.clone()), options)
    }

    pub(crate) fn over(store: Arc<dyn Store>, options: ClusterOptions) -> Self {
        let keys = Keys::new(&options.prefix);
        Self {
            shared: Arc::new(Shared {
                store: Arc::new(Counted::new(store)),
                options,
                keys,
                session: OnceLock::new(),
            }),
        }
    }

    fn session(&self) -> Result<&Arc<Session>> {
        self.shared
            .session
            .get()
            .ok_or_else(|| Error::Internal("the coordinator has not joined".into()))
    }
}

impl Drop for ClusterCoordinator {
    fn drop(&mut self) {
        if let Some(session) = self.shared.session.get() {
            session.stop_tasks();
        }
    }
}

fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl Coordinator for ClusterCoordinator {
    async fn join(&self, member: &Member, shard_count: u32) -> Result<Membership> {
        let (id, address) = (member.id.as_str(), member.address.as_str());
        if !valid_node_id(id) {
            return Err(Error::Config(format!(
                "node id `{id}` must be 1-128 characters of letters, digits, `-`, `_`, `.` or `:`"
            )));
        }
        let ttl = self.shared.options.lease_ttl;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(24 * 60 * 60) {
            return Err(Error::Config(format!(
                "the lease TTL must be between 1 s and a day, not {ttl:?}"
            )));
        }
        if self.shared.session.get().is_some() {
            return Err(Error::Config("this coordinator has already joined".into()));
        }
        let shared = &self.shared;
        check_shard_count(shared, shard_count).await?;
        let (initial, revision) = shared.store.get_prefix(&shared.keys.root()).await?;
        let mut state = State {
            nodes: Arc::default(),
            drains: BTreeMap::new(),
            shards: Arc::new(vec![ShardState::default(); shard_count as usize]),
            leader: None,
            revision,
        };
        state.reset(&shared.keys, initial);
        let (view, receiver) = watch::channel(Arc::new(ClusterView {
            nodes: state.nodes.clone(),
            shards: state.shards.clone(),
            leader: state.leader.clone(),
            online: false,
        }));
        let session = Arc::new(Session {
            id: id.into(),
            address: address.into(),
            hosts_objects: member.hosts_objects,
            lease: Mutex::new(0),
            lease_valid: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            state: Mutex::new(state),
            view,
            tasks: Mutex::new(Vec::new()),
        });
        if shared.session.set(session.clone()).is_err() {
            return Err(Error::Config("this coordinator has already joined".into()));
        }
        register_at_join(shared, &session).await?;
        let tasks = vec![
            tokio::spawn(watch_cluster(shared.clone(), session.clone(), revision + 1)),
            tokio::spawn(keep_alive(shared.clone(), session.clone())),
            tokio::spawn(lead(shared.clone(), session.clone())),
        ];
        session.tasks.locked().extend(tasks);
        Ok(Membership {
            shard_count,
            view: receiver,
        })
    }

    async fn hand_over(&self, shards: &[(u32, u64)]) -> Result<()> {
        let session = self.session()?;
        let view = session.view.borrow().clone();
        let mut writes = Vec::new();
        for &(shard, epoch) in shards {
            let Some(state) = view.shard(shard) else {
                continue;
            };
            let Some(target) = &state.target else {
                continue;
            };
            if state.owner.as_deref() != Some(&*session.id)
                || state.epoch != epoch
                || **target == *session.id
            {
                continue;
            }
            writes.push((
                shard,
                state.revision,
                ShardRecord {
                    owner: Some(target.clone()),
                    target: Some(target.clone()),
                    epoch: epoch + 1,
                    pinned: state.pinned,
                },
            ));
        }
        write_shards(&*self.shared.store, &self.shared.keys, writes)
            .await
            .map(|_| ())
    }

    async fn begin_leave(&self) -> Result<()> {
        let session = self.session()?;
        session.leaving.store(true, Ordering::SeqCst);
        let lease = *session.lease.locked();
        let record = NodeRecord {
            address: session.address.clone(),
            hosts_objects: session.hosts_objects,
            leaving: true,
        };
        self.shared
            .store
            .txn(
                vec![],
                vec![Op::Put {
                    key: self.shared.keys.node(&session.id),
                    value: record.encode(),
                    lease: Some(lease),
                }],
            )
            .await?;
        Ok(())
    }

    async fn pin(&self, shard: u32, node: Option<&str>) -> Result<()> {
        let session = self.session()?;
        let view = session.view.borrow().clone();
        let write = pin_write(&view, shard, node)?;
        match write_shards(&*self.shared.store, &self.shared.keys, vec![write]).await? {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(format!(
                "shard {shard} changed while pinning it; try again"
            ))),
        }
    }

    async fn publish_summary(&self, summary: &NodeSummary) -> Result<()> {
        let session = self.session()?;
        let lease = *session.lease.locked();
        let value = serde_json::to_vec(summary)
            .map_err(|error| Error::Internal(format!("a summary did not encode: {error}")))?;
        let put = Op::Put {
            key: self.shared.keys.summary(&session.id),
            value,
            lease: Some(lease),
        };
        self.shared.store.txn(Vec::new(), vec![put]).await?;
        Ok(())
    }

    fn counts(&self) -> CoordinatorCounts {
        let store = &self.shared.store;
        CoordinatorCounts {
            errors: store.errors.load(Ordering::Relaxed),
            lease_renewals: store.renewals.load(Ordering::Relaxed),
        }
    }
    async fn raise_epoch(&self, shard: u32, at_least: u64) -> Result<()> {
        let session = self.session()?;
        let moved = || Error::ShardMoved {
            shard,
            node: session.id.to_string(),
        };
        if !session.lease_valid.load(Ordering::SeqCst) {
            return Err(moved());
        }
        // Read from the store, not the view: a node whose view is stale
        // (it was paused or cut off) must learn it is not the owner.
        let keys = &self.shared.keys;
        let (shard_key, node_key) = (keys.shard(shard), keys.node(&session.id));
        let exact = |key: &str| {
            let key = key.to_string();
            move |kvs: (Vec<KeyValue>, i64)| kvs.0.into_iter().find(|kv| kv.key == key)
        };
        let Some(stored) = self
            .shared
            .store
            .get_prefix(&shard_key)
            .await
            .map(exact(&shard_key))?
        else {
            return Err(moved());
        };
        let Some(registration) = self
            .shared
            .store
            .get_prefix(&node_key)
            .await
            .map(exact(&node_key))?
        else {
            return Err(moved());
        };
        let record = ShardRecord::decode(&stored.value)?;
        let me = Some(&*session.id);
        let owned = record.owner.as_deref() == me
            && record.target.as_deref().is_none_or(|t| Some(t) == me)
            && stored.mod_revision >= registration.create_revision;
        if !owned {
            return Err(moved());
        }
        if record.epoch >= at_least {
            return Ok(());
        }
        let raised = ShardRecord {
            epoch: at_least,
            ..record
        };
        match write_shards(
            &*self.shared.store,
            &self.shared.keys,
            vec![(shard, stored.mod_revision, raised)],
        )
        .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(format!(
                "shard {shard} changed while raising its epoch; try again"
            ))),
        }
    }

    #[cfg(feature = "test-util")]
    fn crash(&self) {
        if let Some(session) = self.shared.session.get() {
            session.stop_tasks();
        }
    }

    async fn leave(&self) -> Result<()> {
        let session = self.session()?;
        session.stop_tasks();
        session.lease_valid.store(false, Ordering::SeqCst);
        session.publish();
        let lease = *session.lease.locked();
        self.shared.store.revoke(lease).await
    }
}

/// The write that pins `shard` to `node` in `view` (it moves there and
/// stays while that node lives), or unpins it with `None`: the record
/// and the revision it replaces.
pub(super) fn pin_write(
    view: &ClusterView,
    shard: u32,
    node: Option<&str>,
) -> Result<(u32, i64, ShardRecord)> {
    let Some(state) = view.shard(shard) else {
        return Err(Error::Config(format!(
            "no shard {shard}: the cluster has {}",
            view.shard_count()
        )));
    };
    let record = match node {
        Some(node) => {
            if !view.nodes.get(node).is_some_and(NodeInfo::takes_shards) {
                return Err(Error::Config(format!(
                    "node `{node}` is not a live node taking shards (hosting objects, not leaving or drained)"
                )));
            }
            ShardRecord {
                owner: state.owner.clone(),
                target: Some(node.into()),
                epoch: state.epoch,
                pinned: true,
            }
        }
        None => ShardRecord {
            owner: state.owner.clone(),
            target: state.target.clone(),
            epoch: state.epoch,
            pinned: false,
        },
    };
    Ok((shard, state.revision, record))
}

/// Stores the shard count at the first start; refuses a different one.
async fn check_shard_count(shared: &Shared, shard_count: u32) -> Result<()> {
    let key = shared.keys.shard_count();
    let created = shared
        .store
        .txn(
            vec![Compare {
                key: key.clone(),
                mod_revision: 0,
            }],
            vec![Op::Put {
                key: key.clone(),
                value: shard_count.to_string().into_bytes(),
                lease: None,
            }],
        )
        .await?;
    if created.is_some() {
        return Ok(());
    }
    let (found, _) = shared.store.get_prefix(&key).await?;
    let stored = found
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<u32>().ok());
    match stored {
        Some(stored) if stored == shard_count => Ok(()),
        Some(stored) => Err(Error::Config(format!(
            "the cluster at `{}` has {stored} shards but this node is configured with {shard_count}; \
             every node must use the cluster's shard count",
            shared.options.prefix
        ))),
        None => Err(Error::Config(format!(
            "the cluster at `{}` has an unreadable shard count",
            shared.options.prefix
        ))),
    }
}

/// Takes a lease and writes the node's record under it, if no live
/// process holds the node's id: the record is created anew, so its create
/// revision marks this incarnation, and ownership recorded before it is no
/// longer trusted.
///
/// # Errors
///
/// `INVALID_CONFIG` (see [`id_taken`]) when another process's record of
/// the same id is alive.
async fn register(shared: &Shared, session: &Session) -> Result<()> {
    let (lease, ttl) = shared.store.grant(shared.options.lease_ttl).await?;
    let granted_at = Instant::now();
    let record = NodeRecord {
        address: session.address.clone(),
        hosts_objects: session.hosts_objects,
        leaving: session.leaving.load(Ordering::SeqCst),
    };
    let key = shared.keys.node(&session.id);
    let created = shared
        .store
        .txn(
            vec![Compare {
                key: key.clone(),
                mod_revision: 0,
            }],
            vec![Op::Put {
                key,
                value: record.encode(),
                lease: Some(lease),
            }],
        )
        .await?;
    if created.is_none() {
        let _ = shared.store.revoke(lease).await;
        return Err(id_taken(&session.id));
    }
    *session.lease.locked() = lease;
    session
        .lease_valid
        .store(granted_at.elapsed() < ttl, Ordering::SeqCst);
    session.publish();
    Ok(())
}

/// The refusal of a registration whose node id a live process holds.
fn id_taken(id: &str) -> Error {
    Error::Config(format!(
        "node id `{id}` is registered by another live process; a node id names one process at a time"
    ))
}

/// Registers at join. A record of the same id that is still alive may be a
/// previous run of this node that died without deregistering: it goes when
/// its lease expires, so this waits for that, up to twice the lease TTL and
/// a second. A record that outlives that wait belongs to a live process.
async fn register_at_join(shared: &Shared, session: &Session) -> Result<()> {
    let ttl = shared.options.lease_ttl;
    let give_up = Instant::now() + ttl * 2 + Duration::from_secs(1);
    let mut warned = false;
    loop {
        match register(shared, session).await {
            Err(Error::Config(message)) if Instant::now() < give_up => {
                if !warned {
                    tracing::warn!(
                        node = %session.id,
                        "{message}; waiting for its lease to expire, in case it is a previous run of this node"
                    );
                    warned = true;
                }
                tokio::time::sleep(ttl / 4).await;
            }
            other => return other,
        }
    }
}

/// Renews the lease every third of its TTL; goes offline when it cannot
/// prove the lease alive, and registers again when the lease is gone.
async fn keep_alive(shared: Arc<Shared>, session: Arc<Session>) {
    let ttl = shared.options.lease_ttl;
    let mut valid_until = Instant::now() + ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let lease = *session.lease.locked();
        let sent = Instant::now();
        match shared.store.keep_alive(lease).await {
            Ok(Some(granted)) => {
                valid_until = sent + granted;
                if !session.lease_valid.swap(true, Ordering::SeqCst) {
                    session.publish();
                }
            }
            Ok(None) => {
                tracing::warn!(node = %session.id, "lease lost; registering again");
                session.lease_valid.store(false, Ordering::SeqCst);
                session.publish();
                match register(&shared, &session).await {
                    Ok(()) => valid_until = Instant::now() + ttl,
                    Err(error @ Error::Config(_)) => tracing::error!(
                        node = %session.id,
                        %error,
                        "this process serves nothing while another holds its node id"
                    ),
                    Err(error) => {
                        tracing::warn!(node = %session.id, %error, "registering again failed")
                    }
                }
            }
            Err(error) => {
                if Instant::now() >= valid_until
                    && session.lease_valid.swap(false, Ordering::SeqCst)
                {
                    tracing::warn!(node = %session.id, %error, "lease expired unrenewed; serving nothing until it is renewed");
                    session.publish();
                }
            }
        }
    }
}

/// Follows every change under the prefix and publishes the view.
async fn watch_cluster(shared: Arc<Shared>, session: Arc<Session>, mut from: i64) {
    let root = shared.keys.root();
    let mut backoff = Duration::from_millis(50);
    loop {
        match shared.store.watch_prefix(&root, from).await {
            Ok(mut stream) => {
                while let Some(batch) = stream.recv().await {
                    let Ok(events) = batch else {
                        break;
                    };
                    backoff = Duration::from_millis(50);
                    let mut state = session.state.locked();
                    let changed = state.apply(&shared.keys, events);
                    from = state.revision + 1;
                    drop(state);
                    if changed {
                        session.publish();
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "watch failed"),
        }
        // The watch broke: read everything again and watch from there.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        if let Ok((found, revision)) = shared.store.get_prefix(&root).await {
            let mut state = session.state.locked();
            state.reset(&shared.keys, found);
            state.revision = revision;
            from = revision + 1;
            drop(state);
            session.publish();
        }
    }
}

/// Campaigns for leadership and, while leader, rebalances on every change.
async fn lead(shared: Arc<Shared>, session: Arc<Session>) {
    let mut view = session.view.subscribe();
    loop {
        let current = view.borrow_and_update().clone();
        if current.online && current.leader.is_none() {
            let lease = *session.lease.locked();
            let key = shared.keys.leader();
            let won = shared
                .store
                .txn(
                    vec![Compare {
                        key: key.clone(),
                        mod_revision: 0,
                    }],
                    vec![Op::Put {
                        key,
                        value: session.id.as_bytes().to_vec(),
                        lease: Some(lease),
                    }],
                )
                .await;
            if let Err(error) = won {
                tracing::debug!(%error, "campaign failed");
            }
        }
        if current.online && current.leader.as_deref() == Some(&*session.id) {
            match rebalance(&shared, &current).await {
                Ok(Some(revision)) => {
                    // Let the view catch up with our own writes before
                    // planning again.
                    let caught_up = async {
                        while session.state_revision() < revision {
                            if view.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), caught_up).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "rebalancing failed"),
            }
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

/// One planning round of the leader. Returns the revision of its last
/// write, if it wrote anything.
async fn rebalance(shared: &Shared, view: &ClusterView) -> Result<Option<i64>> {
    let live: Vec<Arc<str>> = view
        .nodes
        .values()
        .filter(|n| n.takes_shards())
        .map(|n| n.id.clone())
        .collect();
    if live.is_empty() {
        return Ok(None);
    }
    let is_live = |id: &Option<Arc<str>>| {
        id.as_ref()
            .and_then(|id| view.nodes.get(id))
            .is_some_and(NodeInfo::takes_shards)
    };
    let shard_count = view.shard_count();
    let mut placements = Vec::with_capacity(shard_count as usize);
    for shard in 0..shard_count {
        let state = &view.shards[shard as usize];
        let owner_current = view.current_owner(shard).is_some();
        let intended = if is_live(&state.target) {
            state.target.clone()
        } else if owner_current && is_live(&state.owner) {
            state.owner.clone()
        } else {
            None
        };
        placements.push(ShardPlacement {
            target: intended,
            pinned: state.pinned,
        });
    }
    for change in placement::plan(&live, &placements) {
        placements[change.shard as usize].target = Some(change.to);
    }

    let mut moving = (0..shard_count)
        .filter(|&s| view.current_owner(s).is_some() && view.is_moving(s))
        .count();
    let mut writes = Vec::new();
    for shard in 0..shard_count {
        let Some(desired) = placements[shard as usize].target.clone() else {
            continue;
        };
        let state = &view.shards[shard as usize];
        let record = if view.current_owner(shard).is_some() {
            if state.target.as_ref() == Some(&desired) {
                continue;
            }
            let starts_move = state.owner.as_ref() != Some(&desired);
            if starts_move {
                if moving >= shared.options.max_moving {
                    continue;
                }
                moving += 1;
            }
            ShardRecord {
                owner: state.owner.clone(),
                target: Some(desired),
                epoch: state.epoch,
                pinned: state.pinned,
            }
        } else {
            ShardRecord {
                owner: Some(desired.clone()),
                target: Some(desired),
                epoch: state.epoch + 1,
                pinned: state.pinned,
            }
        };
        writes.push((shard, state.revision, record));
    }
    write_shards(&*shared.store, &shared.keys, writes).await
}

/// Writes shard records as compare-and-swaps in batches; a batch that lost
/// a race is dropped (the next view change plans again). Returns the
/// store's revision after the last successful batch.
pub(super) async fn write_shards(
    store: &dyn Store,
    keys: &Keys,
    writes: Vec<(u32, i64, ShardRecord)>,
) -> Result<Option<i64>> {
    let mut last = None;
    for batch in writes.chunks(TXN_BATCH) {
        let compares = batch
            .iter()
            .map(|(shard, revision, _)| Compare {
                key: keys.shard(*shard),
                mod_revision: *revision,
            })
            .collect();
        let ops = batch
            .iter()
            .map(|(shard, _, record)| Op::Put {
                key: keys.shard(*shard),
                value: record.encode(),
                lease: None,
            })
            .collect();
        if let Some(revision) = store.txn(compares, ops).await? {
            last = Some(revision);
        }
    }
    Ok(last)
}

impl Session {
    fn stop_tasks(&self) {
        for task in self.tasks.locked().drain(..) {
            task.abort();
        }
    }

    fn state_revision(&self) -> i64 {
        self.state.locked().revision
    }

    /// Publishes the current state as a new view.
    fn publish(&self) {
        let state = self.state.locked();
        let registered = state.nodes.contains_key(&self.id);
        let view = ClusterView {
            nodes: state.nodes.clone(),
            shards: state.shards.clone(),
            leader: state.leader.clone(),
            online: registered && self.lease_valid.load(Ordering::SeqCst),
        };
        drop(state);
        let _ = self.view.send(Arc::new(view));
    }
}

/// The cluster as `found` (every key under its prefix) shows it, for an
/// observer that has not joined: `online` is false. `None` when no
/// cluster has started there (no shard count is stored).
pub(super) fn view_of(keys: &Keys, found: Vec<KeyValue>) -> Option<ClusterView> {
    let count_key = keys.shard_count();
    let shard_count: u32 = found
        .iter()
        .find(|kv| kv.key == count_key)
        .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())?;
    let mut state = State {
        nodes: Arc::default(),
        drains: BTreeMap::new(),
        shards: Arc::new(vec![ShardState::default(); shard_count as usize]),
        leader: None,
        revision: 0,
    };
    state.reset(keys, found);
    Some(ClusterView {
        nodes: state.nodes,
        shards: state.shards,
        leader: state.leader,
        online: false,
    })
}

impl State {
    /// Brings node `id`'s `draining` in line with the drains recorded.
    fn mark_draining(&mut self, id: &str) {
        let drained = self.drains.get(id).copied();
        let Some(node) = self.nodes.get(id) else {
            return;
        };
        let draining = drained == Some(node.since);
        if node.draining != draining
            && let Some(node) = Arc::make_mut(&mut self.nodes).get_mut(id)
        {
            node.draining = draining;
        }
    }

    /// Replaces everything with a full read.
    fn reset(&mut self, keys: &Keys, found: Vec<KeyValue>) {
        self.nodes = Arc::default();
        self.drains.clear();
        let count = self.shards.len();
        self.shards = Arc::new(vec![ShardState::default(); count]);
        self.leader = None;
        for kv in found {
            self.revision = self.revision.max(kv.mod_revision);
            self.apply_one(keys, WatchEvent::Put(kv));
        }
    }

    /// Applies watched changes; whether any of them is in the view (nodes'
    /// summaries and the audit log are not: they move nothing).
    fn apply(&mut self, keys: &Keys, events: Vec<WatchEvent>) -> bool {
        let mut changed = false;
        for event in events {
            self.revision = self.revision.max(event.mod_revision());
            changed |= !matches!(
                keys.parse(event.key()),
                Some(ClusterKey::Summary | ClusterKey::Audit)
            );
            self.apply_one(keys, event);
        }
        changed
    }

    fn apply_one(&mut self, keys: &Keys, event: WatchEvent) {
        let key = event.key();
        let Some(parsed) = keys.parse(key) else {
            return;
        };
        match (parsed, &event) {
            (ClusterKey::Node(id), WatchEvent::Put(kv)) => match NodeRecord::decode(&kv.value) {
                Ok(record) => {
                    let id: Arc<str> = id.into();
                    Arc::make_mut(&mut self.nodes).insert(
                        id.clone(),
                        NodeInfo {
                            draining: self.drains.get(&id) == Some(&kv.create_revision),
                            id,
                            address: record.address,
                            hosts_objects: record.hosts_objects,
                            leaving: record.leaving,
                            since: kv.create_revision,
                        },
                    );
                }
                Err(error) => tracing::warn!(%error, key, "ignoring a malformed node record"),
            },
            (ClusterKey::Node(id), WatchEvent::Delete { .. }) => {
                Arc::make_mut(&mut self.nodes).remove(id);
            }
            (ClusterKey::Shard(shard), WatchEvent::Put(kv)) => {
                let Some(slot) = Arc::make_mut(&mut self.shards).get_mut(shard as usize) else {
                    return;
                };
                match ShardRecord::decode(&kv.value) {
                    Ok(record) => {
                        *slot = ShardState {
                            owner: record.owner,
                            target: record.target,
                            epoch: record.epoch,
                            pinned: record.pinned,
                            revision: kv.mod_revision,
                        }
                    }
                    Err(error) => tracing::warn!(%error, key, "ignoring a malformed shard record"),
                }
            }
            (ClusterKey::Shard(shard), WatchEvent::Delete { .. }) => {
                if let Some(slot) = Arc::make_mut(&mut self.shards).get_mut(shard as usize) {
                    *slot = ShardState::default();
                }
            }
            (ClusterKey::Leader, WatchEvent::Put(kv)) => {
                self.leader = std::str::from_utf8(&kv.value).ok().map(Arc::from);
            }
            (ClusterKey::Leader, WatchEvent::Delete { .. }) => self.leader = None,
            (ClusterKey::Drain(id), WatchEvent::Put(kv)) => {
                match std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    Some(since) => {
                        self.drains.insert(id.into(), since);
                    }
                    None => tracing::warn!(key, "ignoring a malformed drain record"),
                }
                self.mark_draining(id);
            }
            (ClusterKey::Drain(id), WatchEvent::Delete { .. }) => {
                self.drains.remove(id);
                self.mark_draining(id);
            }
            (ClusterKey::ShardCount | ClusterKey::Summary | ClusterKey::Audit, _) => {}
        }
    }
}
