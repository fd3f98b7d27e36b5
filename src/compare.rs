//! Comparing two images: which layers they share (by digest), where their layer lists diverge,
//! and what differs between their final filesystems. Plain data computed from two loaded
//! models ([`ImageInfo`] plus the merged [`FileTree`]); the `diff` subcommand renders it as
//! text or JSON and the explorer's compare view marks its tree with it.
//!
//! Paths are compared by name, directory by directory, in both trees at their last layer. A
//! path is **added** when only B has it, **removed** when only A has it, and **modified** when
//! both have it with a different type, content hash, mode, uid, gid or link target (mtime does
//! not count, as in a layer's own changes). A directory added or removed whole is listed once, with the
//! number of paths and bytes it holds (as `git status` lists an untracked directory); what it
//! holds is counted in the summary and marked per node, not listed. A directory whose own
//! attributes are equal is not listed when only its contents changed; the per-node marks
//! ([`Comparison::a_marks`]) do mark it modified, as the layer views do.
//!
//! Nothing here grows with how deep an image nests its paths: the walks use explicit stacks,
//! and a change names its nodes, not a copy of its path ([`FileChange::path`] builds one on
//! demand, for the one change being printed).

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::digest::Digest;
use crate::image::{ImageInfo, LayerInfo};
use crate::tree::{ChangeKind, Entry, EntryKind, FileTree, NodeId};

/// How the layers at one position of A and B compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerMatch {
    /// The same blob digest.
    Shared,
    /// Different blobs of the same uncompressed tar (same diff_id, other compression).
    SameContent,
    /// Different layers.
    Different,
    /// Only A has a layer here.
    OnlyInA,
    /// Only B has a layer here.
    OnlyInB,
}

impl LayerMatch {
    /// The word used in text and JSON: `shared`, `same-content`, `different`, `only-a`,
    /// `only-b`.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerMatch::Shared => "shared",
            LayerMatch::SameContent => "same-content",
            LayerMatch::Different => "different",
            LayerMatch::OnlyInA => "only-a",
            LayerMatch::OnlyInB => "only-b",
        }
    }
}

/// The layers of A and B at one position (base first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPair {
    /// The position, 0 for the base layer.
    pub index: usize,
    /// A's layer there, if A has that many.
    pub a: Option<LayerInfo>,
    /// B's layer there, if B has that many.
    pub b: Option<LayerInfo>,
    /// How they compare.
    pub status: LayerMatch,
}

/// A blob both images use, wherever it stands in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLayer {
    /// The blob digest.
    pub digest: Digest,
    /// Its position in A.
    pub a_index: usize,
    /// Its position in B.
    pub b_index: usize,
    /// Its compressed size.
    pub compressed_size: u64,
}

/// How the layer lists compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerComparison {
    /// One row per position, up to the longer list.
    pub pairs: Vec<LayerPair>,
    /// How many leading layers have the same digest: the base both are built on.
    pub common_prefix: usize,
    /// The first layer of A after the common base (`None` when A has no more layers, or
    /// when the lists are equal).
    pub diverge_a: Option<usize>,
    /// The first layer of B after the common base.
    pub diverge_b: Option<usize>,
    /// Every blob digest present in both images, in A's order (each digest once).
    pub shared: Vec<SharedLayer>,
    /// Compressed bytes of the shared blobs (each counted once).
    pub shared_bytes: u64,
}

impl LayerComparison {
    /// Whether both lists hold the same digests in the same order.
    pub fn identical(&self) -> bool {
        self.pairs.iter().all(|p| p.status == LayerMatch::Shared)
    }
}

/// Which attributes of a path differ between A and B.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Differences {
    /// File, directory, symlink, …
    pub kind: bool,
    /// The content hash (regular files).
    pub content: bool,
    /// Permission bits.
    pub mode: bool,
    /// Owner.
    pub uid: bool,
    /// Group.
    pub gid: bool,
    /// Symlink or hard-link target.
    pub link_target: bool,
}

impl Differences {
    /// Compare two entries the way layer changes are decided (mtime and offsets do not count).
    pub fn between(a: &Entry, b: &Entry) -> Self {
        Differences {
            kind: a.kind() != b.kind(),
            content: a.content() != b.content(),
            mode: a.mode() != b.mode(),
            uid: a.uid != b.uid,
            gid: a.gid != b.gid,
            link_target: a.link_target() != b.link_target(),
        }
    }

