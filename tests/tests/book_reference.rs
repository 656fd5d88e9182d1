//! The book's reference chapters checked against the code they describe:
//! every stable error code in "Troubleshooting", with the HTTP status, gRPC
//! code and transience the code gives it; every node and gate flag, its
//! environment variable, YAML key and default in "Configuration
//! reference"; and the files of `deploy/` that "Deployment" shows, whose
//! flags, variables and node files must be ones the programs accept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory as _, Parser as _};
use goverse::Code;
use goverse::config::{ClusterArgs, GateArgs, NodeArgs, NodeFile, StorageArgs, parse_duration};

const TROUBLESHOOTING: &str = include_str!("../../book/src/troubleshooting.md");
const CONFIGURATION: &str = include_str!("../../book/src/configuration.md");
const DEPLOYMENT: &str = include_str!("../../book/src/deployment.md");
const EVOLVING_STATE: &str = include_str!("../../book/src/evolving-state.md");
const TESTING: &str = include_str!("../../book/src/testing.md");

const CODE_RS: &str = include_str!("../../goverse/src/code.rs");
const GATE_GRPC_RS: &str = include_str!("../../goverse/src/gate/grpc.rs");
const CONFIG_RS: &str = include_str!("../../goverse/src/config/mod.rs");
const CLI_SOURCES: [&str; 4] = [
    include_str!("../../goverse-cli/src/main.rs"),
    include_str!("../../goverse-cli/src/admin.rs"),
    include_str!("../../goverse-cli/src/inspector.rs"),
    include_str!("../../goverse-cli/src/logging.rs"),
];

const K8S_NODES: &str = include_str!("../../deploy/kubernetes/nodes.yaml");
const K8S_GATE: &str = include_str!("../../deploy/kubernetes/gate.yaml");
const K8S_MIGRATE: &str = include_str!("../../deploy/kubernetes/migrate-job.yaml");
const NODE_UNIT: &str = include_str!("../../deploy/systemd/goverse-node.service");
const GATE_UNIT: &str = include_str!("../../deploy/systemd/goverse-gate.service");
const NODE_YAML: &str = include_str!("../../deploy/systemd/node.yaml");
const GATE_YAML: &str = include_str!("../../deploy/systemd/gate.yaml");
const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");

/// A node program's command line: `NodeArgs` alone, as `cluster-node` has it.
#[derive(Debug, clap::Parser)]
struct NodeCommand {
    #[command(flatten)]
    node: NodeArgs,
}

/// `goverse-gate`'s command line: the gate's flags and the node's.
#[derive(Debug, clap::Parser)]
struct GateCommand {
    #[command(flatten)]
    gate: GateArgs,
    #[command(flatten)]
    node: NodeArgs,
}

/// The cluster flags alone, to tell which flags set `cluster.*` keys.
#[derive(Debug, clap::Parser)]
struct ClusterCommand {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The storage flags alone, to tell which flags set `storage.*` keys.
#[derive(Debug, clap::Parser)]
struct StorageCommand {
    #[command(flatten)]
    storage: StorageArgs,
}

/// The gate's flags alone.
#[derive(Debug, clap::Parser)]
struct GateOnlyCommand {
    #[command(flatten)]
    gate: GateArgs,
}

/// One option of a clap command.
#[derive(Debug, Clone)]
struct Flag {
    /// The field it sets (clap's id).
    id: String,
    /// Its long name, without `--`.
    long: String,
    /// Its environment variable.
    env: Option<String>,
}

fn flags(command: &clap::Command) -> Vec<Flag> {
    command
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter_map(|arg| {
            Some(Flag {
                id: arg.get_id().to_string(),
                long: arg.get_long()?.to_string(),
                env: arg.get_env().map(|env| env.to_string_lossy().into_owned()),
            })
        })
        .collect()
}

fn ids(command: &clap::Command) -> BTreeSet<String> {
    flags(command).into_iter().map(|flag| flag.id).collect()
}

/// The cells of every Markdown table row of `text`, trimmed.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|') && line.ends_with('|'))
        .filter(|line| !line.starts_with("| ---"))
        .map(|line| {
            // `\|` inside a cell is a literal bar.
            let line = line.replace("\\|", "\u{1}");
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('\u{1}', "|"))
                .collect()
        })
        .collect()
}

