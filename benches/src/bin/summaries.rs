//! What node summaries cost the node that publishes them: local call
//! throughput on a node publishing its summary every 10 ms (500 times the
//! default rate) against the same node publishing every 5 s, both counting
//! their calls (summaries carry the counts), both in a cluster on the
//! in-process coordination store; and how big one summary is.
//!
//! Run with: cargo run --release -p goverse-benches --bin summaries
use std::time::Duration;

use example_counter::{Counter, CounterClient};
use goverse::cluster::{ClusterAdmin, ClusterCoordinator, ClusterOptions, MemoryStore};
use goverse::prelude::*;
use goverse_benches::{Measurement, measure, print_row, timed_loop};

/// Objects each node holds while measured, so a summary has some to count.
const OBJECTS: usize = 1000;

async fn node(store: &MemoryStore, prefix: &str, every: Duration) -> goverse::Result<Node> {
    let options = ClusterOptions::default().prefix(prefix);
    Node::builder()
        .register::<Counter>()
        .call_timeout(Duration::from_secs(60))
        .call_metrics(true)
        .summary_interval(every)
        .coordinator(ClusterCoordinator::in_memory(store, options))
        .start()
        .await
}

/// `callers` callers, each calling its own share of the node's objects.
async fn calls(node: &Node, callers: usize, calls: usize) -> Measurement {
    measure(callers, calls, |caller| {
        let node = node.clone();
        let mut i = caller;
        timed_loop(calls, move || {
            i = (i + callers) % OBJECTS;
            let counter = CounterClient::new(&node, format!("c-{i}"));
            async move {
                counter.add(Int32Value { value: 1 }).await.expect("call");
            }
        })
    })
    .await
}

#[tokio::main]
async fn main() -> goverse::Result<()> {
    let total_calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let store = MemoryStore::new();
    let quiet = node(&store, "/quiet", Duration::from_secs(5)).await?;
    let chatty = node(&store, "/chatty", Duration::from_millis(10)).await?;
    for node in [&quiet, &chatty] {
        calls(node, 8, OBJECTS / 8).await;
    }
    println!(
        "node summaries: {total_calls} local calls over {OBJECTS} objects per configuration (best of 3 runs each)"
    );
    let mut ratios = Vec::new();
    for callers in [1usize, 64] {
        let per_caller = total_calls / callers;
        let (mut best_quiet, mut best_chatty) = (None::<Measurement>, None::<Measurement>);
        for _round in 0..3 {
            let q = calls(&quiet, callers, per_caller).await;
            let c = calls(&chatty, callers, per_caller).await;
            if best_quiet.is_none_or(|b| q.per_second > b.per_second) {
                best_quiet = Some(q);
            }
            if best_chatty.is_none_or(|b| c.per_second > b.per_second) {
                best_chatty = Some(c);
            }
        }
        let (Some(q), Some(c)) = (best_quiet, best_chatty) else {
            unreachable!("three rounds ran")
        };
        println!("\n{callers} caller(s):");
        print_row("summary every 5 s", &q);
        print_row("summary every 10 ms", &c);
        let ratio = c.per_second / q.per_second;
        println!("  every 10 ms / every 5 s = {ratio:.2}x   (target >= 0.95x)");
        ratios.push((callers, ratio));
    }
    let admin = ClusterAdmin::in_memory(&store, "/chatty");
    let summaries = admin.summaries().await?;
    let bytes = summaries
        .first()
        .map_or(0, |s| serde_json::to_vec(s).map_or(0, |v| v.len()));
    println!("\none summary: {bytes} bytes of JSON (one object type, call metrics on)");
    println!(
        "at the default 5 s interval: {:.0} bytes/s per node to the coordination store",
        bytes as f64 / 5.0
    );
    println!("\nsummary:");
    for (callers, ratio) in ratios {
        let verdict = if ratio >= 0.95 {
            "meets target"
        } else {
            "MISSES target"
        };
        println!(
            "  {callers:>2} caller(s): 500x the default summary rate costs {ratio:.2}x -> {verdict}"
        );
    }
    quiet.shutdown().await;
    chatty.shutdown().await;
    Ok(())
}
