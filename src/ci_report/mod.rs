//! Reports of a CI check for the systems that run it, each one `--ci-report FORMAT[:FILE]`:
//!
//! - `junit` ([`junit`]): JUnit XML, one test case per rule, for Jenkins, GitLab and Azure
//!   Pipelines;
//! - `github` ([`github`]): workflow commands that annotate the run, and a Markdown job summary
//!   appended to `$GITHUB_STEP_SUMMARY` (on by default when `GITHUB_ACTIONS=true`);
//! - `gitlab` ([`gitlab`]): GitLab Code Quality JSON for the merge-request widget;
//! - `markdown` ([`markdown`]): the job summary as a file, for any system or a pull-request
//!   comment.
//!
//! Every format renders the same [`CiRun`]. Reports are written even when rules fail. The
//! files of one run are written together ([`Delivery::commit`]): all of them, or, when one
//! cannot be written, none.

pub mod github;
pub mod gitlab;
pub mod junit;
pub mod markdown;
pub mod text;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::analysis::Figures;
use crate::baseline::BaselineComparison;
use crate::ci::CiOutcome;
use crate::error::Error;
use crate::findings::Findings;
use crate::ignore::{IgnorePaths, RuleFigures};
use crate::image::ImageInfo;
use crate::output_file;
use crate::tree::FileTree;

/// The report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// JUnit XML.
    Junit,
    /// GitHub Actions workflow commands and job summary.
    Github,
    /// GitLab Code Quality JSON.
    Gitlab,
    /// The Markdown summary.
    Markdown,
}

impl ReportFormat {
    /// The name `--ci-report` takes.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Junit => "junit",
            ReportFormat::Github => "github",
            ReportFormat::Gitlab => "gitlab",
            ReportFormat::Markdown => "markdown",
        }
    }

    /// The file written when `--ci-report` names none (`github` appends its summary to
    /// `$GITHUB_STEP_SUMMARY` instead).
    pub fn default_file(self) -> Option<&'static str> {
        match self {
            ReportFormat::Junit => Some("layerscope-junit.xml"),
            ReportFormat::Gitlab => Some("gl-code-quality-report.json"),
            ReportFormat::Markdown => Some("layerscope-report.md"),
            ReportFormat::Github => None,
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The format's default place.
    Default,
    /// Standard output (`FORMAT:-`).
    Stdout,
    /// A file.
    File(PathBuf),
}

/// One `--ci-report FORMAT[:FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The format.
    pub format: ReportFormat,
    /// Where it goes.
    pub target: Target,
}

impl FromStr for ReportRequest {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, file) = match value.split_once(':') {
            Some((name, file)) => (name, Some(file)),
            None => (value, None),
        };
        let format = match name.trim().to_ascii_lowercase().as_str() {
            "junit" => ReportFormat::Junit,
            "github" => ReportFormat::Github,
            "gitlab" => ReportFormat::Gitlab,
            "markdown" | "md" => ReportFormat::Markdown,
            other => {
                return Err(format!(
                    "unknown report format {other:?} (expected junit, github, gitlab or markdown, optionally with :FILE)"
                ))
            }
        };
        let target = match file {
            None => Target::Default,
            Some("") => return Err(format!("--ci-report {name}: empty file name after `:`")),
            Some("-") => Target::Stdout,
            Some(path) => Target::File(PathBuf::from(path)),
        };
        Ok(ReportRequest { format, target })
    }
}

