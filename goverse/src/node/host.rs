//! Hosting one object type on a node: turns, activation, deactivation,
//! timers and idle collection for every object of that type.

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
use crate::context::{ActivationScope, CallChain, Context};
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::message::Codec;
use crate::object::{BoxFuture, Invoke, Object, Receiver};
use crate::placement;
use crate::storage::{CallOutcome, CallRecord, StateWrite};
use crate::transport::{error_from_wire, error_to_wire};

/// The work of one turn: a typed call, an encoded call, or a bare activation.
pub(crate) trait Work<O>: Send + 'static {
    type Output: Send + 'static;
    fn mutates(&self) -> bool;
    fn method_name(&self) -> &'static str;
    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Output>>;

    /// The caller's id of a reliable call.
    fn reliable(&self) -> Option<&Arc<str>> {
        None
    }

    /// Takes one of the runs again this work may have after its turn's
    /// write was refused as stale; `false` when it has none (a typed call
    /// gave its request to the method).
    fn rerun(&mut self) -> bool {
        false
    }

    /// The lifecycle operation this work is, if it is one (not a call).
    fn lifecycle(&self) -> Option<crate::access::Lifecycle> {
        None
    }

    /// The record of what this turn returned, for a reliable call.
    fn record(&self, result: &Result<Self::Output>) -> Option<CallRecord> {
        let _ = result;
        None
    }

    /// What an earlier run of this reliable call returned, in this call's form.
    fn replay(&self, record: CallRecord) -> Result<Self::Output> {
        let _ = record;
        Err(Error::Internal("only reliable calls replay".into()))
    }
}

/// A call from a typed proxy on this node: no encoding at all.
pub(crate) struct TypedWork<O, Req, Resp> {
    pub(crate) method: usize,
    pub(crate) invoke: Invoke<O, Req, Resp>,
    pub(crate) request: Option<Req>,
}

impl<O: Object, Req: Send + 'static, Resp: Send + 'static> Work<O> for TypedWork<O, Req, Resp> {
    type Output = Resp;

    fn mutates(&self) -> bool {
        matches!(self.invoke, Invoke::Mut(_))
    }

    fn method_name(&self) -> &'static str {
        O::DESCRIPTOR
            .methods
            .get(self.method)
            .map_or("?", |m| m.name)
    }

    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Resp>> {
        let Some(request) = self.request.take() else {
            return Box::pin(std::future::ready(Err(Error::Internal(
                "a turn ran twice".into(),
            ))));
        };
        match (self.invoke, receiver) {
            (Invoke::Mut(invoke), Receiver::Mut(object)) => invoke(object, ctx, request),
            (Invoke::Ref(invoke), receiver) => invoke(receiver.into_ref(), ctx, request),
            (Invoke::Mut(_), Receiver::Ref(_)) => Box::pin(std::future::ready(Err(
                Error::Internal("a `&mut self` method got a shared turn".into()),
            ))),
        }
    }
}

/// A call by name with an encoded body (gate, remote node, tools).
pub(crate) struct EncodedWork {
    pub(crate) method: usize,
    pub(crate) mutates: bool,
    pub(crate) name: &'static str,
    pub(crate) codec: Codec,
    pub(crate) body: Vec<u8>,
    /// Set for a reliable call: the caller's call id.
    pub(crate) reliable: Option<Arc<str>>,
    /// How many more times the call may run after a write refused as
    /// stale (see [`Work::rerun`]).
    pub(crate) reruns: u8,
}

/// How many times an encoded call runs again, at most, after its write was
/// refused as stale: enough for a shard that moved and moves back.
pub(crate) const STALE_RERUNS: u8 = 2;

impl<O: Object> Work<O> for EncodedWork {
    type Output = Vec<u8>;

    fn mutates(&self) -> bool {
        // A reliable call looks up and records its outcome: that takes the
        // object to itself, whatever the method.
        self.mutates || self.reliable.is_some()
    }

    fn reliable(&self) -> Option<&Arc<str>> {
        self.reliable.as_ref()
    }

    fn rerun(&mut self) -> bool {
        if self.reruns == 0 {
            return false;
        }
        self.reruns -= 1;
        true
    }

    fn record(&self, result: &Result<Vec<u8>>) -> Option<CallRecord> {
        let call_id = self.reliable.clone()?;
        let outcome = match result {
            Ok(body) if self.codec == Codec::Protobuf => CallOutcome::Response(body.clone()),
            Ok(body) => {
                match O::transcode_response(self.method, self.codec, Codec::Protobuf, body) {
                    Ok(body) => CallOutcome::Response(body),
                    Err(error) => failure(&error),
                }
            }
            Err(error) => failure(error),
        };
        Some(CallRecord {
            call_id,
            method: self.name.to_string(),
            outcome,
            // Filled in by the turn, which knows the call's origin.
            caller: String::new(),
        })
    }

