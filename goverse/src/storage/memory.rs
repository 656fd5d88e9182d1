use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{Fence, Storage, StoredState};
use crate::error::{Error, Result};
use crate::object::BoxFuture;

/// Keeps state in memory: for tests and for objects that need no durability.
///
/// Applies the same fencing rule as the durable backends.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<HashMap<(String, String), StoredState>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self, type_name: &str, id: &str, fence: Fence, data: Option<&[u8]>) -> Result<()> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
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
    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stored) = objects.get_mut(&(type_name.to_string(), id.to_string()))
            && stored.epoch < fence.epoch
        {
            stored.epoch = fence.epoch;
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        let found = objects
            .get(&(type_name.to_string(), id.to_string()))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(self.write(
            type_name,
            id,
            fence,
            Some(data),
        )))
    }

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(self.write(type_name, id, fence, None)))
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
