//! The host of one object type behind a type-erased trait, as the node
//! keeps every registered type.

use super::*;

/// The type-erased face of a [`TypeHost`], for calls by name and node chores.
pub(crate) trait ErasedHost: Send + Sync {
    fn descriptor(&self) -> &'static ObjectDescriptor;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn idle_timeout(&self) -> Duration;
    fn len(&self) -> usize;
    /// Exclusive calls waiting in the mailboxes of this type's objects.
    #[cfg(feature = "ops")]
    fn queued(&self) -> usize;
    /// The totals of each method's calls served, by method name; `None`
    /// when the node does not count calls.
    #[cfg(feature = "ops")]
    fn call_totals(&self) -> Option<Vec<(&'static str, crate::node::call_metrics::MethodTotals)>>;
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

    #[cfg(feature = "ops")]
    fn queued(&self) -> usize {
        self.directory
            .sum(|activation| activation.mailbox().queue.len())
    }

    #[cfg(feature = "ops")]
    fn call_totals(&self) -> Option<Vec<(&'static str, crate::node::call_metrics::MethodTotals)>> {
        let calls = self.calls.as_ref()?;
        Some(
            O::DESCRIPTOR
                .methods
                .iter()
                .enumerate()
                .filter_map(|(index, method)| Some((method.name, calls.totals(index)?)))
                .collect(),
        )
    }

    fn call_encoded(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
        work: EncodedWork,
    ) -> BoxFuture<'static, Turn<EncodedWork, Vec<u8>>> {
        Box::pin(async move { self.run_turn(&node, call, work).await })
    }

    fn create(
        self: Arc<Self>,
        node: Arc<NodeInner>,
        call: TurnCall,
    ) -> BoxFuture<'static, Turn<ActivateWork, ()>> {
        Box::pin(async move { self.run_turn(&node, call, ActivateWork).await })
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