    /// Whether anything differs.
    pub fn any(self) -> bool {
        self.kind || self.content || self.mode || self.uid || self.gid || self.link_target
    }

    /// The names of what differs: `type`, `content`, `mode`, `uid`, `gid`, `link`.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.kind, "type"),
            (self.content, "content"),
            (self.mode, "mode"),
            (self.uid, "uid"),
            (self.gid, "gid"),
            (self.link_target, "link"),
        ] {
            if on {
                out.push(name);
            }
        }
        out
    }
}

/// What a directory added or removed whole holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// Paths below it (not counting itself).
    pub paths: u64,
    /// Regular-file bytes below it.
    pub bytes: u64,
}

/// One path that differs between the final filesystems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// [`ChangeKind::Added`] (only in B), [`ChangeKind::Removed`] (only in A) or
    /// [`ChangeKind::Modified`].
    pub kind: ChangeKind,
    /// Components in the path: 0 for `/`, 1 for `/a`, 2 for `/a/b`.
    pub depth: u32,
    /// For a directory added or removed whole, what it holds; nothing below it is listed.
    pub holds: Option<Holds>,
    /// The path in A's final filesystem.
    pub a: Option<Entry>,
    /// The path in B's final filesystem.
    pub b: Option<Entry>,
    /// Its node in A's tree.
    pub a_node: Option<NodeId>,
    /// Its node in B's tree.
    pub b_node: Option<NodeId>,
    /// For modified paths, what differs (all false otherwise).
    pub differences: Differences,
}

impl FileChange {
    /// The tree and node that name the path: A's when A has it, else B's.
    fn named_in<'t>(&self, a: &'t FileTree, b: &'t FileTree) -> (&'t FileTree, NodeId) {
        match (self.a_node, self.b_node) {
            (Some(node), _) => (a, node),
            (None, Some(node)) => (b, node),
            // Every change is present on at least one side; the root stands in otherwise.
            (None, None) => (a, a.root()),
        }
    }

    /// The absolute path (`/a/b`) as raw bytes, built from the trees compared (`a` and `b` as
    /// given to [`compare`]). Print it with [`crate::escape::escape_bytes`].
    pub fn path(&self, a: &FileTree, b: &FileTree) -> Vec<u8> {
        let (tree, node) = self.named_in(a, b);
        tree.path(node)
    }

    /// The last component of the path.
    pub fn name<'t>(&self, a: &'t FileTree, b: &'t FileTree) -> &'t [u8] {
        let (tree, node) = self.named_in(a, b);
        tree.name(node)
    }

    /// Regular-file bytes in A (0 when absent there or not a regular file).
    pub fn a_size(&self) -> u64 {
        file_size(self.a.as_ref())
    }

    /// Regular-file bytes in B (0 when absent there or not a regular file).
    pub fn b_size(&self) -> u64 {
        file_size(self.b.as_ref())
    }
}

fn file_size(entry: Option<&Entry>) -> u64 {
    entry
        .filter(|e| e.kind() == EntryKind::File)
        .map_or(0, |e| e.size())
}

/// Counts and regular-file bytes of the path changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Paths only in B.
    pub added: u64,
    /// Paths only in A.
    pub removed: u64,
    /// Paths in both that differ.
    pub modified: u64,
    /// Regular-file bytes of the added paths.
    pub added_bytes: u64,
    /// Regular-file bytes of the removed paths.
    pub removed_bytes: u64,
    /// Regular-file bytes of the modified paths, as A has them.
    pub modified_bytes_a: u64,
    /// Regular-file bytes of the modified paths, as B has them.
    pub modified_bytes_b: u64,
}

impl FileSummary {
    /// Whether no path differs.
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.modified == 0
    }

    /// Bytes B's filesystem holds more (or, negative, fewer) than A's among the changed paths.
    pub fn net_bytes(&self) -> i128 {
        i128::from(self.added_bytes) + i128::from(self.modified_bytes_b)
            - i128::from(self.removed_bytes)
            - i128::from(self.modified_bytes_a)
    }
}

