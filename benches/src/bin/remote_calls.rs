//! Remote call throughput and latency between two processes: goverse typed
//! proxy calls from a routing-only node to objects on a node in another
//! process, against a bare tonic unary echo between the same two processes,
//! with 1 and 64 calls in flight. The cluster runs on an etcd this
//! benchmark starts for itself.
//!
//! Run with: cargo run --release -p goverse-benches --bin remote_calls

use std::process::Stdio;
use std::time::Duration;

use example_counter::{Counter, CounterClient};
use goverse::cluster::{ClusterCoordinator, ClusterOptions};
use goverse::prelude::*;
use goverse_benches::{Measurement, measure, print_row, timed_loop};
use goverse_tests::etcd::Etcd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

use goverse_benches::Echoer;
use goverse_benches::echo::Payload;
use goverse_benches::echo::echo_client::EchoClient;
use goverse_benches::echo::echo_server::EchoServer;

const SHARDS: u32 = 64;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn options(prefix: &str) -> ClusterOptions {
    ClusterOptions::default()
        .prefix(prefix)
        .lease_ttl(Duration::from_secs(5))
}

/// The child process: a node hosting counters, and the echo server. An
/// `observed` one counts and times its calls and traces what arrives
/// sampled, through the OpenTelemetry layer.
async fn serve(etcd: &str, prefix: &str, observed: bool) -> Result<(), Failure> {
    if observed {
        goverse_benches::install_tracing();
    }
    let node = Node::builder()
        .register::<Counter>()
        .call_metrics(observed)
        .node_id("server")
        .shard_count(SHARDS)
        .listen("127.0.0.1:0".parse()?)
        .coordinator(ClusterCoordinator::etcd(&[etcd], options(prefix)).await?)
        .start()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_address = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(Echoer::default()))
            .serve_with_incoming(incoming),
    );
    println!("ready {echo_address}");
    // Run until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    node.shutdown().await;
    Ok(())
}

/// A server process and a caller node in the cluster at `prefix`, once the
/// server owns every shard; `observed`: both count and time their calls,
/// and the caller traces 1% of its calls.
async fn cluster(
    etcd: &str,
    prefix: &str,
    observed: bool,
) -> Result<(tokio::process::Child, String, Node), Failure> {
    let mut server = Command::new(std::env::current_exe()?)
        .args(["--serve", etcd, prefix])
        .args(observed.then_some("observed"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(server.stdout.take().ok_or("no stdout")?).lines();
    let ready = lines.next_line().await?.ok_or("the server exited")?;
    let echo_address = ready
        .strip_prefix("ready ")
        .ok_or("unexpected output")?
        .to_string();
    let client = Node::builder()
        .node_id("caller")
        .shard_count(SHARDS)
        .call_timeout(Duration::from_secs(60))
        .call_metrics(observed)
        .trace_sampling(if observed { 0.01 } else { 0.0 })
        .coordinator(ClusterCoordinator::etcd(&[etcd], options(prefix)).await?)
        .start()
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = client.cluster_view();
        if (0..SHARDS).all(|s| view.current_owner(s).is_some_and(|n| &*n.id == "server")) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the server never owned the shards".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((server, echo_address, client))
}

async fn tonic_unary(channel: &Channel, callers: usize, calls: usize) -> Measurement {
    measure(callers, calls, |_| {
        let client = EchoClient::new(channel.clone());
        timed_loop(calls, move || {
            let mut client = client.clone();
            async move {
                client.unary(Payload { value: 1 }).await.expect("echo");
            }
        })
    })
    .await
}

async fn goverse_remote(node: &Node, callers: usize, calls: usize) -> Measurement {
    measure(callers, calls, |caller| {
        let counter = CounterClient::new(node, format!("remote-{caller}"));
        timed_loop(calls, move || {
            let counter = counter.clone();
            async move {
                counter
                    .add(Int32Value { value: 1 })
                    .await
                    .expect("remote call");
            }
        })
    })
    .await
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        return serve(
            &args[2],
            &args[3],
            args.get(4).is_some_and(|a| a == "observed"),
        )
        .await;
    }
    let scale: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);

    let dir = std::env::temp_dir().join(format!("goverse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let etcd = Etcd::start(&dir).await;
    let endpoint = etcd.endpoint();
    let prefix = format!("/goverse-bench/{}", std::process::id());

    // Two clusters of a server and a caller: one plain, one observed
    // (call metrics on both sides, 1% of calls traced), for their cost.
    goverse_benches::install_tracing();
    let (mut server, echo_address, client) =
        cluster(&endpoint, &format!("{prefix}/plain"), false).await?;
    let (mut observed_server, _, observed) =
        cluster(&endpoint, &format!("{prefix}/observed"), true).await?;
    let channel = Endpoint::from_shared(format!("http://{echo_address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    // Warm up both paths.
    goverse_remote(&client, 64, 50).await;
    goverse_remote(&observed, 64, 50).await;
    tonic_unary(&channel, 64, 50).await;

    // Profiling aid: BENCH_PROFILE=1 runs only goverse at 64 in flight.
    if std::env::var_os("BENCH_PROFILE").is_some() {
        for _ in 0..5 {
            print_row("goverse", &goverse_remote(&client, 64, scale * 8).await);
        }
        client.shutdown().await;
        return Ok(());
    }
    println!("remote calls between two processes (best of 3 runs each)");
    let mut summary = Vec::new();
    for callers in [1usize, 64] {
        let calls = if callers == 1 {
            scale * 2
        } else {
            scale * 16 / callers.max(1)
        };
        let mut best = [None::<Measurement>; 3];
        for _ in 0..3 {
            let results = [
                tonic_unary(&channel, callers, calls).await,
                goverse_remote(&client, callers, calls).await,
                goverse_remote(&observed, callers, calls).await,
            ];
            for (slot, result) in best.iter_mut().zip(results) {
                if slot.is_none_or(|b| result.per_second > b.per_second) {
                    *slot = Some(result);
                }
            }
        }
        let [Some(bare), Some(ours), Some(watched)] = best else {
            unreachable!("three rounds ran")
        };
        println!("\n{callers} call(s) in flight:");
        print_row("tonic unary echo (bare)", &bare);
        print_row("goverse remote typed call", &ours);
        print_row("goverse, metrics + 1% traced", &watched);
        let ratio = ours.per_second / bare.per_second;
        println!("  ratio goverse/tonic unary = {ratio:.2}x");
        let cost = watched.per_second / ours.per_second;
        println!("  observed/plain            = {cost:.2}x   (target >= 0.95x)");
        summary.push((callers, ratio));
    }
    println!("\nsummary:");
    for (callers, ratio) in summary {
        let verdict = if callers == 64 {
            if ratio >= 5.0 {
                " -> meets target (>= 5x at 64)"
            } else {
                " -> MISSES target (>= 5x at 64)"
            }
        } else {
            ""
        };
        println!("  {callers:>2} in flight: {ratio:.2}x bare tonic unary{verdict}");
    }

    client.shutdown().await;
    observed.shutdown().await;
    for server in [&mut server, &mut observed_server] {
        drop(server.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
    }
    drop(etcd);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