    fn replay(&self, record: CallRecord) -> Result<Vec<u8>> {
        if record.method != self.name {
            return Err(Error::CallIdReused {
                call_id: record.call_id.to_string(),
                target: format!("{}.{}", O::DESCRIPTOR.type_name, self.name),
                recorded: record.method,
            });
        }
        match record.outcome {
            CallOutcome::Response(body) if self.codec == Codec::Protobuf => Ok(body),
            CallOutcome::Response(body) => {
                O::transcode_response(self.method, Codec::Protobuf, self.codec, &body)
            }
            CallOutcome::Error { code, message } => {
                Err(error_from_wire(crate::transport::proto::ErrorReply {
                    code,
                    message,
                }))
            }
        }
    }

    fn method_name(&self) -> &'static str {
        self.name
    }

    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Vec<u8>>> {
        O::dispatch(receiver, ctx, self.method, self.codec, &self.body)
    }
}

/// Applies the node's access rules to a call (or a create or delete) of
/// an object of type `O`, by where it came from.
fn check_access<O: Object>(
    node: &NodeInner,
    call: &TurnCall,
    lifecycle: Option<crate::access::Lifecycle>,
    method: &str,
) -> Result<()> {
    let Some(rules) = &node.config.access_rules else {
        return Ok(());
    };
    let external = call.origin.as_ref().is_some_and(|o| o.external);
    match lifecycle {
        Some(operation) => {
            rules.check_lifecycle(O::DESCRIPTOR.type_name, &call.id, operation, external)
        }
        None => rules.check_call(O::DESCRIPTOR.type_name, &call.id, method, external),
    }
}

/// Loads an object's stored state for an owner at `fence`; `None` when
/// there is none (no row, or a claim's row holding no state).
///
/// A row stored at an older epoch is claimed first (its epoch raised to
/// ours, so a stale owner's later writes are refused) and read again, since
/// the stale owner may have written between the two; a row already at our
/// epoch or newer needs no claim, so a reactivation is one read. An object
/// with no row is not claimed here: its instance's first write claims it
/// (see [`TypeHost::store`]), so reading an id nobody stored writes nothing.
///
/// Claims go through the node's committer, so the claims of objects
/// activated together (a node taking over shards) share a transaction.
///
/// A row stored at a newer epoch than ours can only come from an earlier
/// incarnation of the cluster (epochs of one incarnation only grow, and a
/// node whose view is stale is refused by the coordinator): the shard's
/// epoch is raised past it first. Returns the fence the state was loaded
/// under.
async fn load_owned(
    node: &NodeInner,
    type_name: &'static str,
    id: &Arc<str>,
    (shard, mut fence): (u32, crate::storage::Fence),
    deadline: Instant,
) -> Result<(Option<crate::storage::StoredState>, crate::storage::Fence)> {
    let loaded = match node.storage.load(type_name, id).await? {
        // Nothing stored: claimed by the instance's first write, if any.
        None => None,
        Some(stored)
            if stored.epoch == fence.epoch
                || (stored.epoch > fence.epoch && shard == placement::NODE_PINNED) =>
        {
            Some(stored)
        }
        Some(stored) => {
            if stored.epoch > fence.epoch {
                fence = match node.raise_epoch(shard, stored.epoch + 1, deadline).await {
                    Ok(raised) => raised,
                    // The coordinator does not confirm this node as the
                    // owner: a newer owner wrote the object.
                    Err(refused) => {
                        tracing::debug!(%refused, object_id = %id, "the shard's epoch was not raised");
                        return Err(stale_owner(node, type_name, id, fence.epoch, stored.epoch));
                    }
                };
            }
            node.committer
                .claim(crate::storage::Claim {
                    type_name,
                    id: id.clone(),
                    fence,
                })
                .await?
        }
    };
    Ok((
        loaded.filter(|stored| stored.data != crate::storage::NO_STATE),
        fence,
    ))
}

/// A write (or load) of `type_name/id` at `epoch` refused because the
/// object is held at `current` by a newer owner; counted in the node's
/// stale writes.
fn stale_owner(node: &NodeInner, type_name: &str, id: &str, epoch: u64, current: u64) -> Error {
    node.stats.stale_write();
    Error::StaleOwner {
        target: format!("{type_name}/{id}"),
        epoch,
        current,
    }
}

