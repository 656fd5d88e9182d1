//! The turn queue of one object: exclusive turns that wait for the one
//! running, and the task that drains them in order.

use super::*;

/// What [`TypeHost::enter`] decided.
pub(super) enum Entry<W: Work<O>, O: Object> {
    /// Run the turn now, then whatever queues behind it.
    Run(W, DrainPermit<O>),
    /// Queued; the reply comes from the task running the turns.
    Wait(oneshot::Receiver<Reply<W, O>>),
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
            let outcome = host
                .exclusive(node, activation, slot, &mut this.work, &this.call, true)
                .await;
            match outcome {
                Some(result) => {
                    // The caller may have stopped waiting; the turn ran anyway.
                    if let Some(reply) = self.reply.take() {
                        let _ = reply.send(Reply {
                            turn: Turn::Done(result),
                            spent: Some(self),
                        });
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
            let outcome = host.run_turn(node, call, work).await;
            if let Some(reply) = reply {
                let _ = reply.send(Reply {
                    turn: outcome,
                    spent: None,
                });
            }
        });
    }
}

/// The right to run an activation's exclusive turns. Dropped without being
/// released (the runtime is going away), it empties the mailbox so no
/// caller waits on a turn that will never run.
pub(crate) struct DrainPermit<O: Object> {
    activation: Option<Arc<Activation<O>>>,
}

impl<O: Object> DrainPermit<O> {
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

impl<O: Object> Drop for DrainPermit<O> {
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
    pub(super) fn enter<W: Work<O>>(
        &self,
        activation: &Arc<Activation<O>>,
        call: &TurnCall,
        work: W,
        limit: usize,
    ) -> Entry<W, O> {
        let mut mailbox = activation.mailbox();
        if mailbox.queue.len() >= limit {
            return Entry::Full;
        }
        if !mailbox.draining {
            mailbox.draining = true;
            return Entry::Run(
                work,
                DrainPermit {
                    activation: Some(activation.clone()),
                },
            );
        }
        let (reply, response) = oneshot::channel();
        mailbox.queue.push_back(Box::new(Queued {
            call: call.clone(),
            work,
            reply: Some(reply),
        }));
        Entry::Wait(response)
    }

    /// After the inline exclusive turn: release the turns, or hand the
    /// write lock to a task that drains what queued meanwhile, so the
    /// caller gets its reply without waiting for the others.
    pub(super) fn finish_exclusive(
        &self,
        node: &Arc<NodeInner>,
        permit: DrainPermit<O>,
        gone: bool,
    ) {
        if gone {
            self.reroute_queued(node, permit);
            return;
        }
        let Some(activation) = permit.activation.as_ref() else {
            return;
        };
        {
            let mut mailbox = activation.mailbox();
            if mailbox.queue.is_empty() {
                mailbox.draining = false;
                drop(mailbox);
                permit.disarm();
                return;
            }
        }
        let Some(host) = self.this.upgrade() else {
            return;
        };
        node.runtime.spawn(host.drain(node.clone(), permit));
    }

    /// Runs queued exclusive turns in order until none are left. The write
    /// lock is released every [`DRAIN_BATCH`] turns so shared turns, timers
    /// and idle collection waiting on the fair lock get their go.
    pub(super) async fn drain(self: Arc<Self>, node: Arc<NodeInner>, permit: DrainPermit<O>) {
        let Some(activation) = permit.activation.clone() else {
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
                tokio::task::yield_now().await;
                guard = activation.state.write().await;
            }
        }
    }

    /// The activation is gone: every queued turn looks its object up again.
    pub(super) fn reroute_queued(&self, node: &Arc<NodeInner>, permit: DrainPermit<O>) {
        let queued = permit.release();
        let Some(host) = self.this.upgrade() else {
            return;
        };
        for turn in queued {
            turn.reroute(host.clone(), node.clone());
        }
    }
}
