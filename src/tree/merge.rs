//! Merging one layer index into the tree: whiteouts and opaque markers first, then entries in
//! tar order; versions, visits and the layer's statistics are recorded on the way.

use crate::layer::path::common_prefix;
use crate::layer::{EntryBatch, LayerError, LayerIndex, PathSource};

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
    /// Nodes that got a version at this layer (may repeat), for a later layer's statistics.
    /// The first layer touches every node it has and counts its statistics as it goes, so it
    /// keeps none (4 MB fewer on a million-file layer while it streams).
    touched: Vec<u32>,
    /// The kinds of this layer's entries while they are merged before the layer's index is
    /// complete ([`BaseLayerMerge`]); empty otherwise, when the entries are in the tree.
    streamed_kinds: &'t [EntryKind],
    /// What the first layer's statistics are made of, counted as versions come and go.
    counts: FirstLayerCounts,
}

/// The first layer's statistics, kept up as it merges, so that they need no pass over its
/// nodes once its last byte is in: on a million-file layer that pass read 100 MB of nodes,
/// versions and entries, 14 ms while nothing else could run. Below the first layer nothing
/// can be modified or removed, so a path it leaves present is added, with its file's bytes.
/// Kept by every merge; only the first layer's are read.
#[derive(Default)]
struct FirstLayerCounts {
    /// Nodes other than the root whose version at this layer is not a removal.
    present: u64,
    /// Sizes of the regular-file entries written.
    file_bytes: u64,
    /// Regular-file entries of this layer that a later entry of the same layer replaced (a
    /// path written twice, a file turned into a directory or hidden below one): their bytes
    /// are not the layer's to show. Rare, so their sizes are looked up at the end.
    replaced_files: Vec<u32>,
}

impl FirstLayerCounts {
    /// The first layer's statistics: `stats` (its size and entry count) with what was
    /// counted; `entries` are the layer's.
    fn stats(&self, stats: LayerStats, entries: &[super::Entry]) -> LayerStats {
        let replaced: u64 = self
            .replaced_files
            .iter()
            .filter_map(|&index| entries.get(index as usize))
            .map(|entry| entry.size())
            .sum();
        LayerStats {
            added: self.present,
            added_bytes: self.file_bytes.saturating_sub(replaced),
            ..stats
        }
    }
}

