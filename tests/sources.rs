//! Local sources end to end, each against the same image pulled from a real registry: archives
//! and layouts written by skopeo (docker-archive, oci, oci-archive), `docker save` layouts
//! written here byte by byte (classic, symlinked layers, gzip and zstd layers, Docker 25+
//! with an OCI layout beside manifest.json), and, where a Docker engine answers, the engine's
//! socket and `docker save` output. The figures must be identical whatever the source; only
//! fields that describe the source may differ.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::cli::{self, json_ok, stderr};
use common::layers::{Compress, LayerBuilder};
use common::push::{build_image, index_json, mt, sha256, Blob, Flavor, Pusher, Step, TestImage};
use common::registry::{Registry, TempDir};

/// OCI uncompressed layer.
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

async fn layerscope_uncached(home: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--no-cache"];
    all.extend_from_slice(args);
    cli::run(home, &all).await
}

/// Assert a one-line error with exit code 2 that contains `needle`.
fn assert_error(output: &Output, needle: &str) {
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(output));
    let err = stderr(output);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// Fields that say where the image came from rather than what it is: the name, and, for
/// sources that hold no registry manifest (docker archives and engines store layers
/// uncompressed), the manifest and the blobs' digests, media types and sizes.
const SOURCE_FIELDS: &[&str] = &["reference"];
const ARCHIVE_FIELDS: &[&str] = &[
    "reference",
    "digest",
    "manifestDigest",
    "mediaType",
    "compressedSizeBytes",
];
const ARCHIVE_LAYER_FIELDS: &[&str] = &["digest", "mediaType", "compressedSizeBytes"];

fn without(mut json: Value, image_fields: &[&str], layer_fields: &[&str]) -> Value {
    let image = json["image"].as_object_mut().expect("image object");
    for f in image_fields {
        assert!(image.remove(*f).is_some(), "image.{f} exists");
    }
    for layer in json["layers"].as_array_mut().expect("layers") {
        let layer = layer.as_object_mut().expect("layer object");
        for f in layer_fields {
            assert!(layer.remove(*f).is_some(), "layers[].{f} exists");
        }
    }
    json
}

