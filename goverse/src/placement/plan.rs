//! The placement planner: from the live nodes and the current targets of
//! every shard, the moves that balance the cluster while moving as little
//! as possible.
//!
//! It is a pure function, so that the leader's decisions can be tested and
//! simulated without a cluster. The rules:
//!
//! - a shard whose target is not a live node goes to the least loaded node;
//! - a pinned shard stays where it is while its node lives;
//! - every node ends up with `floor(n/k)` or `ceil(n/k)` shards (`n` shards,
//!   `k` nodes), unless pinned shards force one node above that;
//! - the `n mod k` larger shares go to the nodes that already hold the most,
//!   so no shard moves that does not have to;
//! - ties are broken by node id, so every leader computes the same plan.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What the planner sees of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPlacement {
    /// The node the shard is assigned to (its owner, or the node it is
    /// moving to), if any.
    pub target: Option<Arc<str>>,
    /// A pinned shard is not moved to balance load, only when its node dies.
    pub pinned: bool,
}

/// One decision of the planner: `shard` should be served by `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The shard to move.
    pub shard: u32,
    /// The node that should serve it.
    pub to: Arc<str>,
}

/// The moves that take `shards` (indexed by shard number) to a balanced
/// assignment over `nodes`, in shard order.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use goverse::placement::{ShardPlacement, plan};
///
/// let nodes: Vec<Arc<str>> = vec!["a".into(), "b".into()];
/// let shards = vec![ShardPlacement::default(); 4];
/// let moves = plan(&nodes, &shards);
/// assert_eq!(moves.len(), 4);
/// assert_eq!(moves.iter().filter(|m| &*m.to == "a").count(), 2);
/// ```
pub fn plan(nodes: &[Arc<str>], shards: &[ShardPlacement]) -> Vec<Move> {
    let mut live: Vec<Arc<str>> = nodes.to_vec();
    live.sort();
    live.dedup();
    if live.is_empty() {
        return Vec::new();
    }
    let index: BTreeMap<&str, usize> = live.iter().enumerate().map(|(i, n)| (&**n, i)).collect();

    // Who holds what now, among live nodes.
    let mut holder: Vec<Option<usize>> = shards
        .iter()
        .map(|s| s.target.as_deref().and_then(|t| index.get(t).copied()))
        .collect();
    let mut load = vec![0usize; live.len()];
    let mut pinned_load = vec![0usize; live.len()];
    for (shard, held) in holder.iter().enumerate() {
        if let Some(node) = *held {
            load[node] += 1;
            if shards[shard].pinned {
                pinned_load[node] += 1;
            }
        }
    }

    let quota = quotas(shards.len(), &load, &pinned_load);

    // Shards to place: those with no live holder, and the surplus of nodes
    // above their quota (their highest-numbered unpinned shards).
    let mut pool: Vec<usize> = (0..shards.len()).filter(|&s| holder[s].is_none()).collect();
    for node in 0..live.len() {
        let mut surplus = load[node].saturating_sub(quota[node]);
        if surplus == 0 {
            continue;
        }
        for shard in (0..shards.len()).rev() {
            if surplus == 0 {
                break;
            }
            if holder[shard] == Some(node) && !shards[shard].pinned {
                holder[shard] = None;
                load[node] -= 1;
                surplus -= 1;
                pool.push(shard);
            }
        }
    }
    pool.sort_unstable();

    // Fill nodes below their quota in id order, then anything left to the
    // least loaded.
    let mut pool = pool.into_iter();
    'fill: for node in 0..live.len() {
        while load[node] < quota[node] {
            let Some(shard) = pool.next() else {
                break 'fill;
            };
            holder[shard] = Some(node);
            load[node] += 1;
        }
    }
    for shard in pool {
        let node = (0..live.len())
            .min_by_key(|&n| (load[n], n))
            .unwrap_or_default();
        holder[shard] = Some(node);
        load[node] += 1;
    }

    holder
        .iter()
        .enumerate()
        .filter_map(|(shard, held)| {
            let to = &live[(*held)?];
            let unchanged = shards[shard].target.as_deref() == Some(&**to);
            (!unchanged).then(|| Move {
                shard: u32::try_from(shard).unwrap_or(u32::MAX),
                to: to.clone(),
            })
        })
        .collect()
}

