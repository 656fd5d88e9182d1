//! Running a node from a YAML file and command-line flags.
//!
//! ```yaml
//! node_id: node-1
//! listen: 0.0.0.0:7001
//! advertise: 10.0.0.5:7001        # what other nodes dial (default: listen)
//! ops_listen: 0.0.0.0:9464         # /metrics, /healthz, /ready (feature `ops`)
//! trace_sampling: 0.01             # calls without a traceparent traced (feature `otel`)
//! profiling: true                  # /debug/pprof/profile on the ops listener (feature `profiling`)
//! call_metrics: true               # count and time calls by type and method (feature `ops`)
//! shard_count: 8192
//! call_timeout: 30s
//! idle_timeout: 15m
//! reliable_call_retention: 24h     # how long reliable-call records are kept
//! access_rules: ./access.yaml      # who may call, create and delete what
//! cluster:
//!   etcd: [http://10.0.0.2:2379, http://10.0.0.3:2379]
//!   prefix: /goverse
//!   lease_ttl: 5s
//! storage:
//!   postgres: postgres://goverse:${GOVERSE_DB_PASSWORD}@10.0.0.4/goverse
//!   migrate: true                  # or: sqlite: ./state.db
//!   max_connections: 16
//!   acquire_timeout: 10s
//! storage_timeout: 10s             # one storage operation at most
//! summary_interval: 5s             # how often the node tells operators how it is
//! max_queued_per_object: 10000
//! max_calls_in_flight: 100000
//! auto_load:
//!   - { type: Monitor, id: global }            # one object in the cluster
//!   - { type: ShardWatch, id: watch, per: shard }  # shard#N/watch on every shard
//!   - { type: NodeAgent, id: agent, per: node }    # <address>/agent on every node
//! gate:                              # for a process that runs a gate
//!   http: 0.0.0.0:8080
//!   grpc: 0.0.0.0:9090
//!   cors: [https://game.example.com]
//!   rate_limit_client: 50/100
//!   auth_tokens: ./tokens.yaml
//! ```
//!
//! With the `cli` feature, [`NodeArgs`] holds the same settings as flags
//! for a program's own clap command line (`--config <file>`, `--node-id`,
//! `--listen`, `--etcd`, `--postgres`, ...; `--help` lists them), each also
//! read from a `GOVERSE_*` environment variable, and each overriding the
//! file's key; [`NodeFile::from_args`] parses them alone.

#[cfg(feature = "cli")]
mod args;
mod storage;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

#[cfg(feature = "cli")]
pub use self::args::{ClusterArgs, GateArgs, NodeArgs, StorageArgs};
use crate::error::{Error, Result};

/// A node's settings as written in its YAML file or given as flags.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NodeFile {
    /// The node's id (default: `node-<pid>-<n>`).
    pub node_id: Option<String>,
    /// Where to serve other nodes.
    pub listen: Option<SocketAddr>,
    /// The address other nodes dial.
    pub advertise: Option<String>,
    /// Where to serve the ops routes (`/metrics`, `/healthz`, `/ready`).
    pub ops_listen: Option<SocketAddr>,
    /// The share of calls without a `traceparent` that start a trace (0 to 1).
    pub trace_sampling: Option<f64>,
    /// Whether the ops routes serve CPU profiles.
    pub profiling: Option<bool>,
    /// Whether the node counts and times the calls it serves.
    pub call_metrics: Option<bool>,
    /// The cluster's shard count.
    pub shard_count: Option<u32>,
    /// The default call timeout (`30s`).
    pub call_timeout: Option<String>,
    /// The default idle timeout (`15m`).
    pub idle_timeout: Option<String>,
    /// How long reliable-call records are kept (`24h`).
    pub reliable_call_retention: Option<String>,
    /// How long one storage operation may take before it fails (`10s`).
    pub storage_timeout: Option<String>,
    /// How often the node publishes its summary for operators (`5s`).
    pub summary_interval: Option<String>,
    /// Calls one object may have waiting (default 10 000).
    pub max_queued_per_object: Option<usize>,
    /// Calls the node may have in flight (default 100 000).
    pub max_calls_in_flight: Option<usize>,
    /// A YAML file of access rules (see [`crate::access`]).
    pub access_rules: Option<String>,
    /// How the node finds its cluster; absent: an embedded, single node.
    pub cluster: Option<ClusterFile>,
    /// Where persistent objects keep their state; absent: in memory.
    pub storage: Option<StorageFile>,
    /// Objects to activate without waiting for a first call.
    pub auto_load: Vec<AutoLoad>,
    /// The gate's settings, for a process that runs one (`goverse-gate`,
    /// or `GateOptions::from_file`).
    pub gate: Option<GateFile>,
}