fn sized(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Three layers, one of each compression, with overwrites, a whiteout and an opaque directory
/// (the figures of tests/cli.rs's wasteful image: wasted 8710, efficiency 1420/9130).
fn layer_builders() -> Vec<LayerBuilder> {
    vec![
        LayerBuilder::new()
            .file("etc/os-release", &sized(100))
            .file("bin/tool", &sized(1000))
            .file("data/big.bin", &sized(5000))
            .file("data/keep.txt", &sized(10)),
        LayerBuilder::new()
            .file("bin/tool", &sized(1200))
            .whiteout("data/big.bin")
            .file("app/main", &sized(300)),
        LayerBuilder::new()
            .file("bin/tool", &sized(1500))
            .opaque("data")
            .file("data/new.txt", &sized(20)),
    ]
}

const HISTORY: &[(&str, bool)] = &[
    ("/bin/sh -c #(nop) ADD file:rootfs in /", false),
    ("/bin/sh -c #(nop)  ENV APP=1", true),
    ("/bin/sh -c make tool && rm /data/big.bin", false),
    ("COPY data /data", false),
    ("CMD [\"/app/main\"]", true),
];

fn steps() -> Vec<Step> {
    HISTORY
        .iter()
        .map(|(s, empty)| {
            if *empty {
                Step::empty(s)
            } else {
                Step::layer(s)
            }
        })
        .collect()
}

/// The image in OCI form, gzip, zstd and plain layers, for `arch`.
fn oci_image(arch: &str) -> TestImage {
    oci_image_with(
        arch,
        [
            (Compress::Gzip, mt::OCI_LAYER_GZIP),
            (Compress::Zstd, mt::OCI_LAYER_ZSTD),
            (Compress::None, OCI_LAYER_TAR),
        ],
    )
}

/// The same image without zstd, which the docker-archive format cannot carry.
fn gzip_image() -> TestImage {
    oci_image_with(
        "amd64",
        [
            (Compress::Gzip, mt::OCI_LAYER_GZIP),
            (Compress::Gzip, mt::OCI_LAYER_GZIP),
            (Compress::None, OCI_LAYER_TAR),
        ],
    )
}

fn oci_image_with(arch: &str, hows: [(Compress, &str); 3]) -> TestImage {
    let layers = layer_builders()
        .into_iter()
        .zip(hows)
        .map(|(b, (how, media_type))| {
            let built = b.build(how);
            (Blob::new(built.blob, media_type), built.tar)
        })
        .collect();
    build_image(Flavor::Oci, ("linux", arch, None), layers, &steps())
}

fn skopeo(args: &[&str]) {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (Debian package skopeo; `scripts/test` installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A registry holding `app:v1` (amd64), `app:gz` (the same without zstd) and `multi:v1`
/// (an index for amd64 and arm64).
async fn registry_with_images() -> (Registry, TestImage) {
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    let amd64 = oci_image("amd64");
    pusher.push_image("app", Some("v1"), &amd64).await;
    pusher.push_image("app", Some("gz"), &gzip_image()).await;
    let arm64 = oci_image("arm64");
    pusher.push_image("multi", None, &amd64).await;
    pusher.push_image("multi", None, &arm64).await;
    let index = index_json(
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", None),
        ],
        &[],
    );
    pusher
        .push_manifest("multi", "v1", &index, mt::OCI_INDEX)
        .await;
    (registry, amd64)
}

/// The `--json` analysis of `app:v1` straight from the registry: what every other source of
/// the same image must match.
async fn registry_json(home: &Path, registry: &Registry) -> Value {
    let reference = registry.reference("app", "v1");
    json_ok(&cli::run(home, &["--no-cache", "--json", "-", &reference]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_archives_and_layouts_give_the_registry_figures() {
    let (registry, _) = registry_with_images().await;
    let home = TempDir::new("sources-home");
    let work = TempDir::new("sources-skopeo");
    let h = home.path();
    let from_registry = registry_json(h, &registry).await;
    assert_eq!(from_registry["image"]["wastedBytes"], 8710);

    let src = format!("docker://{}", registry.reference("app", "v1"));
    let da = work.path().join("app.tar");
    let oci = work.path().join("layout");
    let oa = work.path().join("app-oci.tar");
    let da_dest = format!("docker-archive:{}:app:v1", da.display());
    let oci_dest = format!("oci:{}:v1", oci.display());
    let oa_dest = format!("oci-archive:{}:v1", oa.display());
    for dest in [&oci_dest, &oa_dest] {
        // Keep the plain layer plain (skopeo compresses it for OCI destinations otherwise).
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-oci-accept-uncompressed-layers",
            "--preserve-digests",
            &src,
            dest,
        ]);
    }
    // docker-archive cannot hold zstd layers: the same image with gzip instead.
    let src_gz = format!("docker://{}", registry.reference("app", "gz"));
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &src_gz,
        &da_dest,
    ]);

    // An OCI layout keeps the registry's manifest: everything but the name is the same.
    for target in [
        format!("oci:{}", oci.display()),
        oci_dest.clone(),
        format!("oci-archive:{}", oa.display()),
        format!("{}", oa.display()),
    ] {
        let args: Vec<&str> = if target.starts_with("oci") {
            vec!["--json", "-", &target]
        } else {
            vec!["--source", "oci-archive", "--json", "-", &target]
        };
        let json = json_ok(&cli::run(h, &args).await);
        assert_eq!(
            without(json, SOURCE_FIELDS, &[]),
            without(from_registry.clone(), SOURCE_FIELDS, &[]),
            "{target}"
        );
    }

    // skopeo's docker-archive stores layers uncompressed (so their digests are the diff_ids).
    for target in [
        format!("docker-archive:{}", da.display()),
        format!("docker-archive://{}", da.display()),
        format!("docker-archive:{}:app:v1", da.display()),
    ] {
        let json = json_ok(&cli::run(h, &["--json", "-", &target]).await);
        for layer in json["layers"].as_array().unwrap() {
            assert_eq!(layer["digest"], layer["diffId"]);
        }
        assert_eq!(
            without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
            without(from_registry.clone(), ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
            "{target}"
        );
    }
    let out = cli::run(h, &["--ci", &format!("docker-archive:{}", da.display())]).await;
    assert_eq!(out.status.code(), Some(1), "the wasteful image fails CI");

    // `diff` takes any source: the OCI layout holds the very image the registry serves
    // (identical, exit 0); the docker archive holds the gzip twin with the same files, its
    // compressed layers stored uncompressed (other blobs, same content): exit 1, no file differences.
    let same = cli::run(
        h,
        &[
            "diff",
            "--json",
            &oci_dest,
            &registry.reference("app", "v1"),
        ],
    )
    .await;
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    let archive = format!("docker-archive:{}", da.display());
    let twin = cli::run(
        h,
        &["diff", "--json", &archive, &registry.reference("app", "gz")],
    )
    .await;
    let report = json_ok_or(&twin, 1);
    assert_eq!(report["identical"], false, "{report}");
    assert_eq!(report["files"], serde_json::json!([]), "{report}");
    assert_eq!(report["sameConfig"], true, "{report}");
    let statuses: Vec<&str> = report["layers"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    // Layers 0 and 1 are gzip in the registry and plain in the archive; layer 2 is plain in both.
    assert_eq!(
        statuses,
        ["same-content", "same-content", "shared"],
        "{report}"
    );
}

/// The JSON of a run that ended with `code`.
fn json_ok_or(output: &Output, code: i32) -> Value {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_with_several_images_ask_for_a_choice() {
    let (registry, _) = registry_with_images().await;
    let home = TempDir::new("sources-home");
    let work = TempDir::new("sources-multi");
    let h = home.path();
    let layout = work.path().join("layout");

    // A multi-platform index: the host's platform by default, --platform to choose.
    let multi = format!("docker://{}", registry.reference("multi", "v1"));
    let dest = format!("oci:{}:multi", layout.display());
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        &multi,
        &dest,
    ]);
    let arm = json_ok(&cli::run(h, &["--platform", "linux/arm64", "--json", "-", &dest]).await);
    assert_eq!(arm["image"]["platform"], "linux/arm64");
    assert_eq!(arm["image"]["wastedBytes"], 8710);
    let out = cli::run(h, &["--platform", "linux/s390x", "--json", "-", &dest]).await;
    assert_error(&out, "linux/arm64");

    // Two tags in one layout: no tag is an error that lists them, exit 2.
    let single = format!("docker://{}", registry.reference("app", "v1"));
    let dest_app = format!("oci:{}:app", layout.display());
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &single,
        &dest_app,
    ]);
    let out = cli::run(h, &["--json", "-", &format!("oci:{}", layout.display())]).await;
    assert_error(&out, "several images");
    let err = stderr(&out);
    assert!(err.contains("multi") && err.contains("app"), "{err}");
    let out = cli::run(
        h,
        &["--json", "-", &format!("oci:{}:nope", layout.display())],
    )
    .await;
    assert_error(&out, "no image tagged nope");
    let app = json_ok(&cli::run(h, &["--json", "-", &dest_app]).await);
    assert_eq!(app["image"]["platform"], "linux/amd64");
}

