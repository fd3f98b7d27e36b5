//! Findings: which build step stores the bytes an image does not need, and how to change it.
//!
//! A figure ([`crate::analysis`]) says how much; a finding says which step to change. Findings
//! are computed from the merged tree, once every layer is in, and every view (text summary,
//! `--ci`, `--json`, explorer) only renders them.
//!
//! **Hidden bytes.** Every regular file stored in a layer but not visible in the final
//! filesystem was hidden by exactly one event, the first that hid it
//! ([`FileTree::hidden_files`]). By that event:
//! - [`FindingKind::RemovedLater`]: a whiteout of the path or of a parent, an opaque parent, or
//!   an entry of another type at the path or at a parent (a file replaced by a directory, a
//!   directory by a file or link);
//! - [`FindingKind::RewrittenSameContent`]: a regular file at the path with the same content
//!   (chmod, chown, touch, or the same bytes copied again);
//! - [`FindingKind::Overwritten`]: a regular file at the path with other content.
//!
//! One finding per (kind, writer layer, hider layer); the hider is the writer itself when one
//! tar writes a path twice. Together these findings add up to the shadowed bytes exactly.
//!
//! **Visible bytes that need not be there**, over regular files visible at the last layer,
//! each file in at most one finding, in this order:
//! - [`FindingKind::PackageCache`]: files under a package manager's cache or index (see
//!   [`CacheKind`]), one finding per (cache directory, writer layer); a cache under a home
//!   directory is its own cache (`/root/.cache/pip/` and `/home/app/.cache/pip/` are two);
//! - [`FindingKind::TemporaryFiles`]: files under `/tmp/` and `/var/tmp/`, one per writer layer;
//! - [`FindingKind::DuplicateContent`]: two or more files (hard links are links, not files)
//!   with the same content hash and size, one finding per content; the copy kept is the one
//!   with the smallest path, the others are the finding's paths and its bytes.
//!
//! Files of size 0 belong to no finding, so no finding has fewer than 1 byte. Findings are
//! ordered by bytes (largest first), then kind (in the order above), then layers, then first
//! path. No byte is in two findings, so their sum is what the image could shed.

use std::collections::{BinaryHeap, HashMap};

use bytesize::ByteSize;

use crate::analysis::{analyse, Figures};
use crate::image::{clean_created_by, HistoryStep, ImageInfo};
use crate::tree::{display_path, EntryKind, FileTree, NodeId, VersionState};

/// How many paths a finding lists; the rest are counted in [`Finding::paths_omitted`].
pub const MAX_PATHS: usize = 1000;

/// Longest step text quoted in a hint, in characters (the full text is in
/// [`Finding::steps`]).
const STEP_IN_HINT: usize = 60;

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// Stored, then deleted or replaced by something that is not a regular file.
    RemovedLater,
    /// Stored, then stored again with the same content (only metadata changed).
    RewrittenSameContent,
    /// Stored, then replaced by a regular file with other content.
    Overwritten,
    /// Visible files in a package manager's cache or index.
    PackageCache,
    /// Visible files under `/tmp/` or `/var/tmp/`.
    TemporaryFiles,
    /// Visible files whose content another visible file already holds.
    DuplicateContent,
}

impl FindingKind {
    /// Every kind, in the order findings of equal size are listed.
    pub const ALL: [FindingKind; 6] = [
        FindingKind::RemovedLater,
        FindingKind::RewrittenSameContent,
        FindingKind::Overwritten,
        FindingKind::PackageCache,
        FindingKind::TemporaryFiles,
        FindingKind::DuplicateContent,
    ];

