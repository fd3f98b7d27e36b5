//! What an export writes and in which order, decided from the model alone (no bytes read).
//!
//! Order: directories first, parents before children (node ids grow downwards, so ascending
//! ids are enough); then regular files layer by layer, each layer's in the order of their
//! bytes in its tar, so every blob is read once, front to back; then what needs no bytes
//! (symbolic links, named pipes, whiteout markers). Links come last so that nothing is ever
//! written through a link the export itself made.
//!
//! Paths that share bytes (a file and the hard links to it, as of the layer exported) form one
//! *content group*: the first is written as a file, the others as hard links to it. A hard
//! link whose file was overwritten or removed later still has its own bytes (those of the
//! layer that wrote the link); if no regular file of the output holds them, the first link is
//! written as a file. Device files are left out (the index keeps no device numbers) and
//! counted.

use std::collections::HashSet;

use crate::layer::path::{join_into, normalize_path};
use crate::layer::LayerIndex;
use crate::tree::{EntryKind, FileTree, NodeId, VersionState};

use super::UnpackError;

/// Which filesystem an export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything visible as of the layer.
    View,
    /// Only what the layer changed: its own entries (the last of each path), and its whiteouts
    /// and opaque markers as markers.
    Changes,
}

/// How hard links of the layer itself are written in [`Mode::Changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// As the layer holds them, naming their target (a tar that is a layer again).
    AsWritten,
    /// Resolved to bytes: linked to a file of the output, else written as a file (a
    /// directory, which has no lower layers to link into).
    Resolved,
}

/// A regular file's bytes to copy: from `layer`'s blob at `offset`, to `node`'s path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    /// The layer whose blob holds the bytes.
    pub layer: u32,
    /// Where they start in its uncompressed tar.
    pub offset: u64,
    /// 0 for a regular-file entry, 1 for a hard link (the file goes first in its group).
    rank: u8,
    /// The path written.
    pub node: NodeId,
}

/// Something written after every file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// A symbolic link.
    Symlink(NodeId),
    /// A named pipe.
    Fifo(NodeId),
    /// A hard link written as the layer holds it ([`Links::AsWritten`]).
    Hardlink(NodeId),
    /// A whiteout or opaque marker, by its full path (`a/.wh.b`, `a/.wh..wh..opq`).
    Marker(Vec<u8>),
}

/// Things an export leaves out, for its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Character and block devices.
    pub devices: u64,
    /// Hard links that name no file.
    pub dangling_links: u64,
    /// Entries the layers' indexes refused (a `..` component, a non-directory at the root, a
    /// hard link outside the image).
    pub refused_entries: u64,
}

/// What to write (see the module documentation).
#[derive(Debug)]
pub struct Plan {
    /// The layer exported.
    pub layer: usize,
    /// Its view or its changes.
    pub mode: Mode,
    /// Directories, parents first.
    pub dirs: Vec<NodeId>,
    /// Regular files, by layer then offset; equal (layer, offset) runs are content groups.
    pub content: Vec<Content>,
    /// Links, pipes and markers.
    pub tail: Vec<Tail>,
    /// What was left out.
    pub skipped: Skipped,
}

