//! Activation and deactivation of one object: load and `on_activate`,
//! `on_deactivate` and the save that ends it, and dropping an instance.

use super::persist::load_owned;
use super::*;

impl<O: Object> TypeHost<O> {
    /// Drops a never-activated entry, so a later turn looks the id up anew.
    pub(super) fn forget(&self, activation: &Arc<Activation<O>>, slot: &mut Slot<O>) {
        *slot = Slot::Gone;
        self.directory.remove_if_same(&activation.id, activation);
    }

    /// Ends an instance that must not live on: its timers stop and the id
    /// is looked up afresh by the next call.
    pub(super) fn drop_instance(&self, activation: &Arc<Activation<O>>, slot: &mut Slot<O>) {
        *slot = Slot::Gone;
        activation.stop_timers();
        self.directory.remove_if_same(&activation.id, activation);
    }

    /// Creates or loads the instance and runs `on_activate`. On failure the
    /// activation is discarded so the next call starts afresh.
    pub(super) async fn activate(
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

    pub(super) async fn load_and_start(
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
        Ok(object)
    }

    /// Drops an activation whose state can no longer be trusted (a panic).
    pub(super) fn discard(
        &self,
        node: &NodeInner,
        activation: &Arc<Activation<O>>,
        slot: &mut Slot<O>,
    ) {
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
    pub(super) async fn deactivate(
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
}
