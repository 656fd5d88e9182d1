//! Following the cluster's shard map: a node starts serving the shards it
//! owns, drains and hands over the shards that move away, and drops the
//! objects of shards it lost without a handoff (its lease lapsed and the
//! shards went to others).
//!
//! Serving is one atomic per shard (epoch and an admitting flag), so the
//! call path reads it without locks. Draining a shard: stop admitting its
//! calls (callers wait and reroute), let running turns finish, deactivate
//! its objects saving their state under the shard's epoch, then hand the
//! shard over through the coordinator, which gives it to its target with
//! the epoch increased.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, watch};

use super::{ADMITTING, NodeInner};
use crate::cluster::ClusterView;
use crate::sync::MutexExt;

/// Shards on their way out of this node.
#[derive(Default)]
struct Leaving {
    /// Being drained, or handed over, right now.
    busy: HashSet<u32>,
    /// Drained; the handoff has not landed yet (it is retried).
    drained: HashSet<u32>,
}

/// Applies the current view now, so a node serves its shards from the
/// moment it starts, then follows every change.
pub(super) fn start(node: &Arc<NodeInner>, mut view: watch::Receiver<Arc<ClusterView>>) {
    let weak = Arc::downgrade(node);
    let leaving: Arc<Mutex<Leaving>> = Arc::default();
    let poke = Arc::new(Notify::new());
    let current = view.borrow_and_update().clone();
    apply(node, &weak, &current, &leaving, &poke);
    let task = node.runtime.spawn(async move {
        let mut before = current;
        loop {
            tokio::select! {
                changed = view.changed() => if changed.is_err() { break },
                () = poke.notified() => {}
            }
            let current = view.borrow_and_update().clone();
            let Some(node) = weak.upgrade() else {
                break;
            };
            count_failovers(&node, &before, &current);
            apply(&node, &weak, &current, &leaving, &poke);
            before = current;
        }
    });
    node.add_background(task);
}

/// Counts the nodes that were in the cluster `before` and are gone from
/// it `after` without having said they were leaving: their lease ran out.
fn count_failovers(node: &NodeInner, before: &ClusterView, after: &ClusterView) {
    if Arc::ptr_eq(&before.nodes, &after.nodes) {
        return;
    }
    let failed = before
        .nodes
        .iter()
        .filter(|(id, info)| {
            !info.leaving && !info.draining && &***id != node.id() && !after.nodes.contains_key(*id)
        })
        .count();
    if failed > 0 {
        node.meters
            .failovers
            .fetch_add(failed as u64, Ordering::Relaxed);
    }
}

/// Brings the serving table in line with `view`.
fn apply(
    node: &Arc<NodeInner>,
    weak: &Weak<NodeInner>,
    view: &ClusterView,
    leaving: &Arc<Mutex<Leaving>>,
    poke: &Arc<Notify>,
) {
    if view.shards.is_empty() || node.shutting_down.load(Ordering::SeqCst) {
        return;
    }
    let me = node.id();
    let mut to_drain = Vec::new();
    let mut to_hand_over = Vec::new();
    let mut lost = Vec::new();
    let mut started = Vec::new();
    let mut out = leaving.locked();
    for shard in 0..view.shard_count() {
        let Some(state) = view.shard(shard) else {
            continue;
        };
        let Some(serving) = node.serving.get(shard as usize) else {
            continue;
        };
        let owned = view
            .current_owner(shard)
            .is_some_and(|owner| &*owner.id == me);
        let moving_away = owned && view.is_moving(shard);
        if owned && view.online && !moving_away {
            // Ours: serve it (again, if a move was called off) under its epoch.
            let before = serving.swap(state.epoch | ADMITTING, Ordering::SeqCst);
            if before & ADMITTING == 0 {
                started.push(shard);
            }
            out.drained.remove(&shard);
        } else if moving_away && view.online {
            // Stop taking calls; keep the epoch for the saves on the way out.
            serving.store(state.epoch, Ordering::SeqCst);
            if out.busy.contains(&shard) {
                continue;
            }
            out.busy.insert(shard);
            if out.drained.contains(&shard) {
                to_hand_over.push((shard, state.epoch));
            } else {
                to_drain.push((shard, state.epoch));
            }
        } else if owned {
            // Ours, but our membership cannot be proven right now: stop
            // taking calls, keep the objects for when it can.
            serving.fetch_and(!ADMITTING, Ordering::SeqCst);
        } else {
            let handed_over = out.drained.remove(&shard);
            if serving.swap(0, Ordering::SeqCst) != 0 && !handed_over && !out.busy.contains(&shard)
            {
                lost.push(shard);
            }
        }
    }
    drop(out);
    node.serving_changed.notify_waiters();
    if !started.is_empty() {
        node.auto_load_shards(&started);
    }
    if !lost.is_empty() {
        tracing::warn!(
            node = me,
            shards = lost.len(),
            "lost shards without a handoff; dropping their objects"
        );
        let shards = shard_set(node.config.shard_count, lost.iter().copied());
        let node = node.clone();
        node.runtime.clone().spawn(async move {
            for host in node.by_name.values() {
                host.clone()
                    .deactivate_shards(node.clone(), Some(shards.clone()), false)
                    .await;
            }
        });
    }
    for (batch, drain) in [(to_drain, true), (to_hand_over, false)] {
        if batch.is_empty() {
            continue;
        }
        let weak = weak.clone();
        let leaving = leaving.clone();
        let poke = poke.clone();
        node.runtime.spawn(async move {
            let Some(node) = weak.upgrade() else {
                return;
            };
            let started = std::time::Instant::now();
            if drain {
                let shards = shard_set(node.config.shard_count, batch.iter().map(|(s, _)| *s));
                for host in node.by_name.values() {
                    host.clone()
                        .deactivate_shards(node.clone(), Some(shards.clone()), true)
                        .await;
                }
            }
            let handed = node.coordinator.hand_over(&batch).await;
            match &handed {
                Ok(()) => {
                    let meters = &node.meters;
                    meters
                        .shard_moves
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for _ in &batch {
                        meters.handoff.record_duration(started.elapsed());
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "handing shards over failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            let mut out = leaving.locked();
            for (shard, _) in &batch {
                out.busy.remove(shard);
                out.drained.insert(*shard);
            }
            drop(out);
            // Look again: the handoff, or a called-off move, may already be
            // in the view.
            poke.notify_one();
        });
    }
}

fn shard_set(count: u32, shards: impl Iterator<Item = u32>) -> Arc<Vec<bool>> {
    let mut set = vec![false; count as usize];
    for shard in shards {
        if let Some(slot) = set.get_mut(shard as usize) {
            *slot = true;
        }
    }
    Arc::new(set)
}