/// The requests of the command line, with the GitHub report added when running in GitHub
/// Actions and not asked for. The same file named twice, or standard output claimed twice,
/// is refused; `json` is `--json`'s target, which counts too.
pub fn requests(
    given: &[ReportRequest],
    github_actions: bool,
    json: Option<&str>,
) -> Result<Vec<ReportRequest>, Error> {
    let json_on_stdout = json == Some("-");
    let mut all = given.to_vec();
    if github_actions && !all.iter().any(|r| r.format == ReportFormat::Github) {
        all.push(ReportRequest {
            format: ReportFormat::Github,
            target: Target::Default,
        });
    }
    let stdout =
        all.iter().filter(|r| r.target == Target::Stdout).count() + json_on_stdout as usize;
    if stdout > 1 {
        return Err(Error::Other(
            "only one of --json and --ci-report can write to standard output (-)".to_string(),
        ));
    }
    let mut files: Vec<PathBuf> = json
        .filter(|j| *j != "-")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for r in &all {
        if let Some(path) = file_of(r, None) {
            if files.contains(&path) {
                return Err(Error::Other(format!(
                    "{} is named twice as an output (--ci-report, --json)",
                    path.display()
                )));
            }
            files.push(path);
        }
    }
    Ok(all)
}

/// The file a request writes (or, for `github`, appends its summary to).
fn file_of(request: &ReportRequest, step_summary: Option<&PathBuf>) -> Option<PathBuf> {
    match (&request.target, request.format.default_file()) {
        (Target::File(path), _) => Some(path.clone()),
        (Target::Default, Some(name)) => Some(PathBuf::from(name)),
        (Target::Default, None) => step_summary.cloned(),
        (Target::Stdout, _) => None,
    }
}

/// Everything a report says: the image, its figures and findings, the rules' verdict, what
/// the rules left out and the baseline.
#[derive(Debug, Clone, Copy)]
pub struct CiRun<'a> {
    /// The image.
    pub info: &'a ImageInfo,
    /// The merged model the figures come from (their paths are its nodes).
    pub tree: &'a FileTree,
    /// Its figures, whole.
    pub figures: &'a Figures,
    /// The verdict of the rules.
    pub outcome: &'a CiOutcome,
    /// The figures as the rules saw them.
    pub rule_figures: &'a RuleFigures,
    /// The findings as the rules saw them (without the paths left out).
    pub findings: &'a Findings,
    /// The image's reclaimable bytes, whole.
    pub reclaimable_bytes: u64,
    /// The patterns that left paths out.
    pub ignore: &'a IgnorePaths,
    /// The image against `--baseline`.
    pub baseline: Option<&'a BaselineComparison>,
    /// How long loading and analysing took.
    pub elapsed: Duration,
}

/// The outputs of one run, rendered and not yet written.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Files replaced whole.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Files appended to (the GitHub job summary).
    pub appends: Vec<(PathBuf, Vec<u8>)>,
    /// A report for standard output (`FORMAT:-`).
    pub stdout: Option<Vec<u8>>,
    /// GitHub workflow commands, printed after the text report.
    pub commands: String,
    /// Files already written beside their targets as they were rendered (a large JSON
    /// report), put in place with the others.
    streamed: Vec<(PathBuf, output_file::Staged)>,
}

impl Delivery {
    /// Render every request. `step_summary` is `$GITHUB_STEP_SUMMARY`, where the `github`
    /// summary goes unless the request names a file.
    pub fn render(
        requests: &[ReportRequest],
        run: &CiRun<'_>,
        step_summary: Option<PathBuf>,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        for request in requests {
            let bytes = match request.format {
                ReportFormat::Junit => junit::render(run).into_bytes(),
                ReportFormat::Gitlab => gitlab::render(run).into_bytes(),
                ReportFormat::Markdown => markdown::render(run).into_bytes(),
                ReportFormat::Github => {
                    delivery.commands.push_str(&github::commands(run));
                    let summary = markdown::render(run).into_bytes();
                    if request.target == Target::Stdout {
                        delivery.stdout = Some(summary);
                    } else if let Some(path) = file_of(request, step_summary.as_ref()) {
                        delivery.appends.push((path, summary));
                    }
                    continue;
                }
            };
            match file_of(request, None) {
                Some(path) => delivery.files.push((path, bytes)),
                None => delivery.stdout = Some(bytes),
            }
        }
        delivery
    }

