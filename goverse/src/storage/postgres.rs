//! State in PostgreSQL (feature `postgres`): table `goverse_objects`, the
//! state as JSONB, every write fenced by the writer's epoch.

mod held;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use self::held::HeldConnections;
use super::sql::{self, Statements, sql_storage};
use crate::error::{Error, Result};

const STATEMENTS: Statements = Statements {
    load: "SELECT data::text, epoch FROM goverse_objects WHERE object_type = $1 AND object_id = $2",
    save: "INSERT INTO goverse_objects (object_type, object_id, data, epoch) VALUES ($1, $2, $3::jsonb, $4) \
           ON CONFLICT (object_type, object_id) DO UPDATE \
           SET data = EXCLUDED.data, epoch = EXCLUDED.epoch, version = goverse_objects.version + 1, updated_at = now() \
           WHERE goverse_objects.epoch <= EXCLUDED.epoch",
    delete: "DELETE FROM goverse_objects WHERE object_type = $1 AND object_id = $2 AND epoch <= $3",
    epoch: "SELECT epoch FROM goverse_objects WHERE object_type = $1 AND object_id = $2",
    claim: "INSERT INTO goverse_objects (object_type, object_id, data, epoch) VALUES ($1, $2, 'null'::jsonb, $3) \
            ON CONFLICT (object_type, object_id) DO UPDATE SET epoch = EXCLUDED.epoch, updated_at = now() \
            WHERE goverse_objects.epoch < EXCLUDED.epoch RETURNING data::text, epoch",
    load_call: "SELECT method, response, error_code, error_message, caller FROM goverse_reliable_calls \
                WHERE object_type = $1 AND object_id = $2 AND call_id = $3",
    purge_calls: "DELETE FROM goverse_reliable_calls \
                  WHERE created_at < now() - make_interval(secs => $1)",
    purge_tombstones: "DELETE FROM goverse_objects \
                       WHERE data = 'null'::jsonb AND updated_at < now() - make_interval(secs => $1)",
};

/// The applied schema version.
const SCHEMA_VERSION_QUERY: &str = "SELECT max(version) FROM _sqlx_migrations WHERE success";

/// Settings of a [`PostgresStorage`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connections for loads, claims and single writes (default 16); the
    /// group committer keeps two more for its batches.
    pub max_connections: u32,
    /// How long to wait for a free connection (default 10 s).
    pub acquire_timeout: Duration,
    /// Apply the schema migrations at start (default false: a missing or
    /// older schema is an error, so production schemas change on purpose).
    pub migrate: bool,
    /// PostgreSQL's `statement_timeout` on every connection (default 10 s):
    /// a statement stuck in the server (a lock, a stalled disk) is
    /// cancelled by it and fails with `STORAGE_ERROR`. A server that does
    /// not answer at all is bounded by the node's storage timeout.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            migrate: false,
            statement_timeout: Duration::from_secs(10),
        }
    }
}

impl PostgresOptions {
    /// Sets whether to apply the migrations at start.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets the pool size.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }
}

/// Persistent state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    /// Loads, claims and single writes.
    pool: PgPool,
    /// The group committer's batches of writes, one connection for each
    /// batch in flight: the same few server processes write every batch,
    /// and stay hot in cache.
    batches: Arc<HeldConnections>,
}

