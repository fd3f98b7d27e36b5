//! The Markdown summary of a CI check: the verdict and each rule, what was left out, the
//! figures, the image against its baseline and the top inefficient files. GitHub shows it as
//! the job summary; `--ci-report markdown` writes it for any system or a pull-request comment.
//!
//! Text from the image (names, paths, build steps) only ever appears inside code spans, with
//! control characters shown visibly and `|` escaped in table cells, so it can neither format
//! the page nor break a table.

use std::fmt::Write as _;

use bytesize::ByteSize;

use super::text::{self, signed_count, signed_size};
use super::CiRun;
use crate::ci::{RuleResult, RuleStatus};
use crate::escape::{escape_bytes, escape_str};
use crate::report::TOP_INEFFICIENCIES;

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

fn percent(ratio: f64) -> String {
    format!("{:.4} %", ratio * 100.0)
}

/// Characters that can start markup in GitHub's Markdown: emphasis, code, links and
/// images, HTML and entities, headings, tables, strikethrough, mentions, math, and the `:`
/// and `.` of autolinks (`https://…`, `www.…`).
const MARKUP: &[char] = &[
    '\\', '`', '*', '_', '[', ']', '(', ')', '<', '>', '#', '!', '|', '~', '&', '@', '$', ':', '.',
];

