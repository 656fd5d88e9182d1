//! Building a node: its settings, object types, storage and coordinator,
//! and starting it.

use super::*;

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
    pub(super) fn new() -> Self {
        Self {
            config: NodeConfig::default(),
            etcd: None,
            storage_file: None,
            registrations: Vec::new(),
            storage: None,
            coordinator: None,
        }
    }

    /// Hosts objects of type `O` on this node.
    pub fn register<O: Object>(mut self) -> Self {
        let registration: Registration = Box::new(|node, config| {
            let host: Arc<dyn ErasedHost> = TypeHost::<O>::new(node, config);
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

    /// How often the node publishes its summary for operators (default
    /// 5 s; see [`NodeConfig::summary_interval`]).
    pub fn summary_interval(mut self, interval: Duration) -> Self {
        self.config.summary_interval = interval;
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

    /// Whether the node counts and times the calls it serves for
    /// `/metrics` (default `false`; see [`NodeConfig::call_metrics`]).
    pub fn call_metrics(mut self, enabled: bool) -> Self {
        self.config.call_metrics = enabled;
        self
    }

    /// The share of calls arriving without a W3C `traceparent` that start
    /// a trace, from 0 to 1 (default 0; see [`NodeConfig::trace_sampling`]).
    /// A value outside that range fails [`start`](NodeBuilder::start) with
    /// `INVALID_CONFIG`.
    pub fn trace_sampling(mut self, ratio: f64) -> Self {
        self.config.trace_sampling = ratio;
        self
    }

    /// Whether the ops routes serve CPU profiles at `/debug/pprof/profile`
    /// (default `false`; see [`NodeConfig::profiling`]). Turning it on
    /// without the `profiling` feature fails [`start`](NodeBuilder::start)
    /// with `INVALID_CONFIG`.
    pub fn profiling(mut self, enabled: bool) -> Self {
        self.config.profiling = enabled;
        self
    }

    /// Serves the node's ops routes (`/metrics`, `/healthz`, `/ready`) on
    /// `address` from the start of [`start`](NodeBuilder::start) until
    /// shutdown; port 0 picks a free port ([`Node::ops_address`] tells
    /// which). Needs the `ops` feature; to serve the routes in a server of
    /// your own instead, mount [`Node::ops_router`].
    pub fn ops_listen(mut self, address: SocketAddr) -> Self {
        self.config.ops_listen = Some(address);
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
        if let Some(ops_listen) = file.ops_listen {
            config.ops_listen = Some(ops_listen);
        }
        if let Some(profiling) = file.profiling {
            config.profiling = profiling;
        }
        if let Some(call_metrics) = file.call_metrics {
            config.call_metrics = call_metrics;
        }
        if let Some(ratio) = file.trace_sampling {
            config.trace_sampling = ratio;
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
        if let Some(interval) = &file.summary_interval {
            config.summary_interval = parse_duration(interval)?;
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
            (None, Some(file)) => Some(file.open().await?.erased()),
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
        crate::call::check_duration("summary interval", config.summary_interval)?;
        if config.profiling && !cfg!(feature = "profiling") {
            return Err(Error::Config(
                "the configuration turns profiling on, but goverse was built without its `profiling` feature"
                    .into(),
            ));
        }
        if config.call_metrics && !cfg!(feature = "ops") {
            return Err(Error::Config(
                "the configuration turns call metrics on, but goverse was built without its `ops` feature"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.trace_sampling) {
            return Err(Error::Config(format!(
                "trace sampling is a share of calls, from 0 to 1, not {}",
                config.trace_sampling
            )));
        }
        let storage: Arc<dyn ErasedStorage> = Arc::new(crate::storage::Bounded::new(
            storage.unwrap_or_else(|| Arc::new(MemoryStorage::new())),
            config.storage_timeout,
        ));
        let meters = Arc::new(crate::meters::Meters::default());
        let committer = Committer::start(storage.clone(), Some(meters.clone()));
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
            let peers = Peers::new(&config.node_id, meters.clone());
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
                meters,
                ops_address: std::sync::OnceLock::new(),
                in_flight: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                crashed: AtomicBool::new(false),
                clients: RwLock::new(None),
                background: Mutex::new(Vec::new()),
            }
        });
        if let Some(ops_listen) = inner.config.ops_listen {
            // Up before the node joins: probes see it alive, not yet ready.
            if let Err(error) = serve_ops(&inner, ops_listen).await {
                inner.stop_background();
                return Err(error);
            }
        }
        let address = match inner.config.listen {
            Some(listen) => {
                let bound = transport::serve(listen, Arc::downgrade(&inner)).await?;
                let address = match inner.config.advertise.clone() {
                    Some(advertise) => advertise,
                    None => {
                        if bound.address.ip().is_unspecified() {
                            // 0.0.0.0 reaches this node from its own
                            // machine only: other machines cannot call it.
                            tracing::warn!(
                                listen = %bound.address,
                                "the node listens on every interface but advertises none: other nodes will dial {} and reach it only from this machine; set `advertise` (--advertise, GOVERSE_ADVERTISE) to an address they can dial",
                                bound.address
                            );
                        }
                        bound.address.to_string()
                    }
                };
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
        inner.start_summaries();
        shards::start(&inner, membership.view);
        inner.auto_load_per_node();
        Ok(Node { inner })
    }
}

/// Binds the ops listener and serves the node's ops routes on it.
#[cfg(feature = "ops")]
async fn serve_ops(inner: &Arc<NodeInner>, address: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            Error::Config(format!("the ops listener cannot bind {address}: {error}"))
        })?;
    let bound = listener.local_addr()?;
    let _ = inner.ops_address.set(bound);
    let router = super::telemetry::router(Arc::downgrade(inner));
    inner.add_background(inner.runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!(%error, "the ops listener stopped");
        }
    }));
    Ok(())
}

#[cfg(not(feature = "ops"))]
async fn serve_ops(_inner: &Arc<NodeInner>, _address: SocketAddr) -> Result<()> {
    Err(Error::Config(
        "the configuration asks for an ops listener, but goverse was built without its `ops` feature"
            .into(),
    ))
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
