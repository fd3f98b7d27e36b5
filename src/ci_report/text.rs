//! The parts of the plain-text CI report that go beyond dive's: what the rules left out and
//! the image against its baseline. Text from the image passes through [`crate::escape`].

use std::fmt::Write as _;

use bytesize::ByteSize;

use super::CiRun;
use crate::baseline::{BaselineComparison, BaselineSpec};
use crate::ci::Change;
use crate::compare::LayerMatch;
use crate::escape::Escaped;
use crate::image::{clean_created_by, ImageInfo, LayerInfo};

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

/// A signed byte difference for people: `+1.2 kB (+1200 bytes)`, `0 B`.
pub fn signed_size(delta: i128) -> String {
    if delta == 0 {
        return "no change".to_string();
    }
    let sign = if delta < 0 { "-" } else { "+" };
    let abs = u64::try_from(delta.unsigned_abs()).unwrap_or(u64::MAX);
    format!("{sign}{} ({sign}{abs} bytes)", size(abs))
}

/// A signed count difference: `+3`, `-1`, `no change`.
pub fn signed_count(delta: i128) -> String {
    if delta == 0 {
        "no change".to_string()
    } else {
        format!("{delta:+}")
    }
}

/// How many bytes the rules left out, in one sentence (empty when nothing was).
pub fn ignored_sentence(run: &CiRun<'_>) -> String {
    if run.ignore.is_empty() {
        return String::new();
    }
    let f = run.rule_figures;
    format!(
        "{} ({} bytes) in {} path{} left out of what the rules measure",
        size(f.left_out_bytes),
        f.left_out_bytes,
        f.left_out_paths,
        if f.left_out_paths == 1 { "" } else { "s" }
    )
}

/// The section on ignored paths and on the baseline, each present only when used; empty
/// when neither is.
pub fn render(run: &CiRun<'_>) -> String {
    let mut out = String::new();
    if !run.ignore.is_empty() {
        let f = run.rule_figures;
        let patterns: Vec<String> = run
            .ignore
            .patterns()
            .iter()
            .map(|p| Escaped(p).to_string())
            .collect();
        let _ = writeln!(out, "Ignored paths:       {}", patterns.join(", "));
        let _ = writeln!(out, "  {}", ignored_sentence(run));
        let _ = writeln!(
            out,
            "  rules see: efficiency {:.4} %, wasted bytes {} ({} bytes), user wasted percent {:.4} %",
            f.efficiency * 100.0,
            size(f.wasted_bytes),
            f.wasted_bytes,
            f.user_wasted_percent * 100.0
        );
        let _ = writeln!(out);
    }
    if let Some(b) = run.baseline {
        render_baseline(&mut out, b, run.info);
        let _ = writeln!(out);
    }
    out
}

fn render_baseline(out: &mut String, b: &BaselineComparison, info: &ImageInfo) {
    let from = match &b.baseline.spec {
        BaselineSpec::Report(path) => format!("report {}", Escaped(path)),
        BaselineSpec::Image(_) => "image".to_string(),
    };
    let _ = writeln!(
        out,
        "Baseline:            {} ({from})",
        Escaped(&b.baseline.reference)
    );
    let _ = writeln!(out, "  {:<14} {:>14} {:>14}  Change", "", "Before", "After");
    let bytes_row = |out: &mut String, label: &str, c: Change| {
        let _ = writeln!(
            out,
            "  {label:<14} {:>14} {:>14}  {}",
            size(c.before),
            size(c.after),
            signed_size(c.bytes())
        );
    };
    bytes_row(out, "Size", b.size);
    bytes_row(out, "Wasted bytes", b.wasted);
    if b.rule_wasted != b.wasted {
        bytes_row(out, "  as rules see", b.rule_wasted);
    }
    let maybe = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), size);
    let (before, after) = b.reclaimable;
    let change = match (before, after) {
        (Some(x), Some(y)) => signed_size(i128::from(y) - i128::from(x)),
        _ => "-".to_string(),
    };
    let _ = writeln!(
        out,
        "  {:<14} {:>14} {:>14}  {change}",
        "Reclaimable",
        maybe(before),
        maybe(after)
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>14} {:>14}  {}",
        "Files",
        b.file_count.before,
        b.file_count.after,
        signed_count(b.file_count.bytes())
    );
    let changed: Vec<_> = b.changed_layers().collect();
    if changed.is_empty() {
        let _ = writeln!(out, "  Layers: the same {}", b.layers.pairs.len());
        return;
    }
    let _ = writeln!(
        out,
        "  Layers: common base of {}; {} changed:",
        b.layers.common_prefix,
        changed.len()
    );
    for pair in changed {
        let _ = writeln!(
            out,
            "    #{:<3} {} → {}  {}",
            pair.index,
            layer_text(pair.a.as_ref(), b.baseline_step(pair.index)),
            layer_text(pair.b.as_ref(), image_step(info, pair.index)),
            status_words(pair.status)
        );
    }
}

/// A layer for the changed-layers list: short digest, compressed size and step.
pub fn layer_text(layer: Option<&LayerInfo>, step: Option<&str>) -> String {
    let Some(layer) = layer else {
        return "-".to_string();
    };
    let mut text = format!(
        "{}:{} ({})",
        layer.digest.algorithm().name(),
        layer.digest.short(),
        size(layer.compressed_size)
    );
    if let Some(step) = step {
        let _ = write!(text, " {}", Escaped(&short_step(step)));
    }
    text
}

/// The build step of the image's layer `index`, when history has one.
pub fn image_step(info: &ImageInfo, index: usize) -> Option<&str> {
    info.history
        .iter()
        .find(|s| s.layer_index == Some(index))
        .and_then(|s| s.entry.created_by.as_deref())
}

/// A build step on one line, at most 60 characters.
pub fn short_step(step: &str) -> String {
    const MAX: usize = 60;
    let cleaned = clean_created_by(step);
    let flat: String = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX {
        let cut: String = flat.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// How a changed layer position compares, in words.
pub fn status_words(status: LayerMatch) -> &'static str {
    match status {
        LayerMatch::Shared => "shared",
        LayerMatch::SameContent => "same content, compressed otherwise",
        LayerMatch::Different => "different",
        LayerMatch::OnlyInA => "only in the baseline",
        LayerMatch::OnlyInB => "new",
    }
}