/// The `gate:` section: a gate's listeners and bounds. Every key is
/// optional; an absent one keeps `GateOptions`' default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GateFile {
    /// Where to serve HTTP.
    pub http: Option<SocketAddr>,
    /// Where to serve the gRPC gate service.
    pub grpc: Option<SocketAddr>,
    /// The largest request body taken, in bytes (1 MiB).
    pub max_body_bytes: Option<usize>,
    /// How long a request body may take to arrive (`10s`).
    pub body_timeout: Option<String>,
    /// How long a connection may take to send its headers (`10s`).
    pub header_timeout: Option<String>,
    /// The timeout of calls made through the gate (`30s`).
    pub call_timeout: Option<String>,
    /// Origins browsers may call from (`["*"]`).
    pub cors: Option<Vec<String>>,
    /// Pushed messages a client may have unread (1024).
    pub push_buffer: Option<usize>,
    /// How long a disconnected client's session waits for it (`30s`).
    pub reconnect_grace: Option<String>,
    /// How often an idle push stream gets a heartbeat (`30s`).
    pub heartbeat: Option<String>,
    /// Client sessions the gate keeps at most (10 000).
    pub max_clients: Option<usize>,
    /// Client sessions one user may have at once (16).
    pub max_clients_per_user: Option<usize>,
    /// How long shutdown waits for open connections (`10s`).
    pub shutdown_timeout: Option<String>,
    /// Requests per client, `<per second>/<burst>` (e.g. `50/100`).
    pub rate_limit_client: Option<String>,
    /// Calls per object, `<per second>/<burst>`.
    pub rate_limit_object: Option<String>,
    /// A PEM certificate chain: both listeners over TLS (with `tls_key`).
    pub tls_cert: Option<String>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// A YAML file of bearer tokens and the users they stand for
    /// (`goverse::gate::TokenFile`); absent: every request is admitted.
    pub auth_tokens: Option<String>,
}

impl GateFile {
    /// Checks what serde cannot: durations, rate limits, TLS pairs.
    fn check(&self) -> Result<()> {
        for duration in [
            &self.body_timeout,
            &self.header_timeout,
            &self.call_timeout,
            &self.reconnect_grace,
            &self.heartbeat,
            &self.shutdown_timeout,
        ]
        .into_iter()
        .flatten()
        {
            parse_duration(duration)?;
        }
        for limit in [&self.rate_limit_client, &self.rate_limit_object]
            .into_iter()
            .flatten()
        {
            parse_rate_limit(limit)?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Config(
                "gate: `tls_cert` and `tls_key` go together".into(),
            ));
        }
        Ok(())
    }
}

/// A rate limit written `<per second>/<burst>`, e.g. `50/100`: the
/// sustained rate and the burst.
///
/// # Errors
///
/// `INVALID_CONFIG` naming the problem.
pub fn parse_rate_limit(text: &str) -> Result<(f64, u32)> {
    let bad = || {
        Error::Config(format!(
            "rate limit `{text}`: write <per second>/<burst>, e.g. 50/100"
        ))
    };
    let (rate, burst) = text.split_once('/').ok_or_else(bad)?;
    let rate: f64 = rate.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    if !(rate.is_finite() && rate >= 0.0) || burst == 0 {
        return Err(bad());
    }
    Ok((rate, burst))
}