/// The epoch of a shard's first owner: no older owner can write.
const FIRST_EPOCH: u64 = 1;

/// Whether a turn's method `method` of `O` ran: a request that did not
/// decode as its request type is refused by the dispatch before it.
fn method_ran<O: Object, T>(method: &str, result: &Result<T>) -> bool {
    let Err(Error::InvalidRequest { message_type, .. }) = result else {
        return true;
    };
    O::DESCRIPTOR
        .method(method)
        .is_none_or(|(_, descriptor)| descriptor.request != *message_type)
}

/// A recorded error outcome, as an error travels between nodes.
fn failure(error: &Error) -> CallOutcome {
    let wire = error_to_wire(error);
    // Text columns cannot hold U+0000 (PostgreSQL refuses it): one
    // method's error text must not fail the batch its record is in.
    let printable = |text: String| {
        if text.contains('\0') {
            text.replace('\0', "\u{FFFD}")
        } else {
            text
        }
    };
    CallOutcome::Error {
        code: printable(wire.code),
        message: printable(wire.message),
    }
}

/// Activates the object without calling a method (explicit create).
pub(crate) struct ActivateWork;

impl<O: Object> Work<O> for ActivateWork {
    type Output = ();

    fn mutates(&self) -> bool {
        true
    }

    fn method_name(&self) -> &'static str {
        "create"
    }

    fn lifecycle(&self) -> Option<crate::access::Lifecycle> {
        Some(crate::access::Lifecycle::Create)
    }

    fn run<'a>(
        &'a mut self,
        _receiver: Receiver<'a, O>,
        _ctx: &'a Context,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

pub(crate) struct TypeHost<O: Object> {
    node: Weak<NodeInner>,
    this: Weak<TypeHost<O>>,
    directory: Directory<Activation<O>>,
    idle_timeout: Duration,
}

