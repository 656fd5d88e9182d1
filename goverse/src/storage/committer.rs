//! Group commit: the writes of many objects' turns become one storage
//! transaction. A turn hands its object's new state to the committer and
//! waits; the committer takes everything queued, saves it as one batch, and
//! answers each writer. While a batch is being written, the next one
//! gathers, so the batch grows with the load and no write waits for a
//! timer.
//!
//! A storage that takes concurrent transactions (PostgreSQL) gets more than
//! one batch in flight: while one batch is in the database, the writers of
//! the other run their next turns, so neither the database nor the node
//! waits for the other. Two batches never hold writes to the same object:
//! a write whose object is in flight waits for that batch, so an object's
//! writes land in the order they were made.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};

use super::{Claim, ErasedStorage, StateWrite, StoredState};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::meters::Meters;

/// Writes in one batch at most.
const BATCH: usize = 512;

/// How many times the committer yields to let more writes join a batch.
const GATHER_ROUNDS: usize = 8;

/// With nothing in flight, a batch at least twice this size is split in
/// two concurrent halves: their writers then come back at different times,
/// and the batches interleave with the turns instead of alternating with
/// them.
const SPLIT_AT_LEAST: usize = 16;

/// The object a write is for.
type Key = (&'static str, Arc<str>);

/// One kind of durable write the committer batches.
pub(crate) trait Job: Send + Sized + 'static {
    /// What the writer hears back.
    type Answer: Send + 'static;
    /// The object the job writes.
    fn key(&self) -> Key;
    /// Writes a batch; one answer per job, in order.
    fn write(
        storage: Arc<dyn ErasedStorage>,
        jobs: Vec<Self>,
    ) -> BoxFuture<'static, Vec<Self::Answer>>;
    /// The answer when the storage gave none.
    fn unanswered() -> Self::Answer;
}

impl Job for StateWrite {
    type Answer = Result<()>;

    fn key(&self) -> Key {
        (self.type_name, self.id.clone())
    }

    fn write(
        storage: Arc<dyn ErasedStorage>,
        jobs: Vec<Self>,
    ) -> BoxFuture<'static, Vec<Result<()>>> {
        Box::pin(async move { storage.save_batch(&jobs).await })
    }

    fn unanswered() -> Result<()> {
        Err(Error::Storage(
            "the storage answered fewer writes than it was given".into(),
        ))
    }
}

impl Job for Claim {
    type Answer = Result<Option<StoredState>>;

    fn key(&self) -> Key {
        (self.type_name, self.id.clone())
    }

    fn write(
        storage: Arc<dyn ErasedStorage>,
        jobs: Vec<Self>,
    ) -> BoxFuture<'static, Vec<Result<Option<StoredState>>>> {
        Box::pin(async move { storage.claim_batch(&jobs).await })
    }

    fn unanswered() -> Result<Option<StoredState>> {
        Err(Error::Storage(
            "the storage answered fewer claims than it was given".into(),
        ))
    }
}

type Pending<J> = (J, oneshot::Sender<<J as Job>::Answer>);

/// A node's group committer: one pipeline for state writes, one for the
/// claims new owners make when they activate objects.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    writes: mpsc::UnboundedSender<Pending<StateWrite>>,
    claims: mpsc::UnboundedSender<Pending<Claim>>,
}

impl Committer {
    /// Starts the committer tasks for `storage` on the current runtime;
    /// the state writes' batches are counted and timed in `meters`.
    pub(crate) fn start(storage: Arc<dyn ErasedStorage>, meters: Option<Arc<Meters>>) -> Self {
        let depth = storage.concurrent_batches().clamp(1, 8);
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(Pipeline::new(storage.clone(), depth, meters).run(queue));
        let (claims, queue) = mpsc::unbounded_channel();
        tokio::spawn(Pipeline::new(storage, depth, None).run(queue));
        Self { writes, claims }
    }

    /// Queues `write` for the next batch now; the future ends once it is
    /// durable (or refused). Writes to one object land in the order they
    /// were queued.
    pub(crate) fn save(&self, write: StateWrite) -> impl Future<Output = Result<()>> + use<> {
        submit(&self.writes, write)
    }

    /// Queues a claim on an object for the next batch of claims (see
    /// [`Storage::claim_and_load`]); the future ends with the row as it is
    /// after the claim.
    pub(crate) fn claim(
        &self,
        claim: Claim,
    ) -> impl Future<Output = Result<Option<StoredState>>> + use<> {
        submit(&self.claims, claim)
    }
}

