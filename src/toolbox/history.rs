//! `layerscope history IMAGE`: one row per build step, like `docker history`: newest first,
//! CREATED relative to now, CREATED BY cut to 45 characters unless `--no-trunc`, SIZE and
//! COMMENT. Steps that changed metadata only (ENV, CMD, …) show `0B`, as Docker does, and are
//! marked `meta` in the LAYER column.
//!
//! SIZE is the layer's **compressed** blob size from the manifest, which needs no download.
//! `--uncompressed` pulls every layer and shows the bytes of its regular files instead (close
//! to the unpacked size Docker shows).

use std::time::SystemTime;

use clap::Args;
use serde::Serialize;

use super::{docker_size, load_image, one_line, parse_image, stream_json_stdout, stream_stdout};
use crate::digest::Digest;
use crate::error::{exit_code, Error};
use crate::image::{clean_created_by, ImageInfo, Platform};
use crate::registry::RegistryClient;
use crate::tree::FileTree;

/// Width of CREATED BY in the table unless `--no-trunc` (as `docker history`).
pub const CREATED_BY_WIDTH: usize = 45;

/// Arguments of `layerscope history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Do not cut CREATED BY.
    #[arg(long)]
    pub no_trunc: bool,

    /// List the oldest step first (Docker lists the newest first).
    #[arg(long)]
    pub oldest_first: bool,

    /// Show each layer's uncompressed size (regular-file bytes); downloads every layer.
    #[arg(long)]
    pub uncompressed: bool,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,

    /// Platform to choose from a multi-platform image: OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

impl HistoryArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.image)?.registry])
    }
}

/// Which size the SIZE column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeKind {
    /// The blob size from the manifest.
    Compressed,
    /// Σ regular-file bytes of the layer, after downloading it.
    Uncompressed,
}

impl SizeKind {
    fn as_str(self) -> &'static str {
        match self {
            SizeKind::Compressed => "compressed",
            SizeKind::Uncompressed => "uncompressed",
        }
    }
}

/// The layer a step made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLayer {
    /// Its position, base first.
    pub index: usize,
    /// Its blob digest.
    pub digest: Digest,
    /// Its blob size.
    pub compressed_size: u64,
    /// Its regular-file bytes, when the layer was downloaded.
    pub size: Option<u64>,
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its position in the history, oldest first.
    pub index: usize,
    /// When it ran (RFC 3339), as the config says.
    pub created: Option<String>,
    /// The command, as the config says.
    pub created_by: String,
    /// The comment (BuildKit writes `buildkit.dockerfile.v0`).
    pub comment: Option<String>,
    /// What the config says of it.
    pub empty_layer: bool,
    /// The layer it made; `None` for a metadata-only step.
    pub layer: Option<StepLayer>,
}

impl Step {
    /// The size shown for the step: 0 for metadata-only steps.
    pub fn size(&self, kind: SizeKind) -> u64 {
        match (&self.layer, kind) {
            (None, _) => 0,
            (Some(l), SizeKind::Compressed) => l.compressed_size,
            (Some(l), SizeKind::Uncompressed) => l.size.unwrap_or(l.compressed_size),
        }
    }
}

/// The steps of an image, oldest first, with the layers they made; `tree` (all layers loaded)
/// supplies uncompressed sizes.
pub fn steps(info: &ImageInfo, tree: Option<&FileTree>) -> Vec<Step> {
    info.history
        .iter()
        .enumerate()
        .map(|(index, step)| Step {
            index,
            created: step.entry.created.clone(),
            created_by: step.entry.created_by.clone().unwrap_or_default(),
            comment: step.entry.comment.clone().filter(|c| !c.is_empty()),
            empty_layer: step.entry.empty_layer,
            layer: step
                .layer_index
                .and_then(|i| info.layers.get(i))
                .map(|l| StepLayer {
                    index: l.index,
                    digest: l.digest.clone(),
                    compressed_size: l.compressed_size,
                    size: tree
                        .filter(|t| l.index < t.layer_count())
                        .map(|t| t.layer_stats(l.index).size_bytes),
                }),
        })
        .collect()
}

