//! The same storage suite against every backend: memory, SQLite and real
//! PostgreSQL. Round trips, fencing of saves and deletes, idempotent
//! deletes, old rows loading into a state with a new field, and a schema
//! that is missing or not yet migrated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use goverse::prelude::*;
use goverse::storage::{
    CallOutcome, CallRecord, Claim, Fence, MemoryStorage, NO_STATE, PostgresOptions,
    PostgresStorage, SharedStorage, SqliteStorage, StateWrite, Storage,
};
use goverse::{Codec, EncodedCall};
use goverse_tests::{PATIENCE, database_url, unique_prefix, wait_until};

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

async fn round_trips(storage: SharedStorage) {
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

async fn saves_are_fenced(storage: SharedStorage) {
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

async fn deletes_are_idempotent_and_fenced(storage: SharedStorage) {
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

    pub async fn withdraw(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        if request.value > self.balance {
            return Err(goverse::Error::application(
                "INSUFFICIENT_FUNDS",
                format!("balance is {}", self.balance),
            ));
        }
        self.balance -= request.value;
        Ok(Int64Value {
            value: self.balance,
        })
    }

    /// The reliable call id the turn runs under (empty for a plain call).
    pub async fn call_id(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: ctx.call_id().unwrap_or_default().to_string(),
        })
    }

    pub async fn balance(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        Ok(Int64Value {
            value: self.balance,
        })
    }
}