impl Merge<'_> {
    /// The kind of entry `index` of `layer`.
    fn kind(&self, layer: u32, index: u32) -> EntryKind {
        let written = self.tree.layers.get(layer as usize);
        match written.and_then(|l| l.entries.get(index as usize)) {
            Some(entry) => entry.kind(),
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
            let replaced = self.tree.versions[latest as usize].state;
            if replaced != REMOVED
                && replaced != IMPLICIT
                && self.kind(self.layer, replaced) == EntryKind::File
            {
                self.counts.replaced_files.push(replaced);
            }
            let prev = self.tree.versions[latest as usize].prev;
            let absent_below = prev == NONE || self.tree.versions[prev as usize].state == REMOVED;
            let now_present = if state == REMOVED && absent_below && node != 0 {
                // Written and hidden within this layer, absent below: no change at all.
                self.tree.nodes[node as usize].latest = prev;
                false
            } else {
                self.tree.versions[latest as usize].state = state;
                state != REMOVED
            };
            if node != 0 {
                let counts = &mut self.counts;
                counts.present =
                    counts.present + u64::from(now_present) - u64::from(replaced != REMOVED);
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
        if self.layer > 0 {
            self.touched.push(node);
        }
        if node != 0 && state != REMOVED {
            self.counts.present += 1;
        }
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
        if kind == EntryKind::File {
            self.counts.file_bytes += size;
        }
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
    ///
    /// `known` is the node of `path` when it was found before the layer's merge began
    /// ([`FileTree::resolve`]): its lookup is skipped.
    #[allow(clippy::too_many_arguments)]
    fn merge_entry(
        &mut self,
        merge: &mut Merge,
        path: &[u8],
        common: usize,
        index: u32,
        kind: EntryKind,
        size: u64,
        known: Option<u32>,
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
                            let node = match known {
                                Some(node) => {
                                    debug_assert_eq!(
                                        merge.tree.nodes[node as usize].parent,
                                        parent
                                    );
                                    node
                                }
                                None => merge.child(parent, rest),
                            };
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

/// How many paths ahead [`SlotPrefetch`] loads a child-table slot: enough that the load (a
/// few hundred nanoseconds on a big table) overlaps the merging of the entries between.
const PREFETCH_DISTANCE: usize = 4;

/// Loads, ahead of the merge, the child-table slot where a lookup for a coming path will
/// begin.
///
/// The child table of a big image is far bigger than the caches, and a lookup starts with a
/// miss on it: on a million-file layer that wait was most of the merge. A slot depends on the
/// parent directory's node, which is known ahead of time for the part of a coming path that
/// it shares with the path just merged (files of one directory, and directories of one
/// parent, follow each other in a tar). A second cursor runs [`PREFETCH_DISTANCE`] paths
/// ahead of the merge and asks for the slot of the first name that a walk along its path
/// will have to look up.
struct SlotPrefetch<S> {
    lead: S,
}

impl<S: PathSource> SlotPrefetch<S> {
    /// `lead` yields the same paths as the merge, from its first one on.
    fn new(mut lead: S) -> Self {
        for _ in 0..PREFETCH_DISTANCE {
            if lead.next_path().is_none() {
                break;
            }
        }
        SlotPrefetch { lead }
    }

    /// After a path has been merged: `merged` is that path and `nodes` the nodes along it,
    /// (end of the component in `merged`, node).
    fn after(&mut self, merged: &[u8], nodes: &[(usize, u32)], tree: &FileTree) {
        if let Some((ahead, _)) = self.lead.next_path() {
            if let Some((parent, name)) = first_lookup(ahead, merged, nodes) {
                tree.children.prefetch(parent, name);
            }
        }
    }
}

/// The first lookup that a walk along `path` makes when the nodes of `known` (a path, with
/// its components' (end, node)) are reused for what the two paths share: the parent's node
/// and the name. `None` when `known` answers all of `path`.
fn first_lookup<'p>(
    path: &'p [u8],
    known: &[u8],
    nodes: &[(usize, u32)],
) -> Option<(u32, &'p [u8])> {
    let common = common_prefix(path, known);
    let reused = nodes
        .iter()
        .take_while(|&&(end, _)| end <= common && path.get(end).is_none_or(|&b| b == b'/'))
        .last();
    let (start, parent) = match reused {
        Some(&(end, _)) if end == path.len() => return None,
        Some(&(end, node)) => (end + 1, node),
        None => (0, 0),
    };
    let rest = &path[start..];
    let name = rest.split(|&b| b == b'/').next()?;
    (!name.is_empty()).then_some((parent, name))
}

/// Finds the nodes of successive paths (of markers, or of entries before they merge), reusing
/// the nodes of what each path shares with the one before: the paths of one directory, and of
/// sibling directories, follow each other in a tar. Finds only: it creates nothing.
#[derive(Default)]
struct DirWalk {
    /// The path last asked for, and the nodes found along it: (end of the component in
    /// `path`, node), as far as it exists.
    path: Vec<u8>,
    nodes: Vec<(usize, u32)>,
}

impl DirWalk {
    /// The node of the normalised path `dir`, if it ever existed (the root for an empty one).
    fn find(&mut self, tree: &FileTree, dir: &[u8]) -> Option<u32> {
        let common = common_prefix(dir, &self.path);
        let reused = self
            .nodes
            .iter()
            .take_while(|&&(end, _)| end <= common && dir.get(end).is_none_or(|&b| b == b'/'))
            .count();
        self.nodes.truncate(reused);
        self.path.clear();
        self.path.extend_from_slice(dir);
        let (mut start, mut node) = match self.nodes.last() {
            Some(&(end, node)) if end == dir.len() => return Some(node),
            Some(&(end, node)) => (end + 1, node),
            None if dir.is_empty() => return Some(0),
            None => (0, 0),
        };
        // Split as the merge's walk splits a path when it creates nodes (every '/', so that
        // both agree on any path), though normalised paths have no empty name anyway.
        loop {
            let rest = &dir[start..];
            let len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            node = tree.find_child(node, &rest[..len])?;
            self.nodes.push((start + len, node));
            if start + len == dir.len() {
                break;
            }
            start += len + 1;
        }
        Some(node)
    }
}

/// Whiteout paths as a [`PathSource`], for [`FileTree::resolve`].
struct Whiteouts<'a, I>(I, std::marker::PhantomData<&'a [u8]>);

impl<'a, I: Iterator<Item = &'a [u8]>> PathSource for Whiteouts<'a, I> {
    fn next_path(&mut self) -> Option<(&[u8], usize)> {
        self.0.next().map(|path| (path, 0))
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
    counts: FirstLayerCounts,
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
            counts: FirstLayerCounts::default(),
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
            counts,
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
            touched: Vec::new(),
            streamed_kinds: kinds,
            counts: std::mem::take(counts),
        };
        let mut prefetch = SlotPrefetch::new(batch.paths(path));
        batch.replay(path, |path, common, kind, size| {
            walk.merge_entry(&mut merge, path, common, index, kind, size, None);
            prefetch.after(path, &walk.prev_nodes, merge.tree);
            index += 1;
        });
        *counts = merge.counts;
    }

    /// Whether every entry of `index` reached the merge, so that [`Self::finish`] needs no
    /// more of the index than its entries.
    pub fn merged_all(&self, index: &LayerIndex) -> bool {
        index.len() == self.kinds.len() && index.kinds().eq(self.kinds.iter().copied())
    }

    /// The model with its first layer complete. `index` is the layer's whole index, as the walk
    /// that sent the batches returned it; if it holds other entries than were merged (it
    /// cannot when both come from one walk, unless the merge stopped listening), the layer is
    /// merged again from the index. An index kept without its entry paths cannot be merged
    /// again: that case is an error.
    pub fn finish(mut self, index: LayerIndex) -> Result<FileTree, LayerError> {
        if !self.merged_all(&index) {
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
        self.tree.set_first_layer_stats(&self.counts);
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
            counts: FirstLayerCounts::default(),
        };
        let mut stack = Vec::new();

        // Whiteouts and opaque markers act on the layers below only, so they go first. Which
        // node each marker and entry names is found first, on two threads: hiding changes
        // versions, never which nodes exist, and a node that an entry creates is found by the
        // walk then.
        let markers = parts.take_markers();
        let whiteout_nodes = merge.tree.resolve(markers.whiteouts().len(), |skip| {
            Whiteouts(markers.whiteouts().skip(skip), std::marker::PhantomData)
        });
        for (i, &node) in whiteout_nodes.iter().enumerate() {
            merge.tree.prefetch_ahead(&whiteout_nodes, i);
            // The root comes only from an empty path, which no whiteout names.
            if node != NONE && node != 0 {
                merge.hide(node, &mut stack);
            }
        }
        let mut dirs = DirWalk::default();
        for path in markers.opaque_dirs() {
            if let Some(node) = dirs.find(merge.tree, path) {
                if merge.current(node) == Current::Dir {
                    merge.hide_children(node, &mut stack);
                }
            }
        }
        // Applied: their paths are not needed while the entries merge.
        drop((markers, whiteout_nodes));

        let entry_nodes = merge.tree.resolve(entry_count as usize, |skip| {
            let mut paths = parts.paths();
            for _ in 0..skip {
                paths.next_path();
            }
            paths
        });
        let mut walk = PathWalk::default();
        let mut paths = parts.paths();
        let mut prefetch = SlotPrefetch::new(parts.paths());
        for (i, &node) in entry_nodes.iter().enumerate() {
            // The index stores each path as what it shares with the previous one and the rest:
            // that shared length is the common prefix the walk needs.
            let Some((path, common)) = paths.next_path() else {
                break;
            };
            merge.tree.prefetch_ahead(&entry_nodes, i);
            let entry = &merge.tree.layers[layer as usize].entries[i];
            let (kind, size) = (entry.kind(), entry.size());
            let node = (node != NONE).then_some(node);
            walk.merge_entry(&mut merge, path, common, i as u32, kind, size, node);
            prefetch.after(path, &walk.prev_nodes, merge.tree);
        }

        drop((paths, prefetch, entry_nodes));
        let touched = std::mem::take(&mut merge.touched);
        let counts = std::mem::take(&mut merge.counts);
        drop(parts);
        let layer = layer as usize;
        if layer == 0 {
            self.set_first_layer_stats(&counts);
        } else {
            self.layers[layer].stats = self.stats_for(layer, &touched);
        }
    }

    /// The node of each of `count` paths (`NONE` for one that never existed), where
    /// `paths(skip)` yields them from the `skip`th on. Read only, so a big layer's paths are
    /// split between two threads; each walk reuses what a path shares with the one before and
    /// loads slots ahead ([`SlotPrefetch`]): the lookups are waits on memory, not work.
    fn resolve<S: PathSource>(&self, count: usize, paths: impl Fn(usize) -> S + Sync) -> Vec<u32> {
        /// Below this, a second thread costs more than it saves. Unit tests split small layers
        /// too, so that both halves are checked.
        const SPLIT_FROM: usize = if cfg!(test) { 64 } else { 16_384 };
        let mut nodes = vec![NONE; count];
        let find_all = |skip: usize, out: &mut [u32]| {
            let mut source = paths(skip);
            let mut prefetch = SlotPrefetch::new(paths(skip));
            let mut dirs = DirWalk::default();
            for slot in out.iter_mut() {
                let Some((path, _)) = source.next_path() else {
                    break;
                };
                *slot = dirs.find(self, path).unwrap_or(NONE);
                prefetch.after(&dirs.path, &dirs.nodes, self);
            }
        };
        if count < SPLIT_FROM {
            find_all(0, &mut nodes);
            return nodes;
        }
        let half = count / 2;
        let (first, second) = nodes.split_at_mut(half);
        std::thread::scope(|scope| {
            scope.spawn(|| find_all(half, second));
            find_all(0, first);
        });
        nodes
    }

    /// Start loading, for the nodes a few places after `i` in `nodes`, what merging them reads
    /// first: the node and its visits (8 ahead), its newest version (4 ahead, by then the node
    /// is loaded) and that version's entry (2 ahead).
    fn prefetch_ahead(&self, nodes: &[u32], i: usize) {
        use crate::allocator::prefetch;
        let node_at = |ahead: usize| {
            nodes
                .get(i + ahead)
                .and_then(|&n| self.nodes.get(n as usize).map(|node| (n, node)))
        };
        if let Some((n, node)) = node_at(8) {
            prefetch(node);
            self.visits.prefetch(n);
        }
        if let Some(version) =
            node_at(4).and_then(|(_, node)| self.versions.get(node.latest as usize))
        {
            prefetch(version);
        }
        let entry = node_at(2)
            .and_then(|(_, node)| self.versions.get(node.latest as usize))
            .and_then(|v| self.stored_entry(v));
        if let Some(entry) = entry {
            prefetch(entry);
        }
    }

    /// The first layer's statistics, from what its merge counted (checked against the pass
    /// over its nodes, all of which it touched, in debug builds).
    fn set_first_layer_stats(&mut self, counts: &FirstLayerCounts) {
        let counted = counts.stats(self.layers[0].stats.clone(), &self.layers[0].entries);
        #[cfg(debug_assertions)]
        {
            let every_node: Vec<u32> = (0..self.nodes.len() as u32).collect();
            debug_assert_eq!(counted, self.stats_for(0, &every_node));
        }
        self.layers[0].stats = counted;
    }

    /// Start loading what [`Self::stats_for`] reads of the nodes a few places after `i` in
    /// `touched`: the node (16 ahead), its newest version (8 ahead, by then the node is
    /// loaded), the version before it and the newest one's entry (4 ahead), and that earlier
    /// version's entry (2 ahead). A later layer touches nodes all over the model, and without
    /// this each one waited on three or four loads in turn. Only nodes in `range` are
    /// loaded: the others are another thread's.
    fn prefetch_for_stats(&self, touched: &[u32], i: usize, range: &std::ops::Range<u32>) {
        use crate::allocator::prefetch;
        let node_at = |ahead: usize| {
            touched
                .get(i + ahead)
                .filter(|n| range.contains(n))
                .and_then(|&n| self.nodes.get(n as usize))
        };
        let latest_at =
            |ahead: usize| node_at(ahead).and_then(|node| self.versions.get(node.latest as usize));
        if let Some(node) = node_at(16) {
            prefetch(node);
        }
        if let Some(latest) = latest_at(8) {
            prefetch(latest);
        }
        if let Some(latest) = latest_at(4) {
            if let Some(previous) = self.versions.get(latest.prev as usize) {
                prefetch(previous);
            }
            if let Some(entry) = self.stored_entry(latest) {
                prefetch(entry);
            }
        }
        let previous = latest_at(2).and_then(|latest| self.versions.get(latest.prev as usize));
        if let Some(entry) = previous.and_then(|v| self.stored_entry(v)) {
            prefetch(entry);
        }
    }

    /// Statistics of a later `layer`, from the nodes it touched (and their ancestors); the
    /// first layer's are counted while it merges ([`FirstLayerCounts`]) and checked against
    /// this in debug builds.
    ///
    /// Each touched node is classified on its own, so a big later layer's nodes are split
    /// between two threads by node id, each owning its part of the marks; the directories
    /// above the changes are then marked in one pass. A later layer's nodes lie all over the
    /// model and each waits on loads, which two threads overlap (on the million-file image,
    /// 18–23 ms instead of 25–33). The first layer's nodes are read in order, and halving
    /// them saved nothing.
    fn stats_for(&self, layer: usize, touched: &[u32]) -> LayerStats {
        /// Below this, a second thread costs more than it saves. Unit tests split small layers
        /// too, so that both parts are checked.
        const SPLIT_FROM: usize = if cfg!(test) { 2 } else { 16_384 };
        let mut marks = vec![0u8; self.nodes.len()];
        let mut counts = self.layers[layer].stats.clone();
        let mut changed = Vec::new();
        if layer == 0 || touched.len() < SPLIT_FROM {
            let all = 0..self.nodes.len() as u32;
            self.classify_touched(layer, touched, all, &mut marks, &mut counts, &mut changed);
        } else {
            let split = median_node(touched).min(self.nodes.len() as u32);
            let (low, high) = marks.split_at_mut(split as usize);
            let (mut high_counts, mut high_changed) = (LayerStats::default(), Vec::new());
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let range = split..self.nodes.len() as u32;
                    let (counts, changed) = (&mut high_counts, &mut high_changed);
                    self.classify_touched(layer, touched, range, high, counts, changed);
                });
                self.classify_touched(layer, touched, 0..split, low, &mut counts, &mut changed);
            });
            counts.added += high_counts.added;
            counts.added_bytes += high_counts.added_bytes;
            counts.modified += high_counts.modified;
            counts.modified_bytes += high_counts.modified_bytes;
            counts.removed += high_counts.removed;
            counts.removed_bytes += high_counts.removed_bytes;
            changed.append(&mut high_changed);
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
                    counts.modified += 1;
                }
                up = self.nodes[up as usize].parent;
            }
        }
        counts
    }

    /// Classify the nodes of `touched` that lie in `range` (each once), adding them to
    /// `counts` and the changed ones to `changed`. `marks` holds the marks of `range`'s
    /// nodes, from its start: 0 = not seen, else 1 + the classification.
    fn classify_touched(
        &self,
        layer: usize,
        touched: &[u32],
        range: std::ops::Range<u32>,
        marks: &mut [u8],
        counts: &mut LayerStats,
        changed: &mut Vec<u32>,
    ) {
        let base = layer.checked_sub(1);
        for (i, &node) in touched.iter().enumerate() {
            // The first layer creates its nodes in the order it touches them: its reads are
            // in order already.
            if base.is_some() {
                self.prefetch_for_stats(touched, i, &range);
            }
            if !range.contains(&node) {
                continue;
            }
            let mark = &mut marks[(node - range.start) as usize];
            if *mark != 0 {
                continue;
            }
            let before = base.and_then(|b| self.entry_at(NodeId(node), b));
            let after = self.entry_at(NodeId(node), layer);
            let kind = classify(before, after);
            *mark = kind.map_or(1, |k| 2 + k as u8);
            let file_size = |e: Option<&super::Entry>| {
                e.filter(|e| e.kind() == EntryKind::File)
                    .map_or(0, |e| e.size())
            };
            if node == 0 {
                if matches!(kind, Some(ChangeKind::Modified)) {
                    changed.push(node);
                }
                continue;
            }
            match kind {
                Some(ChangeKind::Added) => {
                    counts.added += 1;
                    counts.added_bytes += file_size(after);
                }
                Some(ChangeKind::Modified) => {
                    counts.modified += 1;
                    counts.modified_bytes += file_size(after);
                }
                Some(ChangeKind::Removed) => {
                    counts.removed += 1;
                    counts.removed_bytes += file_size(before);
                }
                Some(ChangeKind::Unmodified) | None => continue,
            }
            changed.push(node);
        }
    }
}

