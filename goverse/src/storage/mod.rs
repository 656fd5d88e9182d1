//! The `Storage` seam: where persistent objects keep their state.
//!
//! Every write carries a [`Fence`]: the writer's shard-ownership epoch. A
//! backend rejects a write whose epoch is older than the one that last
//! wrote the object, so an owner that lost its shard (a partition, a pause)
//! cannot overwrite newer state.

mod committer;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub(crate) use committer::Committer;
pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStorage};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStorage;

use crate::error::Result;
use crate::object::BoxFuture;

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
}

/// A place to load, save and delete object state.
pub trait Storage: Send + Sync + 'static {
    /// Loads the state of `type_name/id`, or `None` if it was never saved.
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>>;

    /// Saves the state of `type_name/id`.
    ///
    /// # Errors
    ///
    /// `STALE_OWNER` when `fence` is older than the stored epoch; `STORAGE_ERROR`
    /// when the backend fails.
    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;

    /// Saves several objects' states at once, as one transaction where the
    /// backend has them (group commit): one durable write for the batch.
    /// Each write is fenced on its own; the result at index `i` is that of
    /// `writes[i]`.
    ///
    /// The default saves them one by one.
    fn save_batch<'a>(&'a self, writes: &'a [StateWrite]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                results.push(
                    self.save(write.type_name, &write.id, &write.data, write.fence)
                        .await,
                );
            }
            results
        })
    }

    /// Raises the stored epoch of `type_name/id` to `fence` if it is older,
    /// leaving the state as it is: a new owner does this before it loads an
    /// object, so a stale owner's later writes are refused. An object never
    /// saved is left alone.
    ///
    /// The default loads and saves the state back, which is not atomic;
    /// backends override it with one conditional write.
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the backend fails.
    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.load(type_name, id).await? {
                Some(stored) if stored.epoch < fence.epoch => {
                    match self.save(type_name, id, &stored.data, fence).await {
                        // Someone newer got there first: nothing to claim.
                        Err(crate::error::Error::StaleOwner { .. }) => Ok(()),
                        other => other,
                    }
                }
                _ => Ok(()),
            }
        })
    }

    /// Deletes the state of `type_name/id`. Deleting what was never saved is not an error.
    ///
    /// # Errors
    ///
    /// As for [`save`](Storage::save).
    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;
}

/// A shared store: several nodes in one process (tests, tools) can use one.
impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn load<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredState>>> {
        (**self).load(type_name, id)
    }

    fn save<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        data: &'a [u8],
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).save(type_name, id, data, fence)
    }

    fn save_batch<'a>(&'a self, writes: &'a [StateWrite]) -> BoxFuture<'a, Vec<Result<()>>> {
        (**self).save_batch(writes)
    }

    fn claim<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).claim(type_name, id, fence)
    }

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).delete(type_name, id, fence)
    }
}