/// The `cluster:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClusterFile {
    /// etcd endpoints (`http://host:2379`).
    pub etcd: Vec<String>,
    /// The cluster's key prefix (default `/goverse`).
    pub prefix: Option<String>,
    /// The node lease's TTL (default `5s`).
    pub lease_ttl: Option<String>,
    /// How many shards may move at once (default 1024).
    pub max_moving: Option<usize>,
}

/// The `storage:` section: one of `postgres` or `sqlite`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageFile {
    /// A PostgreSQL url (feature `postgres`).
    pub postgres: Option<String>,
    /// Apply the PostgreSQL schema migrations at start.
    pub migrate: bool,
    /// An SQLite file (feature `sqlite`).
    pub sqlite: Option<String>,
    /// PostgreSQL connections in the pool (default 16).
    pub max_connections: Option<u32>,
    /// How long a write or load waits for a free connection (`10s`).
    pub acquire_timeout: Option<String>,
}

/// An object the cluster keeps active, activated by whichever node owns it
/// as soon as that node serves its shard: never two at once.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AutoLoad {
    /// The object type's name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The object id (or its suffix, for `per: shard` and `per: node`).
    pub id: String,
    /// One object, one per shard, or one per node.
    #[serde(default)]
    pub per: AutoLoadPer,
}

impl AutoLoad {
    /// One object `type_name/id` in the whole cluster.
    pub fn object(type_name: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            type_name: type_name.into(),
            id: id.into(),
            per: AutoLoadPer::Object,
        }
    }

    /// One object per shard: `shard#<N>/<id>` for every shard `N`.
    pub fn per_shard(type_name: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            per: AutoLoadPer::Shard,
            ..Self::object(type_name, id)
        }
    }

    /// One object per node: `<address>/<id>` on every node.
    pub fn per_node(type_name: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            per: AutoLoadPer::Node,
            ..Self::object(type_name, id)
        }
    }
}

/// How many objects an [`AutoLoad`] entry stands for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoLoadPer {
    /// One object in the cluster.
    #[default]
    Object,
    /// One object on every shard, `shard#<N>/<id>`.
    Shard,
    /// One object on every node, `<address>/<id>`.
    Node,
}

impl NodeFile {
    /// Reads a YAML file.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when the file cannot be read or is not a valid
    /// node file (unknown keys are errors, so typos do not pass silently).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses YAML text.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` naming the problem.
    pub fn parse(text: &str) -> Result<Self> {
        let file: NodeFile =
            serde_yaml_ng::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        file.check()?;
        Ok(file)
    }

    /// Checks what serde cannot: durations and ids.
    fn check(&self) -> Result<()> {
        for duration in [
            &self.call_timeout,
            &self.idle_timeout,
            &self.reliable_call_retention,
            &self.storage_timeout,
            &self.summary_interval,
        ]
        .into_iter()
        .chain(self.cluster.as_ref().map(|c| &c.lease_ttl))
        .chain(self.storage.as_ref().map(|s| &s.acquire_timeout))
        .flatten()
        {
            parse_duration(duration)?;
        }
        if let Some(gate) = &self.gate {
            gate.check()?;
        }
        if self.shard_count == Some(0) {
            return Err(Error::Config("shard_count must be at least 1".into()));
        }
        if let Some(storage) = &self.storage
            && storage.postgres.is_some() == storage.sqlite.is_some()
        {
            return Err(Error::Config(
                "storage: give exactly one of `postgres` and `sqlite`".into(),
            ));
        }
        Ok(())
    }
}

