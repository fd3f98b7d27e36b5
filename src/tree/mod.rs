//! The merged filesystem model: every path once, with its per-layer history.
//!
//! Layers are pushed in order; each path becomes one node with a chain of versions (written,
//! implicit directory, removed), so the view at any layer and the diff between any two layers
//! are computed on demand, never by copying trees. Entries stay in the per-layer vectors the
//! indexes produced (moved, not copied); nodes keep only a name span and four links.
//!
//! Merge rules (OCI image-spec whiteout semantics, applied layer by layer):
//! - a layer's whiteouts and opaque markers are applied first, against the layers below, and
//!   then its entries in tar order, so an entry the same layer writes is never hidden by that
//!   layer's whiteouts, wherever they stand in the tar; a later duplicate in one tar wins;
//! - parents of an entry exist as implicit directories (mode `0o755`, uid/gid 0) when no
//!   entry names them, and can be whited out or replaced like explicit ones;
//! - a non-directory over a directory replaces the directory and hides its whole subtree; a
//!   directory (explicit or implicit) over a non-directory replaces it;
//! - a whiteout or opaque marker of something absent is ignored; markers never create
//!   parents.

mod changes;
mod lookup;
mod merge;
mod snapshot;
mod visits;

use std::borrow::Cow;
use std::sync::Arc;

use crate::layer::extract::FileSpan;
use crate::layer::path::{components, normalize_into};
use crate::layer::LayerMeta;

pub use crate::layer::{Entry, EntryKind};
pub use changes::ChangeKind;
pub use merge::BaseLayerMerge;
pub use snapshot::FORMAT_VERSION as SNAPSHOT_FORMAT_VERSION;

/// A node of the tree: one path that existed at some layer. Ids are dense (`0..node_count`),
/// and a parent's id is always lower than its children's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id as an index into per-node vectors such as [`FileTree::changes`]' result.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// "No node / no version" in the link fields.
const NONE: u32 = u32::MAX;
/// Version state: the path is absent (whited out or replaced) from this layer on.
const REMOVED: u32 = u32::MAX;
/// Version state: an implicit directory (a parent no entry names).
const IMPLICIT: u32 = u32::MAX - 1;

/// What an implicit directory looks like.
static IMPLICIT_DIR: Entry = Entry {
    uid: 0,
    gid: 0,
    payload: crate::layer::Payload::None,
    data_block: 0,
    packed: match Entry::pack(EntryKind::Dir, 0o755, 0, 0) {
        Some(packed) => packed,
        None => panic!("0o755 is a permission mode"),
    },
};

/// Bits of [`Node::name`] that hold the name's length. Names come from tar paths, which an
/// index refuses beyond 16 MiB, so 64 MiB is never reached; the start gets the other 38 bits
/// (256 GiB of names, far beyond any memory).
const NAME_LEN_BITS: u32 = 26;

/// One path. 24 bytes.
#[derive(Clone, Copy)]
struct Node {
    /// Where the name is in `FileTree::names`: `start << NAME_LEN_BITS | len`.
    name: u64,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    /// The newest version, whose `prev` links lead to older ones.
    latest: u32,
}

/// One step of a node's history. 12 bytes.
#[derive(Clone, Copy)]
struct VersionRecord {
    layer: u32,
    /// Index into the layer's entries, or [`REMOVED`] / [`IMPLICIT`].
    state: u32,
    prev: u32,
}

/// A regular-file entry hidden while merging, and the event that hid it first. 20 bytes.
#[derive(Clone, Copy)]
struct HideRecord {
    node: u32,
    /// The layer that wrote the entry, and its index there.
    layer: u32,
    entry: u32,
    /// The layer of the hiding event, and the state it gave the node there: an entry index
    /// of that layer, [`REMOVED`] or [`IMPLICIT`].
    by_layer: u32,
    by_state: u32,
}

