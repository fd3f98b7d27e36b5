//! The file tree as the explorer shows it, as plain data with no terminal code (gitui's habit):
//! the merged [`FileTree`] seen at one layer, flattened into the rows that are visible (a
//! 110k-file tree is never drawn as a widget tree, only the window of rows on screen).
//!
//! Rows are rebuilt only when what is visible changes (layer, view mode, collapse, hide flags,
//! sort, filter); moving the cursor never rebuilds. Per-node data (change kind, size with
//! directory sums) is computed once per layer and mode, in one pass over the nodes, and kept
//! for the layer and mode shown before, with the rows last built from each: going back to
//! the previous layer, mode, sort or collapse-all state costs no pass over the tree.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;

use regex::bytes::Regex;
use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{nfa::thompson, Anchored};

use crate::tree::{ChangeKind, Entry, EntryKind, FileTree, NodeId};

/// Which changes the tree marks at the selected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewMode {
    /// What the selected layer changed against the one below (dive's "compare layer").
    LayerChanges,
    /// Everything layers 1..=N changed against the base layer (dive's "compare all").
    Aggregated,
}

/// Order of the entries of each directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Byte-wise by name.
    Name,
    /// Largest first (directories by the sum of what they hold), then by name.
    Size,
}

impl SortOrder {
    /// The other order.
    pub fn toggled(self) -> Self {
        match self {
            SortOrder::Name => SortOrder::Size,
            SortOrder::Size => SortOrder::Name,
        }
    }
}

/// Change kinds the user chose to hide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HiddenKinds {
    /// Hide added paths.
    pub added: bool,
    /// Hide removed paths.
    pub removed: bool,
    /// Hide modified paths.
    pub modified: bool,
    /// Hide unmodified paths ("only changes").
    pub unmodified: bool,
}

impl HiddenKinds {
    /// Whether rows of `kind` are hidden.
    pub fn hides(self, kind: ChangeKind) -> bool {
        match kind {
            ChangeKind::Added => self.added,
            ChangeKind::Removed => self.removed,
            ChangeKind::Modified => self.modified,
            ChangeKind::Unmodified => self.unmodified,
        }
    }

    /// Flip the flag of `kind`.
    pub fn toggle(&mut self, kind: ChangeKind) {
        let flag = match kind {
            ChangeKind::Added => &mut self.added,
            ChangeKind::Removed => &mut self.removed,
            ChangeKind::Modified => &mut self.modified,
            ChangeKind::Unmodified => &mut self.unmodified,
        };
        *flag = !*flag;
    }
}

/// The largest DFA a pattern may build (and the memory determinising it may use). Path
/// patterns are small; one that is not falls back to matching whole paths.
const DFA_LIMIT: usize = 8 * 1024 * 1024;

/// A path pattern: a regular expression when the text is one, else the text as a substring;
/// or a list of exact paths (a finding's), shown by a label.
#[derive(Clone, Debug)]
pub struct PathPattern {
    text: String,
    regex: Regex,
    is_regex: bool,
    /// Exact paths: when set, a path matches only if it is one of them.
    paths: Option<HashSet<Vec<u8>>>,
    /// The same pattern as a dense DFA, stepped one path component at a time by
    /// [`PathMatcher`]; `None` when it would be too large.
    dfa: Option<Arc<dense::DFA<Vec<u32>>>>,
}

/// The DFA of `pattern` with the syntax `regex::bytes` uses, within [`DFA_LIMIT`].
fn path_dfa(pattern: &str) -> Option<dense::DFA<Vec<u32>>> {
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .dfa_size_limit(Some(DFA_LIMIT))
                .determinize_size_limit(Some(DFA_LIMIT)),
        )
        .syntax(syntax::Config::new().utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build(pattern)
        .ok()
}

impl PathPattern {
    /// Parse the text the user typed; `None` for empty text.
    pub fn new(text: &str) -> Option<PathPattern> {
        if text.is_empty() {
            return None;
        }
        let (regex, is_regex) = match Regex::new(text) {
            Ok(regex) => (regex, true),
            // Half-typed patterns ("lib(") are still useful as plain text.
            Err(_) => (Regex::new(&regex::escape(text)).ok()?, false),
        };
        Some(PathPattern {
            text: text.to_string(),
            dfa: path_dfa(regex.as_str()).map(Arc::new),
            regex,
            is_regex,
            paths: None,
        })
    }

    /// A pattern matching exactly `paths` (absolute, `/a/b`), shown as `label`; `None` for no
    /// paths.
    pub fn exact(label: &str, paths: impl IntoIterator<Item = Vec<u8>>) -> Option<PathPattern> {
        let paths: HashSet<Vec<u8>> = paths.into_iter().collect();
        if paths.is_empty() {
            return None;
        }
        Some(PathPattern {
            text: label.to_string(),
            regex: Regex::new(&regex::escape(label)).ok()?,
            is_regex: false,
            paths: Some(paths),
            // Exact paths are looked up whole (see `PathMatcher`'s fallback).
            dfa: None,
        })
    }

    /// Whether the absolute path matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        match &self.paths {
            Some(paths) => paths.contains(path),
            None => self.regex.is_match(path),
        }
    }

    /// Whether the pattern is a list of exact paths ([`Self::exact`]), not typed text.
    pub fn is_exact(&self) -> bool {
        self.paths.is_some()
    }

    /// The text as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the text is used as a regular expression (else as a substring).
    pub fn is_regex(&self) -> bool {
        self.is_regex
    }
}

/// Where a [`PathMatcher`] stands after one directory's path: the DFA state (and whether a
/// match was already seen), or, without a DFA, the end of the path in the shared buffer.
#[derive(Clone, Copy, Debug)]
enum Prefix {
    Dfa { state: StateID, matched: bool },
    Path { len: usize },
}

/// Matches a [`PathPattern`] against the paths of nodes met parent before child (a
/// depth-first walk, or the rows of the tree in order), without building each full path: it
/// keeps, per directory open on the way down, the DFA state after that directory's path, so
/// every name byte is read once, however deep the tree. A pattern with no DFA is matched
/// against whole paths kept in one shared buffer.
pub struct PathMatcher<'p> {
    pattern: &'p PathPattern,
    /// (node, where its path leaves the matcher), root side first.
    open: Vec<(NodeId, Prefix)>,
    start: Prefix,
    path: Vec<u8>,
}

