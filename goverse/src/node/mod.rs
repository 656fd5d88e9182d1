//! The node: hosts objects, runs their turns, deactivates idle ones.

mod activation;
mod directory;
mod host;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::host::{EncodedWork, ErasedHost, TypeHost, TypedWork};
use crate::call::Detached;
use crate::cluster::{Coordinator, LocalCoordinator, ShardMap};
use crate::context::CallChain;
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::message::Codec;
use crate::object::{BoxFuture, Invoke, Object};
use crate::placement;
use crate::storage::{Fence, MemoryStorage, Storage};

/// Settings of a node. Every field has a sensible default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's id in the cluster (default: `node-<pid>-<n>`).
    pub node_id: String,
    /// How long a call may take when the caller sets no timeout (default 30 s).
    pub call_timeout: Duration,
    /// Deactivate objects after this long without calls, unless their type
    /// says otherwise with `idle_timeout` (default 15 minutes).
    pub idle_timeout: Duration,
    /// Number of shards objects are placed in (default 8192); every node of
    /// a cluster must agree.
    pub shard_count: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            node_id: format!(
                "node-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            call_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            shard_count: placement::DEFAULT_SHARD_COUNT,
        }
    }
}

/// Counters of what a node has done, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// Objects active now.
    pub active: u64,
    /// Activations since start.
    pub activations: u64,
    /// Deactivations since start (idle, delete, shutdown).
    pub deactivations: u64,
    /// Panics caught in object code since start.
    pub panics: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    activations: AtomicU64,
    deactivations: AtomicU64,
    panics: AtomicU64,
}

