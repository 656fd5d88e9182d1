use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{CallRecord, Fence, StateWrite, Storage, StoredState};
use crate::error::{Error, Result};
use crate::sync::MutexExt;

/// Keeps state in memory: for tests and for objects that need no durability.
///
/// Applies the same fencing rule as the durable backends, and keeps
/// reliable-call records the same way.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    tables: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    objects: HashMap<(String, String), StoredState>,
    /// When each row holding no state was last written.
    no_state_since: HashMap<(String, String), Instant>,
    /// `(type, id, call id)` to the record and when it was written.
    calls: HashMap<(String, String, String), (CallRecord, Instant)>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.locked()
    }

    fn write(&self, type_name: &str, id: &str, fence: Fence, data: Option<&[u8]>) -> Result<()> {
        Self::write_in(&mut self.tables(), type_name, id, fence, data)
    }

    fn write_in(
        tables: &mut Tables,
        type_name: &str,
        id: &str,
        fence: Fence,
        data: Option<&[u8]>,
    ) -> Result<()> {
        let Tables {
            objects,
            no_state_since,
            ..
        } = tables;
        let key = (type_name.to_string(), id.to_string());
        if let Some(stored) = objects.get(&key)
            && stored.epoch > fence.epoch
        {
            return Err(Error::StaleOwner {
                target: format!("{type_name}/{id}"),
                epoch: fence.epoch,
                current: stored.epoch,
            });
        }
        if data == Some(super::NO_STATE) {
            no_state_since.insert(key.clone(), Instant::now());
        } else {
            no_state_since.remove(&key);
        }
        match data {
            Some(data) => {
                objects.insert(
                    key,
                    StoredState {
                        data: data.to_vec(),
                        epoch: fence.epoch,
                    },
                );
            }
            None => {
                objects.remove(&key);
            }
        }
        Ok(())
    }
}

impl Storage for MemoryStorage {
    async fn claim(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        let mut tables = self.tables();
        let key = (type_name.to_string(), id.to_string());
        let Tables {
            objects,
            no_state_since,
            ..
        } = &mut *tables;
        let stored = objects.entry(key.clone()).or_insert_with(|| StoredState {
            data: super::NO_STATE.to_vec(),
            epoch: fence.epoch,
        });
        if stored.epoch <= fence.epoch && stored.data == super::NO_STATE {
            no_state_since.insert(key, Instant::now());
        }
        stored.epoch = stored.epoch.max(fence.epoch);
        Ok(())
    }

    async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
        let found = self
            .tables()
            .objects
            .get(&(type_name.to_string(), id.to_string()))
            .cloned();
        Ok(found)
    }

    async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
        self.write(type_name, id, fence, Some(data))
    }

    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
        let mut tables = self.tables();
        let tables = &mut *tables;
        writes
            .iter()
            .map(|write| {
                Self::write_in(
                    tables,
                    write.type_name,
                    &write.id,
                    write.fence,
                    Some(&write.data),
                )?;
                if let Some(call) = &write.call {
                    let key = (
                        write.type_name.to_string(),
                        write.id.to_string(),
                        call.call_id.to_string(),
                    );
                    tables
                        .calls
                        .entry(key)
                        .or_insert_with(|| (call.clone(), Instant::now()));
                }
                Ok(())
            })
            .collect()
    }

    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> Result<Option<CallRecord>> {
        let key = (type_name.to_string(), id.to_string(), call_id.to_string());
        let found = self
            .tables()
            .calls
            .get(&key)
            .map(|(record, _)| record.clone());
        Ok(found)
    }

    async fn purge_calls(&self, age: Duration) -> Result<u64> {
        let mut tables = self.tables();
        let before = tables.calls.len();
        tables.calls.retain(|_, (_, at)| at.elapsed() < age);
        let purged = (before - tables.calls.len()) as u64;
        Ok(purged)
    }

    async fn purge_tombstones(&self, age: Duration) -> Result<u64> {
        let mut tables = self.tables();
        let Tables {
            objects,
            no_state_since,
            ..
        } = &mut *tables;
        let mut purged = 0;
        no_state_since.retain(|key, since| {
            if since.elapsed() < age {
                return true;
            }
            if objects.get(key).is_some_and(|s| s.data == super::NO_STATE) {
                objects.remove(key);
                purged += 1;
            }
            false
        });
        Ok(purged)
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.write(type_name, id, fence, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_owner_cannot_overwrite_newer_state() {
        let store = MemoryStorage::new();
        store
            .save("T", "a", b"v1", Fence { epoch: 2 })
            .await
            .expect("save at epoch 2");
        let error = store
            .save("T", "a", b"old", Fence { epoch: 1 })
            .await
            .unwrap_err();
        assert_eq!(error.code(), "STALE_OWNER");
        let error = store
            .delete("T", "a", Fence { epoch: 1 })
            .await
            .unwrap_err();
        assert_eq!(error.code(), "STALE_OWNER");
        let stored = store.load("T", "a").await.expect("load").expect("present");
        assert_eq!(
            stored,
            StoredState {
                data: b"v1".to_vec(),
                epoch: 2
            }
        );
        store
            .save("T", "a", b"v2", Fence { epoch: 3 })
            .await
            .expect("newer owner writes");
    }

    #[tokio::test]
    async fn deleting_what_was_never_saved_is_fine() {
        let store = MemoryStorage::new();
        store
            .delete("T", "never", Fence { epoch: 1 })
            .await
            .expect("idempotent delete");
        assert!(store.load("T", "never").await.expect("load").is_none());
    }
}
