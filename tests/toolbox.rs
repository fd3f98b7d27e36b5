//! The registry toolbox subcommands end to end: the real binary against a real registry, on a
//! Docker v2 manifest, an OCI manifest and an OCI index. Expected bytes, digests and sizes come
//! from the images the test builds and pushes itself.

mod common;

use std::process::Output;
use std::sync::Arc;

use serde_json::Value;

use common::cli::{self, json, stderr, stdout};
use common::layers::{Compress, LayerBuilder};
use common::push::{
    attestation_for, build_image, index_json, mt, sha256, Blob, Flavor, Pusher, Step, TestImage,
};
use common::registry::{
    FaultProxy, IssuerConfig, Registry, RegistryAuth, RegistryConfig, Reply, Request, TempDir,
    TokenIssuer,
};

/// A user of the htpasswd registry.
const USER: (&str, &str) = ("bob", "builder");

/// Exit code 0, with stderr shown when not.
fn assert_ok(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// One line on stderr, starting with the program's name, exit code 2, nothing on stdout.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("layerscope: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
}

fn sized(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn layer(builder: LayerBuilder, how: Compress, media_type: &str) -> (Blob, Vec<u8>) {
    let built = builder.build(how);
    (Blob::new(built.blob, media_type), built.tar)
}

/// Docker v2: two gzip layers and two metadata-only steps.
/// Layer 0: /etc/os-release 100 + /bin/tool 1000 = 1100 bytes of files.
/// Layer 1: /app/main 300.
/// History (oldest first): ADD (#0), ENV (meta), RUN (#1), CMD (meta).
fn docker_image() -> TestImage {
    let l0 = LayerBuilder::new()
        .file("etc/os-release", &sized(1, 100))
        .file("bin/tool", &sized(2, 1000));
    let l1 = LayerBuilder::new().file("app/main", &sized(3, 300));
    build_image(
        Flavor::DockerV2,
        ("linux", "amd64", None),
        vec![
            layer(l0, Compress::Gzip, mt::DOCKER_LAYER),
            layer(l1, Compress::Gzip, mt::DOCKER_LAYER),
        ],
        &[
            Step::layer("/bin/sh -c #(nop) ADD file:0123456789abcdef in / "),
            Step::empty("/bin/sh -c #(nop)  ENV APP_HOME=/app"),
            Step::layer("/bin/sh -c make -C /src install && strip /app/main && rm -rf /src"),
            Step::empty("/bin/sh -c #(nop)  CMD [\"/app/main\"]"),
        ],
    )
}

/// OCI: a zstd layer and a gzip layer, for `arch`; `/usr/bin/app` is `app_size` bytes.
fn oci_image(arch: &str, app_size: usize) -> TestImage {
    let l0 = LayerBuilder::new().file("usr/bin/app", &sized(4, app_size));
    let l1 = LayerBuilder::new().file("etc/app.conf", &sized(5, 64));
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
            Step::layer("COPY app /usr/bin/app # buildkit"),
            Step::layer("COPY conf /etc # buildkit"),
        ],
    )
}

