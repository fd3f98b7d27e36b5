//! Findings end to end: an image built here (gzip and zstd), pushed to a real registry, read
//! by the binary; the `findings` of `--json` checked field by field against values worked out
//! by hand, the text summary's Findings section, the `--ci` report's reasons, and the
//! explorer's Findings view in a real terminal (tmux).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::cli::{self, json_ok, stderr, stdout};
use common::layers::{content, Compress, LayerBuilder, Meta};
use common::push::{build_image, mt, Flavor, Pusher, Step, TestImage};
use common::registry::{Registry, TempDir};
use common::tmux::Tmux;

/// A file name holding a terminal escape (a title change) and a bell.
const EVIL: &[u8] = b"var/lib/apt/lists/evil\x1b]0;pwned\x07";

/// Five layers a Dockerfile would make, every kind of finding in them.
///
/// | layer | step | files |
/// |---|---|---|
/// | 0 | ADD rootfs | os-release 100, tool 1000 (0644), doc/a and doc/b copyright 300 (same bytes) |
/// | 1 | apt-get update && install | lists: Packages 4000 + EVIL 500; archives/curl.deb 2000; curl 800 |
/// | 2 | rm -rf lists/* | whiteouts of both lists files |
/// | 3 | chmod + pip | tool again (same bytes, 0755); pip cache 700; /tmp 60 + 25; doc/c copyright 300 |
/// | 4 | COPY os-release | os-release 120 (new bytes) |
///
/// Findings, by hand, largest first:
/// - removed-later 4000 + 500 = 4500 (layers 1→2), /var/lib/apt/lists;
/// - package-cache 2000 (layer 1), /var/cache/apt;
/// - rewritten-same-content 1000 (layers 0→3), /usr/bin/tool;
/// - package-cache 700 (layer 3), /root/.cache/pip;
/// - duplicate-content 2 × 300 = 600 (layers 0 and 3), copies b and c of a;
/// - overwritten 100 (layers 0→4), /etc/os-release;
/// - temporary-files 60 + 25 = 85 (layer 3), /tmp.
///
/// Reclaimable 8985. Stored 1700 + 7300 + 0 + 2085 + 120 = 11205, visible 5605, so shadowed
/// 5600 = 4500 + 1000 + 100, the hidden kinds exactly.
fn wasteful_image(compress: Compress, flavor: Flavor, media_type: &str) -> TestImage {
    let doc = content(3, 300);
    let tool = content(2, 1000);
    let l0 = LayerBuilder::new()
        .file("etc/os-release", &content(1, 100))
        .file("usr/bin/tool", &tool)
        .file("usr/share/doc/a/copyright", &doc)
        .file("usr/share/doc/b/copyright", &doc);
    let l1 = LayerBuilder::new()
        .file("var/lib/apt/lists/deb_Packages", &content(4, 4000))
        .file(EVIL, &content(5, 500))
        .file("var/cache/apt/archives/curl.deb", &content(6, 2000))
        .file("usr/bin/curl", &content(7, 800));
    let l2 = LayerBuilder::new()
        .whiteout("var/lib/apt/lists/deb_Packages")
        .whiteout(EVIL);
    let l3 = LayerBuilder::new()
        .file_with(
            "usr/bin/tool",
            &tool,
            Meta {
                mode: 0o755,
                ..Meta::default()
            },
        )
        .file("root/.cache/pip/http/wheel", &content(8, 700))
        .file("tmp/build.log", &content(9, 60))
        .file("tmp/x.o", &content(10, 25))
        .file("usr/share/doc/c/copyright", &doc);
    let l4 = LayerBuilder::new().file("etc/os-release", &content(11, 120));
    build_image(
        flavor,
        ("linux", "amd64", None),
        [l0, l1, l2, l3, l4]
            .into_iter()
            .map(|l| l.layer_as(compress, media_type))
            .collect(),
        &[
            Step::layer("/bin/sh -c #(nop) ADD file:rootfs in / "),
            Step::empty("/bin/sh -c #(nop)  ENV DEBIAN_FRONTEND=noninteractive"),
            Step::layer("/bin/sh -c apt-get update && apt-get install -y curl"),
            Step::layer("/bin/sh -c rm -rf /var/lib/apt/lists/*"),
            Step::layer("RUN /bin/sh -c chmod 755 /usr/bin/tool && pip install x # buildkit"),
            Step::layer("COPY os-release /etc/os-release # buildkit"),
        ],
    )
}

trait LayerAs {
    fn layer_as(self, compress: Compress, media_type: &str) -> (common::push::Blob, Vec<u8>);
}

impl LayerAs for LayerBuilder {
    fn layer_as(self, compress: Compress, media_type: &str) -> (common::push::Blob, Vec<u8>) {
        let built = self.build(compress);
        (common::push::Blob::new(built.blob, media_type), built.tar)
    }
}

