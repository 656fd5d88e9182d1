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

use super::{CallRecord, Claim, Fence, StateWrite, Storage, StoredState};
use crate::error::{Error, Result};
use crate::object::BoxFuture;

/// `inner`, with each operation failing after `limit`.
pub(crate) struct Bounded {
    inner: Arc<dyn Storage>,
    limit: Duration,
}

impl Bounded {
    pub(crate) fn new(inner: Arc<dyn Storage>, limit: Duration) -> Self {
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
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(self.bound("loading state", self.inner.load(type_name, id)))
    }

    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.bound("saving state", self.inner.save(type_name, id, data, fence)))
    }

    fn save_batch<'a>(&'a self, writes: &'a [StateWrite]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(self.bound_each(
            "saving a batch of states",
            writes.len(),
            self.inner.save_batch(writes),
        ))
    }

    fn concurrent_batches(&self) -> usize {
        self.inner.concurrent_batches()
    }

    fn load_call<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>>> {
        Box::pin(self.bound(
            "reading a reliable call",
            self.inner.load_call(type_name, id, call_id),
        ))
    }

    fn purge_calls(&self, age: Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.bound("purging reliable calls", self.inner.purge_calls(age)))
    }

    fn purge_tombstones(&self, age: Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.bound("purging tombstones", self.inner.purge_tombstones(age)))
    }

    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.bound("claiming", self.inner.claim(type_name, id, fence)))
    }

    fn claim_and_load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(self.bound("claiming", self.inner.claim_and_load(type_name, id, fence)))
    }

    fn claim_batch<'a>(
        &'a self,
        claims: &'a [Claim],
    ) -> BoxFuture<'a, Vec<Result<Option<StoredState>>>> {
        Box::pin(self.bound_each(
            "claiming a batch",
            claims.len(),
            self.inner.claim_batch(claims),
        ))
    }

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.bound("deleting", self.inner.delete(type_name, id, fence)))
    }
}
