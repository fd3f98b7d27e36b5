//! Merging one layer index into the tree: whiteouts and opaque markers first, then entries in
//! tar order; versions, visits and the layer's statistics are recorded on the way.

use crate::layer::path::{components, split_last};
use crate::layer::{EntryBatch, LayerError, LayerIndex};

use super::changes::classify;
use super::lookup::Probe;
use super::{
    ChangeKind, EntryKind, FileTree, HideRecord, Layer, LayerStats, Node, NodeId, VersionRecord,
    IMPLICIT, NAME_LEN_BITS, NONE, REMOVED,
};

/// A node's state while merging, enough to decide what an operation does to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Current {
    Absent,
    Dir,
    File,
    Other,
}

/// Per-merge bookkeeping.
struct Merge<'t> {
    tree: &'t mut FileTree,
    layer: u32,
    /// Nodes that got a version at this layer (may repeat).
    touched: Vec<u32>,
    /// The kinds of this layer's entries while they are merged before the layer's index is
    /// complete ([`BaseLayerMerge`]); empty otherwise, when the entries are in the tree.
    streamed_kinds: &'t [EntryKind],
}

impl Merge<'_> {
    /// The kind of entry `index` of `layer`.
    fn kind(&self, layer: u32, index: u32) -> EntryKind {
        let written = self.tree.layers.get(layer as usize);
        match written.and_then(|l| l.entries.get(index as usize)) {
            Some(entry) => entry.kind,
            // A streamed entry; every index a version holds was streamed before it.
            None => self
                .streamed_kinds
                .get(index as usize)
                .copied()
                .unwrap_or(EntryKind::Fifo),
        }
    }

    fn current(&self, node: u32) -> Current {
        let v = self.tree.nodes[node as usize].latest;
        if v == NONE {
            return if node == 0 {
                Current::Dir
            } else {
                Current::Absent
            };
        }
        let record = self.tree.versions[v as usize];
        match record.state {
            REMOVED => Current::Absent,
            IMPLICIT => Current::Dir,
            index => match self.kind(record.layer, index) {
                EntryKind::Dir => Current::Dir,
                EntryKind::File => Current::File,
                _ => Current::Other,
            },
        }
    }

    /// Make `state` the node's version at this layer.
    fn set(&mut self, node: u32, state: u32) {
        let latest = self.tree.nodes[node as usize].latest;
        self.record_hidden(node, latest, state);
        if latest != NONE && self.tree.versions[latest as usize].layer == self.layer {
            let prev = self.tree.versions[latest as usize].prev;
            let absent_below = prev == NONE || self.tree.versions[prev as usize].state == REMOVED;
            if state == REMOVED && absent_below && node != 0 {
                // Written and hidden within this layer, absent below: no change at all.
                self.tree.nodes[node as usize].latest = prev;
            } else {
                self.tree.versions[latest as usize].state = state;
            }
            return;
        }
        let id = self.tree.versions.len() as u32;
        self.tree.versions.push(VersionRecord {
            layer: self.layer,
            state,
            prev: latest,
        });
        self.tree.nodes[node as usize].latest = id;
        self.touched.push(node);
    }

    /// When the node's current version is a regular file, `state` hides it: remember which
    /// entry and by what (the findings need the first event that hid each stored file).
    fn record_hidden(&mut self, node: u32, latest: u32, state: u32) {
        if latest == NONE {
            return;
        }
        let record = self.tree.versions[latest as usize];
        if record.state == REMOVED || record.state == IMPLICIT {
            return;
        }
        if self.kind(record.layer, record.state) == EntryKind::File {
            self.tree.hidden.push(HideRecord {
                node,
                layer: record.layer,
                entry: record.state,
                by_layer: self.layer,
                by_state: state,
            });
        }
    }

    /// Hide `node` and everything below it that is present, visiting each regular file.
    fn hide(&mut self, node: u32, stack: &mut Vec<u32>) {
        stack.clear();
        stack.push(node);
        while let Some(n) = stack.pop() {
            match self.current(n) {
                Current::Absent => continue,
                Current::File => self.tree.visits.add(n, 0),
                Current::Dir => {
                    let mut child = self.tree.nodes[n as usize].first_child;
                    while child != NONE {
                        stack.push(child);
                        child = self.tree.nodes[child as usize].next_sibling;
                    }
                }
                Current::Other => {}
            }
            self.set(n, REMOVED);
        }
    }

    /// Hide every present child of `node`.
    fn hide_children(&mut self, node: u32, stack: &mut Vec<u32>) {
        let mut child = self.tree.nodes[node as usize].first_child;
        while child != NONE {
            let next = self.tree.nodes[child as usize].next_sibling;
            self.hide(child, stack);
            child = next;
        }
    }

    /// The child of `parent` called `name`, created if it never existed.
    fn child(&mut self, parent: u32, name: &[u8]) -> u32 {
        let tree = &*self.tree;
        let probe = tree.children.probe(parent, name, |candidate| {
            tree.nodes[candidate as usize].parent == parent && tree.name(NodeId(candidate)) == name
        });
        let tag = match probe {
            Probe::Found(node) => return node,
            Probe::Vacant { tag } => tag,
        };
        let tree = &mut *self.tree;
        // Node ids are u32: four billion paths would need far more memory than exists.
        let id = tree.nodes.len() as u32;
        let start = tree.names.len() as u64;
        // Longer names cannot come out of a layer index (see NAME_LEN_BITS).
        let len = (name.len() as u64).min((1 << NAME_LEN_BITS) - 1);
        tree.names.extend_from_slice(&name[..len as usize]);
        let first_sibling = tree.nodes[parent as usize].first_child;
        tree.nodes.push(Node {
            name: (start << NAME_LEN_BITS) | len,
            parent,
            first_child: NONE,
            next_sibling: first_sibling,
            latest: NONE,
        });
        tree.nodes[parent as usize].first_child = id;
        tree.visits.push_node();
        tree.children.insert_tagged(tag, id);
        id
    }

    /// Make `node` a directory at this layer unless it already is one (an implicit parent).
    fn ensure_dir(&mut self, node: u32) {
        match self.current(node) {
            Current::Dir => {}
            Current::Absent | Current::Other => self.set(node, IMPLICIT),
            Current::File => {
                // The directory replaces the file: the replacement visits what it hides.
                self.tree.visits.add(node, 0);
                self.set(node, IMPLICIT);
            }
        }
    }

    /// Write entry `index` (of this layer) at `node`.
    fn write(&mut self, node: u32, index: u32, kind: EntryKind, size: u64, stack: &mut Vec<u32>) {
        let current = self.current(node);
        if kind == EntryKind::Dir {
            if current == Current::File {
                self.tree.visits.add(node, 0);
            }
        } else if current == Current::Dir {
            self.hide_children(node, stack);
        }
        self.set(node, index);
        let visit = if kind == EntryKind::File { size } else { 0 };
        self.tree.visits.add(node, visit);
    }
}