    /// The name used in JSON and reports (`removed-later`, …).
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::RemovedLater => "removed-later",
            FindingKind::RewrittenSameContent => "rewritten-same-content",
            FindingKind::Overwritten => "overwritten",
            FindingKind::PackageCache => "package-cache",
            FindingKind::TemporaryFiles => "temporary-files",
            FindingKind::DuplicateContent => "duplicate-content",
        }
    }

    /// Whether the finding's bytes are stored but not visible in the final filesystem (its
    /// paths are then files of the writer layer that a later event hid).
    pub fn is_hidden(self) -> bool {
        matches!(
            self,
            FindingKind::RemovedLater
                | FindingKind::RewrittenSameContent
                | FindingKind::Overwritten
        )
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A package manager's cache or index that [`FindingKind::PackageCache`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// `/var/lib/apt/lists/`.
    AptLists,
    /// `/var/cache/apt/`.
    AptArchives,
    /// `/var/cache/apk/`.
    Apk,
    /// `/var/cache/yum/`.
    Yum,
    /// `/var/cache/dnf/`.
    Dnf,
    /// `.cache/pip/` in a home directory (`/root/` or `/home/*/`).
    Pip,
    /// `.npm/_cacache/` in a home directory.
    Npm,
    /// `.cache/yarn/` in a home directory, or `/usr/local/share/.cache/yarn/`.
    Yarn,
    /// `.cache/go-build/` in a home directory.
    GoBuild,
    /// `.cargo/registry/` in a home directory.
    Cargo,
}

impl CacheKind {
    /// What the directory holds, for hints.
    fn what(self) -> &'static str {
        match self {
            CacheKind::AptLists => "apt package lists",
            CacheKind::AptArchives => "apt package cache",
            CacheKind::Apk => "apk cache",
            CacheKind::Yum => "yum cache",
            CacheKind::Dnf => "dnf cache",
            CacheKind::Pip => "pip cache",
            CacheKind::Npm => "npm cache",
            CacheKind::Yarn => "yarn cache",
            CacheKind::GoBuild => "Go build cache",
            CacheKind::Cargo => "Cargo registry cache",
        }
    }

    /// The cache's own remedy, for a step that runs commands; `dir` is the cache directory.
    fn remedy(self, dir: &str) -> String {
        let fix = match self {
            CacheKind::AptLists => "add rm -rf /var/lib/apt/lists/* to the same RUN".to_string(),
            CacheKind::AptArchives => "add apt-get clean to the same RUN".to_string(),
            CacheKind::Apk => "use apk add --no-cache".to_string(),
            CacheKind::Yum => "add yum clean all to the same RUN".to_string(),
            CacheKind::Dnf => "add dnf clean all to the same RUN".to_string(),
            CacheKind::Pip => "use pip install --no-cache-dir".to_string(),
            CacheKind::Npm => "add npm cache clean --force to the same RUN".to_string(),
            CacheKind::Yarn => "add yarn cache clean to the same RUN".to_string(),
            CacheKind::GoBuild => "add go clean -cache to the same RUN".to_string(),
            CacheKind::Cargo => format!("add rm -rf {dir} to the same RUN"),
        };
        format!("{fix}, or use a cache mount (RUN --mount=type=cache,target={dir})")
    }
}

/// One reason why bytes are in the image that need not be, and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What the finding is about.
    pub kind: FindingKind,
    /// Bytes the image would shed with the fix (always at least 1).
    pub bytes: u64,
    /// Number of paths (all of them, listed or not).
    pub files: u64,
    /// Layer indexes involved, ascending: the writer and the hider for hidden bytes (one
    /// index when they are the same layer); the layers that wrote the files otherwise (for
    /// duplicates, those of every copy, the kept one too).
    pub layers: Vec<usize>,
    /// The `createdBy` of each of [`Self::layers`], as the image config has it (empty when
    /// the config has no step for the layer).
    pub steps: Vec<String>,
    /// The first [`MAX_PATHS`] paths (`/a/b`, raw bytes), largest first, then by path.
    pub paths: Vec<Vec<u8>>,
    /// Paths not listed.
    pub paths_omitted: u64,
    /// One sentence naming the steps and the remedy. Holds text from the image: escape it
    /// before it reaches a terminal.
    pub hint: String,
    /// The remedy alone (the hint's part after the colon), for short displays.
    pub remedy: String,
    /// Where the finding is: the cache directory, the deepest directory holding all its
    /// paths (the path itself for a single file), or for duplicates the copy kept. `None`
    /// when the paths have nothing in common below `/`.
    pub place: Option<Vec<u8>>,
    /// The layer at which to look at the finding's paths: the writer for hidden bytes (where
    /// the files were last visible), else the newest layer that wrote one of them.
    pub view_layer: usize,
}

/// Every finding of an image, and their total.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// The findings, largest first (see the module documentation for the order).
    pub items: Vec<Finding>,
    /// Σ bytes of all findings; no byte is counted twice.
    pub reclaimable_bytes: u64,
}

