//! The `Storage` seam: where persistent objects keep their state.
//!
//! Every write carries a [`Fence`]: the writer's shard-ownership epoch. A
//! backend rejects a write whose epoch is older than the one that last
//! wrote the object, so an owner that lost its shard (a partition, a pause)
//! cannot overwrite newer state.

mod bounded;
mod committer;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub(crate) use bounded::Bounded;
pub(crate) use committer::Committer;
pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStorage};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

use crate::error::Result;
use crate::future::BoxFuture;

/// The data of a row that holds no state: an owner's claim on an object
/// that was never saved. Loading it gives the object's `Default`.
pub const NO_STATE: &[u8] = b"null";

/// The ownership epoch a write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fence {
    /// Increases every time the object's shard changes owner.
    pub epoch: u64,
}

/// An object's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// The serialized state (JSON of the object's serde form).
    pub data: Vec<u8>,
    /// The epoch of the last write.
    pub epoch: u64,
}

/// One object's new state, as part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The object type's name.
    pub type_name: &'static str,
    /// The object id.
    pub id: std::sync::Arc<str>,
    /// The serialized state.
    pub data: Vec<u8>,
    /// The epoch the write is made under.
    pub fence: Fence,
    /// The reliable call whose turn made this state, to be recorded in the
    /// same transaction: if the state is written, so is the record, and if
    /// the write is refused, neither is.
    pub call: Option<CallRecord>,
}

/// A new owner's claim on an object before it loads it (see
/// [`Storage::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The object type's name.
    pub type_name: &'static str,
    /// The object id.
    pub id: std::sync::Arc<str>,
    /// The new owner's epoch.
    pub fence: Fence,
}

/// How a reliable call ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The method's response, protobuf-encoded.
    Response(Vec<u8>),
    /// The error the method returned.
    Error {
        /// Its stable code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// The record of one reliable call on one object: a retry with the same
/// call id gets this outcome back instead of running the method again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The caller's id for the call, unique per object.
    pub call_id: std::sync::Arc<str>,
    /// The rpc name of the method that ran.
    pub method: String,
    /// What it returned.
    pub outcome: CallOutcome,
    /// Who made it: `user:<id>` for a user a gate authenticated (directly
    /// or through the objects its call reached), `external` for a gate's
    /// unauthenticated client, empty for code on a node. A retry is
    /// answered from the record only for the same caller.
    pub caller: String,
}

/// The error of a backend that keeps no reliable-call records.
fn no_call_records() -> crate::error::Error {
    crate::error::Error::Storage("this storage does not record reliable calls".into())
}