/// Everything that differs between image A and image B.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The layer lists side by side.
    pub layers: LayerComparison,
    /// Whether both have the same config blob (runtime settings, history).
    pub same_config: bool,
    /// Paths that differ between the final filesystems, in tree order (a directory before
    /// what it holds, names byte-wise sorted within a directory); a directory added or removed
    /// whole is one entry ([`FileChange::holds`]).
    pub files: Vec<FileChange>,
    /// Counts and bytes of every path that differs, those inside directories added or removed
    /// whole included.
    pub summary: FileSummary,
    /// Per node of A's tree ([`NodeId::index`]), its mark at A's last layer: `Removed` (not in
    /// B), `Modified` (differs, or a directory with a change below), `Unmodified`; `None` for
    /// nodes absent from A's final filesystem.
    pub a_marks: Vec<Option<ChangeKind>>,
    /// Per node of B's tree, its mark at B's last layer: `Added` (not in A), `Modified`,
    /// `Unmodified`; `None` for nodes absent from B's final filesystem.
    pub b_marks: Vec<Option<ChangeKind>>,
}

impl Comparison {
    /// Whether the images are the same: the same config and the same layers in the same
    /// order (which also means no file differs).
    pub fn identical(&self) -> bool {
        self.same_config && self.layers.identical() && self.summary.is_empty()
    }
}

/// Compare image A (`a`, with its tree `tree_a` holding all its layers) with image B.
/// Runs in time linear in the number of paths of both trees (plus sorting each directory).
pub fn compare(a: &ImageInfo, tree_a: &FileTree, b: &ImageInfo, tree_b: &FileTree) -> Comparison {
    let layers = compare_layers(&a.layers, &b.layers);
    let mut walk = Walk::new(tree_a, tree_b);
    walk.run();
    let mut a_marks = walk.a_marks;
    let mut b_marks = walk.b_marks;
    bubble_up(tree_a, &mut a_marks);
    bubble_up(tree_b, &mut b_marks);
    let mut summary = FileSummary::default();
    for change in &walk.files {
        let holds = change.holds.unwrap_or_default();
        match change.kind {
            ChangeKind::Added => {
                summary.added += 1 + holds.paths;
                summary.added_bytes += change.b_size() + holds.bytes;
            }
            ChangeKind::Removed => {
                summary.removed += 1 + holds.paths;
                summary.removed_bytes += change.a_size() + holds.bytes;
            }
            ChangeKind::Modified => {
                summary.modified += 1;
                summary.modified_bytes_a += change.a_size();
                summary.modified_bytes_b += change.b_size();
            }
            ChangeKind::Unmodified => {}
        }
    }
    Comparison {
        layers,
        same_config: a.manifest.config.digest == b.manifest.config.digest,
        files: walk.files,
        summary,
        a_marks,
        b_marks,
    }
}

/// Pair the layer lists by position and find the blobs they share.
pub fn compare_layers(a: &[LayerInfo], b: &[LayerInfo]) -> LayerComparison {
    let positions = a.len().max(b.len());
    let pairs: Vec<LayerPair> = (0..positions)
        .map(|index| {
            let (la, lb) = (a.get(index), b.get(index));
            let status = match (la, lb) {
                (Some(x), Some(y)) if x.digest == y.digest => LayerMatch::Shared,
                (Some(x), Some(y)) if x.diff_id == y.diff_id => LayerMatch::SameContent,
                (Some(_), Some(_)) => LayerMatch::Different,
                (Some(_), None) => LayerMatch::OnlyInA,
                // Both `None` cannot happen below `positions`.
                (None, _) => LayerMatch::OnlyInB,
            };
            LayerPair {
                index,
                a: la.cloned(),
                b: lb.cloned(),
                status,
            }
        })
        .collect();
    let common_prefix = pairs
        .iter()
        .take_while(|p| p.status == LayerMatch::Shared)
        .count();
    let (diverge_a, diverge_b) = if common_prefix == positions {
        (None, None)
    } else {
        (
            (common_prefix < a.len()).then_some(common_prefix),
            (common_prefix < b.len()).then_some(common_prefix),
        )
    };
    let mut in_b: HashMap<&Digest, usize> = HashMap::new();
    for layer in b.iter().rev() {
        in_b.insert(&layer.digest, layer.index);
    }
    let mut shared: Vec<SharedLayer> = Vec::new();
    for layer in a {
        if shared.iter().any(|s| s.digest == layer.digest) {
            continue;
        }
        if let Some(&b_index) = in_b.get(&layer.digest) {
            shared.push(SharedLayer {
                digest: layer.digest.clone(),
                a_index: layer.index,
                b_index,
                compressed_size: layer.compressed_size,
            });
        }
    }
    let shared_bytes = shared.iter().map(|s| s.compressed_size).sum();
    LayerComparison {
        pairs,
        common_prefix,
        diverge_a,
        diverge_b,
        shared,
        shared_bytes,
    }
}

