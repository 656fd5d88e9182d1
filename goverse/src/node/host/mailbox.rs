//! The turn queue of one object: exclusive turns that wait for the one
//! running, and the task that drains them in order.

use std::borrow::Cow;

use super::*;

/// What [`TypeHost::enter`] decided.
pub(super) enum Entry<'a, W: Work<O>, O: Object> {
    /// Run the turn now, then whatever queues behind it.
    Run(W, DrainPermit<'a, O>),
    /// Queued; the reply comes from the task running the turns.
    Wait(Answer<'a, W, O>),
    /// The mailbox is full: the call is refused.
    Full,
}

/// Exclusive turns one drain runs before letting waiting lock holders in.
pub(super) const DRAIN_BATCH: usize = 64;

/// An exclusive turn waiting in an activation's mailbox.
pub(crate) trait QueuedTurn<O: Object>: Send {
    /// Runs the turn on the drainer's slot and replies to its caller; hands
    /// the turn back if the activation is gone.
    fn run<'a>(
        self: Box<Self>,
        host: &'a TypeHost<O>,
        node: &'a Arc<NodeInner>,
        activation: &'a Arc<Activation<O>>,
        slot: &'a mut Slot<O>,
    ) -> BoxFuture<'a, Option<Box<dyn QueuedTurn<O>>>>;

    /// Starts the turn over on whatever activation the id has now.
    fn reroute(self: Box<Self>, host: Arc<TypeHost<O>>, node: Arc<NodeInner>);
}

pub(super) struct Queued<W: Work<O>, O: Object> {
    call: TurnCall,
    work: W,
    reply: Option<oneshot::Sender<Reply<W, O>>>,
}

/// How a queued turn ended, with the box it waited in: the caller drops
/// it, so memory is freed by the thread that allocated it (a free from
/// another thread costs allocators such as glibc's a contended lock).
pub(super) struct Reply<W: Work<O>, O: Object> {
    pub(super) turn: Turn<W, W::Output>,
    pub(super) spent: Option<Box<Queued<W, O>>>,
}

impl<O: Object, W: Work<O>> QueuedTurn<O> for Queued<W, O> {
    fn run<'a>(
        mut self: Box<Self>,
        host: &'a TypeHost<O>,
        node: &'a Arc<NodeInner>,
        activation: &'a Arc<Activation<O>>,
        slot: &'a mut Slot<O>,
    ) -> BoxFuture<'a, Option<Box<dyn QueuedTurn<O>>>> {
        Box::pin(async move {
            let this = &mut *self;
            let turn = host.exclusive(node, activation, slot, &mut this.work, &this.call, true);
            let outcome = crate::trace::within(this.call.span.as_deref(), turn).await;
            match outcome {
                Some(result) => {
                    // The caller may have stopped waiting; the turn ran anyway.
                    if let Some(reply) = self.reply.take() {
                        activation.runnable_callers.fetch_add(1, Ordering::Relaxed);
                        let sent = reply.send(Reply {
                            turn: Turn::Done(result),
                            spent: Some(self),
                        });
                        if sent.is_err() {
                            activation.runnable_callers.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    None
                }
                None => Some(self as Box<dyn QueuedTurn<O>>),
            }
        })
    }

    fn reroute(self: Box<Self>, host: Arc<TypeHost<O>>, node: Arc<NodeInner>) {
        let Queued { call, work, reply } = *self;
        let runtime = node.runtime.clone();
        runtime.spawn(async move {
            let outcome = host.run_turn(&node, call, work).await;
            if let Some(reply) = reply {
                let _ = reply.send(Reply {
                    turn: outcome,
                    spent: None,
                });
            }
        });
    }
}

/// A queued turn's caller waiting for its answer; counted in the
/// activation's `runnable_callers` from the moment the answer is sent until the
/// caller takes it (or drops it unread).
pub(super) struct Answer<'a, W: Work<O>, O: Object> {
    response: oneshot::Receiver<Reply<W, O>>,
    activation: &'a Activation<O>,
}

impl<W: Work<O>, O: Object> Answer<'_, W, O> {
    /// The queued turn's outcome, once the task running the turns sends it.
    pub(super) async fn taken(mut self) -> Option<Reply<W, O>> {
        let reply = (&mut self.response).await.ok();
        if reply.is_some() {
            self.activation
                .runnable_callers
                .fetch_sub(1, Ordering::Relaxed);
        }
        reply
    }
}

