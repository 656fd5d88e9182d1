//! Activation with a load: persistent objects whose state is in storage
//! are activated by a first call (read the row, deserialize it, run the
//! call; a row from an older epoch is first claimed for this node's epoch,
//! a durable write), 64 callers at once, from SQLite and
//! from PostgreSQL. The baseline in the same run reads the same rows with
//! the same storage, one plain keyed read each and nothing more: the floor
//! any activation from that database stands on.
//!
//! PostgreSQL is measured when `GOVERSE_BENCH_DATABASE_URL` (or
//! `GOVERSE_TEST_DATABASE_URL`) is set; SQLite always, in a temp file.
//!
//! Run with: cargo run --release -p goverse-benches --bin activation_with_load

use std::time::{Duration, Instant};

use goverse::prelude::*;
use goverse::storage::{
    Fence, PostgresOptions, PostgresStorage, SharedStorage, SqliteStorage, StateWrite, Storage,
};

type Failure = Box<dyn std::error::Error + Send + Sync>;

const CALLERS: usize = 64;

/// A player profile: a few fields, a few hundred bytes of JSON.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    name: String,
    level: i64,
    inventory: Vec<String>,
}

#[goverse::object(persistent, name = "BenchProfile")]
impl Profile {
    /// The profile's level.
    pub async fn level(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        Ok(Int64Value { value: self.level })
    }
}

/// Stores `ids` as saved profiles at `epoch`: at 1 (the embedded node's
/// epoch) they are what a node finds when it reactivates its objects, at 0
/// what a new owner finds after a shard moved to it.
async fn seed(storage: &SharedStorage, ids: &[String], epoch: u64) -> Result<(), Failure> {
    for chunk in ids.chunks(500) {
        let writes: Vec<StateWrite> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let profile = Profile {
                    name: format!("player {id}"),
                    level: i as i64,
                    inventory: (0..8).map(|k| format!("item-{k}")).collect(),
                };
                StateWrite {
                    type_name: "BenchProfile",
                    id: id.as_str().into(),
                    data: serde_json::to_vec(&profile).expect("json"),
                    fence: Fence { epoch },
                    call: None,
                }
            })
            .collect();
        for result in storage.save_batch(&writes).await {
            result?;
        }
    }
    Ok(())
}

/// Runs `per_id` for every id, `CALLERS` at a time; returns ids per second.
async fn rate<F, Fut>(ids: &[String], per_id: F) -> f64
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(CALLERS)) {
        let (chunk, per_id) = (chunk.to_vec(), per_id.clone());
        tasks.spawn(async move {
            for id in chunk {
                per_id(id).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("caller panicked");
    }
    ids.len() as f64 / started.elapsed().as_secs_f64()
}

async fn compare(label: &str, storage: SharedStorage, objects: usize) -> Result<f64, Failure> {
    let run = std::process::id();
    let reads: Vec<String> = (0..objects).map(|i| format!("read-{run}-{i}")).collect();
    let activations: Vec<String> = (0..objects).map(|i| format!("profile-{run}-{i}")).collect();
    let moved: Vec<String> = (0..objects / 4)
        .map(|i| format!("moved-{run}-{i}"))
        .collect();
    seed(&storage, &reads, 1).await?;
    seed(&storage, &activations, 1).await?;
    seed(&storage, &moved, 0).await?;

    let plain = storage.clone();
    let baseline = rate(&reads, move |id| {
        let storage = plain.clone();
        async move {
            let stored = storage.load("BenchProfile", &id).await.expect("load");
            assert!(stored.is_some(), "seeded");
        }
    })
    .await;

    let node = Node::builder()
        .register::<Profile>()
        .storage(storage.clone())
        .call_timeout(Duration::from_secs(120))
        .start()
        .await?;
    let activate = |node: Node| {
        move |id: String| {
            let node = node.clone();
            async move {
                ProfileClient::new(&node, id)
                    .level(Empty {})
                    .await
                    .expect("activates");
            }
        }
    };
    let ours = rate(&activations, activate(node.clone())).await;
    let after_move = rate(&moved, activate(node.clone())).await;
    let active = node.stats().active;
    assert_eq!(
        active as usize,
        objects + moved.len(),
        "every object activated once"
    );
    node.shutdown().await;

    let ratio = ours / baseline;
    println!("  {label:<10} plain keyed read         {baseline:>9.0} rows/s");
    println!(
        "  {label:<10} goverse activation       {ours:>9.0} activations/s   ratio {ratio:.2}x"
    );
    println!(
        "  {label:<10} first after a move       {after_move:>9.0} activations/s   ratio {:.2}x (claims the row; concurrent claims share a transaction)",
        after_move / baseline
    );
    Ok(ratio)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("activation with a load from storage, {objects} objects, {CALLERS} callers");

    let dir = std::env::temp_dir().join(format!("goverse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = SharedStorage::new(SqliteStorage::open(dir.join("state.db")).await?);
    compare("SQLite", sqlite, objects).await?;
    std::fs::remove_dir_all(&dir).ok();

    match std::env::var("GOVERSE_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("GOVERSE_TEST_DATABASE_URL"))
    {
        Ok(url) => {
            let options = PostgresOptions::default().migrate(true);
            let postgres = SharedStorage::new(PostgresStorage::connect(&url, options).await?);
            compare("PostgreSQL", postgres, objects).await?;
        }
        Err(_) => println!("  PostgreSQL: skipped (set GOVERSE_BENCH_DATABASE_URL)"),
    }
    println!(
        "  (an activation reads the row, claiming it first only if an older epoch wrote it; the read is the floor)"
    );
    Ok(())
}