impl<'p> PathMatcher<'p> {
    /// A matcher at the root.
    pub fn new(pattern: &'p PathPattern) -> PathMatcher<'p> {
        let start = pattern
            .dfa
            .as_ref()
            .and_then(|dfa| {
                dfa.start_state(&start::Config::new().anchored(Anchored::No))
                    .ok()
            })
            .map_or(Prefix::Path { len: 0 }, |state| Prefix::Dfa {
                state,
                matched: false,
            });
        PathMatcher {
            pattern,
            open: Vec::new(),
            start,
            path: Vec::new(),
        }
    }

    /// Whether the absolute path of `node` matches. Nodes are expected parent before child
    /// (then each name is read once); a node whose parent was not met last on its way down is
    /// still matched right, by stepping through its ancestors from the root.
    pub fn matches(&mut self, tree: &FileTree, node: NodeId) -> bool {
        let root = tree.root();
        let parent = tree.parent(node).filter(|p| *p != root);
        while let Some(&(open, _)) = self.open.last() {
            if Some(open) == parent {
                break;
            }
            self.open.pop();
        }
        if let Some(parent) = parent {
            if self.open.is_empty() {
                let mut chain = Vec::new();
                let mut up = Some(parent);
                while let Some(ancestor) = up.filter(|a| *a != root) {
                    chain.push(ancestor);
                    up = tree.parent(ancestor);
                }
                for ancestor in chain.into_iter().rev() {
                    self.step(tree, ancestor);
                }
            }
        }
        self.step(tree, node)
    }

    /// Extend the path on top of the stack (or the root) by `node`'s name, push it, and say
    /// whether that path matches.
    fn step(&mut self, tree: &FileTree, node: NodeId) -> bool {
        let from = self.open.last().map_or(self.start, |&(_, prefix)| prefix);
        let name = tree.name(node);
        let (prefix, matched) = match (from, self.pattern.dfa.as_deref()) {
            (Prefix::Dfa { state, matched }, Some(dfa)) => {
                let (mut state, mut matched) = (state, matched);
                if !matched && !dfa.is_dead_state(state) {
                    (state, matched) = run_dfa(dfa, state, b"/");
                    if !matched && !dfa.is_dead_state(state) {
                        (state, matched) = run_dfa(dfa, state, name);
                    }
                }
                let here = matched || dfa.is_match_state(dfa.next_eoi_state(state));
                (Prefix::Dfa { state, matched }, here)
            }
            (Prefix::Path { .. }, _) | (Prefix::Dfa { .. }, None) => {
                let len = match from {
                    Prefix::Path { len } => len,
                    Prefix::Dfa { .. } => 0,
                };
                self.path.truncate(len);
                self.path.push(b'/');
                self.path.extend_from_slice(name);
                let here = self.pattern.matches(&self.path);
                (
                    Prefix::Path {
                        len: self.path.len(),
                    },
                    here,
                )
            }
        };
        self.open.push((node, prefix));
        matched
    }
}

/// Step `dfa` from `state` over `bytes`, stopping at a match or a dead state: the state
/// reached and whether it matched. Dead and match states are among the DFA's few special
/// states, so most bytes cost one comparison besides the step.
fn run_dfa(dfa: &dense::DFA<Vec<u32>>, mut state: StateID, bytes: &[u8]) -> (StateID, bool) {
    for &byte in bytes {
        state = dfa.next_state(state, byte);
        if dfa.is_special_state(state) {
            if dfa.is_match_state(state) {
                return (state, true);
            }
            if dfa.is_dead_state(state) {
                break;
            }
        }
    }
    (state, false)
}

/// Which nodes' paths match `pattern`, by node id ([`MATCHED`], [`MATCH_BELOW`]), for a
/// filter worked out away from the UI (see [`TreeView::set_filter_matched`]). With a DFA,
/// each node's state is its parent's stepped over "/name" (parents have lower ids), so every
/// name is read once. `None` when `cancelled` said so before the end (a newer filter
/// superseded this one).
pub fn match_all(
    tree: &FileTree,
    pattern: &PathPattern,
    cancelled: impl Fn() -> bool,
) -> Option<Vec<u8>> {
    /// Nodes between two looks at `cancelled`.
    const CHUNK: usize = 1 << 14;
    let n = tree.node_count();
    let root = tree.root();
    let mut matched = vec![0u8; n];
    let start = pattern.dfa.as_deref().and_then(|dfa| {
        dfa.start_state(&start::Config::new().anchored(Anchored::No))
            .ok()
            .map(|state| (dfa, state))
    });
    match start {
        Some((dfa, start)) => {
            // (state after the node's path, whether that path or a prefix of it matched)
            let mut states = vec![(start, false); n];
            for id in 0..n {
                if id % CHUNK == 0 && cancelled() {
                    return None;
                }
                let node = NodeId(id as u32);
                if node == root {
                    continue;
                }
                let (mut state, mut prefix_matched) = match tree.parent(node) {
                    Some(p) if p != root => {
                        states.get(p.index()).copied().unwrap_or((start, false))
                    }
                    _ => (start, false),
                };
                if !prefix_matched && !dfa.is_dead_state(state) {
                    (state, prefix_matched) = run_dfa(dfa, state, b"/");
                    if !prefix_matched && !dfa.is_dead_state(state) {
                        (state, prefix_matched) = run_dfa(dfa, state, tree.name(node));
                    }
                }
                if prefix_matched || dfa.is_match_state(dfa.next_eoi_state(state)) {
                    matched[id] = MATCHED;
                }
                states[id] = (state, prefix_matched);
            }
        }
        None => {
            let mut matcher = PathMatcher::new(pattern);
            for (id, slot) in matched.iter_mut().enumerate() {
                if id % CHUNK == 0 && cancelled() {
                    return None;
                }
                let node = NodeId(id as u32);
                if node != root && matcher.matches(tree, node) {
                    *slot = MATCHED;
                }
            }
        }
    }
    // Children have higher ids than their parents: one backward pass marks the ancestors.
    for id in (1..n).rev() {
        if matched[id] != 0 {
            if let Some(parent) = tree.parent(NodeId(id as u32)) {
                if let Some(flags) = matched.get_mut(parent.index()) {
                    *flags |= MATCH_BELOW;
                }
            }
        }
    }
    Some(matched)
}

/// In [`match_all`]'s answer: the node's path matches.
pub const MATCHED: u8 = 1;
/// In [`match_all`]'s answer: some path below the node matches (a walk skips the rest).
pub const MATCH_BELOW: u8 = 2;

/// Rows (or marked nodes) from which a pass over them takes a good part of a frame: a
/// search or the first size order of such a view is left to a worker.
const LARGE_VIEW: usize = 50_000;

/// Memory for rows, taken and written once by a worker so that the loop does not page it in
/// while building (see [`TreeView::spare_rows_wanted`]).
#[derive(Default)]
pub struct SpareRows(Vec<Row>);

/// Room for `count` rows, every page of it written.
pub fn spare_rows(count: usize) -> SpareRows {
    let filler = Row {
        node: NodeId(u32::MAX),
        depth: u16::MAX,
        kind: ChangeKind::Added,
        is_dir: true,
        collapsed: true,
        last: true,
        guides: u64::MAX,
    };
    let mut rows = vec![filler; count];
    rows.clear();
    SpareRows(rows)
}

/// The key of rows lent to marks: one the view never gives, so they are never shown.
fn lent_key() -> RowsKey {
    RowsKey {
        sort: SortOrder::Name,
        hidden: HiddenKinds::default(),
        filter: u64::MAX,
        collapse: CollapseKey::Changed(u64::MAX),
    }
}

/// Rows lent to marks, kept under [`lent_key`].
fn lent(rows: Vec<Row>) -> (RowsKey, Vec<Row>, [usize; 4]) {
    (lent_key(), rows, [0; 4])
}

/// The view's name order of every directory, shared with a worker making marks (see
/// [`TreeView::name_order`]).
#[derive(Clone)]
pub struct SharedNameOrder(Arc<NameOrder>);

/// Marks of one layer and mode made off the UI thread, to hand to [`TreeView::keep_marks`].
pub struct PreparedMarks(Marks);

/// The marks [`TreeView::show_layer`] would make for `layer` in `mode`: one pass over the
/// nodes, for a worker to do.
pub fn prepare_marks(
    tree: &FileTree,
    layer: usize,
    mode: ViewMode,
    order: &SharedNameOrder,
    rows: Option<&RowsJob>,
) -> PreparedMarks {
    let mut marks = Marks::compute(tree, layer, base_layer(layer, mode), mode);
    // The size order too (a sort of every directory), when the view's name order is of this
    // tree: the first size-ordered view then costs the loop only the walk.
    if order.0.node_count == tree.node_count() {
        marks.sort_by_size(&order.0);
    }
    // The rows built from them take up to one per marked node: the worker also takes that
    // memory and writes it once, so that the loop does not page it in while building.
    let mut spare = spare_rows(marks.marked).0;
    // Asked for the rows too (a sort toggle): build them here, so that installing the answer
    // costs the loop no walk. Not when the size order could not be made for this tree.
    let job = rows.filter(|job| {
        job.0.collapsed.len() == tree.node_count()
            && (job.0.key.sort == SortOrder::Name || marks.by_size.is_some())
    });
    marks.rows = Some(match job {
        Some(job) => {
            walk_rows(tree, &marks, &order.0, job.0.state(), &mut spare);
            let counts = guides_and_counts(&mut spare);
            (job.0.key, spare, counts)
        }
        None => lent(spare),
    });
    PreparedMarks(marks)
}

/// The state a view's rows depend on besides the marks, copied for a worker that builds
/// them ([`TreeView::rows_job`]). Jobs compare equal only to themselves.
#[derive(Clone)]
pub struct RowsJob(Arc<RowsJobState>);

struct RowsJobState {
    key: RowsKey,
    collapsed: Vec<bool>,
    filter: Option<PathPattern>,
    matched: Option<Vec<u8>>,
}

impl RowsJobState {
    fn state(&self) -> RowsState<'_> {
        RowsState {
            collapsed: &self.collapsed,
            hidden: self.key.hidden,
            filter: self.filter.as_ref(),
            matched: self.matched.as_deref(),
            sort: self.key.sort,
        }
    }
}

