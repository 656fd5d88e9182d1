//! Calls the example cluster through its gates with `goverse::Client`:
//! adds to ten counters, reads them back, and counts a visit.
//!
//! Run with: cargo run -p example-cluster --bin cluster-client -- http://127.0.0.1:9090

use example_cluster::{CounterClient, VisitsClient};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};

// ANCHOR: client
#[tokio::main]
async fn main() -> goverse::Result<()> {
    // The gates' gRPC addresses, tried in turn.
    let gates: Vec<String> = std::env::args().skip(1).collect();
    let gates = if gates.is_empty() {
        vec!["http://127.0.0.1:9090".to_string()]
    } else {
        gates
    };
    let client = Client::connect(gates, ClientOptions::default()).await?;

    // The same typed proxies as inside a node; the objects live on
    // whichever nodes own their shards.
    for i in 0..10 {
        let counter = CounterClient::new(&client, format!("counter-{i}"));
        counter.add(Int32Value { value: i }).await?;
    }
    let mut total = 0;
    for i in 0..10 {
        let counter = CounterClient::new(&client, format!("counter-{i}"));
        total += counter.get(Empty {}).await?.value;
    }
    println!("ten counters hold {total} in all");

    // A persistent object: its count is in PostgreSQL, and outlives the
    // cluster.
    let visits = VisitsClient::new(&client, "client").visit(Empty {}).await?;
    println!("client visits: {}", visits.value);
    Ok(())
}
// ANCHOR_END: client
