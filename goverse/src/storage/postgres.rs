//! State in PostgreSQL (feature `postgres`): table `goverse_objects`, the
//! state as JSONB, every write fenced by the writer's epoch.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

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
    claim: "UPDATE goverse_objects SET epoch = $3 WHERE object_type = $1 AND object_id = $2 AND epoch < $3",
};

/// The applied schema version.
const SCHEMA_VERSION_QUERY: &str = "SELECT max(version) FROM _sqlx_migrations WHERE success";

/// Settings of a [`PostgresStorage`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connections in the pool (default 16).
    pub max_connections: u32,
    /// How long to wait for a free connection (default 10 s).
    pub acquire_timeout: Duration,
    /// Apply the schema migrations at start (default false: a missing or
    /// older schema is an error, so production schemas change on purpose).
    pub migrate: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            migrate: false,
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
    pool: PgPool,
}

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
            .parse()
            .map_err(|e| Error::Config(format!("database url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| sql::failed("connecting to PostgreSQL", e))?;
        let storage = Self { pool };
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
        sql::migrator(include_str!("../../migrations/postgres/0001_objects.sql"))
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

/// Every write of a batch in one statement, one transaction, one fsync:
/// rows whose stored epoch is newer are skipped, and the rows written come
/// back.
const SAVE_BATCH: &str = "INSERT INTO goverse_objects (object_type, object_id, data, epoch) \
     SELECT t, i, d::jsonb, e FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS w(t, i, d, e) \
     ON CONFLICT (object_type, object_id) DO UPDATE \
     SET data = EXCLUDED.data, epoch = EXCLUDED.epoch, version = goverse_objects.version + 1, updated_at = now() \
     WHERE goverse_objects.epoch <= EXCLUDED.epoch \
     RETURNING object_type, object_id";

impl PostgresStorage {
    async fn save_all(&self, writes: &[super::StateWrite]) -> Vec<Result<()>> {
        let mut seen = std::collections::HashSet::new();
        let unique = writes.iter().all(|w| seen.insert((w.type_name, &*w.id)));
        let mut texts = Vec::with_capacity(writes.len());
        for write in writes {
            match std::str::from_utf8(&write.data) {
                Ok(text) => texts.push(text),
                Err(_) => texts.push(""),
            }
        }
        if !unique || texts.iter().any(|t| t.is_empty()) {
            // Not expressible as one statement: write them one by one.
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                results.push(
                    super::Storage::save(
                        self,
                        write.type_name,
                        &write.id,
                        &write.data,
                        write.fence,
                    )
                    .await,
                );
            }
            return results;
        }
        let types: Vec<&str> = writes.iter().map(|w| w.type_name).collect();
        let ids: Vec<&str> = writes.iter().map(|w| &*w.id).collect();
        let epochs: Vec<i64> = writes
            .iter()
            .map(|w| sql::epoch_to_sql(w.fence.epoch))
            .collect();
        let written: std::result::Result<Vec<(String, String)>, sqlx::Error> =
            sqlx::query_as(SAVE_BATCH)
                .bind(&types)
                .bind(&ids)
                .bind(&texts)
                .bind(&epochs)
                .fetch_all(&self.pool)
                .await;
        let written: std::collections::HashSet<(String, String)> = match written {
            Ok(rows) => rows.into_iter().collect(),
            Err(error) => {
                let error = sql::failed("saving a batch of states", error);
                return writes.iter().map(|_| Err(error.clone())).collect();
            }
        };
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            if written.contains(&(write.type_name.to_string(), write.id.to_string())) {
                results.push(Ok(()));
            } else {
                results.push(Err(self
                    .refused(write.type_name, &write.id, write.fence)
                    .await));
            }
        }
        results
    }
}
