//! The goverse quick start: a `Counter` object on an embedded node, called
//! through its typed proxy from many concurrent tasks.
//!
//! Run with: cargo run --example counter

use std::time::Instant;

use example_counter::{Counter, CounterClient, Visits, VisitsClient};
use goverse::prelude::*;
use goverse::storage::SqliteStorage;

// ANCHOR: main
#[tokio::main]
async fn main() -> goverse::Result<()> {
    // An embedded node: in-process coordinator, state in an SQLite file.
    let database = std::env::temp_dir().join("goverse-quickstart.db");
    let node = Node::builder()
        .register::<Counter>()
        .register::<Visits>()
        .storage(SqliteStorage::open(&database).await?)
        .start()
        .await?;
    println!("node {} started, hosting: Counter, Visits", node.id());

    // A persistent object: its state outlives this program.
    let visits = VisitsClient::new(&node, "quickstart")
        .visit(Empty {})
        .await?;
    println!(
        "quickstart.Visit() -> {} (run again: it counts on, from {})",
        visits.value,
        database.display()
    );

    // The first call activates `my-counter`; no create step is needed.
    let counter = CounterClient::new(&node, "my-counter");
    let total = counter.add(Int32Value { value: 5 }).await?;
    println!("my-counter.Add(5) -> {}", total.value);

    // 100 tasks each add 1 to the same counter, 100 times. Turns run one at a
    // time per object, so no increment is lost.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let counter = counter.clone();
        tasks.spawn(async move {
            for _ in 0..100 {
                counter.add(Int32Value { value: 1 }).await?;
            }
            goverse::Result::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| goverse::Error::Internal(e.to_string()))??;
    }
    let total = counter.get(Empty {}).await?;
    println!(
        "100 tasks x 100 calls of Add(1) in {:?}: my-counter is now {} (expected 10005)",
        started.elapsed(),
        total.value
    );

    // Other ids are other objects, activated on first call.
    for id in ["alice", "bob", "carol"] {
        let value = CounterClient::new(&node, id)
            .add(Int32Value { value: 1 })
            .await?;
        println!("{id}.Add(1) -> {}", value.value);
    }
    println!("{} objects active", node.stats().active);

    // The object's protobuf service, for clients in other languages.
    println!(
        "\nCounter as a protobuf service:\n{}",
        goverse::descriptor_of::<Counter>().to_proto("demo")
    );

    node.shutdown().await;
    println!("node shut down cleanly");
    Ok(())
}
// ANCHOR_END: main