/// The text between the first pair of backticks of `cell`.
fn first_code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let end = start + cell[start..].find('`')?;
    Some(&cell[start..end])
}

/// `InvalidArgument` -> `INVALID_ARGUMENT`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Every built-in code's string, read from the table in `code.rs` that
/// `Code::as_str` and `Code::parse` both read.
fn built_in_codes() -> Vec<String> {
    let table_start = CODE_RS
        .find("pub(crate) const BUILT_IN")
        .expect("code.rs has its BUILT_IN table");
    let table = &CODE_RS[table_start..];
    let table = &table[..table.find("];").expect("the table ends")];
    let codes: Vec<String> = table
        .lines()
        .filter(|line| line.trim_start().starts_with("(Code::"))
        .map(|line| {
            let start = line.find('"').expect("a string") + 1;
            let end = start + line[start..].find('"').expect("its end");
            line[start..end].to_string()
        })
        .collect();
    let declared: usize = table["pub(crate) const BUILT_IN: [(Code, &str); ".len()..]
        .split(']')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the table's length");
    assert_eq!(codes.len(), declared, "every row of BUILT_IN was read");
    codes
}

/// The gRPC code the gate answers for each HTTP status, read from
/// `status_of` in `goverse/src/gate/grpc.rs`; `None` keys the fallback.
fn grpc_codes() -> BTreeMap<Option<u16>, String> {
    let start = GATE_GRPC_RS
        .find("pub(crate) fn status_of(")
        .expect("grpc.rs has status_of");
    let body = &GATE_GRPC_RS[start..];
    let body = &body[..body.find("};").expect("its match ends")];
    let mut codes = BTreeMap::new();
    for line in body.lines().filter(|l| l.contains("=> Code::")) {
        let (statuses, code) = line.split_once("=>").expect("an arm");
        let code = code
            .trim()
            .trim_start_matches("Code::")
            .trim_end_matches(',');
        for status in statuses.split('|').map(str::trim) {
            let key = (status != "_").then(|| status.parse().expect("an HTTP status"));
            codes.insert(key, screaming_snake(code));
        }
    }
    assert!(codes.len() > 8, "status_of was read: {codes:?}");
    codes
}

#[test]
fn every_code_has_its_row_and_section_in_troubleshooting() {
    let grpc = grpc_codes();
    let rows: BTreeMap<String, Vec<String>> = table_rows(TROUBLESHOOTING)
        .into_iter()
        .filter(|cells| cells.len() == 5)
        .filter_map(|cells| {
            let code = cells[0].strip_prefix('`')?.strip_suffix('`')?.to_string();
            Some((code, cells))
        })
        .collect();
    let codes = built_in_codes();
    assert!(codes.len() >= 37, "{codes:?}");
    for name in &codes {
        let code = Code::parse(name);
        assert!(
            !matches!(code, Code::Application(_)) && code.as_str() == name,
            "`{name}` is a built-in code"
        );
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("troubleshooting.md has no table row for `{name}`"));
        let status: u16 = row[1]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("`{name}`: no HTTP status in `{}`", row[1]));
        assert_eq!(status, code.http_status(), "the HTTP status of `{name}`");
        let expected_grpc = grpc
            .get(&Some(status))
            .or_else(|| grpc.get(&None))
            .expect("a fallback");
        assert_eq!(
            first_code(&row[2]),
            Some(expected_grpc.as_str()),
            "the gRPC code of `{name}`"
        );
        let transient = match row[3].as_str() {
            "yes" => true,
            "no" => false,
            other => panic!("`{name}`: transient is `{other}`, not yes or no"),
        };
        assert_eq!(
            transient,
            code.is_transient(),
            "whether `{name}` is transient"
        );
        assert!(
            TROUBLESHOOTING.contains(&format!("\n### `{name}`\n")),
            "troubleshooting.md has no section `### `{name}``"
        );
    }
    // Nothing in the table that is not a code.
    for listed in rows.keys() {
        assert!(
            codes.contains(listed),
            "`{listed}` is not a code of goverse"
        );
    }
    // An application's own code.
    let application = Code::parse("INSUFFICIENT_FUNDS");
    let row = table_rows(TROUBLESHOOTING)
        .into_iter()
        .find(|cells| cells.len() == 5 && cells[0].contains("INSUFFICIENT_FUNDS"))
        .expect("a row for an application's own code");
    assert!(row[1].starts_with(&application.http_status().to_string()));
    assert_eq!(
        first_code(&row[2]),
        grpc.get(&Some(application.http_status()))
            .map(String::as_str)
    );
    assert_eq!(
        row[3],
        if application.is_transient() {
            "yes"
        } else {
            "no"
        }
    );
}