/// The `createdBy` of every layer's build step, by layer index (empty where history has
/// none), as [`find`] takes them.
pub fn layer_steps(info: &ImageInfo) -> Vec<String> {
    steps_of_history(&info.history, info.layers.len())
}

/// [`layer_steps`] from aligned history.
fn steps_of_history(history: &[HistoryStep], layers: usize) -> Vec<String> {
    let mut steps = vec![String::new(); layers];
    for step in history {
        if let Some(slot) = step.layer_index.and_then(|i| steps.get_mut(i)) {
            *slot = step.entry.created_by.clone().unwrap_or_default();
        }
    }
    steps
}

/// Compute the findings of every layer merged into `tree`. `steps[i]` is the `createdBy` of
/// layer `i` (see [`layer_steps`]); missing or empty steps are named by their layer alone.
pub fn find(tree: &FileTree, steps: &[String]) -> Findings {
    find_without(tree, steps, &[])
}

/// [`find`] and the figures ([`analyse`]), each a pass over the whole model, computed on two
/// threads at once.
pub fn with_figures(tree: &FileTree, steps: &[String]) -> (Figures, Findings) {
    std::thread::scope(|scope| {
        let findings = scope.spawn(|| find(tree, steps));
        let figures = analyse(tree);
        let findings = findings
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (figures, findings)
    })
}

/// [`find`] as if the nodes `left_out` marks (by [`NodeId::index`]; an empty slice marks
/// none) were not in the image: what the CI rules measure when paths are left out of them.
/// Their bytes count in no finding, and duplicates are found among the other files only.
pub fn find_without(tree: &FileTree, steps: &[String], left_out: &[bool]) -> Findings {
    let Some(last) = tree.layer_count().checked_sub(1) else {
        return Findings::default();
    };
    let finish_all = |groups: Vec<Group>| -> Vec<Finding> {
        groups
            .into_iter()
            .filter(|g| g.bytes > 0)
            .map(|g| g.finish(tree, steps))
            .collect()
    };
    // Hidden bytes depend on no other group: they are found and finished on a thread of
    // their own while the caches, temporary files and duplicates (which must leave out what
    // the caches claimed) are found here. On a million-file image each side is about half.
    let mut items = std::thread::scope(|scope| {
        let hidden = scope.spawn(|| {
            let mut groups = Vec::new();
            hidden_groups(tree, &mut groups);
            drop_left_out(&mut groups, left_out);
            finish_all(groups)
        });
        let mut groups = Vec::new();
        let mut claimed = cache_and_temporary_groups(tree, last, &mut groups);
        drop_left_out(&mut groups, left_out);
        claim_left_out(&mut claimed, left_out);
        duplicate_groups(tree, last, &claimed, &mut groups);
        let rest = finish_all(groups);
        let mut items = hidden
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        items.extend(rest);
        items
    });
    items.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(a.kind.cmp(&b.kind))
            .then_with(|| a.layers.cmp(&b.layers))
            .then_with(|| a.paths.first().cmp(&b.paths.first()))
    });
    let reclaimable_bytes = items.iter().map(|f| f.bytes).sum();
    Findings {
        items,
        reclaimable_bytes,
    }
}

/// Drop the left-out nodes from `groups`, with their bytes.
fn drop_left_out(groups: &mut [Group], left_out: &[bool]) {
    if !left_out.contains(&true) {
        return;
    }
    let out = |node: u32| left_out.get(node as usize).copied().unwrap_or(false);
    for group in groups.iter_mut() {
        let mut dropped = 0;
        group.items.retain(|&(size, node)| {
            let keep = !out(node);
            if !keep {
                dropped += size;
            }
            keep
        });
        group.bytes -= dropped;
    }
}

/// Claim the left-out nodes, so that no duplicate counts them.
fn claim_left_out(claimed: &mut NodeSet, left_out: &[bool]) {
    for (index, _) in left_out.iter().enumerate().filter(|(_, out)| **out) {
        claimed.insert(NodeId(index as u32));
    }
}

/// What a group is, beyond its kind: enough to write the hint.
#[derive(Clone, Copy, Debug)]
enum Detail {
    /// Hidden bytes: written by `writer`, hidden by `hider`.
    Hidden { writer: usize, hider: usize },
    /// A package cache directory and the layer that wrote the files.
    Cache {
        dir: NodeId,
        cache: CacheKind,
        writer: usize,
    },
    /// Temporary files written by one layer.
    Temporary { writer: usize },
    /// Copies of one content: the kept copy and the size of each.
    Duplicate { kept: NodeId, each: u64 },
}

