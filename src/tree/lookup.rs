//! The (parent, name) → node table used while merging and by [`super::FileTree::lookup`].
//!
//! Keys are a 64-bit hash of the parent id and the name bytes, so the table holds no copy of
//! any name (16 bytes a slot). Two different children can share a hash; the second is then
//! stored under the next probe key, and every probe checks the node's real parent and name.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Step between probe keys when hashes collide (an odd constant, so keys stay distinct).
const PROBE_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Passes an already well-mixed `u64` key straight through.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the table; fold anything else in for completeness.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(PROBE_STEP);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Hash of one child name under one parent.
pub fn child_key(parent: u32, name: &[u8]) -> u64 {
    const K: u64 = 0xff51_afd7_ed55_8ccd;
    let mut h = u64::from(parent) ^ ((name.len() as u64) << 32) ^ 0x2545_f491_4f6c_dd1d;
    let mut chunks = name.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(29) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(29) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    // fmix64 (MurmurHash3 finaliser): every input bit reaches the low and high bits the
    // table uses for buckets and tags.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The child table.
#[derive(Default)]
pub struct ChildTable {
    map: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

impl ChildTable {
    /// Find the child of `parent` called `name`; `is_match(node)` checks a candidate.
    pub fn find(&self, parent: u32, name: &[u8], is_match: impl Fn(u32) -> bool) -> Option<u32> {
        let mut key = child_key(parent, name);
        loop {
            let &node = self.map.get(&key)?;
            if is_match(node) {
                return Some(node);
            }
            key = key.wrapping_add(PROBE_STEP);
        }
    }

    /// Record `node` as the child of `parent` called `name` (known to be absent).
    pub fn insert(&mut self, parent: u32, name: &[u8], node: u32) {
        let mut key = child_key(parent, name);
        while self.map.contains_key(&key) {
            key = key.wrapping_add(PROBE_STEP);
        }
        self.map.insert(key, node);
    }

    /// Bytes the table allocates (an estimate from its capacity).
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: one (u64, u32) slot padded to 16 bytes plus one control byte each.
        self.map.capacity() * 8 / 7 * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_keys_are_told_apart_by_the_match_check() {
        // Force a collision: store two nodes for the same (parent, name) key chain and check
        // that each lookup lands on the node its predicate accepts.
        let mut table = ChildTable::default();
        table.insert(0, b"a", 1);
        table.insert(0, b"a", 2);
        assert_eq!(table.find(0, b"a", |n| n == 2), Some(2));
        assert_eq!(table.find(0, b"a", |n| n == 1), Some(1));
        assert_eq!(table.find(0, b"a", |n| n == 3), None);
        assert_eq!(table.find(0, b"b", |_| true), None);
    }

    #[test]
    fn keys_depend_on_parent_name_and_length() {
        assert_ne!(child_key(0, b"a"), child_key(1, b"a"));
        assert_ne!(child_key(0, b"a"), child_key(0, b"a\0"));
        assert_ne!(child_key(0, b"abcdefgh1"), child_key(0, b"abcdefgh2"));
    }
}
