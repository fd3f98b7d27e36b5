//! The `layerscope` binary end to end against a real registry: `--ci`, `--json`, the text
//! summary, `.dive-ci`, and the one-line errors with exit code 2. Figures are checked against
//! values computed by hand in the comments.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use serde_json::Value;

use common::cli::{self, json, stderr, stdout};
use common::layers::{Compress, LayerBuilder};
use common::push::{build_image, index_json, mt, Blob, Flavor, Pusher, Step, TestImage};
use common::registry::{FaultProxy, Registry, Reply, TempDir};

/// Run the binary with an environment that reads nothing of this machine's Docker setup and is
/// not in CI mode unless asked.
async fn layerscope(home: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = cli::command(home);
    command.args(args).current_dir(cwd);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run layerscope")
}

fn layer(builder: LayerBuilder, how: Compress, media_type: &str) -> (Blob, Vec<u8>) {
    let built = builder.build(how);
    (Blob::new(built.blob, media_type), built.tar)
}

fn sized(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Three gzip layers with overwrites, a whiteout and an opaque directory.
///
/// Visits (path: sizes):
///   /etc/os-release: 100                  sum 100   min 100  count 1
///   /bin/tool: 1000, 1200, 1500           sum 3700  min 1000 count 3
///   /data/big.bin: 5000, 0 (whiteout)     sum 5000  min 0    count 2
///   /data/keep.txt: 10, 0 (opaque)        sum 10    min 0    count 2
///   /app/main: 300                        sum 300   min 300  count 1
///   /data/new.txt: 20                     sum 20    min 20   count 1
/// Σsum = 9130, Σmin = 1420 → efficiency = 1420/9130.
/// wasted = 3700 + 5000 + 10 = 8710. Layer sizes 6110, 1500, 1520 → userWasted = 8710/3020.
/// Visible at the end: os-release 100, tool 1500, main 300, new.txt 20 → 4 files, 1920 bytes;
/// shadowed = 9130 − 1920 = 7210.
fn wasteful_image() -> TestImage {
    let l0 = LayerBuilder::new()
        .file("etc/os-release", &sized(100))
        .file("bin/tool", &sized(1000))
        .file("data/big.bin", &sized(5000))
        .file("data/keep.txt", &sized(10));
    let l1 = LayerBuilder::new()
        .file("bin/tool", &sized(1200))
        .whiteout("data/big.bin")
        .file("app/main", &sized(300));
    let l2 = LayerBuilder::new()
        .file("bin/tool", &sized(1500))
        .opaque("data")
        .file("data/new.txt", &sized(20));
    build_image(
        Flavor::DockerV2,
        ("linux", "amd64", None),
        vec![
            layer(l0, Compress::Gzip, mt::DOCKER_LAYER),
            layer(l1, Compress::Gzip, mt::DOCKER_LAYER),
            layer(l2, Compress::Gzip, mt::DOCKER_LAYER),
        ],
        &[
            Step::layer("/bin/sh -c #(nop) ADD file:rootfs in /"),
            Step::empty("/bin/sh -c #(nop)  ENV APP=1"),
            Step::layer("/bin/sh -c make tool && rm /data/big.bin"),
            Step::layer("COPY data /data"),
            Step::empty("CMD [\"/app/main\"]"),
        ],
    )
}

/// A clean image for `arch`: a zstd layer and a gzip layer, nothing overwritten.
/// amd64: /usr/bin/app 2048 + /etc/app.conf 64 → efficiency 1, 2 files, 2112 bytes.
/// arm64: /usr/bin/app 4096 + /etc/app.conf 64 → 4160 bytes.
fn clean_image(arch: &str, app_size: usize) -> TestImage {
    let l0 = LayerBuilder::new().file("usr/bin/app", &sized(app_size));
    let l1 = LayerBuilder::new().file("etc/app.conf", &sized(64));
    build_image(
        Flavor::Oci,
        (
            "linux",
            arch,
            if arch == "arm64" { Some("v8") } else { None },
        ),
        vec![
            layer(l0, Compress::Zstd, mt::OCI_LAYER_ZSTD),
            layer(l1, Compress::Gzip, mt::OCI_LAYER_GZIP),
        ],
        &[
            Step::layer("COPY app /usr/bin/app"),
            Step::layer("COPY conf /etc"),
        ],
    )
}

async fn registry_with_wasteful_image() -> (Registry, TestImage) {
    let registry = Registry::start().await;
    let image = wasteful_image();
    Pusher::new(&registry.url())
        .push_image("hello-world-java", Some("latest"), &image)
        .await;
    (registry, image)
}

fn assert_close(value: &Value, expected: f64) {
    let got = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"));
    assert!(
        (got - expected).abs() < 1e-9,
        "expected {expected}, got {got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_json_on_stdout_has_the_hand_computed_figures_and_fails_the_rules() {
    let (registry, image) = registry_with_wasteful_image().await;
    let home = TempDir::new("home");
    let reference = format!("{}/hello-world-java", registry.host);
    let out = layerscope(
        home.path(),
        home.path(),
        &["--ci", "--json", "-", &reference],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["schemaVersion"], 1);
    let img = &doc["image"];
    assert_eq!(img["reference"], format!("{reference}:latest"));
    assert_eq!(img["digest"], image.manifest_digest);
    assert_eq!(img["mediaType"], mt::DOCKER_MANIFEST);
    assert_eq!(img["platform"], "linux/amd64");
    assert_eq!(img["sizeBytes"], 9130);
    let compressed: usize = image.layers.iter().map(|l| l.blob.bytes.len()).sum();
    assert_eq!(img["compressedSizeBytes"], compressed);
    assert_close(&img["efficiency"], 1420.0 / 9130.0);
    assert_eq!(img["wastedBytes"], 8710);
    assert_close(&img["userWastedPercent"], 8710.0 / 3020.0);
    assert_eq!(img["shadowedBytes"], 7210);
    assert_eq!(img["fileCount"], 4);
    assert_eq!(img["fileBytes"], 1920);

    let layers = doc["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3);
    let sizes: Vec<u64> = layers
        .iter()
        .map(|l| l["sizeBytes"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(sizes, vec![6110, 1500, 1520]);
    for (got, want) in layers.iter().zip(&image.layers) {
        assert_eq!(got["digest"], want.blob.digest);
        assert_eq!(got["diffId"], want.diff_id);
        assert_eq!(got["compressedSizeBytes"], want.blob.bytes.len());
        assert_eq!(got["mediaType"], mt::DOCKER_LAYER);
    }
    assert_eq!(
        layers[1]["createdBy"],
        "/bin/sh -c make tool && rm /data/big.bin"
    );
    // Layer 0 adds etc, etc/os-release, bin, bin/tool, data, data/big.bin, data/keep.txt.
    assert_eq!(
        (
            &layers[0]["added"],
            &layers[0]["modified"],
            &layers[0]["removed"]
        ),
        (&Value::from(7), &Value::from(0), &Value::from(0))
    );
    // Layer 1: app and app/main added; bin/tool, bin and data modified; data/big.bin removed.
    assert_eq!(
        (
            &layers[1]["added"],
            &layers[1]["modified"],
            &layers[1]["removed"]
        ),
        (&Value::from(2), &Value::from(3), &Value::from(1))
    );
    // Layer 2: data/new.txt added; bin/tool, bin, data modified; data/keep.txt removed.
    assert_eq!(
        (
            &layers[2]["added"],
            &layers[2]["modified"],
            &layers[2]["removed"]
        ),
        (&Value::from(1), &Value::from(3), &Value::from(1))
    );

    let history = doc["history"].as_array().expect("history");
    let mapped: Vec<Value> = history.iter().map(|h| h["layerIndex"].clone()).collect();
    assert_eq!(
        mapped,
        vec![
            Value::from(0),
            Value::Null,
            Value::from(1),
            Value::from(2),
            Value::Null
        ]
    );
    assert_eq!(history[1]["emptyLayer"], true);

    let ineff = doc["inefficiencies"].as_array().expect("inefficiencies");
    let listed: Vec<(String, u64, u64)> = ineff
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap_or("").to_string(),
                i["count"].as_u64().unwrap_or(0),
                i["wastedBytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("/data/big.bin".to_string(), 2, 5000),
            ("/bin/tool".to_string(), 3, 3700),
            ("/data/keep.txt".to_string(), 2, 10),
        ]
    );

    let ci = &doc["ci"];
    assert_eq!(ci["pass"], false);
    let statuses: Vec<(String, String)> = ci["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_string(),
                r["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("lowestEfficiency".to_string(), "FAIL".to_string()),
            ("highestWastedBytes".to_string(), "SKIP".to_string()),
            ("highestUserWastedPercent".to_string(), "FAIL".to_string()),
            // The rules dive does not have are disabled by default.
            ("highestReclaimableBytes".to_string(), "SKIP".to_string()),
            ("highestSizeIncrease".to_string(), "SKIP".to_string()),
            ("highestWastedIncrease".to_string(), "SKIP".to_string()),
        ]
    );
    // The human report goes to stderr so stdout stays JSON.
    assert!(
        stderr(&out).contains("FAIL: lowestEfficiency"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_a_nested_repository_with_zstd_layers_passes_ci() {
    let registry = Registry::start().await;
    let amd64 = clean_image("amd64", 2048);
    let arm64 = clean_image("arm64", 4096);
    let attestation = common::push::attestation_for(&amd64);
    let pusher = Pusher::new(&registry.url());
    let repo = "team/project/app";
    for image in [&amd64, &arm64, &attestation] {
        pusher.push_image(repo, None, image).await;
    }
    let index = index_json(
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        &[(&attestation, &amd64)],
    );
    pusher
        .push_manifest(repo, "1.4", &index, mt::OCI_INDEX)
        .await;
    let index_digest = common::push::sha256(&index);
    let home = TempDir::new("home");
    let reference = format!("{}/{repo}:1.4", registry.host);

    let out = layerscope(
        home.path(),
        home.path(),
        &[
            "--ci",
            "--json",
            "-",
            "--platform",
            "linux/amd64",
            &reference,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let doc = json(&out);
    let img = &doc["image"];
    assert_eq!(img["digest"], index_digest);
    assert_eq!(img["manifestDigest"], amd64.manifest_digest);
    assert_eq!(img["mediaType"], mt::OCI_MANIFEST);
    assert_eq!(img["platform"], "linux/amd64");
    assert_close(&img["efficiency"], 1.0);
    assert_eq!(img["wastedBytes"], 0);
    assert_close(&img["userWastedPercent"], 0.0);
    assert_eq!(img["fileCount"], 2);
    assert_eq!(img["fileBytes"], 2112);
    assert_eq!(img["sizeBytes"], 2112);
    assert_eq!(doc["layers"][0]["mediaType"], mt::OCI_LAYER_ZSTD);
    assert_eq!(doc["ci"]["pass"], true);

    let out = layerscope(
        home.path(),
        home.path(),
        &["--json", "-", "--platform", "linux/arm64", &reference],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["image"]["manifestDigest"], arm64.manifest_digest);
    // As the index names it.
    assert_eq!(doc["image"]["platform"], "linux/arm64/v8");
    assert_eq!(doc["image"]["fileBytes"], 4160);
    assert!(doc.get("ci").is_none(), "ci only in CI mode");

    let out = layerscope(
        home.path(),
        home.path(),
        &["--json", "-", "--platform", "linux/s390x", &reference],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64") && !err.contains("unknown"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_a_text_summary_is_printed() {
    let (registry, _) = registry_with_wasteful_image().await;
    let home = TempDir::new("home");
    let reference = format!("{}/hello-world-java:latest", registry.host);
    let out = layerscope(home.path(), home.path(), &[&reference], &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Layers (3):"), "{text}");
    assert!(text.contains("RUN make tool && rm /data/big.bin"), "{text}");
    assert!(text.contains("ENV APP=1"), "{text}");
    assert!(text.contains("Efficiency:          15.5531 %"), "{text}");
    assert!(
        text.contains("Wasted bytes:        8.7 kB (8710 bytes)"),
        "{text}"
    );
    assert!(text.contains("/data/big.bin"), "{text}");
    // Not a terminal: no progress line.
    assert_eq!(stderr(&out), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dive_ci_file_flags_and_ci_env_set_the_rules() {
    let (registry, _) = registry_with_wasteful_image().await;
    let home = TempDir::new("home");
    let work = TempDir::new("work");
    std::fs::write(
        work.path().join(".dive-ci"),
        "rules:\n  lowestEfficiency: 0.1\n  highestWastedBytes: 9KB\n  highestUserWastedPercent: disabled\n",
    )
    .expect("write .dive-ci");
    let reference = format!("{}/hello-world-java", registry.host);

    // CI=true turns CI mode on; the file's thresholds pass this image.
    let out = layerscope(home.path(), work.path(), &[&reference], &[("CI", "true")]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    assert!(report.contains("PASS: lowestEfficiency"), "{report}");
    assert!(report.contains("PASS: highestWastedBytes"), "{report}");
    assert!(
        report.contains("SKIP: highestUserWastedPercent"),
        "{report}"
    );
    assert!(report.contains("Result: PASS"), "{report}");

    // A flag overrides the file.
    let out = layerscope(
        home.path(),
        work.path(),
        &["--ci", "--highestWastedBytes", "8KB", &reference],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL: highestWastedBytes"));

    // --json FILE writes the export with the ci section and leaves stdout to the report.
    let out = layerscope(
        home.path(),
        work.path(),
        &["--ci", "--json", "report.json", &reference],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Result: PASS"));
    let written: Value = serde_json::from_slice(
        &std::fs::read(work.path().join("report.json")).expect("report written"),
    )
    .expect("report is JSON");
    assert_eq!(written["ci"]["pass"], true);
    assert_eq!(written["image"]["wastedBytes"], 8710);

    // A bad rule file is an error, not a pass.
    std::fs::write(
        work.path().join(".dive-ci"),
        "rules:\n  lowestEfficency: 0.1\n",
    )
    .expect("write .dive-ci");
    let out = layerscope(home.path(), work.path(), &["--ci", &reference], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lowestEfficency"), "{}", stderr(&out));
}

/// One line on stderr, starting with the program's name, and exit code 2.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("layerscope: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_one_line_errors_and_exit_code_2() {
    let (registry, image) = registry_with_wasteful_image().await;
    let home = TempDir::new("home");
    let h = home.path();
    // Without the cache: a layer verified in one run would be served from it in the next,
    // and the faults below must each meet the network.
    let run = |args: Vec<String>| async move {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.insert(0, "--no-cache");
        layerscope(h, h, &args, &[]).await
    };

    let out = run(vec!["--json".into(), "-".into(), "Bad/Name".into()]).await;
    assert_one_line_error(&out, "uppercase");

    let out = run(vec![format!("{}/nope:latest", registry.host)]).await;
    assert_one_line_error(&out, "not found");

    let out = run(vec![format!("{}/hello-world-java:missing", registry.host)]).await;
    assert_one_line_error(&out, "missing");

    // Nothing listens on a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = run(vec![format!("127.0.0.1:{port}/app")]).await;
    assert_one_line_error(&out, "refused");

    // A blob whose bytes do not match its digest.
    let wrong = image.layers[1].blob.clone();
    let corrupt = FaultProxy::start(
        &registry.url(),
        Arc::new(move |r, _| {
            r.path().ends_with(&wrong.digest).then(|| {
                let mut bytes = wrong.bytes.clone();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x55;
                Reply::new(200).body(bytes)
            })
        }),
    )
    .await;
    let out = run(vec![format!("{}/hello-world-java", corrupt.host())]).await;
    assert_one_line_error(&out, "digest mismatch");

    // An HTML answer.
    let html = FaultProxy::start(
        &registry.url(),
        Arc::new(|_, _| {
            Some(
                Reply::new(200)
                    .header("Content-Type", "text/html")
                    .body("<html><body>captive portal</body></html>"),
            )
        }),
    )
    .await;
    let out = run(vec![format!("{}/hello-world-java", html.host())]).await;
    assert_one_line_error(&out, "HTML");

    // A host name no resolver can look up (a 70-character label leaves no packet).
    let out = run(vec![format!("{}.test/app", "a".repeat(70))]).await;
    assert_one_line_error(&out, "unknown host");

    // A blob cut short, every time it is asked for.
    let cut = image.layers[0].blob.clone();
    let truncated = FaultProxy::start(
        &registry.url(),
        Arc::new(move |r, _| {
            r.path()
                .ends_with(&cut.digest)
                .then(|| Reply::new(200).body(cut.bytes[..cut.bytes.len() / 2].to_vec()))
        }),
    )
    .await;
    let out = run(vec![format!("{}/hello-world-java", truncated.host())]).await;
    assert_one_line_error(&out, "truncated");

    // Manifests this program cannot use.
    let schema1 = FaultProxy::start(
        &registry.url(),
        Arc::new(|r, _| {
            r.path().contains("/manifests/").then(|| {
                Reply::new(200)
                    .header(
                        "Content-Type",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws",
                    )
                    .body(
                        r#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[],"history":[]}"#,
                    )
            })
        }),
    )
    .await;
    let out = run(vec![format!("{}/hello-world-java", schema1.host())]).await;
    assert_one_line_error(&out, "re-push");
    let invalid = FaultProxy::start(
        &registry.url(),
        Arc::new(|r, _| {
            r.path().contains("/manifests/").then(|| {
                Reply::new(200)
                    .header("Content-Type", mt::DOCKER_MANIFEST)
                    .body(r#"{"schemaVersion": 2, "config": "#)
            })
        }),
    )
    .await;
    let out = run(vec![format!("{}/hello-world-java", invalid.host())]).await;
    assert_one_line_error(&out, "manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_registry_is_waited_out() {
    let (registry, _) = registry_with_wasteful_image().await;
    let home = TempDir::new("home");
    let manifest_requests = std::sync::atomic::AtomicUsize::new(0);
    let limited = FaultProxy::start(
        &registry.url(),
        Arc::new(move |r, _| {
            if !r.path().contains("/manifests/") {
                return None;
            }
            let n = manifest_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (n < 2).then(|| {
                Reply::new(429)
                    .header("Retry-After", "1")
                    .header("Content-Type", "application/json")
                    .body(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#)
            })
        }),
    )
    .await;
    let reference = format!("{}/hello-world-java", limited.host());
    let out = layerscope(home.path(), home.path(), &["--json", "-", &reference], &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(json(&out)["image"]["wastedBytes"], 8710);
    let refused = limited
        .requests()
        .iter()
        .filter(|(who, _, status)| who == "fault" && *status == 429)
        .count();
    assert_eq!(refused, 2);
}
