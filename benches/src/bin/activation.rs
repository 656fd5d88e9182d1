//! Activation: activate 1,000,000 objects on one node; report activations/s
//! and resident memory per idle activation beyond the object's own state.
//! The baseline in the same run is a plain `HashMap<String, Counter>` holding
//! the same ids and states, so the ratio shows what goverse adds.
//!
//! Run with: cargo run --release -p goverse-benches --bin activation

use std::collections::HashMap;
use std::time::{Duration, Instant};

use example_counter::{Counter, CounterClient};
use goverse::prelude::*;
use goverse_benches::resident_bytes;

#[tokio::main]
async fn main() -> goverse::Result<()> {
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tasks = 64;
    let ids: Vec<String> = (0..objects).map(|i| format!("counter-{i}")).collect();
    let state_bytes = std::mem::size_of::<Counter>();

    // Baseline: the same ids and states in a plain map.
    let before = resident_bytes().unwrap_or(0);
    let started = Instant::now();
    let mut plain: HashMap<String, Counter> = HashMap::with_capacity(0);
    for id in &ids {
        plain.insert(id.clone(), Counter::default());
    }
    let plain_elapsed = started.elapsed();
    let plain_bytes = resident_bytes().unwrap_or(0).saturating_sub(before) as f64 / objects as f64;
    drop(plain);

    let node = Node::builder()
        .register::<Counter>()
        .call_timeout(Duration::from_secs(120))
        .start()
        .await?;
    let before = resident_bytes().unwrap_or(0);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let per_task = objects.div_ceil(tasks);
    for chunk in ids.chunks(per_task) {
        let node = node.clone();
        let chunk = chunk.to_vec();
        set.spawn(async move {
            for id in chunk {
                CounterClient::new(&node, id)
                    .add(Int32Value { value: 1 })
                    .await?;
            }
            Ok::<(), goverse::Error>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done.map_err(goverse::Error::other)??;
    }
    let elapsed = started.elapsed();
    let after = resident_bytes().unwrap_or(0);
    let active = node.stats().active;
    assert_eq!(active as usize, objects, "every object is active");

    let per_activation = after.saturating_sub(before) as f64 / objects as f64;
    let rate = objects as f64 / elapsed.as_secs_f64();
    let plain_rate = objects as f64 / plain_elapsed.as_secs_f64();
    println!("activation of {objects} objects ({tasks} tasks, first call activates):");
    println!(
        "  goverse: {rate:>12.0} activations/s   {per_activation:>7.0} bytes resident per idle activation"
    );
    println!(
        "  HashMap<String, state> baseline: {plain_rate:>12.0} inserts/s   {plain_bytes:>7.0} bytes per entry"
    );
    println!(
        "  memory beyond the object's own state ({state_bytes} bytes): {:.0} bytes per activation (target < 1024) -> {}",
        per_activation - state_bytes as f64,
        if per_activation - (state_bytes as f64) < 1024.0 {
            "meets target"
        } else {
            "MISSES target"
        }
    );
    println!(
        "  ratio goverse/HashMap: {:.2}x the memory, {:.2}x the rate",
        per_activation / plain_bytes.max(1.0),
        rate / plain_rate
    );
    node.shutdown().await;
    Ok(())
}
