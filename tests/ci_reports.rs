//! CI reports, baselines and ignored paths end to end: images built here and pushed to a real
//! registry, the binary run as a pipeline runs it, and every report read back the way its CI
//! system reads it (JUnit through an XML parser, GitLab's documented Code Quality fields,
//! GitHub's workflow commands and job summary file). Figures are worked out by hand in the
//! comments.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use common::cli::{self, json, stderr, stdout};
use common::layers::{content, Compress, LayerBuilder};
use common::push::{build_image, mt, Flavor, Pusher, Step, TestImage};
use common::registry::{Registry, TempDir};

/// A path with markup, a terminal escape and a line that would be a workflow command.
const HOSTILE: &[u8] = b"opt/a<b>&\"c|`d\x1b[2J\n::error::injected";
/// A build step with a terminal title escape in it.
const HOSTILE_STEP: &str = "RUN apt-get update && make tool \u{1b}]0;pwned\u{7}";

/// Version 1 of the app:
///
/// | layer | step                  | files                                                  |
/// |-------|-----------------------|--------------------------------------------------------|
/// | 0     | COPY rootfs /         | /etc/os-release 100, /bin/tool 1000, HOSTILE 10         |
/// | 1     | HOSTILE_STEP          | /var/lib/apt/lists/index 5000, /bin/tool 1200,          |
/// |       |                       | /tmp/build.log 300, HOSTILE 20                          |
/// | 2     | COPY main /app/main   | /app/main 400                                           |
///
/// Visits: tool 1000+1200 and HOSTILE 10+20 twice, every other path once.
/// Σsum 8030, Σmin 6810 → efficiency 0.8481; wasted 2230; layers 1110, 6520, 400 → user
/// wasted 2230/6920 = 0.3223. Files visible: 6, 7020 bytes.
/// Findings: package-cache /var/lib/apt/lists 5000 (layer 1), overwritten 1010 (tool 1000 and
/// HOSTILE 10, layers 0→1), temporary-files 300 (layer 1): 6310 reclaimable.
fn app_v1_layers() -> Vec<(LayerBuilder, &'static str)> {
    vec![
        (
            LayerBuilder::new()
                .file("etc/os-release", &content(1, 100))
                .file("bin/tool", &content(2, 1000))
                .file(HOSTILE, &content(3, 10)),
            "COPY rootfs /",
        ),
        (
            LayerBuilder::new()
                .file("var/lib/apt/lists/index", &content(4, 5000))
                .file("bin/tool", &content(5, 1200))
                .file("tmp/build.log", &content(6, 300))
                .file(HOSTILE, &content(7, 20)),
            HOSTILE_STEP,
        ),
        (
            LayerBuilder::new().file("app/main", &content(8, 400)),
            "COPY main /app/main",
        ),
    ]
}