/// The rows of configuration.md's settings tables: YAML key | flag |
/// environment variable | default | meaning.
fn setting_rows() -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = table_rows(CONFIGURATION)
        .into_iter()
        .filter(|cells| cells.len() == 5 && cells[0] != "YAML key")
        .collect();
    assert!(rows.len() > 40, "the settings tables were read");
    rows
}

/// The YAML keys of `goverse::config`'s node file, read from the fields of
/// its structs: `node_id`, `cluster.etcd`, `gate.http`,
/// `auto_load[].type`, ...
fn yaml_keys() -> Vec<String> {
    fn fields(name: &str) -> Vec<String> {
        let start = CONFIG_RS
            .find(&format!("pub struct {name} {{"))
            .unwrap_or_else(|| panic!("config/mod.rs defines {name}"));
        let body = &CONFIG_RS[start..];
        let body = &body[..body.find("\n}").expect("the struct ends")];
        let mut renamed = None;
        let mut out = Vec::new();
        for line in body.lines().skip(1).map(str::trim) {
            if let Some(rest) = line.strip_prefix("#[serde(rename = \"") {
                renamed = rest.split('"').next().map(str::to_string);
            } else if let Some(field) = line.strip_prefix("pub ") {
                let field = field.split(':').next().expect("a field").to_string();
                out.push(renamed.take().unwrap_or(field));
            }
        }
        assert!(!out.is_empty(), "{name} has fields");
        out
    }
    let mut keys = Vec::new();
    for field in fields("NodeFile") {
        match field.as_str() {
            "cluster" => keys.extend(fields("ClusterFile").iter().map(|f| format!("cluster.{f}"))),
            "storage" => keys.extend(fields("StorageFile").iter().map(|f| format!("storage.{f}"))),
            "gate" => keys.extend(fields("GateFile").iter().map(|f| format!("gate.{f}"))),
            "auto_load" => {
                keys.extend(
                    fields("AutoLoad")
                        .iter()
                        .map(|f| format!("auto_load[].{f}")),
                );
            }
            _ => {}
        }
        keys.push(field);
    }
    assert!(keys.len() > 40, "{keys:?}");
    keys
}

#[test]
fn every_node_and_gate_flag_is_in_the_configuration_reference() {
    let rows = setting_rows();
    let cluster = ids(&ClusterCommand::command());
    let storage = ids(&StorageCommand::command());
    let gate = ids(&GateOnlyCommand::command());
    let all = flags(&GateCommand::command());
    assert!(all.len() > 40, "{all:?}");
    for flag in &all {
        let long = format!("`--{}", flag.long);
        // `--max-clients` must not find `--max-clients-per-user`'s row.
        let row = rows
            .iter()
            .find(|cells| {
                cells[1].contains(&format!("{long} ")) || cells[1].contains(&format!("{long}`"))
            })
            .unwrap_or_else(|| panic!("configuration.md has no row for {long}`"));
        let env = flag.env.as_deref().expect("every flag has a variable");
        assert!(
            row[2].contains(&format!("`{env}`")),
            "the row of {long}` names `{env}`: {row:?}"
        );
        let key = if flag.id == "config" {
            None
        } else if cluster.contains(&flag.id) {
            Some(format!("cluster.{}", flag.id))
        } else if storage.contains(&flag.id) {
            Some(format!("storage.{}", flag.id))
        } else if gate.contains(&flag.id) {
            Some(format!("gate.{}", flag.id.trim_start_matches("gate_")))
        } else {
            Some(flag.id.clone())
        };
        match key {
            Some(key) => assert!(
                row[0].contains(&format!("`{key}`")),
                "the row of {long}` sets `{key}`: {row:?}"
            ),
            None => assert!(!row[0].contains('`'), "--config has no key: {row:?}"),
        }
    }
}

