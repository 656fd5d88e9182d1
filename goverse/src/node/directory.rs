//! The activation directory of one object type on one node: a sharded map
//! from object id to activation, sized for millions of entries.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::MutexExt;
use foldhash::fast::RandomState;

/// Independent locks, so callers of different objects rarely contend.
const SHARDS: usize = 64;

type Shard<V> = HashMap<Arc<str>, Arc<V>, RandomState>;

pub(crate) struct Directory<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
}

impl<V> Directory<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, Shard<V>> {
        // The low bits pick the shard; the map inside rehashes with its own seed.
        let index = (self.hasher.hash_one(id) as usize) % SHARDS;
        self.shards[index].locked()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<Arc<V>> {
        self.shard(id).get(id).cloned()
    }

    /// The entry for `id`, created with `make` if there is none.
    pub(crate) fn get_or_insert_with(
        &self,
        id: &Arc<str>,
        make: impl FnOnce() -> Arc<V>,
    ) -> Arc<V> {
        let mut shard = self.shard(id);
        if let Some(existing) = shard.get(&**id) {
            return existing.clone();
        }
        let value = make();
        shard.insert(id.clone(), value.clone());
        value
    }

    /// Removes the entry for `id` only if it is still `value` (a newer
    /// activation may have taken its place).
    pub(crate) fn remove_if_same(&self, id: &str, value: &Arc<V>) -> bool {
        let mut shard = self.shard(id);
        match shard.get(id) {
            Some(current) if Arc::ptr_eq(current, value) => {
                shard.remove(id);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.locked().len()).sum()
    }

    /// The sum of `measure` over the entries, shard by shard.
    #[cfg_attr(not(feature = "ops"), allow(dead_code))]
    pub(crate) fn sum(&self, measure: impl Fn(&V) -> usize) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.locked().values().map(|v| measure(v)).sum::<usize>())
            .sum()
    }

    /// The entries matching `keep`, collected shard by shard so no lock is
    /// held for long.
    pub(crate) fn collect(&self, mut keep: impl FnMut(&V) -> bool) -> Vec<Arc<V>> {
        let mut found = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.locked();
            found.extend(shard.values().filter(|v| keep(v)).cloned());
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_once_and_removes_only_the_same_entry() {
        let directory: Directory<u32> = Directory::new();
        let id: Arc<str> = Arc::from("a");
        let first = directory.get_or_insert_with(&id, || Arc::new(1));
        let again = directory.get_or_insert_with(&id, || Arc::new(2));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(directory.len(), 1);

        let stranger = Arc::new(1);
        assert!(!directory.remove_if_same("a", &stranger));
        assert!(directory.remove_if_same("a", &first));
        assert!(directory.get("a").is_none());
        assert_eq!(directory.len(), 0);
    }
}
