//! GitLab Code Quality: a JSON array of issues that the merge-request widget shows and
//! compares with the target branch's. Each issue has the fields GitLab documents:
//! `description`, `check_name`, `fingerprint`, `severity` (`info`, `minor`, `major`,
//! `critical` or `blocker`) and `location` (`path`, `lines.begin`).
//!
//! One issue per failed rule (`major`, or `critical` for growth against the baseline) and one
//! per finding (`minor`). A fingerprint is a SHA-256 over the check, the image's name without
//! tag or digest and, for a finding, its place and build steps — never over sizes or values
//! that change from build to build — so GitLab recognises the same problem in the next
//! pipeline. An image has no source line, so issues
//! are placed on line 1 of the `Dockerfile` that builds it.

use bytesize::ByteSize;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{image_name, CiRun};
use crate::ci::{rule_name, RuleStatus};
use crate::escape::escape_str;
use crate::image::clean_created_by;

/// Where issues are placed: the file that builds the image.
pub const LOCATION_PATH: &str = "Dockerfile";

/// One Code Quality issue.
#[derive(Debug, Serialize)]
pub struct Issue {
    /// What is wrong, for people.
    pub description: String,
    /// The check that found it: `layerscope/RULE`.
    pub check_name: String,
    /// Stable identity of the issue across pipelines.
    pub fingerprint: String,
    /// `info`, `minor`, `major`, `critical` or `blocker`.
    pub severity: &'static str,
    /// Where it is.
    pub location: Location,
}

/// `location` of an issue.
#[derive(Debug, Serialize)]
pub struct Location {
    /// A path relative to the repository.
    pub path: String,
    /// The lines.
    pub lines: Lines,
}

/// `location.lines` of an issue.
#[derive(Debug, Serialize)]
pub struct Lines {
    /// The first line, from 1.
    pub begin: u32,
}

/// A failed rule's severity: growth against the baseline is a regression the change under
/// review made (`critical`); the other rules judge the image as it is (`major`).
pub fn severity(rule: &str) -> &'static str {
    match rule {
        rule_name::HIGHEST_SIZE_INCREASE | rule_name::HIGHEST_WASTED_INCREASE => "critical",
        _ => "major",
    }
}

/// A stable fingerprint: SHA-256 (hex) of the parts joined by NUL bytes.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The severity of a finding: it costs bytes, not correctness.
pub const FINDING_SEVERITY: &str = "minor";

/// The issues of the check: the failed rules, then the findings.
pub fn issues(run: &CiRun<'_>) -> Vec<Issue> {
    let name = image_name(&run.info.reference);
    let mut issues: Vec<Issue> = run
        .outcome
        .rules
        .iter()
        .filter(|r| r.status == RuleStatus::Fail)
        .map(|r| {
            let check = format!("layerscope/{}", r.name);
            Issue {
                description: escape_str(&format!(
                    "{} failed for {}: {}",
                    r.name,
                    run.info.reference,
                    r.explain()
                ))
                .into_owned(),
                fingerprint: fingerprint(&["rule", &check, name]),
                check_name: check,
                severity: severity(r.name),
                location: location(),
            }
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for f in &run.findings.items {
        let check = format!("layerscope/{}", f.kind.label());
        let place = f
            .place
            .as_deref()
            .or(f.paths.first().map(Vec::as_slice))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let steps: Vec<String> = f.steps.iter().map(|s| clean_created_by(s)).collect();
        let mut print = fingerprint(&["finding", &check, name, &place, &steps.join("\n")]);
        // Two findings alike in all of that (rare) still need fingerprints of their own.
        let mut n = 1;
        while !seen.insert(print.clone()) {
            n += 1;
            print = fingerprint(&[
                "finding",
                &check,
                name,
                &place,
                &steps.join("\n"),
                &n.to_string(),
            ]);
        }
        issues.push(Issue {
            description: escape_str(&format!(
                "{} reclaimable in {}: {}",
                ByteSize(f.bytes).display().si(),
                run.info.reference,
                f.hint
            ))
            .into_owned(),
            check_name: check,
            fingerprint: print,
            severity: FINDING_SEVERITY,
            location: location(),
        });
    }
    issues
}

fn location() -> Location {
    Location {
        path: LOCATION_PATH.to_string(),
        lines: Lines { begin: 1 },
    }
}

/// The report: the issues as pretty JSON, newline-terminated.
pub fn render(run: &CiRun<'_>) -> String {
    crate::toolbox::json_text(&issues(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = fingerprint(&["rule", "layerscope/lowestEfficiency", "r/app"]);
        assert_eq!(a.len(), 64);
        assert_eq!(
            a,
            fingerprint(&["rule", "layerscope/lowestEfficiency", "r/app"])
        );
        assert_ne!(
            a,
            fingerprint(&["rule", "layerscope/lowestEfficiency", "r/other"])
        );
        // Joining with NUL keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn severity_comes_from_the_rule() {
        assert_eq!(severity(rule_name::LOWEST_EFFICIENCY), "major");
        assert_eq!(severity(rule_name::HIGHEST_SIZE_INCREASE), "critical");
    }
}
