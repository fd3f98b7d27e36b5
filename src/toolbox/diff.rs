//! `layerscope diff IMAGE_A IMAGE_B`: what changed between two images. Both are pulled at the
//! same time through the pipeline, then [`crate::compare::compare`] pairs their layers (shared
//! by digest, where they diverge) and walks their final filesystems (added, removed, modified
//! paths with sizes). Exit code 0 when the images are identical, 1 when they differ, 2 when
//! either cannot be loaded.

use std::fmt::Write as _;

use clap::Args;
use serde::Serialize;

use std::sync::Arc;

use crate::source::Source;

use super::{human_size, load_source, stream_json_stdout, stream_stdout, ToolboxError};
use crate::compare::{compare, Comparison, FileChange, Holds, LayerMatch};
use crate::error::{exit_code, Error};
use crate::escape::{escape_bytes, Escaped};
use crate::image::{ImageInfo, Platform};
use crate::layer::EntryKind;
use crate::tree::{display_path, ChangeKind, Entry, FileTree};

/// Arguments of `layerscope diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The image compared from: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE_A")]
    pub image_a: String,

    /// The image compared to.
    #[arg(value_name = "IMAGE_B")]
    pub image_b: String,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,

    /// Print the layers and the summary, not every changed path.
    #[arg(short, long)]
    pub summary: bool,

    /// Platform to choose from multi-platform images (both): OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Neither read nor write the cache of blobs and layer indexes.
    #[arg(long)]
    pub no_cache: bool,
}

/// Run `layerscope diff` on the images `a` and `b` (opened from any source).
pub async fn run(a: Arc<Source>, b: Arc<Source>, args: &DiffArgs) -> Result<i32, Error> {
    let (loaded_a, loaded_b) = tokio::join!(load_source(a), load_source(b));
    let side = |side: char, reference: &str, e: Error| ToolboxError::Load {
        side,
        reference: reference.to_string(),
        message: e.to_string(),
    };
    let loaded_a = loaded_a.map_err(|e| side('A', &args.image_a, e))?;
    let loaded_b = loaded_b.map_err(|e| side('B', &args.image_b, e))?;
    let tree_a = loaded_a.tree.read().unwrap_or_else(|p| p.into_inner());
    let tree_b = loaded_b.tree.read().unwrap_or_else(|p| p.into_inner());
    let comparison = compare(&loaded_a.info, &tree_a, &loaded_b.info, &tree_b);
    let sides = Sides {
        a: &loaded_a.info,
        b: &loaded_b.info,
        tree_a: &tree_a,
        tree_b: &tree_b,
    };
    // Both print as they go: a listing of every changed path is never held whole in memory.
    if args.json {
        stream_json_stdout(&to_json(&sides, &comparison))?;
    } else {
        stream_stdout(|out| write_text(out, &sides, &comparison, !args.summary))?;
    }
    Ok(if comparison.identical() {
        exit_code::OK
    } else {
        exit_code::FAILED_CHECK
    })
}

/// The word for an entry's type: `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo`.
pub fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Hardlink => "hardlink",
        EntryKind::CharDevice => "char",
        EntryKind::BlockDevice => "block",
        EntryKind::Fifo => "fifo",
    }
}

fn change_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified => "modified",
        ChangeKind::Unmodified => "unmodified",
    }
}

/// The one-line summary: counts and bytes of the path changes, and the layers shared.
pub fn summary_line(c: &Comparison) -> String {
    let s = &c.summary;
    let layers = &c.layers;
    let mut line = format!(
        "{} added ({}), {} removed ({}), {} modified ({} → {}); ",
        s.added,
        human_size(s.added_bytes),
        s.removed,
        human_size(s.removed_bytes),
        s.modified,
        human_size(s.modified_bytes_a),
        human_size(s.modified_bytes_b),
    );
    let _ = write!(
        line,
        "{} shared layer{} ({} compressed), common base of {}",
        layers.shared.len(),
        if layers.shared.len() == 1 { "" } else { "s" },
        human_size(layers.shared_bytes),
        layers.common_prefix
    );
    line
}

/// The two images compared and their trees (each holding all its layers).
#[derive(Clone, Copy)]
pub struct Sides<'a> {
    /// Image A.
    pub a: &'a ImageInfo,
    /// Image B.
    pub b: &'a ImageInfo,
    /// A's merged tree.
    pub tree_a: &'a FileTree,
    /// B's merged tree.
    pub tree_b: &'a FileTree,
}

fn image_line(label: char, info: &ImageInfo) -> String {
    let platform = info
        .platform
        .as_ref()
        .map_or_else(String::new, |p| format!(" ({})", Escaped(&p.to_string())));
    format!(
        "{label}: {}  {}{platform}",
        Escaped(&info.reference),
        info.digest
    )
}