/// A place to load, save and delete object state.
///
/// Implement its methods as `async fn`s; their futures must be `Send`.
/// Only `load`, `save` and `delete` are required; the others have
/// defaults, which a backend overrides where it can do better (one
/// transaction for a batch, one conditional statement for a claim,
/// reliable-call records).
pub trait Storage: Send + Sync + 'static {
    /// Loads the state of `type_name/id`, or `None` if it was never saved.
    fn load(
        &self,
        type_name: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredState>>> + Send;

    /// Saves the state of `type_name/id`.
    ///
    /// # Errors
    ///
    /// `STALE_OWNER` when `fence` is older than the stored epoch; `STORAGE_ERROR`
    /// when the backend fails.
    fn save(
        &self,
        type_name: &str,
        id: &str,
        data: &[u8],
        fence: Fence,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Saves several objects' states at once, as one transaction where the
    /// backend has them (group commit): one durable write for the batch.
    /// Each write is fenced on its own; the result at index `i` is that of
    /// `writes[i]`.
    ///
    /// A write carrying a [`CallRecord`] stores the record in the same
    /// transaction as the state, or neither.
    ///
    /// The default saves them one by one, and refuses writes that carry a
    /// call record (it cannot store both atomically).
    ///
    /// The node's committer never puts two writes to one object in
    /// batches that are in flight together, so calls may run concurrently
    /// up to [`Storage::concurrent_batches`].
    fn save_batch(&self, writes: &[StateWrite]) -> impl Future<Output = Vec<Result<()>>> + Send {
        async move {
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                if write.call.is_some() {
                    results.push(Err(no_call_records()));
                    continue;
                }
                results.push(
                    self.save(write.type_name, &write.id, &write.data, write.fence)
                        .await,
                );
            }
            results
        }
    }

    /// How many [`Storage::save_batch`] calls the node's committer may have
    /// in flight at once (default 1). A database that commits concurrent
    /// transactions in parallel gains from 2: one batch is written while
    /// the writers of the other run their next turns.
    fn concurrent_batches(&self) -> usize {
        1
    }

    /// The record of reliable call `call_id` on `type_name/id`, if one was
    /// stored (and not yet purged).
    ///
    /// The default has none to give: it fails with `STORAGE_ERROR`, so a
    /// reliable call on a backend without records is never run unprotected.
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> impl Future<Output = Result<Option<CallRecord>>> + Send {
        let _ = (type_name, id, call_id);
        std::future::ready(Err(no_call_records()))
    }

    /// Deletes the reliable-call records older than `age`; returns how many
    /// went. A retry of a purged call runs the method again.
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn purge_calls(&self, age: std::time::Duration) -> impl Future<Output = Result<u64>> + Send {
        let _ = age;
        std::future::ready(Ok(0))
    }

    /// Deletes the rows holding no state ([`NO_STATE`]: the tombstones of
    /// deleted objects, and the rows of claims) last written longer than
    /// `age` ago; returns how many went. While such a row exists, a stale
    /// owner's write of the object is refused; past the retention a stale
    /// owner is assumed gone. A backend that stores no timestamps keeps
    /// them (the default).
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn purge_tombstones(
        &self,
        age: std::time::Duration,
    ) -> impl Future<Output = Result<u64>> + Send {
        let _ = age;
        std::future::ready(Ok(0))
    }

    /// Raises the stored epoch of `type_name/id` to `fence` if it is older,
    /// leaving the state as it is: a new owner does this before it loads an
    /// object, so a stale owner's later writes are refused. An object never
    /// saved gets a row holding no state ([`NO_STATE`], JSON `null`) at
    /// `fence`'s epoch, so that a stale owner's first write of it is refused
    /// as well.
    ///
    /// The default loads and saves the state back, which is not atomic;
    /// backends override it with one conditional write.
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn claim(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            match self.load(type_name, id).await? {
                Some(stored) if stored.epoch >= fence.epoch => Ok(()),
                stored => {
                    let data = stored.map_or(NO_STATE.to_vec(), |s| s.data);
                    match self.save(type_name, id, &data, fence).await {
                        // Someone newer got there first: nothing to claim.
                        Err(crate::error::Error::StaleOwner { .. }) => Ok(()),
                        other => other,
                    }
                }
            }
        }
    }

    /// Claims `type_name/id` for `fence` (see [`Storage::claim`]) and
    /// returns the row as it is after the claim. The default claims, then
    /// loads; the SQL backends do both in one statement when the claim
    /// writes.
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> impl Future<Output = Result<Option<StoredState>>> + Send {
        async move {
            self.claim(type_name, id, fence).await?;
            self.load(type_name, id).await
        }
    }

    /// Claims several objects at once, as one transaction where the backend
    /// has them (the node's committer batches the claims of concurrent
    /// activations, as it batches writes). The answer at index `i` is
    /// [`Storage::claim_and_load`]'s for `claims[i]`; the committer never
    /// puts one object in two batches in flight.
    ///
    /// The default claims them one by one.
    fn claim_batch(
        &self,
        claims: &[Claim],
    ) -> impl Future<Output = Vec<Result<Option<StoredState>>>> + Send {
        claim_each(self, claims)
    }

    /// Deletes the state of `type_name/id`. Deleting what was never saved is not an error.
    ///
    /// # Errors
    ///
    /// As for [`save`](Storage::save).
    fn delete(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// A shared store: several nodes in one process (tests, tools) can use one.
impl<S: Storage> Storage for std::sync::Arc<S> {
    async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
        (**self).load(type_name, id).await
    }

    async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
        (**self).save(type_name, id, data, fence).await
    }

    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
        (**self).save_batch(writes).await
    }

    fn concurrent_batches(&self) -> usize {
        (**self).concurrent_batches()
    }

    async fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> Result<Option<StoredState>> {
        (**self).claim_and_load(type_name, id, fence).await
    }

    async fn claim_batch(&self, claims: &[Claim]) -> Vec<Result<Option<StoredState>>> {
        (**self).claim_batch(claims).await
    }

    async fn claim(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        (**self).claim(type_name, id, fence).await
    }

    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> Result<Option<CallRecord>> {
        (**self).load_call(type_name, id, call_id).await
    }

    async fn purge_calls(&self, age: std::time::Duration) -> Result<u64> {
        (**self).purge_calls(age).await
    }

    async fn purge_tombstones(&self, age: std::time::Duration) -> Result<u64> {
        (**self).purge_tombstones(age).await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        (**self).delete(type_name, id, fence).await
    }
}