/// Where the previous entry's path led, so the next one reuses what it shares.
///
/// Consecutive entries usually share their parent directories, so the previous path's nodes
/// are remembered: (end of component in the previous path, node). The components of the
/// common prefix are reused without a lookup, and only the rest of the path is split. The
/// previous entry's ancestors are directories at this layer (its own write only touches itself
/// and what lies below), so reused ones need no check: `prev_parents` of them.
#[derive(Default)]
struct PathWalk {
    prev_nodes: Vec<(usize, u32)>,
    prev_parents: usize,
    stack: Vec<u32>,
}

impl PathWalk {
    /// Merge entry `index` of the layer at `path`, which shares `common` bytes with the
    /// previous entry's path.
    fn merge_entry(
        &mut self,
        merge: &mut Merge,
        path: &[u8],
        common: usize,
        index: u32,
        kind: EntryKind,
        size: u64,
    ) {
        let prev_nodes = &mut self.prev_nodes;
        let leaf = if path.is_empty() {
            prev_nodes.clear();
            0
        } else {
            let mut reused = 0;
            while let Some(&(end, _)) = prev_nodes.get(reused) {
                if end > common || path.get(end).is_some_and(|&b| b != b'/') {
                    break;
                }
                reused += 1;
            }
            prev_nodes.truncate(reused);
            // The whole path is a reused component: the previous path or an ancestor of it.
            let full = prev_nodes.last().is_some_and(|&(end, _)| end == path.len());
            let reused_parents = if full { reused - 1 } else { reused };
            for &(_, node) in &prev_nodes[self.prev_parents.min(reused_parents)..reused_parents] {
                merge.ensure_dir(node);
            }
            if full {
                prev_nodes[reused - 1].1
            } else {
                let (mut start, mut parent) = match prev_nodes.last() {
                    Some(&(end, node)) => (end + 1, node),
                    None => (0, 0),
                };
                loop {
                    let rest = &path[start..];
                    match rest.iter().position(|&b| b == b'/') {
                        Some(slash) => {
                            let node = merge.child(parent, &rest[..slash]);
                            prev_nodes.push((start + slash, node));
                            merge.ensure_dir(node);
                            parent = node;
                            start += slash + 1;
                        }
                        None => {
                            let node = merge.child(parent, rest);
                            prev_nodes.push((path.len(), node));
                            break node;
                        }
                    }
                }
            }
        };
        self.prev_parents = prev_nodes.len().saturating_sub(1);
        merge.write(leaf, index, kind, size, &mut self.stack);
    }
}