// ---------------------------------------------------------------------------------------------
// docker save layouts written here

/// A tar written member by member.
struct Archive(tar::Builder<Vec<u8>>);

impl Archive {
    fn new() -> Archive {
        Archive(tar::Builder::new(Vec::new()))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        self.0.append_data(&mut header, path, bytes).unwrap();
        self
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        self.0.append_link(&mut header, path, target).unwrap();
        self
    }

    fn dir(&mut self, path: &str) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        self.0.append_data(&mut header, path, &[][..]).unwrap();
        self
    }

    fn write(self, path: &Path) {
        std::fs::write(path, self.0.into_inner().unwrap()).unwrap();
    }
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// The members of the classic `docker save` layout for `image`: `<id>/layer.tar` (the layer
/// blobs as given), `<id>/json`, `<id>/VERSION` and `<config>.json`; returns the layer paths
/// for `manifest.json`. `salt` makes the ids of one image differ from another's.
fn classic(archive: &mut Archive, image: &TestImage, salt: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let id = hex(&sha256(format!("{salt}{i}{}", layer.diff_id).as_bytes())).to_string();
        archive.dir(&format!("{id}/"));
        archive.file(&format!("{id}/VERSION"), b"1.0");
        archive.file(
            &format!("{id}/json"),
            format!("{{\"id\":\"{id}\"}}").as_bytes(),
        );
        archive.file(&format!("{id}/layer.tar"), &layer.blob.bytes);
        paths.push(format!("{id}/layer.tar"));
    }
    archive.file(
        &format!("{}.json", hex(&image.config.digest)),
        &image.config.bytes,
    );
    paths
}

fn manifest_entry(image: &TestImage, tags: &[&str], layers: &[String]) -> Value {
    serde_json::json!({
        "Config": format!("{}.json", hex(&image.config.digest)),
        "RepoTags": tags,
        "Layers": layers,
    })
}