impl PartialEq for RowsJob {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RowsJob {}

impl std::fmt::Debug for RowsJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowsJob")
            .field("key", &self.0.key)
            .finish_non_exhaustive()
    }
}

/// The rows a worker built with `marks` (for a [`RowsJob`]), for tests.
#[cfg(test)]
pub(super) fn worker_rows(marks: &PreparedMarks) -> Option<&[Row]> {
    marks
        .0
        .rows
        .as_ref()
        .filter(|(key, _, _)| *key != lent_key())
        .map(|(_, rows, _)| rows.as_slice())
}

/// The layer removed rows are read from at `layer` in `mode`.
fn base_layer(layer: usize, mode: ViewMode) -> Option<usize> {
    match (mode, layer) {
        (_, 0) => None,
        (ViewMode::LayerChanges, n) => Some(n - 1),
        (ViewMode::Aggregated, _) => Some(0),
    }
}

/// One visible row of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// The path's node.
    pub node: NodeId,
    /// Depth below the root (the root's children are 0).
    pub depth: u16,
    /// How the path changed in the current view.
    pub kind: ChangeKind,
    /// A directory (at the layer shown, or as it was before removal).
    pub is_dir: bool,
    /// A collapsed directory.
    pub collapsed: bool,
    /// The last visible entry of its directory.
    pub last: bool,
    /// Bit `d` set: the ancestor at depth `d` has a later visible sibling (draws `│`).
    pub guides: u64,
}

/// Entries of every directory sorted by name, built once per tree size (names never change;
/// which of them exist at a layer is checked while flattening).
#[derive(Default)]
struct NameOrder {
    node_count: usize,
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl NameOrder {
    fn build(tree: &FileTree) -> NameOrder {
        let n = tree.node_count();
        let mut counts = vec![0u32; n + 1];
        for id in 1..n {
            if let Some(parent) = tree.parent(NodeId(id as u32)) {
                counts[parent.index() + 1] += 1;
            }
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut ids = vec![0u32; n.saturating_sub(1)];
        for id in 1..n {
            if let Some(parent) = tree.parent(NodeId(id as u32)) {
                let slot = &mut fill[parent.index()];
                ids[*slot as usize] = id as u32;
                *slot += 1;
            }
        }
        for dir in 0..n {
            let slice = &mut ids[offsets[dir] as usize..offsets[dir + 1] as usize];
            slice.sort_unstable_by(|a, b| tree.name(NodeId(*a)).cmp(tree.name(NodeId(*b))));
        }
        NameOrder {
            node_count: n,
            offsets,
            ids,
        }
    }

    /// A directory's entries in name order, or in the order of `by_size` (the same layout);
    /// present or not at the layer shown (absent ones are skipped as they come).
    fn children_in<'a>(&'a self, by_size: Option<&'a [u32]>, dir: u32) -> &'a [u32] {
        let names = self.children(dir);
        match by_size {
            Some(ids) => {
                let start = self.offsets.get(dir as usize).copied().unwrap_or(0) as usize;
                ids.get(start..start + names.len()).unwrap_or(names)
            }
            None => names,
        }
    }

    fn children(&self, node: u32) -> &[u32] {
        let i = node as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.ids[start as usize..end as usize],
            _ => &[],
        }
    }
}

/// A directory being walked while flattening.
struct Walk<'o> {
    children: &'o [u32],
    next: usize,
    /// Its own row, when emitted.
    row: Option<usize>,
    passes: bool,
    kept_below: bool,
    emit: bool,
}

/// What the view knows of every node at one layer in one mode: its change kind, whether it
/// is a directory there, and its size (a directory's: the sum below it).
struct Marks {
    /// (layer, mode, node count, layer count) they were computed for: a tree that grew
    /// (another layer merged) needs new marks.
    key: (usize, ViewMode, usize, usize),
    kinds: Vec<Option<ChangeKind>>,
    dirs: Vec<bool>,
    sizes: Vec<u64>,
    /// How many nodes are marked (shown at all, before collapse, hide flags and filter): at
    /// most that many rows are built from them.
    marked: usize,
    /// Entries of every directory largest first (by [`NameOrder`]'s offsets), made on the
    /// first size-ordered rebuild.
    by_size: Option<Vec<u32>>,
    /// Rows built from these marks before, with what they were built for and their counts:
    /// going back to them (the layer, mode, sort or collapse state shown before) costs no walk.
    rows: Option<(RowsKey, Vec<Row>, [usize; 4])>,
}

/// Collapse state as far as built rows depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CollapseKey {
    /// Every directory collapsed (`true`) or expanded, as "collapse all" leaves them.
    All(bool),
    /// Anything else, numbered by change.
    Changed(u64),
}

/// What rows are built for besides the marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowsKey {
    sort: SortOrder,
    hidden: HiddenKinds,
    /// Numbered by change of filter.
    filter: u64,
    collapse: CollapseKey,
}

/// How many (layer, mode) marks are kept besides the current ones: switching back to the
/// layer or mode shown before then costs no pass over the nodes. Marks cost 10 bytes per
/// node (14 once sorted by size) and each may keep a set of rows (24 bytes per row): on a
/// 1.17M-node tree, at most 2 x 16 MB of marks and 3 x 28 MB of rows.
const MARKS_KEPT: usize = 1;

impl Marks {
    fn empty() -> Marks {
        Marks {
            key: (usize::MAX, ViewMode::LayerChanges, 0, 0),
            kinds: Vec::new(),
            dirs: Vec::new(),
            sizes: Vec::new(),
            marked: 0,
            by_size: None,
            rows: None,
        }
    }

    /// One pass for kinds, one for entries and sizes, one backward pass for directory sums.
    fn compute(tree: &FileTree, layer: usize, base: Option<usize>, mode: ViewMode) -> Marks {
        let n = tree.node_count();
        let kinds = tree.changes(base, layer);
        let mut dirs = vec![false; n];
        let mut sizes = vec![0u64; n];
        for (id, kind) in kinds.iter().enumerate() {
            if kind.is_none() {
                continue;
            }
            let node = NodeId(id as u32);
            let entry = match tree.entry_at(node, layer) {
                Some(e) => Some(e),
                None => base.and_then(|b| tree.entry_at(node, b)),
            };
            if let Some(e) = entry {
                match e.kind() {
                    EntryKind::Dir => dirs[id] = true,
                    EntryKind::File if id > 0 => sizes[id] = e.size(),
                    _ => {}
                }
            }
        }
        // Children have higher ids than their parents: one backward pass sums directories.
        // Removed paths count only towards removed directories.
        for id in (1..n).rev() {
            let Some(kind) = kinds[id] else { continue };
            if let Some(parent) = tree.parent(NodeId(id as u32)) {
                let parent_removed = kinds[parent.index()] == Some(ChangeKind::Removed);
                if kind != ChangeKind::Removed || parent_removed {
                    sizes[parent.index()] += sizes[id];
                }
            }
        }
        let marked = kinds.iter().filter(|k| k.is_some()).count();
        Marks {
            key: (layer, mode, n, tree.layer_count()),
            kinds,
            dirs,
            sizes,
            marked,
            by_size: None,
            rows: None,
        }
    }