    /// Add the file `path` with what `fill` writes, streamed beside its target now rather
    /// than held in memory (see [`output_file::stage_with`]); it is put in place by
    /// [`Delivery::commit`] with the rest. An error names the file, and then nothing has
    /// changed.
    pub fn stream_file(
        &mut self,
        path: PathBuf,
        fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let file = output_file::stage_with(&path, fill)
            .map_err(|e| Error::io(format!("writing report {}", path.display()), e))?;
        self.streamed.push((path, file));
        Ok(())
    }

    /// Write the files: each one staged beside its target first; only when all could be
    /// written are the summaries appended and the files put in place. An error names the
    /// file, and then nothing has changed.
    pub fn commit(&mut self) -> Result<(), Error> {
        let mut staged = std::mem::take(&mut self.streamed);
        for (path, bytes) in &self.files {
            let file = output_file::stage(path, bytes)
                .map_err(|e| Error::io(format!("writing report {}", path.display()), e))?;
            staged.push((path.clone(), file));
        }
        for (path, bytes) in &self.appends {
            append(path, bytes)
                .map_err(|e| Error::io(format!("appending to {}", path.display()), e))?;
        }
        for (path, file) in staged {
            file.commit()
                .map_err(|e| Error::io(format!("writing report {}", path.display()), e))?;
        }
        Ok(())
    }
}

/// Append `bytes` to `path` (created when missing), as a job summary is written.
fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.flush()
}

/// The image's name without tag or digest (`registry:5000/team/app`): what stays the same
/// from one build of an image to the next, for identifiers that must be stable.
pub fn image_name(reference: &str) -> &str {
    let without_digest = reference.split_once('@').map_or(reference, |(n, _)| n);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_format_and_file() {
        let r: ReportRequest = "junit".parse().expect("parses");
        assert_eq!((r.format, r.target), (ReportFormat::Junit, Target::Default));
        let r: ReportRequest = "gitlab:out/cq.json".parse().expect("parses");
        assert_eq!(r.target, Target::File(PathBuf::from("out/cq.json")));
        let r: ReportRequest = "markdown:-".parse().expect("parses");
        assert_eq!(r.target, Target::Stdout);
        // A file name may hold colons.
        let r: ReportRequest = "junit:c:/x.xml".parse().expect("parses");
        assert_eq!(r.target, Target::File(PathBuf::from("c:/x.xml")));
        assert!("sarif"
            .parse::<ReportRequest>()
            .unwrap_err()
            .contains("junit"));
        assert!("junit:"
            .parse::<ReportRequest>()
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn github_is_added_in_actions_and_conflicts_are_refused() {
        let junit: ReportRequest = "junit".parse().expect("parses");
        let all = requests(std::slice::from_ref(&junit), true, None).expect("ok");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].format, ReportFormat::Github);
        let all = requests(std::slice::from_ref(&junit), false, None).expect("ok");
        assert_eq!(all.len(), 1);

        let twice = [
            junit.clone(),
            "junit:layerscope-junit.xml".parse().expect("p"),
        ];
        assert!(requests(&twice, false, None).is_err());
        assert!(requests(
            std::slice::from_ref(&junit),
            false,
            Some("layerscope-junit.xml")
        )
        .is_err());
        assert!(requests(std::slice::from_ref(&junit), false, Some("report.json")).is_ok());
        let stdout: ReportRequest = "junit:-".parse().expect("parses");
        assert!(requests(std::slice::from_ref(&stdout), false, Some("-")).is_err());
        assert!(requests(&[stdout], false, None).is_ok());
    }

    #[test]
    fn image_names_lose_tag_and_digest_only() {
        assert_eq!(image_name("127.0.0.1:5000/app:1.4"), "127.0.0.1:5000/app");
        assert_eq!(image_name("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(
            image_name("docker.io/library/alpine:3.20@sha256:abc"),
            "docker.io/library/alpine"
        );
        assert_eq!(
            image_name("localhost:5000/team/app@sha256:ab"),
            "localhost:5000/team/app"
        );
    }
}