/// Marks of [`FileTree::stats_for`] for a directory marked because something below it changed.
const PROPAGATED: u8 = 10;

/// A node id that about half of `touched` lies below: the median of an even sample of it.
fn median_node(touched: &[u32]) -> u32 {
    const SAMPLE: usize = 255;
    let step = (touched.len() / SAMPLE).max(1);
    let mut sample: Vec<u32> = touched.iter().step_by(step).copied().collect();
    if sample.is_empty() {
        return 0;
    }
    let middle = sample.len() / 2;
    sample.select_nth_unstable(middle);
    sample[middle]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A layer index of regular files (path, contents), in the order given (whiteout
    /// markers are named as in a tar).
    fn layer(files: &[(String, Vec<u8>)]) -> LayerIndex {
        let entries: Vec<(&str, EntryKind, &[u8])> = files
            .iter()
            .map(|(path, data)| (path.as_str(), EntryKind::File, data.as_slice()))
            .collect();
        super::super::tests::layer(&entries)
    }

    /// A first layer that replaces its own entries: a path written twice, a file that a
    /// later path makes a directory, and a directory whose files go when a file takes its
    /// place; with an empty file and a link.
    fn self_replacing_layer() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let files: [(&str, &[u8]); 8] = [
            ("etc/a", b"12345"),
            ("etc/b", b""),
            ("etc/a", b"xy"),
            ("var/x", b"abc"),
            ("var/x/inner", b"1234"),
            ("opt/d/f1", b"1"),
            ("opt/d/f2", b"22"),
            ("opt/d", b"dfile"),
        ];
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append_data(&mut header, name, data).ok();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        builder.append_link(&mut header, "lnk", "etc/a").ok();
        builder.into_inner().unwrap_or_default()
    }

    #[test]
    fn the_first_layers_statistics_count_what_it_leaves_present() {
        // Present: etc, etc/a, etc/b, var, var/x (now a directory), var/x/inner, opt, opt/d
        // (now a file) and lnk. Their file bytes: 2 + 0 + 4 + 5; the replaced 5, 3, 1 and 2
        // bytes are not the layer's to show.
        let expected = LayerStats {
            size_bytes: 22,
            entry_count: 9,
            added: 9,
            added_bytes: 11,
            ..LayerStats::default()
        };
        let tar = self_replacing_layer();
        let index = crate::layer::index_layer(tar.as_slice(), None).expect("the layer indexes");
        let mut merged = FileTree::new();
        merged.push_layer(index);
        assert_eq!(*merged.layer_stats(0), expected);

        // The same layer merged while it streams.
        let (tap, batches) = std::sync::mpsc::sync_channel(4);
        let streamed = std::thread::scope(|scope| {
            let merge = scope.spawn(|| BaseLayerMerge::from_batches(batches));
            let options = crate::layer::IndexOptions::default();
            let index = crate::layer::index_layer_tapped(tar.as_slice(), None, options, tap)
                .expect("the layer indexes");
            let merge = merge.join().expect("the merge ends");
            merge.finish(index).expect("the merge finishes")
        });
        assert_eq!(*streamed.layer_stats(0), expected);
        // And as the pass over the layer's nodes counts them.
        let every_node: Vec<u32> = (0..streamed.node_count() as u32).collect();
        let mut recounted = streamed.layer_stats(0).clone();
        (recounted.added, recounted.added_bytes) = (0, 0);
        let mut tree = streamed;
        tree.layers[0].stats = recounted;
        assert_eq!(tree.stats_for(0, &every_node), expected);
    }

    #[test]
    fn markers_and_entries_resolved_ahead_give_the_model_a_plain_walk_would() {
        // 100 directories of 20 files; the next layer deletes two files in ten, rewrites two,
        // makes d5 opaque and adds a new directory tree. Both layers are long enough that the
        // paths are resolved on two threads.
        let mut base = Vec::new();
        let mut expected = BTreeMap::new();
        for i in 0..2000u32 {
            let path = format!("usr/d{}/f{i}", i / 20);
            base.push((path.clone(), format!("old {i}").into_bytes()));
            // The layer whose version of the path is visible at the end, if any.
            expected.insert(path, Some(0));
        }
        let mut top = Vec::new();
        for i in 0..2000u32 {
            let (dir, path) = (format!("usr/d{}", i / 20), format!("usr/d{}/f{i}", i / 20));
            if i % 20 == 0 && i / 20 == 5 {
                top.push((format!("{dir}/.wh..wh..opq"), Vec::new()));
            }
            match i % 10 {
                7 => {
                    top.push((format!("{dir}/.wh.f{i}"), Vec::new()));
                    expected.insert(path, None);
                }
                3 => {
                    top.push((path.clone(), format!("new {i}").into_bytes()));
                    expected.insert(path, Some(1));
                }
                _ if i / 20 == 5 => {
                    expected.insert(path, None);
                }
                _ => {}
            }
        }
        for i in 0..300u32 {
            let path = format!("opt/n{}/g{i}", i / 7);
            top.push((path.clone(), format!("added {i}").into_bytes()));
            expected.insert(path, Some(1));
        }
        // A whiteout of a path that never existed changes nothing.
        top.push(("usr/d1/.wh.missing".to_string(), Vec::new()));
        top.push(("nowhere/.wh.at-all".to_string(), Vec::new()));

        let mut tree = FileTree::new();
        tree.push_layer(layer(&base));
        tree.push_layer(layer(&top));
        for (path, writer) in &expected {
            let node = tree.lookup(path.as_bytes());
            let entry = node.and_then(|n| tree.entry_at(n, 1));
            assert_eq!(entry.is_some(), writer.is_some(), "{path}");
            assert_eq!(node.and_then(|n| tree.written_at(n, 1)), *writer, "{path}");
        }
        assert!(tree.lookup(b"usr/d1/missing").is_none());
        let stats = tree.layer_stats(1);
        // 200 whiteouts, and the 16 files of d5 that the layer neither deletes nor rewrites.
        assert_eq!(stats.removed, 216);
        // 300 files in 43 directories under a new `opt`.
        assert_eq!(stats.added, 300 + 43 + 1);
        // 200 rewritten files, their 100 directories and `usr`.
        assert_eq!(stats.modified, 200 + 100 + 1);
    }

    #[test]
    fn the_directory_walk_reuses_shared_prefixes_and_misses_cleanly() {
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[
            ("a/b/c".to_string(), b"1".to_vec()),
            ("a/b/d".to_string(), b"2".to_vec()),
            ("a/e".to_string(), b"3".to_vec()),
        ]));
        let node = |path: &str| tree.lookup(path.as_bytes()).map(|n| n.0);
        let mut dirs = DirWalk::default();
        assert_eq!(dirs.find(&tree, b""), Some(0));
        assert_eq!(dirs.find(&tree, b"a/b/c"), node("a/b/c"));
        assert_eq!(dirs.find(&tree, b"a/b/d"), node("a/b/d"));
        assert_eq!(dirs.find(&tree, b"a/b/x"), None);
        // After a miss, what was found of the path is still reused correctly.
        assert_eq!(dirs.find(&tree, b"a/b"), node("a/b"));
        assert_eq!(dirs.find(&tree, b"a/e"), node("a/e"));
        assert_eq!(dirs.find(&tree, b"a/e/f"), None);
        assert_eq!(dirs.find(&tree, b"ab"), None);
        assert_eq!(dirs.find(&tree, b"a"), node("a"));
        assert_eq!(dirs.find(&tree, b""), Some(0));
    }

    #[test]
    fn the_first_lookup_ahead_starts_below_what_the_merged_path_shares() {
        // The merged path usr/lib/x with its nodes 1, 2 and 3.
        let nodes = [(3, 1), (7, 2), (9, 3)];
        let known = b"usr/lib/x";
        /// A path ahead, and the parent node and name of its first lookup.
        type Case<'a> = (&'a [u8], Option<(u32, &'a [u8])>);
        let cases: [Case; 6] = [
            (b"usr/lib/y", Some((2, b"y"))),
            (b"usr/lib/x/z", Some((3, b"z"))),
            (b"usr/libexec/a", Some((1, b"libexec"))),
            (b"etc/a", Some((0, b"etc"))),
            (b"usr/lib", None),
            (b"usr/lib/x", None),
        ];
        for (path, expected) in cases {
            assert_eq!(first_lookup(path, known, &nodes), expected);
        }
    }
}