/// A finding while it is being collected.
struct Group {
    kind: FindingKind,
    detail: Detail,
    bytes: u64,
    /// (size, node) of every path; the same node may repeat only when a layer hid its own
    /// entries.
    items: Vec<(u64, u32)>,
    layers: Vec<usize>,
}

impl Group {
    fn new(kind: FindingKind, detail: Detail) -> Self {
        Group {
            kind,
            detail,
            bytes: 0,
            items: Vec::new(),
            layers: Vec::new(),
        }
    }

    fn add(&mut self, size: u64, node: NodeId) {
        self.bytes += size;
        self.items.push((size, node.0));
    }

    fn finish(mut self, tree: &FileTree, steps: &[String]) -> Finding {
        let mut layers = match self.detail {
            Detail::Hidden { writer, hider } => vec![writer, hider],
            Detail::Cache { writer, .. } | Detail::Temporary { writer } => vec![writer],
            Detail::Duplicate { .. } => std::mem::take(&mut self.layers),
        };
        layers.sort_unstable();
        layers.dedup();
        if matches!(self.detail, Detail::Hidden { writer, hider } if writer == hider) {
            // One tar wrote a path more than once: list it once, with all its hidden bytes.
            self.items.sort_unstable_by_key(|&(_, node)| node);
            self.items.dedup_by(|later, kept| {
                let same = later.1 == kept.1;
                if same {
                    kept.0 += later.0;
                }
                same
            });
        }
        let place = match self.detail {
            Detail::Cache { dir, .. } => Some(dir),
            Detail::Duplicate { kept, .. } => Some(kept),
            _ => common_ancestor(tree, self.items.iter().map(|&(_, n)| NodeId(n))),
        }
        .filter(|&node| node != tree.root())
        .map(|node| tree.path(node));
        let files = self.items.len() as u64;
        let (paths, paths_omitted) = top_paths(tree, &mut self.items);
        let step_texts = layers
            .iter()
            .map(|&l| steps.get(l).cloned().unwrap_or_default())
            .collect();
        let (situation, remedy) = hint(
            self.kind,
            self.detail,
            self.bytes,
            files,
            place.as_deref(),
            &layers,
            steps,
        );
        let view_layer = match self.detail {
            Detail::Hidden { writer, .. } => writer,
            _ => layers.last().copied().unwrap_or(0),
        };
        Finding {
            kind: self.kind,
            bytes: self.bytes,
            files,
            layers,
            steps: step_texts,
            paths,
            paths_omitted,
            hint: format!("{situation}: {remedy}"),
            remedy,
            place,
            view_layer,
        }
    }
}

/// One group per (kind, writer, hider) over every hidden regular file of size > 0.
fn hidden_groups(tree: &FileTree, groups: &mut Vec<Group>) {
    let mut index: HashMap<(FindingKind, usize, usize), usize> = HashMap::new();
    for hidden in tree.hidden_files() {
        let size = hidden.entry.size();
        if size == 0 {
            continue;
        }
        let kind = match hidden.by {
            VersionState::Written(by) if by.kind() == EntryKind::File => {
                if by.content() == hidden.entry.content() {
                    FindingKind::RewrittenSameContent
                } else {
                    FindingKind::Overwritten
                }
            }
            _ => FindingKind::RemovedLater,
        };
        let (writer, hider) = (hidden.layer, hidden.by_layer);
        let slot = *index.entry((kind, writer, hider)).or_insert_with(|| {
            groups.push(Group::new(kind, Detail::Hidden { writer, hider }));
            groups.len() - 1
        });
        groups[slot].add(size, hidden.node);
    }
}

/// Where a walk from `/` stands on its way to a cache or temporary directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    Root,
    Var,
    VarLib,
    VarLibApt,
    VarCache,
    Usr,
    UsrLocal,
    UsrLocalShare,
    UsrLocalShareCache,
    /// `/home`: any child is a home directory.
    Home,
    /// `/root` or `/home/NAME`.
    HomeDir,
    HomeCache,
    HomeNpm,
    HomeCargo,
}

/// What a directory name leads to from a walk state.
enum Next {
    Descend(Walk),
    Cache(CacheKind),
    Temporary,
}

