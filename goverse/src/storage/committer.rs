//! Group commit: the writes of many objects' turns become one storage
//! transaction. A turn hands its object's new state to the committer and
//! waits; the committer takes everything queued, saves it as one batch, and
//! answers each writer. While a batch is being written, the next one
//! gathers, so the batch grows with the load and no write waits for a
//! timer.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{StateWrite, Storage};
use crate::error::{Error, Result};

/// Writes in one batch at most.
const BATCH: usize = 512;

/// How many times the committer yields to let more writes join a batch.
const GATHER_ROUNDS: usize = 8;

type Pending = (StateWrite, oneshot::Sender<Result<()>>);

/// A node's group committer.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    writes: mpsc::UnboundedSender<Pending>,
}

impl Committer {
    /// Starts the committer task for `storage` on the current runtime.
    pub(crate) fn start(storage: Arc<dyn Storage>) -> Self {
        let (writes, mut queue) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.recv_many(&mut batch, BATCH).await > 0 {
                // Writers just answered by the last batch are about to
                // write again: let them run and join this batch while the
                // queue keeps growing, rather than send a batch of one and
                // make the rest wait for it.
                let mut queued = queue.len();
                for _ in 0..GATHER_ROUNDS {
                    if batch.len() + queued >= BATCH {
                        break;
                    }
                    tokio::task::yield_now().await;
                    let now = queue.len();
                    if now == queued {
                        break;
                    }
                    queued = now;
                }
                let room = BATCH - batch.len();
                queue.recv_many(&mut batch, room.min(queued)).await;
                let (states, waiters): (Vec<StateWrite>, Vec<_>) = batch.drain(..).unzip();
                let results = storage.save_batch(&states).await;
                let mut results = results.into_iter();
                for waiter in waiters {
                    let result = results.next().unwrap_or_else(|| {
                        Err(Error::Storage(
                            "the storage answered fewer writes than it was given".into(),
                        ))
                    });
                    let _ = waiter.send(result);
                }
            }
        });
        Self { writes }
    }

    /// Saves `write` with the next batch; returns once it is durable (or
    /// refused).
    pub(crate) async fn save(&self, write: StateWrite) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.writes
            .send((write, done))
            .map_err(|_| Error::Storage("the node's committer has stopped".into()))?;
        result
            .await
            .unwrap_or_else(|_| Err(Error::Storage("the node's committer has stopped".into())))
    }
}