/// Run `layerscope history`.
pub async fn run(client: &RegistryClient, args: &HistoryArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.image)?;
    let (info, rows, kind) = if args.uncompressed {
        let loaded = load_image(client, reference, args.platform.clone()).await?;
        let tree = loaded.tree.read().unwrap_or_else(|p| p.into_inner());
        let rows = steps(&loaded.info, Some(&tree));
        (loaded.info.as_ref().clone(), rows, SizeKind::Uncompressed)
    } else {
        let info = client.resolve(&reference, args.platform.as_ref()).await?;
        let rows = steps(&info, None);
        (info, rows, SizeKind::Compressed)
    };
    let mut rows = rows;
    if !args.oldest_first {
        rows.reverse();
    }
    // Printed as it is made: a long history is never held whole as text.
    if args.json {
        stream_json_stdout(&to_json(&info, &rows, kind))?;
    } else {
        let options = TextOptions {
            no_trunc: args.no_trunc,
            kind,
            now: SystemTime::now(),
        };
        stream_stdout(|out| write_text(out, &rows, &options))?;
    }
    Ok(exit_code::OK)
}

/// The steps newest first (Docker's order) or oldest first.
pub fn ordered(steps: &[Step], oldest_first: bool) -> Vec<Step> {
    let mut out = steps.to_vec();
    if !oldest_first {
        out.reverse();
    }
    out
}

/// How the table is drawn.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Show CREATED BY whole.
    pub no_trunc: bool,
    /// Which size SIZE holds.
    pub kind: SizeKind,
    /// "Now", for CREATED.
    pub now: SystemTime,
}

/// The cells of one step's row: LAYER, CREATED, CREATED BY, SIZE, COMMENT.
fn cells(s: &Step, options: &TextOptions) -> [String; 5] {
    let layer = s
        .layer
        .as_ref()
        .map_or_else(|| "meta".to_string(), |l| format!("#{}", l.index));
    let created = s
        .created
        .as_deref()
        .map(|c| {
            super::relative_time(c, options.now)
                .unwrap_or_else(|| crate::escape::escape_str(c).into_owned())
        })
        .unwrap_or_else(|| "-".to_string());
    let cleaned = clean_created_by(&s.created_by);
    let width = (!options.no_trunc).then_some(CREATED_BY_WIDTH);
    let created_by = one_line(&cleaned, width);
    let comment = s
        .comment
        .as_deref()
        .map(|c| one_line(c, None))
        .unwrap_or_default();
    [
        layer,
        created,
        created_by,
        docker_size(s.size(options.kind)),
        comment,
    ]
}

/// The `docker history`-style table, in the order given, with a legend line (see
/// [`write_text`]) as one string.
pub fn render_text(steps: &[Step], options: &TextOptions) -> String {
    let mut out = String::new();
    let _ = write_text(&mut out, steps, options);
    out
}

/// The `docker history`-style table, in the order given, with a legend line, written row by
/// row: one pass measures the columns, a second writes the rows.
pub fn write_text(
    out: &mut dyn std::fmt::Write,
    steps: &[Step],
    options: &TextOptions,
) -> std::fmt::Result {
    let headers = ["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"];
    let mut widths = headers.map(|h| h.chars().count());
    for step in steps {
        for (w, cell) in widths.iter_mut().zip(cells(step, options)) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                text.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 3));
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(headers))?;
    for step in steps {
        let row = cells(step, options);
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        ];
        writeln!(out, "{}", line(cells))?;
    }
    let layers = steps.iter().filter(|s| s.layer.is_some()).count();
    let size_words = match options.kind {
        SizeKind::Compressed => "SIZE is the compressed blob size from the manifest",
        SizeKind::Uncompressed => "SIZE is the uncompressed regular-file bytes of the layer",
    };
    writeln!(
        out,
        "{} steps: {layers} with a layer, {} metadata-only (meta, 0B); {size_words}",
        steps.len(),
        steps.len() - layers
    )
}

/// `history --json`: `reference`, `digest`, `manifestDigest`, `sizes` (`compressed` or
/// `uncompressed`) and `steps` in the order shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryJson {
    /// The reference in full.
    pub reference: String,
    /// The digest pulled (the index's for a multi-platform image).
    pub digest: String,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// Which size `sizeBytes` means.
    pub sizes: &'static str,
    /// The steps.
    pub steps: Vec<StepJson>,
}

