//! The sharding demo: starts `--nodes` node processes, two gates and the
//! inspector on the etcd and PostgreSQL named by `GOVERSE_ETCD` and
//! `GOVERSE_DATABASE_URL`, drives reliable adds to counters through both
//! gates while it kills a node with SIGKILL every `--kill-every` seconds
//! and restarts it, then checks every counter against its ledger and
//! prints a summary: calls, errors by code, failover times, the monitors'
//! reports, and whether any acknowledged write was lost (exit status 1 if
//! one was).
//!
//! `run.sh` beside this crate starts the services and runs it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use example_sharding_demo::{NodeMonitorClient, ShardMonitorClient};
use goverse::cluster::{ClusterAdmin, ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The demo's settings.
#[derive(Debug, clap::Parser)]
#[command(about = "goverse's sharding demo: a cluster under load while nodes are killed")]
struct Cli {
    /// Node processes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Kill a node (SIGKILL) every this many seconds, and restart it.
    #[arg(long, default_value_t = 15)]
    kill_every: u64,
    /// Callers making reliable adds at once.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Counters the adds go to.
    #[arg(long, default_value_t = 200)]
    counters: usize,
    /// The cluster's shard count (a `ShardMonitor` runs on each).
    #[arg(long, default_value_t = 512)]
    shard_count: u32,
    /// Where the inspector serves its page.
    #[arg(long, default_value = "127.0.0.1:8090")]
    inspector: String,
    /// The directory of the built binaries [default: this program's].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// etcd endpoint.
    #[arg(long, env = "GOVERSE_ETCD")]
    etcd: String,
    /// PostgreSQL url.
    #[arg(long, env = "GOVERSE_DATABASE_URL")]
    database: String,
    /// The cluster's etcd prefix [default: a new one per run].
    #[arg(long, env = "GOVERSE_DEMO_PREFIX")]
    prefix: Option<String>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The processes of the demo and how to start them again.
struct Processes {
    bin: PathBuf,
    logs: PathBuf,
    common: Vec<String>,
    children: Vec<Child>,
}

impl Processes {
    /// Starts `program` with `args` and returns it with its `ready` line.
    async fn start(
        &self,
        program: &str,
        name: &str,
        args: &[String],
    ) -> Result<(Child, String), Failure> {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))?;
        let mut child = Command::new(self.bin.join(program))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("ready ") {
                    return Ok::<_, std::io::Error>(line);
                }
            }
            Err(std::io::Error::other("ended before it was ready"))
        })
        .await
        .map_err(|_| format!("{name} was not ready within a minute (see its log)"))?
        .map_err(|e| format!("{name}: {e} (see its log)"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((child, ready))
    }

    async fn start_node(&mut self, i: usize) -> Result<Child, Failure> {
        let id = format!("node-{i}");
        let mut args = vec![
            "--node-id".to_string(),
            id.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.common.iter().cloned());
        Ok(self.start("demo-node", &id, &args).await?.0)
    }
}

/// What the load saw.
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeMap<usize, i64>,
    in_doubt: BTreeMap<usize, i64>,
    errors: BTreeMap<String, u64>,
}

/// One POST through a gate: the status and the JSON answer.
async fn post(
    gate: &str,
    path: &str,
    call_id: &str,
    body: &str,
) -> Result<(u16, serde_json::Value), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(gate)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-type: application/json\r\nx-call-id: {call_id}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        ))
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .map_err(|_| "TIMEOUT".to_string())?
}