fn image_of(layers: Vec<(LayerBuilder, &'static str)>) -> TestImage {
    let steps: Vec<Step> = layers.iter().map(|(_, s)| Step::layer(s)).collect();
    let blobs = layers
        .iter()
        .map(|(l, _)| l.build(Compress::Gzip).layer(mt::DOCKER_LAYER))
        .collect();
    build_image(Flavor::DockerV2, ("linux", "amd64", None), blobs, &steps)
}

/// Version 2: version 1 and a fourth layer, `RUN fetch big`, with /opt/big.bin 30000.
/// Size 38030 (+30000, +373.6 %); wasted unchanged.
fn app_v2() -> TestImage {
    let mut layers = app_v1_layers();
    layers.push((
        LayerBuilder::new().file("opt/big.bin", &content(9, 30000)),
        "RUN fetch big",
    ));
    image_of(layers)
}

/// A registry holding `app:1` and `app:2`.
async fn registry_with_app() -> (Registry, String, String) {
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    pusher
        .push_image("app", Some("1"), &image_of(app_v1_layers()))
        .await;
    pusher.push_image("app", Some("2"), &app_v2()).await;
    let v1 = format!("{}/app:1", registry.host);
    let v2 = format!("{}/app:2", registry.host);
    (registry, v1, v2)
}

async fn layerscope(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = cli::command(home);
    command.arg("--no-cache").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run layerscope")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

/// Nothing raw that a terminal or a parser would act on: no ESC, BEL or CR, and no line of
/// the image's own that starts a workflow command.
fn assert_inert(name: &str, text: &str) {
    for c in ['\u{1b}', '\u{7}', '\r'] {
        assert!(!text.contains(c), "{name} holds a raw {c:?}:\n{text}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("::error::injected")),
        "{name} lets the image start a workflow command:\n{text}"
    );
}

/// The test cases of a JUnit document: (name, outcome, message, body).
fn junit_cases(xml: &str) -> Vec<(String, &'static str, String, String)> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let name = case.attribute("name").unwrap_or_default().to_string();
            let child = case.children().find(|n| n.is_element());
            let (outcome, message, body) = match child {
                None => ("pass", String::new(), String::new()),
                Some(c) => (
                    match c.tag_name().name() {
                        "failure" => "failure",
                        "skipped" => "skipped",
                        other => panic!("unexpected <{other}>"),
                    },
                    c.attribute("message").unwrap_or_default().to_string(),
                    c.text().unwrap_or_default().to_string(),
                ),
            };
            (name, outcome, message, body)
        })
        .collect()
}

/// The GitLab Code Quality issues, each checked against the fields GitLab documents.
fn gitlab_issues(text: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(text).expect("Code Quality report is JSON");
    let issues = doc.as_array().expect("an array of issues").clone();
    let mut prints = HashSet::new();
    for issue in &issues {
        let keys: HashSet<&str> = issue
            .as_object()
            .expect("issue object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from([
                "description",
                "check_name",
                "fingerprint",
                "severity",
                "location"
            ]),
            "{issue}"
        );
        assert!(issue["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(issue["check_name"]
            .as_str()
            .is_some_and(|c| c.starts_with("layerscope/")));
        let print = issue["fingerprint"].as_str().expect("fingerprint");
        assert!(
            prints.insert(print.to_string()),
            "fingerprint twice: {print}"
        );
        assert!(
            ["info", "minor", "major", "critical", "blocker"]
                .contains(&issue["severity"].as_str().unwrap_or("")),
            "{issue}"
        );
        let path = issue["location"]["path"].as_str().expect("location.path");
        assert!(!path.is_empty() && !path.starts_with('/') && !path.starts_with("./"));
        assert!(issue["location"]["lines"]["begin"]
            .as_u64()
            .is_some_and(|l| l >= 1));
    }
    issues
}