impl<O: Object> TypeHost<O> {
    pub(crate) fn new(node: Weak<NodeInner>, default_idle_timeout: Duration) -> Arc<Self> {
        Arc::new_cyclic(|this| TypeHost {
            node,
            this: this.clone(),
            directory: Directory::new(),
            idle_timeout: O::DESCRIPTOR.idle_timeout.unwrap_or(default_idle_timeout),
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

    /// The refusal of a write by a stale instance.
    fn stale_write(node: &NodeInner, activation: &Activation<O>) -> Error {
        stale_owner(
            node,
            O::DESCRIPTOR.type_name,
            &activation.id,
            activation.epoch(),
            node.fence_for(activation.shard).epoch,
        )
    }

    fn target(id: &str, method: &str) -> String {
        format!("{}/{}.{}", O::DESCRIPTOR.type_name, id, method)
    }

    fn context(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        call: Option<&TurnCall>,
        deadline: Instant,
    ) -> Context {
        Context {
            node: node.clone(),
            type_name: O::DESCRIPTOR.type_name,
            id: activation.id.clone(),
            parent: call.and_then(|c| c.parent.clone()),
            deadline,
            scope: activation.clone(),
            trace: call.and_then(|c| c.trace.clone()),
            call_id: None,
            origin: call.and_then(|c| c.origin.clone()),
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
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
        mut work: W,
    ) -> Turn<W, W::Output> {
        if let Err(denied) = check_access::<O>(&node, &call, work.lifecycle(), work.method_name()) {
            return Turn::Done(Err(denied));
        }
        let arrived_ms = node.ms_at(call.arrived);
        loop {
            if !node.serves(call.shard) {
                return Turn::Moved(work);
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
                        Entry::Wait(response) => {
                            return response.await.unwrap_or_else(|_| {
                                Turn::Done(Err(Error::Unavailable(
                                    "the node dropped a queued turn".into(),
                                )))
                            });
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
                    .exclusive(&node, &activation, &mut guard, &mut work, &call, waited)
                    .await;
                let gone = matches!(&*guard, Slot::Gone);
                drop(guard);
                self.finish_exclusive(&node, permit, gone);
                match outcome {
                    Some(result) => return Turn::Done(result),
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
                        Box::pin(self.activate(&node, &activation, &mut write, call.deadline));
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
            if Self::is_stale(&node, &activation) {
                drop(guard);
                let mut write = activation.state.write().await;
                if matches!(&*write, Slot::Active(_)) && Self::is_stale(&node, &activation) {
                    self.drop_instance(&activation, &mut write);
                }
                continue;
            }
            let ctx = self.context(&node, &activation, Some(&call), call.deadline);
            let outcome = CatchUnwind(work.run(Receiver::Ref(object), &ctx)).await;
            drop(ctx);
            return Turn::Done(match outcome {
                Ok(result)
                    if activated_here && !method_ran::<O, _>(work.method_name(), &result) =>
                {
                    // A bad call alone brought the instance in: it goes.
                    drop(guard);
                    let mut write = activation.state.write().await;
                    if matches!(&*write, Slot::Active(_)) {
                        let _ = self.deactivate(&node, &activation, &mut write, false).await;
                    }
                    result
                }
                Ok(result) => result,
                Err(message) => {
                    drop(guard);
                    let mut write = activation.state.write().await;
                    self.discard(&node, &activation, &mut write);
                    Err(Error::MethodPanicked {
                        target: Self::target(&call.id, work.method_name()),
                        message,
                    })
                }
            });
        }
    }

    /// Drops a never-activated entry, so a later turn looks the id up anew.
    fn forget(&self, activation: &Arc<Activation<O>>, slot: &mut Slot<O>) {
        *slot = Slot::Gone;
        self.directory.remove_if_same(&activation.id, activation);
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

    /// Takes the right to run the activation's exclusive turns, or queues
    /// the work behind the task that has it.
    fn enter<W: Work<O>>(
        &self,
        activation: &Arc<Activation<O>>,
        call: &TurnCall,
        work: W,
        limit: usize,
    ) -> Entry<W, W::Output, O> {
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
            reply,
        }));
        Entry::Wait(response)
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
                    if record.caller != crate::access::Origin::caller(call.origin.as_ref()) =>
                {
                    return Some(Err(Error::AccessDenied {
                        message: format!(
                            "reliable call `{call_id}` on {}/{} was made by another caller; its outcome is returned only to the caller that made it",
                            O::DESCRIPTOR.type_name,
                            activation.id
                        ),
                    }));
                }
                Ok(Some(record)) => return Some(work.replay(record)),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
        }
        let Slot::Active(object) = slot else {
            return None;
        };
        let mut ctx = self.context(node, activation, Some(call), call.deadline);
        ctx.call_id = work.reliable().cloned();
        let outcome = CatchUnwind(work.run(Receiver::Mut(object), &ctx)).await;
        let had_effects = ctx.had_effects();
        drop(ctx);
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
                record.caller = crate::access::Origin::caller(call.origin.as_ref());
                record
            });
            if let Err(error) = self.persist(node, activation, slot, record).await {
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

    /// Makes a turn's changes durable as the type's policy says: before
    /// the reply (the default, and always for a reliable call, whose
    /// record must land with the state), or within the write-behind
    /// interval.
    async fn persist(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
        call: Option<CallRecord>,
    ) -> Result<()> {
        match O::DESCRIPTOR.write_behind {
            Some(interval) if call.is_none() => {
                self.schedule_flush(node, activation, interval);
                Ok(())
            }
            _ => self.commit(node, activation, slot, call).await,
        }
    }

    /// Saves a write-behind object's state `interval` after its first
    /// unsaved change. A failed save is retried every interval; a refused
    /// one (a newer owner) ends the instance.
    fn schedule_flush(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        interval: Duration,
    ) {
        if activation.flush_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(host) = self.this.upgrade() else {
            return;
        };
        let weak_node = Arc::downgrade(node);
        let weak_activation = Arc::downgrade(activation);
        node.runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let (Some(node), Some(activation)) =
                    (weak_node.upgrade(), weak_activation.upgrade())
                else {
                    return;
                };
                let mut guard = activation.state.write().await;
                if !activation.flush_pending.load(Ordering::Acquire) {
                    return; // saved meanwhile (a reliable call, a deactivation)
                }
                let Slot::Active(object) = &mut *guard else {
                    return;
                };
                match host.store(&node, &activation, object, None).await {
                    Ok(()) => return,
                    Err(error @ (Error::StaleOwner { .. } | Error::InvalidState { .. })) => {
                        tracing::warn!(
                            object_type = O::DESCRIPTOR.type_name,
                            object_id = %activation.id,
                            %error,
                            "write-behind save refused for good; activation dropped"
                        );
                        host.drop_instance(&activation, &mut guard);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(
                            object_type = O::DESCRIPTOR.type_name,
                            object_id = %activation.id,
                            %error,
                            "write-behind save failed; trying again after the interval"
                        );
                        activation.flush_pending.store(true, Ordering::Release);
                    }
                }
            }
        });
    }

    /// Makes a persistent object's state durable before its turn is
    /// answered, through the node's group committer, with the record of
    /// the reliable call the turn ran, if any. If that fails, the instance
    /// (which holds what could not be stored) is dropped: the next call
    /// starts from the last durable state.
    async fn commit(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
        call: Option<CallRecord>,
    ) -> Result<()> {
        let Slot::Active(object) = slot else {
            return Ok(());
        };
        if let Err(error) = self.store(node, activation, object, call).await {
            tracing::warn!(
                object_type = O::DESCRIPTOR.type_name,
                object_id = %activation.id,
                %error,
                "state could not be made durable; the call fails and the activation is dropped"
            );
            self.drop_instance(activation, slot);
            return Err(error);
        }
        Ok(())
    }

    /// Saves `object`'s state through the committer, fenced by the epoch
    /// it was loaded under (nothing to do for a type that is not
    /// persistent). A stale instance's write is refused here already.
    async fn store(
        &self,
        node: &Arc<NodeInner>,
        activation: &Activation<O>,
        object: &O,
        call: Option<CallRecord>,
    ) -> Result<()> {
        let Some(state) = object.save_state() else {
            return Ok(());
        };
        // What is saved now is the whole state: a pending write-behind
        // flush has nothing left to do.
        activation.flush_pending.store(false, Ordering::Release);
        if Self::is_stale(node, activation) {
            return Err(Self::stale_write(node, activation));
        }
        let data = state.map_err(|error| match error {
            Error::InvalidState { reason, .. } => Error::InvalidState {
                target: format!("{}/{}", O::DESCRIPTOR.type_name, activation.id),
                reason,
            },
            other => other,
        })?;
        let fence = crate::storage::Fence {
            epoch: activation.epoch(),
        };
        if activation.unwritten.load(Ordering::Relaxed) && fence.epoch > FIRST_EPOCH {
            self.claim_before_first_write(node, activation, fence)
                .await?;
        }
        let write = StateWrite {
            type_name: O::DESCRIPTOR.type_name,
            id: activation.id.clone(),
            data,
            fence,
            call,
        };
        let saved = node.committer.save(write).await;
        match &saved {
            Ok(()) => activation.unwritten.store(false, Ordering::Relaxed),
            Err(Error::StaleOwner { .. }) => node.stats.stale_write(),
            Err(_) => {}
        }
        saved
    }

    /// Claims an object that had no row when its instance was loaded,
    /// before the instance first stores it: an older owner that still
    /// holds the object is fenced out from then on. If that owner stored
    /// the object meanwhile, this instance ran on a state that is not the
    /// object's: the write is refused as stale (the call may run again on
    /// a fresh instance, which loads what the older owner stored).
    async fn claim_before_first_write(
        &self,
        node: &Arc<NodeInner>,
        activation: &Activation<O>,
        fence: crate::storage::Fence,
    ) -> Result<()> {
        let claimed = node
            .committer
            .claim(crate::storage::Claim {
                type_name: O::DESCRIPTOR.type_name,
                id: activation.id.clone(),
                fence,
            })
            .await?;
        match claimed {
            Some(stored)
                if stored.data != crate::storage::NO_STATE || stored.epoch > fence.epoch =>
            {
                Err(stale_owner(
                    node,
                    O::DESCRIPTOR.type_name,
                    &activation.id,
                    fence.epoch,
                    stored.epoch,
                ))
            }
            _ => Ok(()),
        }
    }

    /// Ends an instance that must not live on: its timers stop and the id
    /// is looked up afresh by the next call.
    fn drop_instance(&self, activation: &Arc<Activation<O>>, slot: &mut Slot<O>) {
        *slot = Slot::Gone;
        activation.stop_timers();
        self.directory.remove_if_same(&activation.id, activation);
    }

    /// After the inline exclusive turn: release the turns, or hand the
    /// write lock to a task that drains what queued meanwhile, so the
    /// caller gets its reply without waiting for the others.
    fn finish_exclusive(&self, node: &Arc<NodeInner>, permit: DrainPermit<O>, gone: bool) {
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
    async fn drain(self: Arc<Self>, node: Arc<NodeInner>, permit: DrainPermit<O>) {
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
    fn reroute_queued(&self, node: &Arc<NodeInner>, permit: DrainPermit<O>) {
        let queued = permit.release();
        let Some(host) = self.this.upgrade() else {
            return;
        };
        for turn in queued {
            turn.reroute(host.clone(), node.clone());
        }
    }

    /// Creates or loads the instance and runs `on_activate`. On failure the
    /// activation is discarded so the next call starts afresh.
    async fn activate(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
        deadline: Instant,
    ) -> Result<()> {
        match self.load_and_start(node, activation, deadline).await {
            Ok(object) => {
                *slot = Slot::Active(object);
                node.stats.activated();
                Ok(())
            }
            Err(source) => {
                *slot = Slot::Gone;
                activation.stop_timers();
                self.directory.remove_if_same(&activation.id, activation);
                Err(match source {
                    // Not a failure of the object: a newer owner has it.
                    stale @ Error::StaleOwner { .. } => stale,
                    source => Error::ActivationFailed {
                        target: format!("{}/{}", O::DESCRIPTOR.type_name, activation.id),
                        source: Box::new(source),
                    },
                })
            }
        }
    }

    async fn load_and_start(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        deadline: Instant,
    ) -> Result<O> {
        // The epoch is read before the state: if the shard moves meanwhile,
        // the instance is stale from the start and never writes. (A load may
        // raise it, past an earlier cluster's writes.)
        let fence = node.fence_for(activation.shard);
        let (mut object, fence) = if O::DESCRIPTOR.persistent {
            let (stored, fence) = load_owned(
                node,
                O::DESCRIPTOR.type_name,
                &activation.id,
                (activation.shard, fence),
                deadline,
            )
            .await?;
            activation
                .unwritten
                .store(stored.is_none(), Ordering::Relaxed);
            let object = match stored {
                Some(stored) => O::load_state(&stored.data)?,
                None => O::create(),
            };
            (object, fence)
        } else {
            (O::create(), fence)
        };
        activation.set_epoch(fence.epoch);
        let ctx = self.context(node, activation, None, deadline);
        match CatchUnwind(object.on_activate(&ctx)).await {
            Ok(result) => result?,
            Err(message) => {
                node.stats.panicked();
                return Err(Error::MethodPanicked {
                    target: Self::target(&activation.id, "on_activate"),
                    message,
                });
            }
        }
        drop(ctx);
        Ok(object)
    }

    /// Drops an activation whose state can no longer be trusted (a panic).
    fn discard(&self, node: &NodeInner, activation: &Arc<Activation<O>>, slot: &mut Slot<O>) {
        node.stats.panicked();
        self.drop_instance(activation, slot);
        tracing::warn!(
            object_type = O::DESCRIPTOR.type_name,
            object_id = %activation.id,
            "object method panicked; activation discarded"
        );
    }

    /// Runs `on_deactivate`, saves a persistent object's state (unless
    /// `save` is false, as for a delete) and removes the activation.
    ///
    /// If the save fails the object stays active, so nothing is lost; the
    /// error is returned and a later collection tries again.
    async fn deactivate(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
        save: bool,
    ) -> Result<()> {
        activation.stop_timers();
        if let Slot::Active(object) = slot {
            let deadline = Instant::now() + node.config.call_timeout;
            let ctx = self.context(node, activation, None, deadline);
            match CatchUnwind(object.on_deactivate(&ctx)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(
                    object_type = O::DESCRIPTOR.type_name,
                    object_id = %activation.id,
                    %error,
                    "on_deactivate failed"
                ),
                Err(message) => {
                    node.stats.panicked();
                    tracing::warn!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        message,
                        "on_deactivate panicked"
                    );
                }
            }
            drop(ctx);
            // An instance that never stored anything, with nothing pending,
            // has nothing to save: a read of an id nobody stored leaves no
            // row behind.
            let nothing_stored = activation.unwritten.load(Ordering::Relaxed)
                && !activation.flush_pending.load(Ordering::Acquire);
            if save
                && !nothing_stored
                && let Err(error) = self.store(node, activation, object, None).await
            {
                if let Error::StaleOwner { .. } | Error::InvalidState { .. } = error {
                    // A newer owner has the object, or its state can never
                    // be stored: this instance must not live on.
                    tracing::warn!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        %error,
                        "write refused for good; activation dropped"
                    );
                    self.drop_instance(activation, slot);
                }
                return Err(error);
            }
            node.stats.deactivated();
        }
        *slot = Slot::Gone;
        self.directory.remove_if_same(&activation.id, activation);
        Ok(())
    }

    async fn timer_turn(&self, activation: &Arc<Activation<O>>, timer: &TimerControl) -> bool {
        let Some(node) = self.node.upgrade() else {
            return false;
        };
        let mut guard = activation.state.write().await;
        if timer.stopped.load(Ordering::Acquire) {
            return false;
        }
        if Self::is_stale(&node, activation) {
            self.drop_instance(activation, &mut guard);
            return false;
        }
        let Slot::Active(object) = &mut *guard else {
            return false;
        };
        let deadline = Instant::now() + node.config.call_timeout;
        let ctx = self.context(&node, activation, None, deadline);
        let outcome = CatchUnwind(object.on_timer(&ctx, &timer.name)).await;
        drop(ctx);
        if outcome.is_ok() && O::DESCRIPTOR.persistent {
            // A timer turn is a turn: what it changed is made durable too.
            if self
                .persist(&node, activation, &mut guard, None)
                .await
                .is_err()
            {
                return false;
            }
        }
        match outcome {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(
                    object_type = O::DESCRIPTOR.type_name,
                    object_id = %activation.id,
                    timer = %timer.name,
                    %error,
                    "timer callback failed"
                );
                true
            }
            Err(_message) => {
                self.discard(&node, activation, &mut guard);
                false
            }
        }
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
    /// The chain of turns waiting on this call (for cycle detection).
    pub(crate) parent: Option<Arc<CallChain>>,
    /// The W3C trace context the call carries.
    pub(crate) trace: Option<Arc<str>>,
    /// Where the call came from (`None`: code on a node).
    pub(crate) origin: Option<Arc<crate::access::Origin>>,
}

impl TurnCall {
    /// A turn of object `id` (in `shard`) for a call with `meta`, due by
    /// `deadline`, that arrived at `arrived`.
    pub(crate) fn new(
        id: Arc<str>,
        shard: u32,
        (deadline, arrived): (Instant, Instant),
        (parent, trace, origin): super::routing::CallMeta,
    ) -> Self {
        Self {
            id,
            shard,
            deadline,
            arrived,
            parent,
            trace,
            origin,
        }
    }

