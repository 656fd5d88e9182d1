//! The same storage suite against every backend: memory, SQLite and real
//! PostgreSQL. Round trips, fencing of saves and deletes, idempotent
//! deletes, old rows loading into a state with a new field, and a schema
//! that is missing or not yet migrated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use goverse::prelude::*;
use goverse::storage::{
    Fence, MemoryStorage, PostgresOptions, PostgresStorage, SqliteStorage, Storage,
};
use goverse_tests::{database_url, unique_prefix};

/// A type name no other test (or run) writes under.
fn unique_type(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{test}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("stored state is JSON")
}

async fn round_trips(storage: Arc<dyn Storage>) {
    let kind = unique_type("round");
    assert_eq!(storage.load(&kind, "a").await.expect("load"), None);
    let state = br#"{"total": 7, "names": ["x", "y"], "nested": {"k": true}}"#;
    storage
        .save(&kind, "a", state, Fence { epoch: 1 })
        .await
        .expect("save");
    let loaded = storage
        .load(&kind, "a")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(json(&loaded.data), json(state));
    assert_eq!(loaded.epoch, 1);
    storage
        .save(&kind, "a", br#"{"total": 8}"#, Fence { epoch: 1 })
        .await
        .expect("same epoch overwrites");
    let loaded = storage
        .load(&kind, "a")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(json(&loaded.data), serde_json::json!({"total": 8}));
    assert_eq!(
        storage.load(&kind, "b").await.expect("load"),
        None,
        "ids are separate"
    );
}

async fn saves_are_fenced(storage: Arc<dyn Storage>) {
    let kind = unique_type("fence");
    storage
        .save(&kind, "a", br#"{"v": 2}"#, Fence { epoch: 2 })
        .await
        .expect("save");
    let error = storage
        .save(&kind, "a", br#"{"v": 1}"#, Fence { epoch: 1 })
        .await
        .expect_err("an older epoch is refused");
    assert_eq!(error.code(), "STALE_OWNER");
    assert!(
        error.to_string().contains("epoch 1") && error.to_string().contains("epoch 2"),
        "{error}"
    );
    let loaded = storage
        .load(&kind, "a")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(
        json(&loaded.data),
        serde_json::json!({"v": 2}),
        "the refused write left no trace"
    );
    storage
        .save(&kind, "a", br#"{"v": 3}"#, Fence { epoch: 3 })
        .await
        .expect("a newer epoch writes");
    assert_eq!(
        storage
            .load(&kind, "a")
            .await
            .expect("load")
            .expect("saved")
            .epoch,
        3
    );
}

async fn deletes_are_idempotent_and_fenced(storage: Arc<dyn Storage>) {
    let kind = unique_type("delete");
    storage
        .delete(&kind, "never", Fence { epoch: 1 })
        .await
        .expect("deleting what was never saved is fine");
    storage
        .save(&kind, "a", br#"{"v": 1}"#, Fence { epoch: 3 })
        .await
        .expect("save");
    let error = storage
        .delete(&kind, "a", Fence { epoch: 2 })
        .await
        .expect_err("a stale owner cannot delete");
    assert_eq!(error.code(), "STALE_OWNER");
    assert!(storage.load(&kind, "a").await.expect("load").is_some());
    storage
        .delete(&kind, "a", Fence { epoch: 3 })
        .await
        .expect("delete");
    assert_eq!(storage.load(&kind, "a").await.expect("load"), None);
    storage
        .delete(&kind, "a", Fence { epoch: 3 })
        .await
        .expect("and again");
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
    /// A field added after rows were written without it.
    #[serde(default)]
    label: String,
}

#[goverse::object(persistent)]
impl Account {
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

    pub async fn label(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<StringValue> {
        self.label = request.value;
        Ok(StringValue {
            value: self.label.clone(),
        })
    }
}

async fn objects_keep_state_and_old_rows_load(storage: Arc<dyn Storage>) {
    // A row written before `label` existed.
    let id = unique_type("account");
    storage
        .save("Account", &id, br#"{"balance": 40}"#, Fence { epoch: 1 })
        .await
        .expect("old row");
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&node, id.clone());
    assert_eq!(
        account
            .deposit(Int64Value { value: 2 })
            .await
            .expect("deposit")
            .value,
        42
    );
    account
        .label(StringValue {
            value: "savings".into(),
        })
        .await
        .expect("label");
    node.shutdown().await;
    let stored = storage
        .load("Account", &id)
        .await
        .expect("load")
        .expect("saved at shutdown");
    assert_eq!(
        json(&stored.data),
        serde_json::json!({"balance": 42, "label": "savings"})
    );

    // A new node on the same storage carries on from there.
    let again = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&again, id);
    assert_eq!(
        account
            .deposit(Int64Value { value: 1 })
            .await
            .expect("deposit")
            .value,
        43
    );
    again.shutdown().await;
}

async fn calls_are_durable_when_they_return(storage: Arc<dyn Storage>) {
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let id = unique_type("durable");
    let account = AccountClient::new(&node, id.clone());
    for expected in 1..=5 {
        assert_eq!(
            account
                .deposit(Int64Value { value: 1 })
                .await
                .expect("deposit")
                .value,
            expected
        );
        // No deactivation, no shutdown: the write happened before the reply.
        let stored = storage
            .load("Account", &id)
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(json(&stored.data)["balance"], expected);
    }
    // Many objects at once share batches, and each still gets its own result.
    let calls = (0..50).map(|i| {
        let account = AccountClient::new(&node, format!("{id}-{i}"));
        async move { account.deposit(Int64Value { value: i }).await }
    });
    for (i, result) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(result.expect("deposit").value, i as i64);
        let stored = storage
            .load("Account", &format!("{id}-{i}"))
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(json(&stored.data)["balance"], i as i64);
    }
    node.shutdown().await;
}

async fn a_claim_fences_out_older_writers(storage: Arc<dyn Storage>) {
    let kind = unique_type("claim");
    storage
        .claim(&kind, "never", Fence { epoch: 5 })
        .await
        .expect("nothing to claim");
    assert_eq!(storage.load(&kind, "never").await.expect("load"), None);
    storage
        .save(&kind, "a", br#"{"v": 1}"#, Fence { epoch: 1 })
        .await
        .expect("save");
    storage
        .claim(&kind, "a", Fence { epoch: 3 })
        .await
        .expect("claim");
    let claimed = storage
        .load(&kind, "a")
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(
        (json(&claimed.data), claimed.epoch),
        (serde_json::json!({"v": 1}), 3)
    );
    let error = storage
        .save(&kind, "a", br#"{"v": 2}"#, Fence { epoch: 2 })
        .await
        .expect_err("the old owner is fenced out by the claim alone");
    assert_eq!(error.code(), "STALE_OWNER");
    storage
        .claim(&kind, "a", Fence { epoch: 2 })
        .await
        .expect("an older claim is a no-op");
    assert_eq!(
        storage
            .load(&kind, "a")
            .await
            .expect("load")
            .expect("stored")
            .epoch,
        3
    );
}

async fn memory() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

async fn sqlite() -> Arc<dyn Storage> {
    let dir = std::env::temp_dir().join(unique_prefix("sqlite").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    Arc::new(
        SqliteStorage::open(dir.join("state.db"))
            .await
            .expect("sqlite opens"),
    )
}

async fn postgres() -> Arc<dyn Storage> {
    let options = PostgresOptions::default().migrate(true).max_connections(4);
    Arc::new(
        PostgresStorage::connect(&database_url(), options)
            .await
            .expect("PostgreSQL is reachable"),
    )
}

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn memory() {
                    super::$scenario(super::memory().await).await;
                }
                #[tokio::test]
                async fn sqlite() {
                    super::$scenario(super::sqlite().await).await;
                }
                #[tokio::test]
                async fn postgres() {
                    super::$scenario(super::postgres().await).await;
                }
            }
        )*
    };
}

on_every_backend!(
    round_trips,
    saves_are_fenced,
    deletes_are_idempotent_and_fenced,
    objects_keep_state_and_old_rows_load,
    calls_are_durable_when_they_return,
    a_claim_fences_out_older_writers,
);

/// A store that fails writes on demand.
#[derive(Default)]
struct Flaky {
    inner: MemoryStorage,
    failing: std::sync::atomic::AtomicBool,
}

impl Storage for Flaky {
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> goverse::BoxFuture<'a, goverse::Result<Option<goverse::storage::StoredState>>> {
        self.inner.load(type_name, id)
    }

    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> goverse::BoxFuture<'a, goverse::Result<()>> {
        if self.failing.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(goverse::Error::Storage(
                "disk on fire".into(),
            ))));
        }
        self.inner.save(type_name, id, data, fence)
    }

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> goverse::BoxFuture<'a, goverse::Result<()>> {
        self.inner.delete(type_name, id, fence)
    }
}