/// A regular-file entry that is not visible in the final filesystem, and the first event that
/// hid it ([`FileTree::hidden_files`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hidden<'a> {
    /// The path's node.
    pub node: NodeId,
    /// The layer that wrote the entry.
    pub layer: usize,
    /// The entry itself (a regular file).
    pub entry: &'a Entry,
    /// The layer of the hiding event (`layer` itself when the same tar hid it again).
    pub by_layer: usize,
    /// What the hiding event made of the path: another entry at the path
    /// ([`VersionState::Written`]), a directory the layer needed as a parent
    /// ([`VersionState::ImplicitDir`]), or the path gone ([`VersionState::Removed`]: a
    /// whiteout, an opaque directory or a replacement of an ancestor).
    pub by: VersionState<'a>,
}

/// The visits a path received: how many, their sum and their minimum size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Visits {
    /// Number of visits.
    pub count: u32,
    /// Σ visit sizes.
    pub sum: u64,
    /// Smallest visit size (0 when never visited).
    pub min: u64,
}

/// What one layer changed, against the filesystem as of the layer below.
///
/// Counts are numbers of paths whose change kind at this layer is added / modified / removed,
/// as [`FileTree::changes`]`(Some(n - 1), n)` (or `(None, 0)`) reports them, except that the
/// root directory itself is never counted. `removed` counts every path hidden, including
/// each one below a removed directory. Bytes are regular-file bytes of those paths: the new
/// size for added and modified paths (0 when the new version is not a regular file), the
/// size of what was hidden for removed ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Σ sizes of the layer's regular-file entries (the JSON `sizeBytes`).
    pub size_bytes: u64,
    /// Entries in the layer's tar (whiteout markers not included).
    pub entry_count: u64,
    /// Paths added.
    pub added: u64,
    /// Paths modified (directories count when anything below them changed).
    pub modified: u64,
    /// Paths removed.
    pub removed: u64,
    /// Regular-file bytes of added paths.
    pub added_bytes: u64,
    /// Regular-file bytes of modified paths, at their new size.
    pub modified_bytes: u64,
    /// Regular-file bytes of removed paths, at their hidden size.
    pub removed_bytes: u64,
}

/// What a node's version at one layer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState<'a> {
    /// An entry of that layer's tar.
    Written(&'a Entry),
    /// A directory the layer needed as a parent but did not name.
    ImplicitDir,
    /// Hidden by a whiteout, an opaque directory or a replacement.
    Removed,
}

/// One step of a node's history ([`FileTree::versions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// The layer that made the change.
    pub layer: usize,
    /// What the path became at that layer.
    pub state: VersionState<'a>,
}

/// Where a regular file's bytes are ([`FileTree::content_location`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentLocation {
    /// The layer whose blob holds the bytes.
    pub layer: usize,
    /// The bytes' place in that layer's uncompressed tar.
    pub span: FileSpan,
}

/// The steps of [`FileTree::prefetch_path`].
#[derive(Clone, Copy, Debug)]
enum PathPrefetch {
    /// The node itself.
    Node,
    /// The node's name and its parent's node (the node should be loaded by now).
    NameAndParent,
    /// The parent's name and the grandparent's node (the parent should be loaded by now).
    ParentName,
}

/// One merged layer.
struct Layer {
    /// Shared with the layer's index while that is written to the cache.
    entries: Arc<Vec<Entry>>,
    stats: LayerStats,
    meta: LayerMeta,
}

/// The merged filesystem model; see the module documentation for the rules.
pub struct FileTree {
    nodes: Vec<Node>,
    names: Vec<u8>,
    children: lookup::ChildTable,
    versions: Vec<VersionRecord>,
    visits: visits::VisitTable,
    layers: Vec<Layer>,
    hidden: Vec<HideRecord>,
}

/// A summary: a million nodes are no use printed.
impl std::fmt::Debug for FileTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTree")
            .field("layers", &self.layers.len())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Default for FileTree {
    fn default() -> Self {
        Self::new()
    }
}