/// The same image with its layers compressed `how` (same tars, so same diff_ids and config).
fn image_with(how: [Compress; 3]) -> TestImage {
    let layers = layer_builders()
        .into_iter()
        .zip(how)
        .map(|(b, how)| {
            let built = b.build(how);
            (Blob::new(built.blob, mt::DOCKER_LAYER), built.tar)
        })
        .collect();
    build_image(Flavor::DockerV2, ("linux", "amd64", None), layers, &steps())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_save_layouts_written_by_hand_read_like_the_registry() {
    let (registry, _) = registry_with_images().await;
    let home = TempDir::new("sources-home");
    let work = TempDir::new("sources-save");
    let h = home.path();
    let reference = registry_json(h, &registry).await;
    let expected = without(reference, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS);

    // Classic layout, three images: plain layers; the same tars as gzip, zstd and plain; and
    // one whose every layer.tar is a symbolic link to the first image's (shared layers).
    let plain = image_with([Compress::None; 3]);
    let mixed = image_with([Compress::Gzip, Compress::Zstd, Compress::None]);
    let mut archive = Archive::new();
    let plain_paths = classic(&mut archive, &plain, "a");
    let mixed_paths = classic(&mut archive, &mixed, "b");
    let mut linked_paths = Vec::new();
    for (i, target) in plain_paths.iter().enumerate() {
        let id = hex(&sha256(format!("linked{i}").as_bytes())).to_string();
        archive.dir(&format!("{id}/"));
        archive.symlink(&format!("{id}/layer.tar"), &format!("../{target}"));
        linked_paths.push(format!("{id}/layer.tar"));
    }
    let manifest = serde_json::json!([
        manifest_entry(&plain, &["app:plain"], &plain_paths),
        manifest_entry(&mixed, &["example.com/team/app:mixed"], &mixed_paths),
        manifest_entry(&plain, &["app:linked"], &linked_paths),
    ]);
    archive.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    archive.file("repositories", b"{}");
    let path = work.path().join("save.tar");
    archive.write(&path);
    let p = path.display().to_string();

    let out = cli::run(h, &["--json", "-", &format!("docker-archive:{p}")]).await;
    assert_error(&out, "several images");
    let err = stderr(&out);
    assert!(
        err.contains("app:plain")
            && err.contains("example.com/team/app:mixed")
            && err.contains("app:linked"),
        "{err}"
    );
    for choice in [
        "app:plain",
        "docker.io/library/app:plain",
        "@0",
        "example.com/team/app:mixed",
        "@1",
        "app:linked",
    ] {
        let json =
            json_ok(&cli::run(h, &["--json", "-", &format!("docker-archive:{p}:{choice}")]).await);
        assert_eq!(
            without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
            expected,
            "{choice}"
        );
    }
    // Compressed layers named by no digest are hashed: their digests are the blobs'.
    let json = json_ok(&cli::run(h, &["--json", "-", &format!("docker-archive:{p}:@1")]).await);
    for (layer, built) in json["layers"].as_array().unwrap().iter().zip(&mixed.layers) {
        assert_eq!(layer["digest"], built.blob.digest.as_str());
    }
    assert_eq!(json["layers"][0]["mediaType"], mt::DOCKER_LAYER);
    let out = cli::run(h, &["--json", "-", &format!("docker-archive:{p}:@7")]).await;
    assert_error(&out, "no image @7");

    // Docker 25+: an OCI layout (index.json, blobs/sha256) beside manifest.json.
    let oci = oci_image("amd64");
    let mut archive = Archive::new();
    archive.dir("blobs/").dir("blobs/sha256/");
    for blob in oci.layers.iter().map(|l| &l.blob).chain([&oci.config]) {
        archive.file(&format!("blobs/sha256/{}", hex(&blob.digest)), &blob.bytes);
    }
    archive.file(
        &format!("blobs/sha256/{}", hex(&oci.manifest_digest)),
        &oci.manifest,
    );
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": [{
        "mediaType": mt::OCI_MANIFEST, "digest": oci.manifest_digest, "size": oci.manifest.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/app:v25",
                        "org.opencontainers.image.ref.name": "v25"}}]});
    archive.file("index.json", &serde_json::to_vec(&index).unwrap());
    let layers: Vec<String> = oci
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", hex(&l.blob.digest)))
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", hex(&oci.config.digest)),
        "RepoTags": ["app:v25"], "Layers": layers}]);
    archive.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    archive.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let v25 = work.path().join("v25.tar");
    archive.write(&v25);
    let json = json_ok(
        &cli::run(
            h,
            &["--json", "-", &format!("docker-archive:{}", v25.display())],
        )
        .await,
    );
    // The OCI manifest inside is the registry's own: only the name differs.
    assert_eq!(
        json["image"]["manifestDigest"],
        oci.manifest_digest.as_str()
    );
    assert_eq!(
        without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_are_one_line_errors() {
    let home = TempDir::new("sources-home");
    let work = TempDir::new("sources-damaged");
    let h = home.path();
    // Without the cache: an index cached by one run would spare the next reading the damage.
    let image = image_with([Compress::None, Compress::Gzip, Compress::None]);

    // A classic layer whose bytes are not the tar the config names.
    let mut tampered = image.clone();
    let mut bytes = tampered.layers[0].blob.bytes.clone();
    bytes[600] ^= 0x20;
    tampered.layers[0].blob = Blob::new(bytes, mt::DOCKER_LAYER);
    let mut archive = Archive::new();
    let paths = classic(&mut archive, &tampered, "c");
    let manifest = serde_json::json!([manifest_entry(&tampered, &["app:bad"], &paths)]);
    archive.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let path = work.path().join("bad.tar");
    archive.write(&path);
    let out = layerscope_uncached(
        h,
        &["--json", "-", &format!("docker-archive:{}", path.display())],
    )
    .await;
    assert_error(&out, "diff_id mismatch");

    // A blob named by its digest whose bytes differ.
    let mut archive = Archive::new();
    let named = format!("blobs/sha256/{}", hex(&image.layers[1].blob.digest));
    let mut corrupt = image.layers[1].blob.bytes.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x01;
    archive.file(&named, &corrupt);
    archive.file(
        &format!("{}.json", hex(&image.config.digest)),
        &image.config.bytes,
    );
    for l in [0, 2] {
        archive.file(&format!("l{l}.tar"), &image.layers[l].blob.bytes);
    }
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", hex(&image.config.digest)),
        "RepoTags": ["app:corrupt"], "Layers": ["l0.tar", named, "l2.tar"]}]);
    archive.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let path = work.path().join("corrupt.tar");
    archive.write(&path);
    let out = layerscope_uncached(
        h,
        &["--json", "-", &format!("docker-archive:{}", path.display())],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") || err.contains("corrupt gzip"),
        "{err}"
    );

    // Not an archive at all, a missing file, a directory without index.json.
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar").unwrap();
    let out = layerscope_uncached(h, &[&format!("docker-archive:{}", junk.display())]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = layerscope_uncached(
        h,
        &[&format!(
            "docker-archive:{}/missing.tar",
            work.path().display()
        )],
    )
    .await;
    assert_error(&out, "No such file");
    let out = layerscope_uncached(h, &[&format!("oci:{}", work.path().display())]).await;
    assert_error(&out, "index.json");
    let out = layerscope_uncached(h, &["--source", "docker", "oci:somewhere"]).await;
    assert_error(&out, "conflicts");
}