    /// Sort every directory's entries largest first; name order is kept among equal sizes.
    fn sort_by_size(&mut self, order: &NameOrder) {
        if self.by_size.is_some() {
            return;
        }
        let mut ids = order.ids.clone();
        for pair in order.offsets.windows(2) {
            let slice = &mut ids[pair[0] as usize..pair[1] as usize];
            if slice.len() > 1 {
                slice.sort_by_key(|&c| Reverse(self.sizes.get(c as usize).copied().unwrap_or(0)));
            }
        }
        self.by_size = Some(ids);
    }
}

/// The tree pane's model: per-node marks for the current layer and mode, the visible rows,
/// the cursor and the scroll position.
pub struct TreeView {
    layer: Option<usize>,
    mode: ViewMode,
    marks: Marks,
    /// Marks of layers and modes shown before, the most recent last.
    kept: Vec<Marks>,
    collapsed: Vec<bool>,
    /// Shared with workers making marks, which sort by size in it.
    order: Arc<NameOrder>,
    /// Sort order of each directory's entries.
    pub sort: SortOrder,
    /// Kinds not shown.
    pub hidden: HiddenKinds,
    filter: Option<PathPattern>,
    /// The filter's matches by node id, when worked out beforehand (see [`match_all`]); the
    /// walk asks the filter itself when they are absent or the tree grew since.
    matched: Option<Vec<u8>>,
    rows: Vec<Row>,
    /// The rows by kind (see [`Self::counts`]), counted when they are built.
    counts: [usize; 4],
    /// What the rows were built for (`None`: not built from the current marks).
    built: Option<RowsKey>,
    /// Numbered by change: the filter and the collapse state.
    filter_changes: u64,
    collapse: CollapseKey,
    changes: u64,
    /// How many times rows were built: what the kept search hits were found in.
    rows_built: u64,
    /// From this many rows or marked nodes on, a search or the first size order is left to a
    /// worker ([`LARGE_VIEW`]; tests lower it to see the workers' path on small trees).
    pub(super) large: usize,
    /// The last search: (pattern text, whether a regex, `rows_built`) and the matching rows.
    hits: Option<((String, bool, u64), Vec<usize>)>,
    /// A search pattern's matches by node id, worked out by a worker (see [`match_all`]):
    /// (pattern text, whether a regex) and the flags. Hits are then read off the rows.
    search_matched: Option<((String, bool), Vec<u8>)>,
    cursor: usize,
    offset: usize,
}

impl Default for TreeView {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeView {
    /// A view showing nothing until [`Self::show_layer`].
    pub fn new() -> TreeView {
        TreeView {
            layer: None,
            mode: ViewMode::LayerChanges,
            marks: Marks::empty(),
            kept: Vec::new(),
            collapsed: Vec::new(),
            order: Arc::default(),
            sort: SortOrder::Name,
            hidden: HiddenKinds::default(),
            filter: None,
            matched: None,
            rows: Vec::new(),
            counts: [0; 4],
            built: None,
            filter_changes: 0,
            collapse: CollapseKey::All(false),
            changes: 0,
            rows_built: 0,
            large: LARGE_VIEW,
            hits: None,
            search_matched: None,
            cursor: 0,
            offset: 0,
        }
    }

    /// The layer shown, if any.
    pub fn layer(&self) -> Option<usize> {
        self.layer
    }

    /// The view mode.
    pub fn mode(&self) -> ViewMode {
        self.mode
    }

    /// The layer a row's entry is read from: the shown layer, or for removed rows the layer
    /// it is compared against.
    pub fn base_layer(&self) -> Option<usize> {
        base_layer(self.layer?, self.mode)
    }

    /// Whether showing `layer` in `mode` needs a pass over the nodes first (its marks are
    /// neither current nor kept): see [`prepare_marks`].
    pub fn needs_marks(&self, tree: &FileTree, layer: usize, mode: ViewMode) -> bool {
        let key = (layer, mode, tree.node_count(), tree.layer_count());
        self.marks.key != key && !self.kept.iter().any(|m| m.key == key)
    }

    /// Keep `marks` made by [`prepare_marks`] away from the UI, for the next
    /// [`Self::show_layer`] of their layer and mode; marks of a smaller tree are dropped.
    pub fn keep_marks(&mut self, tree: &FileTree, marks: PreparedMarks) {
        let mut marks = marks.0;
        if marks.key == self.marks.key {
            // Asked for by a sort toggle (see [`Self::sort_toggle_wants_worker`]): the size
            // order if it is missing, and the memory for the rows of the other order.
            if self.marks.by_size.is_none() {
                self.marks.by_size = marks.by_size.take();
            }
            match marks.rows.take() {
                // Built for the view's state as it was asked (see [`Self::rows_job`]): the
                // next rebuild takes them as they are if that state is still the view's.
                Some(built) if built.0 != lent_key() => self.marks.rows = Some(built),
                Some((_, rows, _)) => self.lend_rows(SpareRows(rows)),
                None => {}
            }
            return;
        }
        if marks.key.2 == tree.node_count()
            && marks.key.3 == tree.layer_count()
            && self.needs_marks(tree, marks.key.0, marks.key.1)
        {
            self.kept.push(marks);
        }
    }

    /// Show `tree` at `layer` in `mode`, keeping the cursor on the same path when it is
    /// still visible.
    pub fn show_layer(&mut self, tree: &FileTree, layer: usize, mode: ViewMode) {
        self.layer = Some(layer);
        self.mode = mode;
        let key = (layer, mode, tree.node_count(), tree.layer_count());
        if self.marks.key != key {
            let marks = match self.kept.iter().position(|m| m.key == key) {
                Some(i) => self.kept.remove(i),
                None => Marks::compute(tree, layer, self.base_layer(), mode),
            };
            let mut old = std::mem::replace(&mut self.marks, marks);
            if let Some(built) = self.built.take() {
                old.rows = Some((built, std::mem::take(&mut self.rows), self.counts));
            }
            // Marks of a smaller tree are never asked for again.
            self.kept.retain(|m| m.key.2 == key.2 && m.key.3 == key.3);
            if old.key.2 == key.2 && old.key.3 == key.3 {
                self.kept.push(old);
            }
            if self.kept.len() > MARKS_KEPT {
                // Its rows lend their memory to the rows built next (no growing from empty).
                if let Some((_, mut rows, _)) = self.kept.remove(0).rows {
                    rows.clear();
                    self.rows = rows;
                }
            }
        }
        self.refresh(tree);
    }

    /// Show nothing (the selected layer is not merged yet); collapse state, hide flags, sort
    /// and filter are kept for when it is.
    pub fn clear(&mut self) {
        self.layer = None;
        self.rows.clear();
        self.built = None;
        self.counts = [0; 4];
        self.rows_built += 1;
        self.cursor = 0;
        self.offset = 0;
    }

    /// A new number for a change of filter or collapse state.
    fn next_change(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// Recompute rows after the tree grew or marks changed.
    fn refresh(&mut self, tree: &FileTree) {
        if self.order.node_count != tree.node_count() {
            self.order = Arc::new(NameOrder::build(tree));
        }
        if self.collapsed.len() != tree.node_count() {
            // New directories come expanded: not "all collapsed" any more.
            self.collapsed.resize(tree.node_count(), false);
            self.collapse = CollapseKey::Changed(self.next_change());
        }
        self.rebuild(tree);
    }

    /// The entry a node shows in this view: as of the layer shown, or as it was before it
    /// was removed.
    pub fn entry<'t>(&self, tree: &'t FileTree, node: NodeId) -> Option<&'t Entry> {
        let layer = self.layer?;
        match tree.entry_at(node, layer) {
            Some(e) => Some(e),
            None => tree.entry_at(node, self.base_layer()?),
        }
    }