fn next(state: Walk, name: &[u8]) -> Option<Next> {
    use Next::{Cache, Descend, Temporary};
    Some(match (state, name) {
        (Walk::Root, b"var") => Descend(Walk::Var),
        (Walk::Root, b"usr") => Descend(Walk::Usr),
        (Walk::Root, b"root") => Descend(Walk::HomeDir),
        (Walk::Root, b"home") => Descend(Walk::Home),
        (Walk::Root, b"tmp") => Temporary,
        (Walk::Var, b"lib") => Descend(Walk::VarLib),
        (Walk::Var, b"cache") => Descend(Walk::VarCache),
        (Walk::Var, b"tmp") => Temporary,
        (Walk::VarLib, b"apt") => Descend(Walk::VarLibApt),
        (Walk::VarLibApt, b"lists") => Cache(CacheKind::AptLists),
        (Walk::VarCache, b"apt") => Cache(CacheKind::AptArchives),
        (Walk::VarCache, b"apk") => Cache(CacheKind::Apk),
        (Walk::VarCache, b"yum") => Cache(CacheKind::Yum),
        (Walk::VarCache, b"dnf") => Cache(CacheKind::Dnf),
        (Walk::Usr, b"local") => Descend(Walk::UsrLocal),
        (Walk::UsrLocal, b"share") => Descend(Walk::UsrLocalShare),
        (Walk::UsrLocalShare, b".cache") => Descend(Walk::UsrLocalShareCache),
        (Walk::UsrLocalShareCache, b"yarn") => Cache(CacheKind::Yarn),
        (Walk::Home, _) => Descend(Walk::HomeDir),
        (Walk::HomeDir, b".cache") => Descend(Walk::HomeCache),
        (Walk::HomeDir, b".npm") => Descend(Walk::HomeNpm),
        (Walk::HomeDir, b".cargo") => Descend(Walk::HomeCargo),
        (Walk::HomeCache, b"pip") => Cache(CacheKind::Pip),
        (Walk::HomeCache, b"yarn") => Cache(CacheKind::Yarn),
        (Walk::HomeCache, b"go-build") => Cache(CacheKind::GoBuild),
        (Walk::HomeNpm, b"_cacache") => Cache(CacheKind::Npm),
        (Walk::HomeCargo, b"registry") => Cache(CacheKind::Cargo),
        _ => return None,
    })
}

