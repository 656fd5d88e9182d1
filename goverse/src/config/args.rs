//! A node's (and a gate's) command-line flags, for clap: each flag is also
//! read from a `GOVERSE_*` environment variable, and each overrides the
//! same key of the YAML file given with `--config`.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ClusterFile, GateFile, NodeFile, StorageFile, parse_duration, parse_rate_limit};
use crate::error::{Error, Result};

/// A duration flag, checked as it is parsed.
fn duration(text: &str) -> std::result::Result<String, String> {
    parse_duration(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// A rate-limit flag, checked as it is parsed.
fn rate_limit(text: &str) -> std::result::Result<String, String> {
    parse_rate_limit(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// A node's flags: flatten them into a program's own clap command
/// (`#[command(flatten)] node: NodeArgs`), then build the node with
/// `Node::builder().node_file(args.node.into_file()?)`.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use goverse::config::NodeArgs;
///
/// /// My game server.
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     node: NodeArgs,
///     /// The game's own flag.
///     #[arg(long, default_value_t = 8)]
///     tables: u32,
/// }
///
/// let cli = Cli::parse_from(["server", "--node-id", "n1", "--etcd", "http://10.0.0.2:2379", "--tables", "4"]);
/// let file = cli.node.into_file()?;
/// assert_eq!(file.node_id.as_deref(), Some("n1"));
/// assert_eq!(file.cluster.map(|c| c.etcd), Some(vec!["http://10.0.0.2:2379".to_string()]));
/// # Ok::<(), goverse::Error>(())
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct NodeArgs {
    /// A YAML node file; every flag given overrides its key.
    #[arg(long, env = "GOVERSE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's id, unique in the cluster (default: `node-<pid>-<n>`).
    #[arg(long, env = "GOVERSE_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Where to serve other nodes (and pushes to this node's gate).
    #[arg(long, env = "GOVERSE_LISTEN", value_name = "ADDRESS")]
    pub listen: Option<SocketAddr>,
    /// The address other nodes dial [default: the listen address].
    #[arg(long, env = "GOVERSE_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Where to serve /metrics, /healthz and /ready (feature `ops`).
    #[arg(long, env = "GOVERSE_OPS_LISTEN", value_name = "ADDRESS")]
    pub ops_listen: Option<SocketAddr>,
    /// The share of calls arriving without a W3C traceparent that start a
    /// trace, from 0 to 1 [default: 0] (feature `otel`).
    #[arg(long, env = "GOVERSE_TRACE_SAMPLING", value_name = "RATIO")]
    pub trace_sampling: Option<f64>,
    /// Serve CPU profiles at /debug/pprof/profile on the ops listener
    /// (feature `profiling`; `--profiling` alone: true).
    #[arg(long, env = "GOVERSE_PROFILING", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub profiling: Option<bool>,
    /// Count and time the calls the node serves, by type and method, for
    /// /metrics and the node's summaries (feature `ops`; `--call-metrics`
    /// alone: true) [default: false].
    #[arg(long, env = "GOVERSE_CALL_METRICS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub call_metrics: Option<bool>,
    /// The cluster's shard count, the same on every node [default: 8192].
    #[arg(long, env = "GOVERSE_SHARD_COUNT", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_count: Option<u32>,
    /// The default call timeout [default: 30s].
    #[arg(long, env = "GOVERSE_CALL_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub call_timeout: Option<String>,
    /// Deactivate objects idle this long [default: 15m].
    #[arg(long, env = "GOVERSE_IDLE_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub idle_timeout: Option<String>,
    /// How long reliable-call records are kept [default: 24h].
    #[arg(long, env = "GOVERSE_RELIABLE_CALL_RETENTION", value_name = "DURATION", value_parser = duration)]
    pub reliable_call_retention: Option<String>,
    /// How long one storage operation may take [default: 10s].
    #[arg(long, env = "GOVERSE_STORAGE_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub storage_timeout: Option<String>,
    /// How often the node publishes its summary for operators [default: 5s].
    #[arg(long, env = "GOVERSE_SUMMARY_INTERVAL", value_name = "DURATION", value_parser = duration)]
    pub summary_interval: Option<String>,
    /// Calls one object may have waiting [default: 10000].
    #[arg(long, env = "GOVERSE_MAX_QUEUED_PER_OBJECT", value_name = "N")]
    pub max_queued_per_object: Option<usize>,
    /// Calls the node may have in flight [default: 100000].
    #[arg(long, env = "GOVERSE_MAX_CALLS_IN_FLIGHT", value_name = "N")]
    pub max_calls_in_flight: Option<usize>,
    /// A YAML file of access rules: who may call, create and delete what.
    #[arg(long, env = "GOVERSE_ACCESS_RULES", value_name = "FILE")]
    pub access_rules: Option<String>,
    /// How the node finds its cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where persistent objects keep their state.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// The cluster flags of a node: `--etcd`, `--prefix`, `--lease-ttl`,
/// `--max-moving`.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct ClusterArgs {
    /// etcd endpoints, comma-separated; absent: an embedded, single node.
    #[arg(
        long,
        env = "GOVERSE_ETCD",
        value_name = "URL,...",
        value_delimiter = ','
    )]
    pub etcd: Vec<String>,
    /// The cluster's key prefix in etcd [default: /goverse].
    #[arg(long, env = "GOVERSE_PREFIX", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// The node lease's TTL [default: 5s].
    #[arg(long, env = "GOVERSE_LEASE_TTL", value_name = "DURATION", value_parser = duration)]
    pub lease_ttl: Option<String>,
    /// How many shards may move at once [default: 1024].
    #[arg(long, env = "GOVERSE_MAX_MOVING", value_name = "N")]
    pub max_moving: Option<usize>,
}

/// The storage flags: `--postgres` or `--sqlite`, with the pool's settings.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct StorageArgs {
    /// A PostgreSQL url; `${NAME}` in it is read from the environment.
    #[arg(
        long,
        env = "GOVERSE_DATABASE_URL",
        value_name = "URL",
        conflicts_with = "sqlite"
    )]
    pub postgres: Option<String>,
    /// An SQLite file.
    #[arg(long, env = "GOVERSE_SQLITE", value_name = "FILE")]
    pub sqlite: Option<String>,
    /// Apply the schema migrations at start (`--migrate` alone: true).
    #[arg(long, env = "GOVERSE_MIGRATE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub migrate: Option<bool>,
    /// PostgreSQL connections in the pool [default: 16].
    #[arg(long, env = "GOVERSE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// How long an operation waits for a free connection [default: 10s].
    #[arg(long, env = "GOVERSE_ACQUIRE_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub acquire_timeout: Option<String>,
}