/// The expected `findings` array, exactly.
fn expected_findings() -> Value {
    let l0 = "/bin/sh -c #(nop) ADD file:rootfs in / ";
    let l1 = "/bin/sh -c apt-get update && apt-get install -y curl";
    let l2 = "/bin/sh -c rm -rf /var/lib/apt/lists/*";
    let l3 = "RUN /bin/sh -c chmod 755 /usr/bin/tool && pip install x # buildkit";
    let l4 = "COPY os-release /etc/os-release # buildkit";
    json!([
        {
            "kind": "removed-later", "bytes": 4500, "files": 2, "layers": [1, 2],
            "steps": [l1, l2],
            "paths": ["/var/lib/apt/lists/deb_Packages", "/var/lib/apt/lists/evil\u{1b}]0;pwned\u{7}"],
            "pathsOmitted": 0,
            "hint": "RUN apt-get update && apt-get install -y curl (layer 1) left 4.5 kB in \
                     /var/lib/apt/lists that RUN rm -rf /var/lib/apt/lists/* (layer 2) removes: \
                     delete it in the same RUN"
        },
        {
            "kind": "package-cache", "bytes": 2000, "files": 1, "layers": [1], "steps": [l1],
            "paths": ["/var/cache/apt/archives/curl.deb"], "pathsOmitted": 0,
            "hint": "RUN apt-get update && apt-get install -y curl (layer 1) left 2.0 kB of apt \
                     package cache in /var/cache/apt: add apt-get clean to the same RUN, or use \
                     a cache mount (RUN --mount=type=cache,target=/var/cache/apt)"
        },
        {
            "kind": "rewritten-same-content", "bytes": 1000, "files": 1, "layers": [0, 3],
            "steps": [l0, l3], "paths": ["/usr/bin/tool"], "pathsOmitted": 0,
            "hint": "RUN chmod 755 /usr/bin/tool && pip install x (layer 3) rewrites 1.0 kB in \
                     /usr/bin/tool with the same content that ADD file:rootfs in / (layer 0) \
                     wrote (only mode, owner or time changed): set them where the files are \
                     written (COPY --chown/--chmod) instead of in a later step"
        },
        {
            "kind": "package-cache", "bytes": 700, "files": 1, "layers": [3], "steps": [l3],
            "paths": ["/root/.cache/pip/http/wheel"], "pathsOmitted": 0,
            "hint": "RUN chmod 755 /usr/bin/tool && pip install x (layer 3) left 700 B of pip \
                     cache in /root/.cache/pip: use pip install --no-cache-dir, or use a cache \
                     mount (RUN --mount=type=cache,target=/root/.cache/pip)"
        },
        {
            "kind": "duplicate-content", "bytes": 600, "files": 2, "layers": [0, 3],
            "steps": [l0, l3],
            "paths": ["/usr/share/doc/b/copyright", "/usr/share/doc/c/copyright"],
            "pathsOmitted": 0,
            "hint": "/usr/share/doc/a/copyright (300 B) is stored 2 more times (600 B) by ADD \
                     file:rootfs in / (layer 0), RUN chmod 755 /usr/bin/tool && pip install x \
                     (layer 3): keep one copy and link to it, or write it once"
        },
        {
            "kind": "overwritten", "bytes": 100, "files": 1, "layers": [0, 4],
            "steps": [l0, l4], "paths": ["/etc/os-release"], "pathsOmitted": 0,
            "hint": "ADD file:rootfs in / (layer 0) wrote 100 B in /etc/os-release that COPY \
                     os-release /etc/os-release (layer 4) overwrites with new content: write only \
                     the final version, in one step"
        },
        {
            "kind": "temporary-files", "bytes": 85, "files": 2, "layers": [3], "steps": [l3],
            "paths": ["/tmp/build.log", "/tmp/x.o"], "pathsOmitted": 0,
            "hint": "RUN chmod 755 /usr/bin/tool && pip install x (layer 3) left 85 B in /tmp: \
                     delete it in the same RUN, or use a tmpfs mount \
                     (RUN --mount=type=tmpfs,target=/tmp)"
        }
    ])
}