    /// What travels with the call to another node.
    pub(crate) fn meta(&self) -> super::routing::CallMetaRef<'_> {
        (
            self.parent.as_ref(),
            self.trace.as_ref(),
            self.origin.as_ref(),
        )
    }
}

/// How a turn ended.
pub(crate) enum Turn<W, T> {
    /// It ran (or failed) here.
    Done(Result<T>),
    /// This node does not serve the object's shard: the work, untouched.
    Moved(W),
}

/// What [`TypeHost::enter`] decided.
enum Entry<W, T, O: Object> {
    /// Run the turn now, then whatever queues behind it.
    Run(W, DrainPermit<O>),
    /// Queued; the reply comes from the task running the turns.
    Wait(oneshot::Receiver<Turn<W, T>>),
    /// The mailbox is full: the call is refused.
    Full,
}

/// Exclusive turns one drain runs before letting waiting lock holders in.
const DRAIN_BATCH: usize = 64;

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

struct Queued<W: Work<O>, O: Object> {
    call: TurnCall,
    work: W,
    reply: oneshot::Sender<Turn<W, W::Output>>,
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
                    let _ = self.reply.send(Turn::Done(result));
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
            let _ = reply.send(outcome);
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

/// Stops a timer without cancelling a timer turn half-way.
pub(crate) struct TimerControl {
    name: Box<str>,
    stopped: AtomicBool,
    wake: Notify,
}

impl TimerControl {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

impl<O: Object> ActivationScope for Activation<O> {
    fn start_timer(self: Arc<Self>, name: &str, period: Duration) {
        let Some(node) = self.host.upgrade().and_then(|host| host.node.upgrade()) else {
            return;
        };
        let period = period.max(Duration::from_millis(1));
        let control = Arc::new(TimerControl {
            name: name.into(),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let activation = Arc::downgrade(&self);
        let task_control = control.clone();
        node.runtime.spawn(async move {
            let control = task_control;
            let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = control.wake.notified() => {}
                }
                if control.stopped.load(Ordering::Acquire) {
                    break;
                }
                let Some(activation) = activation.upgrade() else {
                    break;
                };
                let Some(host) = activation.host.upgrade() else {
                    break;
                };
                if !host.timer_turn(&activation, &control).await {
                    break;
                }
            }
        });
        self.add_timer(control);
    }