#[tokio::test]
async fn a_failed_write_fails_the_call_and_loses_nothing_acknowledged() {
    let storage = Arc::new(Flaky::default());
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&node, "flaky");
    assert_eq!(
        account
            .deposit(Int64Value { value: 5 })
            .await
            .expect("deposit")
            .value,
        5
    );
    storage.failing.store(true, Ordering::SeqCst);
    let error = account
        .deposit(Int64Value { value: 1 })
        .await
        .expect_err("the write failed, so the call fails");
    assert_eq!(error.code(), "STORAGE_ERROR");
    storage.failing.store(false, Ordering::SeqCst);
    // The failed deposit's effect went with its instance: 5 + 1, not 5 + 1 + 1.
    assert_eq!(
        account
            .deposit(Int64Value { value: 1 })
            .await
            .expect("deposit")
            .value,
        6
    );
    node.shutdown().await;
}

#[tokio::test]
async fn postgres_refuses_a_missing_schema_until_migrated() {
    use sqlx::Connection as _;
    // A database of its own, without the schema.
    let url = database_url();
    let name = unique_type("fresh").to_lowercase();
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    let fresh = format!("{base}/{name}");

    let error = PostgresStorage::connect(&fresh, PostgresOptions::default())
        .await
        .expect_err("no schema yet");
    assert_eq!(error.code(), "STORAGE_ERROR");
    assert!(error.to_string().contains("schema is missing"), "{error}");
    let storage = PostgresStorage::connect(&fresh, PostgresOptions::default().migrate(true))
        .await
        .expect("migrates");
    storage
        .save("T", "a", b"{}", Fence { epoch: 1 })
        .await
        .expect("usable");
    drop(storage);
    // Migrating again is a no-op, and a plain connect now passes the check.
    PostgresStorage::connect(&fresh, PostgresOptions::default().migrate(true))
        .await
        .expect("idempotent");
    PostgresStorage::connect(&fresh, PostgresOptions::default())
        .await
        .expect("schema is current");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
}
