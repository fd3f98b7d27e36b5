//! `layerscope export IMAGE [PATH…] [--layer N] [--changes] -o OUT`: the filesystem as of the
//! last layer (or layer N), or with `--changes` only what layer N changed, as a tar or
//! extracted into a directory, as `crane export` and `docker export` give a root filesystem.
//!
//! OUT is `-` (a tar on standard output, which must not be a terminal), an existing directory
//! or a name ending in `/` (extracted there, see [`super::dir_writer`]), or else a tar file
//! (written beside, placed once complete; an existing file is replaced only with `--force`).
//!
//! Streamed: each layer blob that holds a file of the output is read once, front to back;
//! only the model and one piece of the file being copied are in memory. Every file is checked
//! against the content hash recorded while indexing; a mismatch stops the export with exit
//! code 2, leaving the tar on standard output cut short inside that file (never complete), no
//! tar file, and no file of that name in a directory.
//!
//! `--changes` writes what the layer itself holds: its entries (the last of each path), hard
//! links as links (in a tar; resolved to bytes in a directory, which has no lower layers), and
//! its whiteouts and opaque markers as the `.wh.` entries they are, so the tar is a layer again.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use crate::error::{exit_code, Error};
use crate::image::{LayerInfo, Platform};
use crate::layer::{index_layer, LayerIndex};
use crate::pipeline::Loaded;
use crate::source::Source;
use crate::tree::FileTree;

use super::plan::{parse_filter, plan, Links, Mode, Plan, Skipped};
use super::save::{check_new_file, into_new_file};
use super::tar_writer::TarWriter;
use super::write::{on_blocking_thread, write_plan, Blobs, SourceBlobs, Written};
use super::{pick_layer, UnpackError};

/// Arguments of `layerscope export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, or `docker://NAME`,
    /// `docker-archive:PATH`, `oci:DIR[:TAG]`, ….
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Only these paths of the image and what is below them (with their parent
    /// directories); default: everything. A symbolic link is exported as the link.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,

    /// The filesystem as of layer N (0 is the base layer; default: the last layer).
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,

    /// Only what the layer changed: its own entries, with its whiteouts and opaque markers
    /// kept as `.wh.` entries (the output is a layer again).
    #[arg(long)]
    pub changes: bool,

    /// Where to write: a tar file, `-` for standard output, or a directory to extract into
    /// (an existing one, or a name ending in `/`).
    #[arg(short, long, value_name = "OUT")]
    pub output: String,

    /// Replace an existing tar file; in a directory, replace files and links that are in the
    /// way (never a directory).
    #[arg(long)]
    pub force: bool,

    /// Platform to choose from a multi-platform image: OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Neither read nor write the cache of blobs and layer indexes.
    #[arg(long)]
    pub no_cache: bool,

    /// No progress and no notes on stderr (errors still are).
    #[arg(short, long)]
    pub quiet: bool,
}

/// Where an export goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A tar on standard output.
    Stdout,
    /// A tar file.
    TarFile(PathBuf),
    /// Extracted into a directory.
    Dir(PathBuf),
}

impl Target {
    /// Read `-o OUT`, refusing before any download what cannot work: a terminal on standard
    /// output, an existing tar file without `--force`.
    pub fn choose(output: &str, force: bool) -> Result<Target, Error> {
        if output == "-" {
            if io::stdout().is_terminal() {
                return Err(UnpackError::TerminalOutput {
                    what: "a tar archive",
                }
                .into());
            }
            return Ok(Target::Stdout);
        }
        let path = PathBuf::from(output);
        if output.ends_with('/') || path.is_dir() {
            return Ok(Target::Dir(path));
        }
        check_new_file(&path, force)?;
        Ok(Target::TarFile(path))
    }
}

impl ExportArgs {
    /// Refuse what can be refused before anything is downloaded: the output (see
    /// [`Target::choose`]) and PATHs with `..`.
    pub fn check(&self) -> Result<Target, Error> {
        for path in &self.paths {
            parse_filter(path)?;
        }
        Target::choose(&self.output, self.force)
    }
}

/// Run `layerscope export` on an image loaded from `source`, into `target`.
pub async fn run(
    source: Arc<Source>,
    loaded: Loaded,
    args: &ExportArgs,
    target: Target,
) -> Result<i32, Error> {
    let filters: Vec<Vec<u8>> = args
        .paths
        .iter()
        .map(|p| parse_filter(p))
        .collect::<Result<_, _>>()?;
    let layer_count = loaded
        .tree
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .layer_count();
    let layer = pick_layer(args.layer, layer_count)?;
    let mode = if args.changes {
        Mode::Changes
    } else {
        Mode::View
    };
    let links = match (&target, mode) {
        (Target::Dir(_), _) | (_, Mode::View) => Links::Resolved,
        _ => Links::AsWritten,
    };
    // The layer's own whiteouts and opaque markers: from the cache, else read again.
    let markers = match mode {
        Mode::Changes => Some(layer_index(&source, &loaded.info.layers, layer).await?),
        Mode::View => None,
    };
    let tree = loaded.tree.clone();
    let force = args.force;
    let summary_target = target.clone();
    let outcome = on_blocking_thread(source, loaded.info.layers.clone(), true, move |blobs| {
        let tree = tree.read().unwrap_or_else(|p| p.into_inner());
        let plan = plan(&tree, layer, mode, links, &filters, markers.as_ref())?;
        let written = write_to(&tree, &plan, blobs, &target, force)?;
        Ok((written, plan.skipped))
    })
    .await?;
    if !args.quiet {
        report(&outcome.0, &outcome.1);
        let written = outcome.0.written;
        let place = match &summary_target {
            Target::Stdout => None,
            Target::TarFile(path) => Some(format!("{} (tar)", path.display())),
            Target::Dir(path) => Some(format!(
                "{}/",
                path.display().to_string().trim_end_matches('/')
            )),
        };
        if let Some(place) = place {
            eprintln!(
                "layerscope: exported {} entries ({} files, {}) of layer {layer}{} to {place}",
                written.entries,
                written.files,
                bytesize::ByteSize(written.bytes).display().si(),
                if mode == Mode::Changes {
                    "'s changes"
                } else {
                    ""
                },
            );
        }
    }
    Ok(exit_code::OK)
}