/// Mark every directory that holds a change as modified (children have higher ids).
fn bubble_up(tree: &FileTree, marks: &mut [Option<ChangeKind>]) {
    for index in (1..marks.len()).rev() {
        if matches!(
            marks[index],
            Some(ChangeKind::Added | ChangeKind::Modified | ChangeKind::Removed)
        ) {
            let Ok(id) = u32::try_from(index) else {
                continue;
            };
            if let Some(parent) = tree.parent(NodeId(id)) {
                if marks[parent.index()] == Some(ChangeKind::Unmodified) {
                    marks[parent.index()] = Some(ChangeKind::Modified);
                }
            }
        }
    }
}

/// The side-by-side walk of both final filesystems.
struct Walk<'t> {
    a: &'t FileTree,
    b: &'t FileTree,
    last_a: usize,
    last_b: usize,
    files: Vec<FileChange>,
    a_marks: Vec<Option<ChangeKind>>,
    b_marks: Vec<Option<ChangeKind>>,
}

impl<'t> Walk<'t> {
    fn new(a: &'t FileTree, b: &'t FileTree) -> Self {
        Walk {
            a,
            b,
            // An image without layers is the empty filesystem: only the implicit root.
            last_a: a.layer_count().saturating_sub(1),
            last_b: b.layer_count().saturating_sub(1),
            files: Vec::new(),
            a_marks: vec![None; a.node_count()],
            b_marks: vec![None; b.node_count()],
        }
    }

