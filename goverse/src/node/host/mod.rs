//! Hosting one object type on a node: turns, activation, deactivation,
//! timers and idle collection for every object of that type.
//!
//! This module runs a turn ([`TypeHost::run_turn`]); its rooms hold the
//! rest: [`work`] (what a turn runs, and the access check), [`mailbox`]
//! (exclusive turns waiting their go), [`persist`] (fenced loads and
//! saves), [`lifecycle`] (activation and deactivation), [`timers`], and
//! [`erased`] (the host behind a type-erased trait).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::NodeInner;
use super::activation::{Activation, CatchUnwind, Slot};
use super::directory::Directory;
use crate::call::Due;
use crate::chain::CallMeta;
use crate::context::{ActivationScope, Context};
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::Codec;
use crate::object::{Invoke, Object, Receiver};
use crate::placement;
use crate::storage::{CallOutcome, CallRecord, StateWrite};
use crate::transport::{error_from_wire, error_to_wire};

mod erased;
mod lifecycle;
mod mailbox;
mod persist;
mod timers;
mod work;

pub(crate) use self::erased::ErasedHost;
pub(crate) use self::mailbox::QueuedTurn;
use self::mailbox::{Entry, Reply};
pub(crate) use self::timers::TimerControl;
pub(crate) use self::work::{ActivateWork, EncodedWork, STALE_RERUNS, TypedWork, Work};
use self::work::{check_access, method_ran};

pub(crate) struct TypeHost<O: Object> {
    node: Weak<NodeInner>,
    this: Weak<TypeHost<O>>,
    directory: Directory<Activation<O>>,
    idle_timeout: Duration,
    /// The calls served, by method, unless the node does not count them.
    #[cfg(feature = "ops")]
    calls: Option<super::call_metrics::CallMetrics>,
}

impl<O: Object> TypeHost<O> {
    pub(crate) fn new(node: Weak<NodeInner>, config: &super::NodeConfig) -> Arc<Self> {
        Arc::new_cyclic(|this| TypeHost {
            node,
            this: this.clone(),
            directory: Directory::new(),
            idle_timeout: O::DESCRIPTOR.idle_timeout.unwrap_or(config.idle_timeout),
            #[cfg(feature = "ops")]
            calls: config
                .call_metrics
                .then(|| super::call_metrics::CallMetrics::new(O::DESCRIPTOR.methods.len())),
        })
    }

    fn activation(&self, id: &Arc<str>, shard: u32, now_ms: u64) -> Arc<Activation<O>> {
        self.directory.get_or_insert_with(id, || {
            Activation::new(id.clone(), shard, self.this.clone(), now_ms)
        })
    }

    /// Whether the activation's instance may no longer serve or write: the
    /// node does not serve its shard under the epoch it was loaded under
    /// (the shard left, and perhaps came back under a newer epoch).
    fn is_stale(node: &NodeInner, activation: &Activation<O>) -> bool {
        node.fence_for(activation.shard).epoch != activation.epoch()
    }

    fn target(id: &str, method: &str) -> String {
        format!("{}/{}.{}", O::DESCRIPTOR.type_name, id, method)
    }

