//! A time bound on every storage operation of a node: a database that
//! stops answering (a blackholed network, a hung server) fails the calls
//! waiting on it with `STORAGE_ERROR` within the bound, instead of holding
//! their objects for as long as TCP takes to give up.
//!
//! A timed-out operation's future is dropped: the SQL backends then close
//! the connection it was using rather than reuse it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{CallRecord, Claim, ErasedStorage, Fence, StateWrite, Storage, StoredState};
use crate::error::{Error, Result};

/// `inner`, with each operation failing after `limit`.
pub(crate) struct Bounded {
    inner: Arc<dyn ErasedStorage>,
    limit: Duration,
}

impl Bounded {
    pub(crate) fn new(inner: Arc<dyn ErasedStorage>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    fn timed_out(&self, what: &str) -> Error {
        Error::Storage(format!(
            "{what} did not finish within {:?}: the storage does not answer",
            self.limit
        ))
    }

    async fn bound<T>(&self, what: &str, operation: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.limit, operation)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(what)))
    }

    async fn bound_each<T>(
        &self,
        what: &str,
        count: usize,
        operation: impl Future<Output = Vec<Result<T>>>,
    ) -> Vec<Result<T>> {
        match tokio::time::timeout(self.limit, operation).await {
            Ok(results) => results,
            Err(_) => (0..count).map(|_| Err(self.timed_out(what))).collect(),
        }
    }
}

impl Storage for Bounded {
    async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
        self.bound("loading state", self.inner.load(type_name, id))
            .await
    }

    async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
        self.bound("saving state", self.inner.save(type_name, id, data, fence))
            .await
    }

    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
        self.bound_each(
            "saving a batch of states",
            writes.len(),
            self.inner.save_batch(writes),
        )
        .await
    }

    fn concurrent_batches(&self) -> usize {
        self.inner.concurrent_batches()
    }

    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> Result<Option<CallRecord>> {
        self.bound(
            "reading a reliable call",
            self.inner.load_call(type_name, id, call_id),
        )
        .await
    }

    async fn purge_calls(&self, age: Duration) -> Result<u64> {
        self.bound("purging reliable calls", self.inner.purge_calls(age))
            .await
    }

    async fn purge_tombstones(&self, age: Duration) -> Result<u64> {
        self.bound("purging tombstones", self.inner.purge_tombstones(age))
            .await
    }

    async fn claim(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.bound("claiming", self.inner.claim(type_name, id, fence))
            .await
    }

    async fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> Result<Option<StoredState>> {
        self.bound("claiming", self.inner.claim_and_load(type_name, id, fence))
            .await
    }

    async fn claim_batch(&self, claims: &[Claim]) -> Vec<Result<Option<StoredState>>> {
        self.bound_each(
            "claiming a batch",
            claims.len(),
            self.inner.claim_batch(claims),
        )
        .await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.bound("deleting", self.inner.delete(type_name, id, fence))
            .await
    }
}