/// A registry with `docker:v1` (Docker v2), `oci:v1` (OCI) and `multi:v1` (an OCI index of
/// amd64 and arm64 with an attestation).
struct Fixture {
    registry: Registry,
    docker: TestImage,
    oci: TestImage,
    amd64: TestImage,
    arm64: TestImage,
    index: Vec<u8>,
    home: TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let registry = Registry::start().await;
        let pusher = Pusher::new(&registry.url());
        let docker = docker_image();
        let oci = oci_image("amd64", 2048);
        pusher.push_image("docker", Some("v1"), &docker).await;
        pusher.push_image("oci", Some("v1"), &oci).await;
        let amd64 = oci_image("amd64", 1024);
        let arm64 = oci_image("arm64", 4096);
        let attestation = attestation_for(&amd64);
        for image in [&amd64, &arm64, &attestation] {
            pusher.push_image("multi", None, image).await;
        }
        let index = index_json(
            &[
                (&amd64, "linux", "amd64", None),
                (&arm64, "linux", "arm64", Some("v8")),
            ],
            &[(&attestation, &amd64)],
        );
        pusher
            .push_manifest("multi", "v1", &index, mt::OCI_INDEX)
            .await;
        Fixture {
            registry,
            docker,
            oci,
            amd64,
            arm64,
            index,
            home: TempDir::new("home"),
        }
    }

    fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.registry.host)
    }

    async fn run(&self, args: &[&str]) -> Output {
        cli::run(self.home.path(), args).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_prints_docker_oci_and_index_manifests_as_served() {
    let f = Fixture::start().await;
    for (repo, image) in [("docker:v1", &f.docker), ("oci:v1", &f.oci)] {
        let reference = f.image(repo);
        // --raw: the exact bytes, no newline added.
        let out = f.run(&["manifest", "--raw", &reference]).await;
        assert_ok(&out);
        assert_eq!(out.stdout, image.manifest, "{repo}");

        let out = f.run(&["manifest", "--json", &reference]).await;
        assert_ok(&out);
        let doc = json(&out);
        assert_eq!(doc["digest"], image.manifest_digest);
        assert_eq!(doc["mediaType"], image.manifest_media_type.as_str());
        assert_eq!(doc["size"], image.manifest.len());
        assert_eq!(doc["reference"], reference);
        assert_eq!(doc["manifest"]["config"]["digest"], image.config.digest);
        assert_eq!(
            doc["manifest"]["layers"][1]["size"],
            image.layers[1].blob.bytes.len()
        );

        let out = f.run(&["manifest", &reference]).await;
        assert_ok(&out);
        let text = stdout(&out);
        assert!(
            text.contains(&format!("Digest:      {}", image.manifest_digest)),
            "{text}"
        );
        assert!(
            text.contains(&format!("Media type:  {}", image.manifest_media_type)),
            "{text}"
        );
        assert!(
            text.contains(&format!("Size:        {} bytes", image.manifest.len())),
            "{text}"
        );
        assert!(text.contains("Layers (2, "), "{text}");
        for layer in &image.layers {
            assert!(text.contains(&layer.blob.digest), "{text}");
        }
    }

    // The index: platforms listed, the attestation marked as one.
    let reference = f.image("multi:v1");
    let out = f.run(&["manifest", &reference]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains(mt::OCI_INDEX), "{text}");
    assert!(text.contains("Platforms (2, and 1 attestation):"), "{text}");
    for (platform, image) in [("linux/amd64", &f.amd64), ("linux/arm64/v8", &f.arm64)] {
        let row = text
            .lines()
            .find(|l| l.contains(&image.manifest_digest))
            .unwrap_or_else(|| panic!("no row for {platform}: {text}"));
        assert!(row.trim_start().starts_with(platform), "{row}");
    }
    assert!(
        text.contains(&format!("(attestation for {})", f.amd64.manifest_digest)),
        "{text}"
    );

    let out = f.run(&["manifest", "--raw", &reference]).await;
    assert_ok(&out);
    assert_eq!(out.stdout, f.index);

    // --platform picks one entry.
    let out = f
        .run(&["manifest", "--raw", "--platform", "linux/arm64", &reference])
        .await;
    assert_ok(&out);
    assert_eq!(out.stdout, f.arm64.manifest);
    let out = f
        .run(&[
            "manifest",
            "--json",
            "--platform",
            "linux/arm64",
            &reference,
        ])
        .await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["digest"], f.arm64.manifest_digest);
    assert_eq!(doc["index"]["digest"], sha256(&f.index));
    assert_eq!(doc["index"]["platform"], "linux/arm64/v8");

    let out = f
        .run(&["manifest", "--platform", "linux/s390x", &reference])
        .await;
    assert_one_line_error(&out, "linux/arm64/v8");
    // A single-platform image must be the platform asked for.
    let out = f
        .run(&[
            "manifest",
            "--platform",
            "linux/arm64",
            &f.image("docker:v1"),
        ])
        .await;
    assert_one_line_error(&out, "available: linux/amd64");
    let out = f
        .run(&[
            "manifest",
            "--raw",
            "--platform",
            "linux/amd64",
            &f.image("docker:v1"),
        ])
        .await;
    assert_ok(&out);
    assert_eq!(out.stdout, f.docker.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reads_like_docker_image_inspect() {
    let f = Fixture::start().await;
    let cases = [
        ("docker:v1", &f.docker, None, "amd64"),
        ("oci:v1", &f.oci, None, "amd64"),
        ("multi:v1", &f.arm64, Some("linux/arm64"), "arm64"),
    ];
    for (repo, image, platform, arch) in cases {
        let reference = f.image(repo);
        let mut args = vec!["config", "--json", reference.as_str()];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        let out = f.run(&args).await;
        assert_ok(&out);
        let doc = json(&out);
        assert_eq!(doc["Id"], image.config.digest, "{repo}");
        assert_eq!(doc["RepoTags"][0], reference);
        let pulled = if platform.is_some() {
            sha256(&f.index)
        } else {
            image.manifest_digest.clone()
        };
        let (name, _) = reference.rsplit_once(':').expect("a tag");
        assert_eq!(doc["RepoDigests"][0], format!("{name}@{pulled}"));
        assert_eq!(doc["Architecture"], arch);
        assert_eq!(doc["Os"], "linux");
        assert_eq!(doc["Created"], "2024-01-01T00:00:00Z");
        assert_eq!(doc["Config"]["Env"][0], "PATH=/usr/bin:/bin");
        assert_eq!(doc["Config"]["WorkingDir"], "/srv");
        let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        assert_eq!(doc["RootFS"]["Layers"], serde_json::json!(diff_ids));
        let compressed: usize = image.layers.iter().map(|l| l.blob.bytes.len()).sum();
        assert_eq!(doc["Size"], compressed);
        assert_eq!(doc["Manifest"]["Digest"], image.manifest_digest);

        args[1] = "--raw";
        let out = f.run(&args).await;
        assert_ok(&out);
        assert_eq!(out.stdout, image.config.bytes, "{repo}");
    }
    let out = f
        .run(&[
            "config",
            "--platform",
            "linux/arm64/v8",
            &f.image("multi:v1"),
        ])
        .await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Id:             {}", f.arm64.config.digest)),
        "{text}"
    );
    assert!(text.contains("Platform:       linux/arm64/v8"), "{text}");
    assert!(text.contains("    PATH=/usr/bin:/bin"), "{text}");
    assert!(text.contains("  WorkingDir:   /srv"), "{text}");
    assert!(
        text.contains("History:        2 steps: 2 with a layer, 0 metadata-only"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_steps_newest_first_with_metadata_steps_marked() {
    let f = Fixture::start().await;
    let reference = f.image("docker:v1");
    let out = f.run(&["history", &reference]).await;
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("LAYER") && lines[0].contains("CREATED BY"),
        "{text}"
    );
    // Newest first: CMD (meta), RUN (#1), ENV (meta), ADD (#0).
    let first_column: Vec<&str> = lines[1..5]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(first_column, vec!["meta", "#1", "meta", "#0"], "{text}");
    assert!(lines[1].contains("CMD [\"/app/main\"]"), "{text}");
    assert!(lines[1].trim_end().ends_with("0B"), "{text}");
    // CREATED BY is cut at 45 characters, as docker history does.
    assert!(
        lines[2].contains("RUN make -C /src install && strip /app/main …"),
        "{text}"
    );
    let compressed = |i: usize| f.docker.layers[i].blob.bytes.len();
    let shown = |i: usize| layerscope::toolbox::docker_size(compressed(i) as u64);
    assert!(lines[2].trim_end().ends_with(&shown(1)), "{text}");
    assert!(lines[4].trim_end().ends_with(&shown(0)), "{text}");
    assert!(
        lines[5].starts_with("4 steps: 2 with a layer, 2 metadata-only"),
        "{text}"
    );
    assert!(lines[5].contains("compressed"), "{text}");

    let out = f.run(&["history", "--no-trunc", &reference]).await;
    assert_ok(&out);
    assert!(stdout(&out).contains("strip /app/main && rm -rf /src"));

    // JSON, oldest first, with uncompressed sizes (the layers are downloaded for them).
    let out = f
        .run(&[
            "history",
            "--json",
            "--oldest-first",
            "--uncompressed",
            &reference,
        ])
        .await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["sizes"], "uncompressed");
    let steps = doc["steps"].as_array().expect("steps");
    let summary: Vec<(u64, bool, Value, Value)> = steps
        .iter()
        .map(|s| {
            (
                s["index"].as_u64().unwrap_or(99),
                s["metadataOnly"].as_bool().unwrap_or(false),
                s["layerIndex"].clone(),
                s["sizeBytes"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, false, Value::from(0), Value::from(1100)),
            (1, true, Value::Null, Value::from(0)),
            (2, false, Value::from(1), Value::from(300)),
            (3, true, Value::Null, Value::from(0)),
        ]
    );
    assert_eq!(steps[0]["layerDigest"], f.docker.layers[0].blob.digest);
    assert_eq!(steps[2]["compressedSizeBytes"], compressed(1));
    assert_eq!(steps[1]["emptyLayer"], true);
    assert_eq!(
        steps[1]["createdBy"],
        "/bin/sh -c #(nop)  ENV APP_HOME=/app"
    );

    // OCI, and an index entry.
    let out = f.run(&["history", "--json", &f.image("oci:v1")]).await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["sizes"], "compressed");
    assert_eq!(doc["steps"][0]["layerDigest"], f.oci.layers[1].blob.digest);
    let out = f
        .run(&[
            "history",
            "--json",
            "--platform",
            "linux/arm64",
            &f.image("multi:v1"),
        ])
        .await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["manifestDigest"], f.arm64.manifest_digest);
    assert_eq!(
        doc["steps"][1]["compressedSizeBytes"],
        f.arm64.layers[0].blob.bytes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_downloads_verified_bytes_to_a_file_or_a_pipe() {
    let f = Fixture::start().await;
    let out_dir = TempDir::new("blobs");
    let target = out_dir.path().join("layer.tar.gz");
    let target_str = target.to_str().expect("utf-8 path");

    // A Docker layer to a file.
    let layer = &f.docker.layers[1].blob;
    let out = f
        .run(&[
            "blob",
            &f.image("docker:v1"),
            &layer.digest,
            "-o",
            target_str,
        ])
        .await;
    assert_ok(&out);
    assert_eq!(std::fs::read(&target).expect("written"), layer.bytes);
    let said = stdout(&out);
    assert!(said.contains(&layer.digest), "{said}");
    assert!(said.contains("digest and length verified"), "{said}");

    // Never over an existing file without --force.
    let other = &f.docker.layers[0].blob;
    let out = f
        .run(&[
            "blob",
            &f.image("docker:v1"),
            &other.digest,
            "-o",
            target_str,
        ])
        .await;
    assert_one_line_error(&out, "--force");
    assert_eq!(std::fs::read(&target).expect("kept"), layer.bytes);
    let out = f
        .run(&[
            "blob",
            &f.image("docker:v1"),
            &other.digest,
            "-o",
            target_str,
            "--force",
        ])
        .await;
    assert_ok(&out);
    assert_eq!(std::fs::read(&target).expect("replaced"), other.bytes);

    // To a pipe: the OCI config, and a layer of the arm64 image found through the index.
    let out = f
        .run(&["blob", &f.image("oci:v1"), &f.oci.config.digest])
        .await;
    assert_ok(&out);
    assert_eq!(out.stdout, f.oci.config.bytes);
    let arm_layer = &f.arm64.layers[0].blob;
    let out = f
        .run(&[
            "blob",
            "--platform",
            "linux/arm64",
            &f.image("multi:v1"),
            &arm_layer.digest,
        ])
        .await;
    assert_ok(&out);
    assert_eq!(out.stdout, arm_layer.bytes);

    // Never to a terminal: run under `script`, which gives the command a pseudo-terminal.
    let command = format!(
        "{} blob {} {}",
        env!("CARGO_BIN_EXE_layerscope"),
        f.image("docker:v1"),
        layer.digest
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", f.home.path())
        .env("LAYERSCOPE_CACHE_DIR", f.home.path().join("cache"))
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script (util-linux)");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = stdout(&out);
    assert!(
        said.contains("refusing to write blob bytes to a terminal") && said.contains("-o FILE"),
        "{said}"
    );

    // A blob the repository does not have, and a malformed digest.
    let missing = sha256(b"not pushed");
    let out = f.run(&["blob", &f.image("docker:v1"), &missing]).await;
    assert_one_line_error(&out, "missing from docker");
    let out = f.run(&["blob", &f.image("docker:v1"), "sha256:xyz"]).await;
    assert_one_line_error(&out, "invalid digest");
    let names: Vec<String> = std::fs::read_dir(out_dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["layer.tar.gz".to_string()],
        "no temporary files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_fails_verification_is_refused_and_nothing_is_written() {
    let f = Fixture::start().await;
    let wrong = f.docker.layers[0].blob.clone();
    let corrupt = FaultProxy::start(
        &f.registry.url(),
        Arc::new(move |r: &Request, _| {
            r.is_blob(&wrong.digest).then(|| {
                let mut bytes = wrong.bytes.clone();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x55;
                Reply::new(200).body(bytes)
            })
        }),
    )
    .await;
    let reference = format!("{}/docker:v1", corrupt.host());
    let digest = &f.docker.layers[0].blob.digest;
    let out_dir = TempDir::new("blobs");
    let target = out_dir.path().join("layer.tar.gz");
    let out = f
        .run(&[
            "blob",
            &reference,
            digest,
            "-o",
            target.to_str().expect("utf-8"),
        ])
        .await;
    assert_one_line_error(&out, "digest mismatch");
    assert_eq!(
        std::fs::read_dir(out_dir.path()).expect("list").count(),
        0,
        "nothing written, no temporary file left"
    );

    // A blob cut short (same length announced, fewer bytes sent) is refused as well.
    let short = f.docker.layers[1].blob.clone();
    let truncating = FaultProxy::start(
        &f.registry.url(),
        Arc::new(move |r: &Request, _| {
            r.is_blob(&short.digest)
                .then(|| Reply::new(200).body(short.bytes[..short.bytes.len() - 10].to_vec()))
        }),
    )
    .await;
    let out = f
        .run(&[
            "blob",
            &format!("{}/docker:v1", truncating.host()),
            &f.docker.layers[1].blob.digest,
            "-o",
            target.to_str().expect("utf-8"),
        ])
        .await;
    assert_one_line_error(&out, "truncated");
    assert_eq!(std::fs::read_dir(out_dir.path()).expect("list").count(), 0);

    // To a pipe, the corrupted blob never arrives whole.
    let out = f.run(&["blob", &reference, digest]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
    assert!(out.stdout.len() < f.docker.layers[0].blob.bytes.len());
}

/// GET a manifest straight from the registry: its bytes and `Docker-Content-Digest`.
async fn get_manifest(registry: &Registry, repo: &str, tag: &str) -> (Vec<u8>, String, String) {
    let response = reqwest::Client::new()
        .get(format!("{}/v2/{repo}/manifests/{tag}", registry.url()))
        .header(
            "Accept",
            [
                mt::OCI_INDEX,
                mt::OCI_MANIFEST,
                mt::DOCKER_MANIFEST,
                mt::DOCKER_LIST,
            ]
            .join(", "),
        )
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(response.status(), 200, "{repo}:{tag}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (digest, content_type) = (header("docker-content-digest"), header("content-type"));
    let bytes = response.bytes().await.expect("body").to_vec();
    (bytes, digest, content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_puts_the_same_manifest_under_a_new_tag_without_touching_layers() {
    let f = Fixture::start().await;
    let proxy = FaultProxy::start(&f.registry.url(), Arc::new(|_, _| None)).await;
    let cases: [(&str, &[u8], &str); 3] = [
        ("docker", &f.docker.manifest, mt::DOCKER_MANIFEST),
        ("oci", &f.oci.manifest, mt::OCI_MANIFEST),
        ("multi", &f.index, mt::OCI_INDEX),
    ];
    for (repo, manifest, media_type) in cases {
        let digest = sha256(manifest);
        let out = cli::run(
            f.home.path(),
            &[
                "tag",
                "--json",
                &format!("{}/{repo}:v1", proxy.host()),
                "stable",
            ],
        )
        .await;
        assert_ok(&out);
        let doc = json(&out);
        assert_eq!(doc["sourceDigest"], digest, "{repo}");
        assert_eq!(doc["targetDigest"], digest, "{repo}");
        assert_eq!(doc["mediaType"], media_type);
        assert_eq!(doc["target"], format!("{}/{repo}:stable", proxy.host()));
        assert_eq!(doc["previousDigest"], Value::Null);
        // Fetched independently: the same bytes, the same digest, the same media type.
        let (bytes, served_digest, content_type) = get_manifest(&f.registry, repo, "stable").await;
        assert_eq!(bytes, manifest, "{repo}");
        assert_eq!(served_digest, digest);
        assert_eq!(content_type, media_type);
    }
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .all(|(_, r, _)| !r.path().contains("/blobs/")),
        "tagging downloaded a blob: {:?}",
        requests
            .iter()
            .map(|(_, r, _)| r.target.clone())
            .collect::<Vec<_>>()
    );
    let puts: Vec<String> = requests
        .iter()
        .filter(|(_, r, _)| r.method == "PUT")
        .map(|(_, r, _)| r.path().to_string())
        .collect();
    assert_eq!(
        puts,
        vec![
            "/v2/docker/manifests/stable",
            "/v2/oci/manifests/stable",
            "/v2/multi/manifests/stable"
        ]
    );

    // Moving a tag says where it pointed before.
    let out = f.run(&["tag", &f.image("oci:v1"), "stable"]).await;
    assert_ok(&out);
    let out = f.run(&["tag", &f.image("docker:v1"), "v1"]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Previously:      the same digest"), "{text}");
    let pusher = Pusher::new(&f.registry.url());
    pusher
        .push_image("docker", Some("v2"), &docker_image())
        .await;
    let other = oci_image("amd64", 10);
    pusher.push_image("docker", Some("other"), &other).await;
    let out = f
        .run(&["tag", "--json", &f.image("docker:other"), "v2"])
        .await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["previousDigest"], f.docker.manifest_digest);
    assert_eq!(doc["targetDigest"], other.manifest_digest);

    // Not a tag.
    let out = f.run(&["tag", &f.image("docker:v1"), "docker:v3"]).await;
    assert_one_line_error(&out, "NEWTAG must be a tag");
    let out = f.run(&["tag", &f.image("docker:v1"), ".hidden"]).await;
    assert_one_line_error(&out, "NEWTAG must be a tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_asks_a_token_registry_for_the_push_scope() {
    let issuer = TokenIssuer::start(IssuerConfig {
        anonymous_pull: true,
        ..IssuerConfig::default()
    })
    .await;
    let registry = Registry::start_with(RegistryConfig {
        auth: RegistryAuth::Token(issuer.info()),
        ..RegistryConfig::default()
    })
    .await;
    let image = docker_image();
    Pusher::with_credentials(&registry.url(), "alice", "wonderland")
        .push_image("team/app", Some("v1"), &image)
        .await;
    let home = TempDir::new("home");
    let reference = format!("{}/team/app:v1", registry.host);

    // Anonymous: pulling is allowed, pushing is not.
    let before = issuer.requests().len();
    let out = cli::run(home.path(), &["tag", &reference, "anon"]).await;
    assert_one_line_error(&out, "refused to let team/app be pushed to");
    let asked: Vec<Vec<String>> = issuer.requests()[before..]
        .iter()
        .map(|r| r.scopes.clone())
        .collect();
    assert!(
        asked
            .iter()
            .any(|s| s.contains(&"repository:team/app:pull,push".to_string())),
        "{asked:?}"
    );

    let before = issuer.requests().len();
    let out = cli::run(
        home.path(),
        &["tag", "--creds", "alice:wonderland", &reference, "release"],
    )
    .await;
    assert_ok(&out);
    let pushes: Vec<_> = issuer.requests()[before..]
        .iter()
        .filter(|r| {
            r.scopes
                .contains(&"repository:team/app:pull,push".to_string())
        })
        .cloned()
        .collect();
    assert!(
        pushes
            .iter()
            .any(|r| r.user.as_deref() == Some("alice") && r.granted),
        "{pushes:?}"
    );
    let out = cli::run(
        home.path(),
        &[
            "manifest",
            "--json",
            &format!("{}/team/app:release", registry.host),
        ],
    )
    .await;
    assert_ok(&out);
    assert_eq!(json(&out)["digest"], image.manifest_digest);

    // Listing the catalog needs `registry:catalog:*`, which only a user gets.
    let out = cli::run(home.path(), &["catalog", &registry.host]).await;
    assert_one_line_error(&out, "catalog");
    let out = cli::run(
        home.path(),
        &["catalog", "--creds", "alice:wonderland", &registry.host],
    )
    .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "team/app\n");
    assert!(issuer
        .requests()
        .iter()
        .any(|r| r.scopes.contains(&"registry:catalog:*".to_string()) && r.granted));
}

/// Page `/v2/NAME/tags/list` the way the distribution spec describes (entries in lexical order
/// after `last`, at most `n`, a `Link` to the next page), over the real registry's full answer:
/// distribution 2.8 itself ignores `n` for tag lists. With `link` false, no `Link` is sent and
/// clients must page with `last` themselves.
fn paginate_tags(link: bool) -> common::registry::Rewrite {
    Arc::new(move |request: &Request, reply: Reply| {
        if !request.path().ends_with("/tags/list") || reply.status != 200 {
            return reply;
        }
        let doc: Value = serde_json::from_slice(&reply.body).expect("tag list JSON");
        let mut tags: Vec<String> = doc["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().unwrap_or("").to_string())
            .collect();
        tags.sort();
        let n: usize = request
            .query("n")
            .first()
            .and_then(|n| n.parse().ok())
            .unwrap_or(tags.len());
        let last = request.query("last").first().cloned();
        let after: Vec<String> = tags
            .into_iter()
            .filter(|t| last.as_ref().is_none_or(|l| t > l))
            .collect();
        let page: Vec<String> = after.iter().take(n).cloned().collect();
        let mut out = Reply::json(200, &serde_json::json!({"name": doc["name"], "tags": page}));
        if link && after.len() > page.len() {
            out = out.header(
                "Link",
                &format!(
                    "<{}?n={n}&last={}>; rel=\"next\"",
                    request.path(),
                    page.last().expect("a full page")
                ),
            );
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_catalog_follow_every_page() {
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    let image = docker_image();
    let tags = ["1.0", "1.1", "1.2", "2.0", "2.1", "latest", "stable"];
    for tag in tags {
        pusher.push_image("app", Some(tag), &image).await;
    }
    let repositories = ["alpha", "app", "beta/one", "beta/two", "gamma"];
    for repo in repositories.iter().filter(|r| **r != "app") {
        pusher.push_image(repo, Some("v1"), &image).await;
    }
    let home = TempDir::new("home");

    for link in [true, false] {
        let proxy = FaultProxy::start_with_rewrite(
            &registry.url(),
            Arc::new(|_, _| None),
            paginate_tags(link),
        )
        .await;
        let reference = format!("{}/app", proxy.host());
        let out = cli::run(home.path(), &["tags", "-n", "2", &reference]).await;
        assert_ok(&out);
        let expected: String = tags.iter().map(|t| format!("{t}\n")).collect();
        assert_eq!(stdout(&out), expected, "link: {link}");
        let pages: Vec<(Vec<String>, Vec<String>)> = proxy
            .requests()
            .iter()
            .filter(|(_, r, _)| r.path() == "/v2/app/tags/list")
            .map(|(_, r, _)| (r.query("n"), r.query("last")))
            .collect();
        // 7 tags, 2 a page: 4 pages, each after the last tag of the one before.
        let lasts: Vec<Vec<String>> = pages.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(
            lasts,
            vec![
                vec![],
                vec!["1.1".to_string()],
                vec!["2.0".to_string()],
                vec!["latest".to_string()]
            ],
            "link: {link}"
        );
        assert!(pages.iter().all(|(n, _)| n == &vec!["2".to_string()]));

        let out = cli::run(home.path(), &["tags", "--json", "-n", "3", &reference]).await;
        assert_ok(&out);
        let doc = json(&out);
        assert_eq!(doc["repository"], reference);
        assert_eq!(doc["tags"], serde_json::json!(tags));
    }

    // The catalog pages by itself (distribution 2.8 sends `Link` for `_catalog`).
    let counting = FaultProxy::start(&registry.url(), Arc::new(|_, _| None)).await;
    let out = cli::run(home.path(), &["catalog", "-n", "2", &counting.host()]).await;
    assert_ok(&out);
    let expected: String = repositories.iter().map(|r| format!("{r}\n")).collect();
    assert_eq!(stdout(&out), expected);
    let pages = counting
        .requests()
        .iter()
        .filter(|(_, r, _)| r.path() == "/v2/_catalog")
        .count();
    assert_eq!(pages, 3, "5 repositories, 2 a page");
    let out = cli::run(home.path(), &["catalog", "--json", &registry.host]).await;
    assert_ok(&out);
    let doc = json(&out);
    assert_eq!(doc["registry"], registry.host);
    assert_eq!(doc["repositories"], serde_json::json!(repositories));

    // Without a page size the registry chooses; the tag list is whole either way.
    let out = cli::run(
        home.path(),
        &["tags", &format!("{}/app:ignored", registry.host)],
    )
    .await;
    assert_ok(&out);
    let mut listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(listed, tags);

    let out = cli::run(home.path(), &["tags", &format!("{}/nope", registry.host)]).await;
    assert_one_line_error(&out, "repository nope not found");
    let out = cli::run(home.path(), &["catalog", "myregistry"]).await;
    assert_one_line_error(&out, "not a registry host");
    let out = cli::run(
        home.path(),
        &["tags", "-n", "0", &format!("{}/app", registry.host)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagination_link_to_another_server_is_not_followed() {
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    pusher.push_image("app", Some("v1"), &docker_image()).await;
    let elsewhere = Arc::new(|request: &Request, reply: Reply| {
        if request.path().ends_with("/tags/list") {
            reply.header(
                "Link",
                "<http://203.0.113.7/v2/app/tags/list?n=1&last=v1>; rel=\"next\"",
            )
        } else {
            reply
        }
    });
    let proxy =
        FaultProxy::start_with_rewrite(&registry.url(), Arc::new(|_, _| None), elsewhere).await;
    let home = TempDir::new("home");
    let out = cli::run(home.path(), &["tags", &format!("{}/app", proxy.host())]).await;
    assert_one_line_error(&out, "another server (203.0.113.7)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_leaves_nothing_behind() {
    let f = Fixture::start().await;
    let slow_blob = f.docker.layers[0].blob.clone();
    let slow = FaultProxy::start(
        &f.registry.url(),
        Arc::new(move |r: &Request, _| {
            r.is_blob(&slow_blob.digest).then(|| {
                let mut reply = Reply::new(200).body(slow_blob.bytes.clone());
                reply.pace = Some((16, std::time::Duration::from_millis(100)));
                reply
            })
        }),
    )
    .await;
    let out_dir = TempDir::new("blobs");
    let target = out_dir.path().join("layer.tar.gz");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_layerscope"))
        .args([
            "blob",
            &format!("{}/docker:v1", slow.host()),
            &f.docker.layers[0].blob.digest,
            "-o",
            target.to_str().expect("utf-8"),
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", f.home.path())
        .env("LAYERSCOPE_CACHE_DIR", f.home.path().join("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start layerscope");
    let pid = child.id().expect("a running child").to_string();
    // Wait until the partial file exists: the download is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(out_dir.path()).expect("list").count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no partial file appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success());
    let out = child.wait_with_output().await.expect("layerscope ends");
    assert_one_line_error(&out, "interrupted");
    assert_eq!(
        std::fs::read_dir(out_dir.path()).expect("list").count(),
        0,
        "the partial file was removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_on_a_basic_auth_registry_needs_the_right_password() {
    let registry = Registry::start_with(RegistryConfig {
        auth: RegistryAuth::Htpasswd(vec![(USER.0.to_string(), USER.1.to_string())]),
        ..RegistryConfig::default()
    })
    .await;
    let image = oci_image("amd64", 100);
    Pusher::with_credentials(&registry.url(), USER.0, USER.1)
        .push_image("app", Some("v1"), &image)
        .await;
    let home = TempDir::new("home");
    let reference = format!("{}/app:v1", registry.host);
    let out = cli::run(
        home.path(),
        &["tag", "--creds", "bob:wrong", &reference, "v2"],
    )
    .await;
    assert_one_line_error(&out, "wrong username or password");
    let creds = format!("{}:{}", USER.0, USER.1);
    let out = cli::run(
        home.path(),
        &["tag", "--json", "--creds", &creds, &reference, "v2"],
    )
    .await;
    assert_ok(&out);
    assert_eq!(json(&out)["targetDigest"], image.manifest_digest);
    let out = cli::run(
        home.path(),
        &["tags", "--creds", &creds, &format!("{}/app", registry.host)],
    )
    .await;
    assert_ok(&out);
    let mut tags: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    tags.sort();
    assert_eq!(tags, vec!["v1", "v2"]);
}
