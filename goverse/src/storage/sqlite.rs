//! State in an SQLite file (feature `sqlite`): the embedded choice, so a
//! single node keeps its objects' state across restarts. Same table and
//! fencing as PostgreSQL; the state is JSON text.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::{self, Statements, sql_storage};
use crate::error::{Error, Result};

const STATEMENTS: Statements = Statements {
    load: "SELECT data, epoch FROM goverse_objects WHERE object_type = $1 AND object_id = $2",
    save: "INSERT INTO goverse_objects (object_type, object_id, data, epoch) VALUES ($1, $2, $3, $4) \
           ON CONFLICT (object_type, object_id) DO UPDATE \
           SET data = excluded.data, epoch = excluded.epoch, version = goverse_objects.version + 1, \
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
           WHERE goverse_objects.epoch <= excluded.epoch",
    delete: "DELETE FROM goverse_objects WHERE object_type = $1 AND object_id = $2 AND epoch <= $3",
    epoch: "SELECT epoch FROM goverse_objects WHERE object_type = $1 AND object_id = $2",
    claim: "INSERT INTO goverse_objects (object_type, object_id, data, epoch) VALUES ($1, $2, 'null', $3) \
            ON CONFLICT (object_type, object_id) DO UPDATE SET epoch = excluded.epoch, \
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
            WHERE goverse_objects.epoch < excluded.epoch RETURNING data, epoch",
    load_call: "SELECT method, response, error_code, error_message, caller FROM goverse_reliable_calls \
                WHERE object_type = $1 AND object_id = $2 AND call_id = $3",
    purge_calls: "DELETE FROM goverse_reliable_calls \
                  WHERE created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', $1)",
    purge_tombstones: "DELETE FROM goverse_objects \
                       WHERE data = 'null' AND updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', $1)",
};

/// Records a reliable call (a record already there is kept).
const RECORD_CALL: &str = "INSERT INTO goverse_reliable_calls \
     (object_type, object_id, call_id, method, response, error_code, error_message, caller) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";

/// Persistent state in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating it if needed) the database file at `path` and
    /// applies the schema migrations. Writes are durable when they return
    /// (write-ahead log, `synchronous = FULL`).
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| Error::Config(format!("sqlite: {e}")))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| sql::failed(&format!("opening {}", path.display()), e))?;
        sql::migrator([
            include_str!("../../migrations/sqlite/0001_objects.sql"),
            include_str!("../../migrations/sqlite/0002_reliable_calls.sql"),
            include_str!("../../migrations/sqlite/0003_call_callers.sql"),
        ])
        .run(&pool)
        .await
        .map_err(|e| sql::failed("migrating the schema", e))?;
        Ok(Self { pool })
    }
}

sql_storage!(SqliteStorage, STATEMENTS);

impl SqliteStorage {
    /// Every claim of a batch in one transaction: one durable commit.
    async fn claim_all(&self, claims: &[super::Claim]) -> Vec<Result<Option<super::StoredState>>> {
        let all_failed = |error: Error| claims.iter().map(|_| Err(error.clone())).collect();
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(error) => return all_failed(sql::failed("starting a transaction", error)),
        };
        let mut answers = Vec::with_capacity(claims.len());
        for claim in claims {
            let claimed: std::result::Result<Option<(String, i64)>, _> =
                sqlx::query_as(STATEMENTS.claim)
                    .bind(claim.type_name)
                    .bind(&*claim.id)
                    .bind(sql::epoch_to_sql(claim.fence.epoch))
                    .fetch_optional(&mut *tx)
                    .await;
            let row = match claimed {
                Ok(Some(row)) => Some(row),
                // Stored at this epoch or a newer one already: as it is.
                Ok(None) => match sqlx::query_as(STATEMENTS.load)
                    .bind(claim.type_name)
                    .bind(&*claim.id)
                    .fetch_optional(&mut *tx)
                    .await
                {
                    Ok(row) => row,
                    Err(error) => return all_failed(sql::failed("loading state", error)),
                },
                Err(error) => return all_failed(sql::failed("claiming objects", error)),
            };
            answers.push(Ok(row.map(sql::stored)));
        }
        if let Err(error) = tx.commit().await {
            return all_failed(sql::failed("committing a batch of claims", error));
        }
        answers
    }

    /// Every write of a batch in one transaction: one durable commit.
    async fn save_all(&self, writes: &[super::StateWrite]) -> Vec<Result<()>> {
        let all_failed = |error: Error| writes.iter().map(|_| Err(error.clone())).collect();
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(error) => return all_failed(sql::failed("starting a transaction", error)),
        };
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            let Ok(text) = std::str::from_utf8(&write.data) else {
                written.push(Some(Err(Error::Storage(format!(
                    "the state of {}/{} is not UTF-8 JSON",
                    write.type_name, write.id
                )))));
                continue;
            };
            let outcome = sqlx::query(STATEMENTS.save)
                .bind(write.type_name)
                .bind(&*write.id)
                .bind(text)
                .bind(sql::epoch_to_sql(write.fence.epoch))
                .execute(&mut *tx)
                .await;
            match outcome {
                Ok(done) if done.rows_affected() > 0 => written.push(Some(Ok(()))),
                Ok(_) => {
                    written.push(None);
                    continue;
                }
                Err(error) => return all_failed(sql::failed("saving a batch of states", error)),
            }
            if let Some(call) = &write.call {
                let (response, code, message) = sql::call_columns(&call.outcome);
                let recorded = sqlx::query(RECORD_CALL)
                    .bind(write.type_name)
                    .bind(&*write.id)
                    .bind(&*call.call_id)
                    .bind(&call.method)
                    .bind(response)
                    .bind(code)
                    .bind(message)
                    .bind(&call.caller)
                    .execute(&mut *tx)
                    .await;
                if let Err(error) = recorded {
                    return all_failed(sql::failed("recording a reliable call", error));
                }
            }
        }
        if let Err(error) = tx.commit().await {
            return all_failed(sql::failed("committing a batch of states", error));
        }
        let mut results = Vec::with_capacity(writes.len());
        for (write, outcome) in writes.iter().zip(written) {
            results.push(match outcome {
                Some(result) => result,
                None => Err(self.refused(write.type_name, &write.id, write.fence).await),
            });
        }
        results
    }
}

impl SqliteStorage {
    /// One batch: SQLite has a single writer.
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// Runs `statement`, a purge of what is older than `now` shifted by
    /// `$1` (`-N seconds`).
    async fn purge_older_than(&self, statement: &str, age: std::time::Duration) -> Result<u64> {
        let shift = format!("-{:.3} seconds", age.as_secs_f64());
        let purged = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(shift)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::failed("purging old rows", e))?;
        Ok(purged.rows_affected())
    }
}
