//! `run.sh` as a newcomer runs it, on the test etcd and PostgreSQL and the
//! binaries this run built: it brings up three nodes and a gate, every
//! command it prints works, and Ctrl-C (SIGINT) stops every process it
//! started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use goverse_tests::etcd::free_port;
use goverse_tests::{Backend, GroupKiller, PATIENCE, database_url, unique_prefix};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs one of the commands `run.sh` printed, as a shell would.
async fn shell(line: &str) -> String {
    let output = Command::new("bash")
        .args(["-c", line])
        .output()
        .await
        .expect("bash runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{line}` failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sh_starts_a_cluster_whose_printed_commands_work_and_stops_it() {
    let Backend::Etcd(etcd) = Backend::etcd() else {
        unreachable!("an etcd backend")
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_cluster-node"))
        .parent()
        .expect("the binaries' directory");
    for needed in ["goverse", "goverse-gate", "cluster-client"] {
        assert!(
            bin.join(needed).exists(),
            "{needed} is missing: build the workspace's binaries first (`cargo test --workspace --all-features --no-run`, as scripts/test.sh does)"
        );
    }
    let (http, grpc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh");
    let mut run = Command::new("bash")
        .arg(&script)
        .env("GOVERSE_ETCD", &etcd)
        .env("GOVERSE_DATABASE_URL", database_url())
        .env("GOVERSE_PREFIX", unique_prefix("example-cluster"))
        .env("GOVERSE_EXAMPLE_HTTP", &http)
        .env("GOVERSE_EXAMPLE_GRPC", &grpc)
        .env("GOVERSE_EXAMPLE_BIN", bin)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run.sh starts");
    let _group = GroupKiller(run.id().expect("running"));
    let mut lines = BufReader::new(run.stdout.take().expect("stdout")).lines();
    // Everything it prints up to Ctrl-C's hint, the commands among it.
    let printed = tokio::time::timeout(PATIENCE * 2, async {
        let mut printed = Vec::new();
        while let Some(line) = lines.next_line().await.expect("stdout") {
            let done = line.contains("Ctrl-C stops the cluster");
            printed.push(line);
            if done {
                return printed;
            }
        }
        panic!("run.sh ended before the cluster was ready: {printed:#?}");
    })
    .await
    .expect("the cluster is ready in time");
    assert!(
        printed.iter().any(|l| l.starts_with("cluster ready")),
        "{printed:#?}"
    );
    let command = |starts: &str| {
        printed
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no `{starts}` line: {printed:#?}"))
            .to_string()
    };
    let curls: Vec<String> = printed
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl "))
        .map(String::from)
        .collect();
    assert_eq!(curls.len(), 3, "{printed:#?}");
    // Add 5 to c1, read it back, count a visit.
    let added = shell(&curls[0]).await;
    assert!(added.contains('5'), "{added}");
    let got = shell(&curls[1]).await;
    assert!(got.contains('5'), "{got}");
    let visited = shell(&curls[2]).await;
    assert!(visited.chars().any(|c| c.is_ascii_digit()), "{visited}");
    // The Rust client over gRPC: 0 + 1 + ... + 9 in ten counters.
    let client = shell(&command(&bin.join("cluster-client").display().to_string())).await;
    assert!(client.contains("ten counters hold 45 in all"), "{client}");
    // Visits are kept in PostgreSQL, so an earlier run's count on.
    assert!(
        client
            .lines()
            .filter_map(|l| l.strip_prefix("client visits: "))
            .any(|n| n.parse::<i64>().is_ok_and(|n| n >= 1)),
        "{client}"
    );
    // The operator's view: three nodes and a gate.
    let status = shell(&command("GOVERSE_ETCD=")).await;
    assert!(status.starts_with("4 nodes"), "{status}");
    for node in ["node-1", "node-2", "node-3", "gate-1"] {
        assert!(status.contains(node), "{status}");
    }

    // Ctrl-C: the script stops its processes and says so.
    let pid = run.id().expect("running");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let rest = tokio::time::timeout(PATIENCE, async {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("run.sh ends in time");
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:#?}");
    tokio::time::timeout(Duration::from_secs(30), run.wait())
        .await
        .expect("exits")
        .expect("status");
    // Nothing it started still listens.
    assert!(
        tokio::net::TcpStream::connect(&http).await.is_err(),
        "the gate still serves"
    );
}
