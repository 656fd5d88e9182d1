//! What the SQL backends share: their migrations, the schema check, and
//! turning database errors into goverse's.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::error::Error;

/// The schema version this code needs.
#[cfg(feature = "postgres")]
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// The names of the migrations, in order; version `n` is the `n`th.
const MIGRATIONS: [&str; 3] = ["objects", "reliable_calls", "call_callers"];

/// The migrations of one backend, embedded in the binary: the SQL of each
/// of [`MIGRATIONS`] in its dialect.
pub(crate) fn migrator(sql: [&'static str; 3]) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .zip(sql)
        .zip(1..)
        .map(|((name, sql), version)| {
            Migration::new(
                version,
                Cow::Borrowed(*name),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// A reliable-call record as read back: method, response, error code,
/// message and caller.
pub(crate) type CallRow = (
    String,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    String,
);

/// Turns a stored row into a [`CallRecord`](super::CallRecord).
pub(crate) fn call_from_row(call_id: &str, row: CallRow) -> super::CallRecord {
    let (method, response, code, message, caller) = row;
    let outcome = match code {
        Some(code) => super::CallOutcome::Error {
            code,
            message: message.unwrap_or_default(),
        },
        None => super::CallOutcome::Response(response.unwrap_or_default()),
    };
    super::CallRecord {
        call_id: call_id.into(),
        method,
        outcome,
        caller,
    }
}

/// The columns of a record to write: response, error code, error message.
pub(crate) fn call_columns(
    outcome: &super::CallOutcome,
) -> (Option<&[u8]>, Option<&str>, Option<&str>) {
    match outcome {
        super::CallOutcome::Response(body) => (Some(body), None, None),
        super::CallOutcome::Error { code, message } => (None, Some(code), Some(message)),
    }
}

/// A database failure, with what was being done.
pub(crate) fn failed(doing: &str, error: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{doing}: {error}"))
}

/// The error for a schema that is missing or older than the code.
#[cfg(feature = "postgres")]
pub(crate) fn schema_error(found: Option<i64>) -> Error {
    match found {
        None | Some(0) => Error::Storage(
            "the goverse schema is missing: apply the migrations with `goverse migrate` \
             (or `migrate: true` in the node file, `PostgresOptions::migrate(true)` in code)"
                .into(),
        ),
        Some(version) => Error::Storage(format!(
            "the goverse schema is at version {version} but this code needs {SCHEMA_VERSION}: \
             apply the migrations with `goverse migrate` (or `migrate: true` in the node file, \
             `PostgresOptions::migrate(true)` in code)"
        )),
    }
}

/// Epochs are `u64` in goverse and `BIGINT` in SQL; they never get near
/// the limit, but a bad row must not wrap.
pub(crate) fn epoch_to_sql(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

pub(crate) fn epoch_from_sql(epoch: i64) -> u64 {
    u64::try_from(epoch).unwrap_or(0)
}

/// A `(data, epoch)` row as the state it stores.
pub(crate) fn stored((data, epoch): (String, i64)) -> super::StoredState {
    super::StoredState {
        data: data.into_bytes(),
        epoch: epoch_from_sql(epoch),
    }
}

/// The statements a backend runs, in its dialect.
pub(crate) struct Statements {
    /// `(data, epoch)` of one object: `$1` type, `$2` id.
    pub(crate) load: &'static str,
    /// Insert or update, only if the stored epoch is not newer: `$1` type,
    /// `$2` id, `$3` data, `$4` epoch.
    pub(crate) save: &'static str,
    /// Delete, only if the stored epoch is not newer: `$1` type, `$2` id,
    /// `$3` epoch.
    pub(crate) delete: &'static str,
    /// The stored epoch of one object: `$1` type, `$2` id.
    pub(crate) epoch: &'static str,
    /// Raise the stored epoch to `$3` if it is older, or store a row
    /// holding no state at `$3` if there is none: `$1` type, `$2` id.
    /// Returns `(data, epoch)` of the row when it wrote one.
    pub(crate) claim: &'static str,
    /// A reliable call's [`CallRow`]: `$1` type, `$2` id, `$3` call id.
    pub(crate) load_call: &'static str,
    /// Delete the reliable-call records written before the age `$1`
    /// (seconds on PostgreSQL, an SQLite time shift on SQLite).
    pub(crate) purge_calls: &'static str,
    /// Delete the rows holding no state written before the age `$1`
    /// (seconds on PostgreSQL, an SQLite time shift on SQLite).
    pub(crate) purge_tombstones: &'static str,
}

/// Implements [`Storage`](super::Storage) for a backend holding a pool of
/// one sqlx database type and its [`Statements`].
macro_rules! sql_storage {
    ($backend:ty, $statements:expr) => {
        impl $backend {
            async fn stored_epoch(
                &self,
                type_name: &str,
                id: &str,
            ) -> crate::error::Result<Option<u64>> {
                let epoch: Option<i64> = sqlx::query_scalar($statements.epoch)
                    .bind(type_name)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("reading an epoch", e))?;
                Ok(epoch.map($crate::storage::sql::epoch_from_sql))
            }

            /// The error for a write refused by fencing.
            async fn refused(
                &self,
                type_name: &str,
                id: &str,
                fence: $crate::storage::Fence,
            ) -> crate::error::Error {
                match self.stored_epoch(type_name, id).await {
                    Ok(current) => crate::error::Error::StaleOwner {
                        target: format!("{type_name}/{id}"),
                        epoch: fence.epoch,
                        current: current.unwrap_or_default(),
                    },
                    Err(error) => error,
                }
            }
        }

        impl $crate::storage::Storage for $backend {
            async fn load(
                &self,
                type_name: &str,
                id: &str,
            ) -> crate::error::Result<Option<$crate::storage::StoredState>> {
                let row: Option<(String, i64)> = sqlx::query_as($statements.load)
                    .bind(type_name)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("loading state", e))?;
                Ok(row.map($crate::storage::sql::stored))
            }

            async fn save(
                &self,
                type_name: &str,
                id: &str,
                data: &[u8],
                fence: $crate::storage::Fence,
            ) -> crate::error::Result<()> {
                let text = std::str::from_utf8(data).map_err(|_| {
                    crate::error::Error::Storage(format!(
                        "the state of {type_name}/{id} is not UTF-8 JSON"
                    ))
                })?;
                let written = sqlx::query($statements.save)
                    .bind(type_name)
                    .bind(id)
                    .bind(text)
                    .bind($crate::storage::sql::epoch_to_sql(fence.epoch))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("saving state", e))?
                    .rows_affected();
                if written == 0 {
                    return Err(self.refused(type_name, id, fence).await);
                }
                Ok(())
            }

            async fn save_batch(
                &self,
                writes: &[$crate::storage::StateWrite],
            ) -> Vec<crate::error::Result<()>> {
                self.save_all(writes).await
            }

            fn concurrent_batches(&self) -> usize {
                self.batches_in_flight()
            }

            async fn claim_batch(
                &self,
                claims: &[$crate::storage::Claim],
            ) -> Vec<crate::error::Result<Option<$crate::storage::StoredState>>> {
                self.claim_all(claims).await
            }

            async fn load_call(
                &self,
                type_name: &str,
                id: &str,
                call_id: &str,
            ) -> crate::error::Result<Option<$crate::storage::CallRecord>> {
                let row: Option<$crate::storage::sql::CallRow> =
                    sqlx::query_as($statements.load_call)
                        .bind(type_name)
                        .bind(id)
                        .bind(call_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| $crate::storage::sql::failed("reading a reliable call", e))?;
                Ok(row.map(|row| $crate::storage::sql::call_from_row(call_id, row)))
            }

            async fn purge_calls(&self, age: std::time::Duration) -> crate::error::Result<u64> {
                self.purge_older_than($statements.purge_calls, age).await
            }

            async fn purge_tombstones(
                &self,
                age: std::time::Duration,
            ) -> crate::error::Result<u64> {
                self.purge_older_than($statements.purge_tombstones, age)
                    .await
            }

            async fn claim(
                &self,
                type_name: &str,
                id: &str,
                fence: $crate::storage::Fence,
            ) -> crate::error::Result<()> {
                sqlx::query($statements.claim)
                    .bind(type_name)
                    .bind(id)
                    .bind($crate::storage::sql::epoch_to_sql(fence.epoch))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("claiming an object", e))?;
                Ok(())
            }

            async fn claim_and_load(
                &self,
                type_name: &str,
                id: &str,
                fence: $crate::storage::Fence,
            ) -> crate::error::Result<Option<$crate::storage::StoredState>> {
                let claimed: Option<(String, i64)> = sqlx::query_as($statements.claim)
                    .bind(type_name)
                    .bind(id)
                    .bind($crate::storage::sql::epoch_to_sql(fence.epoch))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("claiming an object", e))?;
                match claimed {
                    Some(row) => Ok(Some($crate::storage::sql::stored(row))),
                    // Stored at our epoch or a newer one already.
                    None => $crate::storage::Storage::load(self, type_name, id).await,
                }
            }

            async fn delete(
                &self,
                type_name: &str,
                id: &str,
                fence: $crate::storage::Fence,
            ) -> crate::error::Result<()> {
                let deleted = sqlx::query($statements.delete)
                    .bind(type_name)
                    .bind(id)
                    .bind($crate::storage::sql::epoch_to_sql(fence.epoch))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::storage::sql::failed("deleting state", e))?
                    .rows_affected();
                if deleted == 0 && self.stored_epoch(type_name, id).await?.is_some() {
                    // A row is there, written at a newer epoch.
                    return Err(self.refused(type_name, id, fence).await);
                }
                Ok(())
            }
        }
    };
}

pub(crate) use sql_storage;