/// A worker: reliable adds of 1 to random counters, each retried with its
/// call id (through the other gate too) until acknowledged, or given up
/// after 60 s and counted in doubt.
async fn worker(
    id: usize,
    gates: Arc<Vec<String>>,
    counters: usize,
    run: Arc<str>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let counter = (next() % counters as u64) as usize;
        sequence += 1;
        let call_id = format!("{run}-w{id}-{sequence}");
        let path = format!("/api/v1/objects/call/Counter/{run}-c{counter}/Add");
        let started = Instant::now();
        let mut attempt = next() as usize;
        loop {
            let gate = &gates[attempt % gates.len()];
            attempt += 1;
            let outcome = post(gate, &path, &call_id, "1").await;
            let mut ledger = ledger.lock().await;
            match outcome {
                Ok((200, _)) => {
                    *ledger.acknowledged.entry(counter).or_default() += 1;
                    break;
                }
                outcome => {
                    let code = match outcome {
                        Ok((_, answer)) => {
                            answer["code"].as_str().unwrap_or("HTTP_ERROR").to_string()
                        }
                        Err(error) if error == "TIMEOUT" => "CLIENT_TIMEOUT".to_string(),
                        Err(_) => "CONNECTION_FAILED".to_string(),
                    };
                    *ledger.errors.entry(code).or_default() += 1;
                    if started.elapsed() > Duration::from_secs(60) {
                        *ledger.in_doubt.entry(counter).or_default() += 1;
                        break;
                    }
                }
            }
            drop(ledger);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until every shard has a live owner and none is on `gone`;
/// returns how long that took, from `since`.
async fn settled(
    admin: &ClusterAdmin,
    gone: Option<&str>,
    since: Instant,
) -> Result<Duration, Failure> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(view) = admin.view().await {
            let owners: Vec<_> = (0..view.shard_count())
                .map(|s| view.current_owner(s).map(|n| n.id.clone()))
                .collect();
            let all_owned = owners.iter().all(Option::is_some);
            let none_on_gone =
                gone.is_none_or(|gone| owners.iter().flatten().all(|o| &**o != gone));
            if all_owned && none_on_gone && (0..view.shard_count()).all(|s| !view.is_moving(s)) {
                return Ok(since.elapsed());
            }
        }
        if Instant::now() > deadline {
            return Err("the shards did not settle within two minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until node `id` serves shards again; returns how long, from `since`.
async fn serving(admin: &ClusterAdmin, id: &str, since: Instant) -> Result<Duration, Failure> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(view) = admin.view().await
            && (0..view.shard_count())
                .any(|s| view.current_owner(s).is_some_and(|n| &*n.id == id) && !view.is_moving(s))
        {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            return Err(format!("{id} did not serve shards again within two minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seconds(d: &[Duration]) -> String {
    if d.is_empty() {
        return "none".into();
    }
    let values: Vec<f64> = d.iter().map(Duration::as_secs_f64).collect();
    let (min, max) = values
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    format!(
        "min {min:.1} s, mean {mean:.1} s, max {max:.1} s over {}",
        values.len()
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(<Cli as clap::Parser>::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("sharding-demo: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<bool, Failure> {
    let bin = match cli.bin {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .ok_or("no binary directory")?
            .to_path_buf(),
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let run: Arc<str> = format!("demo{started}").into();
    let prefix = cli.prefix.unwrap_or_else(|| format!("/goverse-demo/{run}"));
    let logs = std::env::temp_dir().join(format!("goverse-demo-{run}"));
    std::fs::create_dir_all(&logs)?;
    let common = [
        "--etcd",
        &cli.etcd,
        "--prefix",
        &prefix,
        "--shard-count",
        &cli.shard_count.to_string(),
        "--lease-ttl",
        "3s",
        "--call-timeout",
        "10s",
        "--summary-interval",
        "1s",
        "--call-metrics",
    ]
    .map(String::from)
    .to_vec();
    let mut processes = Processes {
        bin: bin.clone(),
        logs: logs.clone(),
        common: common.clone(),
        children: Vec::new(),
    };

    let migrate = Command::new(bin.join("goverse"))
        .args(["migrate", "--postgres", &cli.database])
        .output()
        .await
        .map_err(|e| format!("goverse migrate: {e}"))?;
    if !migrate.status.success() {
        return Err(format!(
            "goverse migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        )
        .into());
    }
    let mut node_args = common.clone();
    node_args.extend(["--postgres".to_string(), cli.database.clone()]);
    processes.common = node_args;
    let mut nodes = Vec::new();
    for i in 1..=cli.nodes {
        nodes.push(Some(processes.start_node(i).await?));
    }
    let mut gates = Vec::new();
    for i in 1..=2 {
        let mut args = vec![
            "--node-id".to_string(),
            format!("gate-{i}"),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--http".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(common.iter().cloned());
        let (child, ready) = processes
            .start("goverse-gate", &format!("gate-{i}"), &args)
            .await?;
        let http = ready
            .split(' ')
            .find_map(|part| part.strip_prefix("http://"))
            .ok_or("the gate serves no HTTP")?
            .to_string();
        processes.children.push(child);
        gates.push(http);
    }
    let inspector_args = [
        "inspector",
        "--listen",
        &cli.inspector,
        "--etcd",
        &cli.etcd,
        "--prefix",
        &prefix,
    ]
    .map(String::from);
    let inspector = match processes
        .start("goverse", "inspector", &inspector_args)
        .await
    {
        Ok((child, ready)) => {
            processes.children.push(child);
            ready.trim_start_matches("ready ").to_string()
        }
        Err(error) => format!("not started ({error})"),
    };
    let admin = ClusterAdmin::etcd(&[cli.etcd.as_str()], &prefix).await?;
    let setup = settled(&admin, None, Instant::now()).await?;
    // A node of our own that hosts nothing, to read objects directly.
    let router = Node::builder()
        .node_id(format!("{run}-checker"))
        .shard_count(cli.shard_count)
        .coordinator(
            ClusterCoordinator::etcd(
                &[cli.etcd.as_str()],
                ClusterOptions::default().prefix(&prefix),
            )
            .await?,
        )
        .start()
        .await?;
    // The monitors watched, and how often they were activated before this
    // run (their counts are kept, so a database used before has some).
    let watched = [0, cli.shard_count / 2, cli.shard_count - 1];
    let mut before = BTreeMap::new();
    for shard in watched {
        let report = ShardMonitorClient::new(&router, format!("shard#{shard}/monitor"))
            .report(Empty {})
            .await?
            .value;
        let count: i64 = report
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        before.insert(shard, count);
    }
    println!(
        "sharding demo: {} nodes, 2 gates ({}), {} shards settled in {:.1} s; inspector at {inspector}; logs in {}",
        cli.nodes,
        gates.join(", "),
        cli.shard_count,
        setup.as_secs_f64(),
        logs.display()
    );
    println!(
        "load: {} callers, reliable adds to {} counters for {} s, a node killed every {} s",
        cli.workers, cli.counters, cli.seconds, cli.kill_every
    );

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let gates = Arc::new(gates);
    let mut load = tokio::task::JoinSet::new();
    for id in 0..cli.workers {
        load.spawn(worker(
            id,
            gates.clone(),
            cli.counters,
            run.clone(),
            stop.clone(),
            ledger.clone(),
        ));
    }

    // Churn: kill a node, time the failover, restart it, time its return.
    let (mut failovers, mut returns) = (Vec::new(), Vec::new());
    let kills = AtomicU64::new(0);
    let end = Instant::now() + Duration::from_secs(cli.seconds);
    let mut victim = 0usize;
    while Instant::now() + Duration::from_secs(cli.kill_every) <= end && cli.nodes > 1 {
        tokio::time::sleep(Duration::from_secs(cli.kill_every)).await;
        let index = victim % cli.nodes;
        victim += 1;
        let id = format!("node-{}", index + 1);
        if let Some(mut child) = nodes[index].take() {
            child.start_kill()?;
            child.wait().await?;
        }
        kills.fetch_add(1, Ordering::SeqCst);
        let killed = Instant::now();
        let failover = settled(&admin, Some(&id), killed).await?;
        println!(
            "  killed {id}: its shards had live owners again after {:.1} s",
            failover.as_secs_f64()
        );
        failovers.push(failover);
        let restarted = Instant::now();
        nodes[index] = Some(processes.start_node(index + 1).await?);
        let back = serving(&admin, &id, restarted).await?;
        println!(
            "  restarted {id}: serving shards again after {:.1} s",
            back.as_secs_f64()
        );
        returns.push(back);
    }
    let left = end.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    stop.store(true, Ordering::SeqCst);
    while load.join_next().await.is_some() {}

    // Check: every counter against the ledger, through the routing node;
    // and what the monitors report.
    let ledger = ledger.lock().await;
    let (mut lost, mut extra, mut checked) = (0i64, 0i64, 0usize);
    for counter in 0..cli.counters {
        let acknowledged = ledger.acknowledged.get(&counter).copied().unwrap_or(0);
        let in_doubt = ledger.in_doubt.get(&counter).copied().unwrap_or(0);
        let value = example_sharding_demo::CounterClient::new(&router, format!("{run}-c{counter}"))
            .get(Empty {})
            .await?
            .value;
        checked += 1;
        lost += (acknowledged - value).max(0);
        extra += (value - acknowledged - in_doubt).max(0);
    }
    let calls: i64 = ledger.acknowledged.values().sum();
    let doubt: i64 = ledger.in_doubt.values().sum();
    println!("\nsummary:");
    println!(
        "  calls: {calls} acknowledged ({:.0}/s), {doubt} given up (in doubt)",
        calls as f64 / cli.seconds as f64
    );
    let errors: Vec<_> = ledger
        .errors
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    println!(
        "  failed attempts, each retried with its call id: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    );
    println!(
        "  kills: {}; shards re-owned: {}",
        kills.load(Ordering::SeqCst),
        seconds(&failovers)
    );
    println!("  restarted nodes serving again: {}", seconds(&returns));
    let view = admin.view().await?;
    let mut reports = Vec::new();
    for shard in watched {
        let report = ShardMonitorClient::new(&router, format!("shard#{shard}/monitor"))
            .report(Empty {})
            .await?
            .value;
        let (node, activations) = report.split_once(' ').unwrap_or((&report, "0"));
        let now: i64 = activations.parse().unwrap_or(0);
        let earlier = before.get(&shard).copied().unwrap_or(0);
        reports.push(format!(
            "shard#{shard} on {node}, activated {} times this run",
            now - earlier
        ));
    }
    println!("  shard monitors: {}", reports.join("; "));
    let mut node_reports = Vec::new();
    for node in view.nodes.values().filter(|n| n.hosts_objects) {
        let report = NodeMonitorClient::new(&router, format!("{}/monitor", node.address))
            .report(Empty {})
            .await?
            .value;
        node_reports.push(report.split(' ').next().unwrap_or_default().to_string());
    }
    println!("  node monitors answering: {}", node_reports.join(", "));
    println!(
        "  counters: {checked} checked against the ledger: {lost} lost, {extra} beyond the acknowledged and in-doubt adds"
    );
    let ok = lost == 0 && extra == 0;
    println!(
        "  result: {}",
        if ok {
            "OK: zero acknowledged writes lost"
        } else {
            "FAILED: the counters do not match the ledger"
        }
    );
    router.shutdown().await;
    for mut child in nodes.into_iter().flatten().chain(processes.children) {
        // A graceful stop: SIGTERM, then the kill on drop.
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    if ok {
        std::fs::remove_dir_all(&logs).ok();
    }
    Ok(ok)
}
