//! The visits every path received while layers merged ([`super::FileTree::visits`]).
//!
//! Most paths of a big image are written once and never touched again, so one visit is kept
//! in the node's own 8-byte word, its size beside a flag. Only a path visited again moves to
//! a 20-byte record of count, sum and minimum. On a million-file image that is about 9 MB
//! of words and a few MB of records, where 20 bytes for every node took 23 MB.

use super::Visits;

/// Word flag: the low bits index [`VisitTable::repeated`].
const REPEATED: u64 = 1 << 63;
/// Word flag: one visit, of the size in the low bits.
const ONCE: u64 = 1 << 62;
/// The sizes a word holds itself (a tar this big cannot be indexed anyway).
const SIZE_MASK: u64 = ONCE - 1;

/// The visits of a path seen more than once: 20 bytes instead of 24.
#[derive(Clone, Copy, Default)]
#[repr(C, packed(4))]
struct Repeated {
    sum: u64,
    min: u64,
    count: u32,
}

impl Repeated {
    fn add(&mut self, size: u64) {
        let (count, min, sum) = (self.count, self.min, self.sum);
        self.min = if count == 0 { size } else { min.min(size) };
        self.count = count + 1;
        self.sum = sum + size;
    }
}

/// Per node: 0 when never visited, `ONCE | size` after one visit, `REPEATED | i` after more.
#[derive(Default)]
pub(super) struct VisitTable {
    words: Vec<u64>,
    repeated: Vec<Repeated>,
}

impl VisitTable {
    /// Number of nodes the table covers.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Cover one more node, not visited yet.
    pub fn push_node(&mut self) {
        self.words.push(0);
    }

    /// Room for `additional` more nodes.
    pub fn reserve(&mut self, additional: usize) {
        self.words.reserve(additional);
    }

    /// Room for exactly `additional` more nodes.
    pub fn reserve_exact(&mut self, additional: usize) {
        self.words.reserve_exact(additional);
    }

    /// Start loading `node`'s word (see [`crate::allocator::prefetch`]).
    pub fn prefetch(&self, node: u32) {
        if let Some(word) = self.words.get(node as usize) {
            crate::allocator::prefetch(word);
        }
    }

    /// Record a visit of `size` bytes (0 for anything but a regular file) at `node`.
    pub fn add(&mut self, node: u32, size: u64) {
        let word = &mut self.words[node as usize];
        if *word & REPEATED != 0 {
            self.repeated[(*word & !REPEATED) as usize].add(size);
            return;
        }
        if *word == 0 && size <= SIZE_MASK {
            *word = ONCE | size;
            return;
        }
        let mut record = Repeated::default();
        if *word != 0 {
            record.add(*word & SIZE_MASK);
        }
        record.add(size);
        *word = REPEATED | self.repeated.len() as u64;
        self.repeated.push(record);
    }

    /// The visits of `node`.
    pub fn get(&self, node: u32) -> Visits {
        let word = self.words[node as usize];
        if word & REPEATED != 0 {
            let r = self.repeated[(word & !REPEATED) as usize];
            return Visits {
                count: r.count,
                sum: r.sum,
                min: r.min,
            };
        }
        if word == 0 {
            return Visits::default();
        }
        let size = word & SIZE_MASK;
        Visits {
            count: 1,
            sum: size,
            min: size,
        }
    }

    /// Cover one more node with `visits` as they were stored, kept exactly whatever they
    /// hold (a snapshot is read back to the same figures).
    pub fn push_stored(&mut self, visits: Visits) {
        let word = match visits {
            Visits {
                count: 0,
                sum: 0,
                min: 0,
            } => 0,
            Visits { count: 1, sum, min } if sum == min && sum <= SIZE_MASK => ONCE | sum,
            Visits { count, sum, min } => {
                self.repeated.push(Repeated { sum, min, count });
                REPEATED | (self.repeated.len() - 1) as u64
            }
        };
        self.words.push(word);
    }

    /// Heap bytes held, by capacity.
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8 + self.repeated.capacity() * std::mem::size_of::<Repeated>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain per-node record would hold after the same visits.
    fn expected(sizes: &[u64]) -> Visits {
        Visits {
            count: sizes.len() as u32,
            sum: sizes.iter().sum(),
            min: sizes.iter().copied().min().unwrap_or(0),
        }
    }

    #[test]
    fn one_visit_stays_in_the_word_and_more_move_to_a_record() {
        let histories: [&[u64]; 8] = [
            &[],
            &[0],
            &[7],
            &[7, 0],
            &[0, 7],
            &[5, 3, 9],
            &[SIZE_MASK],
            &[SIZE_MASK + 1],
        ];
        let mut table = VisitTable::default();
        for (node, sizes) in histories.iter().enumerate() {
            table.push_node();
            for &size in *sizes {
                table.add(node as u32, size);
            }
        }
        for (node, sizes) in histories.iter().enumerate() {
            assert_eq!(table.get(node as u32), expected(sizes), "{sizes:?}");
        }
        // Only the paths visited twice or more, and the size too big for a word, take a record.
        assert_eq!(table.repeated.len(), 4);
    }

    #[test]
    fn stored_visits_come_back_exactly() {
        let stored = [
            Visits::default(),
            expected(&[12]),
            expected(&[0]),
            expected(&[4, 4]),
            // Not what a merge makes, but what a damaged file could hold: kept as is.
            Visits {
                count: 0,
                sum: 3,
                min: 0,
            },
            Visits {
                count: 1,
                sum: 5,
                min: 2,
            },
            expected(&[u64::MAX]),
        ];
        let mut table = VisitTable::default();
        for v in stored {
            table.push_stored(v);
        }
        assert_eq!(table.len(), stored.len());
        for (node, v) in stored.iter().enumerate() {
            assert_eq!(table.get(node as u32), *v);
        }
    }
}