/// How many shards each node should hold: an even split, the larger shares
/// to the nodes holding the most now; a node whose pinned shards exceed its
/// share keeps them and the rest is split among the others.
fn quotas(total: usize, load: &[usize], pinned: &[usize]) -> Vec<usize> {
    let nodes = load.len();
    let mut fixed: Vec<Option<usize>> = vec![None; nodes];
    loop {
        let free_nodes: Vec<usize> = (0..nodes).filter(|&n| fixed[n].is_none()).collect();
        let fixed_total: usize = fixed.iter().flatten().sum();
        let remaining = total.saturating_sub(fixed_total);
        if free_nodes.is_empty() {
            return fixed.into_iter().map(Option::unwrap_or_default).collect();
        }
        let base = remaining / free_nodes.len();
        let extra = remaining % free_nodes.len();
        // The larger shares go to the most loaded, ties by id.
        let mut ranked = free_nodes.clone();
        ranked.sort_by_key(|&n| (std::cmp::Reverse(load[n]), n));
        let mut quota = vec![0usize; nodes];
        for (rank, &node) in ranked.iter().enumerate() {
            quota[node] = base + usize::from(rank < extra);
        }
        let overflowing: Vec<usize> = free_nodes
            .iter()
            .copied()
            .filter(|&n| pinned[n] > quota[n])
            .collect();
        if overflowing.is_empty() {
            for (node, fixed_quota) in fixed.iter().enumerate() {
                if let Some(q) = fixed_quota {
                    quota[node] = *q;
                }
            }
            return quota;
        }
        for node in overflowing {
            fixed[node] = Some(pinned[node]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    fn apply(shards: &mut [ShardPlacement], moves: &[Move]) {
        for m in moves {
            shards[m.shard as usize].target = Some(m.to.clone());
        }
    }

    fn counts(shards: &[ShardPlacement]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in shards {
            if let Some(t) = &s.target {
                *counts.entry(t.to_string()).or_default() += 1;
            }
        }
        counts
    }

    fn spread(shards: &[ShardPlacement], nodes: &[Arc<str>]) -> usize {
        let counts = counts(shards);
        let per_node: Vec<usize> = nodes
            .iter()
            .map(|n| counts.get(&**n).copied().unwrap_or(0))
            .collect();
        per_node.iter().max().unwrap_or(&0) - per_node.iter().min().unwrap_or(&0)
    }

    #[test]
    fn a_fresh_cluster_is_split_evenly_and_deterministically() {
        let nodes = ids(&["c", "a", "b"]);
        let mut shards = vec![ShardPlacement::default(); 8192];
        let moves = plan(&nodes, &shards);
        assert_eq!(moves.len(), 8192);
        assert_eq!(
            moves,
            plan(&ids(&["a", "b", "c"]), &shards),
            "order of nodes does not matter"
        );
        apply(&mut shards, &moves);
        assert_eq!(spread(&shards, &nodes), 1);
        assert!(
            plan(&nodes, &shards).is_empty(),
            "a balanced map is left alone"
        );
    }

    #[test]
    fn a_joining_node_takes_only_its_share() {
        let two = ids(&["a", "b"]);
        let mut shards = vec![ShardPlacement::default(); 8192];
        let moves = plan(&two, &shards);
        apply(&mut shards, &moves);
        let before = shards.clone();
        let three = ids(&["a", "b", "c"]);
        let moves = plan(&three, &shards);
        assert!(
            moves.iter().all(|m| &*m.to == "c"),
            "only moves to the new node"
        );
        assert_eq!(moves.len(), 8192 / 3, "exactly the new node's share moves");
        apply(&mut shards, &moves);
        assert_eq!(spread(&shards, &three), 1);
        let unmoved = before.iter().zip(&shards).filter(|(a, b)| a == b).count();
        assert_eq!(unmoved, 8192 - 8192 / 3);
    }

    #[test]
    fn a_dead_nodes_shards_spread_over_the_others_and_nothing_else_moves() {
        let three = ids(&["a", "b", "c"]);
        let mut shards = vec![ShardPlacement::default(); 999];
        let moves = plan(&three, &shards);
        apply(&mut shards, &moves);
        let two = ids(&["a", "c"]);
        let moves = plan(&two, &shards);
        assert_eq!(moves.len(), 333, "only b's shards move");
        for m in &moves {
            assert_eq!(shards[m.shard as usize].target.as_deref(), Some("b"));
        }
        apply(&mut shards, &moves);
        assert_eq!(spread(&shards, &two), 1);
    }

    #[test]
    fn pinned_shards_stay_while_their_node_lives() {
        let nodes = ids(&["a", "b"]);
        let mut shards = vec![ShardPlacement::default(); 10];
        for shard in shards.iter_mut().take(8) {
            shard.target = Some("a".into());
            shard.pinned = true;
        }
        let moves = plan(&nodes, &shards);
        assert_eq!(
            moves.len(),
            2,
            "only the two free shards are placed: {moves:?}"
        );
        assert!(moves.iter().all(|m| &*m.to == "b"));

        let only_b = ids(&["b"]);
        let moves = plan(&only_b, &shards);
        assert_eq!(moves.len(), 10, "a pin does not survive its node");
    }

    #[test]
    fn twenty_or_more_nodes_churning_stay_balanced_with_bounded_movement() {
        // A deterministic pseudo-random join/leave sequence.
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let shard_count = 8192;
        let mut shards = vec![ShardPlacement::default(); shard_count];
        let mut live: Vec<Arc<str>> = (0..20).map(|i| Arc::from(format!("node-{i:02}"))).collect();
        let moves = plan(&live, &shards);
        apply(&mut shards, &moves);
        let mut spare = 20;
        for _step in 0..200 {
            let leaving = live.len() > 12 && next() % 2 == 0;
            let moved_out = if leaving {
                let gone = live.remove((next() % live.len() as u64) as usize);
                shards
                    .iter()
                    .filter(|s| s.target.as_deref() == Some(&*gone))
                    .count()
            } else {
                live.push(Arc::from(format!("node-{spare:02}")));
                spare += 1;
                0
            };
            let moves = plan(&live, &shards);
            let fair = shard_count / live.len();
            if leaving {
                assert_eq!(
                    moves.len(),
                    moved_out,
                    "a leave moves only the leaver's shards"
                );
            } else {
                assert!(
                    moves.len() <= fair + 1,
                    "a join moves at most the newcomer's share: {} > {}",
                    moves.len(),
                    fair + 1
                );
            }
            apply(&mut shards, &moves);
            assert!(spread(&shards, &live) <= 1, "balanced within one shard");
            assert!(live.len() >= 12);
        }
        assert!(live.len() >= 12 && live.len() <= 30 + 200);
    }
}
