//! What the command's tests share: vault nodes in a cluster on the test
//! etcd, and a `goverse inspector` process in front of it.

#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::Duration;

use goverse::Node;
use goverse_tests::processes::Vault;
use goverse_tests::{Backend, PATIENCE};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The operator token the inspectors of these tests accept, for `alice`.
pub const OPERATOR_TOKEN: &str = "ops-alice-0123456789abcdef";

/// A node hosting vaults in the cluster at `prefix` on `backend`, with
/// `shards` shards, publishing its summary every 100 ms.
pub async fn vault_node(backend: &Backend, prefix: &str, id: &str, shards: u32) -> Node {
    Node::builder()
        .register::<Vault>()
        .node_id(id)
        .shard_count(shards)
        .listen("127.0.0.1:0".parse().expect("address"))
        .summary_interval(Duration::from_millis(100))
        .coordinator(backend.coordinator(prefix, Duration::from_secs(2)).await)
        .start()
        .await
        .expect("node starts")
}

/// A `goverse inspector` of the cluster at `prefix` on etcd `endpoint`,
/// taking [`OPERATOR_TOKEN`] (its tokens file goes in `dir`), and the
/// address it serves at once it says it is ready.
pub async fn start_inspector(
    endpoint: &str,
    prefix: &str,
    dir: &std::path::Path,
) -> (Child, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let tokens = dir.join("operators.yaml");
    std::fs::write(
        &tokens,
        format!("tokens:\n  - {{ token: {OPERATOR_TOKEN}, user: alice, roles: [operator] }}\n"),
    )
    .expect("tokens");
    let mut inspector = Command::new(env!("CARGO_BIN_EXE_goverse"))
        .args(["inspector", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(&tokens)
        .env("GOVERSE_ETCD", endpoint)
        .env("GOVERSE_PREFIX", prefix)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("goverse inspector starts");
    let mut lines = BufReader::new(inspector.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("ready in time")
        .expect("stdout")
        .expect("a line");
    let address = ready
        .strip_prefix("ready http://")
        .unwrap_or_else(|| panic!("unexpected: {ready}"))
        .to_string();
    (inspector, address)
}
