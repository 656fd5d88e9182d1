//! The node: hosts objects, runs their turns, deactivates idle ones, routes
//! calls to the node that owns an object's shard, and follows the cluster's
//! shard moves.

mod activation;
mod directory;
mod host;
mod push;

#[cfg(feature = "gate")]
pub(crate) use push::ClientSink;
pub(crate) use push::PushMessage;
mod routing;
mod shards;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::host::{ErasedHost, TypeHost};
use crate::call::{EncodedCall, ObjectRef};
use crate::cluster::{ClusterView, Coordinator, ErasedCoordinator, LocalCoordinator};
use crate::config::{AutoLoad, NodeFile, parse_duration};
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::object::{BoxFuture, Object};
use crate::placement;
use crate::storage::{Committer, ErasedStorage, Fence, MemoryStorage, Storage};
use crate::sync::{MutexExt, RwLockExt};
use crate::transport::{self, Peers};

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
    /// Where the node serves calls from other nodes (default: nowhere, for
    /// an embedded node; `127.0.0.1:0` picks a free port).
    pub listen: Option<SocketAddr>,
    /// The address other nodes reach this node at (default: the address
    /// it listens on).
    pub advertise: Option<String>,
    /// Objects activated as soon as their shard is served, without waiting
    /// for a call.
    pub auto_load: Vec<AutoLoad>,
    /// How long the record of a reliable call is kept (default 24 hours):
    /// a retry within this window returns the recorded outcome, a later
    /// one runs the method again.
    pub reliable_call_retention: Duration,
    /// What clients and objects may call, create and delete on this node
    /// (default: no rules, everything allowed). See [`crate::access`].
    pub access_rules: Option<crate::access::AccessRules>,
    /// How long one storage operation (a load, a batch of writes, a
    /// claim) may take before it fails with `STORAGE_ERROR` (default
    /// 10 s): a database that stops answering fails the calls waiting on
    /// it within this bound and releases their objects.
    pub storage_timeout: Duration,
    /// How many exclusive calls may wait for one object (default 10 000);
    /// more are refused with `OVERLOADED`.
    pub max_queued_per_object: usize,
    /// How many calls from outside the node's own code (gates, tools,
    /// other nodes: calls by name and from peers) may be running or
    /// waiting on this node at once (default 100 000); more are refused
    /// with `OVERLOADED`. Typed proxies in the node's own code are not
    /// counted: they are the program's own load.
    pub max_calls_in_flight: usize,
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
            listen: None,
            advertise: None,
            auto_load: Vec::new(),
            reliable_call_retention: Duration::from_secs(24 * 60 * 60),
            access_rules: None,
            storage_timeout: Duration::from_secs(10),
            max_queued_per_object: 10_000,
            max_calls_in_flight: 100_000,
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
    /// Shards this node serves now.
    pub shards: u64,
    /// Writes the storage refused because a newer owner of the object's
    /// shard had written (the activation is dropped each time).
    pub stale_writes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    activations: AtomicU64,
    deactivations: AtomicU64,
    panics: AtomicU64,
    stale_writes: AtomicU64,
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
    pub(crate) fn stale_write(&self) {
        self.stale_writes.fetch_add(1, Ordering::Relaxed);
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
    /// etcd endpoints and options from a node file, connected at start.
    etcd: Option<(Vec<String>, crate::cluster::ClusterOptions)>,
    /// Storage named by a node file, opened at start.
    storage_file: Option<crate::config::StorageFile>,
    registrations: Vec<(&'static str, Registration)>,
    storage: Option<Arc<dyn ErasedStorage>>,
    coordinator: Option<Arc<dyn ErasedCoordinator>>,
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

    /// Applies `rules` to the calls, creates and deletes of the objects
    /// this node hosts. Every node of a cluster should have the same.
    pub fn access_rules(mut self, rules: crate::access::AccessRules) -> Self {
        self.config.access_rules = Some(rules);
        self
    }

    /// Sets how long one storage operation may take before it fails with
    /// `STORAGE_ERROR` (default 10 s).
    pub fn storage_timeout(mut self, timeout: Duration) -> Self {
        self.config.storage_timeout = timeout;
        self
    }

    /// Sets how many exclusive calls may wait for one object (default
    /// 10 000); more are refused with `OVERLOADED`.
    pub fn max_queued_per_object(mut self, calls: usize) -> Self {
        self.config.max_queued_per_object = calls.max(1);
        self
    }

    /// Sets how many calls from outside the node's own code may be running
    /// or waiting on this node at once (default 100 000); more are refused
    /// with `OVERLOADED`.
    pub fn max_calls_in_flight(mut self, calls: usize) -> Self {
        self.config.max_calls_in_flight = calls.max(1);
        self
    }

    /// Sets how long reliable-call records are kept (default 24 hours).
    pub fn reliable_call_retention(mut self, retention: Duration) -> Self {
        self.config.reliable_call_retention = retention;
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

    /// Serves calls from other nodes on `address` (`127.0.0.1:0` picks a
    /// free port). Needed to be part of a cluster.
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.config.listen = Some(address);
        self
    }

    /// The address other nodes reach this node at, when it differs from the
    /// listening address (NAT, containers).
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.config.advertise = Some(address.into());
        self
    }

    /// Activates `entry`'s objects without waiting for a first call.
    pub fn auto_load(mut self, entry: AutoLoad) -> Self {
        self.config.auto_load.push(entry);
        self
    }

    /// Applies a node file (or flags: `NodeArgs`, `NodeFile::from_args`,
    /// with the `cli` feature). A
    /// `cluster.etcd` section makes the node join that cluster on etcd at
    /// start (the `etcd` feature is needed).
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a malformed duration.
    pub fn node_file(mut self, file: NodeFile) -> Result<Self> {
        let config = &mut self.config;
        if let Some(id) = file.node_id {
            config.node_id = id;
        }
        if let Some(listen) = file.listen {
            config.listen = Some(listen);
        }
        if let Some(advertise) = file.advertise {
            config.advertise = Some(advertise);
        }
        if let Some(shards) = file.shard_count {
            config.shard_count = shards;
        }
        if let Some(timeout) = &file.call_timeout {
            config.call_timeout = parse_duration(timeout)?;
        }
        if let Some(path) = &file.access_rules {
            config.access_rules = Some(crate::access::AccessRules::from_file(path)?);
        }
        if let Some(retention) = &file.reliable_call_retention {
            config.reliable_call_retention = parse_duration(retention)?;
        }
        if let Some(timeout) = &file.idle_timeout {
            config.idle_timeout = parse_duration(timeout)?;
        }
        if let Some(timeout) = &file.storage_timeout {
            config.storage_timeout = parse_duration(timeout)?;
        }
        if let Some(calls) = file.max_queued_per_object {
            config.max_queued_per_object = calls.max(1);
        }
        if let Some(calls) = file.max_calls_in_flight {
            config.max_calls_in_flight = calls.max(1);
        }
        config.auto_load.extend(file.auto_load);
        if file.storage.is_some() {
            self.storage_file = file.storage;
        }
        if let Some(cluster) = file.cluster
            && !cluster.etcd.is_empty()
        {
            let mut options = crate::cluster::ClusterOptions::default();
            if let Some(prefix) = cluster.prefix {
                options = options.prefix(prefix);
            }
            if let Some(ttl) = &cluster.lease_ttl {
                options = options.lease_ttl(parse_duration(ttl)?);
            }
            if let Some(moving) = cluster.max_moving {
                options = options.max_moving(moving);
            }
            self.etcd = Some((cluster.etcd, options));
        }
        Ok(self)
    }

    /// Keeps persistent state in `storage` (default: [`MemoryStorage`]).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Joins through `coordinator` (default: a [`LocalCoordinator`] of its
    /// own). Each node needs a coordinator of its own.
    pub fn coordinator(mut self, coordinator: impl Coordinator) -> Self {
        self.coordinator = Some(Arc::new(coordinator));
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
            etcd,
            storage_file,
            registrations,
            storage,
            coordinator,
        } = self;
        let storage = match (storage, storage_file) {
            (Some(storage), _) => Some(storage),
            (None, None) => None,
            (None, Some(file)) => Some(crate::storage::open(file).await?.erased()),
        };
        let coordinator = match (coordinator, etcd) {
            (Some(coordinator), _) => Some(coordinator),
            (None, None) => None,
            (None, Some((endpoints, options))) => {
                Some(etcd_coordinator(&endpoints, options).await?)
            }
        };
        if config.shard_count == 0 {
            return Err(Error::Config("shard count must be at least 1".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (name, _) in &registrations {
            if !names.insert(*name) {
                return Err(Error::Config(format!(
                    "object type name `{name}` is registered twice"
                )));
            }
        }
        let coordinator = coordinator.unwrap_or_else(|| Arc::new(LocalCoordinator::new()));
        crate::call::check_duration("call timeout", config.call_timeout)?;
        crate::call::check_duration("storage timeout", config.storage_timeout)?;
        let storage: Arc<dyn ErasedStorage> = Arc::new(crate::storage::Bounded::new(
            storage.unwrap_or_else(|| Arc::new(MemoryStorage::new())),
            config.storage_timeout,
        ));
        let committer = Committer::start(storage.clone());
        let shard_count = config.shard_count;
        let inner = Arc::new_cyclic(|weak: &Weak<NodeInner>| {
            let mut by_name = HashMap::new();
            let mut by_type = HashMap::new();
            for (name, register) in registrations {
                let host = register(weak.clone(), &config);
                let any = host.clone().as_any();
                by_type.insert((*any).type_id(), any);
                by_name.insert(name, host);
            }
            let (_, view) = watch::channel(Arc::new(ClusterView {
                nodes: Arc::default(),
                shards: Arc::default(),
                leader: None,
                online: false,
            }));
            let peers = Peers::new(&config.node_id);
            NodeInner {
                config,
                runtime: Handle::current(),
                by_name,
                by_type,
                storage,
                committer,
                coordinator,
                view: RwLock::new(view),
                serving: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
                serving_changed: tokio::sync::Notify::new(),
                address: RwLock::new(Arc::from("")),
                peers,
                started: Instant::now(),
                stats: Stats::default(),
                in_flight: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                crashed: AtomicBool::new(false),
                clients: RwLock::new(None),
                background: Mutex::new(Vec::new()),
            }
        });
        let address = match inner.config.listen {
            Some(listen) => {
                let bound = transport::serve(listen, Arc::downgrade(&inner)).await?;
                let address = inner
                    .config
                    .advertise
                    .clone()
                    .unwrap_or_else(|| bound.address.to_string());
                inner.add_background(bound.task);
                address
            }
            None => inner.config.advertise.clone().unwrap_or_default(),
        };
        inner.set_address(&address);
        let member = crate::cluster::Member {
            id: inner.id().to_string(),
            address: address.clone(),
            hosts_objects: !inner.by_name.is_empty(),
        };
        let membership = match inner.coordinator.join(&member, shard_count).await {
            Ok(membership) => membership,
            Err(error) => {
                inner.stop_background();
                return Err(error);
            }
        };
        inner.set_view(membership.view.clone());
        inner.start_idle_collector();
        inner.start_purger();
        shards::start(&inner, membership.view);
        inner.auto_load_per_node();
        Ok(Node { inner })
    }
}

#[cfg(feature = "etcd")]
async fn etcd_coordinator(
    endpoints: &[String],
    options: crate::cluster::ClusterOptions,
) -> Result<Arc<dyn ErasedCoordinator>> {
    let coordinator = crate::cluster::ClusterCoordinator::etcd(endpoints, options).await?;
    Ok(Arc::new(coordinator))
}

#[cfg(not(feature = "etcd"))]
async fn etcd_coordinator(
    _endpoints: &[String],
    _options: crate::cluster::ClusterOptions,
) -> Result<Arc<dyn ErasedCoordinator>> {
    Err(Error::Config(
        "the configuration names etcd endpoints, but goverse was built without its `etcd` feature"
            .into(),
    ))
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
            etcd: None,
            storage_file: None,
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

    /// The address other nodes reach this node at (empty for an embedded
    /// node that does not listen).
    pub fn address(&self) -> Arc<str> {
        self.inner.address()
    }

    /// The cluster as this node sees it now.
    pub fn cluster_view(&self) -> Arc<ClusterView> {
        self.inner.view()
    }

    /// A caller for proxies, to which per-call settings can be added (such
    /// as [`Caller::with_traceparent`](crate::Caller::with_traceparent)).
    /// `&node` works as a caller as it is.
    pub fn caller(&self) -> crate::Caller {
        crate::IntoCaller::into_caller(self)
    }

    /// Activates object `id` of type `O` now, without calling a method, on
    /// whichever node owns it; as `OProxy::new(&node, id).create()`.
    /// Creating an object that is already active is not an error.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE` (no node registered `O`), `INVALID_OBJECT_ID`,
    /// `ACTIVATION_FAILED`, `DEADLINE_EXCEEDED`, `NODE_SHUTTING_DOWN`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use goverse::prelude::*;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// # struct Counter { value: i32 }
    /// # #[goverse::object(persistent)]
    /// # impl Counter {
    /// #     pub async fn add(&mut self, _ctx: &Context, r: Int32Value) -> goverse::Result<Int32Value> {
    /// #         self.value += r.value;
    /// #         Ok(Int32Value { value: self.value })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> goverse::Result<()> {
    /// let node = goverse::Node::builder().register::<Counter>().start().await?;
    /// node.create::<Counter>("c").await?;
    /// assert_eq!(node.stats().active, 1);
    /// let counter = CounterClient::new(&node, "c");
    /// counter.add(Int32Value { value: 5 }).await?;
    /// counter.delete().await?; // its state is gone
    /// assert_eq!(counter.add(Int32Value { value: 1 }).await?.value, 1);
    /// # node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create<O: Object>(&self, id: &str) -> Result<()> {
        ObjectRef::<O>::new(self, id.to_string()).create().await
    }

    /// Deactivates object `id` of type `O` (running `on_deactivate`) and
    /// deletes its stored state, on whichever node owns it; as
    /// `OProxy::new(&node, id).delete()`. Deleting an object that does not
    /// exist is not an error; a later call activates it afresh.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE`, `INVALID_OBJECT_ID`, `NODE_SHUTTING_DOWN`,
    /// `DEADLINE_EXCEEDED` (a turn held the object past the node's call
    /// timeout; the delete still happens once it ends), storage errors.
    pub async fn delete<O: Object>(&self, id: &str) -> Result<()> {
        ObjectRef::<O>::new(self, id.to_string()).delete().await
    }

    /// Makes an [`EncodedCall`] (a call by name, possibly reliable) on
    /// whichever node owns the object, and returns the encoded response.
    ///
    /// `method` is the rpc name (`Add`) or the Rust name (`add`). This is
    /// the path gates and tools use.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_OBJECT_TYPE`, `UNKNOWN_METHOD`, `INVALID_OBJECT_ID`,
    /// `INVALID_PROTOBUF` / `INVALID_JSON`, and every error of the call
    /// itself; a reliable call also fails with `INVALID_CALL_ID`,
    /// `CALL_ID_REUSED` (the id already ran another method of this object)
    /// or `NOT_PERSISTENT`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use goverse::prelude::*;
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// # struct Counter { value: i32 }
    /// # #[goverse::object(persistent)]
    /// # impl Counter {
    /// #     pub async fn add(&mut self, _ctx: &Context, r: Int32Value) -> goverse::Result<Int32Value> {
    /// #         self.value += r.value;
    /// #         Ok(Int32Value { value: self.value })
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> goverse::Result<()> {
    /// use goverse::{Codec, EncodedCall};
    ///
    /// let node = goverse::Node::builder().register::<Counter>().start().await?;
    /// let add = |call_id: &str| {
    ///     EncodedCall::new("Counter", "c", "Add", Codec::Json, b"5".to_vec())
    ///         .reliable(call_id)
    /// };
    /// assert_eq!(node.call(add("deposit-1")).await?, b"5");
    /// // The retry returns the recorded response; the counter stays at 5.
    /// assert_eq!(node.call(add("deposit-1")).await?, b"5");
    /// assert_eq!(node.call(add("deposit-2")).await?, b"10");
    /// # node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call(&self, call: EncodedCall) -> Result<Vec<u8>> {
        self.inner.call_encoded(call).await
    }

    /// Pushes `message` to client `client`, wherever its gate is; as
    /// [`Context::push`](crate::Context::push), for code outside objects.
    ///
    /// # Errors
    ///
    /// As for [`Context::push`](crate::Context::push).
    pub async fn push<M: crate::Message>(&self, client: &str, message: &M) -> Result<()> {
        let message = PushMessage::of(message)?;
        self.inner.push(client, message).await
    }

    /// Pushes `message` to every client of every gate in the cluster.
    ///
    /// # Errors
    ///
    /// As for [`Context::broadcast`](crate::Context::broadcast).
    pub async fn broadcast<M: crate::Message>(&self, message: &M) -> Result<()> {
        let message = PushMessage::of(message)?;
        self.inner.broadcast(message).await
    }

    /// Whether the node has begun shutting down (it takes no new calls).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// What the node has done so far.
    pub fn stats(&self) -> NodeStats {
        let inner = &self.inner;
        NodeStats {
            active: inner.by_name.values().map(|h| h.len() as u64).sum(),
            activations: inner.stats.activations.load(Ordering::Relaxed),
            deactivations: inner.stats.deactivations.load(Ordering::Relaxed),
            panics: inner.stats.panics.load(Ordering::Relaxed),
            shards: inner
                .serving
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) & ADMITTING != 0)
                .count() as u64,
            stale_writes: inner.stats.stale_writes.load(Ordering::Relaxed),
        }
    }

    /// Deactivates every object once now if it has been idle past its idle
    /// timeout, instead of waiting for the periodic collection. Returns how
    /// many were deactivated.
    pub async fn collect_idle(&self) -> usize {
        self.inner.clone().collect_idle_once().await
    }

    /// Stops the node at once as if its process died: no handoff, no saves,
    /// no deregistration; its connections drop and the cluster moves its
    /// shards when its lease expires. For failover tests (feature
    /// `test-util`).
    #[cfg(feature = "test-util")]
    pub fn crash(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::SeqCst);
        inner.crashed.store(true, Ordering::SeqCst);
        for serving in inner.serving.iter() {
            serving.store(0, Ordering::SeqCst);
        }
        inner.stop_background();
        inner.coordinator.crash();
    }

    /// Pins `shard` to node `node`: the shard moves there (with a handoff,
    /// like any move) and the leader leaves it there while that node lives.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for an unknown shard or node, or on an embedded
    /// node; `UNAVAILABLE` when the coordinator cannot be reached.
    pub async fn pin_shard(&self, shard: u32, node: &str) -> Result<()> {
        self.inner.coordinator.pin(shard, Some(node)).await
    }

    /// Unpins `shard`: the leader balances it like any other again.
    ///
    /// # Errors
    ///
    /// As for [`Node::pin_shard`].
    pub async fn unpin_shard(&self, shard: u32) -> Result<()> {
        self.inner.coordinator.pin(shard, None).await
    }

    /// Cuts the node off from its coordinator as a network partition would,
    /// while it keeps serving what it believed it owned: it becomes a stale
    /// owner once its lease expires. For fencing tests (feature
    /// `test-util`).
    #[cfg(feature = "test-util")]
    pub fn isolate(&self) {
        self.inner.coordinator.crash();
    }

    /// Leaves the cluster gracefully: asks for its shards to be moved,
    /// hands each over once its objects are deactivated (state saved), then
    /// deactivates whatever is left, deregisters and stops serving. Calls
    /// to its objects move with them; callers see no errors.
    ///
    /// Waits at most the call timeout for the shards to move.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