/// Queues `job` on `queue` now; the future ends with its answer.
fn submit<J, T>(
    queue: &mpsc::UnboundedSender<Pending<J>>,
    job: J,
) -> impl Future<Output = Result<T>> + use<J, T>
where
    J: Job<Answer = Result<T>>,
{
    let (done, answer) = oneshot::channel();
    let queued = queue.send((job, done));
    async move {
        queued.map_err(|_| Error::Storage("the node's committer has stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Storage("the node's committer has stopped".into())))
    }
}

/// The committer's state for one kind of job: batches in flight and the
/// jobs waiting.
struct Pipeline<J: Job> {
    storage: Arc<dyn ErasedStorage>,
    /// Batches in flight at most.
    depth: usize,
    /// The batches being written, each a task.
    in_flight: JoinSet<()>,
    /// The objects each batch in flight writes.
    objects: HashMap<Id, HashSet<Key>>,
    /// Objects with writes in flight.
    busy: HashSet<Key>,
    /// Writes taken from the queue, in arrival order, not yet in a batch.
    ready: VecDeque<Pending<J>>,
    /// Where the batches are counted and timed, if anywhere.
    meters: Option<Arc<Meters>>,
}

impl<J: Job> Pipeline<J> {
    fn new(storage: Arc<dyn ErasedStorage>, depth: usize, meters: Option<Arc<Meters>>) -> Self {
        Self {
            storage,
            depth,
            in_flight: JoinSet::new(),
            objects: HashMap::new(),
            busy: HashSet::new(),
            ready: VecDeque::new(),
            meters,
        }
    }

    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Pending<J>>) {
        let mut open = true;
        let mut received = Vec::with_capacity(BATCH);
        loop {
            if !open && self.in_flight.is_empty() && self.ready.is_empty() {
                return;
            }
            let room = self.in_flight.len() < self.depth;
            tokio::select! {
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    // A batch that panicked dropped its writers' answers:
                    // they hear that the committer stopped.
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    self.release(id);
                }
                count = queue.recv_many(&mut received, BATCH), if room && open => {
                    if count == 0 {
                        open = false;
                    }
                    self.ready.extend(received.drain(..));
                }
                // Unreachable: with nothing in flight there is room, and a
                // closed queue with nothing in flight ended the loop above.
                else => return,
            }
            if self.in_flight.len() < self.depth && self.launchable() {
                self.gather(&mut queue).await;
                while self.in_flight.len() < self.depth && self.worth_launching() {
                    self.launch();
                }
            }
        }
    }

    /// Writers just answered by the last batch are about to write again:
    /// let them run and join this batch while the queue keeps growing,
    /// rather than send a batch of one and make the rest wait for it.
    async fn gather(&mut self, queue: &mut mpsc::UnboundedReceiver<Pending<J>>) {
        let mut queued = queue.len();
        for _ in 0..GATHER_ROUNDS {
            if self.ready.len() + queued >= BATCH {
                break;
            }
            tokio::task::yield_now().await;
            let now = queue.len();
            if now == queued {
                break;
            }
            queued = now;
        }
        let room = BATCH.saturating_sub(self.ready.len());
        let mut received = Vec::with_capacity(room.min(queued));
        queue.recv_many(&mut received, room.min(queued)).await;
        self.ready.extend(received);
    }

    /// Whether some ready write's object is free.
    fn launchable(&self) -> bool {
        self.ready
            .iter()
            .any(|(job, _)| !self.busy.contains(&job.key()))
    }

    /// Whether to send a batch now: always with nothing in flight; beside
    /// another batch only with at least half as many writes, so that a
    /// straggler does not take the second place alone and leave the rest
    /// of the writers to wait for both.
    fn worth_launching(&self) -> bool {
        if !self.launchable() {
            return false;
        }
        let in_flight: usize = self.objects.values().map(HashSet::len).sum();
        self.ready.len() * 2 >= in_flight
    }

    /// Sends a batch of the ready writes whose objects are free; a write
    /// behind another to the same object that must wait, waits too.
    fn launch(&mut self) {
        let mut limit = BATCH;
        if self.in_flight.is_empty() && self.depth > 1 && self.ready.len() >= 2 * SPLIT_AT_LEAST {
            limit = self.ready.len().div_ceil(2);
        }
        let mut batch = Vec::new();
        let mut in_batch: HashSet<Key> = HashSet::new();
        let mut held = VecDeque::new();
        while let Some(pending) = self.ready.pop_front() {
            let object = pending.0.key();
            // Past the limit everything waits, so an object's later write
            // never overtakes an earlier one.
            if batch.len() >= limit || self.busy.contains(&object) {
                held.push_back(pending);
                continue;
            }
            in_batch.insert(object);
            batch.push(pending);
        }
        self.ready = held;
        if batch.is_empty() {
            return;
        }
        self.busy.extend(in_batch.iter().cloned());
        let storage = self.storage.clone();
        let meters = self.meters.clone();
        let task = self.in_flight.spawn(async move {
            let (jobs, waiters): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
            let size = jobs.len();
            let started = std::time::Instant::now();
            let mut answers = J::write(storage, jobs).await.into_iter();
            if let Some(meters) = meters {
                meters
                    .storage_writes
                    .fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
                meters.storage_batch.record_count(size);
                meters.storage_commit.record_duration(started.elapsed());
            }
            for waiter in waiters {
                let _ = waiter.send(answers.next().unwrap_or_else(J::unanswered));
            }
        });
        self.objects.insert(task.id(), in_batch);
    }

    fn release(&mut self, batch: Id) {
        for object in self.objects.remove(&batch).unwrap_or_default() {
            self.busy.remove(&object);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Committer;
    use crate::error::Result;
    use crate::storage::{Fence, MemoryStorage, StateWrite, Storage, StoredState};

    /// A store that takes two batches at once, holds each a while, and
    /// watches what is in flight together.
    #[derive(Default)]
    struct Watched {
        inner: MemoryStorage,
        writing: Mutex<Vec<Arc<str>>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        overlapped: AtomicBool,
        landed: Mutex<Vec<(Arc<str>, Vec<u8>)>>,
    }

    impl Storage for Watched {
        async fn load(&self, type_name: &str, id: &str) -> Result<Option<StoredState>> {
            self.inner.load(type_name, id).await
        }

        async fn save(&self, type_name: &str, id: &str, data: &[u8], fence: Fence) -> Result<()> {
            self.inner.save(type_name, id, data, fence).await
        }

        async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> Result<()> {
            self.inner.delete(type_name, id, fence).await
        }

        fn concurrent_batches(&self) -> usize {
            2
        }

        async fn save_batch(&self, writes: &[StateWrite]) -> Vec<Result<()>> {
            let ids: HashSet<Arc<str>> = writes.iter().map(|w| w.id.clone()).collect();
            {
                let mut writing = self.writing.lock().expect("writing");
                if writing.iter().any(|id| ids.contains(id)) {
                    self.overlapped.store(true, Ordering::SeqCst);
                }
                writing.extend(ids.iter().cloned());
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            // Batches of different sizes take different times, so they
            // overtake one another.
            let pause = 1 + (writes.len() as u64 * 7) % 5;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.landed
                .lock()
                .expect("landed")
                .extend(writes.iter().map(|w| (w.id.clone(), w.data.clone())));
            let results = self.inner.save_batch(writes).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.writing
                .lock()
                .expect("writing")
                .retain(|id| !ids.contains(id));
            results
        }
    }

    fn write(id: &Arc<str>, sequence: usize) -> StateWrite {
        StateWrite {
            type_name: "Watched",
            id: id.clone(),
            data: sequence.to_string().into_bytes(),
            fence: Fence { epoch: 1 },
            call: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_objects_writes_land_in_order_and_never_in_two_batches_at_once() {
        let storage = Arc::new(Watched::default());
        let committer = Committer::start(storage.clone(), None);
        let objects: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("o-{i}"))).collect();
        let mut waiting = Vec::new();
        for round in 0..30 {
            for (index, id) in objects.iter().enumerate() {
                // Some objects get several writes queued back to back.
                let repeats = 1 + index % 3;
                for repeat in 0..repeats {
                    waiting.push(committer.save(write(id, round * 10 + repeat)));
                }
            }
            if round % 3 == 0 {
                // Let a batch leave now and then, so later writes find
                // their objects in flight.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for done in waiting {
            done.await.expect("saved");
        }
        assert!(
            !storage.overlapped.load(Ordering::SeqCst),
            "an object was in two batches in flight at once"
        );
        assert_eq!(
            storage.most_in_flight.load(Ordering::SeqCst),
            2,
            "two batches were in flight together"
        );
        let landed = storage.landed.lock().expect("landed").clone();
        for id in &objects {
            let sequence: Vec<usize> = landed
                .iter()
                .filter(|(landed_id, _)| landed_id == id)
                .map(|(_, data)| String::from_utf8_lossy(data).parse().expect("number"))
                .collect();
            assert!(
                sequence.windows(2).all(|pair| pair[0] < pair[1]),
                "{id} landed out of order: {sequence:?}"
            );
            let stored = storage
                .load("Watched", id)
                .await
                .expect("load")
                .expect("stored");
            assert_eq!(
                stored.data,
                sequence.last().expect("written").to_string().into_bytes()
            );
        }
    }
}