#[test]
fn every_key_of_the_node_file_is_in_the_configuration_reference() {
    let rows = setting_rows();
    for key in yaml_keys() {
        assert!(
            rows.iter()
                .any(|cells| cells[0].contains(&format!("`{key}`"))),
            "configuration.md has no row for the YAML key `{key}`"
        );
    }
}

/// The first value in backticks of the default column of `key`'s row.
fn documented_default(rows: &[Vec<String>], key: &str) -> String {
    let row = rows
        .iter()
        .find(|cells| first_code(&cells[0]) == Some(key))
        .unwrap_or_else(|| panic!("no row for `{key}`"));
    first_code(&row[3])
        .unwrap_or_else(|| panic!("no default in backticks for `{key}`: {row:?}"))
        .to_string()
}

fn duration(text: &str) -> Duration {
    parse_duration(text).expect("a duration")
}

#[test]
fn the_documented_defaults_are_the_code_s() {
    let rows = setting_rows();
    let default = |key: &str| documented_default(&rows, key);
    let node = goverse::NodeConfig::default();
    assert_eq!(default("shard_count"), node.shard_count.to_string());
    assert_eq!(duration(&default("call_timeout")), node.call_timeout);
    assert_eq!(duration(&default("idle_timeout")), node.idle_timeout);
    assert_eq!(
        duration(&default("reliable_call_retention")),
        node.reliable_call_retention
    );
    assert_eq!(duration(&default("storage_timeout")), node.storage_timeout);
    assert_eq!(
        duration(&default("summary_interval")),
        node.summary_interval
    );
    assert_eq!(
        default("max_queued_per_object"),
        node.max_queued_per_object.to_string()
    );
    assert_eq!(
        default("max_calls_in_flight"),
        node.max_calls_in_flight.to_string()
    );
    assert_eq!(
        default("trace_sampling").parse::<f64>().ok(),
        Some(node.trace_sampling)
    );
    assert_eq!(default("call_metrics"), node.call_metrics.to_string());
    assert_eq!(default("profiling"), node.profiling.to_string());

    let cluster = goverse::cluster::ClusterOptions::default();
    assert_eq!(default("cluster.prefix"), cluster.prefix);
    assert_eq!(duration(&default("cluster.lease_ttl")), cluster.lease_ttl);
    assert_eq!(
        default("cluster.max_moving"),
        cluster.max_moving.to_string()
    );

    let postgres = goverse::storage::PostgresOptions::default();
    assert_eq!(default("storage.migrate"), postgres.migrate.to_string());
    assert_eq!(
        default("storage.max_connections"),
        postgres.max_connections.to_string()
    );
    assert_eq!(
        duration(&default("storage.acquire_timeout")),
        postgres.acquire_timeout
    );

    let gate = goverse::gate::GateOptions::default();
    assert_eq!(
        default("gate.max_body_bytes"),
        gate.max_body_bytes.to_string()
    );
    assert_eq!(duration(&default("gate.body_timeout")), gate.body_timeout);
    assert_eq!(
        duration(&default("gate.header_timeout")),
        gate.header_timeout
    );
    assert_eq!(duration(&default("gate.call_timeout")), gate.call_timeout);
    assert_eq!(default("gate.cors"), gate.cors_origins.join(","));
    assert_eq!(default("gate.push_buffer"), gate.push_buffer.to_string());
    assert_eq!(
        duration(&default("gate.reconnect_grace")),
        gate.reconnect_grace
    );
    assert_eq!(duration(&default("gate.heartbeat")), gate.heartbeat);
    assert_eq!(default("gate.max_clients"), gate.max_clients.to_string());
    assert_eq!(
        default("gate.max_clients_per_user"),
        gate.max_clients_per_user.to_string()
    );
    assert_eq!(
        duration(&default("gate.shutdown_timeout")),
        gate.shutdown_timeout
    );
}