fn check_names(issues: &[Value]) -> Vec<(String, String)> {
    issues
        .iter()
        .map(|i| {
            (
                i["check_name"].as_str().unwrap_or("").to_string(),
                i["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn command_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("::")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_from_failing_and_passing_rules() {
    let (_registry, v1, _) = registry_with_app().await;
    let home = TempDir::new("home");
    let work = home.path();
    let summary = work.join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").expect("summary file");
    let summary_env = summary.to_string_lossy().into_owned();
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", summary_env.as_str()),
    ];

    // Default rules: efficiency 0.8481 < 0.9 and user wasted 0.3223 > 0.1 fail. The GitHub
    // report is on by itself in GitHub Actions.
    let out = layerscope(
        work,
        &[
            "--ci-report",
            "junit:out-junit.xml",
            "--ci-report",
            "gitlab:out-cq.json",
            "--ci-report",
            "markdown:out-summary.md",
            &v1,
        ],
        &github,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert_inert("stdout", &text);
    assert!(text.contains("FAIL: lowestEfficiency"), "{text}");

    // JUnit: one case per rule, in order, checked one by one.
    let junit = read(&work.join("out-junit.xml"));
    assert_inert("junit", &junit);
    let cases = junit_cases(&junit);
    let names: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "lowestEfficiency",
            "highestWastedBytes",
            "highestUserWastedPercent",
            "highestReclaimableBytes",
            "highestSizeIncrease",
            "highestWastedIncrease"
        ]
    );
    assert_eq!(cases[0].1, "failure");
    assert_eq!(cases[0].2, "value 0.8481 < threshold 0.9000");
    assert!(
        cases[0].3.contains("lowestEfficiency failed for"),
        "{}",
        cases[0].3
    );
    // The largest finding is the failure's first reason.
    assert!(
        cases[0].3.contains("5.0 kB package-cache"),
        "{}",
        cases[0].3
    );
    assert_eq!(cases[1].1, "skipped");
    assert_eq!(cases[1].2, "rule disabled");
    assert_eq!(cases[2].1, "failure");
    assert_eq!(cases[2].2, "value 0.3223 > threshold 0.1000");
    for case in &cases[3..] {
        assert_eq!((case.1, case.2.as_str()), ("skipped", "rule disabled"));
    }
    let doc = roxmltree::Document::parse(&junit).expect("XML");
    let suites = doc.root_element();
    assert_eq!(suites.attribute("tests"), Some("6"));
    assert_eq!(suites.attribute("failures"), Some("2"));
    assert_eq!(suites.attribute("skipped"), Some("4"));
    let system_out = doc
        .descendants()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .expect("system-out")
        .to_string();
    assert!(
        system_out.contains("Efficiency:          84.8070 %"),
        "{system_out}"
    );
    assert!(
        system_out.contains("Findings: 6.3 kB reclaimable (6310 bytes) in 3"),
        "{system_out}"
    );
    assert!(system_out.contains("/var/lib/apt/lists"), "{system_out}");
    // The hostile path survives XML as text, its controls shown, never raw.
    assert!(
        system_out.contains("/opt/a<b>&\"c|`d\\x1b[2J\\x0a::error::injected"),
        "{system_out}"
    );
    let property = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .map(str::to_string)
    };
    assert_eq!(property("image"), Some(v1.clone()));
    assert_eq!(property("wastedBytes").as_deref(), Some("2230"));

    // GitLab Code Quality: both failed rules, then each finding.
    let issues = gitlab_issues(&read(&work.join("out-cq.json")));
    assert_eq!(
        check_names(&issues),
        [
            ("layerscope/lowestEfficiency".into(), "major".into()),
            ("layerscope/highestUserWastedPercent".into(), "major".into()),
            ("layerscope/package-cache".into(), "minor".into()),
            ("layerscope/overwritten".into(), "minor".into()),
            ("layerscope/temporary-files".into(), "minor".into()),
        ]
    );
    assert!(issues[0]["description"]
        .as_str()
        .is_some_and(|d| d.contains("value 0.8481 < threshold 0.9000")));
    for issue in &issues {
        assert_inert(
            "gitlab description",
            issue["description"].as_str().unwrap_or(""),
        );
    }
    let failing_prints: Vec<Value> = issues.iter().map(|i| i["fingerprint"].clone()).collect();

    // GitHub: an error per failed rule, a warning per largest finding, nothing else.
    let commands = command_lines(&text);
    assert_eq!(commands.len(), 5, "{text}");
    assert!(commands[0].starts_with("::error title=layerscope%3A lowestEfficiency::"));
    assert!(commands[1].starts_with("::error title=layerscope%3A highestUserWastedPercent::"));
    assert!(commands[2]
        .starts_with("::warning title=layerscope%3A 5.0 kB reclaimable (package-cache)::"));
    assert!(commands[3].contains("overwritten"));
    assert!(commands[4].contains("temporary-files"));
    // The job summary is appended after what earlier steps wrote; the markdown report is the
    // same summary.
    let appended = read(&summary);
    let markdown = read(&work.join("out-summary.md"));
    assert_eq!(appended, format!("earlier step\n{markdown}"));
    assert_inert("markdown", &markdown);
    assert!(
        markdown.starts_with(&format!("### layerscope: FAIL · `{v1}`")),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `lowestEfficiency` | **FAIL** | 0.8481 | 0.9000 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `highestWastedBytes` | skipped | 2.2 kB (2230 bytes) | disabled |"),
        "{markdown}"
    );
    assert!(markdown.contains("#### Findings"), "{markdown}");
    assert!(
        markdown.contains("6.3 kB (6310 bytes) reclaimable in 3 findings."),
        "{markdown}"
    );
    assert!(
        markdown.contains("| 5.0 kB | `package-cache` | 1 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("#### Top inefficient files"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| 2 | 2.2 kB | `/bin/tool` |"),
        "{markdown}"
    );
    // The hostile path is a code span whose `|` cannot split the table row.
    assert!(
        markdown.contains("| 2 | 30 B | ``/opt/a<b>&\"c\\|`d\\x1b[2J\\x0a::error::injected`` |"),
        "{markdown}"
    );

    // Passing rules: no failure anywhere, the findings still reported, same fingerprints.
    std::fs::write(&summary, "").expect("empty summary");
    let out = layerscope(
        work,
        &[
            "--lowestEfficiency",
            "0.5",
            "--highestUserWastedPercent",
            "0.5",
            "--ci-report",
            "junit:out-junit.xml",
            "--ci-report",
            "gitlab:out-cq.json",
            "--ci-report",
            "markdown:out-summary.md",
            &v1,
        ],
        &github,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let cases = junit_cases(&read(&work.join("out-junit.xml")));
    let outcomes: Vec<&str> = cases.iter().map(|c| c.1).collect();
    assert_eq!(
        outcomes,
        ["pass", "skipped", "pass", "skipped", "skipped", "skipped"]
    );
    let issues = gitlab_issues(&read(&work.join("out-cq.json")));
    assert_eq!(issues.len(), 3);
    assert!(issues.iter().all(|i| i["severity"] == "minor"));
    let passing_prints: Vec<Value> = issues.iter().map(|i| i["fingerprint"].clone()).collect();
    assert_eq!(
        passing_prints,
        failing_prints[2..].to_vec(),
        "finding fingerprints are stable"
    );
    let text = stdout(&out);
    let commands = command_lines(&text);
    assert_eq!(commands.len(), 3, "{text}");
    assert!(commands.iter().all(|c| c.starts_with("::warning ")));
    let markdown = read(&work.join("out-summary.md"));
    assert!(markdown.starts_with("### layerscope: PASS"), "{markdown}");
    assert_eq!(read(&summary), markdown);

    // Outside GitHub Actions nothing is annotated unless asked for.
    let out = layerscope(work, &["--ci", &v1], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(command_lines(&stdout(&out)).is_empty(), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_changes_nothing_else() {
    let (_registry, v1, _) = registry_with_app().await;
    let home = TempDir::new("home");
    let work = home.path();
    std::fs::write(work.join("junit.xml"), "old junit").expect("old report");
    std::fs::write(work.join("not-a-dir"), "a file").expect("file");
    let summary = work.join("step-summary.md");
    std::fs::write(&summary, "earlier step\n").expect("summary");
    let before: Vec<_> = {
        let mut names: Vec<_> = std::fs::read_dir(work)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let out = layerscope(
        work,
        &[
            "--ci-report",
            "junit:junit.xml",
            "--ci-report",
            "gitlab:not-a-dir/cq.json",
            "--ci-report",
            "github",
            "--json",
            "report.json",
            &v1,
        ],
        &[("GITHUB_STEP_SUMMARY", &summary.to_string_lossy())],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("layerscope: error: writing report not-a-dir/cq.json"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert_eq!(read(&work.join("junit.xml")), "old junit");
    assert_eq!(read(&summary), "earlier step\n");
    let mut after: Vec<_> = std::fs::read_dir(work)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    after.sort();
    assert_eq!(after, before, "no file added, no temporary file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_image_and_report() {
    let (registry, v1, v2) = registry_with_app().await;
    let home = TempDir::new("home");
    let work = home.path();
    let strict = [
        "--lowestEfficiency",
        "disabled",
        "--highestUserWastedPercent",
        "disabled",
        "--highestSizeIncrease",
        "0",
        "--highestWastedIncrease",
        "0",
    ];
    let run = |extra: Vec<String>| async move {
        let mut args: Vec<String> = strict.iter().map(|s| s.to_string()).collect();
        args.extend(extra);
        args.extend(["--json".to_string(), "-".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        layerscope(work, &args, &[]).await
    };
    let rule = |doc: &Value, name: &str| -> Value {
        doc["ci"]["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };

    // The same image: nothing grew.
    let out = run(vec!["--baseline".into(), v1.clone(), v1.clone()]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let doc = json(&out);
    let base = &doc["ci"]["baseline"];
    assert_eq!(base["source"], "image");
    assert_eq!(base["sizeBytes"]["before"], 8030);
    assert_eq!(base["sizeBytes"]["after"], 8030);
    assert_eq!(base["reclaimableBytes"]["before"], 6310);
    assert_eq!(base["reclaimableBytes"]["after"], 6310);
    assert_eq!(base["fileCount"]["after"], 6);
    assert_eq!(base["commonPrefix"], 3);
    assert_eq!(base["changedLayers"], Value::Array(Vec::new()));
    assert_eq!(rule(&doc, "highestSizeIncrease")["value"], 0.0);
    assert_eq!(rule(&doc, "highestSizeIncrease")["status"], "PASS");

    // A grown image fails, in bytes and in percent; the new layer is named.
    let out = run(vec!["--baseline".into(), v1.clone(), v2.clone()]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let doc = json(&out);
    let size_rule = rule(&doc, "highestSizeIncrease");
    assert_eq!(size_rule["status"], "FAIL");
    assert_eq!(size_rule["value"], 30000.0);
    assert_eq!(size_rule["unit"], "bytes");
    assert_eq!(rule(&doc, "highestWastedIncrease")["status"], "PASS");
    let changed = &doc["ci"]["baseline"]["changedLayers"];
    assert_eq!(changed.as_array().map(Vec::len), Some(1));
    assert_eq!(changed[0]["index"], 3);
    assert_eq!(changed[0]["status"], "only-b");
    assert_eq!(changed[0]["before"], Value::Null);
    let report = stderr(&out);
    assert!(report.contains("Baseline:"), "{report}");
    assert!(report.contains("+30.0 kB (+30000 bytes)"), "{report}");
    assert!(report.contains("#3   - → sha256:"), "{report}");
    assert!(report.contains("RUN fetch big"), "{report}");
    assert!(
        report.contains("FAIL: highestSizeIncrease: value +30.0 kB"),
        "{report}"
    );

    let out = layerscope(
        work,
        &[
            "--baseline",
            &v1,
            "--highestSizeIncrease",
            "5%",
            "--json",
            "-",
            &v2,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let size_rule = rule(&json(&out), "highestSizeIncrease");
    assert_eq!(size_rule["unit"], "ratio");
    assert!(close(&size_rule["value"], 30000.0 / 8030.0), "{size_rule}");
    assert!(close(&size_rule["threshold"], 0.05), "{size_rule}");

    // An earlier --json report as the baseline.
    let out = layerscope(work, &["--json", "v1.json", &v1], &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let out = layerscope(
        work,
        &[
            "--baseline",
            "v1.json",
            "--highestSizeIncrease",
            "20KB",
            "--ci-report",
            "markdown:-",
            &v2,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let markdown = stdout(&out);
    assert!(
        markdown.contains(&format!("#### Against the baseline `{v1}`")),
        "{markdown}"
    );
    assert!(
        markdown.contains("| Size | 8.0 kB | 38.0 kB | +30.0 kB (+30000 bytes) |"),
        "{markdown}"
    );
    assert!(markdown.contains("| Files | 6 | 7 | +1 |"), "{markdown}");
    // The report's reclaimable bytes are the baseline's.
    assert!(
        markdown.contains("| Reclaimable | 6.3 kB | 6.3 kB | no change |"),
        "{markdown}"
    );
    assert!(markdown.contains("| 3 | `-` | `sha256:"), "{markdown}");
    // The text report went to stderr, standard output being the report's.
    assert!(
        stderr(&out).contains("FAIL: highestSizeIncrease"),
        "{}",
        stderr(&out)
    );
    let out = layerscope(
        work,
        &[
            "--baseline",
            "v1.json",
            "--highestSizeIncrease",
            "40KB",
            "--ci",
            &v2,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("(report v1.json)"),
        "{}",
        stdout(&out)
    );

    // A baseline that cannot be read is an error, never a pass.
    for missing in [
        "missing.json".to_string(),
        format!("{}/app:gone", registry.host),
    ] {
        let out = layerscope(work, &["--baseline", &missing, "--ci", &v1], &[]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{missing}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("layerscope: error: baseline {missing}: ")),
            "{err}"
        );
    }
    std::fs::write(work.join("bad.json"), "{\"schemaVersion\": 1}").expect("bad report");
    let out = layerscope(work, &["--baseline", "bad.json", "--ci", &v1], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a layerscope --json report"),
        "{}",
        stderr(&out)
    );
    // A growth rule without a baseline is an error too.
    let out = layerscope(work, &["--highestSizeIncrease", "5%", "--ci", &v1], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("need --baseline"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_paths_move_a_rule_from_fail_to_pass() {
    let (_registry, v1, _) = registry_with_app().await;
    let home = TempDir::new("home");
    let work = home.path();
    let only_reclaimable = [
        "--ci",
        "--lowestEfficiency",
        "disabled",
        "--highestUserWastedPercent",
        "disabled",
        "--highestReclaimableBytes",
        "2KB",
    ];
    let run = |extra: &'static [&'static str]| {
        let mut args: Vec<&str> = only_reclaimable.to_vec();
        args.extend(extra);
        args.extend(["--json", "-", v1.as_str()]);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            layerscope(work, &args, &[]).await
        }
    };

    // 6310 reclaimable > 2000.
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["ci"]["rules"][3]["name"], "highestReclaimableBytes");
    assert_eq!(doc["ci"]["rules"][3]["value"], 6310.0);
    assert!(doc["ci"].get("ignored").is_none());

    // Leaving out the apt lists: 1310 reclaimable; efficiency and user wasted as the rules see
    // them: Σsum 3030, Σmin 1810; wasted 2230 over 6920 − 5000.
    std::fs::write(
        work.join(".dive-ci"),
        "rules:\n  highestWastedBytes: disabled\nignorePaths:\n  - /var/lib/apt/lists/**\n",
    )
    .expect(".dive-ci");
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let doc = json(&out);
    let rules = &doc["ci"]["rules"];
    assert_eq!(rules[3]["value"], 1310.0);
    assert_eq!(rules[3]["status"], "PASS");
    assert!(close(&rules[0]["value"], 1810.0 / 3030.0), "{}", rules[0]);
    assert!(close(&rules[2]["value"], 2230.0 / 1920.0), "{}", rules[2]);
    assert_eq!(doc["ci"]["ignored"]["patterns"][0], "/var/lib/apt/lists/**");
    assert_eq!(doc["ci"]["ignored"]["bytes"], 5000);
    assert_eq!(doc["ci"]["ignored"]["paths"], 1);
    // The image's own figures stay whole.
    assert!(close(&doc["image"]["efficiency"], 6810.0 / 8030.0));
    assert_eq!(doc["image"]["wastedBytes"], 2230);
    assert_eq!(doc["image"]["reclaimableBytes"], 6310);
    let report = stderr(&out);
    assert!(
        report.contains("Ignored paths:       /var/lib/apt/lists/**"),
        "{report}"
    );
    assert!(
        report.contains("5.0 kB (5000 bytes) in 1 path left out of what the rules measure"),
        "{report}"
    );
    assert!(report.contains("PASS: highestReclaimableBytes"), "{report}");

    // --ignore-path adds to the file's list: leaving out /tmp too takes 300 more.
    let out = run(&["--ignore-path", "/tmp/**"]).await;
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["ci"]["rules"][3]["value"], 1010.0);
    assert_eq!(doc["ci"]["ignored"]["bytes"], 5300);

    // An unknown key stays an error.
    std::fs::write(work.join(".dive-ci"), "ignorePath:\n  - /tmp/**\n").expect(".dive-ci");
    let out = run(&[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown key `ignorePath`"),
        "{}",
        stderr(&out)
    );
}

/// The layerscope command lines of the CI examples in assets/ci/: every option they pass is
/// one the binary has, and every `--ci-report` names a format it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_examples_pass_options_that_exist() {
    let home = TempDir::new("home");
    let help = stdout(&layerscope(home.path(), &["--help"], &[]).await);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/ci");
    let mut checked = 0;
    for name in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = read(&root.join(name));
        // `layerscope --ci …` and its continuation lines, quoted variables set beside it.
        let mut command = String::new();
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("layerscope ") || line.starts_with("BASELINE=\"--") {
                inside = line.starts_with("layerscope ");
                command.push_str(line.trim_start_matches("BASELINE=").trim_matches('"'));
                command.push(' ');
            } else if inside {
                command.push_str(line);
                command.push(' ');
            }
            if inside && !line.ends_with('\\') {
                inside = false;
            }
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(words.contains(&"--ci"), "{name}: {command}");
        for (i, word) in words.iter().enumerate() {
            if word.starts_with("--") {
                assert!(
                    help.contains(&format!("{word} "))
                        || help.contains(&format!("{word}\n"))
                        || help.contains(&format!("{word},")),
                    "{name}: {word} is not an option of layerscope"
                );
                checked += 1;
            }
            if *word == "--ci-report" {
                let value = words.get(i + 1).expect("a value");
                let format = value.split(':').next().unwrap_or("");
                assert!(
                    ["junit", "github", "gitlab", "markdown"].contains(&format),
                    "{name}: {value}"
                );
            }
        }
    }
    assert!(checked >= 10, "{checked} options checked");
}
