//! The image figures, computed from the merged tree: efficiency, wasted bytes (dive's
//! definitions), shadowed bytes (the exact waste), the visible files, and the inefficient
//! paths. The same numbers feed the TUI, `--ci` and `--json`.
//!
//! Visits are recorded while layers merge (see [`FileTree::visits`]): every non-whiteout entry
//! visits its path with its size if it is a regular file, else 0; every whiteout, opaque
//! marker or replacement visits each regular file it hides with 0. Duplicates within one tar
//! visit once each.

use std::cmp::Reverse;

use crate::tree::{EntryKind, FileTree, NodeId};

/// A path visited two or more times with a non-zero sum. Its path is
/// [`FileTree::path`]`(node)`: a big image has a hundred thousand of these, and the model
/// already holds every name once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inefficiency {
    /// The path's node.
    pub node: NodeId,
    /// Number of visits.
    pub count: u32,
    /// Σ visit sizes (dive counts the surviving copy too).
    pub wasted_bytes: u64,
}

/// The image-level figures (the text summary, `--ci` and `--json` all show these).
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Σ `sizeBytes` of the layers (regular-file bytes, uncompressed).
    pub size_bytes: u64,
    /// Σ min ÷ Σ sum over all paths; 1.0 when Σ sum is 0.
    pub efficiency: f64,
    /// Σ sum over paths visited two or more times.
    pub wasted_bytes: u64,
    /// `wasted_bytes` ÷ Σ `sizeBytes` of every layer but the first (0 when that is 0).
    pub user_wasted_percent: f64,
    /// Regular-file bytes stored in the layers but not visible in the final filesystem:
    /// Σ sizes of all regular-file entries − Σ sizes of the regular files visible at the end.
    pub shadowed_bytes: u64,
    /// Regular files (not hard links) visible at the last layer.
    pub file_count: u64,
    /// Their bytes.
    pub file_bytes: u64,
    /// Paths visited two or more times with a non-zero sum: largest sum first, ties by path.
    pub inefficiencies: Vec<Inefficiency>,
}

/// Compute the figures of every layer merged into `tree` (all zero, efficiency 1.0, for no
/// layers).
pub fn analyse(tree: &FileTree) -> Figures {
    let layers = tree.layer_count();
    let size_bytes: u64 = (0..layers).map(|l| tree.layer_stats(l).size_bytes).sum();
    let upper_size: u64 = (1..layers).map(|l| tree.layer_stats(l).size_bytes).sum();

    let mut sum_all: u64 = 0;
    let mut min_all: u64 = 0;
    let mut wasted_bytes: u64 = 0;
    let mut file_count: u64 = 0;
    let mut file_bytes: u64 = 0;
    let mut inefficient = Vec::new();
    for index in 0..tree.node_count() {
        let node = NodeId(index as u32);
        tree.prefetch_scan_ahead(node);
        let visits = tree.visits(node);
        sum_all += visits.sum;
        min_all += visits.min;
        if visits.count >= 2 {
            wasted_bytes += visits.sum;
            if visits.sum > 0 {
                inefficient.push((node, visits.count, visits.sum));
            }
        }
        if let Some(last) = layers.checked_sub(1) {
            if let Some(entry) = tree.entry_at(node, last) {
                if entry.kind() == EntryKind::File {
                    file_count += 1;
                    file_bytes += entry.size();
                }
            }
        }
    }

    let mut inefficiencies: Vec<Inefficiency> = inefficient
        .into_iter()
        .map(|(node, count, sum)| Inefficiency {
            node,
            count,
            wasted_bytes: sum,
        })
        .collect();
    // Paths are unique, so unstable sorts give the one order there is: by bytes, then each
    // run of equal bytes by path.
    inefficiencies.sort_unstable_by_key(|i| Reverse(i.wasted_bytes));
    for run in inefficiencies.chunk_by_mut(|a, b| a.wasted_bytes == b.wasted_bytes) {
        tree.sort_by_path(run, |i| i.node);
    }

    Figures {
        size_bytes,
        efficiency: if sum_all == 0 {
            1.0
        } else {
            min_all as f64 / sum_all as f64
        },
        wasted_bytes,
        user_wasted_percent: if upper_size == 0 {
            0.0
        } else {
            wasted_bytes as f64 / upper_size as f64
        },
        shadowed_bytes: size_bytes.saturating_sub(file_bytes),
        file_count,
        file_bytes,
        inefficiencies,
    }
}