/// Prose that holds text from the image (a finding's hint): control characters shown
/// visibly and every character that could start markup backslash-escaped, so nothing in it
/// becomes formatting, a link, a mention or a table border.
pub fn prose(text: &str) -> String {
    let shown = escape_str(text);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        if MARKUP.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` as an inline code span: control characters shown visibly, a fence longer than any
/// run of backticks inside.
pub fn code(text: &str) -> String {
    code_span(&escape_str(text))
}

/// [`code`] for a table cell: `|` escaped as tables need it.
pub fn cell_code(text: &str) -> String {
    code_span(&escape_str(text).replace('|', "\\|"))
}

/// Raw path bytes as a table-cell code span.
pub fn cell_path(path: &[u8]) -> String {
    code_span(&escape_bytes(path).replace('|', "\\|"))
}

fn code_span(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') || text.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn status_cell(r: &RuleResult) -> &'static str {
    match r.status {
        RuleStatus::Pass => "pass",
        RuleStatus::Fail => "**FAIL**",
        RuleStatus::Skip => "skipped",
    }
}

/// The whole summary.
pub fn render(run: &CiRun<'_>) -> String {
    let mut out = String::new();
    let info = run.info;
    let outcome = run.outcome;
    let _ = writeln!(
        out,
        "### layerscope: {} · {}\n",
        if outcome.pass { "PASS" } else { "FAIL" },
        code(&info.reference)
    );
    let compressed: u64 = info.layers.iter().map(|l| l.compressed_size).sum();
    let mut line = code(&info.digest.to_string());
    if let Some(platform) = &info.platform {
        let _ = write!(line, " · {}", code(&platform.to_string()));
    }
    let _ = writeln!(
        out,
        "{line} · {} layers · {} ({} compressed)\n",
        info.layers.len(),
        size(run.figures.size_bytes),
        size(compressed)
    );

    let _ = writeln!(out, "| Rule | Result | Value | Threshold |");
    let _ = writeln!(out, "|---|---|---|---|");
    for r in &outcome.rules {
        let value = r.value.map_or_else(|| "-".to_string(), |v| r.unit.show(v));
        let threshold = r
            .threshold
            .map_or_else(|| "disabled".to_string(), |t| r.unit.show(t));
        let _ = writeln!(
            out,
            "| `{}` | {} | {value} | {threshold} |",
            r.name,
            status_cell(r)
        );
    }
    let _ = writeln!(
        out,
        "\n**Result: {}** — {} failed, {} passed, {} skipped.\n",
        if outcome.pass { "PASS" } else { "FAIL" },
        outcome.count(RuleStatus::Fail),
        outcome.count(RuleStatus::Pass),
        outcome.count(RuleStatus::Skip)
    );
    if !run.ignore.is_empty() {
        let patterns: Vec<String> = run.ignore.patterns().iter().map(|p| code(p)).collect();
        let _ = writeln!(
            out,
            "Ignored paths {}: {}.\n",
            patterns.join(", "),
            text::ignored_sentence(run)
        );
    }

    write_figures(&mut out, run);
    write_baseline(&mut out, run);
    write_findings(&mut out, run);
    write_inefficiencies(&mut out, run);
    out
}

fn write_figures(out: &mut String, run: &CiRun<'_>) {
    let f = run.figures;
    let _ = writeln!(out, "#### Figures\n");
    let _ = writeln!(out, "| Figure | Value |");
    let _ = writeln!(out, "|---|---|");
    let rows = [
        (
            "Total size",
            format!("{} ({} bytes)", size(f.size_bytes), f.size_bytes),
        ),
        (
            "Files",
            format!("{} ({})", f.file_count, size(f.file_bytes)),
        ),
        ("Efficiency", percent(f.efficiency)),
        (
            "Wasted bytes",
            format!("{} ({} bytes)", size(f.wasted_bytes), f.wasted_bytes),
        ),
        ("User wasted percent", percent(f.user_wasted_percent)),
        (
            "Shadowed bytes",
            format!("{} ({} bytes)", size(f.shadowed_bytes), f.shadowed_bytes),
        ),
        (
            "Reclaimable bytes",
            format!(
                "{} ({} bytes)",
                size(run.reclaimable_bytes),
                run.reclaimable_bytes
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {value} |");
    }
    let _ = writeln!(out);
}

fn write_baseline(out: &mut String, run: &CiRun<'_>) {
    let Some(b) = run.baseline else {
        return;
    };
    let _ = writeln!(
        out,
        "#### Against the baseline {}\n",
        code(&b.baseline.reference)
    );
    let _ = writeln!(out, "| Figure | Before | After | Change |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for (name, c) in [("Size", b.size), ("Wasted bytes", b.wasted)] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            size(c.before),
            size(c.after),
            signed_size(c.bytes())
        );
    }
    if b.rule_wasted != b.wasted {
        let c = b.rule_wasted;
        let _ = writeln!(
            out,
            "| Wasted bytes, as the rules see them | {} | {} | {} |",
            size(c.before),
            size(c.after),
            signed_size(c.bytes())
        );
    }
    let maybe = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), size);
    let (before, after) = b.reclaimable;
    let change = match (before, after) {
        (Some(x), Some(y)) => signed_size(i128::from(y) - i128::from(x)),
        _ => "-".to_string(),
    };
    let _ = writeln!(
        out,
        "| Reclaimable | {} | {} | {change} |",
        maybe(before),
        maybe(after)
    );
    let _ = writeln!(
        out,
        "| Files | {} | {} | {} |\n",
        b.file_count.before,
        b.file_count.after,
        signed_count(b.file_count.bytes())
    );
    let changed: Vec<_> = b.changed_layers().collect();
    if changed.is_empty() {
        let _ = writeln!(out, "The same {} layers.\n", b.layers.pairs.len());
        return;
    }
    let _ = writeln!(
        out,
        "Common base of {} layers; {} changed:\n",
        b.layers.common_prefix,
        changed.len()
    );
    let _ = writeln!(out, "| # | Baseline | Now | How |");
    let _ = writeln!(out, "|---:|---|---|---|");
    for pair in changed {
        let before = text::layer_text(pair.a.as_ref(), b.baseline_step(pair.index));
        let after = text::layer_text(pair.b.as_ref(), text::image_step(run.info, pair.index));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            pair.index,
            cell_code(&before),
            cell_code(&after),
            text::status_words(pair.status)
        );
    }
    let _ = writeln!(out);
}

/// How many findings the summary lists.
pub const TOP_FINDINGS: usize = 10;

fn write_findings(out: &mut String, run: &CiRun<'_>) {
    let found = run.findings;
    let _ = writeln!(out, "#### Findings\n");
    if found.items.is_empty() {
        let _ = writeln!(out, "None: nothing to reclaim.\n");
        return;
    }
    let whole = if found.reclaimable_bytes == run.reclaimable_bytes {
        String::new()
    } else {
        format!(
            " without the ignored paths ({} in the whole image)",
            size(run.reclaimable_bytes)
        )
    };
    let _ = writeln!(
        out,
        "{} ({} bytes) reclaimable in {} finding{}{whole}.\n",
        size(found.reclaimable_bytes),
        found.reclaimable_bytes,
        found.items.len(),
        if found.items.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| Reclaimable | Kind | Files | What to change |");
    let _ = writeln!(out, "|---:|---|---:|---|");
    for f in found.items.iter().take(TOP_FINDINGS) {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} |",
            size(f.bytes),
            f.kind.label(),
            f.files,
            prose(&f.hint)
        );
    }
    if found.items.len() > TOP_FINDINGS {
        let _ = writeln!(
            out,
            "\n{} more not shown.",
            found.items.len() - TOP_FINDINGS
        );
    }
    let _ = writeln!(out);
}

fn write_inefficiencies(out: &mut String, run: &CiRun<'_>) {
    let list = &run.figures.inefficiencies;
    let _ = writeln!(out, "#### Top inefficient files\n");
    if list.is_empty() {
        let _ = writeln!(out, "None.");
        return;
    }
    let _ = writeln!(out, "| Count | Wasted | Path |");
    let _ = writeln!(out, "|---:|---:|---|");
    for i in list.iter().take(TOP_INEFFICIENCIES) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            i.count,
            size(i.wasted_bytes),
            cell_path(&run.tree.path(i.node))
        );
    }
    if list.len() > TOP_INEFFICIENCIES {
        let _ = writeln!(out, "\n{} more not shown.", list.len() - TOP_INEFFICIENCIES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_hold_backticks_pipes_and_controls() {
        assert_eq!(code("/a/b"), "`/a/b`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("x\u{1b}[2J\ny"), "`x\\x1b[2J\\x0ay`");
        assert_eq!(cell_code("a|b"), "`a\\|b`");
        assert_eq!(cell_path(b"/caf\xe9|x"), "`/caf\\xe9\\|x`");
    }

    #[test]
    fn prose_cannot_become_markup() {
        assert_eq!(prose("RUN rm -rf /tmp/*"), "RUN rm -rf /tmp/\\*");
        assert_eq!(
            prose("[x](javascript:y) @team #1 a|b"),
            "\\[x\\]\\(javascript\\:y\\) \\@team \\#1 a\\|b"
        );
        assert_eq!(prose("<img src=x>\n"), "\\<img src=x\\>\\\\x0a");
        assert_eq!(prose("see www.example.com"), "see www\\.example\\.com");
    }
}