impl FileTree {
    /// An empty filesystem: only the root directory.
    pub fn new() -> Self {
        let mut tree = FileTree {
            nodes: vec![Node {
                name: 0,
                parent: NONE,
                first_child: NONE,
                next_sibling: NONE,
                latest: NONE,
            }],
            names: Vec::new(),
            children: lookup::ChildTable::default(),
            versions: Vec::new(),
            visits: visits::VisitTable::default(),
            layers: Vec::new(),
            hidden: Vec::new(),
        };
        tree.visits.push_node();
        tree
    }

    /// Layers merged so far.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The root directory `/`.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    /// Number of nodes (every path that existed at some layer, and the root).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every child that ever existed under `node`, in no particular order (callers sort).
    /// Use [`Self::entry_at`] to see which exist at a given layer.
    pub fn children(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut next = self.nodes[node.index()].first_child;
        std::iter::from_fn(move || {
            if next == NONE {
                return None;
            }
            let current = next;
            next = self.nodes[current as usize].next_sibling;
            Some(NodeId(current))
        })
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self, node: NodeId) -> Option<NodeId> {
        let parent = self.nodes[node.index()].parent;
        (parent != NONE).then_some(NodeId(parent))
    }

    /// The last path component as raw bytes (empty for the root).
    pub fn name(&self, node: NodeId) -> &[u8] {
        let name = self.nodes[node.index()].name;
        let start = (name >> NAME_LEN_BITS) as usize;
        let len = (name & ((1 << NAME_LEN_BITS) - 1)) as usize;
        &self.names[start..start + len]
    }

    /// The absolute path, `/a/b`; the root is `/`.
    pub fn path(&self, node: NodeId) -> Vec<u8> {
        let mut out = Vec::new();
        // Room for sixteen levels: one allocation for the ancestors of almost any path.
        self.append_path(node, &mut out, &mut Vec::with_capacity(16));
        out
    }

