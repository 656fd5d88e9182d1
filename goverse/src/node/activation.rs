//! One activation: an object's in-memory instance, its turn lock, its idle
//! clock and its timers.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll};

use super::host::{QueuedTurn, TimerControl, TypeHost};
use crate::object::Object;
use crate::sync::MutexExt;
use tokio::sync::RwLock;

/// The lifecycle of the instance behind an activation's turn lock.
pub(crate) enum Slot<O> {
    /// Not activated yet: the first turn creates or loads it.
    Fresh,
    /// Live and serving turns.
    Active(O),
    /// Deactivated, deleted or discarded: callers look the id up again.
    Gone,
}

/// Exclusive turns waiting for the task that holds the write lock.
pub(crate) struct Mailbox<O: Object> {
    /// A task owns the exclusive turns of this activation: it runs its own
    /// turn and then everything queued here, in order.
    pub(crate) draining: bool,
    pub(crate) queue: VecDeque<Box<dyn QueuedTurn<O>>>,
}

pub(crate) struct Activation<O: Object> {
    pub(crate) id: Arc<str>,
    /// The object's shard ([`crate::placement::NODE_PINNED`] for an id
    /// pinned to a node).
    pub(crate) shard: u32,
    /// The ownership epoch of the shard when the instance was loaded. The
    /// instance writes under this epoch, and only while the node still
    /// serves the shard under it: once the shard has left, the instance is
    /// stale for good, even if the shard comes back (under a newer epoch).
    epoch: AtomicU64,
    /// Turns: a write lock for `&mut self` calls, a read lock for `&self`
    /// calls. tokio's lock is fair (FIFO), which gives arrival order.
    pub(crate) state: RwLock<Slot<O>>,
    /// `&mut self` turns that arrived while another one was running: the
    /// running turn's task drains them under one hold of the write lock,
    /// instead of handing the lock from task to task for every turn.
    pub(crate) mailbox: Mutex<Mailbox<O>>,
    /// Callers waiting for a worker rather than for the object: those whose
    /// queued turn has been answered but whose task has not yet taken the
    /// answer, and those that stepped back after an inline turn. A caller
    /// running turns inline lets them go first.
    pub(crate) runnable_callers: AtomicUsize,
    /// Milliseconds since the node started, at the last call.
    last_used: AtomicU64,
    pub(crate) host: Weak<TypeHost<O>>,
    /// This activation, for the timers a turn starts through a borrowed
    /// [`Context`](crate::Context).
    pub(crate) this: Weak<Activation<O>>,
    timers: Mutex<Vec<Arc<TimerControl>>>,
    /// A write-behind object has changes not yet saved, and a flush is
    /// scheduled for them.
    pub(crate) flush_pending: AtomicBool,
    /// The object had no stored state when the instance was loaded, and
    /// the instance has stored nothing yet: its first write claims the
    /// object first, and a deactivation has nothing to save, so calls that
    /// only read ids nobody stored leave no row behind.
    pub(crate) unwritten: AtomicBool,
}

impl<O: Object> Activation<O> {
    pub(crate) fn new(id: Arc<str>, shard: u32, host: Weak<TypeHost<O>>, now_ms: u64) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            this: this.clone(),
            id,
            shard,
            epoch: AtomicU64::new(0),
            state: RwLock::new(Slot::Fresh),
            mailbox: Mutex::new(Mailbox {
                draining: false,
                queue: VecDeque::new(),
            }),
            runnable_callers: AtomicUsize::new(0),
            last_used: AtomicU64::new(now_ms),
            host,
            timers: Mutex::new(Vec::new()),
            flush_pending: AtomicBool::new(false),
            unwritten: AtomicBool::new(false),
        })
    }

    pub(crate) fn mailbox(&self) -> std::sync::MutexGuard<'_, Mailbox<O>> {
        self.mailbox.locked()
    }

    /// The epoch the instance was loaded under.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Records the epoch the instance is being loaded under (before it
    /// becomes active, with the turn lock held).
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        // Only a new millisecond writes: busy objects keep the line shared.
        if self.last_used.load(Ordering::Relaxed) != now_ms {
            self.last_used.store(now_ms, Ordering::Relaxed);
        }
    }

    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Adds a timer, replacing (and stopping) one of the same name.
    pub(crate) fn add_timer(&self, timer: Arc<TimerControl>) {
        let mut timers = self.timers.locked();
        if let Some(index) = timers.iter().position(|t| t.name() == timer.name()) {
            timers.swap_remove(index).stop();
        }
        timers.push(timer);
    }

    pub(crate) fn remove_timer(&self, name: &str) -> bool {
        let mut timers = self.timers.locked();
        match timers.iter().position(|t| t.name() == name) {
            Some(index) => {
                timers.swap_remove(index).stop();
                true
            }
            None => false,
        }
    }

    pub(crate) fn stop_timers(&self) {
        let timers = std::mem::take(&mut *self.timers.locked());
        for timer in timers {
            timer.stop();
        }
    }
}

/// Runs a future, turning a panic inside it into an `Err` with its message.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