    /// Size of a node in this view: file size, or for a directory the sum below it.
    pub fn size(&self, node: NodeId) -> u64 {
        self.marks.sizes.get(node.index()).copied().unwrap_or(0)
    }

    /// Rebuild the visible rows (after a collapse, hide, sort or filter change).
    pub fn rebuild(&mut self, tree: &FileTree) {
        let key = self.rows_key(self.sort);
        if self.layer.is_some() && self.built == Some(key) {
            return;
        }
        let keep = self.rows.get(self.cursor).map(|r| r.node);
        let before = self.marks.rows.take();
        if let Some(built) = self.built.take() {
            self.marks.rows = Some((built, std::mem::take(&mut self.rows), self.counts));
        }
        self.rows.clear();
        self.counts = [0; 4];
        self.rows_built += 1;
        if self.layer.is_none() {
            return;
        }
        self.built = Some(key);
        match before {
            Some((built, rows, counts)) if built == key => {
                self.rows = rows;
                self.counts = counts;
            }
            spare => {
                // Rows no longer kept lend their memory (no growing from empty again).
                if let Some((_, mut rows, _)) = spare {
                    rows.clear();
                    self.rows = rows;
                }
                // At most one row per marked node: room for all of them at once, so that a
                // large view is not copied over and over while it grows.
                if self.rows.capacity() < self.marks.marked {
                    self.rows.reserve_exact(self.marks.marked);
                }
                self.build_rows(tree);
            }
        }
        self.cursor = keep
            .and_then(|node| self.rows.iter().position(|r| r.node == node))
            .unwrap_or(self.cursor.min(self.rows.len().saturating_sub(1)));
    }

    /// Walk the tree in the sort order and make the visible rows.
    fn build_rows(&mut self, tree: &FileTree) {
        if self.sort == SortOrder::Size {
            self.marks.sort_by_size(&self.order);
        }
        let state = RowsState {
            collapsed: &self.collapsed,
            hidden: self.hidden,
            filter: self.filter.as_ref(),
            matched: self.matched.as_deref(),
            sort: self.sort,
        };
        walk_rows(tree, &self.marks, &self.order, state, &mut self.rows);
        self.counts = guides_and_counts(&mut self.rows);
    }

    /// The visible rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The row under the cursor.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The first row on screen.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The selected row, if any.
    pub fn selected(&self) -> Option<Row> {
        self.rows.get(self.cursor).copied()
    }

    /// Move the cursor by `delta` rows (clamped) and scroll so that it stays within a window
    /// of `height` rows.
    pub fn move_by(&mut self, delta: isize, height: usize) {
        let last = self.rows.len().saturating_sub(1) as isize;
        self.cursor = (self.cursor as isize + delta).clamp(0, last.max(0)) as usize;
        self.scroll_to_cursor(height);
    }

    /// Put the cursor on row `index` (clamped).
    pub fn set_cursor(&mut self, index: usize, height: usize) {
        self.cursor = index.min(self.rows.len().saturating_sub(1));
        self.scroll_to_cursor(height);
    }

    /// Scroll the window by `delta` rows without moving past either end (mouse wheel); the
    /// cursor follows when it would leave the window.
    pub fn scroll_by(&mut self, delta: isize, height: usize) {
        let max_offset = self.rows.len().saturating_sub(height) as isize;
        self.offset = (self.offset as isize + delta).clamp(0, max_offset.max(0)) as usize;
        if height > 0 {
            self.cursor = self
                .cursor
                .clamp(self.offset, (self.offset + height - 1).max(self.offset))
                .min(self.rows.len().saturating_sub(1));
        }
    }

    /// Adjust the scroll position so that the cursor is on screen.
    pub fn scroll_to_cursor(&mut self, height: usize) {
        let height = height.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + height {
            self.offset = self.cursor + 1 - height;
        }
        let max_offset = self.rows.len().saturating_sub(height);
        self.offset = self.offset.min(max_offset);
    }

    /// Collapse or expand the directory under the cursor (on a file: its directory).
    pub fn toggle_collapse(&mut self, tree: &FileTree) {
        let Some(row) = self.selected() else { return };
        let target = if row.is_dir {
            row.node
        } else {
            match tree.parent(row.node) {
                Some(p) if p != tree.root() => p,
                _ => return,
            }
        };
        if let Some(flag) = self.collapsed.get_mut(target.index()) {
            *flag = !*flag;
        }
        self.collapse = CollapseKey::Changed(self.next_change());
        self.rebuild(tree);
        if let Some(i) = self.rows.iter().position(|r| r.node == target) {
            self.cursor = i;
        }
    }

    /// Collapse every directory, or expand every one when all visible ones are collapsed.
    pub fn toggle_collapse_all(&mut self, tree: &FileTree) {
        let any_expanded = self.rows.iter().any(|r| r.is_dir && !r.collapsed);
        let cursor_top = self.selected().map(|r| {
            let mut node = r.node;
            while let Some(p) = tree.parent(node) {
                if p == tree.root() {
                    break;
                }
                node = p;
            }
            node
        });
        self.collapsed.iter_mut().for_each(|c| *c = any_expanded);
        self.collapse = CollapseKey::All(any_expanded);
        if let Some(root) = self.collapsed.first_mut() {
            *root = false;
        }
        self.rebuild(tree);
        if let Some(top) = cursor_top {
            if let Some(i) = self.rows.iter().position(|r| r.node == top) {
                self.cursor = i;
            }
        }
    }

    /// Expand a collapsed directory under the cursor; `false` when there was nothing to do.
    pub fn expand(&mut self, tree: &FileTree) -> bool {
        match self.selected() {
            Some(row) if row.is_dir && row.collapsed => {
                self.toggle_collapse(tree);
                true
            }
            _ => false,
        }
    }

    /// Collapse the directory under the cursor, or move to the parent directory.
    pub fn collapse_or_parent(&mut self, tree: &FileTree) {
        let Some(row) = self.selected() else { return };
        if row.is_dir && !row.collapsed {
            self.toggle_collapse(tree);
            return;
        }
        if let Some(parent) = tree.parent(row.node) {
            if let Some(i) = self.rows[..self.cursor]
                .iter()
                .rposition(|r| r.node == parent)
            {
                self.cursor = i;
            }
        }
    }

    /// Apply `kind`'s hide flag change and rebuild.
    pub fn toggle_hidden(&mut self, tree: &FileTree, kind: ChangeKind) {
        self.hidden.toggle(kind);
        self.rebuild(tree);
    }

    /// How many rows' memory the next build would have to take fresh (no rows kept to lend
    /// it): a worker whose answer leads to a build gives it with [`spare_rows`].
    pub fn spare_rows_wanted(&self) -> usize {
        if self.kept_rows_written() >= self.marks.marked {
            0
        } else {
            self.marks.marked
        }
    }

    /// Lend `spare` to the next build, unless rows kept already lend as much.
    pub fn lend_rows(&mut self, spare: SpareRows) {
        if spare.0.capacity() > self.kept_rows_written() {
            self.marks.rows = Some(lent(spare.0));
        }
    }

    /// How many rows the memory of the rows kept beside the marks has been written for: a
    /// build into them pages in nothing more up to there. (Built rows were written as far as
    /// they reach, however much room they hold; lent ones throughout.)
    fn kept_rows_written(&self) -> usize {
        match &self.marks.rows {
            Some((key, rows, _)) if *key == lent_key() => rows.capacity(),
            Some((_, rows, _)) => rows.len(),
            None => 0,
        }
    }

    /// The view's name order, for [`prepare_marks`] on a worker.
    pub fn name_order(&self) -> SharedNameOrder {
        SharedNameOrder(Arc::clone(&self.order))
    }

    /// Whether sorting by size would first sort every directory of a large tree on this
    /// thread: then a worker's [`prepare_marks`] should do it (see [`Self::keep_marks`]).
    pub fn size_order_missing(&self) -> bool {
        self.layer.is_some() && self.marks.by_size.is_none() && self.marks.marked >= self.large
    }

