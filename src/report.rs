//! Text views of an analysed image for people: the summary printed when there is no terminal to
//! explore in, and the CI report. Both read the same rows and figures as the JSON export.

use std::fmt::Write as _;

use bytesize::ByteSize;

use crate::analysis::Figures;
use crate::ci::CiOutcome;
use crate::escape::{escape_bytes, escape_str, Escaped};
use crate::findings::{step_line, Findings};
use crate::image::{clean_created_by, HistoryEntry, ImageInfo, LayerInfo};
use crate::tree::{FileTree, LayerStats};

/// How many inefficient files the text views list.
pub const TOP_INEFFICIENCIES: usize = 10;

/// How many findings the text summary lists, and how many paths of each.
pub const TOP_FINDINGS: usize = 5;
/// How many paths of each finding the text views list.
pub const FINDING_PATHS: usize = 3;
/// How many findings the CI report gives as reasons when a rule fails.
pub const CI_REASONS: usize = 3;

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

fn write_inefficiencies(out: &mut String, tree: &FileTree, figures: &Figures) {
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
            escape_bytes(&tree.path(i.node))
        );
    }
}

/// The largest `limit` findings, numbered: kind, size and files, the hint, the steps
/// involved (one line each) and the first `paths` paths. Text from the image is escaped.
pub fn write_findings(out: &mut String, findings: &Findings, limit: usize, paths: usize) {
    for (i, f) in findings.items.iter().take(limit).enumerate() {
        let files = if f.files == 1 {
            "1 file".to_string()
        } else {
            format!("{} files", f.files)
        };
        let number = format!("{}.", i + 1);
        let _ = writeln!(
            out,
            "  {number:<3} {}, {} in {files}",
            f.kind.label(),
            size(f.bytes)
        );
        let _ = writeln!(out, "      {}", escape_str(&f.hint));
        for (layer, step) in f.layers.iter().zip(&f.steps) {
            let _ = writeln!(out, "      layer {layer}: {}", escape_str(&step_line(step)));
        }
        for path in f.paths.iter().take(paths) {
            let _ = writeln!(out, "      {}", escape_bytes(path));
        }
        let more = f.files.saturating_sub(f.paths.len().min(paths) as u64);
        if more > 0 {
            let _ = writeln!(out, "      … {more} more");
        }
    }
}

/// The Findings section: the reclaimable total, then the largest findings.
fn write_findings_section(out: &mut String, findings: &Findings) {
    if findings.items.is_empty() {
        let _ = writeln!(out, "Findings: none (nothing to reclaim)");
        return;
    }
    let shown = findings.items.len().min(TOP_FINDINGS);
    let _ = writeln!(
        out,
        "Findings: {} reclaimable ({} bytes) in {} findings; the {shown} largest:",
        size(findings.reclaimable_bytes),
        findings.reclaimable_bytes,
        findings.items.len()
    );
    write_findings(out, findings, TOP_FINDINGS, FINDING_PATHS);
}

/// The summary printed without a terminal and without `--ci`/`--json`.
pub fn render_summary(
    info: &ImageInfo,
    tree: &FileTree,
    rows: &[LayerRow<'_>],
    figures: &Figures,
    findings: &Findings,
) -> String {
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
    write_inefficiencies(&mut out, tree, figures);
    let _ = writeln!(out);
    write_findings_section(&mut out, findings);
    out
}

/// The CI report: figures, the top inefficient files, when a rule fails the largest findings
/// as its reasons, `details` (what the rules left out and the baseline, see
/// [`crate::ci_report::text`]; may be empty) and each rule's verdict.
pub fn render_ci(
    info: &ImageInfo,
    tree: &FileTree,
    figures: &Figures,
    findings: &Findings,
    outcome: &CiOutcome,
    details: &str,
) -> String {
    let mut out = String::new();
    write_header(&mut out, info);
    let _ = writeln!(out);
    write_figures(&mut out, info, figures);
    let _ = writeln!(out);
    write_inefficiencies(&mut out, tree, figures);
    let _ = writeln!(out);
    if !outcome.pass && !findings.items.is_empty() {
        let shown = findings.items.len().min(CI_REASONS);
        let _ = writeln!(
            out,
            "Reasons (the {shown} largest of {} findings, {} reclaimable in all):",
            findings.items.len(),
            size(findings.reclaimable_bytes)
        );
        write_findings(&mut out, findings, CI_REASONS, 1);
        let _ = writeln!(out);
    }
    out.push_str(details);
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