/// The long flags and environment variables the `goverse` command's own
/// clap structs declare, read from goverse-cli's sources.
fn cli_flags_and_variables() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut longs = BTreeSet::new();
    let mut variables = BTreeSet::new();
    for source in CLI_SOURCES {
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].starts_with("#[arg(") {
                let mut attribute = String::new();
                while !attribute.ends_with(")]") {
                    attribute.push_str(lines[i]);
                    i += 1;
                }
                if attribute.contains("long") {
                    let field = lines[i..]
                        .iter()
                        .find(|l| !l.starts_with("#[") && !l.starts_with("///"))
                        .expect("the field");
                    let name = field
                        .trim_start_matches("pub(crate) ")
                        .split(':')
                        .next()
                        .expect("a name");
                    longs.insert(name.replace('_', "-"));
                }
                if let Some((_, rest)) = attribute.split_once("env = \"") {
                    variables.insert(rest.split('"').next().expect("a name").to_string());
                }
                continue;
            }
            if let Some((_, rest)) = lines[i].split_once("std::env::var(\"GOVERSE_") {
                let name = rest.split('"').next().expect("a name");
                variables.insert(format!("GOVERSE_{name}"));
            }
            i += 1;
        }
    }
    (longs, variables)
}

#[test]
fn the_goverse_command_s_flags_are_in_the_configuration_reference() {
    let (longs, variables) = cli_flags_and_variables();
    for long in [
        "config", "etcd", "prefix", "json", "operator", "object", "to", "listen", "tokens",
    ] {
        assert!(
            longs.contains(long),
            "--{long} was read from goverse-cli: {longs:?}"
        );
    }
    for long in &longs {
        assert!(
            CONFIGURATION.contains(&format!("`--{long}")),
            "configuration.md does not name `--{long}`"
        );
    }
    for variable in [
        "GOVERSE_INSPECTOR_LISTEN",
        "GOVERSE_OPERATOR",
        "GOVERSE_LOG_FORMAT",
    ] {
        assert!(variables.contains(variable), "{variable}: {variables:?}");
    }
    for variable in &variables {
        assert!(
            CONFIGURATION.contains(&format!("`{variable}`")),
            "configuration.md does not name `{variable}`"
        );
    }
}

/// The environment variables a program reads.
fn variables_of(program: &str) -> BTreeSet<String> {
    let of = |command: clap::Command| -> BTreeSet<String> {
        flags(&command).into_iter().filter_map(|f| f.env).collect()
    };
    match program {
        "cluster-node" => of(NodeCommand::command()),
        "goverse-gate" => {
            let mut all = of(GateCommand::command());
            all.insert("GOVERSE_LOG_FORMAT".into());
            all
        }
        "goverse" => {
            let mut all = of(StorageCommand::command());
            all.extend(cli_flags_and_variables().1);
            all
        }
        other => panic!("no program `{other}`"),
    }
}

/// The containers of a Kubernetes manifest: each program (`command:`),
/// its `args:` with `$(POD_IP)` filled in, and the variables it is given.
fn containers(manifest: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut containers: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    let mut in_args = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("image: ") {
            containers.push((String::new(), Vec::new(), Vec::new()));
            in_args = false;
        } else if let Some(command) = trimmed.strip_prefix("command: [\"") {
            // The container's own; a hook's command (preStop) comes later.
            let container = containers.last_mut().expect("a container");
            if container.0.is_empty() {
                container.0 = command.split('"').next().expect("a program").to_string();
            }
            in_args = false;
        } else if trimmed == "args:" {
            in_args = true;
        } else if let Some(container) = containers.last_mut() {
            if in_args && let Some(arg) = trimmed.strip_prefix("- ") {
                container.1.push(arg.replace("$(POD_IP)", "10.1.2.3"));
                continue;
            }
            in_args = false;
            if let Some(name) = trimmed.strip_prefix("- name: GOVERSE_") {
                container.2.push(format!("GOVERSE_{name}"));
            }
        }
    }
    containers
}

