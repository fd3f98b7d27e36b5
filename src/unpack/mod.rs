//! Taking files out of an image: `layerscope cat` (one file's bytes), `layerscope export` (the
//! filesystem as of a layer, or what one layer changed, as a tar or into a directory) and the
//! explorer's save key.
//!
//! Everything reads from the model the pipeline built and from the layer blobs, read again
//! through the image's source (the cache first): [`plan`] decides from the model what to write
//! and in which order; [`write`](mod@write) streams each blob needed once, front to back, copying the
//! bytes of the files it holds (checked against the content hashes recorded while indexing)
//! into a [`write::Sink`]: a tar stream ([`tar_writer`]) or a directory ([`dir_writer`]).
//! File contents are never held in memory beyond one piece of each.

pub mod cat;
#[cfg(unix)]
pub mod dir_writer;
mod error;
pub mod export;
pub mod plan;
pub mod save;
pub mod tar_writer;
pub mod write;

use crate::escape::escape_bytes;
use crate::layer::path::normalize_path;
use crate::tree::{EntryKind, FileTree, NodeId, VersionState};

pub use error::UnpackError;

/// Most symbolic links followed while resolving one path (as Linux allows).
const MAX_SYMLINKS: usize = 40;

/// A normalised image path as people read it: `/a/b`, escaped for a terminal.
pub fn shown(normalized: &[u8]) -> String {
    format!("/{}", escape_bytes(normalized))
}

/// `layer` when given (checked against the image), else the last layer.
pub fn pick_layer(layer: Option<usize>, layer_count: usize) -> Result<usize, UnpackError> {
    match layer {
        Some(n) if n < layer_count => Ok(n),
        Some(n) => Err(UnpackError::NoSuchLayer {
            layer: n,
            count: layer_count,
        }),
        None => layer_count
            .checked_sub(1)
            .ok_or(UnpackError::NoSuchLayer { layer: 0, count: 0 }),
    }
}

/// The node of the normalised path `path` if it exists as of `layer`, taken literally (a
/// symbolic link is the link); otherwise why not: never there, not yet there, or removed.
pub fn find_at(tree: &FileTree, path: &[u8], layer: usize) -> Result<NodeId, UnpackError> {
    let Some(node) = tree.lookup(path) else {
        return Err(UnpackError::NotFound {
            path: shown(path),
            layer,
            later: None,
        });
    };
    if tree.entry_at(node, layer).is_some() {
        return Ok(node);
    }
    if let Some(version) = tree.version_at(node, layer) {
        if version.state == VersionState::Removed {
            return Err(UnpackError::Removed {
                path: shown(path),
                layer,
                by: version.layer,
            });
        }
    }
    let later = tree
        .versions(node)
        .find(|v| v.layer > layer && v.state != VersionState::Removed)
        .map(|v| v.layer);
    Err(UnpackError::NotFound {
        path: shown(path),
        layer,
        later,
    })
}

