//! Durable calls on PostgreSQL: goverse persistent objects, each call
//! answered once its state is durable through the node's group committer,
//! against one autocommitted upsert per call on the same database, all with
//! 64 concurrent callers (each on its own object / row). Two baselines:
//! - through a pool of 16 connections, as an application written with
//!   sqlx would do it (the pool checks a connection with a round trip when
//!   it is borrowed and when it is returned);
//! - each caller on a connection of its own, with no pool and no checks:
//!   the fastest one upsert per call can be.
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

/// The baselines' write: caller `id`'s row, now with `balance`.
fn upsert(
    id: String,
    balance: i64,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(UPSERT)
        .bind("BenchBaseline")
        .bind(id)
        .bind(format!("{{\"balance\": {balance}}}"))
}

async fn one_upsert_per_call_pooled(
    url: &str,
    run: usize,
    calls: usize,
) -> Result<Measurement, Failure> {
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
            let (upsert, pool) = (upsert(id.clone(), balance), pool.clone());
            async move {
                upsert.execute(&pool).await.expect("upsert");
            }
        })
    })
    .await;
    pool.close().await;
    Ok(measured)
}

async fn one_upsert_per_call_own_connections(
    url: &str,
    run: usize,
    calls: usize,
) -> Result<Measurement, Failure> {
    use sqlx::Connection as _;
    let mut connections = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let connection = sqlx::PgConnection::connect(url).await?;
        connections.push(std::sync::Arc::new(tokio::sync::Mutex::new(connection)));
    }
    let measured = measure(CALLERS, calls, |caller| {
        let connection = connections[caller].clone();
        let id = format!("own-{run}-{caller}");
        let mut balance = 0i64;
        timed_loop(calls, move || {
            balance += 1;
            let (upsert, connection) = (upsert(id.clone(), balance), connection.clone());
            async move {
                upsert
                    .execute(&mut *connection.lock().await)
                    .await
                    .expect("upsert");
            }
        })
    })
    .await;
    for connection in connections {
        if let Ok(connection) = std::sync::Arc::try_unwrap(connection) {
            connection.into_inner().close().await?;
        }
    }
    Ok(measured)
}

/// The statement goverse's committer sends for a batch of writes to rows
/// already stored.
const UPDATE_BATCH: &str = "UPDATE goverse_objects AS o \
     SET data = w.d::jsonb, epoch = w.e, version = o.version + 1, updated_at = now() \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS w(t, i, d, e, n) \
     WHERE o.object_type = w.t AND o.object_id = w.i AND o.epoch <= w.e \
     RETURNING w.n";

/// A bound of what a node could reach here with batches shaped as the
/// committer's (two in flight, `CALLERS / 2` rows each): PostgreSQL alone,
/// fed such batches back to back on two connections, with no node in the
/// way. Rows written per second.
async fn database_alone(url: &str, calls: usize) -> Result<f64, Failure> {
    use sqlx::Connection as _;
    const CONNECTIONS: usize = 2;
    const ROWS: usize = CALLERS / CONNECTIONS;
    let batches = calls * CONNECTIONS;
    let types = vec![ALONE_TYPE; ROWS];
    // Connected, rows made and the statement prepared before the clock
    // starts, as the goverse side is warmed up.
    let mut prepared = Vec::with_capacity(CONNECTIONS);
    for connection in 0..CONNECTIONS {
        let mut db = sqlx::PgConnection::connect(url).await?;
        let ids: Vec<String> = (0..ROWS)
            .map(|row| format!("alone-{connection}-{row}"))
            .collect();
        sqlx::query(UPSERT_ALONE)
            .bind(&types)
            .bind(&ids)
            .execute(&mut db)
            .await?;
        alone_batch(&mut db, &ids, 0).await;
        prepared.push((db, ids));
    }
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (mut db, ids) in prepared {
        tasks.spawn(async move {
            for batch in 1..=calls {
                alone_batch(&mut db, &ids, batch).await;
            }
            db
        });
    }
    let mut done = Vec::with_capacity(CONNECTIONS);
    while let Some(db) = tasks.join_next().await {
        done.push(db?);
    }
    let elapsed = started.elapsed();
    for db in done {
        db.close().await?;
    }
    Ok((batches * ROWS) as f64 / elapsed.as_secs_f64())
}

/// The type of the rows `database_alone` writes.
const ALONE_TYPE: &str = "BenchAlone";

/// Writes batch number `batch` over the rows `ids` on `db`.
async fn alone_batch(db: &mut sqlx::PgConnection, ids: &[String], batch: usize) {
    let states: Vec<String> = ids
        .iter()
        .map(|_| format!("{{\"balance\": {batch}}}"))
        .collect();
    let written: Vec<i64> = sqlx::query_scalar(UPDATE_BATCH)
        .bind(vec![ALONE_TYPE; ids.len()])
        .bind(ids)
        .bind(states)
        .bind(vec![1i64; ids.len()])
        .fetch_all(db)
        .await
        .expect("batch");
    assert_eq!(written.len(), ids.len());
}

/// Makes the rows `database_alone` updates.
const UPSERT_ALONE: &str = "INSERT INTO goverse_objects (object_type, object_id, data, epoch) \
     SELECT t, i, '{}'::jsonb, 1 FROM UNNEST($1::text[], $2::text[]) AS r(t, i) ON CONFLICT DO NOTHING";

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
    one_upsert_per_call_pooled(&url, 0, 5).await?;

    // Profiling aid: BENCH_PROFILE=1 runs only goverse.
    if std::env::var_os("BENCH_PROFILE").is_some() {
        for run in 1..=5 {
            print_row("goverse", &goverse_durable(&node, run, calls).await);
        }
        node.shutdown().await;
        return Ok(());
    }
    println!("durable calls on PostgreSQL, {CALLERS} callers, {calls} calls each (best of 3 runs)");
    let best = |best: &mut Option<Measurement>, new: Measurement| {
        if best.is_none_or(|b| new.per_second > b.per_second) {
            *best = Some(new);
        }
    };
    let (mut pooled, mut own, mut ours, mut alone) = (None, None, None, 0f64);
    for run in 1..=3 {
        best(
            &mut pooled,
            one_upsert_per_call_pooled(&url, run, calls).await?,
        );
        best(
            &mut own,
            one_upsert_per_call_own_connections(&url, run, calls).await?,
        );
        best(&mut ours, goverse_durable(&node, run, calls).await);
        alone = alone.max(database_alone(&url, calls).await?);
    }
    let (Some(pooled), Some(own), Some(ours)) = (pooled, own, ours) else {
        unreachable!("three runs ran")
    };
    print_row("upsert per call, sqlx pool", &pooled);
    print_row("upsert per call, own conn", &own);
    print_row("goverse group commit", &ours);
    println!(
        "  PostgreSQL alone, batches of {} back to back on 2 connections: {alone:.0} rows/s \
         (goverse reaches {:.0}% of it; it is {:.2}x the own-connection upsert)",
        CALLERS / 2,
        100.0 * ours.per_second / alone,
        alone / own.per_second
    );
    for (baseline, measured) in [("sqlx pool", pooled), ("own connections", own)] {
        let ratio = ours.per_second / measured.per_second;
        let verdict = if ratio >= 10.0 { "meets" } else { "MISSES" };
        println!(
            "  ratio goverse/upsert ({baseline}) = {ratio:.2}x -> {verdict} target (>= 10x at {CALLERS} callers)"
        );
    }
    node.shutdown().await;
    Ok(())
}