fn write(kind: &str, id: &str, epoch: u64, call: Option<CallRecord>) -> StateWrite {
    let kind: &'static str = Box::leak(kind.to_string().into_boxed_str());
    StateWrite {
        type_name: kind,
        id: id.into(),
        data: format!(r#"{{"epoch": {epoch}}}"#).into_bytes(),
        fence: Fence { epoch },
        call,
    }
}

fn record(call_id: &str, method: &str, outcome: CallOutcome) -> CallRecord {
    CallRecord {
        call_id: call_id.into(),
        method: method.into(),
        outcome,
        caller: String::new(),
    }
}

/// A plain write with state `{"v": v}`.
fn write_v(kind: &str, id: &str, epoch: u64, v: i64) -> StateWrite {
    StateWrite {
        data: format!(r#"{{"v": {v}}}"#).into_bytes(),
        ..write(kind, id, epoch, None)
    }
}

async fn stored_v(storage: &SharedStorage, kind: &str, id: &str) -> (serde_json::Value, u64) {
    let stored = storage.load(kind, id).await.expect("load").expect("stored");
    (json(&stored.data)["v"].clone(), stored.epoch)
}

async fn batches_write_stored_and_new_rows_and_refuse_stale_ones(storage: SharedStorage) {
    let kind = unique_type("batch");
    storage
        .save(&kind, "stored", br#"{"v": 0}"#, Fence { epoch: 1 })
        .await
        .expect("save");
    storage
        .save(&kind, "newer", br#"{"v": 0}"#, Fence { epoch: 3 })
        .await
        .expect("save");
    let results = storage
        .save_batch(&[
            write_v(&kind, "stored", 1, 1),
            write_v(&kind, "new", 1, 1),
            write_v(&kind, "newer", 2, 1),
            // The same object again: it lands after the first.
            write_v(&kind, "stored", 2, 2),
        ])
        .await;
    let codes = outcome_codes(&results);
    assert_eq!(codes, ["OK", "OK", "STALE_OWNER", "OK"]);
    assert_eq!(stored_v(&storage, &kind, "stored").await, (2.into(), 2));
    assert_eq!(stored_v(&storage, &kind, "new").await, (1.into(), 1));
    assert_eq!(
        stored_v(&storage, &kind, "newer").await,
        (0.into(), 3),
        "the refused write left no trace"
    );
    // Every row there now: each write lands.
    let results = storage
        .save_batch(&[
            write_v(&kind, "new", 1, 2),
            write_v(&kind, "stored", 2, 3),
            write_v(&kind, "newer", 3, 1),
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stored_v(&storage, &kind, "new").await, (2.into(), 1));
    assert_eq!(stored_v(&storage, &kind, "stored").await, (3.into(), 2));
    assert_eq!(stored_v(&storage, &kind, "newer").await, (1.into(), 3));
}

async fn call_records_land_with_their_state(storage: SharedStorage) {
    let kind = unique_type("calls");
    storage
        .save(&kind, "stale", b"{}", Fence { epoch: 5 })
        .await
        .expect("a newer owner wrote first");
    let ok = CallRecord {
        caller: "user:alice".into(),
        ..record("c1", "Deposit", CallOutcome::Response(vec![8, 42]))
    };
    let failed = record(
        "c2",
        "Withdraw",
        CallOutcome::Error {
            code: "INSUFFICIENT_FUNDS".into(),
            message: "balance is 0".into(),
        },
    );
    let refused = record("c3", "Deposit", CallOutcome::Response(vec![8, 1]));
    let results = storage
        .save_batch(&[
            write(&kind, "a", 1, Some(ok.clone())),
            write(&kind, "b", 1, Some(failed.clone())),
            write(&kind, "stale", 2, Some(refused)),
            write(&kind, "plain", 1, None),
        ])
        .await;
    let codes = outcome_codes(&results);
    assert_eq!(codes, ["OK", "OK", "STALE_OWNER", "OK"]);
    assert_eq!(
        storage.load_call(&kind, "a", "c1").await.expect("load"),
        Some(ok)
    );
    assert_eq!(
        storage.load_call(&kind, "b", "c2").await.expect("load"),
        Some(failed)
    );
    assert_eq!(
        storage.load_call(&kind, "stale", "c3").await.expect("load"),
        None,
        "a refused write leaves no record"
    );
    assert_eq!(
        storage.load_call(&kind, "b", "c1").await.expect("load"),
        None,
        "call ids are per object"
    );
    // A second record under the same id keeps the first.
    let again = record("c1", "Deposit", CallOutcome::Response(vec![8, 99]));
    storage
        .save_batch(&[write(&kind, "a", 1, Some(again))])
        .await[0]
        .clone()
        .expect("saved");
    assert_eq!(
        storage
            .load_call(&kind, "a", "c1")
            .await
            .expect("load")
            .map(|r| r.outcome),
        Some(CallOutcome::Response(vec![8, 42]))
    );
    // Records younger than the retention stay; older ones go.
    storage
        .purge_calls(std::time::Duration::from_secs(3600))
        .await
        .expect("purge");
    assert!(
        storage
            .load_call(&kind, "a", "c1")
            .await
            .expect("load")
            .is_some()
    );
    let storage = storage.clone();
    wait_until("old records are purged", PATIENCE, || {
        let (storage, kind) = (storage.clone(), kind.clone());
        async move {
            storage
                .purge_calls(std::time::Duration::from_secs(2))
                .await
                .expect("purge");
            storage
                .load_call(&kind, "a", "c1")
                .await
                .expect("load")
                .is_none()
        }
    })
    .await;
}

async fn reliable_calls_run_once(storage: SharedStorage) {
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let id = unique_type("reliable");
    let account = AccountClient::new(&node, id.clone());
    let deposit = |call_id: &str, value: i64| {
        let account = account.reliable(call_id);
        async move { account.deposit(Int64Value { value }).await }
    };
    assert_eq!(deposit("d1", 5).await.expect("deposit").value, 5);
    assert_eq!(
        deposit("d1", 5).await.expect("retry").value,
        5,
        "a retry returns the recorded response"
    );
    assert_eq!(deposit("d2", 5).await.expect("deposit").value, 10);

    // An error is an outcome too: the retry gets it back even though the
    // balance would now allow the withdrawal.
    let withdraw = || {
        let account = account.reliable("w1");
        async move { account.withdraw(Int64Value { value: 12 }).await }
    };
    assert_eq!(
        withdraw().await.expect_err("too much").code(),
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(deposit("d3", 5).await.expect("deposit").value, 15);
    let error = withdraw().await.expect_err("recorded");
    assert_eq!(error.code(), "INSUFFICIENT_FUNDS");
    assert_eq!(error.to_string(), "INSUFFICIENT_FUNDS: balance is 10");

    // The method sees the id it runs under.
    assert_eq!(
        account
            .reliable("seen")
            .call_id(Empty {})
            .await
            .expect("id")
            .value,
        "seen"
    );
    assert_eq!(account.call_id(Empty {}).await.expect("id").value, "");

    // An id that ran one method cannot run another.
    let error = account
        .reliable("d1")
        .withdraw(Int64Value { value: 1 })
        .await
        .expect_err("reused");
    assert_eq!(error.code(), "CALL_ID_REUSED");

    // By name, in JSON: recorded as protobuf, answered in JSON, and the
    // typed proxy reads the same record.
    let json = || {
        EncodedCall::new(
            "Account",
            id.clone(),
            "Deposit",
            Codec::Json,
            br#""1""#.to_vec(),
        )
        .reliable("j1")
    };
    let first = node.call(json()).await.expect("json deposit");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&first).expect("json"),
        serde_json::json!("16")
    );
    assert_eq!(node.call(json()).await.expect("json retry"), first);
    assert_eq!(deposit("j1", 1).await.expect("typed retry").value, 16);
    node.shutdown().await;

    // Another node on the same storage (the first one is gone) knows
    // every recorded call.
    let again = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&again, id);
    assert_eq!(
        account
            .reliable("d2")
            .deposit(Int64Value { value: 5 })
            .await
            .expect("retry elsewhere")
            .value,
        10
    );
    assert_eq!(
        account.balance(Empty {}).await.expect("balance").value,
        16,
        "no call ran twice"
    );
    again.shutdown().await;
}

async fn objects_keep_state_and_old_rows_load(storage: SharedStorage) {
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

async fn calls_are_durable_when_they_return(storage: SharedStorage) {
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

async fn claims_in_one_batch_answer_each_object(storage: SharedStorage) {
    let kind: &'static str = Box::leak(unique_type("claims").into_boxed_str());
    storage
        .save(kind, "older", br#"{"v": 1}"#, Fence { epoch: 1 })
        .await
        .expect("save");
    storage
        .save(kind, "newer", br#"{"v": 2}"#, Fence { epoch: 9 })
        .await
        .expect("save");
    let claim = |id: &str| Claim {
        type_name: kind,
        id: Arc::from(id),
        fence: Fence { epoch: 3 },
    };
    let answers = storage
        .claim_batch(&[claim("fresh"), claim("older"), claim("newer")])
        .await;
    let rows: Vec<(serde_json::Value, u64)> = answers
        .into_iter()
        .map(|answer| {
            let row = answer.expect("claimed").expect("a row");
            (json(&row.data), row.epoch)
        })
        .collect();
    assert_eq!(
        rows,
        [
            (serde_json::Value::Null, 3),
            (serde_json::json!({"v": 1}), 3),
            (serde_json::json!({"v": 2}), 9),
        ],
        "a fresh object gets a row holding no state, an older one is raised, a newer one is left"
    );
    let error = storage
        .save(kind, "fresh", br#"{"v": 0}"#, Fence { epoch: 2 })
        .await
        .expect_err("fenced out by the batch's claim");
    assert_eq!(error.code(), "STALE_OWNER");
}

async fn a_claim_fences_out_older_writers(storage: SharedStorage) {
    let kind = unique_type("claim");
    // A claim on an object never saved leaves a row holding no state at
    // the claim's epoch: an older owner's first write of it is refused, a
    // write at the claim's epoch replaces it.
    storage
        .claim(&kind, "never", Fence { epoch: 5 })
        .await
        .expect("claim an object never saved");
    let claimed = storage
        .load(&kind, "never")
        .await
        .expect("load")
        .expect("a row");
    assert_eq!((claimed.data.as_slice(), claimed.epoch), (NO_STATE, 5));
    let error = storage
        .save(&kind, "never", br#"{"v": 0}"#, Fence { epoch: 4 })
        .await
        .expect_err("an older owner's first write is refused");
    assert_eq!(error.code(), "STALE_OWNER");
    storage
        .save(&kind, "never", br#"{"v": 9}"#, Fence { epoch: 5 })
        .await
        .expect("the claimant writes");
    assert_eq!(
        json(
            &storage
                .load(&kind, "never")
                .await
                .expect("load")
                .expect("stored")
                .data
        ),
        serde_json::json!({"v": 9})
    );
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
    // Claim and load in one: the row as it is after the claim.
    let fresh = storage
        .claim_and_load(&kind, "fresh", Fence { epoch: 4 })
        .await
        .expect("claim and load")
        .expect("a row");
    assert_eq!((fresh.data.as_slice(), fresh.epoch), (NO_STATE, 4));
    let raised = storage
        .claim_and_load(&kind, "a", Fence { epoch: 6 })
        .await
        .expect("claim and load")
        .expect("a row");
    assert_eq!(
        (json(&raised.data), raised.epoch),
        (serde_json::json!({"v": 1}), 6)
    );
    let newer = storage
        .claim_and_load(&kind, "a", Fence { epoch: 5 })
        .await
        .expect("an older claim loads what is there")
        .expect("a row");
    assert_eq!(newer, raised);
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
        6
    );
}

/// Each result's code, `OK` for a success.
fn outcome_codes<T>(results: &[goverse::Result<T>]) -> Vec<String> {
    results
        .iter()
        .map(|r| {
            r.as_ref()
                .map_or_else(|e| e.code().to_string(), |_| "OK".to_string())
        })
        .collect()
}

async fn memory() -> SharedStorage {
    SharedStorage::new(MemoryStorage::new())
}

async fn sqlite() -> SharedStorage {
    let dir = std::env::temp_dir().join(unique_prefix("sqlite").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    SharedStorage::new(
        SqliteStorage::open(dir.join("state.db"))
            .await
            .expect("sqlite opens"),
    )
}

async fn postgres() -> SharedStorage {
    let options = PostgresOptions::default().migrate(true).max_connections(4);
    SharedStorage::new(
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

/// Rows holding no state (tombstones, claims) go once older than the age
/// given; rows with state stay, however old.
async fn tombstones_go_after_their_retention(storage: SharedStorage) {
    let kind = unique_type("tombstones");
    let fence = Fence { epoch: 3 };
    storage
        .save(&kind, "gone", NO_STATE, fence)
        .await
        .expect("tombstone");
    storage
        .save(&kind, "kept", br#"{"v": 1}"#, fence)
        .await
        .expect("state");
    storage
        .claim(&kind, "claimed", fence)
        .await
        .expect("claim of an object with no row");
    let age = std::time::Duration::from_secs(2);
    storage.purge_tombstones(age).await.expect("purge");
    assert!(
        storage.load(&kind, "gone").await.expect("load").is_some(),
        "a young tombstone stays"
    );
    wait_until("the old rows holding no state go", PATIENCE, || {
        let (storage, kind) = (storage.clone(), kind.clone());
        async move {
            storage.purge_tombstones(age).await.expect("purge");
            storage.load(&kind, "gone").await.expect("load").is_none()
                && storage
                    .load(&kind, "claimed")
                    .await
                    .expect("load")
                    .is_none()
        }
    })
    .await;
    assert!(
        storage.load(&kind, "kept").await.expect("load").is_some(),
        "a row with state stays"
    );
}

/// Reads of ids nobody stored, and calls whose request does not decode,
/// write nothing: no row, not even at shutdown, and the bad call leaves no
/// activation behind.
async fn reads_and_bad_calls_on_random_ids_store_nothing(storage: SharedStorage) {
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let run = unique_type("random");
    let read = format!("{run}-read");
    assert_eq!(
        AccountClient::new(&node, read.clone())
            .balance(Empty {})
            .await
            .expect("a read")
            .value,
        0
    );
    let active = node.stats().active;
    let bad = format!("{run}-bad");
    let error = node
        .call(EncodedCall::new(
            "Account",
            bad.clone(),
            "Deposit",
            Codec::Json,
            b"not json".to_vec(),
        ))
        .await
        .expect_err("the body does not decode");
    assert_eq!(error.code(), "INVALID_JSON");
    assert_eq!(
        node.stats().active,
        active,
        "the bad call's activation did not stay"
    );
    node.shutdown().await;
    for id in [read, bad] {
        assert_eq!(
            storage.load("Account", &id).await.expect("load"),
            None,
            "{id} left a row"
        );
    }
}

/// A note whose text and ratio come from its callers.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Note {
    text: String,
    ratio: f64,
}

#[goverse::object(persistent)]
impl Note {
    pub async fn write(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<StringValue> {
        self.text = request.value;
        Ok(StringValue {
            value: self.text.clone(),
        })
    }

    pub async fn scale(
        &mut self,
        _ctx: &Context,
        request: DoubleValue,
    ) -> goverse::Result<DoubleValue> {
        self.ratio = request.value;
        Ok(DoubleValue { value: self.ratio })
    }

    /// Fails with the request as its error text.
    pub async fn refuse(&mut self, _ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        Err(goverse::Error::application("REFUSED", request.value))
    }

    pub async fn text(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: self.text.clone(),
        })
    }
}

/// A state that cannot be stored (a NUL in a string, which PostgreSQL's
/// jsonb refuses; a NaN, which JSON writes as null and cannot load back)
/// fails its own call with `INVALID_STATE` and leaves the object as it was,
/// while the writes of other objects committed beside it all land; a
/// reliable call's error text with a NUL is recorded and replayed.
async fn an_unstorable_state_fails_only_its_own_call(storage: SharedStorage) {
    let node = Node::builder()
        .register::<Note>()
        .storage(storage)
        .start()
        .await
        .expect("node");
    let run = unique_type("note");
    let bad = NoteClient::new(&node, format!("{run}-bad"));
    bad.write(StringValue {
        value: "clean".into(),
    })
    .await
    .expect("a clean write");

    // Many writes at once, so the committer batches them with the bad ones.
    let mut calls = Vec::new();
    for i in 0..64 {
        let note = NoteClient::new(&node, format!("{run}-{i}"));
        calls.push(tokio::spawn(async move {
            note.write(StringValue {
                value: format!("note {i}"),
            })
            .await
        }));
    }
    let nul = bad.write(StringValue {
        value: "a\0b".into(),
    });
    let (nan_note, infinite_note) = (
        NoteClient::new(&node, format!("{run}-nan")),
        NoteClient::new(&node, format!("{run}-inf")),
    );
    let nan = nan_note.scale(DoubleValue { value: f64::NAN });
    let infinite = infinite_note.scale(DoubleValue {
        value: f64::INFINITY,
    });
    let (nul, nan, infinite) = tokio::join!(nul, nan, infinite);
    for (what, result) in [
        ("a NUL", nul.map(|_| ())),
        ("a NaN", nan.map(|_| ())),
        ("an infinity", infinite.map(|_| ())),
    ] {
        let error = result.expect_err(what);
        assert_eq!(error.code(), "INVALID_STATE", "{what}: {error}");
    }
    for (i, call) in calls.into_iter().enumerate() {
        let written = call
            .await
            .expect("task")
            .expect("other objects' writes land");
        assert_eq!(written.value, format!("note {i}"));
    }
    assert_eq!(
        bad.text(Empty {}).await.expect("the bad note loads").value,
        "clean",
        "the refused write left the note as it was"
    );
    assert_eq!(
        NoteClient::new(&node, format!("{run}-nan"))
            .scale(DoubleValue { value: 0.5 })
            .await
            .expect("the NaN note loads and takes a finite ratio")
            .value,
        0.5
    );

    // A reliable call whose error text holds a NUL is recorded; its retry
    // gets the same code back.
    let reliable = bad.reliable(format!("{run}-refuse"));
    for _ in 0..2 {
        let error = reliable
            .refuse(StringValue {
                value: "no\0way".into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), "REFUSED", "{error}");
    }
    node.shutdown().await;
}

/// A tab that saves in the background, at most two seconds after a change.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tab {
    total: i64,
}

#[goverse::object(persistent, write_behind = "2s")]
impl Tab {
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }
}

async fn stored_total(storage: &SharedStorage, id: &str) -> Option<i64> {
    let stored = storage.load("Tab", id).await.expect("load")?;
    json(&stored.data)["total"].as_i64()
}

async fn write_behind_saves_within_its_interval(storage: SharedStorage) {
    let node = Node::builder()
        .register::<Tab>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let id = unique_type("tab");
    let tab = TabClient::new(&node, id.clone());
    assert_eq!(
        tab.add(Int64Value { value: 2 }).await.expect("add").value,
        2
    );
    assert_eq!(
        tab.add(Int64Value { value: 3 }).await.expect("add").value,
        5
    );
    assert_eq!(
        stored_total(&storage, &id).await,
        None,
        "answered before it is saved"
    );
    wait_until("the changes are saved", PATIENCE, || {
        let (storage, id) = (storage.clone(), id.clone());
        async move { stored_total(&storage, &id).await == Some(5) }
    })
    .await;

    // A reliable call is saved with its record before it is answered,
    // together with the changes made before it.
    assert_eq!(
        tab.add(Int64Value { value: 1 }).await.expect("add").value,
        6
    );
    let reliable = tab
        .reliable("r1")
        .add(Int64Value { value: 10 })
        .await
        .expect("reliable add");
    assert_eq!(reliable.value, 16);
    assert_eq!(stored_total(&storage, &id).await, Some(16));

    // What the last interval changed is lost in a crash...
    assert_eq!(
        tab.add(Int64Value { value: 100 }).await.expect("add").value,
        116
    );
    node.crash();
    let again = Node::builder()
        .register::<Tab>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let tab = TabClient::new(&again, id.clone());
    assert_eq!(
        tab.add(Int64Value { value: 0 }).await.expect("read").value,
        16,
        "the unsaved change went with the crashed node"
    );
    // ...but not in a graceful shutdown.
    assert_eq!(
        tab.add(Int64Value { value: 4 }).await.expect("add").value,
        20
    );
    again.shutdown().await;
    assert_eq!(stored_total(&storage, &id).await, Some(20));
}

on_every_backend!(
    round_trips,
    saves_are_fenced,
    deletes_are_idempotent_and_fenced,
    objects_keep_state_and_old_rows_load,
    calls_are_durable_when_they_return,
    a_claim_fences_out_older_writers,
    claims_in_one_batch_answer_each_object,
    batches_write_stored_and_new_rows_and_refuse_stale_ones,
    call_records_land_with_their_state,
    reliable_calls_run_once,
    write_behind_saves_within_its_interval,
    an_unstorable_state_fails_only_its_own_call,
    tombstones_go_after_their_retention,
    reads_and_bad_calls_on_random_ids_store_nothing,
);

#[derive(Debug, Default)]
pub struct Scratch {
    total: i64,
}

#[goverse::object]
impl Scratch {
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }
}

#[tokio::test]
async fn reliable_calls_are_checked() {
    let node = Node::builder()
        .register::<Account>()
        .register::<Scratch>()
        .start()
        .await
        .expect("node");
    // A proxy of a type that is not persistent has no `reliable`; by name:
    let error = node
        .call(EncodedCall::new("Scratch", "s", "Add", Codec::Json, b"\"1\"".to_vec()).reliable("x"))
        .await
        .expect_err("not persistent");
    assert_eq!(error.code(), "NOT_PERSISTENT");
    let account = AccountClient::new(&node, "checked");
    for bad in [String::new(), "x".repeat(257)] {
        let error = account
            .reliable(bad)
            .deposit(Int64Value { value: 1 })
            .await
            .expect_err("bad id");
        assert_eq!(error.code(), "INVALID_CALL_ID");
    }
    assert_eq!(
        account.balance(Empty {}).await.expect("balance").value,
        0,
        "nothing ran"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_purges_records_past_their_retention() {
    let storage = Arc::new(MemoryStorage::new());
    let node = Node::builder()
        .register::<Account>()
        .storage(storage.clone())
        .reliable_call_retention(std::time::Duration::from_millis(300))
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&node, "retained");
    let deposit = || {
        let account = account.reliable("once");
        async move { account.deposit(Int64Value { value: 1 }).await }
    };
    assert_eq!(deposit().await.expect("deposit").value, 1);
    assert_eq!(deposit().await.expect("retry").value, 1);
    wait_until("the record is purged", PATIENCE, || {
        let storage = storage.clone();
        async move {
            storage
                .load_call("Account", "retained", "once")
                .await
                .expect("load")
                .is_none()
        }
    })
    .await;
    assert_eq!(
        deposit().await.expect("runs again").value,
        2,
        "past the retention a retry runs the method again"
    );
    // A deleted object's tombstone goes too.
    node.delete::<Account>("retained").await.expect("delete");
    wait_until("the tombstone is purged", PATIENCE, || {
        let storage = storage.clone();
        async move {
            storage
                .load("Account", "retained")
                .await
                .expect("load")
                .is_none()
        }
    })
    .await;
    node.shutdown().await;
}

/// A store that fails writes on demand.
#[derive(Default)]
struct Flaky {
    inner: MemoryStorage,
    failing: std::sync::atomic::AtomicBool,
}

impl Storage for Flaky {
    async fn load(
        &self,
        type_name: &str,
        id: &str,
    ) -> goverse::Result<Option<goverse::storage::StoredState>> {
        self.inner.load(type_name, id).await
    }

    async fn save(
        &self,
        type_name: &str,
        id: &str,
        data: &[u8],
        fence: Fence,
    ) -> goverse::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(goverse::Error::Storage("disk on fire".into()));
        }
        self.inner.save(type_name, id, data, fence).await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> goverse::Result<()> {
        self.inner.delete(type_name, id, fence).await
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
    drop(
        PostgresStorage::connect(&fresh, PostgresOptions::default().migrate(true))
            .await
            .expect("migrates"),
    );
    // A schema older than the code: the newest migration not applied.
    let mut db = sqlx::PgConnection::connect(&fresh).await.expect("connect");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 3")
        .execute(&mut db)
        .await
        .expect("roll the record back");
    drop(db);
    let error = PostgresStorage::connect(&fresh, PostgresOptions::default())
        .await
        .expect_err("schema too old");
    assert!(
        error
            .to_string()
            .contains("at version 2 but this code needs 3"),
        "{error}"
    );
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

/// The CA that signed the test PostgreSQL's certificate (`scripts/test.sh`
/// makes one and turns TLS on).
fn database_ca() -> String {
    std::env::var("GOVERSE_TEST_DATABASE_CA")
        .expect("GOVERSE_TEST_DATABASE_CA names the test database's CA (run scripts/test.sh)")
}

/// Whether the connection behind `storage`'s url is encrypted.
async fn encrypted(url: &str) -> bool {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn postgres_over_verified_tls() {
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let verified = format!(
        "{url}{separator}sslmode=verify-full&sslrootcert={}",
        database_ca()
    );
    assert!(encrypted(&verified).await, "the session is encrypted");
    let storage = PostgresStorage::connect(&verified, PostgresOptions::default().migrate(true))
        .await
        .expect("connects over TLS, verifying the server");
    let kind = unique_type("tls");
    storage
        .save(&kind, "a", br#"{"secret": true}"#, Fence { epoch: 1 })
        .await
        .expect("save over TLS");
    assert!(storage.load(&kind, "a").await.expect("load").is_some());

    // Without the private CA the server cannot be verified: refused.
    let unverifiable = format!("{url}{separator}sslmode=verify-full");
    let error = PostgresStorage::connect(&unverifiable, PostgresOptions::default())
        .await
        .expect_err("unknown issuer");
    assert_eq!(error.code(), "STORAGE_ERROR");
}

/// The database drops every connection of a node (a restart, a failover,
/// an administrator): the node's writes go on, on new connections, and
/// what was acknowledged is all that was applied.
#[tokio::test]
async fn postgres_writes_go_on_after_the_server_drops_the_connections() {
    use sqlx::Connection as _;
    let name = unique_type("dropped");
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let storage = PostgresStorage::connect(
        &format!("{url}{separator}application_name={name}"),
        PostgresOptions::default().migrate(true).max_connections(2),
    )
    .await
    .expect("PostgreSQL is reachable");
    let node = Node::builder()
        .register::<Account>()
        .storage(storage)
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&node, &name);
    let mut acknowledged = 0;
    for _ in 0..3 {
        account
            .deposit(Int64Value { value: 1 })
            .await
            .expect("deposit");
        acknowledged += 1;
    }
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(!dropped.is_empty(), "the node's connections were found");
    // A call whose write, or whose object's reload, meets a dropped
    // connection fails; the next ones go through on new connections.
    let mut failures = 0;
    let mut balance = 0;
    while balance == 0 {
        match account.deposit(Int64Value { value: 1 }).await {
            Ok(reply) => {
                acknowledged += 1;
                balance = reply.value;
            }
            Err(error) => {
                assert!(
                    matches!(error.code(), Code::StorageError | Code::ActivationFailed),
                    "{error}"
                );
                failures += 1;
                assert!(failures <= 6, "writes did not recover: {error}");
            }
        }
    }
    assert_eq!(balance, acknowledged, "only acknowledged deposits count");
    node.shutdown().await;
}

/// A TCP proxy to PostgreSQL that can stop forwarding while keeping its
/// connections open, as a blackholed network does.
struct Blackhole {
    address: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Blackhole {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (cut, _) = tokio::sync::watch::channel(false);
        let holes = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pump(client_read, server_write, holes.subscribe()));
                tokio::spawn(Self::pump(server_read, client_write, holes.subscribe()));
            }
        });
        Self { address, cut }
    }

    /// Forwards until cut; a cut connection forwards nothing more and is
    /// closed once the cut ends.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut cut: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = tokio::select! {
                read = from.read(&mut buffer) => Some(read),
                _ = cut.wait_for(|cut| *cut) => None,
            };
            let forwarded = match read {
                Some(Ok(n)) if n > 0 && !*cut.borrow() => to.write_all(&buffer[..n]).await.is_ok(),
                _ => false,
            };
            if !forwarded {
                if *cut.borrow() {
                    let _ = cut.wait_for(|cut| !*cut).await;
                }
                return;
            }
        }
    }
}

/// A database that stops answering fails the calls waiting on it with
/// `STORAGE_ERROR` within the node's storage timeout, not after minutes
/// with their objects held; once it answers again, calls go on, from the
/// last acknowledged state.
#[tokio::test]
async fn a_database_that_stops_answering_fails_calls_within_the_storage_timeout() {
    let url = database_url();
    let (head, rest) = url.split_once('@').expect("url has credentials");
    let (upstream, database) = rest.split_once('/').expect("url has a database");
    let proxy = Blackhole::start(upstream.to_string()).await;
    let through = format!("{head}@{}/{database}", proxy.address);
    let storage = PostgresStorage::connect(
        &through,
        PostgresOptions::default().migrate(true).max_connections(4),
    )
    .await
    .expect("PostgreSQL through the proxy");
    let node = Node::builder()
        .register::<Account>()
        .storage(storage)
        .storage_timeout(std::time::Duration::from_secs(1))
        .start()
        .await
        .expect("node");
    let account = AccountClient::new(&node, unique_type("blackholed")).with_timeout(PATIENCE);
    assert_eq!(
        account
            .deposit(Int64Value { value: 5 })
            .await
            .expect("deposit")
            .value,
        5
    );
    proxy.cut.send_replace(true);
    let started = std::time::Instant::now();
    let error = account
        .deposit(Int64Value { value: 1 })
        .await
        .expect_err("the database does not answer");
    assert_eq!(error.code(), "STORAGE_ERROR", "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "failed only after {:?}",
        started.elapsed()
    );
    proxy.cut.send_replace(false);
    let balance = Arc::new(std::sync::atomic::AtomicI64::new(0));
    wait_until("calls go on once the database answers", PATIENCE, || {
        let (account, balance) = (account.clone(), balance.clone());
        async move {
            match account.deposit(Int64Value { value: 1 }).await {
                Ok(total) => {
                    balance.store(total.value, Ordering::SeqCst);
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    let balance = balance.load(Ordering::SeqCst);
    assert_eq!(
        balance, 6,
        "the unanswered deposit never reached the database"
    );
    node.shutdown().await;
}

/// A PostgreSQL batch with a refused write answers exactly which writes
/// landed: a write that landed is reported so even when a newer owner
/// has claimed its row by the time the batch is answered (here a trigger
/// raises the row's epoch right after the write).
#[tokio::test]
async fn postgres_reports_a_landed_write_as_landed_beside_a_refused_one() {
    use sqlx::Connection as _;
    let storage = postgres().await;
    let kind = unique_type("landed").to_lowercase();
    let mut admin = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("connect");
    let function = format!("{kind}_bump");
    for statement in [
        format!(
            "CREATE FUNCTION {function}() RETURNS trigger AS $$ BEGIN \
             UPDATE goverse_objects SET epoch = epoch + 100 \
             WHERE object_type = NEW.object_type AND object_id = NEW.object_id; \
             RETURN NULL; END $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER {function} AFTER INSERT OR UPDATE ON goverse_objects FOR EACH ROW \
             WHEN (NEW.object_type = '{kind}' AND NEW.object_id = 'landed' AND pg_trigger_depth() < 1) \
             EXECUTE FUNCTION {function}()"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("trigger");
    }
    storage
        .save(&kind, "stale", b"{}", Fence { epoch: 5 })
        .await
        .expect("a newer owner wrote first");
    for with_calls in [false, true] {
        let call =
            |id: &str| with_calls.then(|| record(id, "Deposit", CallOutcome::Response(vec![])));
        let results = storage
            .save_batch(&[
                write(&kind, "landed", 1, call("c1")),
                write(&kind, "stale", 2, call("c2")),
            ])
            .await;
        let codes = outcome_codes(&results);
        assert_eq!(codes, ["OK", "STALE_OWNER"], "with calls: {with_calls}");
        storage
            .delete(
                &kind,
                "landed",
                Fence {
                    epoch: u64::MAX >> 2,
                },
            )
            .await
            .expect("reset");
    }
    for statement in [
        format!("DROP TRIGGER {function} ON goverse_objects"),
        format!("DROP FUNCTION {function}()"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("drop");
    }
}
