//! Connections held for the group committer's batches. A pool checks a
//! connection with a round trip each time it is returned, which would add
//! a round trip, and two wake-ups on each side, to every batch; these are
//! checked only after standing idle, and a connection that failed is
//! dropped and replaced on the next use.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::sync::MutexExt;

/// A connection idle longer than this is checked before use
/// (one round trip); one in steady use is not, since checking every use
/// would add a round trip to every batch. A connection that broke
/// meanwhile fails its batch, as any lost connection, and is replaced.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A fixed number of connections, opened when first needed.
#[derive(Debug)]
pub(super) struct HeldConnections {
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// Connections not in use, with when each was last used.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// One per connection: a user waits for a connection to be free.
    free: Semaphore,
}

impl HeldConnections {
    /// `count` connections to `options`, each opened within
    /// `connect_timeout`.
    pub(super) fn new(options: PgConnectOptions, count: usize, connect_timeout: Duration) -> Self {
        Self {
            options,
            connect_timeout,
            idle: Mutex::new(Vec::with_capacity(count)),
            free: Semaphore::new(count),
        }
    }

    /// A connection for one use: an idle one (checked first if it stood
    /// idle a while), or a new one.
    pub(super) async fn get(&self) -> Result<Held<'_>, sqlx::Error> {
        let permit = self
            .free
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.locked().pop();
        let connection = match idle {
            Some((connection, since)) if since.elapsed() < CHECK_IDLE_AFTER => connection,
            Some((mut connection, _)) => match connection.ping().await {
                Ok(()) => connection,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        Ok(Held {
            owner: self,
            connection: Some(connection),
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    }
}

/// A connection in use. It goes back to the idle ones only through
/// [`Held::release`]; dropped otherwise (a use that failed, or was
/// cancelled midway and left the protocol in an unknown state), it is
/// closed.
pub(super) struct Held<'a> {
    owner: &'a HeldConnections,
    connection: Option<PgConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Held<'_> {
    /// The connection.
    pub(super) fn connection(&mut self) -> &mut PgConnection {
        self.connection
            .as_mut()
            .expect("a held connection is there until released")
    }

    /// Gives the connection back after a use that ended with `outcome`:
    /// kept after success, closed after any error (even one the database
    /// answered may be its last word: an administrator's termination, a
    /// shutdown), so the next use starts on a sound connection.
    pub(super) fn release<T>(mut self, outcome: &Result<T, sqlx::Error>) {
        if outcome.is_ok()
            && let Some(connection) = self.connection.take()
        {
            self.owner.idle.locked().push((connection, Instant::now()));
        }
    }
}
