//! A hash map with a hard size cap that evicts the entry inserted (or refreshed) longest ago,
//! or, for tables an attacker can fill, the oldest entry without a history.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// The hasher of the router's tables: foldhash, seeded per process. Keys are mostly hashes
/// already (packet, destination, link ids), which SipHash would only make slower; the random
/// seed keeps collisions out of an attacker's reach all the same.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Entries [`BoundedMap::insert_favouring`] looks at before it gives up on finding one to
/// evict: bounds the work per insert while the table is full of entries with standing.
pub(crate) const EVICTION_SCAN: usize = 64;

/// A map holding at most `cap` entries; inserting into a full map evicts the oldest entry.
/// Re-inserting a key refreshes its age.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    map: HashMap<K, (V, u64), FastHash>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            seq: 0,
        }
    }

    /// Inserts or replaces; returns the evicted entry, if the map was full.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        self.seq += 1;
        let evicted = if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.evict_oldest()
        } else {
            None
        };
        self.map.insert(key.clone(), (value, self.seq));
        self.order.push_back((key, self.seq));
        if self.order.len() > 2 * self.cap + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|(_, live)| live == s));
        }
        evicted
    }

    /// Like [`BoundedMap::insert`], except that a full map evicts the oldest entry for which
    /// `has_standing` is false, looking at no more than [`EVICTION_SCAN`] of the oldest;
    /// entries with standing that it passes over move to the back. If every one it looked at
    /// has standing, nothing is evicted and the value comes back as `Err`: a flood of new
    /// entries cannot push out those with a history.
    pub(crate) fn insert_favouring(
        &mut self,
        key: K,
        value: V,
        has_standing: impl Fn(&K, &V) -> bool,
    ) -> Result<Option<(K, V)>, V> {
        if self.map.contains_key(&key) || self.map.len() < self.cap {
            return Ok(self.insert(key, value));
        }
        for _ in 0..EVICTION_SCAN {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            let Some((live, live_seq)) = self.map.get_mut(&oldest) else {
                continue;
            };
            if *live_seq != seq {
                continue; // refreshed since: a stale place in the queue
            }
            if has_standing(&oldest, live) {
                self.seq += 1;
                *live_seq = self.seq;
                self.order.push_back((oldest, self.seq));
                continue;
            }
            let evicted = self.map.remove(&oldest).map(|(v, _)| (oldest, v));
            self.insert(key, value);
            return Ok(evicted);
        }
        Err(value)
    }

    fn evict_oldest(&mut self) -> Option<(K, V)> {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|(_, live)| *live == seq) {
                return self.map.remove(&key).map(|(v, _)| (key, v));
            }
        }
        None
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(v, _)| v)
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(v, _)| v)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    pub(crate) fn keys(&self) -> Vec<K> {
        self.map.keys().cloned().collect()
    }

    /// Removes every entry for which `keep` returns false.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(|k, (v, _)| keep(k, v));
    }
}

/// A set of recently seen keys in two generations: when the current generation reaches half
/// the capacity it becomes the previous one and the old previous one is forgotten. Lookups
/// check both, so a key is remembered for at least `cap / 2` insertions.
#[derive(Debug)]
pub(crate) struct RecentSet<K> {
    current: HashSet<K, FastHash>,
    previous: HashSet<K, FastHash>,
    cap: usize,
}

impl<K: Hash + Eq> RecentSet<K> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            current: Default::default(),
            previous: Default::default(),
            cap: cap.max(2),
        }
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.current.contains(key) || self.previous.contains(key)
    }

    /// Remembers `key`; returns false if it was already known.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        if self.contains(&key) {
            return false;
        }
        if self.current.len() >= self.cap / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key)
    }

    pub(crate) fn remove(&mut self, key: &K) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_and_refreshes_on_reinsert() {
        let mut m = BoundedMap::new(2);
        assert!(m.insert(1, "a").is_none());
        assert!(m.insert(2, "b").is_none());
        assert!(m.insert(1, "a2").is_none()); // refresh, no eviction
        assert_eq!(m.insert(3, "c"), Some((2, "b")));
        assert_eq!(m.get(&1), Some(&"a2"));
        assert_eq!(m.len(), 2);
        m.remove(&1);
        assert!(m.insert(4, "d").is_none());
        assert_eq!(m.insert(5, "e"), Some((3, "c")));
    }

    #[test]
    fn favouring_insert_evicts_the_oldest_without_standing_and_refuses_when_none() {
        let mut m = BoundedMap::new(3);
        let protected = |k: &u32, _: &&str| *k < 10;
        m.insert(1, "proved");
        m.insert(20, "new");
        m.insert(2, "proved");
        // Full: the oldest without standing (20) goes, not the older proved 1.
        assert_eq!(
            m.insert_favouring(30, "newer", protected),
            Ok(Some((20, "new")))
        );
        assert_eq!(
            m.insert_favouring(40, "newest", protected),
            Ok(Some((30, "newer")))
        );
        assert!(m.contains_key(&1) && m.contains_key(&2));
        // Only proved entries besides 40: the next newcomer evicts 40, then 1 and 2 stay.
        m.remove(&40);
        m.insert(3, "proved");
        assert_eq!(m.insert_favouring(50, "flood", protected), Err("flood"));
        assert_eq!(m.len(), 3);
        // A key already present is always updated.
        assert_eq!(m.insert_favouring(1, "again", protected), Ok(None));
        assert!(m.order.len() <= 2 * 3 + 16);
    }

    #[test]
    fn order_queue_stays_bounded_under_churn() {
        let mut m = BoundedMap::new(4);
        for i in 0..10_000u32 {
            m.insert(i % 3, i);
            m.remove(&(i % 3));
        }
        assert!(m.order.len() <= 2 * 4 + 16);
    }

    #[test]
    fn recent_set_rotates_generations() {
        let mut s = RecentSet::new(4);
        assert!(s.insert(1));
        assert!(!s.insert(1));
        s.insert(2);
        s.insert(3); // rotates: {1,2} becomes previous
        assert!(s.contains(&1));
        s.insert(4);
        s.insert(5); // rotates again: {1,2} forgotten
        assert!(!s.contains(&1));
        assert!(s.len() <= 4);
    }
}
