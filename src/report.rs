//! Text views of an analysed image for people: the summary printed when there is no terminal to
//! explore in, and the CI report. Both read the same rows and figures as the JSON export.

use std::fmt::Write as _;

use bytesize::ByteSize;

use crate::analysis::Figures;
use crate::ci::CiOutcome;
use crate::escape::{escape_bytes, escape_str, Escaped};
use crate::image::{clean_created_by, HistoryEntry, ImageInfo, LayerInfo};
use crate::tree::{FileTree, LayerStats};

/// How many inefficient files the text views list.
pub const TOP_INEFFICIENCIES: usize = 10;

/// One layer with its change statistics and the build step that made it.
#[derive(Debug, Clone, Copy)]
pub struct LayerRow<'a> {
    /// The layer as the manifest describes it.
    pub info: &'a LayerInfo,
    /// What the layer did, from the model.
    pub stats: &'a LayerStats,
    /// The history step mapped onto this layer, if history has one.
    pub step: Option<&'a HistoryEntry>,
}

/// Pair every layer with its statistics and history step.
pub fn layer_rows<'a>(info: &'a ImageInfo, tree: &'a FileTree) -> Vec<LayerRow<'a>> {
    info.layers
        .iter()
        .map(|layer| LayerRow {
            info: layer,
            stats: tree.layer_stats(layer.index),
            step: info
                .history
                .iter()
                .find(|s| s.layer_index == Some(layer.index))
                .map(|s| &s.entry),
        })
        .collect()
}

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

fn percent(ratio: f64) -> String {
    format!("{:.4} %", ratio * 100.0)
}

fn write_header(out: &mut String, info: &ImageInfo) {
    let _ = writeln!(out, "Image:      {}", Escaped(&info.reference));
    let _ = writeln!(out, "Digest:     {}", info.digest);
    if info.manifest_digest != info.digest {
        let _ = writeln!(out, "Manifest:   {}", info.manifest_digest);
    }
    if let Some(p) = &info.platform {
        let _ = writeln!(out, "Platform:   {}", Escaped(&p.to_string()));
    }
    let _ = writeln!(out, "Media type: {}", Escaped(&info.media_type));
}

fn write_figures(out: &mut String, info: &ImageInfo, figures: &Figures) {
    let compressed: u64 = info.layers.iter().map(|l| l.compressed_size).sum();
    let _ = writeln!(
        out,
        "Total size:          {} ({} compressed)",
        size(figures.size_bytes),
        size(compressed)
    );
    let _ = writeln!(
        out,
        "Files:               {} ({})",
        figures.file_count,
        size(figures.file_bytes)
    );
    let _ = writeln!(out, "Efficiency:          {}", percent(figures.efficiency));
    let _ = writeln!(
        out,
        "Wasted bytes:        {} ({} bytes)",
        size(figures.wasted_bytes),
        figures.wasted_bytes
    );
    let _ = writeln!(
        out,
        "User wasted percent: {}",
        percent(figures.user_wasted_percent)
    );
    let _ = writeln!(
        out,
        "Shadowed bytes:      {} ({} bytes, stored but not visible)",
        size(figures.shadowed_bytes),
        figures.shadowed_bytes
    );
}

fn write_inefficiencies(out: &mut String, figures: &Figures) {
    if figures.inefficiencies.is_empty() {
        let _ = writeln!(out, "Inefficient files: none");
        return;
    }
    let shown = figures.inefficiencies.len().min(TOP_INEFFICIENCIES);
    let _ = writeln!(
        out,
        "Inefficient files (top {shown} of {}):",
        figures.inefficiencies.len()
    );
    let _ = writeln!(out, "  {:>5}  {:>10}  Path", "Count", "Wasted");
    for i in figures.inefficiencies.iter().take(shown) {
        let _ = writeln!(
            out,
            "  {:>5}  {:>10}  {}",
            i.count,
            size(i.wasted_bytes),
            escape_bytes(&i.path)
        );
    }
}

/// The summary printed without a terminal and without `--ci`/`--json`.
pub fn render_summary(info: &ImageInfo, rows: &[LayerRow<'_>], figures: &Figures) -> String {
    let mut out = String::new();
    write_header(&mut out, info);
    let _ = writeln!(out);
    let _ = writeln!(out, "Layers ({}):", rows.len());
    let _ = writeln!(
        out,
        "  {:>3}  {:>10}  {:>10}  {:>7}  {:>8}  {:>7}  Command",
        "#", "Size", "Compressed", "Added", "Modified", "Removed"
    );
    for step in &info.history {
        match step.layer_index.and_then(|i| rows.get(i)) {
            Some(row) => {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:>10}  {:>10}  {:>7}  {:>8}  {:>7}  {}",
                    row.info.index,
                    size(row.stats.size_bytes),
                    size(row.info.compressed_size),
                    row.stats.added,
                    row.stats.modified,
                    row.stats.removed,
                    one_line(step.entry.created_by.as_deref())
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:>10}  {:>10}  {:>7}  {:>8}  {:>7}  {}",
                    "-",
                    "",
                    "",
                    "",
                    "",
                    "",
                    one_line(step.entry.created_by.as_deref())
                );
            }
        }
    }
    let _ = writeln!(out);
    write_figures(&mut out, info, figures);
    let _ = writeln!(out);
    write_inefficiencies(&mut out, figures);
    out
}

/// The CI report: figures, the top inefficient files and each rule's verdict.
pub fn render_ci(info: &ImageInfo, figures: &Figures, outcome: &CiOutcome) -> String {
    let mut out = String::new();
    write_header(&mut out, info);
    let _ = writeln!(out);
    write_figures(&mut out, info, figures);
    let _ = writeln!(out);
    write_inefficiencies(&mut out, figures);
    let _ = writeln!(out);
    out.push_str(&outcome.render());
    out
}

/// A build step on one line (control characters shown visibly), shortened for tables.
fn one_line(created_by: Option<&str>) -> String {
    const MAX: usize = 80;
    let cleaned = clean_created_by(created_by.unwrap_or(""));
    let flat: String = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = escape_str(&flat).into_owned();
    if flat.chars().count() > MAX {
        let cut: String = flat.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