/// One step: `index` (oldest first), `layerIndex` and `layerDigest` (null for metadata-only
/// steps), `created`, `createdBy` (as the config has it), `comment`, `emptyLayer`,
/// `metadataOnly`, `compressedSizeBytes` and, with `--uncompressed`, `sizeBytes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepJson {
    /// Position in the history, oldest first.
    pub index: usize,
    /// The layer it made.
    pub layer_index: Option<usize>,
    /// That layer's digest.
    pub layer_digest: Option<String>,
    /// When it ran.
    pub created: Option<String>,
    /// The command.
    pub created_by: String,
    /// The comment.
    pub comment: Option<String>,
    /// What the config says.
    pub empty_layer: bool,
    /// No layer: a metadata-only step.
    pub metadata_only: bool,
    /// The layer's blob size (0 for metadata-only steps).
    pub compressed_size_bytes: u64,
    /// The layer's regular-file bytes, when downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// The steps as JSON (see [`HistoryJson`]).
pub fn to_json(info: &ImageInfo, steps: &[Step], kind: SizeKind) -> HistoryJson {
    HistoryJson {
        reference: info.reference.clone(),
        digest: info.digest.to_string(),
        manifest_digest: info.manifest_digest.to_string(),
        sizes: kind.as_str(),
        steps: steps
            .iter()
            .map(|s| StepJson {
                index: s.index,
                layer_index: s.layer.as_ref().map(|l| l.index),
                layer_digest: s.layer.as_ref().map(|l| l.digest.to_string()),
                created: s.created.clone(),
                created_by: s.created_by.clone(),
                comment: s.comment.clone(),
                empty_layer: s.empty_layer,
                metadata_only: s.layer.is_none(),
                compressed_size_bytes: s.layer.as_ref().map_or(0, |l| l.compressed_size),
                size_bytes: match kind {
                    SizeKind::Uncompressed => Some(s.size(kind)),
                    SizeKind::Compressed => None,
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn step(index: usize, created_by: &str, layer: Option<(usize, u64)>) -> Step {
        Step {
            index,
            created: Some("2024-01-01T00:00:00Z".to_string()),
            created_by: created_by.to_string(),
            comment: None,
            empty_layer: layer.is_none(),
            layer: layer.map(|(i, size)| StepLayer {
                index: i,
                digest: Digest::sha256_of(&[i as u8]),
                compressed_size: size,
                size: None,
            }),
        }
    }

    #[test]
    fn newest_first_with_metadata_steps_marked() {
        let steps = vec![
            step(0, "/bin/sh -c #(nop) ADD file:abc in /", Some((0, 1520))),
            step(1, "/bin/sh -c #(nop)  ENV A=1", None),
            step(
                2,
                "/bin/sh -c apt-get update && apt-get install -y a-very-long-package-name",
                Some((1, 15_240)),
            ),
        ];
        let now = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + 3 * 86_400);
        let options = TextOptions {
            no_trunc: false,
            kind: SizeKind::Compressed,
            now,
        };
        let text = render_text(&ordered(&steps, false), &options);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("LAYER   CREATED      CREATED BY"),
            "{text}"
        );
        assert!(
            lines[1]
                .starts_with("#1      3 days ago   RUN apt-get update && apt-get install -y a-v…"),
            "{text}"
        );
        assert!(lines[1].ends_with("15.2kB"), "{text}");
        assert!(
            lines[2].starts_with("meta    3 days ago   ENV A=1"),
            "{text}"
        );
        assert!(lines[2].ends_with("0B"), "{text}");
        assert!(lines[3].starts_with("#0 "), "{text}");
        assert!(
            lines[4].starts_with("3 steps: 2 with a layer, 1 metadata-only"),
            "{text}"
        );
        let whole = render_text(
            &ordered(&steps, true),
            &TextOptions {
                no_trunc: true,
                ..options
            },
        );
        assert!(whole.contains("a-very-long-package-name"), "{whole}");
        assert!(
            whole.lines().nth(1).is_some_and(|l| l.starts_with("#0 ")),
            "{whole}"
        );
    }
}