    fn stop_timer(&self, name: &str) -> bool {
        self.remove_timer(name)
    }
}

/// The type-erased face of a [`TypeHost`], for calls by name and node chores.
pub(crate) trait ErasedHost: Send + Sync {
    fn descriptor(&self) -> &'static ObjectDescriptor;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn idle_timeout(&self) -> Duration;
    fn len(&self) -> usize;
    fn call_encoded(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
        work: EncodedWork,
    ) -> BoxFuture<'static, Turn<EncodedWork, Vec<u8>>>;
    fn create(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
    ) -> BoxFuture<'static, Turn<ActivateWork, ()>>;
    fn delete(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
    ) -> BoxFuture<'static, Result<()>>;
    fn collect_idle(self: Arc<Self>, node: Arc<NodeInner>) -> BoxFuture<'static, usize>;
    /// Deactivates every object in a shard of `shards` (every object, if
    /// `None`), saving state if `save` (a handoff or shutdown), or
    /// discarding it (ownership lost).
    fn deactivate_shards(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        shards: Option<Arc<Vec<bool>>>,
        save: bool,
    ) -> BoxFuture<'static, ()>;
}

impl<O: Object> ErasedHost for TypeHost<O> {
    fn descriptor(&self) -> &'static ObjectDescriptor {
        O::DESCRIPTOR
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn len(&self) -> usize {
        self.directory.len()
    }