/// Resolve `given` as a process in the container would at `layer`: symbolic links in the
/// path (and at its end) are followed, relative ones from their directory and absolute ones
/// from the image root; `..` never climbs above the root. Returns the node and its normalised
/// path.
pub fn resolve(
    tree: &FileTree,
    given: &str,
    layer: usize,
) -> Result<(NodeId, Vec<u8>), UnpackError> {
    let Some(start) = normalize_path(given.as_bytes()) else {
        // `..` is meaningful while resolving links, but a PATH argument names a place.
        return Err(UnpackError::BadPath {
            given: given.to_string(),
        });
    };
    let mut pending: Vec<Vec<u8>> = components_reversed(&start);
    let mut current: Vec<u8> = Vec::new();
    let mut node = tree.root();
    let mut followed = 0usize;
    while let Some(name) = pending.pop() {
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if let Some(parent) = tree.parent(node) {
                    node = parent;
                    let cut = current.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    current.truncate(cut);
                }
                continue;
            }
            _ => {}
        }
        let mut next = current.clone();
        if !next.is_empty() {
            next.push(b'/');
        }
        next.extend_from_slice(&name);
        let child = match find_at(tree, &next, layer) {
            Ok(child) => child,
            // Said of the whole path when the image ever had it, else of the missing part.
            Err(e) if followed == 0 => {
                return Err(match tree.lookup(&start) {
                    Some(_) => find_at(tree, &start, layer).err().unwrap_or(e),
                    None => e,
                })
            }
            Err(_) => {
                return Err(UnpackError::BrokenLink {
                    path: shown(&start),
                    why: format!(
                        "its symbolic links lead to {}, which does not exist at layer {layer}",
                        shown(&next)
                    ),
                })
            }
        };
        // `find_at` succeeded: the entry exists at `layer`.
        let Some(entry) = tree.entry_at(child, layer) else {
            continue;
        };
        if entry.kind() == EntryKind::Symlink {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(UnpackError::BrokenLink {
                    path: shown(&start),
                    why: "too many levels of symbolic links".to_string(),
                });
            }
            let target = entry.link_target().unwrap_or_default().to_vec();
            if target.first() == Some(&b'/') {
                node = tree.root();
                current.clear();
            }
            pending.extend(components_reversed(&target));
            continue;
        }
        if !pending.is_empty() && entry.kind() != EntryKind::Dir {
            return Err(UnpackError::BrokenLink {
                path: shown(&start),
                why: format!("{} is not a directory", shown(&next)),
            });
        }
        node = child;
        current = next;
    }
    Ok((node, current))
}

/// The components of a path, last first (a stack to pop from).
fn components_reversed(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::layer::index_layer;

    fn tree() -> FileTree {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, link: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            if link.is_empty() {
                header.set_cksum();
                builder.append_data(&mut header, name, data).unwrap();
            } else {
                builder.append_link(&mut header, name, link).unwrap();
            }
        };
        add("usr/lib/libc.so", tar::EntryType::Regular, "", b"elf");
        add("lib", tar::EntryType::Symlink, "usr/lib", b"");
        add(
            "usr/lib/current",
            tar::EntryType::Symlink,
            "/lib/libc.so",
            b"",
        );
        add(
            "usr/lib/up",
            tar::EntryType::Symlink,
            "../../../../usr/lib",
            b"",
        );
        add("loop", tar::EntryType::Symlink, "loop", b"");
        add("dangling", tar::EntryType::Symlink, "/nowhere", b"");
        let tar = builder.into_inner().unwrap();
        let mut tree = FileTree::new();
        tree.push_layer(index_layer(tar.as_slice(), None).unwrap());
        tree
    }

    #[test]
    fn paths_resolve_through_symbolic_links_inside_the_image() {
        let tree = tree();
        for path in [
            "/lib/libc.so",
            "usr/lib/current",
            "/usr/lib/up/libc.so",
            "/lib/current",
        ] {
            let (node, resolved) = resolve(&tree, path, 0).unwrap();
            assert_eq!(resolved, b"usr/lib/libc.so", "{path}");
            assert_eq!(tree.entry_at(node, 0).unwrap().size(), 3);
        }
        let err = resolve(&tree, "/loop", 0).unwrap_err().to_string();
        assert!(err.contains("too many levels"), "{err}");
        let err = resolve(&tree, "/dangling", 0).unwrap_err().to_string();
        assert!(err.contains("lead to /nowhere"), "{err}");
        let err = resolve(&tree, "/lib/libc.so/x", 0).unwrap_err().to_string();
        assert!(err.contains("/usr/lib/libc.so is not a directory"), "{err}");
        let err = resolve(&tree, "/lib/nothing", 0).unwrap_err().to_string();
        assert!(err.contains("lead to /usr/lib/nothing"), "{err}");
        let err = resolve(&tree, "/usr/nothing", 0).unwrap_err().to_string();
        assert!(err.contains("/usr/nothing: no such file"), "{err}");
        assert!(resolve(&tree, "../etc", 0).is_err());
    }

    #[test]
    fn layers_are_checked() {
        assert_eq!(pick_layer(None, 3).unwrap(), 2);
        assert_eq!(pick_layer(Some(0), 3).unwrap(), 0);
        let err = pick_layer(Some(3), 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "layer 3 does not exist: the image has 3 layers, 0 to 2"
        );
    }
}
