//! Persistence of an object's state: the fenced load that claims, the
//! save after a turn (now or write-behind) through the committer.

use super::*;

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
pub(super) async fn load_owned(
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
pub(super) fn stale_owner(
    node: &NodeInner,
    type_name: &str,
    id: &str,
    epoch: u64,
    current: u64,
) -> Error {
    node.stats.stale_write();
    Error::StaleOwner {
        target: format!("{type_name}/{id}"),
        epoch,
        current,
    }
}

/// The epoch of a shard's first owner: no older owner can write.
pub(super) const FIRST_EPOCH: u64 = 1;

impl<O: Object> TypeHost<O> {
    /// The refusal of a write by a stale instance.
    pub(super) fn stale_write(node: &NodeInner, activation: &Activation<O>) -> Error {
        stale_owner(
            node,
            O::DESCRIPTOR.type_name,
            &activation.id,
            activation.epoch(),
            node.fence_for(activation.shard).epoch,
        )
    }

    /// Makes a turn's changes durable as the type's policy says: before
    /// the reply (the default, and always for a reliable call, whose
    /// record must land with the state), or within the write-behind
    /// interval.
    pub(super) async fn persist(
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
    pub(super) fn schedule_flush(
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
    pub(super) async fn commit(
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
    pub(super) async fn store(
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
    pub(super) async fn claim_before_first_write(
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
}