impl Plan {
    /// The content groups in order: each a run of paths sharing the same bytes, the one to
    /// write as a file first.
    pub fn groups(&self) -> impl Iterator<Item = &[Content]> + '_ {
        self.content
            .chunk_by(|a, b| a.layer == b.layer && a.offset == b.offset)
    }

    /// Layers whose blobs must be read, ascending.
    pub fn layers_to_read(&self) -> Vec<usize> {
        let mut layers: Vec<usize> = self.content.iter().map(|c| c.layer as usize).collect();
        layers.dedup();
        layers
    }

    /// Number of entries the plan writes.
    pub fn len(&self) -> usize {
        self.dirs.len() + self.content.len() + self.tail.len()
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A PATH argument in the image, normalised (`/etc/` = `etc`; the root is empty).
pub fn parse_filter(given: &str) -> Result<Vec<u8>, UnpackError> {
    normalize_path(given.as_bytes()).ok_or_else(|| UnpackError::BadPath {
        given: given.to_string(),
    })
}

/// The path of `node` as written in an export: relative, no leading slash.
pub fn relative_path(tree: &FileTree, node: NodeId) -> Vec<u8> {
    let mut path = tree.path(node);
    path.remove(0);
    path
}

/// The plan for `layer` of `tree`, limited to `filters` (normalised paths; every path when
/// empty). In [`Mode::View`] a filter must exist at `layer` and its parent directories are
/// written too; in [`Mode::Changes`] it must name a path of the image, and `markers` is the
/// layer's own index (for its whiteouts and opaque markers).
pub fn plan(
    tree: &FileTree,
    layer: usize,
    mode: Mode,
    links: Links,
    filters: &[Vec<u8>],
    markers: Option<&LayerIndex>,
) -> Result<Plan, UnpackError> {
    let count = tree.node_count();
    // 0: out, 1: a parent directory of a filter, 2: selected.
    let mut marks = vec![if filters.is_empty() { 2u8 } else { 0 }; count];
    for filter in filters {
        let node = match mode {
            Mode::View => super::find_at(tree, filter, layer)?,
            Mode::Changes => tree.lookup(filter).ok_or_else(|| UnpackError::NotFound {
                path: super::shown(filter),
                layer,
                later: None,
            })?,
        };
        marks[node.index()] = 2;
        let mut up = tree.parent(node);
        while let Some(parent) = up {
            if marks[parent.index()] == 0 {
                marks[parent.index()] = 1;
            }
            up = tree.parent(parent);
        }
    }
    let mut out = Plan {
        layer,
        mode,
        dirs: Vec::new(),
        content: Vec::new(),
        tail: Vec::new(),
        skipped: Skipped::default(),
    };
    for id in 1..count {
        let node = NodeId(id as u32);
        if marks[id] != 2 {
            if let Some(parent) = tree.parent(node) {
                if marks[parent.index()] == 2 {
                    marks[id] = 2;
                }
            }
        }
        let mark = marks[id];
        if mark == 0 {
            continue;
        }
        let entry = match mode {
            Mode::View => match tree.entry_at(node, layer) {
                Some(entry) => entry,
                None => continue,
            },
            Mode::Changes => match tree.version_at(node, layer) {
                Some(version) if version.layer == layer => match version.state {
                    VersionState::Written(entry) => entry,
                    // Implicit parents come back by themselves; removals are markers.
                    VersionState::ImplicitDir | VersionState::Removed => continue,
                },
                _ => continue,
            },
        };
        if mark == 1 {
            // A parent of a filter: the directory itself, not what else it holds.
            if mode == Mode::View && entry.kind() == EntryKind::Dir {
                out.dirs.push(node);
            }
            continue;
        }
        match entry.kind() {
            EntryKind::Dir => out.dirs.push(node),
            EntryKind::Symlink => out.tail.push(Tail::Symlink(node)),
            EntryKind::Fifo => out.tail.push(Tail::Fifo(node)),
            EntryKind::CharDevice | EntryKind::BlockDevice => out.skipped.devices += 1,
            EntryKind::Hardlink if mode == Mode::Changes && links == Links::AsWritten => {
                out.tail.push(Tail::Hardlink(node));
            }
            EntryKind::File | EntryKind::Hardlink => match tree.content_location(node, layer) {
                Some(location) => out.content.push(Content {
                    layer: location.layer as u32,
                    offset: location.span.data_offset,
                    rank: u8::from(entry.kind() != EntryKind::File),
                    node,
                }),
                None => out.skipped.dangling_links += 1,
            },
        }
    }
    out.content
        .sort_unstable_by_key(|c| (c.layer, c.offset, c.rank, c.node));
    if let (Mode::Changes, Some(index)) = (mode, markers) {
        out.tail
            .extend(markers_of(index, filters).into_iter().map(Tail::Marker));
    }
    let layers = match mode {
        Mode::View => 0..=layer,
        Mode::Changes => layer..=layer,
    };
    out.skipped.refused_entries = layers
        .filter(|&l| l < tree.layer_count())
        .map(|l| tree.layer_meta(l).skipped_entries)
        .sum();
    Ok(out)
}

/// The whiteout and opaque markers of a layer, as paths, limited to those at or under a filter.
fn markers_of(index: &LayerIndex, filters: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let wanted = |path: &[u8]| {
        filters.is_empty()
            || filters.iter().any(|f| {
                f.is_empty()
                    || path == f.as_slice()
                    || (path.starts_with(f) && path.get(f.len()) == Some(&b'/'))
            })
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut marker = Vec::new();
    for deleted in index.whiteouts() {
        if !wanted(deleted) {
            continue;
        }
        let (parent, name) = match deleted.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&deleted[..slash], &deleted[slash + 1..]),
            None => (&[][..], deleted),
        };
        join_into(parent, &[&b".wh."[..], name].concat(), &mut marker);
        if seen.insert(marker.clone()) {
            out.push(marker.clone());
        }
    }
    for dir in index.opaque_dirs() {
        if !wanted(dir) {
            continue;
        }
        join_into(dir, b".wh..wh..opq", &mut marker);
        if seen.insert(marker.clone()) {
            out.push(marker.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::layer::index_layer;

    /// A layer from (path, kind, content or link target); `W` entries are whiteouts of the
    /// path, `O` opaque markers of the directory.
    fn layer(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            let (name, kind, data): (String, char, &[u8]) = match kind {
                'W' => {
                    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
                    let marker = if dir.is_empty() {
                        format!(".wh.{file}")
                    } else {
                        format!("{dir}/.wh.{file}")
                    };
                    (marker, 'f', b"")
                }
                'O' => (format!("{path}/.wh..wh..opq"), 'f', b""),
                k => (path.to_string(), *k, *data),
            };
            match kind {
                'f' => {
                    header.set_size(data.len() as u64);
                    header.set_cksum();
                    builder.append_data(&mut header, name, data).unwrap();
                }
                'd' => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_cksum();
                    builder.append_data(&mut header, name, &b""[..]).unwrap();
                }
                'h' | 's' => {
                    header.set_entry_type(if kind == 'h' {
                        tar::EntryType::Link
                    } else {
                        tar::EntryType::Symlink
                    });
                    header.set_size(0);
                    let target = std::str::from_utf8(data).unwrap();
                    builder.append_link(&mut header, name, target).unwrap();
                }
                'c' | 'p' => {
                    header.set_entry_type(if kind == 'c' {
                        tar::EntryType::Char
                    } else {
                        tar::EntryType::Fifo
                    });
                    header.set_size(0);
                    header.set_cksum();
                    builder.append_data(&mut header, name, &b""[..]).unwrap();
                }
                other => panic!("unknown kind {other}"),
            }
        }
        builder.into_inner().unwrap()
    }

    fn tree_of(layers: &[Vec<u8>]) -> FileTree {
        let mut tree = FileTree::new();
        for tar in layers {
            tree.push_layer(index_layer(tar.as_slice(), None).unwrap());
        }
        tree
    }

    fn paths(tree: &FileTree, nodes: impl IntoIterator<Item = NodeId>) -> Vec<String> {
        nodes
            .into_iter()
            .map(|n| String::from_utf8(relative_path(tree, n)).unwrap())
            .collect()
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            layer(&[
                ("etc", 'd', b""),
                ("etc/passwd", 'f', b"root"),
                ("bin/tool", 'f', b"v1"),
                ("bin/tool-link", 'h', b"bin/tool"),
                ("cache/a", 'f', b"aaaa"),
                ("cache/b", 'f', b"bbbb"),
                ("dev/null", 'c', b""),
            ]),
            layer(&[
                ("bin/tool", 'f', b"version2"),
                ("bin/old", 'h', b"bin/tool-link"),
                ("etc/alias", 's', b"passwd"),
                ("cache", 'O', b""),
                ("cache/c", 'f', b"cc"),
                ("etc/passwd", 'W', b""),
                ("run/pipe", 'p', b""),
            ]),
        ]
    }

    #[test]
    fn the_view_writes_directories_then_files_by_layer_then_links() {
        let tree = tree_of(&sample());
        let plan = plan(&tree, 1, Mode::View, Links::Resolved, &[], None).unwrap();
        assert_eq!(
            paths(&tree, plan.dirs.iter().copied()),
            ["etc", "bin", "cache", "dev", "run"]
        );
        let groups: Vec<Vec<String>> = plan
            .groups()
            .map(|g| paths(&tree, g.iter().map(|c| c.node)))
            .collect();
        // Layer 0's tool bytes are kept only by the two links, the first written as a file;
        // layer 1 rewrote bin/tool.
        assert_eq!(
            groups,
            [
                vec!["bin/tool-link", "bin/old"],
                vec!["bin/tool"],
                vec!["cache/c"]
            ]
        );
        assert_eq!(plan.layers_to_read(), [0, 1]);
        assert_eq!(plan.tail.len(), 2);
        assert!(matches!(plan.tail[0], Tail::Symlink(_)));
        assert!(matches!(plan.tail[1], Tail::Fifo(_)));
        assert_eq!(plan.skipped.devices, 1);

        // As of layer 0: the file and its link share one group, the file first.
        let plan0 = plan_at(&tree, 0, &[]);
        let first: Vec<Vec<String>> = plan0
            .groups()
            .map(|g| paths(&tree, g.iter().map(|c| c.node)))
            .collect();
        assert!(first.contains(&vec!["bin/tool".to_string(), "bin/tool-link".to_string()]));
    }

    fn plan_at(tree: &FileTree, layer: usize, filters: &[&str]) -> Plan {
        let filters: Vec<Vec<u8>> = filters.iter().map(|f| parse_filter(f).unwrap()).collect();
        plan(tree, layer, Mode::View, Links::Resolved, &filters, None).unwrap()
    }

    #[test]
    fn filters_keep_their_subtree_and_parent_directories() {
        let tree = tree_of(&sample());
        let cache = plan_at(&tree, 1, &["/cache/"]);
        assert_eq!(paths(&tree, cache.dirs.iter().copied()), ["cache"]);
        assert_eq!(cache.content.len(), 1);
        let tool = plan_at(&tree, 0, &["bin/tool"]);
        assert_eq!(paths(&tree, tool.dirs.iter().copied()), ["bin"]);
        assert_eq!(
            paths(&tree, tool.content.iter().map(|c| c.node)),
            ["bin/tool"]
        );

        let missing = plan(
            &tree,
            1,
            Mode::View,
            Links::Resolved,
            &[b"etc/passwd".to_vec()],
            None,
        );
        let err = missing.unwrap_err().to_string();
        assert!(err.contains("/etc/passwd was removed by layer 1"), "{err}");
        assert!(parse_filter("a/../b").is_err());
    }

    #[test]
    fn changes_keep_the_layers_entries_and_markers() {
        let tars = sample();
        let index = index_layer(tars[1].as_slice(), None).unwrap();
        let tree = tree_of(&tars);
        let plan = plan(&tree, 1, Mode::Changes, Links::AsWritten, &[], Some(&index)).unwrap();
        assert!(plan.dirs.is_empty());
        assert_eq!(
            paths(&tree, plan.content.iter().map(|c| c.node)),
            ["bin/tool", "cache/c"]
        );
        let markers: Vec<&[u8]> = plan
            .tail
            .iter()
            .filter_map(|t| match t {
                Tail::Marker(m) => Some(m.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(markers, [&b"etc/.wh.passwd"[..], b"cache/.wh..wh..opq"]);
        assert!(plan.tail.iter().any(|t| matches!(t, Tail::Hardlink(_))));

        let only_cache = plan_filtered_changes(&tree, &index, "cache");
        assert_eq!(
            only_cache.tail,
            [Tail::Marker(b"cache/.wh..wh..opq".to_vec())]
        );
    }

    fn plan_filtered_changes(tree: &FileTree, index: &LayerIndex, filter: &str) -> Plan {
        let filters = [parse_filter(filter).unwrap()];
        plan(
            tree,
            1,
            Mode::Changes,
            Links::AsWritten,
            &filters,
            Some(index),
        )
        .unwrap()
    }
}