impl<W: Work<O>, O: Object> Drop for Answer<'_, W, O> {
    fn drop(&mut self) {
        // Sent but never taken: the caller stopped waiting.
        if self.response.try_recv().is_ok() {
            self.activation
                .runnable_callers
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Steps the calling task back behind the worker's other tasks, counted
/// among the activation's `runnable_callers` while it waits.
pub(super) async fn step_back<O: Object>(activation: &Activation<O>) {
    struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    activation.runnable_callers.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(&activation.runnable_callers);
    crate::call::step_back().await;
}

/// The right to run an activation's exclusive turns. Dropped without being
/// released (the runtime is going away), it empties the mailbox so no
/// caller waits on a turn that will never run.
///
/// An inline turn's permit borrows the activation its caller holds (a
/// clone would touch a count every caller of the object shares); the task
/// that drains the mailbox owns one.
pub(crate) struct DrainPermit<'a, O: Object> {
    activation: Option<Cow<'a, Arc<Activation<O>>>>,
}

impl<O: Object> DrainPermit<'_, O> {
    /// The same right, owned, for a task of its own.
    fn into_owned(mut self) -> DrainPermit<'static, O> {
        DrainPermit {
            activation: self.activation.take().map(|a| Cow::Owned(a.into_owned())),
        }
    }

    /// Gives up the right with the mailbox empty.
    fn disarm(mut self) {
        self.activation = None;
    }

    /// Gives up the right and returns what was queued.
    fn release(mut self) -> VecDeque<Box<dyn QueuedTurn<O>>> {
        match self.activation.take() {
            Some(activation) => {
                let mut mailbox = activation.mailbox();
                mailbox.draining = false;
                std::mem::take(&mut mailbox.queue)
            }
            None => VecDeque::new(),
        }
    }
}

impl<O: Object> Drop for DrainPermit<'_, O> {
    fn drop(&mut self) {
        if let Some(activation) = self.activation.take() {
            let mut mailbox = activation.mailbox();
            mailbox.draining = false;
            mailbox.queue.clear();
        }
    }
}

impl<O: Object> TypeHost<O> {
    /// Takes the right to run the activation's exclusive turns, or queues
    /// the work behind the task that has it.
    pub(super) fn enter<'a, W: Work<O>>(
        &self,
        activation: &'a Arc<Activation<O>>,
        call: &TurnCall,
        work: W,
        limit: usize,
    ) -> Entry<'a, W, O> {
        let mut mailbox = activation.mailbox();
        if mailbox.queue.len() >= limit {
            return Entry::Full;
        }
        if !mailbox.draining {
            mailbox.draining = true;
            return Entry::Run(
                work,
                DrainPermit {
                    activation: Some(Cow::Borrowed(activation)),
                },
            );
        }
        let (reply, response) = oneshot::channel();
        mailbox.queue.push_back(Box::new(Queued {
            call: call.clone(),
            work,
            reply: Some(reply),
        }));
        Entry::Wait(Answer {
            response,
            activation,
        })
    }

    /// After the inline exclusive turn: release the turns, or hand the
    /// write lock to a task that drains what queued meanwhile, so the
    /// caller gets its reply without waiting for the others. Returns
    /// whether turns had queued behind it.
    pub(super) fn finish_exclusive(
        &self,
        node: &Arc<NodeInner>,
        permit: DrainPermit<'_, O>,
        gone: bool,
    ) -> bool {
        if gone {
            return self.reroute_queued(node, permit);
        }
        let Some(activation) = permit.activation.as_ref() else {
            return false;
        };
        {
            let mut mailbox = activation.mailbox();
            if mailbox.queue.is_empty() {
                mailbox.draining = false;
                drop(mailbox);
                permit.disarm();
                return false;
            }
        }
        if let Some(host) = self.this.upgrade() {
            node.runtime
                .spawn(host.drain(node.clone(), permit.into_owned()));
        }
        true
    }

    /// Runs queued exclusive turns in order until none are left. The write
    /// lock is released every [`DRAIN_BATCH`] turns so shared turns, timers
    /// and idle collection waiting on the fair lock get their go.
    pub(super) async fn drain(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        permit: DrainPermit<'static, O>,
    ) {
        let Some(activation) = permit.activation.as_deref().cloned() else {
            return;
        };
        let mut guard = activation.state.write().await;
        let mut ran = 0;
        loop {
            let next = {
                let mut mailbox = activation.mailbox();
                let next = mailbox.queue.pop_front();
                if next.is_none() {
                    mailbox.draining = false;
                }
                next
            };
            let Some(turn) = next else {
                permit.disarm();
                return;
            };
            if let Some(turn) = turn.run(&self, &node, &activation, &mut guard).await {
                // The activation went away: this turn and the rest start over.
                drop(guard);
                turn.reroute(self.clone(), node.clone());
                self.reroute_queued(&node, permit);
                return;
            }
            if matches!(&*guard, Slot::Gone) {
                drop(guard);
                self.reroute_queued(&node, permit);
                return;
            }
            ran += 1;
            if ran % DRAIN_BATCH == 0 {
                // Let shared turns, timers and idle collection waiting on
                // the fair lock in, and let the callers just answered on
                // this worker run (a woken task cannot be stolen from it).
                drop(guard);
                crate::future::requeue().await;
                guard = activation.state.write().await;
            }
        }
    }

    /// The activation is gone: every queued turn looks its object up again.
    /// Returns whether any turn was queued.
    pub(super) fn reroute_queued(&self, node: &Arc<NodeInner>, permit: DrainPermit<'_, O>) -> bool {
        let queued = permit.release();
        let any = !queued.is_empty();
        let Some(host) = self.this.upgrade() else {
            return any;
        };
        for turn in queued {
            turn.reroute(host.clone(), node.clone());
        }
        any
    }
}
