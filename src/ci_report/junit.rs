//! JUnit XML, the test-report format Jenkins, GitLab and Azure Pipelines read: one test suite
//! for the image, one test case per rule (a `failure` with value and threshold when it
//! failed, with the largest findings as its reasons; `skipped` when disabled), the image's
//! facts as `properties`, and the whole text report (figures, inefficient files, what was
//! left out, the baseline) and every finding in `system-out`.
//!
//! Every piece of text is escaped for XML (`&`, `<`, `>`, and quotes in attributes);
//! control characters, which XML 1.0 cannot hold, are shown visibly as `\xNN`.

use std::fmt::Write as _;

use bytesize::ByteSize;

use super::{text, CiRun};
use crate::ci::RuleStatus;
use crate::escape::{escape_bytes, escape_str, is_control};
use crate::report;

/// How many findings, and how many inefficient files, a failure lists as its reasons.
const REASONS: usize = 3;

/// `text` as XML character data, or as an attribute value with `attribute`.
pub fn xml_escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            // Attribute values normalise raw line breaks and tabs to spaces.
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            // Not allowed in XML 1.0 at all: show them as the text views do.
            c if is_control(c) || c == '\u{fffe}' || c == '\u{ffff}' => {
                let mut buf = [0u8; 4];
                let shown = escape_str(c.encode_utf8(&mut buf));
                if shown.chars().any(|s| s == c) {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                } else {
                    out.push_str(&shown);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn attr(text: &str) -> String {
    xml_escape(text, true)
}

/// The report.
pub fn render(run: &CiRun<'_>) -> String {
    let outcome = run.outcome;
    let info = run.info;
    let tests = outcome.rules.len();
    let failures = outcome.count(RuleStatus::Fail);
    let skipped = outcome.count(RuleStatus::Skip);
    let time = format!("{:.3}", run.elapsed.as_secs_f64());
    let timestamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // JUnit's schema writes local date-times without a zone; the value is UTC.
    let timestamp = timestamp.trim_end_matches('Z');

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"layerscope\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{timestamp}\">",
        attr(&format!("layerscope {}", info.reference))
    );
    out.push_str("    <properties>\n");
    let f = run.figures;
    let mut properties: Vec<(&str, String)> = vec![
        ("image", info.reference.clone()),
        ("digest", info.digest.to_string()),
        ("mediaType", info.media_type.clone()),
    ];
    if let Some(p) = &info.platform {
        properties.push(("platform", p.to_string()));
    }
    properties.extend([
        ("sizeBytes", f.size_bytes.to_string()),
        ("efficiency", f.efficiency.to_string()),
        ("wastedBytes", f.wasted_bytes.to_string()),
        ("userWastedPercent", f.user_wasted_percent.to_string()),
        ("shadowedBytes", f.shadowed_bytes.to_string()),
        ("fileCount", f.file_count.to_string()),
    ]);
    if !run.ignore.is_empty() {
        properties.push(("ignoredBytes", run.rule_figures.left_out_bytes.to_string()));
    }
    if let Some(b) = run.baseline {
        properties.push(("baseline", b.baseline.reference.clone()));
    }
    for (name, value) in properties {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            attr(&value)
        );
    }
    out.push_str("    </properties>\n");

    let classname = attr(&format!(
        "layerscope.{}",
        super::image_name(&info.reference)
    ));
    for rule in &outcome.rules {
        let open = format!(
            "    <testcase name=\"{}\" classname=\"{classname}\" time=\"0\"",
            rule.name
        );
        match rule.status {
            RuleStatus::Pass => {
                let _ = writeln!(out, "{open}/>");
            }
            RuleStatus::Skip => {
                let _ = writeln!(out, "{open}>");
                let _ = writeln!(
                    out,
                    "      <skipped message=\"{}\"/>",
                    attr(&rule.explain())
                );
                out.push_str("    </testcase>\n");
            }
            RuleStatus::Fail => {
                let _ = writeln!(out, "{open}>");
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    attr(&rule.explain()),
                    rule.name,
                    xml_escape(&failure_body(run, rule.name, &rule.explain()), false)
                );
                out.push_str("    </testcase>\n");
            }
        }
    }
    let mut report = report::render_ci(
        info,
        run.tree,
        run.figures,
        run.findings,
        outcome,
        &text::render(run),
    );
    write_findings(&mut report, run);
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        xml_escape(&report, false)
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Every finding, with its hint, steps and first paths.
fn write_findings(out: &mut String, run: &CiRun<'_>) {
    let found = run.findings;
    let _ = writeln!(
        out,
        "\nFindings: {} reclaimable ({} bytes) in {}",
        ByteSize(found.reclaimable_bytes).display().si(),
        found.reclaimable_bytes,
        found.items.len()
    );
    for f in &found.items {
        let _ = writeln!(
            out,
            "  {} {} ({} files): {}",
            ByteSize(f.bytes).display().si(),
            f.kind.label(),
            f.files,
            escape_str(&f.hint)
        );
        for (layer, step) in f.layers.iter().zip(&f.steps) {
            let _ = writeln!(
                out,
                "      layer {layer}: {}",
                escape_str(&text::short_step(step))
            );
        }
        for path in f.paths.iter().take(PATHS) {
            let _ = writeln!(out, "      {}", escape_bytes(path));
        }
        let more = f.files.saturating_sub(f.paths.len().min(PATHS) as u64);
        if more > 0 {
            let _ = writeln!(out, "      … {more} more");
        }
    }
}

/// How many paths of each finding `system-out` lists.
const PATHS: usize = 5;

/// The text inside a `failure`: the verdict, then the largest findings and the largest
/// inefficient files as reasons.
fn failure_body(run: &CiRun<'_>, name: &str, explanation: &str) -> String {
    let mut body = format!(
        "{name} failed for {}: {explanation}\n",
        escape_str(&run.info.reference)
    );
    if !run.findings.items.is_empty() {
        body.push_str("Largest findings:\n");
        for f in run.findings.items.iter().take(REASONS) {
            let _ = writeln!(
                body,
                "  {} {}: {}",
                ByteSize(f.bytes).display().si(),
                f.kind.label(),
                escape_str(&f.hint)
            );
        }
    }
    let top = &run.figures.inefficiencies;
    if !top.is_empty() {
        body.push_str("Largest inefficient files:\n");
        for i in top.iter().take(REASONS) {
            let _ = writeln!(
                body,
                "  {} in {} copies: {}",
                ByteSize(i.wasted_bytes).display().si(),
                i.count,
                escape_bytes(&run.tree.path(i.node))
            );
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_escaped() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'</a>", false),
            "&lt;a href=\"x\"&gt;&amp;'&lt;/a&gt;"
        );
        assert_eq!(
            xml_escape("\"it's\"\nnext\ttab", true),
            "&quot;it&apos;s&quot;&#10;next&#9;tab"
        );
        assert_eq!(xml_escape("line\nnext\ttab", false), "line\nnext\ttab");
        assert_eq!(
            xml_escape("esc\u{1b}[2J bell\u{7} cr\r nul\u{0} c1\u{9b}", false),
            "esc\\x1b[2J bell\\x07 cr\\x0d nul\\x00 c1\\u{9b}"
        );
        assert_eq!(xml_escape("\u{fffe}", false), "\\u{fffe}");
        assert_eq!(xml_escape("café ✓", false), "café ✓");
    }
}