/// A gate's flags, for `goverse-gate` or a program that runs a gate.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct GateArgs {
    /// Where to serve HTTP (REST calls, SSE pushes).
    #[arg(long, env = "GOVERSE_GATE_HTTP", value_name = "ADDRESS")]
    pub http: Option<SocketAddr>,
    /// Where to serve the gRPC gate service.
    #[arg(long, env = "GOVERSE_GATE_GRPC", value_name = "ADDRESS")]
    pub grpc: Option<SocketAddr>,
    /// The largest request body taken, in bytes [default: 1048576].
    #[arg(long, env = "GOVERSE_GATE_MAX_BODY_BYTES", value_name = "N")]
    pub max_body_bytes: Option<usize>,
    /// How long a request body may take to arrive [default: 10s].
    #[arg(long, env = "GOVERSE_GATE_BODY_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub body_timeout: Option<String>,
    /// How long a connection may take to send its headers [default: 10s].
    #[arg(long, env = "GOVERSE_GATE_HEADER_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub header_timeout: Option<String>,
    /// The timeout of calls made through the gate [default: 30s].
    #[arg(long, env = "GOVERSE_GATE_CALL_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub gate_call_timeout: Option<String>,
    /// Origins browsers may call from, comma-separated (`*`: any) [default: *].
    #[arg(
        long,
        env = "GOVERSE_GATE_CORS",
        value_name = "ORIGIN,...",
        value_delimiter = ','
    )]
    pub cors: Vec<String>,
    /// Pushed messages a client may have unread [default: 1024].
    #[arg(long, env = "GOVERSE_GATE_PUSH_BUFFER", value_name = "N")]
    pub push_buffer: Option<usize>,
    /// How long a disconnected client's session waits for it [default: 30s].
    #[arg(long, env = "GOVERSE_GATE_RECONNECT_GRACE", value_name = "DURATION", value_parser = duration)]
    pub reconnect_grace: Option<String>,
    /// How often an idle push stream gets a heartbeat [default: 30s].
    #[arg(long, env = "GOVERSE_GATE_HEARTBEAT", value_name = "DURATION", value_parser = duration)]
    pub heartbeat: Option<String>,
    /// Client sessions the gate keeps at most [default: 10000].
    #[arg(long, env = "GOVERSE_GATE_MAX_CLIENTS", value_name = "N")]
    pub max_clients: Option<usize>,
    /// Client sessions one user may have at once [default: 16].
    #[arg(long, env = "GOVERSE_GATE_MAX_CLIENTS_PER_USER", value_name = "N")]
    pub max_clients_per_user: Option<usize>,
    /// How long shutdown waits for open connections [default: 10s].
    #[arg(long, env = "GOVERSE_GATE_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub shutdown_timeout: Option<String>,
    /// Requests per client, `<per second>/<burst>` (e.g. 50/100).
    #[arg(long, env = "GOVERSE_GATE_RATE_LIMIT_CLIENT", value_name = "RATE/BURST", value_parser = rate_limit)]
    pub rate_limit_client: Option<String>,
    /// Calls per object through this gate, `<per second>/<burst>`.
    #[arg(long, env = "GOVERSE_GATE_RATE_LIMIT_OBJECT", value_name = "RATE/BURST", value_parser = rate_limit)]
    pub rate_limit_object: Option<String>,
    /// A PEM certificate chain: both listeners over TLS (with --tls-key).
    #[arg(
        long,
        env = "GOVERSE_GATE_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "GOVERSE_GATE_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<String>,
    /// A YAML file of bearer tokens and the users they stand for; absent:
    /// every request is admitted.
    #[arg(long, env = "GOVERSE_GATE_AUTH_TOKENS", value_name = "YAML")]
    pub auth_tokens: Option<String>,
}

