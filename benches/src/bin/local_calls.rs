//! Local call throughput and latency: goverse object calls vs a raw tokio
//! mpsc + oneshot request/response loop and vs kameo's `ask`, all against
//! one target, with 1 and 64 concurrent callers. The object is the quick
//! start's `Counter`.
//!
//! Run with: cargo run --release -p goverse-benches --bin local_calls

use std::time::Duration;

use example_counter::{Counter, CounterClient};
use goverse::prelude::*;
use goverse_benches::{Measurement, measure, print_row, timed_loop};
use kameo::actor::Spawn;
use tokio::sync::{mpsc, oneshot};

/// The kameo actor under test: the same work.
#[derive(Debug, kameo::Actor)]
struct KameoCounter {
    value: i32,
}

struct Add(i32);

impl kameo::message::Message<Add> for KameoCounter {
    type Reply = i32;

    async fn handle(
        &mut self,
        msg: Add,
        _ctx: &mut kameo::message::Context<Self, Self::Reply>,
    ) -> i32 {
        self.value = self.value.wrapping_add(msg.0);
        self.value
    }
}

type RawRequest = (i32, oneshot::Sender<i32>);

async fn raw(callers: usize, calls: usize) -> Measurement {
    let (sender, mut receiver) = mpsc::channel::<RawRequest>(1024);
    let server = tokio::spawn(async move {
        let mut value = 0i32;
        while let Some((add, reply)) = receiver.recv().await {
            value = value.wrapping_add(add);
            let _ = reply.send(value);
        }
    });
    let result = measure(callers, calls, |_| {
        let sender = sender.clone();
        timed_loop(calls, move || {
            let sender = sender.clone();
            async move {
                let (reply, response) = oneshot::channel();
                sender.send((1, reply)).await.expect("server alive");
                response.await.expect("reply");
            }
        })
    })
    .await;
    drop(sender);
    server.await.expect("server");
    result
}

async fn kameo(callers: usize, calls: usize) -> Measurement {
    let actor = KameoCounter::spawn(KameoCounter { value: 0 });
    measure(callers, calls, |_| {
        let actor = actor.clone();
        timed_loop(calls, move || {
            let actor = actor.clone();
            async move {
                actor.ask(Add(1)).await.expect("ask");
            }
        })
    })
    .await
}

async fn goverse_calls(node: &Node, callers: usize, calls: usize) -> Measurement {
    let counter = CounterClient::new(node, "bench");
    counter.add(Int32Value { value: 0 }).await.expect("warm up");
    measure(callers, calls, |_| {
        let counter = counter.clone();
        timed_loop(calls, move || {
            let counter = counter.clone();
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
        .unwrap_or(400_000);
    let node = Node::builder()
        .register::<Counter>()
        .call_timeout(Duration::from_secs(60))
        .start()
        .await?;
    // The same node counting and timing its calls, for their cost.
    let counted = Node::builder()
        .register::<Counter>()
        .call_timeout(Duration::from_secs(60))
        .call_metrics(true)
        .start()
        .await?;
    // Nodes tracing 1% and all of their calls through OpenTelemetry, for
    // the cost of traces. The untraced nodes draw nothing and make no span.
    goverse_benches::install_tracing();
    let traced = |ratio: f64| {
        Node::builder()
            .register::<Counter>()
            .call_timeout(Duration::from_secs(60))
            .trace_sampling(ratio)
            .start()
    };
    let sampled = traced(0.01).await?;
    let all_traced = traced(1.0).await?;
    println!(
        "local calls: one target, {total_calls} calls per configuration (best of 3 runs each)"
    );
    // Profiling aid: BENCH_PROFILE=64 runs only the goverse loop at 64
    // callers, repeatedly, so a profiler sees nothing else.
    let profile: Option<usize> = std::env::var("BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(callers) = profile {
        // BENCH_PROFILE_NODE=counted or traced: the node that counts, or
        // traces, every call instead.
        let profiled = match std::env::var("BENCH_PROFILE_NODE").as_deref() {
            Ok("counted") => &counted,
            Ok("traced") => &all_traced,
            _ => &node,
        };
        for _ in 0..10 {
            goverse_calls(profiled, callers, total_calls / callers).await;
        }
        node.shutdown().await;
        return Ok(());
    }
    let mut summary = Vec::new();
    for callers in [1usize, 64] {
        let calls = total_calls / callers;
        let mut best = [None::<Measurement>; 6];
        for _round in 0..3 {
            let results = [
                raw(callers, calls).await,
                kameo(callers, calls).await,
                goverse_calls(&node, callers, calls).await,
                goverse_calls(&counted, callers, calls).await,
                goverse_calls(&sampled, callers, calls).await,
                // A tenth as many: a traced call costs far more.
                goverse_calls(&all_traced, callers, calls / 10).await,
            ];

            for (slot, result) in best.iter_mut().zip(results) {
                if slot.is_none_or(|b| result.per_second > b.per_second) {
                    *slot = Some(result);
                }
            }
        }
        let [
            Some(raw),
            Some(kameo),
            Some(ours),
            Some(metered),
            Some(sampled),
            Some(all_traced),
        ] = best
        else {
            unreachable!("three rounds ran")
        };
        println!("\n{callers} caller(s):");
        print_row("tokio mpsc+oneshot (raw)", &raw);
        print_row("kameo ask", &kameo);
        print_row("goverse typed proxy", &ours);
        print_row("goverse, call metrics on", &metered);
        print_row("goverse, 1% of calls traced", &sampled);
        print_row("goverse, every call traced", &all_traced);
        let vs_raw = ours.per_second / raw.per_second;
        let vs_kameo = ours.per_second / kameo.per_second;
        println!("  ratio goverse/raw   = {vs_raw:.2}x   (target >= 0.50x: within 2x of raw)");
        println!("  ratio goverse/kameo = {vs_kameo:.2}x   (target > 1.00x)");
        let tail = ours.p99.as_secs_f64() / raw.p99.as_secs_f64();
        println!("  p99 goverse/raw     = {tail:.2}x   (target <= 3.00x at 64 callers)");
        let cost = metered.per_second / ours.per_second;
        println!("  metrics on/off      = {cost:.2}x   (target >= 0.95x: under 5% for metrics)");
        let sampling = sampled.per_second / ours.per_second;
        println!(
            "  tracing 1%/off      = {sampling:.2}x   (target >= 0.95x: under 5% at 1% sampling)"
        );
        let full = all_traced.per_second / ours.per_second;
        println!("  tracing 100%/off    = {full:.2}x   (what tracing every call costs)");
        summary.push((callers, vs_raw, vs_kameo, tail));
    }
    println!("\nsummary:");
    for (callers, vs_raw, vs_kameo, tail) in summary {
        // Callers behind a busy object must not wait unfairly long.
        let fair = callers == 1 || tail <= 3.0;
        let verdict = if vs_raw >= 0.5 && vs_kameo > 1.0 && fair {
            "meets target"
        } else {
            "MISSES target"
        };
        println!(
            "  {callers:>2} caller(s): {vs_raw:.2}x raw tokio, {vs_kameo:.2}x kameo, p99 {tail:.2}x raw -> {verdict}"
        );
    }
    node.shutdown().await;
    counted.shutdown().await;
    sampled.shutdown().await;
    all_traced.shutdown().await;
    Ok(())
}