    fn entry_a(&self, node: NodeId) -> Option<&'t Entry> {
        self.a.entry_at(node, self.last_a)
    }

    fn entry_b(&self, node: NodeId) -> Option<&'t Entry> {
        self.b.entry_at(node, self.last_b)
    }

    /// Children of a directory present at the last layer, sorted by name.
    fn present_children(tree: &'t FileTree, dir: NodeId, last: usize) -> Vec<(&'t [u8], NodeId)> {
        let mut children: Vec<(&[u8], NodeId)> = tree
            .children(dir)
            .filter(|&c| tree.entry_at(c, last).is_some())
            .map(|c| (tree.name(c), c))
            .collect();
        children.sort_unstable_by(|x, y| x.0.cmp(y.0));
        children
    }

    /// Mark everything present below `dir` (in `tree` at `last`) with `kind`, and count it:
    /// the contents of a directory added or removed whole. An explicit stack, no sorting.
    fn mark_below(
        tree: &FileTree,
        last: usize,
        dir: NodeId,
        marks: &mut [Option<ChangeKind>],
        kind: ChangeKind,
    ) -> Holds {
        let mut holds = Holds::default();
        let mut stack = vec![dir];
        while let Some(node) = stack.pop() {
            for child in tree.children(node) {
                let Some(entry) = tree.entry_at(child, last) else {
                    continue;
                };
                marks[child.index()] = Some(kind);
                holds.paths += 1;
                match entry.kind() {
                    EntryKind::File => holds.bytes += entry.size(),
                    EntryKind::Dir => stack.push(child),
                    _ => {}
                }
            }
        }
        holds
    }

    /// Pre-order walk, children in name order, with an explicit stack (paths can be deep).
    fn run(&mut self) {
        // (node in A, node in B, components in their path)
        let mut stack: Vec<(Option<NodeId>, Option<NodeId>, u32)> =
            vec![(Some(self.a.root()), Some(self.b.root()), 0)];
        while let Some((na, nb, depth)) = stack.pop() {
            let ea = na.and_then(|n| self.entry_a(n));
            let eb = nb.and_then(|n| self.entry_b(n));
            let (kind, differences) = match (ea, eb) {
                (Some(x), Some(y)) => {
                    let d = Differences::between(x, y);
                    if d.any() {
                        (ChangeKind::Modified, d)
                    } else {
                        (ChangeKind::Unmodified, d)
                    }
                }
                (Some(_), None) => (ChangeKind::Removed, Differences::default()),
                (None, Some(_)) => (ChangeKind::Added, Differences::default()),
                (None, None) => continue,
            };
            if let (Some(n), Some(_)) = (na, ea) {
                self.a_marks[n.index()] = Some(kind);
            }
            if let (Some(n), Some(_)) = (nb, eb) {
                self.b_marks[n.index()] = Some(kind);
            }
            let a_dir = na.zip(ea).filter(|(_, e)| e.kind() == EntryKind::Dir);
            let b_dir = nb.zip(eb).filter(|(_, e)| e.kind() == EntryKind::Dir);
            // A directory only one side has is listed once, with what it holds.
            let holds = match (kind, a_dir, b_dir) {
                (ChangeKind::Removed, Some((n, _)), _) => Some(Self::mark_below(
                    self.a,
                    self.last_a,
                    n,
                    &mut self.a_marks,
                    ChangeKind::Removed,
                )),
                (ChangeKind::Added, _, Some((n, _))) => Some(Self::mark_below(
                    self.b,
                    self.last_b,
                    n,
                    &mut self.b_marks,
                    ChangeKind::Added,
                )),
                _ => None,
            };
            if kind != ChangeKind::Unmodified {
                self.files.push(FileChange {
                    kind,
                    depth,
                    holds,
                    a: ea.cloned(),
                    b: eb.cloned(),
                    a_node: na.filter(|_| ea.is_some()),
                    b_node: nb.filter(|_| eb.is_some()),
                    differences,
                });
            }
            if holds.is_some() {
                continue;
            }
            let a_children = match a_dir {
                Some((n, _)) => Self::present_children(self.a, n, self.last_a),
                None => Vec::new(),
            };
            let b_children = match b_dir {
                Some((n, _)) => Self::present_children(self.b, n, self.last_b),
                None => Vec::new(),
            };
            let merged = merge_by_name(&a_children, &b_children);
            // Reversed, so the first name is visited first.
            stack.extend(
                merged
                    .into_iter()
                    .rev()
                    .map(|(x, y)| (x, y, depth.saturating_add(1))),
            );
        }
    }
}

