//! The node: hosts objects, runs their turns, deactivates idle ones, routes
//! calls to the node that owns an object's shard, and follows the cluster's
//! shard moves.

mod activation;
mod background;
mod builder;
#[cfg(feature = "ops")]
mod call_metrics;
mod directory;
mod host;
#[cfg(feature = "profiling")]
mod profiling;
mod push;
mod routing;
mod shards;
#[cfg(feature = "ops")]
mod telemetry;

pub use self::builder::NodeBuilder;
#[cfg(feature = "gate")]
pub(crate) use self::push::ClientCounts;
#[cfg(feature = "gate")]
pub(crate) use self::push::ClientSink;
pub(crate) use self::push::PushMessage;

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
use crate::future::BoxFuture;
use crate::object::Object;
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
    /// Whether the node counts and times the calls it serves, per method
    /// and outcome, for `/metrics` (with the `ops` feature). Off by
    /// default: each call then costs two reads of the cycle counter and
    /// three adds, which `local_calls` measures at 5–8% of an uncontended
    /// local call.
    pub call_metrics: bool,
    /// Where to serve the node's ops routes, `/metrics`, `/healthz` and
    /// `/ready` (default: nowhere; needs the `ops` feature; see
    /// [`Node::ops_router`]).
    pub ops_listen: Option<SocketAddr>,
    /// The share of calls that start a trace when they arrive without a
    /// W3C `traceparent`, from 0 to 1 (default 0: only calls that carry a
    /// sampled `traceparent` are traced). Needs the `otel` feature and the
    /// `tracing-opentelemetry` layer in the program's subscriber.
    pub trace_sampling: f64,
    /// Whether the ops routes serve CPU profiles at
    /// `/debug/pprof/profile` (default `false`; needs the `profiling`
    /// feature). A profile costs the process its sampling while it runs.
    pub profiling: bool,
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
    /// How often the node publishes a summary of itself (objects per
    /// type, activations, calls, shards, readiness) through its
    /// coordinator, for `goverse status` and inspectors: one small write
    /// per interval, none per call (default 5 s).
    pub summary_interval: Duration,
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
            ops_listen: None,
            call_metrics: false,
            trace_sampling: 0.0,
            profiling: false,
            auto_load: Vec::new(),
            reliable_call_retention: Duration::from_secs(24 * 60 * 60),
            access_rules: None,
            storage_timeout: Duration::from_secs(10),
            summary_interval: Duration::from_secs(5),
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
    pub(crate) fn activations(&self) -> u64 {
        self.activations.load(Ordering::Relaxed)
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
        NodeBuilder::new()
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
            shards: inner.shards_served(),
            stale_writes: inner.stats.stale_writes.load(Ordering::Relaxed),
        }
    }

    /// Where the node serves its ops routes, if it was given an
    /// [`ops_listen`](NodeBuilder::ops_listen) address (the bound port
    /// when that address asked for port 0).
    pub fn ops_address(&self) -> Option<SocketAddr> {
        self.inner.ops_address.get().copied()
    }

    /// Whether the node should be sent traffic now: `Err` with the reason
    /// while it is shutting down, cannot prove its membership of the
    /// cluster (its lease lapsed, say while etcd is unreachable), or some
    /// shard has no live owner to route to (while the cluster forms, or
    /// until a dead node's shards are taken over). It turns `Ok` again on
    /// its own once the cause is gone.
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn ready(&self) -> std::result::Result<(), String> {
        match telemetry::unready(&self.inner) {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// The node's metrics in the Prometheus (OpenMetrics) text format, as
    /// [`ops_router`](Node::ops_router) serves them on `/metrics`: objects
    /// active by type, activations, deactivations, panics caught, stale
    /// writes refused, and shards owned, each labelled with the node's id.
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn metrics_text(&self) -> String {
        telemetry::render(&self.inner)
    }

    /// The node's ops routes, to mount in an axum server of your own:
    ///
    /// - `GET /metrics`: the Prometheus text format, see
    ///   [`metrics_text`](Node::metrics_text);
    /// - `GET /healthz`: a liveness probe, `200` while the process answers;
    /// - `GET /ready`: a readiness probe, `200` while the node can serve
    ///   (see [`ready`](Node::ready)), else `503` with the reason.
    ///
    /// The router holds the node weakly; once the node is dropped,
    /// `/metrics` and `/ready` answer `503`.
    ///
    /// ```no_run
    /// # async fn run(node: goverse::Node) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    /// axum::serve(listener, node.ops_router()).await
    /// # }
    /// ```
    #[cfg(feature = "ops")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ops")))]
    pub fn ops_router(&self) -> axum::Router {
        telemetry::router(Arc::downgrade(&self.inner))
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
    /// What the node's parts outside its turns have done, for `/metrics`.
    pub(crate) meters: Arc<crate::meters::Meters>,
    /// Where the ops routes are served, once bound.
    ops_address: std::sync::OnceLock<SocketAddr>,
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

    /// Why the node should not be sent traffic now, or `None` when it should:
    /// it must be up, able to prove its membership (its lease is alive), and
    /// every shard must have a live owner to route to.
    pub(crate) fn unready(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Some("the node is shutting down".into());
        }
        let view = self.view();
        if !view.online {
            return Some("the node cannot prove its membership of the cluster".into());
        }
        let orphaned = (0..view.shard_count())
            .filter(|&shard| view.current_owner(shard).is_none())
            .count();
        if orphaned > 0 {
            return Some(format!("{orphaned} shards have no live owner yet"));
        }
        None
    }

    /// How many shards this node serves now.
    pub(crate) fn shards_served(&self) -> u64 {
        self.serving
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) & ADMITTING != 0)
            .count() as u64
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
                    .any(|n| &*n.id != self.id() && n.takes_shards());
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

    /// The host of type `O`, borrowed: no shared count is touched.
    fn typed_host<O: Object>(&self) -> Result<&TypeHost<O>> {
        self.by_type
            .get(&TypeId::of::<TypeHost<O>>())
            .and_then(|any| any.downcast_ref::<TypeHost<O>>())
            .ok_or_else(|| Error::UnknownType {
                type_name: O::DESCRIPTOR.type_name.to_string(),
            })
    }
}
