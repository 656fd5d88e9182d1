//! A cluster of node processes on a real etcd of the test's own, with a
//! driver calling objects all the time while nodes are stopped (SIGTERM),
//! killed (SIGKILL), restarted and added, and etcd itself is restarted.
//!
//! Checked throughout: no caller error except inside a failover window, the
//! shards always end up balanced over the live nodes, and no object is ever
//! active on two nodes at once (every activation and deactivation is logged
//! by the node processes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use goverse::prelude::*;
use goverse_tests::etcd::Etcd;
use goverse_tests::processes::TallyClient;
use goverse_tests::{PATIENCE, unique_prefix, wait_until};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SHARDS: u32 = 64;
const LEASE: Duration = Duration::from_secs(2);

fn micros_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}

/// One node process.
struct NodeProcess {
    id: String,
    child: Child,
}

impl NodeProcess {
    async fn start(id: &str, etcd: &str, prefix: &str, log: &Path) -> Self {
        Self::start_with(id, etcd, prefix, log, &[]).await
    }

    async fn start_with(id: &str, etcd: &str, prefix: &str, log: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_test-node"))
            .args([
                "--node-id",
                id,
                "--listen",
                "127.0.0.1:0",
                "--etcd",
                etcd,
                "--prefix",
                prefix,
            ])
            .args(extra)
            .args([
                "--shard-count",
                &SHARDS.to_string(),
                "--lease-ttl",
                "2s",
                "--call-timeout",
                "10s",
            ])
            .env("GOVERSE_TEST_ACTIVATION_LOG", log)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("test-node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("the node reports ready in time")
            .expect("reads stdout")
            .expect("a line");
        assert!(ready.starts_with(&format!("ready {id} ")), "{ready}");
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            id: id.to_string(),
            child,
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM: leaves gracefully; waits for the process to exit.
    async fn terminate(mut self) {
        self.signal("-TERM");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("exit status");
        assert!(status.success(), "{} exited with {status}", self.id);
    }

    /// SIGKILL; returns when it died.
    async fn kill(mut self) -> Killed {
        let signalled = micros_now();
        self.signal("-KILL");
        self.child.wait().await.expect("dies");
        Killed {
            signalled,
            dead: micros_now(),
        }
    }
}

/// When a node was killed.
#[derive(Debug, Clone, Copy)]
struct Killed {
    /// Just before the signal: the driver may see the connection drop
    /// before `kill` has even returned, so errors count from here.
    signalled: u128,
    /// Once the process was reaped: it may log activations until it dies,
    /// so its activations end here.
    dead: u128,
}

/// The test process's own view and calls, through a node that hosts
/// nothing (it routes, and gets no shards).
struct Driver {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<(u128, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    fn start(client: &Node, ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let errors: Arc<Mutex<Vec<(u128, String)>>> = Arc::default();
        let node = client.clone();
        let task = tokio::spawn({
            let (stop, calls, errors) = (stop.clone(), calls.clone(), errors.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    for id in &ids {
                        let tally = TallyClient::new(&node, id.clone());
                        if let Err(error) = tally.add(Int64Value { value: 1 }).await {
                            errors
                                .lock()
                                .expect("errors")
                                .push((micros_now(), error.to_string()));
                        }
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Self {
            stop,
            calls,
            errors,
            task,
        }
    }

    async fn progress(&self, more: u64) {
        let target = self.calls.load(Ordering::SeqCst) + more;
        let calls = self.calls.clone();
        wait_until("the driver keeps calling", PATIENCE, || {
            let calls = calls.clone();
            async move { calls.load(Ordering::SeqCst) >= target }
        })
        .await;
    }

    fn errors(&self) -> Vec<(u128, String)> {
        self.errors.lock().expect("errors").clone()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("driver");
    }
}

/// A node of the test process that hosts nothing: it routes calls to the
/// node processes, and gets no shards.
async fn routing_node(id: &str, etcd: &str, prefix: &str) -> Node {
    let coordinator = goverse::cluster::ClusterCoordinator::etcd(
        &[etcd],
        goverse::cluster::ClusterOptions::default()
            .prefix(prefix)
            .lease_ttl(LEASE),
    )
    .await
    .expect("etcd");
    Node::builder()
        .node_id(id)
        .shard_count(SHARDS)
        .call_timeout(Duration::from_secs(10))
        .coordinator(coordinator)
        .start()
        .await
        .expect("routing node")
}

/// Waits until exactly `nodes` serve every shard, each a fair share, with
/// nothing moving.
async fn wait_balanced(client: &Node, nodes: &[&str]) {
    let expected: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
    let fair = SHARDS as usize / nodes.len();
    wait_until(
        &format!("the shards are balanced over {nodes:?}"),
        PATIENCE,
        || {
            let view = client.cluster_view();
            let expected = expected.clone();
            async move {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for shard in 0..SHARDS {
                    if view.is_moving(shard) {
                        return false;
                    }
                    match view.current_owner(shard) {
                        Some(owner) => *counts.entry(owner.id.to_string()).or_default() += 1,
                        None => return false,
                    }
                }
                counts.keys().cloned().collect::<BTreeSet<_>>() == expected
                    && counts.values().all(|&c| c >= fair && c <= fair + 1)
            }
        },
    )
    .await;
}

/// Replays the activation log: no object may be active on two nodes at
/// once. A killed node's activations end when it was killed.
fn assert_at_most_one_activation(log: &Path, kills: &[(String, u128)]) {
    let text = std::fs::read_to_string(log).expect("activation log");
    let mut events: Vec<(u128, String, String, String)> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [event, object, node, micros] = parts[..] else {
            panic!("malformed log line {line:?}");
        };
        events.push((
            micros.parse().expect("time"),
            event.into(),
            object.into(),
            node.into(),
        ));
    }
    for (node, at) in kills {
        events.push((*at, "killed".into(), "-".into(), node.clone()));
    }
    events.sort();
    let mut active: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut activations = 0;
    for (at, event, object, node) in &events {
        match event.as_str() {
            "activate" => {
                activations += 1;
                let holders = active.entry(object.clone()).or_default();
                assert!(
                    holders.is_empty() || holders.contains(node),
                    "{object} activated on {node} at {at} while active on {holders:?}"
                );
                holders.insert(node.clone());
            }
            "deactivate" => {
                if let Some(holders) = active.get_mut(object) {
                    holders.remove(node);
                }
            }
            "killed" => {
                for holders in active.values_mut() {
                    holders.remove(node);
                }
            }
            _ => {}
        }
    }
    assert!(activations > 0, "the log recorded activations");
    eprintln!("{activations} activations checked, never two at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stop_die_restart_and_join_under_load() {
    let dir = std::env::temp_dir().join(unique_prefix("processes").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("activations.log");
    let mut etcd = Etcd::start(&dir).await;
    let endpoint = etcd.endpoint();
    let prefix = unique_prefix("processes");

    let n1 = NodeProcess::start("n1", &endpoint, &prefix, &log).await;
    let n2 = NodeProcess::start("n2", &endpoint, &prefix, &log).await;
    let n3 = NodeProcess::start("n3", &endpoint, &prefix, &log).await;
    let client = routing_node("driver", &endpoint, &prefix).await;
    wait_balanced(&client, &["n1", "n2", "n3"]).await;
    let ids: Vec<String> = (0..30).map(|i| format!("tally-{i}")).collect();
    let driver = Driver::start(&client, ids);
    driver.progress(200).await;

    // A graceful stop moves every shard with no caller error.
    n3.terminate().await;
    wait_balanced(&client, &["n1", "n2"]).await;
    driver.progress(200).await;
    assert_eq!(driver.errors(), vec![], "errors during a graceful stop");

    // A kill: errors only until the lease expires and the shards move.
    let killed = n2.kill().await;
    let killed_at = killed.signalled;
    wait_balanced(&client, &["n1"]).await;
    driver.progress(200).await;
    let window = (LEASE + Duration::from_secs(5)).as_micros();
    let errors = driver.errors();
    for (at, error) in &errors {
        assert!(
            *at >= killed_at && *at <= killed_at + window,
            "error outside the failover window: {error} at +{}ms",
            at.saturating_sub(killed_at) / 1000
        );
    }
    let seen = errors.len();
    eprintln!("{seen} calls failed in the failover window");

    // The killed node comes back with its id, and a new one joins, under load.
    let n2 = NodeProcess::start("n2", &endpoint, &prefix, &log).await;
    let n4 = NodeProcess::start("n4", &endpoint, &prefix, &log).await;
    wait_balanced(&client, &["n1", "n2", "n4"]).await;
    driver.progress(200).await;
    assert_eq!(
        driver.errors().len(),
        seen,
        "errors while nodes joined: {:?}",
        &driver.errors()[seen..]
    );

    // etcd restarts: the nodes keep their leases and go on.
    etcd.restart().await;
    driver.progress(200).await;
    wait_balanced(&client, &["n1", "n2", "n4"]).await;
    driver.progress(200).await;

    driver.stop().await;
    client.shutdown().await;
    for node in [n1, n2, n4] {
        node.terminate().await;
    }
    assert_at_most_one_activation(&log, &[("n2".to_string(), killed.dead)]);
    std::fs::remove_dir_all(&dir).ok();
}

/// What a depositor saw for one vault.
#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    /// Deposits acknowledged: each must be in the vault.
    acknowledged: i64,
    /// Deposits that failed in a way that may have run (the node died
    /// mid-call): each may or may not be in the vault.
    uncertain: i64,
    /// Whether the vault gets reliable deposits (retried to success).
    reliable: bool,
}

/// A reliable deposit of 1 under `call_id`, retried through failovers
/// until it is acknowledged.
async fn deposit_until_acknowledged(
    vault: &goverse_tests::processes::VaultClient,
    call_id: &str,
) -> goverse::Result<Int64Value> {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        match vault
            .reliable(call_id)
            .deposit(Int64Value { value: 1 })
            .await
        {
            Err(error)
                if matches!(error.code(), Code::Unavailable | Code::DeadlineExceeded)
                    && tokio::time::Instant::now() < give_up => {}
            outcome => return outcome,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_lose_no_acknowledged_write() {
    use goverse_tests::processes::VaultClient;

    let database = goverse_tests::database_url();
    let dir = std::env::temp_dir().join(unique_prefix("crash").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("activations.log");
    let etcd = Etcd::start(&dir).await;
    let endpoint = etcd.endpoint();
    let prefix = unique_prefix("crash");
    let storage = ["--postgres", database.as_str(), "--migrate", "true"];
    let start = |id: &'static str| NodeProcess::start_with(id, &endpoint, &prefix, &log, &storage);
    let mut nodes = vec![start("n1").await, start("n2").await, start("n3").await];

    let client = routing_node("depositor", &endpoint, &prefix).await;
    wait_balanced(&client, &["n1", "n2", "n3"]).await;

    // Depositors keep a ledger of what each vault was told. Half of them
    // make plain calls, half make reliable ones and retry each deposit
    // under its call id until it is acknowledged.
    let run = unique_prefix("v").replace('/', "_");
    let ids: Vec<String> = (0..24).map(|i| format!("{run}-vault-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ledgers: Arc<Mutex<BTreeMap<String, Ledger>>> = Arc::default();
    let mut depositors = Vec::new();
    for (chunk_index, chunk) in ids.chunks(6).enumerate() {
        let (node, stop, ledgers, chunk) = (
            client.clone(),
            stop.clone(),
            ledgers.clone(),
            chunk.to_vec(),
        );
        let reliable = chunk_index % 2 == 1;
        depositors.push(tokio::spawn(async move {
            let mut sequence = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for id in &chunk {
                    sequence += 1;
                    let vault = VaultClient::new(&node, id.clone());
                    let result = if reliable {
                        deposit_until_acknowledged(&vault, &format!("d{sequence}")).await
                    } else {
                        vault.deposit(Int64Value { value: 1 }).await
                    };
                    let mut ledgers = ledgers.lock().expect("ledgers");
                    let ledger = ledgers.entry(id.clone()).or_default();
                    ledger.reliable = reliable;
                    match result {
                        Ok(_) => ledger.acknowledged += 1,
                        Err(error)
                            if matches!(
                                error.code(),
                                Code::Unavailable | Code::DeadlineExceeded
                            ) =>
                        {
                            ledger.uncertain += 1;
                        }
                        Err(error) => panic!("unexpected error: {error}"),
                    }
                }
            }
        }));
    }
    let acknowledged = || -> i64 {
        ledgers
            .lock()
            .expect("ledgers")
            .values()
            .map(|l| l.acknowledged)
            .sum()
    };
    let progress = |more: i64| {
        let target = acknowledged() + more;
        let ledgers = ledgers.clone();
        async move {
            wait_until("deposits go on", PATIENCE, || {
                let ledgers = ledgers.clone();
                async move {
                    ledgers
                        .lock()
                        .expect("ledgers")
                        .values()
                        .map(|l| l.acknowledged)
                        .sum::<i64>()
                        >= target
                }
            })
            .await;
        }
    };
    progress(100).await;

    // Kill nodes in the middle of deposits, twice, and bring them back.
    let mut kills = Vec::new();
    for victim in ["n2", "n3"] {
        let index = nodes.iter().position(|n| n.id == victim).expect("running");
        let node = nodes.remove(index);
        kills.push((victim.to_string(), node.kill().await.dead));
        let survivors: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        wait_balanced(&client, &survivors).await;
        progress(50).await;
        nodes.push(start(victim).await);
        wait_balanced(&client, &["n1", "n2", "n3"]).await;
        progress(50).await;
    }

    stop.store(true, Ordering::SeqCst);
    for depositor in depositors {
        depositor.await.expect("depositor");
    }
    let ledgers = ledgers.lock().expect("ledgers").clone();
    let (mut uncertain, mut reliable) = (0, 0);
    for id in &ids {
        let ledger = ledgers.get(id).copied().unwrap_or_default();
        let total = VaultClient::new(&client, id.clone())
            .total(Empty {})
            .await
            .expect("read a vault")
            .value;
        assert!(
            total >= ledger.acknowledged,
            "{id} lost acknowledged deposits: {total} < {}",
            ledger.acknowledged
        );
        if ledger.reliable {
            assert_eq!(
                total, ledger.acknowledged,
                "{id}: every reliable deposit applied exactly once"
            );
            reliable += ledger.acknowledged;
        }
        assert!(
            total <= ledger.acknowledged + ledger.uncertain,
            "{id} has deposits nobody made: {total} > {} + {}",
            ledger.acknowledged,
            ledger.uncertain
        );
        uncertain += ledger.uncertain;
    }
    eprintln!(
        "{} deposits acknowledged, none lost; {uncertain} plain ones failed while nodes died; \
         {reliable} reliable ones, each applied exactly once",
        ledgers.values().map(|l| l.acknowledged).sum::<i64>()
    );
    client.shutdown().await;
    for node in nodes {
        node.terminate().await;
    }
    assert_at_most_one_activation(&log, &kills);
    drop(etcd);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_call_outlives_its_owner() {
    use goverse::storage::{PostgresOptions, PostgresStorage, Storage};
    use goverse_tests::processes::VaultClient;

    let database = goverse_tests::database_url();
    let records = PostgresStorage::connect(&database, PostgresOptions::default().migrate(true))
        .await
        .expect("PostgreSQL");
    let dir = std::env::temp_dir().join(unique_prefix("reliable").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("activations.log");
    let etcd = Etcd::start(&dir).await;
    let endpoint = etcd.endpoint();
    let prefix = unique_prefix("reliable");
    let storage = ["--postgres", database.as_str()];
    let start = |id: &'static str| NodeProcess::start_with(id, &endpoint, &prefix, &log, &storage);
    let mut nodes = vec![start("n1").await, start("n2").await];
    let client = routing_node("caller", &endpoint, &prefix).await;
    wait_balanced(&client, &["n1", "n2"]).await;

    let id = unique_prefix("vault").replace('/', "_");
    let vault = VaultClient::new(&client, id.clone());
    let impatient = vault.clone().with_timeout(Duration::from_millis(300));
    let owner = |nodes: &mut Vec<NodeProcess>, host: &str| {
        let index = nodes.iter().position(|n| n.id == host).expect("owner runs");
        nodes.remove(index)
    };

    // 1. The owner runs the deposit and records it, then dies before the
    // caller hears back: the retry gets the recorded result, and the
    // deposit is not made twice.
    let host = vault.host(Empty {}).await.expect("host").value;
    let error = impatient
        .reliable("deposit-a")
        .slow_deposit(Int64Value { value: 7 })
        .await
        .expect_err("the caller stops waiting");
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
    wait_until("the deposit is recorded", PATIENCE, || {
        let (records, id) = (records.clone(), id.clone());
        async move {
            records
                .load_call("Vault", &id, "deposit-a")
                .await
                .expect("read records")
                .is_some()
        }
    })
    .await;
    let victim = owner(&mut nodes, &host);
    let killed = victim.kill().await;
    let mut kills = vec![(host.clone(), killed.dead)];
    let retried = vault
        .reliable("deposit-a")
        .slow_deposit(Int64Value { value: 7 })
        .await
        .expect("the retry succeeds on the new owner");
    assert_eq!(retried.value, 7, "the recorded result");
    assert_ne!(vault.host(Empty {}).await.expect("host").value, host);
    assert_eq!(vault.total(Empty {}).await.expect("total").value, 7);

    // 2. The owner dies while the deposit runs, before anything is
    // recorded: the retry runs it on the new owner, once.
    let restart = ["n1", "n2"].into_iter().find(|n| *n == host).expect("ours");
    nodes.push(start(restart).await);
    wait_balanced(&client, &["n1", "n2"]).await;
    let host = vault.host(Empty {}).await.expect("host").value;
    let error = impatient
        .reliable("deposit-b")
        .slow_deposit(Int64Value { value: 5 })
        .await
        .expect_err("the caller stops waiting");
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
    let victim = owner(&mut nodes, &host);
    kills.push((host.clone(), victim.kill().await.dead));
    let ran_before_the_kill = records
        .load_call("Vault", &id, "deposit-b")
        .await
        .expect("read records")
        .is_some();
    let retried = vault
        .reliable("deposit-b")
        .slow_deposit(Int64Value { value: 5 })
        .await
        .expect("the retry succeeds on the new owner");
    assert_eq!(retried.value, 12);
    assert_eq!(vault.total(Empty {}).await.expect("total").value, 12);
    eprintln!("deposit-b was recorded before its owner died: {ran_before_the_kill}");

    client.shutdown().await;
    for node in nodes {
        node.terminate().await;
    }
    assert_at_most_one_activation(&log, &kills);
    drop(etcd);
    std::fs::remove_dir_all(&dir).ok();
}