    /// Whether a sort toggle should wait for a worker's [`prepare_marks`] rather than build
    /// on this thread: when a large tree's directories are not sorted by size yet (see
    /// [`Self::size_order_missing`]), or when no rows kept are of the other order and none
    /// can lend the memory for them. Paging in fresh memory for a million rows (28 MB) takes
    /// most of a frame; the worker writes it once, and the loop only walks the tree.
    pub fn sort_toggle_wants_worker(&self) -> bool {
        if self.layer.is_none() || self.marks.marked < self.large {
            return false;
        }
        if self.sort == SortOrder::Name && self.size_order_missing() {
            return true;
        }
        let toggled = self.rows_key(self.sort.toggled());
        let kept = matches!(&self.marks.rows, Some((key, _, _)) if *key == toggled);
        !kept && self.spare_rows_wanted() > 0
    }

    /// What rows built now in `sort` order would be built for.
    fn rows_key(&self, sort: SortOrder) -> RowsKey {
        RowsKey {
            sort,
            hidden: self.hidden,
            filter: self.filter_changes,
            collapse: self.collapse,
        }
    }

    /// The state the rows are built for now, for a worker to build them (see
    /// [`prepare_marks`]): copies of the collapse state and the filter's matches, about two
    /// bytes a node.
    pub fn rows_job(&self) -> RowsJob {
        RowsJob(Arc::new(RowsJobState {
            key: self.rows_key(self.sort),
            collapsed: self.collapsed.clone(),
            filter: self.filter.clone(),
            matched: self.matched.clone(),
        }))
    }

    /// Switch between name and size order and rebuild.
    pub fn toggle_sort(&mut self, tree: &FileTree) {
        self.sort = self.sort.toggled();
        self.rebuild(tree);
    }

    /// The live filter.
    pub fn filter(&self) -> Option<&PathPattern> {
        self.filter.as_ref()
    }

    /// Replace the filter and rebuild.
    pub fn set_filter(&mut self, tree: &FileTree, filter: Option<PathPattern>) {
        self.filter = filter;
        self.matched = None;
        self.filter_changes = self.next_change();
        self.rebuild(tree);
    }

    /// Replace the filter by `filter` whose matches by node id are `matched` (from
    /// [`match_all`] on this tree), and rebuild without matching any path again.
    pub fn set_filter_matched(&mut self, tree: &FileTree, filter: PathPattern, matched: Vec<u8>) {
        self.filter = Some(filter);
        self.matched = Some(matched);
        self.filter_changes = self.next_change();
        self.rebuild(tree);
    }

    /// The rows whose path matches, in order: found in one pass over the rows (each name
    /// read once: rows come parent before child), then kept until the rows or the pattern
    /// change, so that stepping through the matches costs nothing more.
    fn hits(&mut self, tree: &FileTree, pattern: &PathPattern) -> &[usize] {
        let key = (
            pattern.text().to_string(),
            pattern.is_regex(),
            self.rows_built,
        );
        // Exact patterns are not told apart by their label: they are never kept.
        let fresh = !pattern.is_exact() && self.hits.as_ref().is_some_and(|(k, _)| *k == key);
        if !fresh {
            let matched = self
                .search_matched
                .as_ref()
                .filter(|((text, regex), m)| {
                    !pattern.is_exact()
                        && (text.as_str(), *regex) == (pattern.text(), pattern.is_regex())
                        && m.len() == tree.node_count()
                })
                .map(|(_, m)| m.as_slice());
            let hits = match matched {
                Some(matched) => self
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        matched
                            .get(r.node.index())
                            .is_some_and(|f| f & MATCHED != 0)
                    })
                    .map(|(i, _)| i)
                    .collect(),
                None => {
                    let mut matcher = PathMatcher::new(pattern);
                    self.rows
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| matcher.matches(tree, r.node).then_some(i))
                        .collect()
                }
            };
            self.hits = Some((key, hits));
        }
        self.hits
            .as_ref()
            .map_or(&[][..], |(_, hits)| hits.as_slice())
    }

    /// Whether finding `pattern` in the rows would match the paths of a large view on this
    /// thread: then a worker's [`match_all`] should do it (see [`Self::set_search_matches`]).
    pub fn search_needs_pass(&self, tree: &FileTree, pattern: &PathPattern) -> bool {
        let known = self
            .search_matched
            .as_ref()
            .is_some_and(|((text, regex), m)| {
                (text.as_str(), *regex) == (pattern.text(), pattern.is_regex())
                    && m.len() == tree.node_count()
            });
        !pattern.is_exact() && self.rows.len() >= self.large && !known
    }

    /// Keep `pattern`'s matches by node id (from [`match_all`] on this tree): searches for
    /// it read them off the rows instead of matching paths.
    pub fn set_search_matches(&mut self, pattern: &PathPattern, matched: Vec<u8>) {
        self.search_matched = Some(((pattern.text().to_string(), pattern.is_regex()), matched));
        self.hits = None;
    }

    /// Move the cursor to the next (or previous) row whose path matches, wrapping around;
    /// `false` when no visible row matches.
    pub fn search(&mut self, tree: &FileTree, pattern: &PathPattern, forward: bool) -> bool {
        let cursor = self.cursor;
        let hits = self.hits(tree, pattern);
        let (Some(&first), Some(&last)) = (hits.first(), hits.last()) else {
            return false;
        };
        let next = if forward {
            let after = hits.partition_point(|&i| i <= cursor);
            hits.get(after).copied().unwrap_or(first)
        } else {
            let before = hits.partition_point(|&i| i < cursor);
            match before {
                0 => last,
                n => hits.get(n - 1).copied().unwrap_or(last),
            }
        };
        self.cursor = next;
        true
    }

    /// Number of visible rows whose path matches.
    pub fn count_matches(&mut self, tree: &FileTree, pattern: &PathPattern) -> usize {
        self.hits(tree, pattern).len()
    }

    /// Reveal `node`: expand its ancestors, rebuild and put the cursor on it. `false` when
    /// the current view does not show it (absent at this layer, hidden or filtered out).
    pub fn reveal(&mut self, tree: &FileTree, node: NodeId) -> bool {
        let mut ancestor = tree.parent(node);
        while let Some(a) = ancestor {
            if let Some(flag) = self.collapsed.get_mut(a.index()) {
                *flag = false;
            }
            ancestor = tree.parent(a);
        }
        self.collapse = CollapseKey::Changed(self.next_change());
        self.rebuild(tree);
        match self.rows.iter().position(|r| r.node == node) {
            Some(i) => {
                self.cursor = i;
                true
            }
            None => false,
        }
    }

    /// Expand the ancestors of every node given, rebuild once, and put the cursor on the
    /// first of them that is shown. `false` when none is.
    pub fn reveal_all(&mut self, tree: &FileTree, nodes: &[NodeId]) -> bool {
        for &node in nodes {
            let mut ancestor = tree.parent(node);
            while let Some(a) = ancestor {
                if let Some(flag) = self.collapsed.get_mut(a.index()) {
                    *flag = false;
                }
                ancestor = tree.parent(a);
            }
        }
        self.collapse = CollapseKey::Changed(self.next_change());
        self.rebuild(tree);
        let shown: HashSet<NodeId> = nodes.iter().copied().collect();
        match self.rows.iter().position(|r| shown.contains(&r.node)) {
            Some(i) => {
                self.cursor = i;
                true
            }
            None => false,
        }
    }

    /// Counts of the visible rows by kind: added, modified, removed, unmodified.
    pub fn counts(&self) -> [usize; 4] {
        self.counts
    }
}

/// What built rows depend on besides the marks, borrowed from a view or from a [`RowsJob`].
#[derive(Clone, Copy)]
struct RowsState<'a> {
    collapsed: &'a [bool],
    hidden: HiddenKinds,
    filter: Option<&'a PathPattern>,
    /// Filter flags by node id, when worked out already (used only when they are of this tree).
    matched: Option<&'a [u8]>,
    sort: SortOrder,
}

