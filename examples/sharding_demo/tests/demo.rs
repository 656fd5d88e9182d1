//! The sharding demo, short: three node processes on the test etcd and
//! PostgreSQL, two gates and the inspector, a node killed twice under
//! load; the summary must show no acknowledged write lost.

use std::path::Path;
use std::time::Duration;

use goverse_tests::{Backend, GroupKiller, database_url, etcd::free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_kills_nodes_under_load_and_loses_no_acknowledged_write() {
    let Backend::Etcd(etcd) = Backend::etcd() else {
        unreachable!("an etcd backend")
    };
    let demo = Path::new(env!("CARGO_BIN_EXE_sharding-demo"));
    let bin = demo.parent().expect("the binaries' directory");
    for needed in ["goverse", "goverse-gate", "demo-node"] {
        assert!(
            bin.join(needed).exists(),
            "{needed} is missing: build the workspace's binaries first (`cargo test --workspace --all-features --no-run`, as scripts/test.sh does)"
        );
    }
    let run = tokio::process::Command::new(demo)
        .args([
            "--nodes",
            "3",
            "--seconds",
            "14",
            "--kill-every",
            "5",
            "--workers",
            "6",
        ])
        .args(["--counters", "40", "--shard-count", "64"])
        .args(["--inspector", &format!("127.0.0.1:{}", free_port())])
        .env("GOVERSE_ETCD", &etcd)
        .env("GOVERSE_DATABASE_URL", database_url())
        .process_group(0)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the demo starts");
    // Its nodes, gates and inspector go with it, however the test ends.
    let _group = GroupKiller(run.id().expect("running"));
    let output = tokio::time::timeout(Duration::from_secs(300), run.wait_with_output())
        .await
        .expect("the demo ends in time")
        .expect("the demo runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}\n{errors}");
    assert!(
        text.contains("result: OK: zero acknowledged writes lost"),
        "{text}"
    );
    assert!(text.contains("kills: 2;"), "{text}");
    assert!(
        text.contains("40 checked against the ledger: 0 lost, 0 beyond"),
        "{text}"
    );
    // Each killed node's shard monitors were activated again elsewhere.
    assert!(text.contains("shard monitors: shard#0 on node-"), "{text}");
    assert!(text.contains("node monitors answering: "), "{text}");
}
