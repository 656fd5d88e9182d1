//! The `Storage` seam: where persistent objects keep their state.
//!
//! Every write carries a [`Fence`]: the writer's shard-ownership epoch. A
//! backend rejects a write whose epoch is older than the one that last
//! wrote the object, so an owner that lost its shard (a partition, a pause)
//! cannot overwrite newer state.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

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

    fn delete<'a>(
        &'a self,
        type_name: &'a str,
        id: &'a str,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).delete(type_name, id, fence)
    }
}