/// The first layer of a model, merged while its tar is still being read.
///
/// Entries arrive in [`EntryBatch`]es from the walk ([`crate::layer::index_layer_tapped`]) and
/// are merged at once, so on a big base layer the merge runs beside the download,
/// decompression and hashing instead of after them. Only the first layer can be merged this
/// way: a layer's whiteouts and opaque markers act on the layers below it and must come
/// before its entries, wherever the tar lists them, and below the first layer there is
/// nothing for them to act on. The model is only handed out by [`Self::finish`], with the
/// layer's complete (and verified) index.
pub struct BaseLayerMerge {
    tree: FileTree,
    /// The kinds of the entries merged so far (their index in the layer is their position).
    kinds: Vec<EntryKind>,
    touched: Vec<u32>,
    walk: PathWalk,
    path: Vec<u8>,
}

impl Default for BaseLayerMerge {
    fn default() -> Self {
        Self::new()
    }
}

impl BaseLayerMerge {
    /// An empty model about to receive its first layer.
    pub fn new() -> Self {
        BaseLayerMerge {
            tree: FileTree::new(),
            kinds: Vec::new(),
            touched: Vec::new(),
            walk: PathWalk::default(),
            path: Vec::new(),
        }
    }

    /// The first layer merged from every batch `batches` yields (a channel's receiving end
    /// ends when the walk does), ready for [`Self::finish`].
    pub fn from_batches(batches: impl IntoIterator<Item = EntryBatch>) -> Self {
        let mut merge = Self::new();
        for batch in batches {
            merge.add(&batch);
        }
        merge
    }

    /// Merge the next entries of the layer.
    pub fn add(&mut self, batch: &EntryBatch) {
        let BaseLayerMerge {
            tree,
            kinds,
            touched,
            walk,
            path,
        } = self;
        tree.nodes.reserve(batch.len());
        tree.visits.reserve(batch.len());
        tree.versions.reserve(batch.len());
        tree.children.reserve(batch.len());
        let mut index = kinds.len() as u32;
        // The batch's kinds first: an entry may stand where an earlier one of the batch did.
        kinds.extend(batch.kinds());
        let mut merge = Merge {
            tree,
            layer: 0,
            touched: std::mem::take(touched),
            streamed_kinds: kinds,
        };
        batch.replay(path, |path, common, kind, size| {
            walk.merge_entry(&mut merge, path, common, index, kind, size);
            index += 1;
        });
        *touched = merge.touched;
    }

    /// The model with its first layer complete. `index` is the layer's whole index, as the walk
    /// that sent the batches returned it; if it holds other entries than were merged (it
    /// cannot when both come from one walk, unless the merge stopped listening), the layer is
    /// merged again from the index. An index kept without its entry paths cannot be merged
    /// again: that case is an error.
    pub fn finish(mut self, index: LayerIndex) -> Result<FileTree, LayerError> {
        let streamed_all =
            index.len() == self.kinds.len() && index.kinds().eq(self.kinds.iter().copied());
        if !streamed_all {
            if !index.has_entry_paths() {
                return Err(LayerError::Read(format!(
                    "{} of its {} entries reached the merge, and the index kept no paths to \
                     merge it again",
                    self.kinds.len(),
                    index.len()
                )));
            }
            let mut tree = FileTree::new();
            tree.push_layer(index);
            return Ok(tree);
        }
        // The paths were merged as they streamed: freed before the statistics allocate.
        let (entries, meta) = index.into_parts().into_entries();
        self.tree.layers.push(Layer {
            stats: LayerStats {
                size_bytes: meta.size_bytes,
                entry_count: entries.len() as u64,
                ..LayerStats::default()
            },
            entries,
            meta,
        });
        self.tree.layers[0].stats = self.tree.stats_for(0, &self.touched);
        Ok(self.tree)
    }
}