/// A call counted against the node's calls in flight while it lives.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The flag of a shard whose calls this node takes.
pub(crate) const ADMITTING: u64 = 1 << 63;

pub(crate) struct NodeInner {
    pub(crate) config: NodeConfig,
    pub(crate) runtime: Handle,
    by_name: HashMap<&'static str, Arc<dyn ErasedHost>>,
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) storage: Arc<dyn ErasedStorage>,
    /// Batches the writes of persistent objects' turns (group commit).
    pub(crate) committer: Committer,
    coordinator: Arc<dyn ErasedCoordinator>,
    /// The cluster view, set once the node has joined.
    view: RwLock<watch::Receiver<Arc<ClusterView>>>,
    /// Per shard: the epoch of this node's ownership (0 if it has none),
    /// with [`ADMITTING`] set while it takes calls for the shard. Read on
    /// every call, written only when ownership changes. A draining shard
    /// keeps its epoch, so the state saved on the way out is fenced right.
    serving: Box<[AtomicU64]>,
    /// Woken whenever the serving table has been brought in line with a
    /// new view.
    pub(crate) serving_changed: tokio::sync::Notify,
    address: RwLock<Arc<str>>,
    peers: Peers,
    started: Instant,
    pub(crate) stats: Stats,
    /// Calls from outside the node's own code running or waiting on it
    /// (see [`NodeConfig::max_calls_in_flight`]).
    pub(crate) in_flight: AtomicUsize,
    shutting_down: AtomicBool,
    /// Stopped as if dead (tests): peers' streams are dropped.
    crashed: AtomicBool,
    /// The gate's clients, when a gate runs on this node.
    clients: RwLock<Option<Arc<dyn push::ClientSink>>>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl NodeInner {
    pub(crate) fn id(&self) -> &str {
        &self.config.node_id
    }

    pub(crate) fn address(&self) -> Arc<str> {
        self.address.read_locked().clone()
    }

    fn set_address(&self, address: &str) {
        *self.address.write_locked() = address.into();
    }

    pub(crate) fn view(&self) -> Arc<ClusterView> {
        self.view.read_locked().borrow().clone()
    }

    fn view_receiver(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.read_locked().clone()
    }

    fn set_view(&self, view: watch::Receiver<Arc<ClusterView>>) {
        *self.view.write_locked() = view;
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds from the node's start to `at`.
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this node serves `shard` now (objects pinned to this node
    /// are always served here).
    pub(crate) fn serves(&self, shard: u32) -> bool {
        if shard == placement::NODE_PINNED {
            return true;
        }
        self.serving
            .get(shard as usize)
            .is_some_and(|state| state.load(Ordering::SeqCst) & ADMITTING != 0)
    }

    /// The error for a call this node cannot serve.
    pub(crate) fn moved(&self, shard: u32) -> Error {
        Error::ShardMoved {
            shard,
            node: self.id().to_string(),
        }
    }

    /// The fence for writes of objects in `shard`: its ownership epoch.
    pub(crate) fn fence_for(&self, shard: u32) -> Fence {
        let epoch = self
            .serving
            .get(shard as usize)
            .map_or(0, |state| state.load(Ordering::SeqCst) & !ADMITTING);
        Fence { epoch }
    }

    /// Counts a call that came from outside the node's own code (a gate,
    /// a tool, another node) against [`NodeConfig::max_calls_in_flight`]
    /// while the returned guard lives.
    ///
    /// # Errors
    ///
    /// `OVERLOADED` when the node has that many calls in flight.
    pub(crate) fn enter_call(&self) -> Result<InFlight<'_>> {
        let count = &self.in_flight;
        if count.fetch_add(1, Ordering::Relaxed) >= self.config.max_calls_in_flight {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Overloaded(format!(
                "node `{}` has {} calls in flight",
                self.id(),
                self.config.max_calls_in_flight
            )));
        }
        Ok(InFlight(count))
    }

    /// Makes this node serve `shard` under an epoch of at least
    /// `at_least` (see [`Coordinator::raise_epoch`]), waiting until it
    /// does, at most until `deadline`. Returns the fence it serves under.
    pub(crate) async fn raise_epoch(
        &self,
        shard: u32,
        at_least: u64,
        deadline: Instant,
    ) -> Result<Fence> {
        if shard == placement::NODE_PINNED {
            return Err(Error::Internal(
                "objects pinned to a node have no shard epoch to raise".into(),
            ));
        }
        tracing::warn!(
            node = self.id(),
            shard,
            at_least,
            "storage holds a write of this shard from a later epoch than this node's (the cluster \
             was re-created, or its coordination store restored): raising the shard's epoch past it"
        );
        loop {
            let changed = self.serving_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let fence = self.fence_for(shard);
            if fence.epoch >= at_least && self.serves(shard) {
                return Ok(fence);
            }
            if !self.serves(shard) {
                return Err(self.moved(shard));
            }
            match self.coordinator.raise_epoch(shard, at_least).await {
                // Raised, or the view was behind: wait for the next view.
                Ok(()) | Err(Error::Unavailable(_)) => {}
                Err(error) => return Err(error),
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "the epoch of shard {shard} could not be raised before the call's deadline"
                )));
            }
            // The next view, or a retry soon (the coordinator may have
            // been unreachable).
            let retry = (Instant::now() + Duration::from_millis(100)).min(deadline);
            let _ = tokio::time::timeout_at(retry, changed).await;
        }
    }

    /// Creates the auto-load objects of `shards`, which this node has just
    /// started serving.
    pub(crate) fn auto_load_shards(self: &Arc<Self>, shards: &[u32]) {
        let count = self.config.shard_count;
        let mut creates = Vec::new();
        for entry in &self.config.auto_load {
            match entry.per {
                crate::config::AutoLoadPer::Object => {
                    if placement::validate_id(&entry.id, count).is_ok()
                        && shards.contains(&placement::shard_for(&entry.id, count))
                    {
                        creates.push((entry.type_name.clone(), entry.id.clone()));
                    }
                }
                crate::config::AutoLoadPer::Shard => {
                    for shard in shards {
                        creates.push((
                            entry.type_name.clone(),
                            format!("shard#{shard}/{}", entry.id),
                        ));
                    }
                }
                crate::config::AutoLoadPer::Node => {}
            }
        }
        self.spawn_creates(creates);
    }

    fn auto_load_per_node(self: &Arc<Self>) {
        let address = self.address();
        if address.is_empty() {
            return;
        }
        let creates = self
            .config
            .auto_load
            .iter()
            .filter(|e| e.per == crate::config::AutoLoadPer::Node)
            .map(|e| (e.type_name.clone(), format!("{address}/{}", e.id)))
            .collect();
        self.spawn_creates(creates);
    }

    fn spawn_creates(self: &Arc<Self>, creates: Vec<(String, String)>) {
        if creates.is_empty() {
            return;
        }
        let node = self.clone();
        self.runtime.spawn(async move {
            for (type_name, id) in creates {
                if let Err(error) = node.create(&type_name, &id, None).await {
                    tracing::warn!(object_type = %type_name, object_id = %id, %error, "auto-load failed");
                }
            }
        });
    }

    fn add_background(&self, task: JoinHandle<()>) {
        self.background.locked().push(task);
    }

    fn stop_background(&self) {
        for task in std::mem::take(&mut *self.background.locked()) {
            task.abort();
        }
    }

    async fn shutdown(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        // Move the shards away while still routing calls.
        if let Err(error) = self.coordinator.begin_leave().await {
            tracing::warn!(%error, "announcing the leave failed");
        }
        let mut view = self.view_receiver();
        let moved = async {
            loop {
                let current = view.borrow_and_update().clone();
                let others = current
                    .nodes
                    .values()
                    .any(|n| &*n.id != self.id() && n.hosts_objects && !n.leaving);
                let owns = (0..current.shard_count()).any(|s| {
                    current.shard(s).and_then(|st| st.owner.as_deref()) == Some(self.id())
                });
                if !others || !owns {
                    break;
                }
                if view.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(self.config.call_timeout, moved)
            .await
            .is_err()
        {
            tracing::warn!(node = %self.id(), "shards did not all move before the shutdown deadline");
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop_background();
        for serving in self.serving.iter() {
            serving.fetch_and(!ADMITTING, Ordering::SeqCst);
        }
        for host in self.by_name.values() {
            host.clone()
                .deactivate_shards(self.clone(), None, true)
                .await;
        }
        if let Err(error) = self.coordinator.leave().await {
            tracing::warn!(%error, "leaving the cluster failed");
        }
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

    fn collect_idle_once(self: Arc<Self>) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let mut collected = 0;
            for host in self.by_name.values() {
                collected += host.clone().collect_idle(self.clone()).await;
            }
            collected
        })
    }

    /// Purges reliable-call records and tombstones (rows holding no state)
    /// past their retention, at an eighth of it, on nodes that host a
    /// persistent type (every such node does it; the delete is idempotent).
    fn start_purger(self: &Arc<Self>) {
        if !self.by_name.values().any(|h| h.descriptor().persistent) {
            return;
        }
        let retention = self.config.reliable_call_retention;
        let period = (retention / 8).clamp(Duration::from_millis(50), Duration::from_secs(600));
        let node = Arc::downgrade(self);
        let task = self.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(node) = node.upgrade() else {
                    break;
                };
                match node.storage.purge_calls(retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "reliable-call records purged"),
                    Err(error) => tracing::warn!(%error, "purging reliable-call records failed"),
                }
                match node.storage.purge_tombstones(retention).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "tombstones purged"),
                    Err(error) => tracing::warn!(%error, "purging tombstones failed"),
                }
            }
        });
        self.add_background(task);
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
        self.add_background(task);
    }
}
