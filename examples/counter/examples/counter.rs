//! The goverse quick start: a `Counter` object on an embedded node, called
//! through its typed proxy from many concurrent tasks, then served over
//! HTTP until Ctrl-C.
//!
//! Run with: cargo run --example counter
//! (`GOVERSE_HTTP=127.0.0.1:9090` serves elsewhere than 127.0.0.1:8080.)

use std::time::Instant;

use example_counter::{ADD_FIVE_ANY, Counter, CounterClient, VisitsClient};
use goverse::prelude::*;

// ANCHOR: main
#[tokio::main]
async fn main() -> goverse::Result<()> {
    // An embedded node (in-process coordinator, state in an SQLite file)
    // with the HTTP gate in front and `my-counter` created.
    let http = std::env::var("GOVERSE_HTTP").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let http = http
        .parse()
        .map_err(|_| goverse::Error::Config(format!("GOVERSE_HTTP: `{http}` is not an address")))?;
    let database = std::env::temp_dir().join("goverse-quickstart.db");
    let (node, gate) = example_counter::serve(http, &database).await?;
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

    // The first call activates an object; no create step is needed.
    let counter = CounterClient::new(&node, "demo");
    let total = counter.add(Int32Value { value: 5 }).await?;
    println!("demo.Add(5) -> {}", total.value);

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
            Ok::<_, goverse::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(goverse::Error::other)??;
    }
    let total = counter.get(Empty {}).await?;
    println!(
        "100 tasks x 100 calls of Add(1) in {:?}: demo is now {} (expected 10005)",
        started.elapsed(),
        total.value
    );

    // The object's protobuf service, for clients in other languages.
    println!(
        "\nCounter as a protobuf service:\n{}",
        goverse::descriptor_of::<Counter>().to_proto("demo")
    );

    // Clients outside the process call through the gate, on the address it
    // bound (a port of 0 in GOVERSE_HTTP picks a free one).
    let http = gate.http_address().unwrap_or(http);
    let url = format!("http://{http}/api/v1/objects/call/Counter/my-counter/Add");
    println!("HTTP gate on http://{http}; try:\n");
    println!(
        "curl -X POST {url} \\\n  -H \"Content-Type: application/json\" \\\n  -d '{ADD_FIVE_ANY}'\n"
    );
    println!("curl -X POST {url} -d '{{\"value\": 5}}'\n");
    println!("Ctrl-C stops the node.");
    tokio::signal::ctrl_c().await?;

    gate.shutdown().await;
    node.shutdown().await;
    println!("node shut down cleanly");
    Ok(())
}
// ANCHOR_END: main