    fn call_encoded(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
        work: EncodedWork,
    ) -> BoxFuture<'static, Turn<EncodedWork, Vec<u8>>> {
        Box::pin(self.run_turn(node, call, work))
    }

    fn create(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
    ) -> BoxFuture<'static, Turn<ActivateWork, ()>> {
        Box::pin(self.run_turn(node, call, ActivateWork))
    }

    fn delete(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            check_access::<O>(
                &node,
                &call,
                Some(crate::access::Lifecycle::Delete),
                "delete",
            )?;
            loop {
                if !node.serves(call.shard) {
                    return Err(node.moved(call.shard));
                }
                // The delete takes the object like an exclusive turn: calls
                // that arrive meanwhile wait, then find it gone and start
                // from the tombstone, never from the deleted state.
                let activation = self.activation(&call.id, call.shard, node.now_ms());
                let mut guard = activation.state.write().await;
                if matches!(&*guard, Slot::Gone) {
                    continue;
                }
                let deleted = if !node.serves(call.shard) {
                    Err(node.moved(call.shard))
                } else if O::DESCRIPTOR.persistent {
                    // A tombstone (a row holding no state) at this owner's
                    // epoch, not a missing row: a stale owner's later write
                    // is refused, and the object loads as new.
                    let tombstone = StateWrite {
                        type_name: O::DESCRIPTOR.type_name,
                        id: call.id.clone(),
                        data: crate::storage::NO_STATE.to_vec(),
                        fence: node.fence_for(call.shard),
                        call: None,
                    };
                    let written = node.committer.save(tombstone).await;
                    if let Err(Error::StaleOwner { .. }) = &written {
                        node.stats.stale_write();
                    }
                    written
                } else {
                    Ok(())
                };
                // An entry made for the delete goes either way; a live
                // instance goes, unsaved, once its state is deleted.
                if matches!(&*guard, Slot::Fresh) {
                    self.forget(&activation, &mut guard);
                } else if deleted.is_ok() {
                    self.deactivate(&node, &activation, &mut guard, false)
                        .await?;
                }
                return deleted;
            }
        })
    }

    fn collect_idle(self: Arc<Self>, node: Arc<NodeInner>) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
            let is_idle = |activation: &Activation<O>| {
                node.now_ms().saturating_sub(activation.last_used()) >= idle_ms
            };
            let mut collected = 0;
            for activation in self.directory.collect(is_idle) {
                // A turn running or queued means the object is not idle.
                let Ok(mut guard) = activation.state.try_write() else {
                    continue;
                };
                if !is_idle(&activation) {
                    continue;
                }
                match self.deactivate(&node, &activation, &mut guard, true).await {
                    Ok(()) => collected += 1,
                    Err(error) => tracing::warn!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        %error,
                        "idle deactivation failed; the object stays active"
                    ),
                }
            }
            collected
        })
    }

    fn deactivate_shards(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        shards: Option<Arc<Vec<bool>>>,
        save: bool,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let count = node.config.shard_count;
            let in_set = |activation: &Activation<O>| match &shards {
                None => true,
                Some(shards) => shards
                    .get(placement::shard_for(&activation.id, count) as usize)
                    .copied()
                    .unwrap_or(false),
            };
            for activation in self.directory.collect(in_set) {
                let wait = node.config.call_timeout;
                let Ok(mut guard) = tokio::time::timeout(wait, activation.state.write()).await
                else {
                    tracing::warn!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        "a turn did not finish in time; object deactivated without saving"
                    );
                    activation.stop_timers();
                    self.directory.remove_if_same(&activation.id, &activation);
                    continue;
                };
                if !save {
                    activation.stop_timers();
                    *guard = Slot::Gone;
                    self.directory.remove_if_same(&activation.id, &activation);
                    continue;
                }
                if let Err(error) = self.deactivate(&node, &activation, &mut guard, true).await {
                    tracing::error!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        %error,
                        "saving state before the object left this node failed"
                    );
                    *guard = Slot::Gone;
                    self.directory.remove_if_same(&activation.id, &activation);
                }
            }
        })
    }
}