/// A set of small numbers, one bit each.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        // Written now: inserting reads a word before writing it (see `written_zeros`).
        BitSet(crate::allocator::written_zeros(len.div_ceil(64)))
    }

    /// Add `i` (ignored beyond the set's length); whether it was there already.
    fn insert(&mut self, i: usize) -> bool {
        match self.0.get_mut(i / 64) {
            Some(word) => {
                let was = *word & (1 << (i % 64)) != 0;
                *word |= 1 << (i % 64);
                was
            }
            None => false,
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// A set of nodes, one bit each.
struct NodeSet(BitSet);

impl NodeSet {
    fn new(nodes: usize) -> Self {
        NodeSet(BitSet::new(nodes))
    }

    fn insert(&mut self, node: NodeId) {
        self.0.insert(node.index());
    }

    fn contains(&self, node: NodeId) -> bool {
        self.0.contains(node.index())
    }
}

/// Package-cache and temporary-file groups over the files visible at `last`. Only the
/// directories on the way to a cache are walked, not the whole tree. Returns the files taken,
/// so that duplicates leave them out.
fn cache_and_temporary_groups(tree: &FileTree, last: usize, groups: &mut Vec<Group>) -> NodeSet {
    let mut claimed = NodeSet::new(tree.node_count());
    let mut temporary: HashMap<usize, usize> = HashMap::new();
    let mut walk = vec![(tree.root(), Walk::Root)];
    let mut below = Vec::new();
    while let Some((dir, state)) = walk.pop() {
        for child in tree.children(dir) {
            let Some(step) = next(state, tree.name(child)) else {
                continue;
            };
            let region = match step {
                Next::Descend(state) => {
                    walk.push((child, state));
                    continue;
                }
                Next::Cache(cache) => Some(cache),
                Next::Temporary => None,
            };
            // Everything below `child` belongs to this cache (or temporary directory). Its
            // files are grouped by the layer that wrote them.
            let mut by_writer: HashMap<usize, usize> = HashMap::new();
            below.clear();
            below.extend(tree.children(child));
            while let Some(node) = below.pop() {
                let Some(entry) = tree.entry_at(node, last) else {
                    continue;
                };
                match entry.kind() {
                    EntryKind::Dir => below.extend(tree.children(node)),
                    EntryKind::File if entry.size() > 0 => {
                        let writer = tree.written_at(node, last).unwrap_or(last);
                        let slot = match region {
                            Some(cache) => *by_writer.entry(writer).or_insert_with(|| {
                                groups.push(Group::new(
                                    FindingKind::PackageCache,
                                    Detail::Cache {
                                        dir: child,
                                        cache,
                                        writer,
                                    },
                                ));
                                groups.len() - 1
                            }),
                            None => *temporary.entry(writer).or_insert_with(|| {
                                groups.push(Group::new(
                                    FindingKind::TemporaryFiles,
                                    Detail::Temporary { writer },
                                ));
                                groups.len() - 1
                            }),
                        };
                        groups[slot].add(entry.size(), node);
                        claimed.insert(node);
                    }
                    _ => {}
                }
            }
        }
    }
    claimed
}

/// One group per content held by two or more visible regular files not already taken.
fn duplicate_groups(tree: &FileTree, last: usize, claimed: &NodeSet, groups: &mut Vec<Group>) {
    // The content hashes of the files that can count, with their nodes.
    let hashes = || {
        (1..tree.node_count()).filter_map(|index| {
            let node = NodeId(index as u32);
            tree.prefetch_scan_ahead(node);
            let entry = tree.entry_at(node, last)?;
            if entry.kind() != EntryKind::File || entry.size() == 0 || claimed.contains(node) {
                return None;
            }
            Some((
                u32::from_le_bytes(entry.content()?[..4].try_into().ok()?),
                node,
            ))
        })
    };
    // Duplicates are rare, and one candidate per file would be 5 MB on a million-file image,
    // at the moment its analysis holds the most. A first pass marks which hash prefixes
    // (their low bits, four buckets a node) come up twice; only those files are candidates.
    let buckets = (tree.node_count() * 4).next_power_of_two();
    let (mut seen, mut repeated) = (BitSet::new(buckets), BitSet::new(buckets));
    for (prefix, _) in hashes() {
        let bucket = prefix as usize & (buckets - 1);
        if seen.insert(bucket) {
            repeated.insert(bucket);
        }
    }
    drop(seen);
    // The first 4 bytes of the content hash above the node id, in one u64: sorting these
    // brings equal contents together without copying whole hashes; runs are then checked on
    // the full hash.
    let mut candidates: Vec<u64> = hashes()
        .filter(|&(prefix, _)| repeated.contains(prefix as usize & (buckets - 1)))
        .map(|(prefix, node)| u64::from(prefix) << 32 | u64::from(node.0))
        .collect();
    drop(repeated);
    candidates.sort_unstable();
    let mut run: Vec<([u8; 32], u64, Vec<u8>, NodeId)> = Vec::new();
    for chunk in candidates.chunk_by(|a, b| a >> 32 == b >> 32) {
        if chunk.len() < 2 {
            continue;
        }
        run.clear();
        for &candidate in chunk {
            // The low half is the node id.
            let node = NodeId(candidate as u32);
            if let Some(e) = tree.entry_at(node, last) {
                run.push((
                    e.content().unwrap_or_default(),
                    e.size(),
                    tree.path(node),
                    node,
                ));
            }
        }
        // Same content and size together, each content's copies by path.
        run.sort_unstable_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        for copies in run.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            let Some(((_, each, _, kept), others)) = copies.split_first() else {
                continue;
            };
            if others.is_empty() {
                continue;
            }
            let mut group = Group::new(
                FindingKind::DuplicateContent,
                Detail::Duplicate {
                    kept: *kept,
                    each: *each,
                },
            );
            for (_, _, _, node) in copies {
                group
                    .layers
                    .push(tree.written_at(*node, last).unwrap_or(last));
            }
            for (_, size, _, node) in others {
                group.add(*size, *node);
            }
            groups.push(group);
        }
    }
}

/// The deepest node that is an ancestor of (or equal to) every node given; `None` for none.
fn common_ancestor(tree: &FileTree, nodes: impl Iterator<Item = NodeId>) -> Option<NodeId> {
    let depth = |mut n: NodeId| {
        let mut d = 0usize;
        while let Some(p) = tree.parent(n) {
            d += 1;
            n = p;
        }
        d
    };
    let mut common: Option<(NodeId, usize)> = None;
    for node in nodes {
        let Some((mut a, mut da)) = common else {
            common = Some((node, depth(node)));
            continue;
        };
        if a == tree.root() {
            break;
        }
        let (mut b, mut db) = (node, depth(node));
        while db > da {
            b = tree.parent(b).unwrap_or(b);
            db -= 1;
        }
        while da > db {
            a = tree.parent(a).unwrap_or(a);
            da -= 1;
        }
        while a != b {
            a = tree.parent(a).unwrap_or(a);
            b = tree.parent(b).unwrap_or(b);
            da = da.saturating_sub(1);
        }
        common = Some((a, da));
    }
    common.map(|(n, _)| n)
}

/// The first [`MAX_PATHS`] paths, largest first then by path, and how many were left out.
/// Paths are built only for what can be listed (and for size ties at the cut).
fn top_paths(tree: &FileTree, items: &mut [(u64, u32)]) -> (Vec<Vec<u8>>, u64) {
    items.sort_unstable_by_key(|item| std::cmp::Reverse(item.0));
    let omitted = items.len().saturating_sub(MAX_PATHS) as u64;
    let by_size_then_path =
        |a: &(u64, Vec<u8>), b: &(u64, Vec<u8>)| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1));
    let with_path = |&(size, node): &(u64, u32)| (size, tree.path(NodeId(node)));
    let mut chosen: Vec<(u64, Vec<u8>)>;
    if items.len() <= MAX_PATHS {
        chosen = items.iter().map(with_path).collect();
    } else {
        let cut = items[MAX_PATHS - 1].0;
        let above = items.partition_point(|it| it.0 > cut);
        let ties_end = items.partition_point(|it| it.0 >= cut);
        chosen = items[..above].iter().map(with_path).collect();
        // The smallest paths among the files of the cut's size fill the rest.
        let room = MAX_PATHS - above;
        let mut heap: BinaryHeap<Vec<u8>> = BinaryHeap::with_capacity(room + 1);
        for &(_, node) in &items[above..ties_end] {
            let path = tree.path(NodeId(node));
            if heap.len() < room {
                heap.push(path);
            } else if heap.peek().is_some_and(|worst| path < *worst) {
                heap.pop();
                heap.push(path);
            }
        }
        chosen.extend(heap.into_vec().into_iter().map(|p| (cut, p)));
    }
    chosen.sort_by(by_size_then_path);
    (chosen.into_iter().map(|(_, p)| p).collect(), omitted)
}