    /// Append the path of `node` (as [`Self::path`] gives it) to `out`; `chain` is scratch
    /// space, kept by a caller that builds many paths so that neither allocates per path.
    pub fn append_path(&self, node: NodeId, out: &mut Vec<u8>, chain: &mut Vec<u32>) {
        chain.clear();
        let mut current = node.0;
        // One walk up, so each ancestor's node and name are read once.
        while let Some(&Node { parent, .. }) = self.nodes.get(current as usize) {
            if parent == NONE {
                break;
            }
            chain.push(current);
            current = parent;
        }
        if chain.is_empty() {
            out.push(b'/');
            return;
        }
        // Names are read twice, the second time from the cache: `out` grows once.
        out.reserve(chain.iter().map(|&c| 1 + self.name(NodeId(c)).len()).sum());
        for &component in chain.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(self.name(NodeId(component)));
        }
    }

    /// For item `i` of `items`, whose paths are walked in order ([`Self::append_path`],
    /// [`Self::sort_by_path`]): start loading what the walks of the items a few places on read
    /// first, in steps each reading what the one before loaded (their node 12 items ahead,
    /// its name and parent 8 ahead, the parent's name and grandparent 4 ahead). Lists in no
    /// tree order (the inefficiencies, by wasted bytes) otherwise wait on each load in turn.
    pub fn prefetch_paths_ahead<T>(&self, items: &[T], i: usize, node_of: impl Fn(&T) -> NodeId) {
        for (distance, step) in [
            (12, PathPrefetch::Node),
            (8, PathPrefetch::NameAndParent),
            (4, PathPrefetch::ParentName),
        ] {
            if let Some(ahead) = items.get(i + distance) {
                self.prefetch_path(node_of(ahead), step);
            }
        }
    }

    /// For a pass over every node in id order that reads each one's newest version and its
    /// entry ([`Self::entry_at`] at the last layer): start loading the version of the node 8
    /// ids after `node` and the entry of the one 4 after. The nodes come in order, but a later
    /// layer's versions and entries do not, and a scan of a million nodes otherwise waited on
    /// them one by one.
    pub fn prefetch_scan_ahead(&self, node: NodeId) {
        use crate::allocator::prefetch;
        let latest = |ahead: usize| {
            let node = self.nodes.get(node.index() + ahead)?;
            self.versions.get(node.latest as usize)
        };
        if let Some(version) = latest(8) {
            prefetch(version);
        }
        if let Some(entry) = latest(4).and_then(|v| self.stored_entry(v)) {
            prefetch(entry);
        }
    }

    /// The entry a version record names; `None` for a removal or an implicit directory (their
    /// states lie past every layer's entries).
    fn stored_entry(&self, version: &VersionRecord) -> Option<&Entry> {
        self.layers
            .get(version.layer as usize)?
            .entries
            .get(version.state as usize)
    }

    /// One step of [`Self::prefetch_paths_ahead`] for `node`.
    fn prefetch_path(&self, node: NodeId, step: PathPrefetch) {
        let Some(record) = self.nodes.get(node.index()) else {
            return;
        };
        let name_and_parent = |record: &Node| {
            let start = (record.name >> NAME_LEN_BITS) as usize;
            if let Some(first) = self.names.get(start) {
                crate::allocator::prefetch(first);
            }
            if let Some(parent) = self.nodes.get(record.parent as usize) {
                crate::allocator::prefetch(parent);
            }
        };
        match step {
            PathPrefetch::Node => crate::allocator::prefetch(record),
            PathPrefetch::NameAndParent => name_and_parent(record),
            PathPrefetch::ParentName => {
                if let Some(parent) = self.nodes.get(record.parent as usize) {
                    name_and_parent(parent);
                }
            }
        }
    }

    /// Sort `items` by the paths of their nodes, byte by byte as [`Self::path`] gives them,
    /// without building the paths: each item's chain of ancestors is enough, and a sorted
    /// list of a hundred thousand paths then holds none of them.
    pub fn sort_by_path<T: Copy>(&self, items: &mut [T], node_of: impl Fn(&T) -> NodeId) {
        if items.len() < 2 {
            return;
        }
        // Every item's nodes from the root down, one after another.
        let mut chains: Vec<u32> = Vec::new();
        let mut spans = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // Items may lie anywhere in the model.
            self.prefetch_paths_ahead(items, i, &node_of);
            let start = chains.len();
            let mut current = node_of(item).0;
            while current != NONE {
                chains.push(current);
                current = self.nodes[current as usize].parent;
            }
            chains[start..].reverse();
            spans.push(start..chains.len());
        }
        // Nodes are made in tar order, and build tools write a directory's names in order, so
        // in node order most items already follow each other by path: the stable sort finds
        // such runs and merges them, comparing far fewer chains. Paths are unique, so the
        // result is the one order there is, whatever the start.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_unstable_by_key(|&i| node_of(&items[i]).0);
        order.sort_by(|&x, &y| {
            self.compare_chains(&chains[spans[x].clone()], &chains[spans[y].clone()])
        });
        let sorted: Vec<T> = order.iter().map(|&i| items[i]).collect();
        items.copy_from_slice(&sorted);
    }

    /// The order of two paths given as chains of nodes from the root down.
    fn compare_chains(&self, a: &[u32], b: &[u32]) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        // Nodes both chains share are the same bytes.
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        match (a.get(common), b.get(common)) {
            (None, None) => Ordering::Equal,
            // An ancestor's path is a prefix of its descendants'.
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(&x), Some(&y)) => {
                // Siblings: both paths go on with `/name`, and the names differ.
                let (name_a, name_b) = (self.name(NodeId(x)), self.name(NodeId(y)));
                let shared = name_a.len().min(name_b.len());
                match name_a[..shared].cmp(&name_b[..shared]) {
                    Ordering::Equal => {
                        // One name is a prefix of the other: what follows the shorter one is
                        // `/` when its path goes deeper, or nothing when it ends there.
                        let after = |chain: &[u32]| chain.get(common + 1).map(|_| b'/');
                        if name_a.len() < name_b.len() {
                            after(a).cmp(&Some(name_b[shared]))
                        } else {
                            Some(name_a[shared]).cmp(&after(b))
                        }
                    }
                    other => other,
                }
            }
        }
    }

    /// The node for a path (`/a/b`, `a/b` and `./a/b` alike), if it ever existed.
    pub fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        let mut normalized = Vec::with_capacity(path.len());
        if !normalize_into(path, &mut normalized) {
            return None;
        }
        let mut node = 0u32;
        for name in components(&normalized) {
            node = self.find_child(node, name)?;
        }
        Some(NodeId(node))
    }

    fn find_child(&self, parent: u32, name: &[u8]) -> Option<u32> {
        self.children.find(parent, name, |candidate| {
            self.nodes[candidate as usize].parent == parent && self.name(NodeId(candidate)) == name
        })
    }

    /// The version record visible at `layer`, or [`NONE`].
    fn visible_version(&self, node: u32, layer: usize) -> u32 {
        let mut v = self.nodes[node as usize].latest;
        while v != NONE && self.versions[v as usize].layer as usize > layer {
            v = self.versions[v as usize].prev;
        }
        v
    }

    fn record_entry(&self, v: u32, node: u32) -> Option<&Entry> {
        if v == NONE {
            return (node == 0).then_some(&IMPLICIT_DIR);
        }
        let record = self.versions[v as usize];
        match record.state {
            REMOVED => None,
            IMPLICIT => Some(&IMPLICIT_DIR),
            index => Some(&self.layers[record.layer as usize].entries[index as usize]),
        }
    }

    /// The node as it is after `layer` (0-based) has been applied; `None` when absent.
    /// Implicit directories (and the root, until an entry names it) read as a directory with
    /// mode `0o755`, uid/gid 0 and mtime 0.
    pub fn entry_at(&self, node: NodeId, layer: usize) -> Option<&Entry> {
        self.record_entry(self.visible_version(node.0, layer), node.0)
    }

    /// The layer whose version of the node is visible at `layer`; `None` when the node is
    /// absent there, or is the root and no layer named it.
    pub fn written_at(&self, node: NodeId, layer: usize) -> Option<usize> {
        let v = self.visible_version(node.0, layer);
        if v == NONE || self.versions[v as usize].state == REMOVED {
            return None;
        }
        Some(self.versions[v as usize].layer as usize)
    }

    /// The version of the node visible at `layer`: which layer made it and what it is there
    /// (written by an entry, an implicit directory, or removed); `None` before any layer
    /// touched it.
    pub fn version_at(&self, node: NodeId, layer: usize) -> Option<Version<'_>> {
        let v = self.visible_version(node.0, layer);
        if v == NONE {
            return None;
        }
        let record = self.versions[v as usize];
        let state = match record.state {
            REMOVED => VersionState::Removed,
            IMPLICIT => VersionState::ImplicitDir,
            index => {
                VersionState::Written(&self.layers[record.layer as usize].entries[index as usize])
            }
        };
        Some(Version {
            layer: record.layer as usize,
            state,
        })
    }

    /// Where the content of the regular file `node` shows at `layer` is stored: the layer that
    /// wrote it and the span of its bytes in that layer's tar. Hard links are followed to the
    /// file they name, as of the layer that wrote the link. `None` for anything that is not a
    /// regular file there (absent, a directory, a symlink, a dangling hard link).
    pub fn content_location(&self, node: NodeId, layer: usize) -> Option<ContentLocation> {
        // Hard links to hard links are not written by tar, but a crafted layer could chain
        // them, even in a loop.
        const MAX_LINK_HOPS: usize = 8;
        let (mut node, mut layer) = (node, layer);
        for _ in 0..=MAX_LINK_HOPS {
            let written = self.written_at(node, layer)?;
            let entry = self.entry_at(node, layer)?;
            match entry.kind() {
                EntryKind::File => {
                    return Some(ContentLocation {
                        layer: written,
                        span: FileSpan {
                            data_offset: entry.data_offset(),
                            size: entry.size(),
                            sha256: entry.content(),
                        },
                    })
                }
                EntryKind::Hardlink => {
                    node = self.lookup(entry.link_target()?)?;
                    layer = written;
                }
                _ => return None,
            }
        }
        None
    }

    /// The node's history in layer order: one version per layer that changed it (its final
    /// state at that layer).
    pub fn versions(&self, node: NodeId) -> impl Iterator<Item = Version<'_>> + '_ {
        let mut chain = Vec::new();
        let mut v = self.nodes[node.index()].latest;
        while v != NONE {
            let record = self.versions[v as usize];
            let state = match record.state {
                REMOVED => VersionState::Removed,
                IMPLICIT => VersionState::ImplicitDir,
                index => VersionState::Written(
                    &self.layers[record.layer as usize].entries[index as usize],
                ),
            };
            chain.push(Version {
                layer: record.layer as usize,
                state,
            });
            v = record.prev;
        }
        chain.into_iter().rev()
    }

    /// What `layer` changed (see [`LayerStats`] for the exact definitions).
    ///
    /// # Panics
    /// When `layer >= layer_count()`.
    pub fn layer_stats(&self, layer: usize) -> &LayerStats {
        &self.layers[layer].stats
    }

    /// The digest, sizes and compression of a merged layer.
    ///
    /// # Panics
    /// When `layer >= layer_count()`.
    pub fn layer_meta(&self, layer: usize) -> &LayerMeta {
        &self.layers[layer].meta
    }

    /// Describe a merged layer as read from another blob of the same tar (a model reopened
    /// from the cache for an image whose blob is compressed differently): only the blob's
    /// size and compression change.
    pub fn set_blob_facts(
        &mut self,
        layer: usize,
        compressed_size: u64,
        compression: crate::layer::Compression,
    ) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.meta.compressed_size = compressed_size;
            l.meta.compression = compression;
        }
    }

    /// Every entry of a layer's tar, in tar order (superseded duplicates included).
    ///
    /// # Panics
    /// When `layer >= layer_count()`.
    pub fn layer_entries(&self, layer: usize) -> &[Entry] {
        &self.layers[layer].entries
    }

    /// Every regular-file entry that is not visible in the final filesystem, each once, with
    /// the first event that hid it: in layer order, and within a layer whiteouts and opaque
    /// markers first, then entries in tar order (so an entry written twice in one tar is
    /// hidden by its own layer). The entries' sizes add up to the layers' regular-file bytes
    /// minus those of the files visible at the last layer. In the order they were hidden.
    pub fn hidden_files(&self) -> impl ExactSizeIterator<Item = Hidden<'_>> + '_ {
        // The hidden entries lie anywhere in layers of a million entries: each is loaded a few
        // records ahead of its turn (a hint; an out-of-range record is simply not loaded).
        let entry_of = |h: &HideRecord| {
            self.layers
                .get(h.layer as usize)
                .and_then(|l| l.entries.get(h.entry as usize))
        };
        self.hidden.iter().enumerate().map(move |(i, h)| {
            if let Some(entry) = self.hidden.get(i + 8).and_then(entry_of) {
                crate::allocator::prefetch(entry);
            }
            self.hidden_file(h)
        })
    }

    fn hidden_file(&self, h: &HideRecord) -> Hidden<'_> {
        Hidden {
            node: NodeId(h.node),
            layer: h.layer as usize,
            entry: &self.layers[h.layer as usize].entries[h.entry as usize],
            by_layer: h.by_layer as usize,
            by: match h.by_state {
                REMOVED => VersionState::Removed,
                IMPLICIT => VersionState::ImplicitDir,
                index => {
                    VersionState::Written(&self.layers[h.by_layer as usize].entries[index as usize])
                }
            },
        }
    }

    /// The visits the path received across all layers.
    pub fn visits(&self, node: NodeId) -> Visits {
        self.visits.get(node.0)
    }

    /// Heap bytes held by the model (an estimate from capacities), for benchmarks.
    pub fn heap_bytes(&self) -> usize {
        let entries: usize = self
            .layers
            .iter()
            .map(|l| {
                l.entries.capacity() * std::mem::size_of::<Entry>()
                    + l.entries
                        .iter()
                        // The target's bytes and the boxed slice that points to them.
                        .filter_map(|e| e.link_target().map(<[u8]>::len))
                        .sum::<usize>()
            })
            .sum();
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.names.capacity()
            + self.children.heap_bytes()
            + self.versions.capacity() * std::mem::size_of::<VersionRecord>()
            + self.visits.heap_bytes()
            + self.hidden.capacity() * std::mem::size_of::<HideRecord>()
            + entries
    }
}

