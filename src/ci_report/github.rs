//! GitHub Actions: one `::error` workflow command per failed rule and one `::warning` for each
//! of the largest findings, which annotate the run, and the Markdown job summary of [`super::markdown`] (appended to `$GITHUB_STEP_SUMMARY` by
//! [`super::Delivery`]).
//!
//! A workflow command is one line, `::NAME key=value,…::message`. The runner decodes `%25`,
//! `%0D` and `%0A` in the message, and also `%3A` and `%2C` in property values (where a raw
//! `:` or `,` would end the value). Text from the image first has its control characters
//! shown visibly, so no line break of its own can start a command of its choosing; then it
//! is encoded as the runner decodes it.

use std::fmt::Write as _;

use bytesize::ByteSize;

use super::CiRun;
use crate::ci::RuleStatus;
use crate::escape::escape_str;

/// The message part of a workflow command.
pub fn escape_data(text: &str) -> String {
    escape_str(text)
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value of a workflow command.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// One workflow command line.
fn command(name: &str, title: &str, message: &str) -> String {
    format!(
        "::{name} title={}::{}\n",
        escape_property(title),
        escape_data(message)
    )
}

/// How many findings become warnings.
pub const WARNINGS: usize = 3;

/// The workflow commands of the check: an error for each failed rule, then a warning for
/// each of the [`WARNINGS`] largest findings.
pub fn commands(run: &CiRun<'_>) -> String {
    let mut out = String::new();
    for rule in run
        .outcome
        .rules
        .iter()
        .filter(|r| r.status == RuleStatus::Fail)
    {
        let _ = write!(
            out,
            "{}",
            command(
                "error",
                &format!("layerscope: {}", rule.name),
                &format!(
                    "{} failed for {}: {}",
                    rule.name,
                    run.info.reference,
                    rule.explain()
                ),
            )
        );
    }
    for finding in run.findings.items.iter().take(WARNINGS) {
        out.push_str(&command(
            "warning",
            &format!(
                "layerscope: {} reclaimable ({})",
                ByteSize(finding.bytes).display().si(),
                finding.kind.label()
            ),
            &finding.hint,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_encoded_as_the_runner_decodes_them() {
        assert_eq!(escape_data("50% of a::b, c"), "50%25 of a::b, c");
        assert_eq!(escape_property("a: b, c%"), "a%3A b%2C c%25");
        // An image's line break cannot start a command: it is shown, not kept.
        let hostile = "/x\n::set-env name=A::1\r%0A";
        let line = command("error", "t", hostile);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert!(!line.contains("\n::set-env"));
        assert!(line.contains("%250A"), "{line}");
    }
}