/// What kind of build step wrote a layer, as far as its `createdBy` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    /// A command ran (`RUN`, or a shell command).
    Run,
    /// Files were copied in (`COPY`, `ADD`).
    Copy,
    /// Unknown (no history, or another tool).
    Unknown,
}

fn step_kind(steps: &[String], layer: usize) -> StepKind {
    let cleaned = step_text(steps, layer);
    let first = cleaned.split_whitespace().next().unwrap_or("");
    match first.to_ascii_uppercase().as_str() {
        "RUN" | "|1" | "|2" | "|3" | "|4" | "|5" | "|6" | "|7" | "|8" | "|9" => StepKind::Run,
        "COPY" | "ADD" => StepKind::Copy,
        _ => StepKind::Unknown,
    }
}

/// A layer's step on one line as people write it: the classic builder's `/bin/sh -c` shown
/// as `RUN`, and BuildKit's `RUN /bin/sh -c … # buildkit` shortened the same way.
fn step_text(steps: &[String], layer: usize) -> String {
    step_line(steps.get(layer).map_or("", String::as_str))
}

/// A `createdBy` on one line as people write the step: `/bin/sh -c #(nop) ` dropped, the
/// classic builder's `/bin/sh -c CMD` and BuildKit's `RUN /bin/sh -c CMD # buildkit` both
/// shown as `RUN CMD`, whitespace runs as one space.
pub fn step_line(created_by: &str) -> String {
    let raw = created_by.trim();
    let raw = raw.strip_suffix("# buildkit").unwrap_or(raw).trim_end();
    let cleaned = clean_created_by(raw);
    let cleaned = match cleaned.strip_prefix("RUN /bin/sh -c ") {
        Some(rest) => format!("RUN {}", rest.trim_start()),
        None => cleaned,
    };
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A layer's step as a hint names it: `RUN apt-get update (layer 6)`, shortened to one line;
/// `layer 6` alone when history has no step for it.
fn step_name(steps: &[String], layer: usize) -> String {
    let flat = step_text(steps, layer);
    if flat.is_empty() {
        return format!("layer {layer}");
    }
    let short = if flat.chars().count() > STEP_IN_HINT {
        let cut: String = flat.chars().take(STEP_IN_HINT - 1).collect();
        format!("{cut}…")
    } else {
        flat
    };
    format!("{short} (layer {layer})")
}

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

/// How to avoid writing something in the step that wrote it.
fn avoid_writing(steps: &[String], writer: usize) -> String {
    match step_kind(steps, writer) {
        StepKind::Run => "delete it in the same RUN".to_string(),
        StepKind::Copy => "leave it out of the copy (.dockerignore or a narrower source)".into(),
        StepKind::Unknown => format!("do not write it in layer {writer}"),
    }
}

/// The advice of a finding in two parts: what the image shows (naming the steps), and the
/// remedy. The hint is the two joined by a colon.
fn hint(
    kind: FindingKind,
    detail: Detail,
    bytes: u64,
    files: u64,
    place: Option<&[u8]>,
    layers: &[usize],
    steps: &[String],
) -> (String, String) {
    let amount = size(bytes);
    let place = match place {
        Some(path) => display_path(path).into_owned(),
        None if files == 1 => "1 file".to_string(),
        None => format!("{files} files"),
    };
    match detail {
        Detail::Hidden { writer, hider } if writer == hider => (
            format!(
                "{} stores {amount} in {place} that the same layer then replaces or deletes",
                step_name(steps, writer)
            ),
            "write each path once in that step".to_string(),
        ),
        Detail::Hidden { writer, hider } => {
            let (w, m) = (step_name(steps, writer), step_name(steps, hider));
            match kind {
                FindingKind::RewrittenSameContent => (
                    format!(
                        "{m} rewrites {amount} in {place} with the same content that {w} wrote \
                         (only mode, owner or time changed)"
                    ),
                    "set them where the files are written (COPY --chown/--chmod) instead of in \
                     a later step"
                        .to_string(),
                ),
                FindingKind::Overwritten => (
                    format!("{w} wrote {amount} in {place} that {m} overwrites with new content"),
                    "write only the final version, in one step".to_string(),
                ),
                _ => {
                    let verb = if step_kind(steps, writer) == StepKind::Run {
                        "left"
                    } else {
                        "added"
                    };
                    (
                        format!("{w} {verb} {amount} in {place} that {m} removes"),
                        avoid_writing(steps, writer),
                    )
                }
            }
        }
        Detail::Cache { cache, writer, .. } => {
            let fix = match step_kind(steps, writer) {
                StepKind::Copy => avoid_writing(steps, writer),
                _ => cache.remedy(place.trim_end_matches('/')),
            };
            (
                format!(
                    "{} left {amount} of {} in {place}",
                    step_name(steps, writer),
                    cache.what()
                ),
                fix,
            )
        }
        Detail::Temporary { writer } => {
            let fix = match step_kind(steps, writer) {
                StepKind::Run => {
                    let target = if place.starts_with("/var/tmp") {
                        "/var/tmp"
                    } else {
                        "/tmp"
                    };
                    format!(
                        "delete it in the same RUN, or use a tmpfs mount \
                         (RUN --mount=type=tmpfs,target={target})"
                    )
                }
                _ => avoid_writing(steps, writer),
            };
            (
                format!("{} left {amount} in {place}", step_name(steps, writer)),
                fix,
            )
        }
        Detail::Duplicate { each, .. } => {
            let times = if files == 1 {
                "once more".to_string()
            } else {
                format!("{files} more times")
            };
            let mut names: Vec<String> = layers.iter().map(|&l| step_name(steps, l)).collect();
            if names.len() > 3 {
                names.truncate(3);
                names.push("…".to_string());
            }
            (
                format!(
                    "{place} ({}) is stored {times} ({amount}) by {}",
                    size(each),
                    names.join(", ")
                ),
                "keep one copy and link to it, or write it once".to_string(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
