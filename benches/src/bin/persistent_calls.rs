//! Durable calls on PostgreSQL: goverse persistent objects, each call
//! answered once its state is durable through the node's group committer,
//! against one autocommitted upsert per call on the same database, both with
//! 64 concurrent callers (each on its own object / row).
//!
//! Needs a PostgreSQL: `GOVERSE_BENCH_DATABASE_URL` (or the test one,
//! `GOVERSE_TEST_DATABASE_URL`), e.g. postgres://goverse:goverse@127.0.0.1:5432/goverse.
//!
//! Run with: cargo run --release -p goverse-benches --bin persistent_calls

use std::time::Duration;

use goverse::prelude::*;
use goverse::storage::{PostgresOptions, PostgresStorage};
use goverse_benches::{Measurement, measure, print_row, timed_loop};
use sqlx::postgres::PgPoolOptions;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const CALLERS: usize = 64;

/// A persistent account: every deposit is durable when it returns.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[goverse::object(persistent, name = "BenchAccount")]
impl Account {
    /// Adds to the balance.
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.balance += request.value;
        Ok(Int64Value {
            value: self.balance,
        })
    }
}

const UPSERT: &str = "INSERT INTO goverse_objects (object_type, object_id, data, epoch) VALUES ($1, $2, $3::jsonb, 1) \
     ON CONFLICT (object_type, object_id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()";

async fn one_upsert_per_call(url: &str, run: usize, calls: usize) -> Result<Measurement, Failure> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(url)
        .await?;
    let measured = measure(CALLERS, calls, |caller| {
        let pool = pool.clone();
        let id = format!("baseline-{run}-{caller}");
        let mut balance = 0i64;
        timed_loop(calls, move || {
            balance += 1;
            let state = format!("{{\"balance\": {balance}}}");
            let (pool, id) = (pool.clone(), id.clone());
            async move {
                sqlx::query(UPSERT)
                    .bind("BenchBaseline")
                    .bind(id)
                    .bind(state)
                    .execute(&pool)
                    .await
                    .expect("upsert");
            }
        })
    })
    .await;
    pool.close().await;
    Ok(measured)
}

async fn goverse_durable(node: &Node, run: usize, calls: usize) -> Measurement {
    measure(CALLERS, calls, |caller| {
        let account = AccountClient::new(node, format!("account-{run}-{caller}"));
        timed_loop(calls, move || {
            let account = account.clone();
            async move {
                account
                    .deposit(Int64Value { value: 1 })
                    .await
                    .expect("deposit");
            }
        })
    })
    .await
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let url = std::env::var("GOVERSE_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("GOVERSE_TEST_DATABASE_URL"))
        .map_err(|_| "set GOVERSE_BENCH_DATABASE_URL to a PostgreSQL database url")?;
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let storage = PostgresStorage::connect(&url, PostgresOptions::default().migrate(true)).await?;
    let node = Node::builder()
        .register::<Account>()
        .storage(storage)
        .call_timeout(Duration::from_secs(60))
        .start()
        .await?;
    // Warm up: activate the objects and open the connections.
    goverse_durable(&node, 0, 5).await;
    one_upsert_per_call(&url, 0, 5).await?;

    // Profiling aid: BENCH_PROFILE=1 runs only goverse.
    if std::env::var_os("BENCH_PROFILE").is_some() {
        for run in 1..=5 {
            print_row("goverse", &goverse_durable(&node, run, calls).await);
        }
        node.shutdown().await;
        return Ok(());
    }
    println!("durable calls on PostgreSQL, {CALLERS} callers, {calls} calls each (best of 3 runs)");
    let mut best_baseline: Option<Measurement> = None;
    let mut best_goverse: Option<Measurement> = None;
    for run in 1..=3 {
        let baseline = one_upsert_per_call(&url, run, calls).await?;
        let ours = goverse_durable(&node, run, calls).await;
        if best_baseline.is_none_or(|b| baseline.per_second > b.per_second) {
            best_baseline = Some(baseline);
        }
        if best_goverse.is_none_or(|b| ours.per_second > b.per_second) {
            best_goverse = Some(ours);
        }
    }
    let (Some(baseline), Some(ours)) = (best_baseline, best_goverse) else {
        unreachable!("three runs ran")
    };
    print_row("one upsert per call", &baseline);
    print_row("goverse group commit", &ours);
    let ratio = ours.per_second / baseline.per_second;
    let verdict = if ratio >= 10.0 { "meets" } else { "MISSES" };
    println!(
        "  ratio goverse/upsert = {ratio:.2}x -> {verdict} target (>= 10x at {CALLERS} callers)"
    );
    node.shutdown().await;
    Ok(())
}
