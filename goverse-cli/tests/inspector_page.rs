//! The inspector's page in a real browser (headless Chromium, driven over
//! the DevTools protocol) against a cluster of processes on the test etcd
//! (three `test-node`s on 8192 shards and a `goverse-gate`, with calls
//! going through the gate): it lists the nodes and the gate and the
//! shards by owner; a shard moved through the page lands on the chosen
//! node in etcd and the page shows it there; a node drained from the
//! page gives its shards away with no call failing; a node killed with
//! SIGKILL turns bad on the page and its shards move. Screenshots go to
//! the test's output directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{OPERATOR_TOKEN, start_inspector};
use goverse_tests::browser::Browser;
use goverse_tests::{Backend, PATIENCE, http_post, unique_prefix, wait_until};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The programs of the run, built by `cargo test` beside each other.
fn program(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_goverse")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo test --workspace --all-features --no-run`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// A cluster of processes on the test etcd: `test-node`s hosting vaults
/// and a `goverse-gate`, each killed when the test ends.
struct Cluster {
    endpoint: String,
    prefix: String,
    dir: PathBuf,
}

impl Cluster {
    fn args(&self, id: &str) -> Vec<String> {
        [
            "--node-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            &self.endpoint,
            "--prefix",
            &self.prefix,
            "--lease-ttl",
            "2s",
            "--summary-interval",
            "200ms",
            "--call-metrics",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Starts `program` as `id` and returns it with its `ready` line.
    async fn start(&self, program_name: &str, id: &str, extra: &[&str]) -> (Child, String) {
        let log = std::fs::File::create(self.dir.join(format!("{id}.log"))).expect("log");
        let mut child = Command::new(program(program_name))
            .args(self.args(id))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the process starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(PATIENCE, async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line.starts_with("ready ") => return line,
                    Ok(Some(_)) => {}
                    other => panic!("{id} ended before it was ready: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} was not ready in time"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, ready)
    }
}

/// The page's node rows: `(node, state, lease)`.
const NODE_ROWS: &str = r#"[...document.querySelectorAll('#nodes tbody tr')]
    .map(r => [r.dataset.node, r.querySelector('.state').textContent, r.querySelector('.lease').textContent])"#;

/// The page's gate rows: `(gate, state, lease)`.
const GATE_ROWS: &str = r#"[...document.querySelectorAll('#gates tbody tr')]
    .map(r => [r.dataset.node, r.querySelector('.state').textContent, r.querySelector('.lease').textContent])"#;

/// The page's shard grid: each shard's owner.
const GRID: &str = r#"[...document.querySelectorAll('#grid div')].map(d => d.dataset.owner)"#;

/// Polls `check` on the page every 100 ms until it holds, or fails with
/// what the page showed.
macro_rules! wait_for_page {
    ($what:expr, $check:expr) => {{
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (done, seen) = $check;
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {}: {seen}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

/// Fills the page's action form as alice and submits it.
async fn act(browser: &mut Browser, kind: &str, shard: Option<u32>, node: Option<&str>) {
    let shard = shard.map_or(String::new(), |s| s.to_string());
    let node = node.unwrap_or("");
    let submitted = browser
        .eval(&format!(
            r#"(() => {{
                document.getElementById('token').value = '{OPERATOR_TOKEN}';
                document.getElementById('action-kind').value = '{kind}';
                document.getElementById('action-shard').value = '{shard}';
                if ('{node}') document.getElementById('action-node').value = '{node}';
                document.getElementById('action-go').click();
                return document.getElementById('action-kind').value;
            }})()"#
        ))
        .await;
    assert_eq!(submitted, kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_page_watches_a_cluster_of_processes_through_moves_a_drain_and_a_kill() {
    let backend = Backend::etcd();
    let Backend::Etcd(endpoint) = &backend else {
        unreachable!("an etcd backend")
    };
    let prefix = unique_prefix("inspector-page");
    let dir = std::env::temp_dir().join(prefix.replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let cluster = Cluster {
        endpoint: endpoint.clone(),
        prefix: prefix.clone(),
        dir: dir.clone(),
    };
    // Three nodes on the default 8192 shards, and a gate.
    let mut nodes = Vec::new();
    for id in ["page-a", "page-b", "page-c"] {
        nodes.push(cluster.start("test-node", id, &[]).await.0);
    }
    let (_gate, ready) = cluster
        .start("goverse-gate", "page-gate", &["--http", "127.0.0.1:0"])
        .await;
    let http = ready
        .trim_start_matches("ready page-gate ")
        .split(' ')
        .next()
        .expect("an address")
        .trim_start_matches("http://")
        .to_string();
    let admin = backend.admin(&prefix).await;
    let owner_of = |view: &goverse::cluster::ClusterView, shard: u32| {
        view.current_owner(shard).map(|n| n.id.to_string())
    };
    wait_until("the shards are spread over the three", PATIENCE, || async {
        let Ok(view) = admin.view().await else {
            return false;
        };
        let count = view.shard_count();
        (0..count).all(|s| owner_of(&view, s).is_some() && !view.is_moving(s))
            && ["page-a", "page-b", "page-c"]
                .iter()
                .all(|id| (0..count).any(|s| owner_of(&view, s).as_deref() == Some(id)))
    })
    .await;

    // Calls through the gate throughout, so the page has rates and p99s.
    let stop = Arc::new(AtomicBool::new(false));
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let driver = tokio::spawn({
        let (stop, failed, http) = (stop.clone(), failed.clone(), http.clone());
        async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                i = (i + 1) % 32;
                let path = format!("/api/v1/objects/call/Vault/page-{i}/Deposit");
                let (status, answer) =
                    http_post(&http, &path, &[("content-type", "application/json")], "1").await;
                if status != 200 {
                    failed
                        .lock()
                        .expect("failed")
                        .push(format!("{status} {answer}"));
                }
            }
        }
    });

    let (mut inspector, address) = start_inspector(endpoint, &prefix, &dir).await;
    let mut browser = Browser::start().await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inspector");
    browser
        .command(
            "Page.navigate",
            serde_json::json!({ "url": format!("http://{address}/") }),
        )
        .await;
    // The three nodes and the gate, healthy with their leases held; all
    // 8192 shards coloured by owner at a glance; calls and p99s by type.
    wait_for_page!("the cluster", {
        let rows = browser.eval(NODE_ROWS).await;
        let gates = browser.eval(GATE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let dense = browser
            .eval("document.getElementById('grid').classList.contains('dense')")
            .await;
        let by_type = browser
            .eval("[...document.querySelectorAll('#objects tbody tr')].map(r => r.textContent)")
            .await;
        let healthy = |rows: &serde_json::Value, n: usize| {
            rows.as_array().is_some_and(|r| {
                r.len() == n && r.iter().all(|row| row[1] == "healthy" && row[2] == "held")
            })
        };
        let owned = grid.as_array().is_some_and(|g| {
            g.len() == 8192
                && g.iter()
                    .all(|o| o.as_str().is_some_and(|o| o.starts_with("page-")))
        });
        // A Vault row with a call rate and a p99 ("≤ ..."), on some node.
        let timed = by_type.as_array().is_some_and(|r| {
            r.iter().any(|t| {
                t.as_str()
                    .is_some_and(|t| t.starts_with("Vault") && t.contains('≤'))
            })
        });
        (
            healthy(&rows, 3) && healthy(&gates, 1) && owned && dense == true && timed,
            format!("{rows} {gates} dense={dense} {by_type}"),
        )
    });
    browser.screenshot(&shots, "1-cluster").await;

    // Move a shard of page-a's to page-c through the page's form.
    let view = admin.view().await.expect("view");
    let shard = (0..8192u32)
        .find(|&s| owner_of(&view, s).as_deref() == Some("page-a"))
        .expect("page-a serves shards");
    act(&mut browser, "move", Some(shard), Some("page-c")).await;
    wait_until("the shard is on page-c in etcd", PATIENCE, || async {
        let view = admin.view().await.expect("view");
        owner_of(&view, shard).as_deref() == Some("page-c") && !view.is_moving(shard)
    })
    .await;
    let landed = tokio::time::Instant::now();
    wait_for_page!("the move", {
        let owner = browser
            .eval(&format!(
                "document.querySelector('#grid div[data-shard=\"{shard}\"]').dataset.owner"
            ))
            .await;
        let log = browser
            .eval("document.querySelector('#log tbody').textContent")
            .await;
        // The move also shows in the feed of moves: shard, from, to.
        let moves = browser
            .eval("document.querySelector('#moves tbody').textContent")
            .await;
        let seen_moving = moves
            .as_str()
            .is_some_and(|m| m.contains(&format!("shard {shard}page-apage-c")));
        let logged = log
            .as_str()
            .is_some_and(|l| l.contains("alice") && l.contains("OK"));
        (
            owner == "page-c" && seen_moving && logged,
            format!("{owner} {log}"),
        )
    });
    // How long the page took to show the move once it had landed.
    eprintln!("page update latency: {:?}", landed.elapsed());
    browser.screenshot(&shots, "2-moved").await;

    // The search box finds an object's shard and node.
    let object_shard = goverse::placement::shard_of("room-42", 8192);
    let owner = owner_of(&admin.view().await.expect("view"), object_shard).expect("an owner");
    browser
        .eval(
            "document.getElementById('object-id').value = 'room-42'; \
             document.querySelector('#search button').click(); true",
        )
        .await;
    let expected = format!("shard {object_shard}, on {owner}");
    wait_for_page!("the search's answer", {
        let found = browser
            .eval("document.getElementById('search-result').textContent")
            .await;
        (
            found == expected.as_str(),
            format!("{found}, not {expected}"),
        )
    });

    // Drain page-c from the page: it turns draining and its shards go,
    // with no call failing; then it takes shards again.
    act(&mut browser, "drain", None, Some("page-c")).await;
    wait_for_page!("the drain", {
        let rows = browser.eval(NODE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let draining = rows.as_array().is_some_and(|r| {
            r.iter()
                .any(|row| row[0] == "page-c" && row[1] == "draining")
        });
        let emptied = grid
            .as_array()
            .is_some_and(|g| g.len() == 8192 && g.iter().all(|o| o != "page-c" && o != ""));
        (draining && emptied, rows.to_string())
    });
    browser.screenshot(&shots, "3-drained").await;
    act(&mut browser, "undrain", None, Some("page-c")).await;
    wait_for_page!("page-c taking shards again", {
        let rows = browser.eval(NODE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let back = grid
            .as_array()
            .is_some_and(|g| g.iter().filter(|o| *o == "page-c").count() > 1000);
        let healthy = rows.as_array().is_some_and(|r| {
            r.iter()
                .any(|row| row[0] == "page-c" && row[1] == "healthy")
        });
        (back && healthy, rows.to_string())
    });
    let failures = failed.lock().expect("failed").clone();
    assert!(
        failures.is_empty(),
        "calls failed during the drain: {failures:?}"
    );

    // page-b is killed with SIGKILL: the page marks it, and its shards
    // move to the others.
    nodes[1].start_kill().expect("SIGKILL");
    nodes[1].wait().await.expect("page-b ends");
    let killed = tokio::time::Instant::now();
    wait_for_page!("the failover", {
        let rows = browser.eval(NODE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let marked = rows.as_array().is_some_and(|r| {
            r.iter()
                .any(|row| row[0] == "page-b" && (row[1] == "gone" || row[1] == "unhealthy"))
        });
        let moved = grid.as_array().is_some_and(|g| {
            g.iter()
                .all(|o| o.as_str().is_some_and(|o| o == "page-a" || o == "page-c"))
        });
        (marked && moved, rows.to_string())
    });
    eprintln!("failover shown after {:?}", killed.elapsed());
    browser.screenshot(&shots, "4-failover").await;
    let view = admin.view().await.expect("view");
    assert!(
        (0..8192).all(|s| matches!(owner_of(&view, s).as_deref(), Some("page-a" | "page-c"))),
        "etcd still gives page-b shards"
    );

    // The audit log keeps who did what, for the page and the commands.
    let log = admin.audit_log().await.expect("audit log");
    let taken: Vec<_> = log
        .iter()
        .map(|e| {
            (
                e.user.as_str(),
                serde_json::to_value(&e.action).expect("json")["action"].clone(),
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        taken,
        [
            ("alice", serde_json::json!("move"), "OK"),
            ("alice", serde_json::json!("drain"), "OK"),
            ("alice", serde_json::json!("undrain"), "OK"),
        ]
    );

    stop.store(true, Ordering::SeqCst);
    driver.await.expect("driver");
    inspector.kill().await.expect("stops");
    drop(nodes);
    std::fs::remove_dir_all(&dir).ok();
}
