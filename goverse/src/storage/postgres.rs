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
    version: "SELECT max(version) FROM _sqlx_migrations WHERE success",
};

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
        let version: Option<i64> = match sqlx::query_scalar(STATEMENTS.version)
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