/// What went to the output, beyond the files.
struct Outcome {
    written: Written,
    symlinks_out: u64,
}

/// The notes worth a line on stderr: what was left out or made harmless.
fn report(outcome: &Outcome, skipped: &Skipped) {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if skipped.refused_entries > 0 {
        let n = skipped.refused_entries;
        eprintln!(
            "layerscope: note: {n} entr{} of the layers left out: a `..` in the name, a \
             non-directory at the root, or a hard link to outside the image",
            if n == 1 { "y" } else { "ies" }
        );
    }
    if skipped.devices > 0 {
        let n = skipped.devices;
        eprintln!(
            "layerscope: note: {n} device file{} left out (layer indexes keep no device numbers)",
            plural(n)
        );
    }
    if skipped.dangling_links > 0 {
        let n = skipped.dangling_links;
        eprintln!(
            "layerscope: note: {n} hard link{} to no file left out",
            plural(n)
        );
    }
    if outcome.symlinks_out > 0 {
        let n = outcome.symlinks_out;
        eprintln!(
            "layerscope: note: {n} symbolic link{} point{} outside the directory (absolute or \
             with `..`): written as the image has them, never followed",
            plural(n),
            if n == 1 { "s" } else { "" }
        );
    }
}

/// Write `plan` into `target`.
fn write_to(
    tree: &FileTree,
    plan: &Plan,
    blobs: &mut SourceBlobs,
    target: &Target,
    force: bool,
) -> Result<Outcome, Error> {
    let cancel = blobs.cancel.clone();
    match target {
        Target::Stdout => {
            let stdout = io::stdout();
            let mut tar = TarWriter::new(BufWriter::new(stdout.lock()));
            let result = write_plan(
                tree,
                plan,
                blobs,
                &mut tar,
                &cancel,
                "the tar on standard output was cut short inside that file",
            )
            .and_then(|written| {
                tar.finish()
                    .and_then(|mut out| out.flush())
                    .map_err(|e| Error::io("writing to standard output", e))?;
                Ok(written)
            });
            match result {
                Ok(written) => Ok(Outcome {
                    written,
                    symlinks_out: 0,
                }),
                // A reader that stopped reading (`| head`) chose to; it is not a failure.
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
                    Ok(Outcome {
                        written: Written::default(),
                        symlinks_out: 0,
                    })
                }
                Err(e) => Err(e),
            }
        }
        Target::TarFile(path) => {
            let written = into_new_file(path, force, |file| {
                let mut tar = TarWriter::new(BufWriter::new(file));
                let written = write_plan(
                    tree,
                    plan,
                    blobs,
                    &mut tar,
                    &cancel,
                    "no tar file was written",
                )?;
                tar.finish()
                    .and_then(|mut out| out.flush())
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                Ok(written)
            })?;
            Ok(Outcome {
                written,
                symlinks_out: 0,
            })
        }
        Target::Dir(path) => write_dir(tree, plan, blobs, path, force),
    }
}

#[cfg(unix)]
fn write_dir(
    tree: &FileTree,
    plan: &Plan,
    blobs: &mut SourceBlobs,
    path: &Path,
    force: bool,
) -> Result<Outcome, Error> {
    let cancel = blobs.cancel.clone();
    let mut dir = super::dir_writer::DirWriter::open(path, force)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let written = write_plan(
        tree,
        plan,
        blobs,
        &mut dir,
        &cancel,
        "that file was not written",
    )?;
    dir.finish()
        .map_err(|e| Error::io(format!("setting directory modes in {}", path.display()), e))?;
    Ok(Outcome {
        written,
        symlinks_out: dir.symlinks_pointing_out(),
    })
}

#[cfg(not(unix))]
fn write_dir(
    _tree: &FileTree,
    _plan: &Plan,
    _blobs: &mut SourceBlobs,
    path: &Path,
    _force: bool,
) -> Result<Outcome, Error> {
    Err(UnpackError::Refused {
        path: path.display().to_string(),
        why: "extracting into a directory needs a Unix system; write a tar instead".to_string(),
    }
    .into())
}

/// The index of one layer, for its whiteouts and opaque markers (the model keeps only their
/// effect): from the cache when it holds it, else by reading the blob again.
async fn layer_index(
    source: &Arc<Source>,
    layers: &[LayerInfo],
    layer: usize,
) -> Result<LayerIndex, Error> {
    let info = layers
        .get(layer)
        .cloned()
        .ok_or_else(|| Error::Other(format!("the image has no layer {layer}")))?;
    if let Some(cache) = source.cache().cloned() {
        let diff_id = info.diff_id.clone();
        let cached = tokio::task::spawn_blocking(move || cache.load_index(&diff_id))
            .await
            .ok()
            .flatten();
        if let Some(index) = cached {
            return Ok(index);
        }
    }
    on_blocking_thread(source.clone(), layers.to_vec(), true, move |blobs| {
        let blob = blobs.open(layer)?;
        index_layer(blob, Some(&info.diff_id)).map_err(|source| Error::Layer {
            index: layer,
            digest: info.digest.clone(),
            source,
        })
    })
    .await
}
