//! Listings of "State and persistence" (`book/src/state.md`).

use goverse::prelude::*;

// ANCHOR: account
/// A bank account whose balance outlives its activations.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
    /// Added after rows were written without it.
    #[serde(default)]
    label: String,
}

#[goverse::object(persistent)]
impl Account {
    /// Adds `request.value` to the balance and returns the new balance.
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.balance += request.value;
        Ok(Int64Value { value: self.balance })
    }
}
// ANCHOR_END: account

/// Starts a node that keeps its accounts in the SQLite file at `path`.
#[rustfmt::skip]
pub async fn start_on_sqlite(path: &std::path::Path) -> goverse::Result<Node> {
// ANCHOR: sqlite
use goverse::storage::SqliteStorage;

let node = Node::builder()
    .register::<Account>()
    .storage(SqliteStorage::open(path).await?)
    .start()
    .await?;
// ANCHOR_END: sqlite
Ok(node)
}

/// Connects to the PostgreSQL the url names. Needs that database.
#[rustfmt::skip]
pub async fn connect_to_postgres() -> goverse::Result<goverse::storage::PostgresStorage> {
// ANCHOR: postgres
use goverse::storage::{PostgresOptions, PostgresStorage};

let storage = PostgresStorage::connect(
    "postgres://goverse:secret@10.0.0.2:5432/goverse",
    PostgresOptions::default().max_connections(16).migrate(true),
)
.await?;
// ANCHOR_END: postgres
Ok(storage)
}

/// Makes three deposits on `account`, and returns their outcomes: on a
/// storage that fails the second write, 5, `STORAGE_ERROR` and 6.
#[rustfmt::skip]
pub async fn three_deposits(
    account: &AccountClient,
) -> goverse::Result<(Int64Value, goverse::Result<Int64Value>, Int64Value)> {
// ANCHOR: failed_write
let first = account.deposit(Int64Value { value: 5 }).await?;  // 5, durable
let second = account.deposit(Int64Value { value: 1 }).await;  // Err(STORAGE_ERROR): the write failed
let third = account.deposit(Int64Value { value: 1 }).await?;  // 6, not 7
// ANCHOR_END: failed_write
Ok((first, second, third))
}

/// A bar tab: a running total that is saved at most a second after it
/// changes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tab {
    total: i64,
}

// ANCHOR: write_behind
#[goverse::object(persistent, write_behind = "1s")]
impl Tab {
    /// Adds `request.value` to the total and returns the new total.
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }
}
// ANCHOR_END: write_behind

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use goverse::storage::{Fence, MemoryStorage, Storage, StoredState};

    use super::*;

    /// A memory storage whose second save fails.
    struct SecondSaveFails {
        inner: MemoryStorage,
        saves: AtomicUsize,
    }

    impl Storage for SecondSaveFails {
        async fn load(&self, type_name: &str, id: &str) -> goverse::Result<Option<StoredState>> {
            self.inner.load(type_name, id).await
        }

        async fn save(
            &self,
            type_name: &str,
            id: &str,
            data: &[u8],
            fence: Fence,
        ) -> goverse::Result<()> {
            if self.saves.fetch_add(1, Ordering::SeqCst) == 1 {
                return Err(goverse::Error::Storage("the disk is full".into()));
            }
            self.inner.save(type_name, id, data, fence).await
        }

        async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> goverse::Result<()> {
            self.inner.delete(type_name, id, fence).await
        }
    }

    #[tokio::test]
    async fn a_failed_write_loses_its_change_and_nothing_acknowledged() {
        let storage = SecondSaveFails { inner: MemoryStorage::new(), saves: AtomicUsize::new(0) };
        let node =
            Node::builder().register::<Account>().storage(storage).start().await.expect("a node");
        let account = AccountClient::new(&node, "alice");
        let (first, second, third) = three_deposits(&account).await.expect("the first and third");
        assert_eq!(first.value, 5);
        assert_eq!(second.expect_err("the second write fails").code(), "STORAGE_ERROR");
        assert_eq!(third.value, 6, "not 7: the failed call's change is gone");
        node.shutdown().await;
    }

    #[tokio::test]
    async fn state_outlives_the_node_and_old_rows_load_without_the_new_field() {
        let storage = Arc::new(MemoryStorage::new());
        // A row written before `label` existed.
        storage
            .save("Account", "bob", br#"{"balance": 40}"#, Fence { epoch: 1 })
            .await
            .expect("saved");

        let node = Node::builder()
            .register::<Account>()
            .storage(Arc::clone(&storage))
            .start()
            .await
            .expect("a node");
        let bob = AccountClient::new(&node, "bob");
        assert_eq!(bob.deposit(Int64Value { value: 2 }).await.expect("deposit").value, 42);
        node.shutdown().await;

        let stored = storage.load("Account", "bob").await.expect("loaded").expect("a row");
        let account: Account = serde_json_from(&stored.data);
        assert_eq!((account.balance, account.label.as_str()), (42, ""));
    }

    #[tokio::test]
    async fn an_sqlite_file_keeps_accounts_across_nodes() {
        let path =
            std::env::temp_dir().join(format!("goverse-book-state-{}.db", std::process::id()));
        let remove = || {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        };
        remove();
        for expected in [5, 10] {
            let node = start_on_sqlite(&path).await.expect("a node");
            let carol = AccountClient::new(&node, "carol");
            assert_eq!(
                carol.deposit(Int64Value { value: 5 }).await.expect("deposit").value,
                expected
            );
            node.shutdown().await;
        }
        remove();
    }

    #[tokio::test]
    async fn a_write_behind_tab_is_saved_by_the_shutdown() {
        let storage = Arc::new(MemoryStorage::new());
        let node = Node::builder()
            .register::<Tab>()
            .storage(Arc::clone(&storage))
            .start()
            .await
            .expect("a node");
        let tab = TabClient::new(&node, "t1");
        for (add, total) in [(3, 3), (4, 7)] {
            assert_eq!(tab.add(Int64Value { value: add }).await.expect("add").value, total);
        }
        node.shutdown().await;
        let stored = storage.load("Tab", "t1").await.expect("loaded").expect("a row");
        let tab: Tab = serde_json_from(&stored.data);
        assert_eq!(tab.total, 7);
    }

    /// The state a row holds: the JSON of its serde form.
    fn serde_json_from<T: serde::de::DeserializeOwned>(data: &[u8]) -> T {
        serde_json::from_slice(data).expect("the state's JSON")
    }
}