/// A path for people and JSON: UTF-8 as is, every invalid byte as `\xNN`.
pub fn display_path(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_appended_one_after_another_are_the_paths() {
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[
            ("usr/lib/a", EntryKind::File, b"1"),
            ("usr/b", EntryKind::File, b"2"),
        ]));
        let (mut out, mut chain) = (b"x".to_vec(), Vec::new());
        for path in ["usr/lib/a", "usr", "usr/b"] {
            let node = tree.lookup(path.as_bytes()).expect("path");
            for step in [
                PathPrefetch::Node,
                PathPrefetch::NameAndParent,
                PathPrefetch::ParentName,
            ] {
                tree.prefetch_path(node, step);
            }
            tree.append_path(node, &mut out, &mut chain);
        }
        tree.append_path(tree.root(), &mut out, &mut chain);
        assert_eq!(out, b"x/usr/lib/a/usr/usr/b/");
        assert_eq!(tree.path(tree.root()), b"/");
        assert_eq!(
            tree.path(tree.lookup(b"usr/lib").expect("dir")),
            b"/usr/lib"
        );
    }

    #[test]
    fn display_path_escapes_only_invalid_bytes() {
        assert_eq!(display_path(b"/caf\xc3\xa9"), "/café");
        assert_eq!(display_path(b"/caf\xe9/x\xff"), "/caf\\xe9/x\\xff");
        assert!(matches!(display_path(b"/ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn sort_by_path_gives_the_byte_order_of_the_paths() {
        let names = [
            "b",
            "b/x",
            "b/x/y",
            "b.txt",
            "b0",
            "a",
            "a/b",
            "ab",
            "b/x.d/z",
            "b/x0",
            "c/\u{e9}",
            "c/z",
            "c/e",
            "d/a/b/c/d",
            "d/a/b/c",
            "d/a.b",
            "d/a-",
            "d/a/b-",
        ];
        let entries: Vec<(&str, EntryKind, &[u8])> = names
            .iter()
            .map(|n| (*n, EntryKind::File, &b"x"[..]))
            .collect();
        let mut tree = FileTree::new();
        tree.push_layer(layer(&entries));
        let mut nodes: Vec<NodeId> = (0..tree.node_count() as u32).rev().map(NodeId).collect();
        tree.sort_by_path(&mut nodes, |n| *n);
        let sorted: Vec<Vec<u8>> = nodes.iter().map(|n| tree.path(*n)).collect();
        let mut expected = sorted.clone();
        expected.sort();
        assert_eq!(sorted, expected);
        assert_eq!(sorted[0], b"/");
        assert!(sorted.len() > names.len());
    }

    #[test]
    fn empty_tree_has_an_implicit_root() {
        let tree = FileTree::new();
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.path(tree.root()), b"/");
        assert_eq!(tree.lookup(b"/"), Some(tree.root()));
        assert_eq!(tree.lookup(b"/nope"), None);
        assert_eq!(tree.entry_at(tree.root(), 0), Some(&IMPLICIT_DIR));
        assert_eq!(tree.children(tree.root()).count(), 0);
    }

    /// A layer tar from (name, kind, content or link target) triples.
    pub(super) fn layer(entries: &[(&str, EntryKind, &[u8])]) -> crate::layer::LayerIndex {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            match kind {
                EntryKind::File => {
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append_data(&mut header, name, *data).ok();
                }
                EntryKind::Hardlink | EntryKind::Symlink => {
                    header.set_entry_type(if *kind == EntryKind::Hardlink {
                        tar::EntryType::Link
                    } else {
                        tar::EntryType::Symlink
                    });
                    header.set_size(0);
                    builder
                        .append_link(&mut header, name, std::str::from_utf8(data).unwrap_or(""))
                        .ok();
                }
                _ => {}
            }
        }
        let bytes = builder.into_inner().unwrap_or_default();
        match crate::layer::index_layer(bytes.as_slice(), None) {
            Ok(index) => index,
            Err(e) => panic!("test layer does not index: {e}"),
        }
    }

    #[test]
    fn content_location_follows_hard_links_to_the_layer_that_holds_the_bytes() {
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[("bin/tool", EntryKind::File, b"v1")]));
        tree.push_layer(layer(&[
            ("bin/alias", EntryKind::Hardlink, b"bin/tool"),
            ("bin/link", EntryKind::Symlink, b"tool"),
            ("bin/dangling", EntryKind::Hardlink, b"bin/nope"),
        ]));
        tree.push_layer(layer(&[("bin/tool", EntryKind::File, b"version2")]));

        let tool = tree.lookup(b"/bin/tool").unwrap_or(NodeId(0));
        let alias = tree.lookup(b"/bin/alias").unwrap_or(NodeId(0));
        let at0 = tree.content_location(tool, 0);
        assert_eq!(at0.map(|l| (l.layer, l.span.size)), Some((0, 2)));
        assert_eq!(
            tree.content_location(tool, 2)
                .map(|l| (l.layer, l.span.size)),
            Some((2, 8))
        );
        // The link was made at layer 1, when the tool was still version 1.
        let via_alias = tree.content_location(alias, 2);
        assert_eq!(via_alias, at0);
        // The version visible at each layer says who made it and what it is.
        let at = |layer| tree.version_at(tool, layer).map(|v| (v.layer, v.state));
        assert!(matches!(at(1), Some((0, VersionState::Written(e))) if e.size() == 2));
        assert!(matches!(at(2), Some((2, VersionState::Written(e))) if e.size() == 8));
        let bin = tree.lookup(b"/bin").unwrap_or(NodeId(0));
        assert_eq!(
            tree.version_at(bin, 2).map(|v| (v.layer, v.state)),
            Some((0, VersionState::ImplicitDir))
        );
        assert_eq!(tree.version_at(tree.root(), 2), None);
        for path in [&b"/bin/link"[..], b"/bin/dangling", b"/bin", b"/absent"] {
            let node = tree.lookup(path);
            assert_eq!(node.and_then(|n| tree.content_location(n, 2)), None);
        }
    }

    #[test]
    fn hidden_files_name_the_first_event_that_hid_each_stored_file() {
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[
            ("a/one", EntryKind::File, b"11"),
            ("a/two", EntryKind::File, b"222"),
            ("keep", EntryKind::File, b"k"),
        ]));
        // Layer 1: a whiteout of a/one; a/two written twice in the tar.
        tree.push_layer(layer(&[
            ("a/.wh.one", EntryKind::File, b""),
            ("a/two", EntryKind::File, b"4444"),
            ("a/two", EntryKind::File, b"55555"),
        ]));
        let hidden: Vec<(Vec<u8>, usize, u64, usize, &str)> = tree
            .hidden_files()
            .map(|h| {
                let by = match h.by {
                    VersionState::Removed => "removed",
                    VersionState::ImplicitDir => "dir",
                    VersionState::Written(e) if e.content() == h.entry.content() => "same",
                    VersionState::Written(_) => "other",
                };
                (tree.path(h.node), h.layer, h.entry.size(), h.by_layer, by)
            })
            .collect();
        assert_eq!(
            hidden,
            vec![
                (b"/a/one".to_vec(), 0, 2, 1, "removed"),
                (b"/a/two".to_vec(), 0, 3, 1, "other"),
                (b"/a/two".to_vec(), 1, 4, 1, "other"),
            ]
        );
        // 2 + 3 + 4 stored but not visible: all layers' file bytes minus the visible ones.
        let stored: u64 = (0..2).map(|l| tree.layer_stats(l).size_bytes).sum();
        assert_eq!(stored - 6, hidden.iter().map(|h| h.2).sum::<u64>());
    }
}