#[test]
fn the_kubernetes_manifests_use_only_flags_and_variables_the_programs_take() {
    let nodes = containers(K8S_NODES);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let (program, args, variables) = &nodes[0];
    assert_eq!(program, "cluster-node");
    assert!(args.len() >= 5, "{args:?}");
    for arg in args {
        assert!(arg.starts_with("--"), "`{arg}` is a flag");
    }
    let parsed = NodeCommand::try_parse_from(
        std::iter::once("cluster-node").chain(args.iter().map(String::as_str)),
    )
    .unwrap_or_else(|e| panic!("cluster-node refuses the manifest's args: {e}"));
    let file = parsed.node.into_file().expect("the args make a node file");
    assert_eq!(
        file.advertise.as_deref(),
        Some("10.1.2.3:7001"),
        "the pod IP"
    );
    assert_eq!(file.listen.map(|a| a.port()), Some(7001));
    assert_eq!(file.ops_listen.map(|a| a.port()), Some(9464));
    assert!(file.cluster.is_some_and(|c| !c.etcd.is_empty()));
    assert!(
        K8S_NODES.contains("path: /healthz") && K8S_NODES.contains("path: /ready"),
        "liveness on /healthz, readiness on /ready"
    );
    let known = variables_of("cluster-node");
    assert!(variables.contains(&"GOVERSE_NODE_ID".to_string()));
    for variable in variables {
        assert!(
            known.contains(variable),
            "cluster-node reads no `{variable}`"
        );
    }

    let gates = containers(K8S_GATE);
    assert_eq!(gates.len(), 1, "{gates:?}");
    let (program, args, variables) = &gates[0];
    assert_eq!(program, "goverse-gate");
    let parsed = GateCommand::try_parse_from(
        std::iter::once("goverse-gate").chain(args.iter().map(String::as_str)),
    )
    .unwrap_or_else(|e| panic!("goverse-gate refuses the manifest's args: {e}"));
    let mut file = parsed.node.into_file().expect("a node file");
    parsed.gate.apply(&mut file.gate).expect("a gate section");
    assert_eq!(file.advertise.as_deref(), Some("10.1.2.3:7100"));
    let gate = file.gate.expect("a gate");
    assert!(gate.http.is_some() && gate.grpc.is_some());
    let known = variables_of("goverse-gate");
    assert!(variables.contains(&"GOVERSE_NODE_ID".to_string()));
    for variable in variables {
        assert!(
            known.contains(variable),
            "goverse-gate reads no `{variable}`"
        );
    }

    let jobs = containers(K8S_MIGRATE);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0, "goverse");
    assert!(K8S_MIGRATE.contains("command: [\"goverse\", \"migrate\"]"));
    let known = variables_of("goverse");
    for variable in &jobs[0].2 {
        assert!(known.contains(variable), "goverse reads no `{variable}`");
    }
}

/// `ExecStart=` of a unit, continuation lines joined, split in words.
fn exec_start(unit: &str) -> Vec<String> {
    let start = unit.find("\nExecStart=").expect("an ExecStart") + "\nExecStart=".len();
    let mut line = String::new();
    for part in unit[start..].lines() {
        match part.strip_suffix('\\') {
            Some(part) => line.push_str(part),
            None => {
                line.push_str(part);
                break;
            }
        }
    }
    line.split_whitespace().map(str::to_string).collect()
}

/// `Environment=NAME=value` lines of a unit: the names.
fn unit_variables(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|l| l.split('=').next().expect("a name").to_string())
        .collect()
}