impl Stats {
    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn deactivated(&self) {
        self.deactivations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
}

type Registration = Box<dyn FnOnce(Weak<NodeInner>, &NodeConfig) -> Arc<dyn ErasedHost> + Send>;

/// Builds a [`Node`]: register object types, pick storage and coordinator.
///
/// # Examples
///
/// ```
/// # use goverse::prelude::*;
/// # #[derive(Default)] struct Counter;
/// # #[goverse::object] impl Counter {
/// #     pub async fn get(&self, _ctx: &Context, _r: Empty) -> goverse::Result<Int32Value> { Ok(Int32Value { value: 0 }) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> goverse::Result<()> {
/// let node = Node::builder()
///     .register::<Counter>()
///     .call_timeout(std::time::Duration::from_secs(5))
///     .start()
///     .await?;
/// # node.shutdown().await; Ok(()) }
/// ```
pub struct NodeBuilder {
    config: NodeConfig,
    registrations: Vec<(&'static str, Registration)>,
    storage: Option<Arc<dyn Storage>>,
    coordinator: Option<Arc<dyn Coordinator>>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<_> = self.registrations.iter().map(|(name, _)| *name).collect();
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("types", &types)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// Hosts objects of type `O` on this node.
    pub fn register<O: Object>(mut self) -> Self {
        let registration: Registration = Box::new(|node, config| {
            let host: Arc<dyn ErasedHost> = TypeHost::<O>::new(node, config.idle_timeout);
            host
        });
        self.registrations
            .push((O::DESCRIPTOR.type_name, registration));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the node id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = id.into();
        self
    }

    /// Sets the default call timeout.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// Sets the default idle timeout of object types that set none.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Sets the shard count.
    pub fn shard_count(mut self, shards: u32) -> Self {
        self.config.shard_count = shards;
        self
    }

    /// Keeps persistent state in `storage` (default: [`MemoryStorage`]).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Joins through `coordinator` (default: a [`LocalCoordinator`] of its own).
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// Starts the node on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// When two registered types share a name, the shard count is zero, or
    /// the coordinator refuses the node.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub async fn start(self) -> Result<Node> {
        let NodeBuilder {
            config,
            registrations,
            storage,
            coordinator,
        } = self;
        if config.shard_count == 0 {
            return Err(Error::Unavailable("shard count must be at least 1".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (name, _) in &registrations {
            if !names.insert(*name) {
                return Err(Error::Unavailable(format!(
                    "object type name `{name}` is registered twice"
                )));
            }
        }
        let coordinator = coordinator.unwrap_or_else(|| Arc::new(LocalCoordinator::new()));
        let membership = coordinator
            .join(&config.node_id, config.shard_count)
            .await?;
        let storage = storage.unwrap_or_else(|| Arc::new(MemoryStorage::new()));
        let inner = Arc::new_cyclic(|weak: &Weak<NodeInner>| {
            let mut by_name = HashMap::new();
            let mut by_type = HashMap::new();
            for (name, register) in registrations {
                let host = register(weak.clone(), &config);
                let any = host.clone().as_any();
                by_type.insert((*any).type_id(), any);
                by_name.insert(name, host);
            }
            NodeInner {
                config,
                runtime: Handle::current(),
                by_name,
                by_type,
                storage,
                coordinator,
                shards: membership.shards,
                started: Instant::now(),
                stats: Stats::default(),
                shutting_down: AtomicBool::new(false),
                background: Mutex::new(Vec::new()),
            }
        });
        inner.start_idle_collector();
        Ok(Node { inner })
    }
}

/// A node hosting objects: the handle to make calls through and to manage it.
///
/// Cheap to clone; all clones are the same node. Several nodes may live in
/// one process.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id())
            .field("types", &self.inner.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            config: NodeConfig::default(),
            registrations: Vec::new(),
            storage: None,
            coordinator: None,
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// The descriptors of the object types this node hosts.
    pub fn object_types(&self) -> Vec<&'static ObjectDescriptor> {
        self.inner
            .by_name
            .values()
            .map(|h| h.descriptor())
            .collect()
    }

    /// Activates object `type_name/id` now, without calling a method.
    /// Creating an object that is already active is not an error.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE`, `INVALID_OBJECT_ID`, `ACTIVATION_FAILED`,
    /// `DEADLINE_EXCEEDED`, `NODE_SHUTTING_DOWN`.
    pub async fn create(&self, type_name: &str, id: &str) -> Result<()> {
        let inner = &self.inner;
        let host = inner.host_by_name(type_name)?;
        let id = inner.admit(id)?;
        let arrived = Instant::now();
        let deadline = arrived + inner.config.call_timeout;
        let turn = host.create(inner.clone(), id, deadline, arrived);
        inner
            .await_turn(turn, deadline, || format!("{type_name}/create"))
            .await
    }

    /// Deactivates object `type_name/id` (running `on_deactivate`) and deletes
    /// its stored state. Deleting an object that does not exist is not an
    /// error; a later call activates it afresh.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE`, `INVALID_OBJECT_ID`, `NODE_SHUTTING_DOWN`,
    /// `DEADLINE_EXCEEDED` (a turn held the object past the node's call
    /// timeout; the delete still happens once it ends), storage errors.
    pub async fn delete(&self, type_name: &str, id: &str) -> Result<()> {
        let inner = &self.inner;
        let host = inner.host_by_name(type_name)?;
        let id = inner.admit(id)?;
        let deadline = Instant::now() + inner.config.call_timeout;
        let deleting = host.delete(inner.clone(), id);
        inner
            .await_turn(deleting, deadline, || format!("{type_name}/delete"))
            .await
    }

    /// Calls `method` of `type_name/id` with an encoded request and returns
    /// the encoded response: the path used by gates and remote nodes.
    ///
    /// `method` is the rpc name (`Add`) or the Rust name (`add`).
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE`, `UNKNOWN_METHOD`, `INVALID_OBJECT_ID`,
    /// `INVALID_PROTOBUF` / `INVALID_JSON`, and every error of the call itself.
    pub async fn call_encoded(
        &self,
        type_name: &str,
        id: &str,
        method: &str,
        codec: Codec,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let host = inner.host_by_name(type_name)?;
        let descriptor = host.descriptor();
        let Some((index, found)) = descriptor.method(method) else {
            return Err(Error::UnknownMethod {
                type_name: type_name.to_string(),
                method: method.chars().take(128).collect(),
            });
        };
        let id = inner.admit(id)?;
        let arrived = Instant::now();
        let deadline = arrived + timeout.unwrap_or(inner.config.call_timeout);
        let work = EncodedWork {
            method: index,
            mutates: found.mutates,
            name: found.name,
            codec,
            body,
        };
        let target = || format!("{type_name}/{id}.{}", found.name);
        let turn =
            host.clone()
                .call_encoded(inner.clone(), id.clone(), work, deadline, None, arrived);
        inner.await_turn(turn, deadline, target).await
    }

    /// What the node has done so far.
    pub fn stats(&self) -> NodeStats {
        let inner = &self.inner;
        NodeStats {
            active: inner.by_name.values().map(|h| h.len() as u64).sum(),
            activations: inner.stats.activations.load(Ordering::Relaxed),
            deactivations: inner.stats.deactivations.load(Ordering::Relaxed),
            panics: inner.stats.panics.load(Ordering::Relaxed),
        }
    }

    /// Deactivates every object once now if it has been idle past its idle
    /// timeout, instead of waiting for the periodic collection. Returns how
    /// many were deactivated.
    pub async fn collect_idle(&self) -> usize {
        self.inner.clone().collect_idle_once().await
    }

    /// Stops taking calls, deactivates every object (saving persistent
    /// state), and leaves the cluster.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        for task in std::mem::take(
            &mut *inner
                .background
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            task.abort();
        }
        for host in inner.by_name.values() {
            host.clone().deactivate_all(inner.clone()).await;
        }
        if let Err(error) = inner.coordinator.leave(inner.id()).await {
            tracing::warn!(%error, "leaving the cluster failed");
        }
    }
}

pub(crate) struct NodeInner {
    pub(crate) config: NodeConfig,
    pub(crate) runtime: Handle,
    by_name: HashMap<&'static str, Arc<dyn ErasedHost>>,
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) storage: Arc<dyn Storage>,
    coordinator: Arc<dyn Coordinator>,
    shards: watch::Receiver<Arc<ShardMap>>,
    started: Instant,
    pub(crate) stats: Stats,
    shutting_down: AtomicBool,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl NodeInner {
    pub(crate) fn id(&self) -> &str {
        &self.config.node_id
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds from the node's start to `at`.
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    fn host_by_name(&self, type_name: &str) -> Result<Arc<dyn ErasedHost>> {
        self.by_name
            .get(type_name)
            .cloned()
            .ok_or_else(|| Error::UnknownType {
                type_name: type_name.chars().take(128).collect(),
            })
    }

    fn host<O: Object>(&self) -> Result<Arc<TypeHost<O>>> {
        self.by_type
            .get(&TypeId::of::<TypeHost<O>>())
            .and_then(|any| any.clone().downcast::<TypeHost<O>>().ok())
            .ok_or_else(|| Error::UnknownType {
                type_name: O::DESCRIPTOR.type_name.to_string(),
            })
    }

    /// Checks that the node takes calls and the id is valid and placed here.
    fn admit(&self, id: &str) -> Result<Arc<str>> {
        self.check_admission(id)?;
        Ok(Arc::from(id))
    }

    fn check_admission(&self, id: &str) -> Result<()> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::NodeShuttingDown);
        }
        placement::validate_id(id, self.config.shard_count)?;
        let shard = placement::shard_of(id, self.config.shard_count);
        let map = self.shards.borrow();
        match map.owner(shard) {
            Some(owner) if &*owner.node == self.id() => Ok(()),
            Some(owner) => Err(Error::Unavailable(format!(
                "shard {shard} of `{id}` is owned by node `{}`",
                owner.node
            ))),
            None => Err(Error::Unavailable(format!("shard {shard} has no owner"))),
        }
    }

    /// The fence for writes of object `id`: its shard's ownership epoch.
    pub(crate) fn fence_for(&self, id: &str) -> Fence {
        let shard = placement::shard_of(id, self.config.shard_count);
        let epoch = self
            .shards
            .borrow()
            .owner(shard)
            .map_or(0, |owner| owner.epoch);
        Fence { epoch }
    }

    /// The turn of a typed call, ready to be polled by the caller.
    pub(crate) fn typed_turn<O: Object, Req: Send + 'static, Resp: Send + 'static>(
        self: &Arc<Self>,
        id: Arc<str>,
        (method, invoke, request): (usize, Invoke<O, Req, Resp>, Req),
        deadline: Instant,
        parent: Option<Arc<CallChain>>,
        arrived: Instant,
    ) -> Result<BoxFuture<'static, Result<Resp>>> {
        let host = self.host::<O>()?;
        self.check_admission(&id)?;
        let work = TypedWork {
            method,
            invoke,
            request: Some(request),
        };
        Ok(Box::pin(host.run_turn(
            self.clone(),
            id,
            work,
            deadline,
            parent,
            arrived,
        )))
    }

    async fn await_turn<T: Send + 'static>(
        &self,
        turn: BoxFuture<'static, Result<T>>,
        deadline: Instant,
        target: impl FnOnce() -> String,
    ) -> Result<T> {
        let started = Instant::now();
        let turn = Detached::new(self.runtime.clone(), turn);
        match turn.within(deadline).await {
            Some(result) => result,
            None => Err(Error::DeadlineExceeded {
                target: target(),
                timeout: deadline.saturating_duration_since(started),
            }),
        }
    }

    fn collect_idle_once(self: Arc<Self>) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let mut collected = 0;
            for host in self.by_name.values() {
                collected += host.clone().collect_idle(self.clone()).await;
            }
            collected
        })
    }

    /// Scans for idle objects at a quarter of the shortest idle timeout.
    fn start_idle_collector(self: &Arc<Self>) {
        let Some(shortest) = self.by_name.values().map(|h| h.idle_timeout()).min() else {
            return;
        };
        let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        let node = Arc::downgrade(self);
        let task = self.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(node) = node.upgrade() else {
                    break;
                };
                node.collect_idle_once().await;
            }
        });
        self.background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}