/// Parses `500ms`, `30s`, `10m`, `1h30m`, `2d` (humantime's format: also
/// `1h 30m`, `2days`), the way every duration of goverse is written.
///
/// # Errors
///
/// `INVALID_CONFIG` naming the problem.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(goverse::config::parse_duration("1m30s")?, Duration::from_secs(90));
/// assert!(goverse::config::parse_duration("90").is_err());
/// # Ok::<(), goverse::Error>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        Error::Config(format!(
            "duration `{text}`: {e} (write e.g. 500ms, 30s, 10m, 1h)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let file = NodeFile::parse(
            "node_id: n1\nlisten: 127.0.0.1:7001\nops_listen: 127.0.0.1:9464\nshard_count: 64\ncall_timeout: 5s\n\
             cluster:\n  etcd: [http://127.0.0.1:2379]\n  lease_ttl: 3s\n\
             auto_load:\n  - { type: Monitor, id: global }\n  - { type: Watch, id: w, per: shard }\n",
        )
        .expect("parses");
        assert_eq!(file.shard_count, Some(64));
        assert_eq!(
            file.ops_listen,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
        assert_eq!(file.auto_load[0], AutoLoad::object("Monitor", "global"));
        assert_eq!(file.auto_load[1], AutoLoad::per_shard("Watch", "w"));
    }

    #[test]
    fn mistakes_are_named() {
        let error = NodeFile::parse("node_idd: n1\n").expect_err("typo");
        assert_eq!(error.code(), "INVALID_CONFIG");
        assert!(error.to_string().contains("node_idd"), "{error}");
        assert!(NodeFile::parse("call_timeout: 5 parsecs\n").is_err());
        assert!(parse_duration("1h30").is_err());
        assert_eq!(
            parse_duration("1h30m").expect("ok"),
            Duration::from_secs(5400)
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    fn the_ops_listener_is_a_flag() {
        let file = NodeFile::from_args(["--ops-listen", "127.0.0.1:9464"].map(String::from))
            .expect("parses");
        assert_eq!(
            file.ops_listen,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    fn tracing_and_profiling_are_flags() {
        let file =
            NodeFile::from_args(["--trace-sampling", "0.01", "--profiling"].map(String::from))
                .expect("parses");
        assert_eq!(file.trace_sampling, Some(0.01));
        assert_eq!(file.profiling, Some(true));
        let file = NodeFile::from_args(["--call-metrics"].map(String::from)).expect("parses");
        assert_eq!(file.call_metrics, Some(true));
        let file = NodeFile::parse("trace_sampling: 1\nprofiling: false\ncall_metrics: true\n")
            .expect("parses");
        assert_eq!(file.call_metrics, Some(true));
        assert_eq!(file.trace_sampling, Some(1.0));
        assert_eq!(file.profiling, Some(false));
    }

    #[cfg(feature = "cli")]
    #[test]
    fn bad_flags_are_named() {
        let error = NodeFile::from_args(["--listen".to_string()]).expect_err("no value");
        assert_eq!(error.code(), "INVALID_CONFIG");
        let error = NodeFile::from_args(["--frobnicate=1".to_string()]).expect_err("unknown");
        assert!(error.to_string().contains("--frobnicate"), "{error}");
        let error = NodeFile::from_args(["--call-timeout", "5 parsecs"].map(String::from))
            .expect_err("bad duration");
        assert!(error.to_string().contains("5 parsecs"), "{error}");
    }

    #[cfg(feature = "cli")]
    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("goverse-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("node.yaml");
        std::fs::write(&path, "node_id: from-file\nshard_count: 16\n").expect("write");
        let file = NodeFile::from_args(
            [
                "--config",
                path.to_str().expect("utf-8"),
                "--node-id",
                "from-flag",
            ]
            .map(String::from),
        )
        .expect("parses");
        assert_eq!(file.node_id.as_deref(), Some("from-flag"));
        assert_eq!(file.shard_count, Some(16));
        std::fs::remove_dir_all(&dir).ok();
    }
}
