//! The calls on one peer stream that wait for their replies, each with its
//! deadline. One sweeper task per stream expires the calls whose deadline
//! passed, so a call arms no timer of its own: at a hundred thousand calls a
//! second, registering and cancelling a timer each was a measurable share
//! of a remote call's cost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::proto::ReplyFrame;
use crate::sync::MutexExt;

/// How a waiting call ended, if the stream did not drop it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The peer answered.
    Reply(ReplyFrame),
    /// The deadline passed first.
    Expired,
}

/// What a caller waits on: an `Err` means the stream went down first.
pub(crate) type Waiting = oneshot::Receiver<Outcome>;

struct Waiter {
    reply: oneshot::Sender<Outcome>,
    deadline: Instant,
}

/// The waiting calls of one stream.
pub(crate) struct Pending {
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// When the sweeper looks next, in microseconds since `base`; `u64::MAX`
    /// while it waits for a first call. Written and read under `waiters`'
    /// lock, so a call with an earlier deadline is never missed.
    next_sweep: AtomicU64,
    base: Instant,
    wake: Notify,
    closed: AtomicBool,
}

impl Pending {
    /// No calls yet. Start [`Pending::sweep`] on a task of its own.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            waiters: Mutex::default(),
            next_sweep: AtomicU64::new(u64::MAX),
            base: Instant::now(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiters.locked()
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// Records call `call_id`, to be answered or expired at `deadline`.
    pub(crate) fn insert(&self, call_id: u64, deadline: Instant) -> Waiting {
        let (reply, waiting) = oneshot::channel();
        let earlier = {
            let mut waiters = self.waiters();
            waiters.insert(call_id, Waiter { reply, deadline });
            self.micros(deadline) < self.next_sweep.load(Ordering::Relaxed)
        };
        if earlier {
            self.wake.notify_one();
        }
        waiting
    }

    /// Drops call `call_id`: it never left.
    pub(crate) fn forget(&self, call_id: u64) {
        self.waiters().remove(&call_id);
    }

    /// Hands each reply to its call; a reply whose call has expired or gone
    /// is dropped.
    pub(crate) fn answer(&self, replies: Vec<ReplyFrame>) {
        let answered: Vec<_> = {
            let mut waiters = self.waiters();
            replies
                .into_iter()
                .filter_map(|reply| Some((waiters.remove(&reply.call_id)?, reply)))
                .collect()
        };
        for (waiter, reply) in answered {
            let _ = waiter.reply.send(Outcome::Reply(reply));
        }
    }

    /// The stream went down: every waiting call hears so, and the sweeper
    /// stops.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the senders tells the callers.
        self.waiters().clear();
        self.wake.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Expires calls at their deadlines until the stream closes. It sleeps
    /// until the earliest deadline it knows; a call with an earlier one
    /// wakes it.
    pub(crate) async fn sweep(self: Arc<Self>) {
        while !self.is_closed() {
            let now = Instant::now();
            let (expired, earliest) = {
                let mut waiters = self.waiters();
                let expired: Vec<Waiter> = waiters
                    .extract_if(|_, waiter| waiter.deadline <= now)
                    .map(|(_, waiter)| waiter)
                    .collect();
                let earliest = waiters.values().map(|waiter| waiter.deadline).min();
                let next = earliest.map_or(u64::MAX, |at| self.micros(at));
                self.next_sweep.store(next, Ordering::Relaxed);
                (expired, earliest)
            };
            for waiter in expired {
                let _ = waiter.reply.send(Outcome::Expired);
            }
            match earliest {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Outcome, Pending};
    use crate::transport::proto::ReplyFrame;

    #[tokio::test(start_paused = true)]
    async fn a_call_expires_at_its_own_deadline_behind_a_longer_one() {
        let pending = Pending::new();
        tokio::spawn(pending.clone().sweep());
        let start = Instant::now();
        let long = pending.insert(1, start + Duration::from_secs(20));
        // The sweeper sees the long call and sleeps until its deadline...
        tokio::time::sleep(Duration::from_millis(10)).await;
        // ...and a call with an earlier one must wake it.
        let short = pending.insert(2, start + Duration::from_millis(300));
        let outcome = tokio::time::timeout(Duration::from_secs(5), short)
            .await
            .expect("the short call expires before the long one's deadline")
            .expect("not dropped");
        assert!(matches!(outcome, Outcome::Expired), "{outcome:?}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
            "{waited:?}"
        );

        // An answered call is not expired; a reply for no call is dropped.
        pending.answer(vec![
            ReplyFrame {
                call_id: 1,
                ..ReplyFrame::default()
            },
            ReplyFrame {
                call_id: 99,
                ..ReplyFrame::default()
            },
        ]);
        assert!(matches!(long.await.expect("answered"), Outcome::Reply(_)));

        // Closing tells the calls still waiting that the stream is gone.
        let third = pending.insert(3, start + Duration::from_secs(60));
        pending.close();
        assert!(third.await.is_err());
        assert!(pending.is_closed());
    }
}
