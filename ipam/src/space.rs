//! This peer's allocations: which owner id holds which address.

use std::collections::{BTreeMap, BTreeSet};

/// Addresses allocated on this peer, indexed both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Space {
    by_addr: BTreeMap<u64, String>,
    by_owner: BTreeMap<String, BTreeSet<u64>>,
}

impl Space {
    pub(crate) fn insert(&mut self, addr: u64, owner: &str) {
        self.by_addr.insert(addr, owner.to_string());
        self.by_owner
            .entry(owner.to_string())
            .or_default()
            .insert(addr);
    }

    pub(crate) fn remove(&mut self, addr: u64) -> Option<String> {
        let owner = self.by_addr.remove(&addr)?;
        if let Some(set) = self.by_owner.get_mut(&owner) {
            set.remove(&addr);
            if set.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
        Some(owner)
    }

    pub(crate) fn remove_owner(&mut self, owner: &str) -> Vec<u64> {
        let addrs: Vec<u64> = self
            .by_owner
            .remove(owner)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for a in &addrs {
            self.by_addr.remove(a);
        }
        addrs
    }

    pub(crate) fn clear(&mut self) {
        self.by_addr.clear();
        self.by_owner.clear();
    }

    pub(crate) fn holder(&self, addr: u64) -> Option<&str> {
        self.by_addr.get(&addr).map(String::as_str)
    }

    pub(crate) fn addrs_of(&self, owner: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_owner.get(owner).into_iter().flatten().copied()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.by_addr.iter().map(|(&a, o)| (a, o.as_str()))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// How many addresses of `[start, end)` are allocated.
    pub(crate) fn count_in(&self, start: u64, end: u64) -> u64 {
        self.by_addr.range(start..end).count() as u64
    }

    /// The lowest unallocated address of `[start, end)`.
    pub(crate) fn first_free_in(&self, start: u64, end: u64) -> Option<u64> {
        let mut candidate = start;
        for &a in self.by_addr.range(start..end).map(|(a, _)| a) {
            if a != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate < end).then_some(candidate)
    }

    /// The longest run of unallocated addresses in `[start, end)` (the first one on ties).
    pub(crate) fn largest_free_run_in(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
        let mut run_start = start;
        let allocated = self.by_addr.range(start..end).map(|(&a, _)| a);
        for stop in allocated.chain(std::iter::once(end)) {
            if stop > run_start && best.is_none_or(|(s, e)| stop - run_start > e - s) {
                best = Some((run_start, stop));
            }
            run_start = stop + 1;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_searches() {
        let mut s = Space::default();
        for a in [10, 11, 13, 20] {
            s.insert(a, "x");
        }
        assert_eq!(s.first_free_in(10, 30), Some(12));
        assert_eq!(s.first_free_in(10, 12), None);
        assert_eq!(s.largest_free_run_in(10, 30), Some((21, 30)));
        assert_eq!(s.largest_free_run_in(10, 20), Some((14, 20)));
        assert_eq!(s.largest_free_run_in(10, 12), None);
        assert_eq!(s.count_in(10, 14), 3);
        assert_eq!(s.remove_owner("x"), vec![10, 11, 13, 20]);
        assert_eq!(s.len(), 0);
    }
}