/// Walk the tree in `state`'s sort order (by size: `marks` must hold that order) and push
/// the visible rows onto `rows`.
fn walk_rows(
    tree: &FileTree,
    marks: &Marks,
    order: &NameOrder,
    state: RowsState<'_>,
    rows: &mut Vec<Row>,
) {
    let RowsState {
        collapsed,
        hidden,
        filter,
        matched,
        sort,
    } = state;
    let matched = matched.filter(|m| m.len() == tree.node_count());
    let kinds = &marks.kinds;
    let kind_of = |node: u32| kinds.get(node as usize).copied().flatten();
    let by_size = match sort {
        SortOrder::Size => marks.by_size.as_deref(),
        SortOrder::Name => None,
    };
    let order: &NameOrder = order;
    let entries = move |dir: u32| order.children_in(by_size, dir);
    // The filter reads each name once, not each node's whole path (see PathMatcher).
    let mut matcher = filter.filter(|_| matched.is_none()).map(PathMatcher::new);
    let mut stack = vec![Walk {
        children: entries(0),
        next: 0,
        row: None,
        passes: false,
        kept_below: false,
        emit: true,
    }];
    loop {
        let depth = stack.len() - 1;
        let Some(top) = stack.last_mut() else { break };
        if top.next < top.children.len() {
            let child = top.children[top.next];
            top.next += 1;
            let emit = top.emit;
            let Some(kind) = kind_of(child) else {
                continue;
            };
            let flags = matched.map(|m| m.get(child as usize).copied().unwrap_or(0));
            if flags == Some(0) {
                // Neither it nor anything below matches: it would show no row.
                continue;
            }
            let node = NodeId(child);
            // Every node meets the matcher, hidden or not, so each name is read once.
            let named = match (flags, matcher.as_mut()) {
                (Some(flags), _) => flags & MATCHED != 0,
                (None, Some(m)) => m.matches(tree, node),
                (None, None) => true,
            };
            let passes = !hidden.hides(kind) && named;
            let is_dir = marks.dirs.get(child as usize).copied().unwrap_or(false);
            if !is_dir {
                if passes {
                    top.kept_below = true;
                    if !emit {
                        // Only looking for one match below a hidden directory.
                        top.next = top.children.len();
                    } else {
                        rows.push(Row {
                            node,
                            depth: depth as u16,
                            kind,
                            is_dir: false,
                            collapsed: false,
                            last: false,
                            guides: 0,
                        });
                    }
                }
                continue;
            }
            let collapsed = collapsed.get(child as usize).copied().unwrap_or(false);
            let row = emit.then(|| {
                rows.push(Row {
                    node,
                    depth: depth as u16,
                    kind,
                    is_dir: true,
                    collapsed,
                    last: false,
                    guides: 0,
                });
                rows.len() - 1
            });
            if collapsed && passes {
                top.kept_below = true;
                if !emit {
                    top.next = top.children.len();
                }
                continue;
            }
            let children = entries(child);
            // A directory stands on its own when the filter names it or it is empty;
            // otherwise it is shown for what it holds.
            let passes =
                passes && (filter.is_some() || !children.iter().any(|&c| kind_of(c).is_some()));
            stack.push(Walk {
                children,
                next: 0,
                row,
                passes,
                kept_below: false,
                emit: emit && !collapsed,
            });
        } else {
            let Some(done) = stack.pop() else { break };
            if stack.is_empty() {
                break;
            }
            let kept = done.passes || done.kept_below;
            if let Some(parent) = stack.last_mut() {
                if kept {
                    parent.kept_below = true;
                    if !parent.emit {
                        parent.next = parent.children.len();
                    }
                }
            }
            if !kept {
                if let Some(row) = done.row {
                    rows.truncate(row);
                }
            }
        }
    }
}