fn short(info: Option<&crate::image::LayerInfo>) -> String {
    info.map_or_else(
        || "-".to_string(),
        |l| format!("{}:{}", l.digest.algorithm().name(), l.digest.short()),
    )
}

/// How a modified path differs, in a few words (`content`, `mode 644→755`, `type file→dir`).
fn describe_differences(change: &FileChange) -> String {
    let (Some(a), Some(b)) = (&change.a, &change.b) else {
        return String::new();
    };
    let d = change.differences;
    let mut parts = Vec::new();
    if d.kind {
        parts.push(format!(
            "type {}→{}",
            kind_name(a.kind()),
            kind_name(b.kind())
        ));
    }
    if d.content && !d.kind {
        parts.push("content".to_string());
    }
    if d.mode {
        parts.push(format!("mode {:o}→{:o}", a.mode(), b.mode()));
    }
    if d.uid {
        parts.push(format!("uid {}→{}", a.uid, b.uid));
    }
    if d.gid {
        parts.push(format!("gid {}→{}", a.gid, b.gid));
    }
    if d.link_target && !d.kind {
        let target = |e: &Entry| {
            e.link_target()
                .map(|t| escape_bytes(t).into_owned())
                .unwrap_or_default()
        };
        parts.push(format!("link {}→{}", target(a), target(b)));
    }
    parts.join(", ")
}

/// The text report (see [`write_text`]) as one string.
pub fn render_text(sides: &Sides<'_>, c: &Comparison, with_files: bool) -> String {
    let mut out = String::new();
    let _ = write_text(&mut out, sides, c, with_files);
    out
}

/// The text report: both images, the layer table, the config, every changed path (unless
/// `with_files` is false; a directory added or removed whole is one line with what it holds)
/// and the summary line. Text from the images is escaped field by field.
pub fn write_text(
    out: &mut dyn std::fmt::Write,
    sides: &Sides<'_>,
    c: &Comparison,
    with_files: bool,
) -> std::fmt::Result {
    let (a, b) = (sides.a, sides.b);
    writeln!(out, "{}", image_line('A', a))?;
    writeln!(out, "{}", image_line('B', b))?;
    let layers = &c.layers;
    writeln!(out)?;
    let divergence = match (layers.diverge_a, layers.diverge_b) {
        (None, None) => "the same layers".to_string(),
        (Some(x), Some(y)) => format!("they diverge at layer {x} of A and layer {y} of B"),
        (Some(x), None) => format!("A goes on from layer {x}, B ends there"),
        (None, Some(y)) => format!("B goes on from layer {y}, A ends there"),
    };
    writeln!(
        out,
        "Layers: A has {}, B has {}; common base of {}; {divergence}",
        a.layers.len(),
        b.layers.len(),
        layers.common_prefix
    )?;
    writeln!(
        out,
        "  {:>3}  {:<19}  {:<19}  {:<12}  SIZE (A / B)",
        "#", "A", "B", "STATUS"
    )?;
    for pair in &layers.pairs {
        let size = |l: Option<&crate::image::LayerInfo>| {
            l.map_or_else(|| "-".to_string(), |l| human_size(l.compressed_size))
        };
        let status = match pair.status {
            LayerMatch::OnlyInA => "only in A",
            LayerMatch::OnlyInB => "only in B",
            other => other.as_str(),
        };
        writeln!(
            out,
            "  {:>3}  {:<19}  {:<19}  {:<12}  {} / {}",
            pair.index,
            short(pair.a.as_ref()),
            short(pair.b.as_ref()),
            status,
            size(pair.a.as_ref()),
            size(pair.b.as_ref())
        )?;
    }
    let moved: Vec<String> = layers
        .shared
        .iter()
        .filter(|s| s.a_index != s.b_index)
        .map(|s| {
            format!(
                "{}:{} (A #{} = B #{})",
                s.digest.algorithm().name(),
                s.digest.short(),
                s.a_index,
                s.b_index
            )
        })
        .collect();
    if !moved.is_empty() {
        writeln!(out, "  also shared elsewhere: {}", moved.join(", "))?;
    }
    writeln!(
        out,
        "Config: {}",
        if c.same_config {
            "the same".to_string()
        } else {
            format!(
                "different ({} → {})",
                a.manifest.config.digest.short(),
                b.manifest.config.digest.short()
            )
        }
    )?;
    if with_files {
        writeln!(out)?;
        if c.files.is_empty() {
            writeln!(out, "Files: no differences")?;
        } else {
            let s = &c.summary;
            writeln!(
                out,
                "Files ({} changed; + only in B, - only in A, ~ modified; a directory only one \
                 image has is listed once, with what it holds):",
                s.added + s.removed + s.modified
            )?;
            for change in &c.files {
                // One path at a time, escaped: a newline in a name cannot forge a row.
                let path = change.path(sides.tree_a, sides.tree_b);
                let path = escape_bytes(&path);
                let line = match change.kind {
                    ChangeKind::Added => {
                        format!("+ {path}{}", entry_note(change.b.as_ref(), change.holds))
                    }
                    ChangeKind::Removed => {
                        format!("- {path}{}", entry_note(change.a.as_ref(), change.holds))
                    }
                    _ => {
                        let sizes = if is_file(change.a.as_ref()) || is_file(change.b.as_ref()) {
                            format!(
                                "{} → {}, ",
                                human_size(change.a_size()),
                                human_size(change.b_size())
                            )
                        } else {
                            String::new()
                        };
                        format!("~ {path}  {sizes}{}", describe_differences(change))
                    }
                };
                writeln!(out, "  {}", line.trim_end())?;
            }
        }
    }
    writeln!(out)?;
    let verdict = if c.identical() {
        "identical"
    } else {
        "different"
    };
    writeln!(out, "Summary: {}; {verdict}", summary_line(c))
}

