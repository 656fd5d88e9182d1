//! Running a node from a YAML file and command-line flags.
//!
//! ```yaml
//! node_id: node-1
//! listen: 0.0.0.0:7001
//! advertise: 10.0.0.5:7001        # what other nodes dial (default: listen)
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
//! auto_load:
//!   - { type: Monitor, id: global }            # one object in the cluster
//!   - { type: ShardWatch, id: watch, per: shard }  # shard#N/watch on every shard
//!   - { type: NodeAgent, id: agent, per: node }    # <address>/agent on every node
//! ```
//!
//! Flags override the file: `--config <file>`, `--node-id`, `--listen`,
//! `--advertise`, `--shard-count`, `--call-timeout`, `--idle-timeout`,
//! `--reliable-call-retention`, `--access-rules <file>`, `--etcd <url>[,<url>...]`, `--prefix`,
//! `--lease-ttl`, `--postgres <url>`, `--migrate <true|false>`,
//! `--max-connections <n>`,
//! `--sqlite <file>`. See [`NodeFile::from_args`].

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A node's settings as written in its YAML file or given as flags.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NodeFile {
    /// The node's id (default: `node-<pid>-<n>`).
    pub node_id: Option<String>,
    /// Where to serve other nodes.
    pub listen: Option<SocketAddr>,
    /// The address other nodes dial.
    pub advertise: Option<String>,
    /// The cluster's shard count.
    pub shard_count: Option<u32>,
    /// The default call timeout (`30s`).
    pub call_timeout: Option<String>,
    /// The default idle timeout (`15m`).
    pub idle_timeout: Option<String>,
    /// How long reliable-call records are kept (`24h`).
    pub reliable_call_retention: Option<String>,
    /// A YAML file of access rules (see [`crate::access`]).
    pub access_rules: Option<String>,
    /// How the node finds its cluster; absent: an embedded, single node.
    pub cluster: Option<ClusterFile>,
    /// Where persistent objects keep their state; absent: in memory.
    pub storage: Option<StorageFile>,
    /// Objects to activate without waiting for a first call.
    pub auto_load: Vec<AutoLoad>,
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

    /// Builds the settings from command-line arguments (without the program
    /// name): `--config <file>` is read first, then every other flag
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
        let args: Vec<String> = args.into_iter().collect();
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag.as_str(), None),
            };
            if !name.starts_with("--") {
                return Err(Error::Config(format!("unexpected argument `{flag}`")));
            }
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| Error::Config(format!("`{name}` needs a value")))?,
            };
            pairs.push((name.to_string(), value));
        }
        let mut file = match pairs.iter().find(|(name, _)| name == "--config") {
            Some((_, path)) => Self::load(path)?,
            None => Self::default(),
        };
        for (name, value) in pairs {
            let bad = |what: &str| Error::Config(format!("`{name} {value}`: {what}"));
            match name.as_str() {
                "--config" => {}
                "--node-id" => file.node_id = Some(value),
                "--listen" => file.listen = Some(value.parse().map_err(|_| bad("not an address"))?),
                "--advertise" => file.advertise = Some(value),
                "--shard-count" => {
                    file.shard_count = Some(value.parse().map_err(|_| bad("not a number"))?);
                }
                "--call-timeout" => file.call_timeout = Some(value),
                "--idle-timeout" => file.idle_timeout = Some(value),
                "--reliable-call-retention" => file.reliable_call_retention = Some(value),
                "--access-rules" => file.access_rules = Some(value),
                "--etcd" => {
                    file.cluster.get_or_insert_with(Default::default).etcd =
                        value.split(',').map(str::to_string).collect();
                }
                "--prefix" => {
                    file.cluster.get_or_insert_with(Default::default).prefix = Some(value)
                }
                "--lease-ttl" => {
                    file.cluster.get_or_insert_with(Default::default).lease_ttl = Some(value);
                }
                "--postgres" => {
                    file.storage.get_or_insert_with(Default::default).postgres = Some(value)
                }
                "--migrate" => {
                    file.storage.get_or_insert_with(Default::default).migrate =
                        value.parse().map_err(|_| bad("true or false"))?;
                }
                "--sqlite" => {
                    file.storage.get_or_insert_with(Default::default).sqlite = Some(value)
                }
                "--max-connections" => {
                    file.storage
                        .get_or_insert_with(Default::default)
                        .max_connections = Some(value.parse().map_err(|_| bad("not a number"))?);
                }
                other => return Err(Error::Config(format!("unknown flag `{other}`"))),
            }
        }
        file.check()?;
        Ok(file)
    }

    /// Checks what serde cannot: durations and ids.
    fn check(&self) -> Result<()> {
        for duration in [
            &self.call_timeout,
            &self.idle_timeout,
            &self.reliable_call_retention,
        ]
        .into_iter()
        .chain(self.cluster.as_ref().map(|c| &c.lease_ttl))
        .chain(self.storage.as_ref().map(|s| &s.acquire_timeout))
        .flatten()
        {
            parse_duration(duration)?;
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

/// Parses `500ms`, `30s`, `10m`, `1h30m`, `2d`.
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
    let bad = |why: &str| {
        Error::Config(format!(
            "duration `{text}`: {why} (write e.g. 500ms, 30s, 10m, 1h)"
        ))
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let number: u64 = number.parse().map_err(|_| bad("expected a number"))?;
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total = number
            .checked_mul(scale)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| bad("too large"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let file = NodeFile::parse(
            "node_id: n1\nlisten: 127.0.0.1:7001\nshard_count: 64\ncall_timeout: 5s\n\
             cluster:\n  etcd: [http://127.0.0.1:2379]\n  lease_ttl: 3s\n\
             auto_load:\n  - { type: Monitor, id: global }\n  - { type: Watch, id: w, per: shard }\n",
        )
        .expect("parses");
        assert_eq!(file.shard_count, Some(64));
        assert_eq!(file.auto_load[0], AutoLoad::object("Monitor", "global"));
        assert_eq!(file.auto_load[1], AutoLoad::per_shard("Watch", "w"));
    }

    #[test]
    fn mistakes_are_named() {
        let error = NodeFile::parse("node_idd: n1\n").expect_err("typo");
        assert_eq!(error.code(), "INVALID_CONFIG");
        assert!(error.to_string().contains("node_idd"), "{error}");
        assert!(NodeFile::parse("call_timeout: 5 seconds\n").is_err());
        assert!(NodeFile::from_args(["--listen".to_string()]).is_err());
        assert!(NodeFile::from_args(["--frobnicate=1".to_string()]).is_err());
        assert!(parse_duration("1h30").is_err());
        assert_eq!(
            parse_duration("1h30m").expect("ok"),
            Duration::from_secs(5400)
        );
    }

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