/// Batches of writes in flight at most: PostgreSQL commits them in
/// parallel, and while one is written the other's writers run their next
/// turns. More measured no better on a small machine.
const BATCHES_IN_FLIGHT: usize = 2;

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/db`; TLS
    /// with `sslmode=require` where built with a TLS backend).
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when the database cannot be reached, or the schema
    /// is missing or older than this code and `migrate` is off.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self> {
        let connect: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| Error::Config(format!("database url: {e}")))?
            .options([(
                "statement_timeout",
                format!("{}ms", options.statement_timeout.as_millis().max(1)),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|e| sql::failed("connecting to PostgreSQL", e))?;
        let batches = Arc::new(HeldConnections::new(
            connect,
            BATCHES_IN_FLIGHT,
            options.acquire_timeout,
        ));
        let storage = Self { pool, batches };
        if options.migrate {
            storage.migrate().await?;
        }
        storage.check_schema().await?;
        Ok(storage)
    }

    /// Applies the schema migrations (idempotent; safe with several nodes
    /// starting at once).
    ///
    /// # Errors
    ///
    /// `STORAGE_ERROR` when a migration fails.
    pub async fn migrate(&self) -> Result<()> {
        sql::migrator([
            include_str!("../../migrations/postgres/0001_objects.sql"),
            include_str!("../../migrations/postgres/0002_reliable_calls.sql"),
            include_str!("../../migrations/postgres/0003_call_callers.sql"),
        ])
        .run(&self.pool)
        .await
        .map_err(|e| sql::failed("migrating the schema", e))
    }

    async fn check_schema(&self) -> Result<()> {
        let version: Option<i64> = match sqlx::query_scalar(SCHEMA_VERSION_QUERY)
            .fetch_one(&self.pool)
            .await
        {
            Ok(version) => version,
            // 42P01: undefined table; no migration ever ran here.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => None,
            Err(error) => return Err(sql::failed("reading the schema version", error)),
        };
        match version {
            Some(version) if version >= sql::SCHEMA_VERSION => Ok(()),
            found => Err(sql::schema_error(found)),
        }
    }
}

sql_storage!(PostgresStorage, STATEMENTS);

/// Binds a batch's [`Columns`] as `$1` to `$4` of `query`.
macro_rules! bind_columns {
    ($query:expr, $batch:expr) => {
        $query
            .bind(&$batch.types)
            .bind(&$batch.ids)
            .bind(&$batch.states)
            .bind(&$batch.epochs)
    };
}

/// Writes `round` (none with a reliable-call record): most writes are to
/// rows already there, so those are updated, and only what the update
/// left is upserted. Answers the writes that were refused (neither
/// statement wrote their row).
async fn update_then_upsert(
    connection: &mut PgConnection,
    writes: &[super::StateWrite],
    texts: &[&str],
    round: &[usize],
) -> std::result::Result<Vec<usize>, sqlx::Error> {
    let batch = Columns::of(writes, texts, round);
    let updated: Vec<i64> = bind_columns!(sqlx::query_scalar(UPDATE_BATCH), batch)
        .fetch_all(&mut *connection)
        .await?;
    if updated.len() == round.len() {
        return Ok(Vec::new());
    }
    let mut left = vec![true; round.len()];
    for position in updated {
        if let Some(left) = usize::try_from(position - 1)
            .ok()
            .and_then(|index| left.get_mut(index))
        {
            *left = false;
        }
    }
    let rest: Vec<usize> = round
        .iter()
        .zip(&left)
        .filter_map(|(&index, &left)| left.then_some(index))
        .collect();
    let batch = Columns::of(writes, texts, &rest);
    let written: Vec<(String, String)> = bind_columns!(sqlx::query_as(UPSERT_BATCH), batch)
        .fetch_all(&mut *connection)
        .await?;
    Ok(not_written(writes, &rest, &written))
}

/// The writes of `round` (to distinct objects) whose object is not among
/// the rows a statement answered it wrote: exactly those it refused.
fn not_written(
    writes: &[super::StateWrite],
    round: &[usize],
    written: &[(String, String)],
) -> Vec<usize> {
    if written.len() == round.len() {
        return Vec::new();
    }
    let written: std::collections::HashSet<(&str, &str)> = written
        .iter()
        .map(|(t, i)| (t.as_str(), i.as_str()))
        .collect();
    round
        .iter()
        .copied()
        .filter(|&index| !written.contains(&(writes[index].type_name, &*writes[index].id)))
        .collect()
}

/// Writes `round`, some with reliable-call records, in one statement;
/// answers the writes that were refused (the statement answers the rows it
/// wrote, so a write that landed is never reported refused, whatever is
/// stored by the time it is checked).
async fn save_with_calls(
    connection: &mut PgConnection,
    writes: &[super::StateWrite],
    texts: &[&str],
    round: &[usize],
) -> std::result::Result<Vec<usize>, sqlx::Error> {
    let batch = Columns::of(writes, texts, round);
    let calls: Vec<(&super::StateWrite, &super::CallRecord)> = round
        .iter()
        .filter_map(|&i| writes[i].call.as_ref().map(|call| (&writes[i], call)))
        .collect();
    let outcomes: Vec<_> = calls
        .iter()
        .map(|(_, c)| sql::call_columns(&c.outcome))
        .collect();
    let written: Vec<(String, String)> =
        bind_columns!(sqlx::query_as(UPSERT_BATCH_WITH_CALLS), batch)
            .bind(calls.iter().map(|(w, _)| w.type_name).collect::<Vec<_>>())
            .bind(calls.iter().map(|(w, _)| &*w.id).collect::<Vec<_>>())
            .bind(calls.iter().map(|(_, c)| &*c.call_id).collect::<Vec<_>>())
            .bind(
                calls
                    .iter()
                    .map(|(_, c)| c.method.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(outcomes.iter().map(|c| c.0).collect::<Vec<_>>())
            .bind(outcomes.iter().map(|c| c.1).collect::<Vec<_>>())
            .bind(outcomes.iter().map(|c| c.2).collect::<Vec<_>>())
            .bind(
                calls
                    .iter()
                    .map(|(_, c)| c.caller.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *connection)
            .await?;
    Ok(not_written(writes, round, &written))
}

/// The bound columns of a batch of writes.
struct Columns<'a> {
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    states: Vec<&'a str>,
    epochs: Vec<i64>,
}

impl<'a> Columns<'a> {
    /// The columns of the writes at `round` (indices into `writes`, whose
    /// states as text are `texts`).
    fn of(writes: &'a [super::StateWrite], texts: &[&'a str], round: &[usize]) -> Self {
        Self {
            types: round.iter().map(|&i| writes[i].type_name).collect(),
            ids: round.iter().map(|&i| &*writes[i].id).collect(),
            states: round.iter().map(|&i| texts[i]).collect(),
            epochs: round
                .iter()
                .map(|&i| sql::epoch_to_sql(writes[i].fence.epoch))
                .collect(),
        }
    }
}

/// A batch of writes to rows already there, in one statement (one
/// transaction, one fsync), answering the positions (from 1) it wrote: a
/// row missing or stored at a newer epoch is not written. Cheaper than the
/// upsert: one index probe a row, no speculative insertion, no row lock
/// taken first.
const UPDATE_BATCH: &str = "UPDATE goverse_objects AS o \
     SET data = w.d::jsonb, epoch = w.e, version = o.version + 1, updated_at = now() \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS w(t, i, d, e, n) \
     WHERE o.object_type = w.t AND o.object_id = w.i AND o.epoch <= w.e \
     RETURNING w.n";

/// The writes the update left: rows are inserted where missing, and those
/// stored at a newer epoch are skipped; answers the rows written.
const UPSERT_BATCH: &str = "INSERT INTO goverse_objects (object_type, object_id, data, epoch) \
     SELECT t, i, d::jsonb, e FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS w(t, i, d, e) \
     ON CONFLICT (object_type, object_id) DO UPDATE \
     SET data = EXCLUDED.data, epoch = EXCLUDED.epoch, version = goverse_objects.version + 1, updated_at = now() \
     WHERE goverse_objects.epoch <= EXCLUDED.epoch \
     RETURNING object_type, object_id";

/// A batch with reliable-call records: each is inserted beside its
/// object's row, in the same statement, only if that row was written (a
/// record without its state never lands, nor a state without its record).
/// Answers the rows written.
const UPSERT_BATCH_WITH_CALLS: &str = "WITH written AS ( \
       INSERT INTO goverse_objects (object_type, object_id, data, epoch) \
       SELECT t, i, d::jsonb, e FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS w(t, i, d, e) \
       ON CONFLICT (object_type, object_id) DO UPDATE \
       SET data = EXCLUDED.data, epoch = EXCLUDED.epoch, version = goverse_objects.version + 1, updated_at = now() \
       WHERE goverse_objects.epoch <= EXCLUDED.epoch \
       RETURNING object_type, object_id \
     ), recorded AS ( \
       INSERT INTO goverse_reliable_calls (object_type, object_id, call_id, method, response, error_code, error_message, caller) \
       SELECT c.t, c.i, c.call_id, c.m, c.r, c.ec, c.em, c.cl \
       FROM UNNEST($5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[], $12::text[]) \
         AS c(t, i, call_id, m, r, ec, em, cl) \
       JOIN written ON written.object_type = c.t AND written.object_id = c.i \
       ON CONFLICT DO NOTHING \
     ) SELECT object_type, object_id FROM written";

/// Claims a batch of objects in one statement, returning the rows it wrote
/// (a row stored at the claim's epoch or a newer one is left alone and not
/// returned).
const CLAIM_BATCH: &str = "INSERT INTO goverse_objects (object_type, object_id, data, epoch) \
     SELECT t, i, 'null'::jsonb, e FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS c(t, i, e) \
     ON CONFLICT (object_type, object_id) DO UPDATE SET epoch = EXCLUDED.epoch, updated_at = now() \
     WHERE goverse_objects.epoch < EXCLUDED.epoch \
     RETURNING object_type, object_id, data::text, epoch";

impl PostgresStorage {
    /// Claims a batch in one statement and one transaction.
    async fn claim_all(&self, claims: &[super::Claim]) -> Vec<Result<Option<super::StoredState>>> {
        use super::Storage as _;
        let mut distinct = std::collections::HashSet::new();
        if !claims
            .iter()
            .all(|claim| distinct.insert((claim.type_name, &*claim.id)))
        {
            // One statement cannot claim a row twice: one by one (an
            // object is activated once at a time, so this is rare).
            return super::claim_each(self, claims).await;
        }
        let rows: std::result::Result<Vec<(String, String, String, i64)>, _> =
            sqlx::query_as(CLAIM_BATCH)
                .bind(claims.iter().map(|c| c.type_name).collect::<Vec<_>>())
                .bind(claims.iter().map(|c| &*c.id).collect::<Vec<_>>())
                .bind(
                    claims
                        .iter()
                        .map(|c| sql::epoch_to_sql(c.fence.epoch))
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&self.pool)
                .await;
        let mut claimed: std::collections::HashMap<(String, String), (String, i64)> = match rows {
            Ok(rows) => rows
                .into_iter()
                .map(|(type_name, id, data, epoch)| ((type_name, id), (data, epoch)))
                .collect(),
            Err(error) => {
                let error = sql::failed("claiming objects", error);
                return claims.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let mut answers = Vec::with_capacity(claims.len());
        for claim in claims {
            let key = (claim.type_name.to_string(), claim.id.to_string());
            answers.push(match claimed.remove(&key) {
                Some(row) => Ok(Some(sql::stored(row))),
                // Stored at this epoch or a newer one already: as it is.
                None => self.load(claim.type_name, &claim.id).await,
            });
        }
        answers
    }

    fn batches_in_flight(&self) -> usize {
        BATCHES_IN_FLIGHT
    }

    /// Saves a batch: each round of writes to distinct objects is one
    /// statement (a batch normally is one round).
    async fn save_all(&self, writes: &[super::StateWrite]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = vec![None; writes.len()];
        let mut texts = Vec::with_capacity(writes.len());
        for (write, result) in writes.iter().zip(&mut results) {
            match std::str::from_utf8(&write.data) {
                Ok(text) => texts.push(text),
                Err(_) => {
                    texts.push("");
                    *result = Some(Err(Error::Storage(format!(
                        "the state of {}/{} is not UTF-8 JSON",
                        write.type_name, write.id
                    ))));
                }
            }
        }
        let mut pending: Vec<usize> = (0..writes.len())
            .filter(|&index| results[index].is_none())
            .collect();
        while !pending.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = pending
                .iter()
                .partition(|&&index| seen.insert((writes[index].type_name, &*writes[index].id)));
            match self.save_round(writes, &texts, &round).await {
                Ok(unconfirmed) => {
                    for &index in &round {
                        results[index] = Some(Ok(()));
                    }
                    // The statements answered which rows they wrote: these
                    // were refused, whatever is stored by now.
                    for index in unconfirmed {
                        let write = &writes[index];
                        results[index] = Some(Err(self
                            .refused(write.type_name, &write.id, write.fence)
                            .await));
                    }
                }
                Err(error) => {
                    for index in round {
                        results[index] = Some(Err(error.clone()));
                    }
                }
            }
            pending = later;
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(Error::Internal("a write was not saved".into())))
            })
            .collect()
    }

    /// Writes `round` (indices into `writes`, all to distinct objects) on
    /// one of the committer's connections; answers the writes that may have
    /// been refused (none, normally).
    async fn save_round(
        &self,
        writes: &[super::StateWrite],
        texts: &[&str],
        round: &[usize],
    ) -> Result<Vec<usize>> {
        let mut held = self
            .batches
            .get()
            .await
            .map_err(|e| sql::failed("connecting to save a batch", e))?;
        let outcome = if round.iter().any(|&i| writes[i].call.is_some()) {
            save_with_calls(held.connection(), writes, texts, round).await
        } else {
            update_then_upsert(held.connection(), writes, texts, round).await
        };
        held.release(&outcome);
        outcome.map_err(|e| sql::failed("saving a batch of states", e))
    }

    /// Runs `statement`, a purge of what is older than `$1` seconds.
    async fn purge_older_than(&self, statement: &str, age: std::time::Duration) -> Result<u64> {
        let purged = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(age.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::failed("purging old rows", e))?;
        Ok(purged.rows_affected())
    }
}
