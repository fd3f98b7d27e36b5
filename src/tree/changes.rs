//! Change kinds between two views of the tree: added, modified, removed,
//! unmodified, with directories modified when anything below them changed.

use super::{Entry, FileTree, NodeId, NONE, REMOVED};

/// How a path differs between a base view and a top view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Absent in the base, present in the top.
    Added = 0,
    /// Present in both with a different type, content hash, mode, uid, gid or link target
    /// (mtime does not count); or a directory with a change anywhere below it.
    Modified = 1,
    /// Present in the base, absent in the top (whited out or replaced).
    Removed = 2,
    /// Present in both and the same.
    Unmodified = 3,
}

/// Whether two versions of a path differ in what counts as a change (not mtime, not offset).
fn differs(a: &Entry, b: &Entry) -> bool {
    a.kind() != b.kind()
        || a.payload != b.payload
        || a.mode() != b.mode()
        || a.uid != b.uid
        || a.gid != b.gid
}

/// The change from `before` to `after`, ignoring anything below; `None` when absent in both.
pub fn classify(before: Option<&Entry>, after: Option<&Entry>) -> Option<ChangeKind> {
    match (before, after) {
        (None, None) => None,
        (None, Some(_)) => Some(ChangeKind::Added),
        (Some(_), None) => Some(ChangeKind::Removed),
        (Some(a), Some(b)) if differs(a, b) => Some(ChangeKind::Modified),
        (Some(_), Some(_)) => Some(ChangeKind::Unmodified),
    }
}

impl FileTree {
    /// The change of every node from the view at `base` (`None`: the empty filesystem) to the
    /// view at `top`, indexed by [`NodeId::index`]; `None` where the node is absent in both.
    /// One pass over the nodes, then one bottom-up pass so that a directory with any change
    /// below it is [`ChangeKind::Modified`]. The root is included like any directory.
    ///
    /// `changes(Some(n - 1), n)` is what layer `n` did; `changes(Some(0), n)` aggregates
    /// layers 1..=n against the base layer.
    pub fn changes(&self, base: Option<usize>, top: usize) -> Vec<Option<ChangeKind>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for node in 0..self.nodes.len() as u32 {
            let top_version = self.visible_version(node, top);
            let kind = match base {
                Some(base) => {
                    let base_version = self.visible_version(node, base);
                    if base_version == top_version {
                        // The same version: unmodified when present, else absent in both.
                        let present = if base_version == NONE {
                            node == 0
                        } else {
                            self.versions[base_version as usize].state != REMOVED
                        };
                        present.then_some(ChangeKind::Unmodified)
                    } else {
                        classify(
                            self.record_entry(base_version, node),
                            self.record_entry(top_version, node),
                        )
                    }
                }
                None => self
                    .record_entry(top_version, node)
                    .map(|_| ChangeKind::Added),
            };
            out.push(kind);
        }
        // Children have higher ids than their parents: walking down the ids settles every
        // child before its parent is looked at.
        for node in (1..self.nodes.len()).rev() {
            if matches!(
                out[node],
                Some(ChangeKind::Added | ChangeKind::Modified | ChangeKind::Removed)
            ) {
                let parent = self.nodes[node].parent as usize;
                if out[parent] == Some(ChangeKind::Unmodified) {
                    out[parent] = Some(ChangeKind::Modified);
                }
            }
        }
        out
    }

    /// The change of one node between two views, without the "anything below" rule for
    /// directories (use [`Self::changes`] for that).
    pub fn change_of(&self, node: NodeId, base: Option<usize>, top: usize) -> Option<ChangeKind> {
        classify(
            base.and_then(|b| self.entry_at(node, b)),
            self.entry_at(node, top),
        )
    }
}
