//! How fast the cluster moves shards, on an etcd this benchmark starts:
//!
//! - rebalance: one node owning all 8192 shards, then two more join; the
//!   time until the shards are balanced over three nodes, and the longest
//!   any single call waited meanwhile (a driver calls objects throughout);
//! - failover: a node process is killed with SIGKILL; the time until a call
//!   to one of its objects succeeds on another node, median of several runs.
//!
//! Run with: cargo run --release -p goverse-benches --bin cluster_moves

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use example_counter::{Counter, CounterClient};
use goverse::cluster::{ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;
use goverse_tests::etcd::Etcd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const LEASE: Duration = Duration::from_secs(2);

fn options(prefix: &str) -> ClusterOptions {
    ClusterOptions::default().prefix(prefix).lease_ttl(LEASE)
}

async fn node(
    etcd: &str,
    prefix: &str,
    id: &str,
    shards: u32,
    hosts: bool,
) -> Result<Node, Failure> {
    let mut builder = Node::builder()
        .node_id(id)
        .shard_count(shards)
        .call_timeout(Duration::from_secs(30))
        .coordinator(ClusterCoordinator::etcd(&[etcd], options(prefix)).await?);
    if hosts {
        builder = builder.register::<Counter>().listen("127.0.0.1:0".parse()?);
    }
    Ok(builder.start().await?)
}

/// Child mode: one node until stdin closes (or the process is killed).
async fn child(etcd: &str, prefix: &str, id: &str, shards: u32) -> Result<(), Failure> {
    let node = node(etcd, prefix, id, shards, true).await?;
    println!("ready");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    node.shutdown().await;
    Ok(())
}

async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn balanced(view: &goverse::cluster::ClusterView, nodes: &[&str]) -> bool {
    let shards = view.shard_count();
    let fair = shards as usize / nodes.len();
    let mut counts = vec![0usize; nodes.len()];
    for shard in 0..shards {
        if view.is_moving(shard) {
            return false;
        }
        let Some(owner) = view.current_owner(shard) else {
            return false;
        };
        let Some(index) = nodes.iter().position(|n| **n == *owner.id) else {
            return false;
        };
        counts[index] += 1;
    }
    counts.iter().all(|&c| c >= fair && c <= fair + 1)
}

async fn rebalance(etcd: &str) -> Result<(Duration, Duration, u64), Failure> {
    let prefix = format!("/goverse-bench/rebalance-{}", std::process::id());
    let shards = 8192;
    let a = node(etcd, &prefix, "a", shards, true).await?;
    wait_for("a owns every shard", Duration::from_secs(60), || {
        balanced(&a.cluster_view(), &["a"])
    })
    .await?;
    let driver = node(etcd, &prefix, "driver", shards, false).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn({
        let (driver, stop) = (driver.clone(), stop.clone());
        async move {
            let mut longest = Duration::ZERO;
            let mut errors = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for i in 0..200 {
                    let started = Instant::now();
                    let result = CounterClient::new(&driver, format!("c-{i}"))
                        .add(Int32Value { value: 1 })
                        .await;
                    longest = longest.max(started.elapsed());
                    errors += u64::from(result.is_err());
                }
            }
            (longest, errors)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let b = node(etcd, &prefix, "b", shards, true).await?;
    let c = node(etcd, &prefix, "c", shards, true).await?;
    wait_for("balance over three nodes", Duration::from_secs(120), || {
        balanced(&driver.cluster_view(), &["a", "b", "c"])
    })
    .await?;
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (longest, errors) = calls.await?;
    for node in [&driver, &a, &b, &c] {
        node.shutdown().await;
    }
    Ok((took, longest, errors))
}

async fn failover(etcd: &str, run: usize) -> Result<Duration, Failure> {
    let prefix = format!("/goverse-bench/failover-{}-{run}", std::process::id());
    let shards = 256;
    let mut children = Vec::new();
    for id in ["a", "b"] {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--node", etcd, &prefix, id, &shards.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        lines.next_line().await?.ok_or("a node exited")?;
        children.push(child);
    }
    let driver = node(etcd, &prefix, "driver", shards, false).await?;
    wait_for("balance over two nodes", Duration::from_secs(60), || {
        balanced(&driver.cluster_view(), &["a", "b"])
    })
    .await?;
    let view = driver.cluster_view();
    let id = (0..)
        .map(|i| format!("c-{i}"))
        .find(|id| {
            let shard = goverse::placement::shard_of(id, shards);
            view.current_owner(shard).is_some_and(|n| &*n.id == "b")
        })
        .ok_or("b owns nothing")?;
    let counter = CounterClient::new(&driver, id).with_timeout(Duration::from_secs(30));
    counter.add(Int32Value { value: 1 }).await?;
    let victim = &mut children[1];
    let pid = victim.id().ok_or("b is gone")?;
    let killed = Instant::now();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    victim.wait().await?;
    loop {
        if counter.add(Int32Value { value: 1 }).await.is_ok() {
            break;
        }
    }
    let took = killed.elapsed();
    driver.shutdown().await;
    for mut child in children {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    Ok(took)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--node") {
        return child(&args[2], &args[3], &args[4], args[5].parse()?).await;
    }
    let dir = std::env::temp_dir().join(format!("goverse-moves-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let etcd = Etcd::start(&dir).await;
    let endpoint = etcd.endpoint();

    let (took, longest, errors) = rebalance(&endpoint).await?;
    println!("rebalance 1 -> 3 nodes, 8192 shards, 200 objects called throughout:");
    println!(
        "  balanced after {took:.2?}; longest single call {longest:.2?}; {errors} failed calls"
    );

    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut times = Vec::new();
    for run in 0..runs {
        times.push(failover(&endpoint, run).await?);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "\nfailover (SIGKILL to the first successful call on a moved object), lease TTL {LEASE:?}:"
    );
    println!(
        "  runs: {}",
        times
            .iter()
            .map(|t| format!("{t:.2?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let verdict = if median <= LEASE + Duration::from_secs(2) {
        "meets"
    } else {
        "MISSES"
    };
    println!("  median {median:.2?} -> {verdict} target (lease TTL + 2 s)");
    drop(etcd);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