// ---------------------------------------------------------------------------------------------
// The Docker engine, where one answers

fn docker(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn engine_answers() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the images a test loaded, whatever happens.
struct LoadedImages(Vec<String>);

impl Drop for LoadedImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rmi", "--force", name]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_socket_and_docker_save_output() {
    if !engine_answers() {
        println!(
            "NOTE: skipped docker_engine_socket_and_docker_save_output: no Docker engine answers \
             (`docker info` failed); the engine source is tested where one runs"
        );
        return;
    }
    let (registry, _) = registry_with_images().await;
    let home = TempDir::new("sources-home");
    let work = TempDir::new("sources-engine");
    let h = home.path();
    let expected = without(
        registry_json(h, &registry).await,
        ARCHIVE_FIELDS,
        ARCHIVE_LAYER_FIELDS,
    );

    // A test-built archive, loaded into the engine under a name of this run.
    let unique = format!("t{}", std::process::id());
    let name = format!("layerscope-test/app:{unique}");
    let archive = work.path().join("load.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}", registry.reference("app", "gz")),
        &format!("docker-archive:{}:{name}", archive.display()),
    ]);
    let mut loaded = LoadedImages(vec![name.clone()]);
    let out = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through the socket, by prefix and by --source.
    for args in [
        vec!["--json", "-", &format!("docker://{name}")] as Vec<&str>,
        vec!["--source", "docker", "--json", "-", &name],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let json = json_ok(&cli::run(h, &args).await);
        assert_eq!(json["image"]["reference"], name.as_str());
        assert_eq!(
            without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
            expected
        );
    }

    // Through `docker save` output.
    let saved = work.path().join("saved.tar");
    let out = docker(&["save", "-o", saved.to_str().unwrap(), &name]);
    assert!(
        out.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json_ok(
        &cli::run(
            h,
            &[
                "--json",
                "-",
                &format!("docker-archive:{}", saved.display()),
            ],
        )
        .await,
    );
    assert_eq!(
        without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
        expected
    );

    // A bare name the registry does not have, but the engine does: read from the engine,
    // and stderr says so.
    let missing = format!("{}/absent:{unique}", registry.host);
    let out = docker(&["tag", &name, &missing]);
    assert!(
        out.status.success(),
        "docker tag: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    loaded.0.push(missing.clone());
    let out = cli::run(h, &["--json", "-", &missing]).await;
    let json = json_ok(&out);
    assert!(
        stderr(&out).contains("local Docker engine"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        without(json, ARCHIVE_FIELDS, ARCHIVE_LAYER_FIELDS),
        expected
    );
    // …and a name neither has stays the registry's error.
    let out = cli::run(
        h,
        &["--json", "-", &format!("{}/absent:none", registry.host)],
    )
    .await;
    assert_error(&out, "not found");

    // Engine errors: an image it does not hold, a socket nobody serves.
    let out = cli::run(h, &["--json", "-", "docker://layerscope-test/none:none"]).await;
    assert_error(&out, "has no image");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_layerscope"));
    let out = command
        .args(["--json", "-", &format!("docker://{name}")])
        .env_clear()
        .env("HOME", h)
        .env("LAYERSCOPE_CACHE_DIR", h.join("cache"))
        .env(
            "DOCKER_HOST",
            format!("unix://{}/nobody.sock", work.path().display()),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_error(&out, "cannot reach the Docker engine");

    // Reopening from the cache needs no export: a proxy on the way to the engine sees the
    // first run export the image and the second only ask for its id.
    let proxy = EngineProxy::start(work.path()).await;
    let cache = work.path().join("engine-cache");
    let through_proxy = |cache: PathBuf, socket: PathBuf, name: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_layerscope"))
            .args(["--json", "-", &format!("docker://{name}")])
            .env_clear()
            .env("HOME", &cache)
            .env("LAYERSCOPE_CACHE_DIR", &cache)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap()
    };
    let exports = |proxy: &EngineProxy| {
        proxy
            .requests()
            .iter()
            .filter(|line| line.contains("/get "))
            .count()
    };
    let cold = json_ok(&through_proxy(cache.clone(), proxy.path.clone(), name.clone()).await);
    assert_eq!(exports(&proxy), 1, "{:?}", proxy.requests());
    let warm = json_ok(&through_proxy(cache.clone(), proxy.path.clone(), name.clone()).await);
    assert_eq!(warm, cold);
    assert_eq!(
        exports(&proxy),
        1,
        "no second export: {:?}",
        proxy.requests()
    );
    assert!(proxy.requests().iter().any(|l| l.contains("/json ")));
    drop(loaded);
}

/// A unix socket in front of the engine's that passes everything through and records each
/// request line.
struct EngineProxy {
    path: PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EngineProxy {
    async fn start(dir: &Path) -> EngineProxy {
        let upstream = match std::env::var("DOCKER_HOST") {
            Ok(host) if host.starts_with("unix://") => {
                PathBuf::from(host.trim_start_matches("unix://"))
            }
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        let path = dir.join("engine-proxy.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(engine) = tokio::net::UnixStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, engine, log.clone()));
            }
        });
        EngineProxy { path, seen, task }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: tokio::net::UnixStream,
    engine: tokio::net::UnixStream,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_engine, mut to_engine) = engine.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                if ["GET ", "POST ", "HEAD "]
                    .iter()
                    .any(|m| line.starts_with(m))
                {
                    log.lock().unwrap().push(line.to_string());
                }
            }
            if to_engine.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_engine.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut from_engine, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}