    /// The context of a turn, borrowing what the turn holds.
    fn context<'a>(
        &self,
        node: &'a Arc<NodeInner>,
        activation: &'a Activation<O>,
        call: Option<&'a TurnCall>,
        deadline: Instant,
    ) -> Context<'a> {
        Context {
            node,
            type_name: O::DESCRIPTOR.type_name,
            id: &activation.id,
            parent: call.and_then(|c| c.meta.chain.as_ref()),
            deadline,
            scope: activation,
            trace: call.and_then(|c| c.meta.trace.as_ref()),
            call_id: None,
            origin: call.and_then(|c| c.meta.origin.as_ref()),
            effects: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Runs one turn of object `call.id`, activating it first if needed.
    ///
    /// Exclusive work goes through the activation's mailbox and the write
    /// side of the turn lock, shared work takes the read side. If this node
    /// does not serve the object's shard (any more), the work is handed back
    /// untouched as [`Turn::Moved`] for the router to send elsewhere.
    pub(crate) async fn run_turn<W: Work<O>>(
        &self,
        node: &Arc<NodeInner>,
        call: TurnCall,
        work: W,
    ) -> Turn<W, W::Output> {
        if call.span.is_none() && crate::trace::wanted(call.meta.trace.as_ref(), 0.0) {
            // Boxed: only traced turns pay for the span's state.
            return Box::pin(self.run_traced_turn(node, call, work)).await;
        }
        self.run_counted_turn(node, call, work).await
    }

    /// A turn in a span of its own, whose nested calls carry it as their
    /// parent.
    async fn run_traced_turn<W: Work<O>>(
        &self,
        node: &Arc<NodeInner>,
        mut call: TurnCall,
        work: W,
    ) -> Turn<W, W::Output> {
        let hop = crate::trace::Hop::Turn {
            type_name: O::DESCRIPTOR.type_name,
            method: work.method_name(),
            id: &call.id,
        };
        let Some(mut span) = hop.open(call.meta.trace.as_ref()) else {
            return self.run_counted_turn(node, call, work).await;
        };
        let received = std::mem::replace(&mut call.meta.trace, span.child.take());
        call.span = Some(Box::new(span.span.clone()));
        let turn = crate::trace::within(Some(&span.span), self.run_counted_turn(node, call, work));
        match turn.await {
            Turn::Done(result) => Turn::Done(span.outcome(result)),
            // Sent on as it came: the next owner's turn is the call's child.
            Turn::Moved(work, mut call) => {
                call.meta.trace = received;
                call.span = None;
                Turn::Moved(work, call)
            }
        }
    }

    /// A turn, counted and timed when the node keeps call metrics.
    async fn run_counted_turn<W: Work<O>>(
        &self,
        node: &Arc<NodeInner>,
        call: TurnCall,
        work: W,
    ) -> Turn<W, W::Output> {
        #[cfg(feature = "ops")]
        if let Some(calls) = &self.calls
            && let Some(method) = work.method_index()
        {
            // The CPU's cycle counter where it is steady: read twice, it
            // costs a call less than the system clock read once.
            let started = quanta::Instant::now();
            let turn = self.run_turn_uncounted(node, call, work).await;
            if let Turn::Done(result) = &turn {
                let code = result.as_ref().err().map(Error::code);
                calls.record(method, started.elapsed(), code.as_ref());
            }
            return turn;
        }
        self.run_turn_uncounted(node, call, work).await
    }

    async fn run_turn_uncounted<W: Work<O>>(
        &self,
        node: &Arc<NodeInner>,
        call: TurnCall,
        mut work: W,
    ) -> Turn<W, W::Output> {
        if let Err(denied) = check_access::<O>(node, &call, work.lifecycle(), work.method_name()) {
            return Turn::Done(Err(denied));
        }
        let arrived_ms = node.ms_at(call.arrived);
        loop {
            if !node.serves(call.shard) {
                return Turn::Moved(work, call);
            }
            let activation = self.activation(&call.id, call.shard, arrived_ms);
            activation.touch(arrived_ms);
            if work.mutates() {
                let permit =
                    match self.enter(&activation, &call, work, node.config.max_queued_per_object) {
                        Entry::Run(returned, permit) => {
                            work = returned;
                            permit
                        }
                        Entry::Wait(answer) => {
                            return match answer.taken().await {
                                Some(Reply { turn, spent }) => {
                                    // Freed by the caller that allocated
                                    // it (see `Reply`).
                                    drop(spent);
                                    turn
                                }
                                None => Turn::Done(Err(Error::Unavailable(
                                    "the node dropped a queued turn".into(),
                                ))),
                            };
                        }
                        Entry::Full => {
                            return Turn::Done(Err(Error::Overloaded(format!(
                                "{} has {} calls waiting",
                                Self::target(&call.id, "*"),
                                node.config.max_queued_per_object
                            ))));
                        }
                    };
                // An uncontended turn skips the clock: its deadline was
                // checked by the caller a moment ago.
                let (mut guard, waited) = match activation.state.try_write() {
                    Ok(guard) => (guard, false),
                    Err(_) => (activation.state.write().await, true),
                };
                let outcome = self
                    .exclusive(node, &activation, &mut guard, &mut work, &call, waited)
                    .await;
                let gone = matches!(&*guard, Slot::Gone);
                drop(guard);
                let others_queued = self.finish_exclusive(node, permit, gone);
                match outcome {
                    Some(result) => {
                        // Other callers of this object wait, for it or
                        // for a worker: this one goes behind them before it
                        // can come back for another turn.
                        let crowded = others_queued
                            || activation.runnable_callers.load(Ordering::Relaxed) > 0;
                        if crate::call::should_step_back(crowded) {
                            mailbox::step_back(&activation).await;
                        }
                        return Turn::Done(result);
                    }
                    None => continue,
                }
            }

            let mut guard = activation.state.read().await;
            if let Err(expired) = self.check_deadline(&call.id, &work, call.deadline) {
                return Turn::Done(Err(expired));
            }
            let mut activated_here = false;
            if matches!(&*guard, Slot::Fresh) {
                drop(guard);
                let mut write = activation.state.write().await;
                if matches!(&*write, Slot::Fresh) {
                    if !node.serves(call.shard) {
                        self.forget(&activation, &mut write);
                        continue;
                    }
                    let activated =
                        Box::pin(self.activate(node, &activation, &mut write, call.deadline));
                    if let Err(error) = activated.await {
                        return Turn::Done(Err(error));
                    }
                    activated_here = true;
                }
                guard = write.downgrade();
            }
            let Slot::Active(object) = &*guard else {
                continue;
            };
            if Self::is_stale(node, &activation) {
                drop(guard);
                let mut write = activation.state.write().await;
                if matches!(&*write, Slot::Active(_)) && Self::is_stale(node, &activation) {
                    self.drop_instance(&activation, &mut write);
                }
                continue;
            }
            let ctx = self.context(node, &activation, Some(&call), call.deadline);
            let outcome = CatchUnwind(work.run(Receiver::Ref(object), &ctx)).await;
            return Turn::Done(match outcome {
                Ok(result)
                    if activated_here && !method_ran::<O, _>(work.method_name(), &result) =>
                {
                    // A bad call alone brought the instance in: it goes.
                    drop(guard);
                    let mut write = activation.state.write().await;
                    if matches!(&*write, Slot::Active(_)) {
                        let _ = self.deactivate(node, &activation, &mut write, false).await;
                    }
                    result
                }
                Ok(result) => result,
                Err(message) => {
                    drop(guard);
                    let mut write = activation.state.write().await;
                    self.discard(node, &activation, &mut write);
                    Err(Error::MethodPanicked {
                        target: Self::target(&call.id, work.method_name()),
                        message,
                    })
                }
            });
        }
    }

    /// A turn whose deadline passed while it queued is not run at all.
    fn check_deadline<W: Work<O>>(&self, id: &str, work: &W, deadline: Instant) -> Result<()> {
        if Instant::now() >= deadline {
            return Err(Error::DeadlineExceeded {
                target: Self::target(id, work.method_name()),
                timeout: Duration::ZERO,
            });
        }
        Ok(())
    }

    /// Runs one exclusive turn on a slot whose write lock the caller holds.
    /// `None` means the activation is gone and the turn must be routed again.
    async fn exclusive<W: Work<O>>(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
        work: &mut W,
        call: &TurnCall,
        waited: bool,
    ) -> Option<Result<W::Output>> {
        if waited && let Err(expired) = self.check_deadline(&activation.id, work, call.deadline) {
            // Leave no never-activated entry behind.
            if matches!(slot, Slot::Fresh) {
                self.forget(activation, slot);
            }
            return Some(Err(expired));
        }
        if work.reliable().is_some() && !O::DESCRIPTOR.persistent {
            return Some(Err(Error::NotPersistent {
                type_name: O::DESCRIPTOR.type_name.to_string(),
            }));
        }
        let fresh = matches!(slot, Slot::Fresh);
        match slot {
            Slot::Gone => return None,
            Slot::Fresh => {
                if !node.serves(call.shard) {
                    // The shard left this node while the turn waited.
                    self.forget(activation, slot);
                    return None;
                }
                // Boxed: activation is rare, and keeps every turn's future small.
                let activated = Box::pin(self.activate(node, activation, slot, call.deadline));
                if let Err(error) = activated.await {
                    return Some(Err(error));
                }
            }
            Slot::Active(_) => {}
        }
        if Self::is_stale(node, activation) {
            // Loaded before the shard left this node: whatever it holds may
            // be older than what a later owner stored.
            self.drop_instance(activation, slot);
            return None;
        }
        if let Some(call_id) = work.reliable() {
            // The turn holds the object, so no other run of this call id
            // can be between this look-up and the record.
            match node
                .storage
                .load_call(O::DESCRIPTOR.type_name, &activation.id, call_id)
                .await
            {
                Ok(Some(record))
                    if record.caller
                        != crate::access::Origin::caller(call.meta.origin.as_ref()) =>
                {
                    return Some(Err(Error::AccessDenied {
                        message: format!(
                            "reliable call `{call_id}` on {}/{} was made by another caller; its outcome is returned only to the caller that made it",
                            O::DESCRIPTOR.type_name,
                            activation.id
                        ),
                    }));
                }
                Ok(Some(record)) => {
                    crate::meters::bump(&node.meters.reliable_replays);
                    return Some(work.replay(record));
                }
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
        }
        let Slot::Active(object) = slot else {
            return None;
        };
        // Held apart from the work, which the method borrows mutably.
        let call_id = work.reliable().cloned();
        let mut ctx = self.context(node, activation, Some(call), call.deadline);
        ctx.call_id = call_id.as_ref();
        let outcome = CatchUnwind(work.run(Receiver::Mut(object), &ctx)).await;
        let had_effects = ctx.had_effects();
        let result = match outcome {
            Ok(result) => result,
            Err(message) => {
                self.discard(node, activation, slot);
                return Some(Err(Error::MethodPanicked {
                    target: Self::target(&activation.id, work.method_name()),
                    message,
                }));
            }
        };
        if !method_ran::<O, _>(work.method_name(), &result) {
            // Nothing changed, so nothing is written; an instance that this
            // bad call alone brought in does not stay for the idle timeout.
            if fresh {
                let _ = self.deactivate(node, activation, slot, false).await;
            }
            return Some(result);
        }
        if O::DESCRIPTOR.persistent {
            let record = work.record(&result).map(|mut record| {
                record.caller = crate::access::Origin::caller(call.meta.origin.as_ref());
                record
            });
            let commit = call.span.as_ref().and_then(|turn| {
                let hop = crate::trace::Hop::Commit {
                    type_name: O::DESCRIPTOR.type_name,
                    id: &activation.id,
                };
                turn.in_scope(|| hop.open(None))
            });
            let persisted = self.persist(node, activation, slot, record);
            let persisted = crate::trace::within(commit.as_ref().map(|c| &c.span), persisted);
            if let Err(error) = persisted.await {
                // A refused write means the turn took no effect; if it did
                // nothing outside the object either, it runs again where
                // the object is now (the instance is gone), within the
                // call's deadline, instead of failing the call.
                if matches!(error, Error::StaleOwner { .. }) && !had_effects && work.rerun() {
                    return None;
                }
                return Some(Err(error));
            }
        }
        Some(result)
    }
}

/// Who a turn is for and when it must be done by: everything about a call
/// except its work.
#[derive(Clone)]
pub(crate) struct TurnCall {
    pub(crate) id: Arc<str>,
    pub(crate) shard: u32,
    pub(crate) deadline: Instant,
    /// When the call arrived; stamps the object's idle clock.
    pub(crate) arrived: Instant,
    /// What the call carries: its chain, trace context and origin.
    pub(crate) meta: CallMeta,
    /// The turn's span, when the call is traced: entered wherever the turn
    /// runs, in its caller's task or in the task draining its object's
    /// queue.
    pub(crate) span: Option<Box<tracing::Span>>,
}

impl TurnCall {
    /// A turn of object `id` (in `shard`) for a call with `meta`.
    pub(crate) fn new(id: Arc<str>, shard: u32, due: Due, meta: CallMeta) -> Self {
        Self {
            id,
            shard,
            deadline: due.deadline,
            arrived: due.arrived,
            meta,
            span: None,
        }
    }
}

/// How a turn ended.
pub(crate) enum Turn<W, T> {
    /// It ran (or failed) here.
    Done(Result<T>),
    /// This node does not serve the object's shard: the work, untouched,
    /// and the call, for the router to send on.
    Moved(W, TurnCall),
}