/// [`Storage`] behind a pointer: the node keeps any one as
/// `Arc<dyn ErasedStorage>`, boxing each call's future.
pub(crate) trait ErasedStorage: Send + Sync + 'static {
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>>;
    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;
    fn save_batch<'a>(&'a self, writes: &'a [StateWrite]) -> BoxFuture<'a, Vec<Result<()>>>;
    fn concurrent_batches(&self) -> usize;
    fn load_call<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>>>;
    fn purge_calls(&self, age: std::time::Duration) -> BoxFuture<'_, Result<u64>>;
    fn purge_tombstones(&self, age: std::time::Duration) -> BoxFuture<'_, Result<u64>>;
    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;
    fn claim_and_load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<Option<StoredState>>>;
    fn claim_batch<'a>(
        &'a self,
        claims: &'a [Claim],
    ) -> BoxFuture<'a, Vec<Result<Option<StoredState>>>>;
    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<S: Storage> ErasedStorage for S {
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(Storage::load(self, type_name, id))
    }

    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Storage::save(self, type_name, id, data, fence))
    }

    fn save_batch<'a>(&'a self, writes: &'a [StateWrite]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(Storage::save_batch(self, writes))
    }

    fn concurrent_batches(&self) -> usize {
        Storage::concurrent_batches(self)
    }

    fn load_call<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>>> {
        Box::pin(Storage::load_call(self, type_name, id, call_id))
    }

    fn purge_calls(&self, age: std::time::Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Storage::purge_calls(self, age))
    }

    fn purge_tombstones(&self, age: std::time::Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(Storage::purge_tombstones(self, age))
    }

    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Storage::claim(self, type_name, id, fence))
    }

    fn claim_and_load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        Box::pin(Storage::claim_and_load(self, type_name, id, fence))
    }

    fn claim_batch<'a>(
        &'a self,
        claims: &'a [Claim],
    ) -> BoxFuture<'a, Vec<Result<Option<StoredState>>>> {
        Box::pin(Storage::claim_batch(self, claims))
    }

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Storage::delete(self, type_name, id, fence))
    }
}

/// Any [`Storage`], its type erased, shared by clones: what [`StorageFile::open`](crate::config::StorageFile::open)
/// returns, for storage chosen at run time.
#[derive(Clone)]
pub struct SharedStorage(std::sync::Arc<dyn ErasedStorage>);

impl SharedStorage {
    /// Erases `storage`'s type.
    pub fn new(storage: impl Storage) -> Self {
        Self(std::sync::Arc::new(storage))
    }

    /// The erased store, as the node keeps it.
    pub(crate) fn erased(&self) -> std::sync::Arc<dyn ErasedStorage> {
        self.0.clone()
    }
}

impl std::fmt::Debug for SharedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStorage")
    }
}

impl Storage for SharedStorage {
    async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
        self.0.load(type_name, id).await
    }

    async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
        self.0.save(type_name, id, data, fence).await
    }

    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
        self.0.save_batch(writes).await
    }

    fn concurrent_batches(&self) -> usize {
        self.0.concurrent_batches()
    }

    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> Result<Option<CallRecord>> {
        self.0.load_call(type_name, id, call_id).await
    }

    async fn purge_calls(&self, age: std::time::Duration) -> Result<u64> {
        self.0.purge_calls(age).await
    }

    async fn purge_tombstones(&self, age: std::time::Duration) -> Result<u64> {
        self.0.purge_tombstones(age).await
    }

    async fn claim(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.0.claim(type_name, id, fence).await
    }

    async fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> Result<Option<StoredState>> {
        self.0.claim_and_load(type_name, id, fence).await
    }

    async fn claim_batch(&self, claims: &[Claim]) -> Vec<Result<Option<StoredState>>> {
        self.0.claim_batch(claims).await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
        self.0.delete(type_name, id, fence).await
    }
}

/// Claims `claims` one by one, each with [`Storage::claim_and_load`].
pub(crate) async fn claim_each<S: Storage + ?Sized>(
    storage: &S,
    claims: &[Claim],
) -> Vec<Result<Option<StoredState>>> {
    let mut answers = Vec::with_capacity(claims.len());
    for claim in claims {
        answers.push(
            storage
                .claim_and_load(claim.type_name, &claim.id, claim.fence)
                .await,
        );
    }
    answers
}