/// The File tree pane of a screen: every line from the column where its box starts.
fn tree_pane(screen: &str) -> String {
    let column = screen
        .lines()
        .find_map(|l| l.find("┌ Files at").map(|byte| l[..byte].chars().count()))
        .unwrap_or_else(|| panic!("no File tree pane:\n{screen}"));
    screen
        .lines()
        .map(|l| l.chars().skip(column).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn push(registry: &Registry, repo: &str, image: &TestImage) -> String {
    Pusher::new(&registry.url())
        .push_image(repo, Some("1.0"), image)
        .await;
    format!("{}/{repo}:1.0", registry.host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lists_every_finding_field_by_field_for_gzip_and_zstd_layers() {
    let registry = Registry::start().await;
    let home = TempDir::new("findings-home");
    for (repo, compress, flavor, media_type) in [
        (
            "waste/gzip",
            Compress::Gzip,
            Flavor::DockerV2,
            mt::DOCKER_LAYER,
        ),
        (
            "waste/zstd",
            Compress::Zstd,
            Flavor::Oci,
            mt::OCI_LAYER_ZSTD,
        ),
    ] {
        let image = wasteful_image(compress, flavor, media_type);
        let reference = push(&registry, repo, &image).await;
        let out = cli::run(home.path(), &["--no-cache", "--json", "-", &reference]).await;
        let doc = json_ok(&out);
        let img = &doc["image"];
        assert_eq!(img["sizeBytes"], 11205, "{repo}");
        assert_eq!(img["fileBytes"], 5605, "{repo}");
        assert_eq!(img["shadowedBytes"], 5600, "{repo}");
        assert_eq!(img["reclaimableBytes"], 8985, "{repo}");
        let findings = doc["findings"].as_array().expect("findings array");
        let expected = expected_findings();
        let expected = expected.as_array().expect("expected array");
        assert_eq!(findings.len(), expected.len(), "{repo}: {findings:#?}");
        for (i, (got, want)) in findings.iter().zip(expected).enumerate() {
            for field in [
                "kind",
                "bytes",
                "files",
                "layers",
                "steps",
                "paths",
                "pathsOmitted",
                "hint",
            ] {
                assert_eq!(
                    got[field], want[field],
                    "{repo}: finding {i}, field {field}"
                );
            }
            assert_eq!(
                got.as_object().map(|o| o.len()),
                Some(8),
                "{repo}: finding {i} has exactly the documented fields: {got}"
            );
        }
        // The hidden kinds add up to shadowedBytes; all of them to reclaimableBytes.
        let sum = |hidden: bool| -> u64 {
            findings
                .iter()
                .filter(|f| {
                    let kind = f["kind"].as_str().unwrap_or("");
                    hidden
                        == matches!(
                            kind,
                            "removed-later" | "rewritten-same-content" | "overwritten"
                        )
                })
                .map(|f| f["bytes"].as_u64().unwrap_or(0))
                .sum()
        };
        assert_eq!(sum(true), 5600, "{repo}");
        assert_eq!(sum(true) + sum(false), 8985, "{repo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_summary_and_the_ci_report_give_findings_escaped() {
    let registry = Registry::start().await;
    let home = TempDir::new("findings-text");
    let image = wasteful_image(Compress::Gzip, Flavor::DockerV2, mt::DOCKER_LAYER);
    let reference = push(&registry, "waste/text", &image).await;

    // No terminal: the summary ends with the Findings section.
    let out = cli::run(home.path(), &["--no-cache", &reference]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let section = &text[text.find("Findings:").expect("a Findings section")..];
    assert!(
        section.starts_with(
            "Findings: 9.0 kB reclaimable (8985 bytes) in 7 findings; the 5 largest:\n\
             \x20 1.  removed-later, 4.5 kB in 2 files\n\
             \x20     RUN apt-get update && apt-get install -y curl (layer 1) left 4.5 kB in \
             /var/lib/apt/lists that RUN rm -rf /var/lib/apt/lists/* (layer 2) removes: delete \
             it in the same RUN\n\
             \x20     layer 1: RUN apt-get update && apt-get install -y curl\n\
             \x20     layer 2: RUN rm -rf /var/lib/apt/lists/*\n\
             \x20     /var/lib/apt/lists/deb_Packages\n\
             \x20     /var/lib/apt/lists/evil\\x1b]0;pwned\\x07\n\
             \x20 2.  package-cache, 2.0 kB in 1 file\n"
        ),
        "{section}"
    );
    assert!(
        section.contains(
            "  5.  duplicate-content, 600 B in 2 files\n\
             \x20     /usr/share/doc/a/copyright (300 B) is stored 2 more times"
        ),
        "{section}"
    );
    // BuildKit's step is shown as written in a Dockerfile.
    assert!(
        section.contains("layer 3: RUN chmod 755 /usr/bin/tool && pip install x\n"),
        "{section}"
    );
    // The sixth and seventh are left out of the summary (they are in --json).
    assert!(!section.contains("temporary-files"), "{section}");
    assert!(
        !section.contains('\x1b') && !section.contains('\x07'),
        "{section}"
    );

    // --ci: the rules fail (efficiency 5605 / 11205), and the report gives the reasons.
    let out = cli::run(home.path(), &["--no-cache", "--ci", &reference]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report = stdout(&out);
    let reasons = &report[report
        .find("Reasons")
        .unwrap_or_else(|| panic!("no reasons: {report}"))..];
    assert!(
        reasons.starts_with("Reasons (the 3 largest of 7 findings, 9.0 kB reclaimable in all):\n"),
        "{reasons}"
    );
    assert!(
        reasons.contains("  1.  removed-later, 4.5 kB in 2 files\n"),
        "{reasons}"
    );
    // One path each, and how many more there are.
    assert!(
        reasons.contains("/lists/deb_Packages\n      … 1 more\n"),
        "{reasons}"
    );
    assert!(
        reasons.contains("left 2.0 kB of apt package cache"),
        "{reasons}"
    );
    assert!(reasons.contains("rewritten-same-content"), "{reasons}");
    assert!(!reasons.contains("pip cache"), "only three: {reasons}");
    // The verdict stays last.
    assert!(
        // highestWastedBytes and the three rules dive does not have are skipped.
        reasons.contains("FAIL: lowestEfficiency") && report.trim_end().ends_with("[Skipped:4]"),
        "{report}"
    );

    // Rules that pass need no reasons.
    let out = cli::run(
        home.path(),
        &[
            "--no-cache",
            "--ci",
            "--lowestEfficiency",
            "0.1",
            "--highestUserWastedPercent",
            "disabled",
            &reference,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(!stdout(&out).contains("Reasons"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_findings_view_opens_and_enter_shows_the_paths() {
    if !Tmux::available() {
        eprintln!("NOTE: tmux is not installed; the end-to-end Findings view test is skipped");
        return;
    }
    const WAIT: Duration = Duration::from_secs(30);
    let registry = Registry::start().await;
    let image = wasteful_image(Compress::Zstd, Flavor::Oci, mt::OCI_LAYER_ZSTD);
    let reference = push(&registry, "waste/explorer", &image).await;
    let home = TempDir::new("findings-explorer");
    let tmux = Tmux::start(
        130,
        36,
        std::path::Path::new(env!("CARGO_BIN_EXE_layerscope")),
        &[&reference],
        &[
            (
                "LAYERSCOPE_CONFIG_DIR",
                &home.path().join("config").display().to_string(),
            ),
            (
                "LAYERSCOPE_CACHE_DIR",
                &home.path().join("cache").display().to_string(),
            ),
        ],
    );
    let key = |k: &str| {
        tmux.send(&[k]);
        std::thread::sleep(Duration::from_millis(150));
    };
    tmux.wait_for("9.0 kB reclaimable", WAIT);

    // F opens the view: one row per finding, largest first, the first one detailed.
    key("F");
    let screen = tmux.wait_for("Findings (7)", WAIT);
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(" · ") && (l.contains('→') || l.contains("  package-cache")))
        .collect();
    assert!(rows.len() >= 4, "{screen}");
    assert!(rows[0].contains("4.5 kB  removed-later"), "{screen}");
    assert!(rows[0].contains("1→2      /var/lib/apt/lists"), "{screen}");
    assert!(
        screen.contains("layer 2  RUN rm -rf /var/lib/apt/lists/*"),
        "{screen}"
    );
    // The evil name is shown escaped: the terminal title was not changed.
    assert!(screen.contains("evil\\x1b]0;pwned\\x07"), "{screen}");
    assert_ne!(tmux.format("#{pane_title}"), "pwned");

    // Down to the package cache, Enter: layer 1 selected, the tree shows the cache file only.
    key("Down");
    tmux.wait_for("left 2.0 kB of apt package cache", WAIT);
    key("Enter");
    let screen = tmux.wait_for("finding 2: package-cache (1 path) at layer 1", WAIT);
    let tree = tree_pane(&screen);
    assert!(tree.contains("Files at layer 1"), "{screen}");
    assert!(tree.contains("└── curl.deb"), "{screen}");
    let files = tree.lines().filter(|l| l.contains("-rw-")).count();
    assert_eq!(files, 1, "filtered to the finding's paths: {screen}");
    // Esc clears the filter; F brings the view back on the same finding; Esc leaves it.
    key("Escape");
    tmux.wait_until(WAIT, "the filter cleared", |s| {
        tree_pane(s).lines().filter(|l| l.contains("-rw-")).count() > 1
    });
    key("F");
    tmux.wait_for("left 2.0 kB of apt package cache", WAIT);
    key("Escape");
    tmux.wait_until(WAIT, "the view closed", |s| !s.contains("Findings (7)"));
    key("q");
    let ended = tmux.wait_ended(WAIT);
    assert_eq!(ended.code, 0, "{}", ended.screen);
}