/// Sets `slot` to `value` when a flag gave one.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

impl NodeArgs {
    /// The node's settings: the `--config` file if one was given, with
    /// every flag given (or its environment variable) over it.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for a file that cannot be read or is not a valid
    /// node file, or settings that do not fit together.
    pub fn into_file(self) -> Result<NodeFile> {
        let mut file = match &self.config {
            Some(path) => NodeFile::load(path)?,
            None => NodeFile::default(),
        };
        set(&mut file.node_id, self.node_id);
        set(&mut file.listen, self.listen);
        set(&mut file.advertise, self.advertise);
        set(&mut file.ops_listen, self.ops_listen);
        set(&mut file.trace_sampling, self.trace_sampling);
        set(&mut file.profiling, self.profiling);
        set(&mut file.call_metrics, self.call_metrics);
        set(&mut file.shard_count, self.shard_count);
        set(&mut file.call_timeout, self.call_timeout);
        set(&mut file.idle_timeout, self.idle_timeout);
        set(
            &mut file.reliable_call_retention,
            self.reliable_call_retention,
        );
        set(&mut file.storage_timeout, self.storage_timeout);
        set(&mut file.summary_interval, self.summary_interval);
        set(&mut file.max_queued_per_object, self.max_queued_per_object);
        set(&mut file.max_calls_in_flight, self.max_calls_in_flight);
        set(&mut file.access_rules, self.access_rules);
        self.cluster.apply(&mut file.cluster);
        self.storage.apply(&mut file.storage);
        file.check()?;
        Ok(file)
    }
}