impl FileTree {
    /// Merge the next layer (layers are pushed in order 0, 1, 2, …). The index is consumed:
    /// its entries move into the tree and its path arena is freed.
    pub fn push_layer(&mut self, index: LayerIndex) {
        let mut parts = index.into_parts();
        let entries = std::mem::take(&mut parts.entries);
        let layer = self.layers.len() as u32;
        let entry_count = entries.len() as u64;
        self.layers.push(Layer {
            entries,
            stats: LayerStats {
                size_bytes: parts.meta.size_bytes,
                entry_count,
                ..LayerStats::default()
            },
            meta: parts.meta.clone(),
        });

        // Every entry may be a new path: room for all of them up front, so the vectors and
        // the child table grow once per layer instead of doubling (and copying) on the way.
        let new_paths = entry_count as usize;
        self.nodes.reserve_exact(new_paths);
        self.visits.reserve_exact(new_paths);
        self.versions.reserve_exact(new_paths);
        self.children.reserve(new_paths);

        let mut merge = Merge {
            tree: self,
            layer,
            touched: Vec::new(),
            streamed_kinds: &[],
        };
        let mut stack = Vec::new();

        // Whiteouts and opaque markers act on the layers below only, so they go first.
        // Markers of one directory follow each other in a tar: its node is looked up once for
        // the run (hiding changes versions, never which nodes exist).
        let markers = parts.take_markers();
        let mut run_dir: Option<(&[u8], Option<u32>)> = None;
        for path in markers.whiteouts() {
            let Some((dir, name)) = split_last(path) else {
                continue;
            };
            let dir_node = match run_dir {
                Some((known, node)) if known == dir => node,
                _ => {
                    let node = merge.tree.lookup_normalized(dir);
                    run_dir = Some((dir, node));
                    node
                }
            };
            if let Some(node) = dir_node.and_then(|d| merge.tree.find_child(d, name)) {
                merge.hide(node, &mut stack);
            }
        }
        for path in markers.opaque_dirs() {
            if let Some(node) = merge.tree.lookup_normalized(path) {
                if merge.current(node) == Current::Dir {
                    merge.hide_children(node, &mut stack);
                }
            }
        }
        // Applied: their paths are not needed while the entries merge.
        drop(markers);

        let mut walk = PathWalk::default();
        let mut paths = parts.paths();
        for i in 0..entry_count as usize {
            // The index stores each path as what it shares with the previous one and the rest:
            // that shared length is the common prefix the walk needs.
            let Some((path, common)) = paths.next_path() else {
                break;
            };
            let entry = &merge.tree.layers[layer as usize].entries[i];
            let (kind, size) = (entry.kind, entry.size);
            walk.merge_entry(&mut merge, path, common, i as u32, kind, size);
        }

        drop(paths);
        let touched = std::mem::take(&mut merge.touched);
        drop(parts);
        self.layers[layer as usize].stats = self.stats_for(layer as usize, &touched);
    }

    /// Node of a normalised path, if it ever existed.
    fn lookup_normalized(&self, path: &[u8]) -> Option<u32> {
        let mut node = 0u32;
        for name in components(path) {
            node = self.find_child(node, name)?;
        }
        Some(node)
    }

    /// Statistics of `layer`, from the nodes it touched (and their ancestors).
    fn stats_for(&self, layer: usize, touched: &[u32]) -> LayerStats {
        /// Per-node marks: 0 = not seen, else 1 + the classification, or `PROPAGATED`.
        const PROPAGATED: u8 = 10;
        let mut stats = self.layers[layer].stats.clone();
        let mut marks = vec![0u8; self.nodes.len()];
        let base = layer.checked_sub(1);
        let mut changed = Vec::new();
        for &node in touched {
            if marks[node as usize] != 0 {
                continue;
            }
            let before = base.and_then(|b| self.entry_at(NodeId(node), b));
            let after = self.entry_at(NodeId(node), layer);
            let kind = classify(before, after);
            marks[node as usize] = kind.map_or(1, |k| 2 + k as u8);
            let file_size = |e: Option<&super::Entry>| {
                e.filter(|e| e.kind == EntryKind::File)
                    .map_or(0, |e| e.size)
            };
            if node == 0 {
                if matches!(kind, Some(ChangeKind::Modified)) {
                    changed.push(node);
                }
                continue;
            }
            match kind {
                Some(ChangeKind::Added) => {
                    stats.added += 1;
                    stats.added_bytes += file_size(after);
                }
                Some(ChangeKind::Modified) => {
                    stats.modified += 1;
                    stats.modified_bytes += file_size(after);
                }
                Some(ChangeKind::Removed) => {
                    stats.removed += 1;
                    stats.removed_bytes += file_size(before);
                }
                Some(ChangeKind::Unmodified) | None => continue,
            }
            changed.push(node);
        }
        // A directory is modified when anything below it changed.
        let unmodified = 2 + ChangeKind::Unmodified as u8;
        for &node in &changed {
            let mut up = self.nodes[node as usize].parent;
            while up != NONE {
                let mark = &mut marks[up as usize];
                if *mark != 0 && *mark != unmodified {
                    break;
                }
                *mark = PROPAGATED;
                if up != 0 {
                    stats.modified += 1;
                }
                up = self.nodes[up as usize].parent;
            }
        }
        stats
    }
}