fn is_file(entry: Option<&Entry>) -> bool {
    entry.is_some_and(|e| e.kind() == EntryKind::File)
}

/// What follows an added or removed path: `  1.5 kB` for a file, the type otherwise
/// (`  symlink → target`), and for a directory listed whole `/  dir, 3 paths, 1.2 kB`.
fn entry_note(entry: Option<&Entry>, holds: Option<Holds>) -> String {
    match (entry, holds) {
        (_, Some(h)) => format!(
            "/  dir, {} path{}, {}",
            h.paths,
            if h.paths == 1 { "" } else { "s" },
            human_size(h.bytes)
        ),
        (Some(e), None) if e.kind() == EntryKind::File => format!("  {}", human_size(e.size())),
        (Some(e), None) => match e.link_target() {
            Some(target) => format!("  {} → {}", kind_name(e.kind()), escape_bytes(target)),
            None => format!("  {}", kind_name(e.kind())),
        },
        (None, None) => String::new(),
    }
}

/// `diff --json`: `a`, `b`, `identical`, `sameConfig`, `layers`, `files`, `summary`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffJson<'a> {
    /// Image A.
    pub a: ImageJson,
    /// Image B.
    pub b: ImageJson,
    /// Same config and the same layers.
    pub identical: bool,
    /// Same config blob.
    pub same_config: bool,
    /// The layer lists side by side.
    pub layers: LayersJson,
    /// Changed paths in tree order, each made as it is written (see [`FilesJson`]).
    pub files: FilesJson<'a>,
    /// Counts and bytes.
    pub summary: SummaryJson,
}

/// The changed paths of a comparison, serialised one [`FileJson`] at a time: a path is built
/// only while it is written, so the listing never holds every path at once.
#[derive(Clone, Copy)]
pub struct FilesJson<'a> {
    sides: Sides<'a>,
    files: &'a [FileChange],
}

impl Serialize for FilesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.files.iter().map(|f| FileJson {
            path: display_path(&f.path(self.sides.tree_a, self.sides.tree_b)).into_owned(),
            change: change_name(f.kind),
            differences: f.differences.names(),
            a: entry_json(f.a.as_ref()),
            b: entry_json(f.b.as_ref()),
            holds: f.holds.map(|h| HoldsJson {
                paths: h.paths,
                size_bytes: h.bytes,
            }),
        }))
    }
}

/// One image of a comparison.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageJson {
    /// The reference in full.
    pub reference: String,
    /// The digest pulled.
    pub digest: String,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// The config digest.
    pub config_digest: String,
    /// The platform.
    pub platform: Option<String>,
    /// Number of layers.
    pub layer_count: usize,
}

/// The layer lists side by side.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayersJson {
    /// Leading layers with the same digest.
    pub common_prefix: usize,
    /// A's first layer after the common base, if any.
    pub diverge_a: Option<usize>,
    /// B's first layer after the common base, if any.
    pub diverge_b: Option<usize>,
    /// Compressed bytes of the shared blobs.
    pub shared_bytes: u64,
    /// Blobs in both images.
    pub shared: Vec<SharedJson>,
    /// One row per position.
    pub pairs: Vec<PairJson>,
}

/// A blob in both images.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedJson {
    /// Its digest.
    pub digest: String,
    /// Its position in A.
    pub a_index: usize,
    /// Its position in B.
    pub b_index: usize,
    /// Its size.
    pub compressed_size_bytes: u64,
}

/// The layers at one position.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairJson {
    /// The position.
    pub index: usize,
    /// `shared`, `same-content`, `different`, `only-a`, `only-b`.
    pub status: &'static str,
    /// A's layer.
    pub a: Option<LayerJson>,
    /// B's layer.
    pub b: Option<LayerJson>,
}