/// Pair two name-sorted child lists by name.
fn merge_by_name(
    a: &[(&[u8], NodeId)],
    b: &[(&[u8], NodeId)],
) -> Vec<(Option<NodeId>, Option<NodeId>)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(y.0),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                out.push((Some(a[i].1), None));
                i += 1;
            }
            Ordering::Greater => {
                out.push((None, Some(b[j].1)));
                j += 1;
            }
            Ordering::Equal => {
                out.push((Some(a[i].1), Some(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(index: usize, digest_seed: u8, diff_seed: u8) -> LayerInfo {
        LayerInfo {
            index,
            digest: Digest::sha256_of(&[digest_seed]),
            diff_id: Digest::sha256_of(&[diff_seed, 0xff]),
            media_type: String::new(),
            compressed_size: 100 + u64::from(digest_seed),
        }
    }

    #[test]
    fn layers_diverge_after_the_common_base() {
        let a = vec![layer(0, 1, 1), layer(1, 2, 2), layer(2, 3, 3)];
        let b = vec![
            layer(0, 1, 1),
            layer(1, 2, 2),
            layer(2, 4, 4),
            layer(3, 3, 3),
        ];
        let c = compare_layers(&a, &b);
        assert_eq!(c.common_prefix, 2);
        assert_eq!((c.diverge_a, c.diverge_b), (Some(2), Some(2)));
        let statuses: Vec<LayerMatch> = c.pairs.iter().map(|p| p.status).collect();
        assert_eq!(
            statuses,
            vec![
                LayerMatch::Shared,
                LayerMatch::Shared,
                LayerMatch::Different,
                LayerMatch::OnlyInB
            ]
        );
        // Digest 3 sits at 2 in A and 3 in B: shared, though not in the common base.
        let shared: Vec<(usize, usize)> = c.shared.iter().map(|s| (s.a_index, s.b_index)).collect();
        assert_eq!(shared, vec![(0, 0), (1, 1), (2, 3)]);
        assert_eq!(c.shared_bytes, 101 + 102 + 103);
        assert!(!c.identical());
    }

    #[test]
    fn a_prefix_of_the_other_diverges_only_on_the_longer_side() {
        let a = vec![layer(0, 1, 1)];
        let b = vec![layer(0, 1, 1), layer(1, 2, 2)];
        let c = compare_layers(&a, &b);
        assert_eq!(c.common_prefix, 1);
        assert_eq!((c.diverge_a, c.diverge_b), (None, Some(1)));
        let same = compare_layers(&a, &a);
        assert!(same.identical());
        assert_eq!((same.diverge_a, same.diverge_b), (None, None));
    }

    #[test]
    fn recompressed_layers_have_the_same_content() {
        let a = vec![layer(0, 1, 7)];
        let b = vec![layer(0, 2, 7)];
        let c = compare_layers(&a, &b);
        assert_eq!(c.pairs[0].status, LayerMatch::SameContent);
        assert_eq!(c.common_prefix, 0);
        assert!(c.shared.is_empty());
    }

    #[test]
    fn a_directory_only_one_side_has_is_listed_once_with_what_it_holds() {
        use crate::tui::testing::image_for;
        // 50,000 directories deep: one listed change, not one per level.
        let deep = format!("deep/{}f", "a/".repeat(50_000));
        let (a, tree_a) = image_for(&[&[
            ("etc/x", Some(&b"1"[..])),
            ("old/1", Some(b"12")),
            ("old/2/3", Some(b"123")),
        ]]);
        let (b, tree_b) = image_for(&[&[("etc/x", Some(&b"1"[..])), (&deep, Some(b"xy"))]]);
        let c = compare(&a, &tree_a, &b, &tree_b);
        let listed: Vec<(ChangeKind, Vec<u8>, u32, Option<Holds>)> = c
            .files
            .iter()
            .map(|f| (f.kind, f.path(&tree_a, &tree_b), f.depth, f.holds))
            .collect();
        let holds = |paths, bytes| Some(Holds { paths, bytes });
        assert_eq!(
            listed,
            vec![
                (ChangeKind::Added, b"/deep".to_vec(), 1, holds(50_001, 2)),
                (ChangeKind::Removed, b"/old".to_vec(), 1, holds(3, 5)),
            ]
        );
        let s = c.summary;
        assert_eq!((s.added, s.added_bytes), (50_002, 2));
        assert_eq!((s.removed, s.removed_bytes), (4, 5));
        // Every node below is marked, as the tree view shows them.
        let file = tree_b.lookup(deep.as_bytes()).map(NodeId::index);
        assert_eq!(file.and_then(|i| c.b_marks[i]), Some(ChangeKind::Added));
        let old = tree_a.lookup(b"/old/2/3").map(NodeId::index);
        assert_eq!(old.and_then(|i| c.a_marks[i]), Some(ChangeKind::Removed));
        let root = c.a_marks[tree_a.root().index()];
        assert_eq!(root, Some(ChangeKind::Modified));
    }

    #[test]
    fn differences_ignore_mtime() {
        let file = |mode, mtime| Entry::new(EntryKind::File, mode, 3, mtime).expect("a file");
        let base = Entry {
            payload: crate::layer::Payload::Content([1; 32]),
            data_block: 1,
            ..file(0o644, 1)
        };
        let later = Entry {
            payload: base.payload.clone(),
            data_block: 8,
            ..file(0o644, 99)
        };
        assert!(!Differences::between(&base, &later).any());
        let chmod = Entry {
            uid: 1,
            payload: base.payload.clone(),
            data_block: 1,
            ..file(0o755, 1)
        };
        assert_eq!(
            Differences::between(&base, &chmod).names(),
            vec!["mode", "uid"]
        );
    }
}