#[test]
fn the_systemd_units_and_their_node_files_are_ones_the_programs_take() {
    let node = exec_start(NODE_UNIT);
    assert_eq!(node[0], "/usr/local/bin/cluster-node");
    NodeCommand::try_parse_from(&node).expect("cluster-node takes the unit's flags");
    let known = variables_of("cluster-node");
    for variable in unit_variables(NODE_UNIT) {
        assert!(
            known.contains(&variable),
            "cluster-node reads no `{variable}`"
        );
    }

    let gate = exec_start(GATE_UNIT);
    assert_eq!(gate[0], "/usr/local/bin/goverse-gate");
    GateCommand::try_parse_from(&gate).expect("goverse-gate takes the unit's flags");
    let known = variables_of("goverse-gate");
    for variable in unit_variables(GATE_UNIT) {
        assert!(
            known.contains(&variable),
            "goverse-gate reads no `{variable}`"
        );
    }

    let file = NodeFile::parse(NODE_YAML).expect("node.yaml is a node file");
    assert!(file.cluster.is_some_and(|c| c.etcd.len() == 3));
    let storage = file.storage.expect("a storage section");
    assert!(storage.postgres.is_some() && !storage.migrate);

    let file = NodeFile::parse(GATE_YAML).expect("gate.yaml is a node file");
    let gate = file.gate.expect("a gate section");
    assert!(gate.http.is_some() && gate.tls_cert.is_some() && gate.auth_tokens.is_some());
    assert!(file.listen.is_some(), "the gate's node listens, for pushes");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

#[test]
fn the_dockerfile_builds_binaries_the_workspace_has() {
    let cli_manifest = std::fs::read_to_string(root().join("goverse-cli/Cargo.toml"))
        .expect("goverse-cli's manifest");
    let bins: Vec<&str> = DOCKERFILE
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    assert_eq!(bins, ["goverse", "goverse-gate", "cluster-node"]);
    for bin in &bins {
        let in_cli = cli_manifest.contains(&format!("name = \"{bin}\""));
        let in_example = root()
            .join(format!("examples/cluster/src/bin/{bin}.rs"))
            .exists();
        assert!(in_cli || in_example, "no binary `{bin}` in the workspace");
        assert!(
            DOCKERFILE.contains(&format!("target/release/{bin}")),
            "the image gets `{bin}`"
        );
    }
    assert!(cli_manifest.contains("name = \"goverse-cli\""));
    let example = std::fs::read_to_string(root().join("examples/cluster/Cargo.toml"))
        .expect("the example's manifest");
    assert!(example.contains("name = \"example-cluster\""));
    assert!(DOCKERFILE.contains("-p goverse-cli -p example-cluster"));
    assert!(DOCKERFILE.contains("protobuf-compiler"));

    // The builder's Rust is at least the workspace's rust-version.
    let workspace =
        std::fs::read_to_string(root().join("Cargo.toml")).expect("the workspace manifest");
    let version = |text: &str, key: &str| -> (u32, u32) {
        let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key}")) + key.len()..];
        let digits: String = rest
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = digits.split('.').map(|p| p.parse().expect("a number"));
        (parts.next().expect("major"), parts.next().expect("minor"))
    };
    assert!(
        version(DOCKERFILE, "ARG RUST_VERSION=") >= version(&workspace, "rust-version = "),
        "the builder's Rust is older than the workspace's rust-version"
    );
}

/// The `{{#include path[:anchor]}}` directives of a chapter.
fn includes(chapter: &str) -> Vec<(String, Option<String>)> {
    chapter
        .match_indices("{{#include ")
        .map(|(at, _)| {
            let rest = &chapter[at + "{{#include ".len()..];
            let target = &rest[..rest.find("}}").expect("the include ends")];
            match target.split_once(':') {
                Some((path, anchor)) => (path.to_string(), Some(anchor.to_string())),
                None => (target.to_string(), None),
            }
        })
        .collect()
}

#[test]
fn the_chapters_include_files_and_anchors_that_exist() {
    let book_src = root().join("book/src");
    for chapter in [DEPLOYMENT, EVOLVING_STATE, TESTING] {
        let included = includes(chapter);
        assert!(!included.is_empty());
        for (path, anchor) in included {
            let file = book_src.join(&path);
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Some(anchor) = anchor {
                assert!(
                    text.contains(&format!("ANCHOR: {anchor}\n"))
                        && text.contains(&format!("ANCHOR_END: {anchor}\n")),
                    "{path} has no anchor `{anchor}`"
                );
            }
        }
    }
}

#[test]
fn deployment_shows_every_file_of_deploy() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    let shown: BTreeSet<String> = includes(DEPLOYMENT).into_iter().map(|(p, _)| p).collect();
    for file in files {
        let relative = file
            .strip_prefix(root())
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        assert!(
            shown.contains(&format!("../../{relative}")),
            "deployment.md does not include {relative}"
        );
    }
}
