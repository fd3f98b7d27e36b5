//! Output files: written under a temporary name beside the target and given the target's name
//! only once complete and verified, never replacing an existing file unless asked
//! ([`into_new_file`]); and the explorer's save key on top of it: one file's bytes, or a
//! directory as a tar, as of a layer ([`save`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::Error;
use crate::image::ImageInfo;
use crate::layer::extract::LayerCursor;
use crate::output_file;
use crate::source::Source;
use crate::toolbox::blob::place;
use crate::tree::{ContentLocation, EntryKind, FileTree, NodeId};

use super::plan::{plan, relative_path, Links, Mode};
use super::tar_writer::TarWriter;
use super::write::{classify, on_blocking_thread, write_plan, Blobs, SourceBlobs, Written};
use super::{shown, UnpackError};

/// A temporary file that is removed unless it was given its name.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a rename the name is gone already; after a hard link it is removed here.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Refuse `path` before any work when it exists (without `force`) or is a directory.
pub fn check_new_file(path: &Path, force: bool) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(UnpackError::Refused {
            path: path.display().to_string(),
            why: "is a directory; name a file".to_string(),
        }
        .into()),
        Ok(_) if !force => Err(UnpackError::OutputExists {
            path: path.to_path_buf(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Run `write` on a new temporary file beside `path`, then give it `path`'s name: replacing
/// what is there only with `force`, and otherwise failing if the name was taken meanwhile. On
/// any failure nothing is left behind.
pub fn into_new_file<T>(
    path: &Path,
    force: bool,
    write: impl FnOnce(&mut File) -> Result<T, Error>,
) -> Result<T, Error> {
    let temp = TempFile(output_file::temp_beside(path));
    let write_error = |e| Error::io(format!("writing {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.0)
        .map_err(write_error)?;
    let result = write(&mut file)?;
    file.flush().map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    place(&temp.0, path, force)?;
    Ok(result)
}

/// Copy the file whose bytes are at `location` into `out`, verified as it streams (the last
/// piece only once the whole file matched its indexed hash). `path` names it in errors.
pub fn copy_file(
    blobs: &mut dyn Blobs,
    location: ContentLocation,
    path: &[u8],
    out: &mut dyn Write,
    consequence: &'static str,
    cancel: &tokio::sync::watch::Receiver<bool>,
) -> Result<u64, Error> {
    let blob = blobs.open(location.layer)?;
    let layer_error =
        |e: crate::layer::LayerError| Error::Other(format!("layer {}: {e}", location.layer));
    let mut cursor = LayerCursor::new(blob).map_err(layer_error)?;
    let mut reader = cursor.file(location.span).map_err(layer_error)?;
    io::copy(&mut reader, out).map_err(|e| classify(e, path, location.layer, consequence, cancel))
}

/// What the explorer's save wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// Where.
    pub path: PathBuf,
    /// Regular files written (1 for a single file).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether a directory was saved as a tar.
    pub tar: bool,
}

/// Save `node` as it is at `layer` to `dest`: a regular file (or a hard link) as its bytes, a
/// directory as a tar of everything in it. `overwrite` replaces an existing `dest`.
pub async fn save(
    source: Arc<Source>,
    info: Arc<ImageInfo>,
    tree: Arc<RwLock<FileTree>>,
    node: NodeId,
    layer: usize,
    dest: PathBuf,
    overwrite: bool,
) -> Result<Saved, Error> {
    check_new_file(&dest, overwrite)?;
    on_blocking_thread(source, info.layers.clone(), false, move |blobs| {
        let tree = tree.read().unwrap_or_else(|p| p.into_inner());
        save_blocking(&tree, blobs, node, layer, &dest, overwrite)
    })
    .await
}

fn save_blocking(
    tree: &FileTree,
    blobs: &mut SourceBlobs,
    node: NodeId,
    layer: usize,
    dest: &Path,
    overwrite: bool,
) -> Result<Saved, Error> {
    let path = relative_path(tree, node);
    let Some(entry) = tree.entry_at(node, layer) else {
        return Err(super::find_at(tree, &path, layer)
            .err()
            .map_or_else(|| Error::Other("not there".to_string()), Error::from));
    };
    let cancel = blobs.cancel.clone();
    match entry.kind() {
        EntryKind::Dir => {
            let filters = [path.clone()];
            let plan = plan(tree, layer, Mode::View, Links::Resolved, &filters, None)?;
            let written = into_new_file(dest, overwrite, |file| {
                let mut tar = TarWriter::new(io::BufWriter::new(file));
                let written =
                    write_plan(tree, &plan, blobs, &mut tar, &cancel, "nothing was saved")?;
                tar.finish()
                    .and_then(|mut out| out.flush())
                    .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
                Ok::<Written, Error>(written)
            })?;
            Ok(Saved {
                path: dest.to_path_buf(),
                files: written.files,
                bytes: written.bytes,
                tar: true,
            })
        }
        EntryKind::File | EntryKind::Hardlink => {
            let location =
                tree.content_location(node, layer)
                    .ok_or_else(|| UnpackError::NoContent {
                        path: shown(&path),
                        what: "a hard link to a file that does not exist",
                    })?;
            let bytes = into_new_file(dest, overwrite, |file| {
                copy_file(blobs, location, &path, file, "nothing was saved", &cancel)
            })?;
            Ok(Saved {
                path: dest.to_path_buf(),
                files: 1,
                bytes,
                tar: false,
            })
        }
        _ => Err(UnpackError::NoContent {
            path: shown(&path),
            what: super::cat::kind_words(entry.kind()),
        }
        .into()),
    }
}