/// One layer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerJson {
    /// Blob digest.
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Media type.
    pub media_type: String,
    /// Blob size.
    pub compressed_size_bytes: u64,
}

/// One changed path.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileJson {
    /// `/a/b` (invalid UTF-8 as `\xNN`).
    pub path: String,
    /// `added`, `removed`, `modified`.
    pub change: &'static str,
    /// What differs, for modified paths: `type`, `content`, `mode`, `uid`, `gid`, `link`.
    pub differences: Vec<&'static str>,
    /// The path in A.
    pub a: Option<EntryJson>,
    /// The path in B.
    pub b: Option<EntryJson>,
    /// For a directory only one image has: what it holds (its contents are not listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<HoldsJson>,
}

/// What a directory added or removed whole holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldsJson {
    /// Paths below it.
    pub paths: u64,
    /// Regular-file bytes below it.
    pub size_bytes: u64,
}

/// A path as one image has it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryJson {
    /// `file`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Regular-file bytes (0 for other types).
    pub size_bytes: u64,
    /// Permission bits in octal.
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link target.
    pub link_target: Option<String>,
    /// sha256 of the content, for regular files.
    pub content_sha256: Option<String>,
}

/// Counts and bytes of the changed paths.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryJson {
    /// Paths only in B.
    pub added: u64,
    /// Paths only in A.
    pub removed: u64,
    /// Paths that differ.
    pub modified: u64,
    /// Regular-file bytes added.
    pub added_bytes: u64,
    /// Regular-file bytes removed.
    pub removed_bytes: u64,
    /// Regular-file bytes of modified paths in A.
    pub modified_bytes_a: u64,
    /// Regular-file bytes of modified paths in B.
    pub modified_bytes_b: u64,
    /// B's bytes minus A's, over the changed paths.
    pub net_bytes: i64,
}

fn entry_json(entry: Option<&Entry>) -> Option<EntryJson> {
    entry.map(|e| EntryJson {
        kind: kind_name(e.kind()),
        size_bytes: e.size(),
        mode: format!("{:o}", e.mode()),
        uid: e.uid,
        gid: e.gid,
        link_target: e.link_target().map(|t| display_path(t).into_owned()),
        content_sha256: e.content().map(|h| crate::digest::to_hex(&h)),
    })
}

fn layer_json(layer: Option<&crate::image::LayerInfo>) -> Option<LayerJson> {
    layer.map(|l| LayerJson {
        digest: l.digest.to_string(),
        diff_id: l.diff_id.to_string(),
        media_type: l.media_type.clone(),
        compressed_size_bytes: l.compressed_size,
    })
}

fn image_json(info: &ImageInfo) -> ImageJson {
    ImageJson {
        reference: info.reference.clone(),
        digest: info.digest.to_string(),
        manifest_digest: info.manifest_digest.to_string(),
        config_digest: info.manifest.config.digest.to_string(),
        platform: info.platform.as_ref().map(ToString::to_string),
        layer_count: info.layers.len(),
    }
}

/// The comparison as JSON (see [`DiffJson`]).
pub fn to_json<'a>(sides: &Sides<'a>, c: &'a Comparison) -> DiffJson<'a> {
    let (a, b) = (sides.a, sides.b);
    let layers = &c.layers;
    let s = &c.summary;
    DiffJson {
        a: image_json(a),
        b: image_json(b),
        identical: c.identical(),
        same_config: c.same_config,
        layers: LayersJson {
            common_prefix: layers.common_prefix,
            diverge_a: layers.diverge_a,
            diverge_b: layers.diverge_b,
            shared_bytes: layers.shared_bytes,
            shared: layers
                .shared
                .iter()
                .map(|sh| SharedJson {
                    digest: sh.digest.to_string(),
                    a_index: sh.a_index,
                    b_index: sh.b_index,
                    compressed_size_bytes: sh.compressed_size,
                })
                .collect(),
            pairs: layers
                .pairs
                .iter()
                .map(|p| PairJson {
                    index: p.index,
                    status: p.status.as_str(),
                    a: layer_json(p.a.as_ref()),
                    b: layer_json(p.b.as_ref()),
                })
                .collect(),
        },
        files: FilesJson {
            sides: *sides,
            files: &c.files,
        },
        summary: SummaryJson {
            added: s.added,
            removed: s.removed,
            modified: s.modified,
            added_bytes: s.added_bytes,
            removed_bytes: s.removed_bytes,
            modified_bytes_a: s.modified_bytes_a,
            modified_bytes_b: s.modified_bytes_b,
            net_bytes: i64::try_from(s.net_bytes()).unwrap_or(i64::MAX),
        },
    }
}