/// Set each row's `last` and `guides` (one backward pass, the later siblings at each depth
/// kept as bits) and count the rows by kind.
fn guides_and_counts(rows: &mut [Row]) -> [usize; 4] {
    let mut later = 0u64;
    let mut counts = [0usize; 4];
    for row in rows.iter_mut().rev() {
        counts[row.kind as usize] += 1;
        let d = row.depth as usize;
        if d < 64 {
            // Entries at greater depths seen so far belong to another directory.
            if d < 63 {
                later &= (1u64 << (d + 1)) - 1;
            }
            row.last = later & (1u64 << d) == 0;
            row.guides = later & ((1u64 << d) - 1);
            later |= 1u64 << d;
        } else {
            row.last = true;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tui::testing::tree_from;

    fn names(view: &TreeView, tree: &FileTree) -> Vec<String> {
        view.rows()
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    "  ".repeat(r.depth as usize),
                    String::from_utf8_lossy(tree.name(r.node)),
                    match r.kind {
                        ChangeKind::Added => " +",
                        ChangeKind::Modified => " ~",
                        ChangeKind::Removed => " -",
                        ChangeKind::Unmodified => "",
                    }
                )
            })
            .collect()
    }

    fn sample() -> FileTree {
        tree_from(&[
            &[
                ("etc/passwd", Some(&b"root:x:0:0\n"[..])),
                ("etc/hosts", Some(b"127.0.0.1 localhost\n")),
                ("usr/bin/tool", Some(&[7u8; 3000][..])),
                ("tmp/cache.bin", Some(&[1u8; 500][..])),
            ],
            &[
                ("etc/passwd", Some(b"root:x:0:0\nuser:x:1000:1000\n")),
                ("app/main.py", Some(b"print('hi')\n")),
                ("tmp/.wh.cache.bin", None),
            ],
        ])
    }

    #[test]
    fn layer_changes_mark_added_modified_removed() {
        let tree = sample();
        let mut view = TreeView::new();
        view.show_layer(&tree, 1, ViewMode::LayerChanges);
        assert_eq!(
            names(&view, &tree),
            [
                "app +",
                "  main.py +",
                "etc ~",
                "  hosts",
                "  passwd ~",
                "tmp ~",
                "  cache.bin -",
                "usr",
                "  bin",
                "    tool",
            ]
        );
        // Directory sizes sum what is present; the removed file counts only for itself.
        let tmp = tree.lookup(b"/tmp").unwrap();
        assert_eq!(view.size(tmp), 0);
        assert_eq!(view.size(tree.lookup(b"/tmp/cache.bin").unwrap()), 500);
        assert_eq!(view.size(tree.lookup(b"/usr").unwrap()), 3000);
    }

    #[test]
    fn only_changes_hide_kinds_sort_and_collapse() {
        let tree = sample();
        let mut view = TreeView::new();
        view.show_layer(&tree, 1, ViewMode::LayerChanges);
        view.toggle_hidden(&tree, ChangeKind::Unmodified);
        assert_eq!(
            names(&view, &tree),
            [
                "app +",
                "  main.py +",
                "etc ~",
                "  passwd ~",
                "tmp ~",
                "  cache.bin -"
            ]
        );
        view.toggle_hidden(&tree, ChangeKind::Added);
        view.toggle_hidden(&tree, ChangeKind::Removed);
        assert_eq!(names(&view, &tree), ["etc ~", "  passwd ~"]);
        view.toggle_hidden(&tree, ChangeKind::Added);
        view.toggle_hidden(&tree, ChangeKind::Removed);
        view.toggle_hidden(&tree, ChangeKind::Unmodified);

        view.toggle_sort(&tree);
        assert_eq!(names(&view, &tree)[0], "usr");

        view.toggle_sort(&tree);
        view.toggle_collapse_all(&tree);
        assert_eq!(names(&view, &tree), ["app +", "etc ~", "tmp ~", "usr"]);
        view.set_cursor(1, 10);
        view.toggle_collapse(&tree);
        assert_eq!(
            names(&view, &tree),
            ["app +", "etc ~", "  hosts", "  passwd ~", "tmp ~", "usr"]
        );
        view.toggle_collapse_all(&tree);
        view.toggle_collapse_all(&tree);
        assert_eq!(view.rows().len(), 10);
    }

    #[test]
    fn filter_keeps_ancestors_and_search_wraps() {
        let tree = sample();
        let mut view = TreeView::new();
        view.show_layer(&tree, 1, ViewMode::Aggregated);
        view.set_filter(&tree, PathPattern::new("pass"));
        assert_eq!(names(&view, &tree), ["etc ~", "  passwd ~"]);
        view.set_filter(&tree, PathPattern::new("^/(usr|app)/.*[lo]$"));
        assert!(view.filter().unwrap().is_regex());
        assert_eq!(names(&view, &tree), ["usr", "  bin", "    tool"]);
        // Matches worked out beforehand give the same rows.
        let pattern = PathPattern::new("^/(usr|app)/.*[lo]$").unwrap();
        let matched = match_all(&tree, &pattern, || false).unwrap();
        view.set_filter(&tree, None);
        view.set_filter_matched(&tree, pattern, matched);
        assert_eq!(names(&view, &tree), ["usr", "  bin", "    tool"]);
        // Not a valid regex: taken as text.
        let text = PathPattern::new("main.py(").unwrap();
        assert!(!text.is_regex());
        // Exact paths match themselves only, not their prefixes or their label.
        let exact = PathPattern::exact(
            "a finding",
            [b"/usr/bin/tool".to_vec(), b"/etc/hosts".to_vec()],
        )
        .unwrap();
        assert!(exact.is_exact() && !exact.is_regex());
        assert_eq!(exact.text(), "a finding");
        assert!(!exact.matches(b"/usr/bin/tool2") && !exact.matches(b"a finding"));
        view.set_filter(&tree, Some(exact));
        assert_eq!(
            names(&view, &tree),
            ["etc ~", "  hosts", "usr", "  bin", "    tool"]
        );
        assert!(PathPattern::exact("none", Vec::new()).is_none());
        view.set_filter(&tree, None);
        view.set_cursor(0, 10);

        let pattern = PathPattern::new("tool|hosts").unwrap();
        assert_eq!(view.count_matches(&tree, &pattern), 2);
        assert!(view.search(&tree, &pattern, true));
        assert_eq!(tree.name(view.selected().unwrap().node), b"hosts");
        assert!(view.search(&tree, &pattern, true));
        assert_eq!(tree.name(view.selected().unwrap().node), b"tool");
        assert!(view.search(&tree, &pattern, true));
        assert_eq!(tree.name(view.selected().unwrap().node), b"hosts");
        assert!(view.search(&tree, &pattern, false));
        assert_eq!(tree.name(view.selected().unwrap().node), b"tool");
    }

    /// Every node of `tree` depth-first, parent before child, siblings by name.
    fn depth_first(tree: &FileTree) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut stack = vec![tree.root()];
        while let Some(node) = stack.pop() {
            if node != tree.root() {
                out.push(node);
            }
            let mut children: Vec<NodeId> = tree.children(node).collect();
            children.sort_by(|a, b| tree.name(*b).cmp(tree.name(*a)));
            stack.extend(children);
        }
        out
    }

    #[test]
    fn the_matcher_agrees_with_the_regex_on_whole_paths() {
        let tree = sample();
        let nodes = depth_first(&tree);
        for text in [
            "pass",
            "^/usr",
            r"\.bin$",
            "(?i)TOOL",
            r"\bbin\b",
            "^/etc/[a-z]+$",
            "e.*o",
            "^/$",
            "main.py(",
            r"(?-u:\xff)|cache",
        ] {
            let mut pattern = PathPattern::new(text).unwrap();
            for with_dfa in [true, false] {
                if !with_dfa {
                    pattern.dfa = None;
                }
                let mut matcher = PathMatcher::new(&pattern);
                let all = match_all(&tree, &pattern, || false).unwrap();
                for &node in &nodes {
                    let whole = pattern.matches(&tree.path(node));
                    assert_eq!(
                        matcher.matches(&tree, node),
                        whole,
                        "{text} on {:?} (dfa: {with_dfa})",
                        String::from_utf8_lossy(&tree.path(node))
                    );
                    let named = all[node.index()] & MATCHED != 0;
                    assert_eq!(named, whole, "match_all: {text} (dfa: {with_dfa})");
                    let below = nodes.iter().any(|&d| {
                        d != node
                            && tree.path(d).starts_with(&tree.path(node))
                            && tree.path(d).get(tree.path(node).len()) == Some(&b'/')
                            && pattern.matches(&tree.path(d))
                    });
                    assert_eq!(all[node.index()] & MATCH_BELOW != 0, below, "{text} below");
                }
                assert!(match_all(&tree, &pattern, || true).is_none());
            }
        }
    }

    #[test]
    fn the_matcher_is_right_when_parents_are_skipped() {
        let tree = sample();
        let pattern = PathPattern::new("^/usr/bin/tool$").unwrap();
        let mut matcher = PathMatcher::new(&pattern);
        let tool = tree.lookup(b"/usr/bin/tool").unwrap();
        let hosts = tree.lookup(b"/etc/hosts").unwrap();
        assert!(!matcher.matches(&tree, hosts));
        assert!(matcher.matches(&tree, tool));
        assert!(!matcher.matches(&tree, hosts));
    }

    #[test]
    fn search_reads_each_name_once_however_deep() {
        // 50,000 directories deep: the search steps one DFA state per row.
        let deep = format!("{}file", "d/".repeat(50_000));
        let tree = tree_from(&[&[(deep.as_str(), Some(&b"x"[..]))]]);
        let mut view = TreeView::new();
        view.show_layer(&tree, 0, ViewMode::LayerChanges);
        assert_eq!(view.rows().len(), 50_001);
        let pattern = PathPattern::new("file$").unwrap();
        assert!(pattern.dfa.is_some());
        assert!(view.search(&tree, &pattern, true));
        assert_eq!(view.cursor(), 50_000);
        assert_eq!(view.count_matches(&tree, &pattern), 1);
        assert_eq!(
            view.count_matches(&tree, &PathPattern::new("^/d/d/d$").unwrap()),
            1
        );
    }

    #[test]
    fn guides_mark_later_siblings() {
        let tree = sample();
        let mut view = TreeView::new();
        view.show_layer(&tree, 0, ViewMode::LayerChanges);
        let rows = view.rows();
        // etc, hosts, passwd, tmp, cache.bin, usr, bin, tool
        let last: Vec<bool> = rows.iter().map(|r| r.last).collect();
        assert_eq!(last, [false, false, true, false, true, true, true, true]);
        // hosts sits under etc, which has later siblings: bit 0 set.
        assert_eq!(rows[1].guides, 1);
        // tool sits under usr (last) and bin (last): no guides.
        assert_eq!(rows[7].guides, 0);
    }

    #[test]
    fn reveal_expands_ancestors_and_scrolling_clamps() {
        let tree = sample();
        let mut view = TreeView::new();
        view.show_layer(&tree, 1, ViewMode::LayerChanges);
        view.toggle_collapse_all(&tree);
        let tool = tree.lookup(b"/usr/bin/tool").unwrap();
        assert!(view.reveal(&tree, tool));
        assert_eq!(view.selected().unwrap().node, tool);
        view.move_by(-100, 3);
        assert_eq!((view.cursor(), view.offset()), (0, 0));
        view.move_by(100, 3);
        assert_eq!(view.cursor(), view.rows().len() - 1);
        assert_eq!(view.offset(), view.rows().len() - 3);
        view.scroll_by(-1, 3);
        assert_eq!(view.offset(), view.rows().len() - 4);
        assert_eq!(view.cursor(), view.rows().len() - 2);
        // Absent at layer 0.
        view.show_layer(&tree, 0, ViewMode::LayerChanges);
        assert!(!view.reveal(&tree, tree.lookup(b"/app/main.py").unwrap()));
    }
}