impl ClusterArgs {
    /// Puts the flags given over the file's `cluster:` section.
    pub fn apply(self, cluster: &mut Option<ClusterFile>) {
        let given = !self.etcd.is_empty()
            || self.prefix.is_some()
            || self.lease_ttl.is_some()
            || self.max_moving.is_some();
        if !given {
            return;
        }
        let cluster = cluster.get_or_insert_with(Default::default);
        if !self.etcd.is_empty() {
            cluster.etcd = self.etcd;
        }
        set(&mut cluster.prefix, self.prefix);
        set(&mut cluster.lease_ttl, self.lease_ttl);
        set(&mut cluster.max_moving, self.max_moving);
    }
}

impl StorageArgs {
    /// Puts the flags given over the file's `storage:` section. A backend
    /// given as a flag replaces the file's (`--sqlite` drops its
    /// `postgres`, and the other way round).
    pub fn apply(self, storage: &mut Option<StorageFile>) {
        let given = self.postgres.is_some()
            || self.sqlite.is_some()
            || self.migrate.is_some()
            || self.max_connections.is_some()
            || self.acquire_timeout.is_some();
        if !given {
            return;
        }
        let storage = storage.get_or_insert_with(Default::default);
        if self.postgres.is_some() {
            storage.postgres = self.postgres;
            storage.sqlite = None;
        }
        if self.sqlite.is_some() {
            storage.sqlite = self.sqlite;
            storage.postgres = None;
        }
        if let Some(migrate) = self.migrate {
            storage.migrate = migrate;
        }
        set(&mut storage.max_connections, self.max_connections);
        set(&mut storage.acquire_timeout, self.acquire_timeout);
    }
}

impl GateArgs {
    /// Puts the flags given over the file's `gate:` section.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when the result does not fit together (a TLS
    /// certificate without its key).
    pub fn apply(self, gate: &mut Option<GateFile>) -> Result<()> {
        let gate = gate.get_or_insert_with(Default::default);
        set(&mut gate.http, self.http);
        set(&mut gate.grpc, self.grpc);
        set(&mut gate.max_body_bytes, self.max_body_bytes);
        set(&mut gate.body_timeout, self.body_timeout);
        set(&mut gate.header_timeout, self.header_timeout);
        set(&mut gate.call_timeout, self.gate_call_timeout);
        if !self.cors.is_empty() {
            gate.cors = Some(self.cors);
        }
        set(&mut gate.push_buffer, self.push_buffer);
        set(&mut gate.reconnect_grace, self.reconnect_grace);
        set(&mut gate.heartbeat, self.heartbeat);
        set(&mut gate.max_clients, self.max_clients);
        set(&mut gate.max_clients_per_user, self.max_clients_per_user);
        set(&mut gate.shutdown_timeout, self.shutdown_timeout);
        set(&mut gate.rate_limit_client, self.rate_limit_client);
        set(&mut gate.rate_limit_object, self.rate_limit_object);
        set(&mut gate.tls_cert, self.tls_cert);
        set(&mut gate.tls_key, self.tls_key);
        set(&mut gate.auth_tokens, self.auth_tokens);
        gate.check()
    }
}

/// The parser behind [`NodeFile::from_args`].
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true, disable_help_flag = true)]
struct Flags {
    #[command(flatten)]
    node: NodeArgs,
}

impl NodeFile {
    /// Builds the settings from command-line arguments (without the program
    /// name) and the `GOVERSE_*` environment variables, as [`NodeArgs`]
    /// reads them: `--config <file>` is read first, then every other flag
    /// overrides it.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for an unknown flag, a missing or malformed value,
    /// or a bad file.
    ///
    /// # Examples
    ///
    /// ```
    /// let file = goverse::config::NodeFile::from_args(
    ///     ["--node-id", "n1", "--listen", "127.0.0.1:7001", "--etcd", "http://127.0.0.1:2379"]
    ///         .map(String::from),
    /// )?;
    /// assert_eq!(file.node_id.as_deref(), Some("n1"));
    /// assert_eq!(file.cluster.map(|c| c.etcd.len()), Some(1));
    /// # Ok::<(), goverse::Error>(())
    /// ```
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self> {
        use clap::Parser as _;
        let flags = Flags::try_parse_from(args)
            .map_err(|e| Error::Config(e.render().to_string().trim_end().to_string()))?;
        flags.node.into_file()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_flags_are_well_formed() {
        Flags::command().debug_assert();
    }
}
