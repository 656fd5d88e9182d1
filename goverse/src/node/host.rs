//! Hosting one object type on a node: turns, activation, deactivation,
//! timers and idle collection for every object of that type.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedRwLockWriteGuard};
use tokio::time::{Instant, MissedTickBehavior};

use super::NodeInner;
use super::activation::{Activation, CatchUnwind, Slot};
use super::directory::Directory;
use crate::context::{ActivationScope, CallChain, Context};
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::message::Codec;
use crate::object::{BoxFuture, Invoke, Object, Receiver};

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
}

impl<O: Object> Work<O> for EncodedWork {
    type Output = Vec<u8>;

    fn mutates(&self) -> bool {
        self.mutates
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

    fn activation(&self, node: &NodeInner, id: &Arc<str>) -> Arc<Activation<O>> {
        self.directory.get_or_insert_with(id, || {
            Activation::new(id.clone(), self.this.clone(), node.now_ms())
        })
    }

    fn target(id: &str, method: &str) -> String {
        format!("{}/{}.{}", O::DESCRIPTOR.type_name, id, method)
    }

    fn context(
        &self,
        node: &Arc<NodeInner>,
        activation: &Arc<Activation<O>>,
        parent: Option<Arc<CallChain>>,
        deadline: Instant,
    ) -> Context {
        Context {
            node: node.clone(),
            type_name: O::DESCRIPTOR.type_name,
            id: activation.id.clone(),
            parent,
            deadline,
            scope: activation.clone(),
        }
    }

    /// Runs one turn of object `id`, activating it first if needed.
    ///
    /// Exclusive work takes the write side of the turn lock, shared work the
    /// read side; the lock is fair, so turns start in arrival order.
    pub(crate) async fn run_turn<W: Work<O>>(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
        mut work: W,
        deadline: Instant,
        parent: Option<Arc<CallChain>>,
    ) -> Result<W::Output> {
        loop {
            let activation = self.activation(&node, &id);
            activation.touch(node.now_ms());
            if work.mutates() {
                let mut guard = activation.state.clone().write_owned().await;
                if let Err(expired) = self.check_deadline(&id, &work, deadline) {
                    // Leave no never-activated entry behind.
                    if matches!(&*guard, Slot::Fresh) {
                        *guard = Slot::Gone;
                        self.directory.remove_if_same(&activation.id, &activation);
                    }
                    return Err(expired);
                }
                match &*guard {
                    Slot::Gone => continue,
                    Slot::Fresh => {
                        self.activate(&node, &activation, &mut guard, deadline)
                            .await?
                    }
                    Slot::Active(_) => {}
                }
                let Slot::Active(object) = &mut *guard else {
                    continue;
                };
                let ctx = self.context(&node, &activation, parent.clone(), deadline);
                let outcome = CatchUnwind(work.run(Receiver::Mut(object), &ctx)).await;
                drop(ctx);
                return match outcome {
                    Ok(result) => result,
                    Err(message) => {
                        self.discard(&node, &activation, &mut guard);
                        Err(Error::MethodPanicked {
                            target: Self::target(&id, work.method_name()),
                            message,
                        })
                    }
                };
            }

            let mut guard = activation.state.clone().read_owned().await;
            self.check_deadline(&id, &work, deadline)?;
            if matches!(&*guard, Slot::Fresh) {
                drop(guard);
                let mut write = activation.state.clone().write_owned().await;
                if matches!(&*write, Slot::Fresh) {
                    self.activate(&node, &activation, &mut write, deadline)
                        .await?;
                }
                guard = write.downgrade();
            }
            let Slot::Active(object) = &*guard else {
                continue;
            };
            let ctx = self.context(&node, &activation, parent.clone(), deadline);
            let outcome = CatchUnwind(work.run(Receiver::Ref(object), &ctx)).await;
            drop(ctx);
            return match outcome {
                Ok(result) => result,
                Err(message) => {
                    drop(guard);
                    let mut write = activation.state.clone().write_owned().await;
                    self.discard(&node, &activation, &mut write);
                    Err(Error::MethodPanicked {
                        target: Self::target(&id, work.method_name()),
                        message,
                    })
                }
            };
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
                Err(Error::ActivationFailed {
                    target: format!("{}/{}", O::DESCRIPTOR.type_name, activation.id),
                    source: Box::new(source),
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
        let mut object = match O::DESCRIPTOR.persistent {
            true => match node
                .storage
                .load(O::DESCRIPTOR.type_name, &activation.id)
                .await?
            {
                Some(stored) => O::load_state(&stored.data)?,
                None => O::create(),
            },
            false => O::create(),
        };
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
        *slot = Slot::Gone;
        activation.stop_timers();
        self.directory.remove_if_same(&activation.id, activation);
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
        mut guard: OwnedRwLockWriteGuard<Slot<O>>,
        save: bool,
    ) -> Result<()> {
        activation.stop_timers();
        if let Slot::Active(object) = &mut *guard {
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
            if save && let Some(state) = object.save_state() {
                let fence = node.fence_for(&activation.id);
                let saved = match state {
                    Ok(data) => {
                        node.storage
                            .save(O::DESCRIPTOR.type_name, &activation.id, &data, fence)
                            .await
                    }
                    Err(error) => Err(error),
                };
                saved?;
            }
            node.stats.deactivated();
        }
        *guard = Slot::Gone;
        self.directory.remove_if_same(&activation.id, activation);
        Ok(())
    }

    async fn timer_turn(&self, activation: &Arc<Activation<O>>, timer: &TimerControl) -> bool {
        let Some(node) = self.node.upgrade() else {
            return false;
        };
        let mut guard = activation.state.clone().write_owned().await;
        if timer.stopped.load(Ordering::Acquire) {
            return false;
        }
        let Slot::Active(object) = &mut *guard else {
            return false;
        };
        let deadline = Instant::now() + node.config.call_timeout;
        let ctx = self.context(&node, activation, None, deadline);
        let outcome = CatchUnwind(object.on_timer(&ctx, &timer.name)).await;
        drop(ctx);
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
    #[allow(clippy::too_many_arguments)]
    fn call_encoded(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
        work: EncodedWork,
        deadline: Instant,
        parent: Option<Arc<CallChain>>,
    ) -> BoxFuture<'static, Result<Vec<u8>>>;
    fn create(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<()>>;
    fn delete(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
    ) -> BoxFuture<'static, Result<()>>;
    fn collect_idle(self: Arc<Self>, node: Arc<NodeInner>) -> BoxFuture<'static, usize>;
    fn deactivate_all(self: Arc<Self>, node: Arc<NodeInner>) -> BoxFuture<'static, ()>;
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
        id: Arc<str>,
        work: EncodedWork,
        deadline: Instant,
        parent: Option<Arc<CallChain>>,
    ) -> BoxFuture<'static, Result<Vec<u8>>> {
        Box::pin(self.run_turn(node, id, work, deadline, parent))
    }

    fn create(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.run_turn(node, id, ActivateWork, deadline, None))
    }

    fn delete(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        id: Arc<str>,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            while let Some(activation) = self.directory.get(&id) {
                let guard = activation.state.clone().write_owned().await;
                if matches!(&*guard, Slot::Gone) {
                    continue;
                }
                self.deactivate(&node, &activation, guard, false).await?;
            }
            if O::DESCRIPTOR.persistent {
                let fence = node.fence_for(&id);
                node.storage
                    .delete(O::DESCRIPTOR.type_name, &id, fence)
                    .await?;
            }
            Ok(())
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
                let Ok(guard) = activation.state.clone().try_write_owned() else {
                    continue;
                };
                if !is_idle(&activation) {
                    continue;
                }
                match self.deactivate(&node, &activation, guard, true).await {
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

    fn deactivate_all(self: Arc<Self>, node: Arc<NodeInner>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            for activation in self.directory.collect(|_| true) {
                let wait = node.config.call_timeout;
                let Ok(guard) =
                    tokio::time::timeout(wait, activation.state.clone().write_owned()).await
                else {
                    tracing::warn!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        "a turn did not finish before shutdown; object not saved"
                    );
                    continue;
                };
                if let Err(error) = self.deactivate(&node, &activation, guard, true).await {
                    tracing::error!(
                        object_type = O::DESCRIPTOR.type_name,
                        object_id = %activation.id,
                        %error,
                        "saving state at shutdown failed"
                    );
                }
            }
        })
    }
}
