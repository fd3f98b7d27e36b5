//! The (parent, name) → node table used while merging and by [`super::FileTree::lookup`].
//!
//! An open-addressing table of 8-byte slots, each holding the upper 32 bits of a 64-bit hash
//! of the parent id and the name (the tag) beside the node id, so the table holds no copy of
//! any name. The tag picks the bucket and rejects almost every non-matching slot without
//! touching the node; a tag match is confirmed against the node's real parent and name.
//! About 11 bytes a node at the usual load, where a general hash map of hash → node took 30.

/// Largest share of slots in use before the table doubles (linear probing stays short).
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

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
    /// `tag << 32 | (node + 1)`; 0 is an empty slot.
    slots: Vec<u64>,
    len: usize,
}

/// Where a probe for a child ended.
pub enum Probe {
    /// The child exists.
    Found(u32),
    /// It does not; `tag` is what [`ChildTable::insert_tagged`] needs.
    Vacant {
        /// The key's tag.
        tag: u32,
    },
}

/// The tag of a key: its upper 32 bits (the hash is well mixed throughout).
fn tag_of(parent: u32, name: &[u8]) -> u32 {
    (child_key(parent, name) >> 32) as u32
}

impl ChildTable {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Find the child of `parent` called `name`; `is_match(node)` checks a candidate whose
    /// tag matches.
    pub fn probe(&self, parent: u32, name: &[u8], is_match: impl Fn(u32) -> bool) -> Probe {
        let tag = tag_of(parent, name);
        if self.slots.is_empty() {
            return Probe::Vacant { tag };
        }
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Probe::Vacant { tag };
            }
            if (slot >> 32) as u32 == tag {
                let node = (slot as u32).wrapping_sub(1);
                if is_match(node) {
                    return Probe::Found(node);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Start loading the slot where a probe for the child of `parent` called `name` begins:
    /// on a big table, a probe misses the cache on it almost every time.
    pub fn prefetch(&self, parent: u32, name: &[u8]) {
        if self.slots.is_empty() {
            return;
        }
        let i = tag_of(parent, name) as usize & self.mask();
        crate::allocator::prefetch(&self.slots[i]);
    }

    /// Find the child of `parent` called `name` (see [`Self::probe`]).
    pub fn find(&self, parent: u32, name: &[u8], is_match: impl Fn(u32) -> bool) -> Option<u32> {
        match self.probe(parent, name, is_match) {
            Probe::Found(node) => Some(node),
            Probe::Vacant { .. } => None,
        }
    }

    /// Record `node` as the child of `parent` called `name` (known to be absent).
    #[cfg(test)]
    pub fn insert(&mut self, parent: u32, name: &[u8], node: u32) {
        self.insert_tagged(tag_of(parent, name), node);
    }

    /// Record `node` under the tag a vacant [`Probe`] returned.
    pub fn insert_tagged(&mut self, tag: u32, node: u32) {
        self.reserve(1);
        self.place(tag, node);
        self.len += 1;
    }

    fn place(&mut self, tag: u32, node: u32) {
        let mask = self.mask();
        let mut i = tag as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (u64::from(tag) << 32) | u64::from(node.wrapping_add(1));
    }

    /// Make room for `additional` more children without growing on the way.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional);
        if needed * MAX_LOAD_DEN <= self.slots.len() * MAX_LOAD_NUM {
            return;
        }
        let mut size = self.slots.len().max(16);
        while needed * MAX_LOAD_DEN > size * MAX_LOAD_NUM {
            size *= 2;
        }
        // Written before the probes below read it (see `written_zeros`).
        let old = std::mem::replace(&mut self.slots, crate::allocator::written_zeros(size));
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place((slot >> 32) as u32, (slot as u32).wrapping_sub(1));
        }
    }

    /// The slots and the number in use, for a snapshot of the model.
    pub fn raw_parts(&self) -> (&[u64], usize) {
        (&self.slots, self.len)
    }

    /// A table from [`Self::raw_parts`], when they are consistent: a power-of-two size, `len`
    /// slots in use (so at least one is free and every probe ends), ids below `node_count`.
    pub fn from_raw_parts(slots: Vec<u64>, len: usize, node_count: usize) -> Option<ChildTable> {
        // One pass: the count of slots in use, and whether any names a node beyond the end.
        let (used, ids_ok) = slots.iter().fold((0usize, true), |(used, ok), &s| {
            let beyond = ((s as u32).wrapping_sub(1) as usize) >= node_count;
            (used + usize::from(s != 0), ok && !(s != 0 && beyond))
        });
        let size_ok = slots.is_empty() || slots.len().is_power_of_two();
        let load_ok = len * MAX_LOAD_DEN <= slots.len() * MAX_LOAD_NUM;
        (used == len && ids_ok && size_ok && load_ok).then_some(ChildTable { slots, len })
    }

    /// Bytes the table allocates.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8
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
    fn growing_keeps_every_child() {
        let mut table = ChildTable::default();
        for n in 0..10_000u32 {
            table.insert(n % 7, &n.to_le_bytes(), n);
        }
        for n in 0..10_000u32 {
            assert_eq!(table.find(n % 7, &n.to_le_bytes(), |c| c == n), Some(n));
        }
        assert!(table.heap_bytes() <= 16_384 * 8);
    }

    #[test]
    fn keys_depend_on_parent_name_and_length() {
        assert_ne!(child_key(0, b"a"), child_key(1, b"a"));
        assert_ne!(child_key(0, b"a"), child_key(0, b"a\0"));
        assert_ne!(child_key(0, b"abcdefgh1"), child_key(0, b"abcdefgh2"));
    }
}
