//! Comparing two images end to end: `layerscope diff` against a real registry (exit codes,
//! text, JSON) and the comparison model the explorer's compare view uses, on two images that
//! share a base layer. Expected counts and bytes are worked out by hand in the comments.

mod common;

use std::sync::Arc;

use serde_json::{json, Value};

use common::cli::{self, json, stderr, stdout};
use common::layers::{Compress, LayerBuilder, Meta};
use common::push::TestImage;
use common::push::{attestation_for, build_image, index_json, mt, Blob, Flavor, Pusher, Step};
use common::registry::{isolated_options, FaultProxy, Registry, Reply, Request, TempDir};
use layerscope::compare::{compare, LayerMatch};
use layerscope::registry::RegistryClient;
use layerscope::tree::{ChangeKind, FileTree};

fn sized(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn gzip_layer(builder: LayerBuilder) -> (Blob, Vec<u8>) {
    let built = builder.build(Compress::Gzip);
    (Blob::new(built.blob, mt::DOCKER_LAYER), built.tar)
}

/// The shared base: /etc/os-release 100, /bin/tool 1000 (0644), /usr/lib/libx.so 500,
/// /data/old.txt 50.
fn base_layer() -> (Blob, Vec<u8>) {
    gzip_layer(
        LayerBuilder::new()
            .file("etc/os-release", &sized(1, 100))
            .file("bin/tool", &sized(2, 1000))
            .file("usr/lib/libx.so", &sized(3, 500))
            .file("data/old.txt", &sized(4, 50)),
    )
}

/// A = base + { /app/main 300 (seed 5), /etc/app.conf 64 (seed 6) }.
fn image_a(base: &(Blob, Vec<u8>)) -> TestImage {
    let top = LayerBuilder::new()
        .file("app/main", &sized(5, 300))
        .file("etc/app.conf", &sized(6, 64));
    build_image(
        Flavor::DockerV2,
        ("linux", "amd64", None),
        vec![base.clone(), gzip_layer(top)],
        &[Step::layer("ADD base /"), Step::layer("COPY app /app")],
    )
}

/// B = base + { /app/main 350 (seed 7), /etc/app.conf as in A, /bin/tool same bytes but 0755 }
///          + { whiteout /data/old.txt, /app/extra.bin 2000, /usr/lib/libx.so.1 → libx.so }.
///
/// Against A's final filesystem, in tree order:
/// ```text
/// + /app/extra.bin        2000 bytes
/// ~ /app/main             300 → 350 (content)
/// ~ /bin/tool             1000 → 1000 (mode 644 → 755)
/// - /data/old.txt         50 bytes
/// + /usr/lib/libx.so.1    symlink
/// ```
/// /etc/app.conf is the same entry in both (another layer, same content and metadata).
/// Summary: 2 added (2000 bytes), 1 removed (50), 2 modified (1300 → 1350); net +2000.
/// Layers: base shared at 0; then A#1 ≠ B#1, and B#2 only in B.
fn image_b(base: &(Blob, Vec<u8>)) -> TestImage {
    let rebuilt = LayerBuilder::new()
        .file("app/main", &sized(7, 350))
        .file("etc/app.conf", &sized(6, 64))
        .file_with(
            "bin/tool",
            &sized(2, 1000),
            Meta {
                mode: 0o755,
                ..Meta::default()
            },
        );
    let extra = LayerBuilder::new()
        .whiteout("data/old.txt")
        .file("app/extra.bin", &sized(8, 2000))
        .symlink("usr/lib/libx.so.1", "libx.so");
    build_image(
        Flavor::DockerV2,
        ("linux", "amd64", None),
        vec![base.clone(), gzip_layer(rebuilt), gzip_layer(extra)],
        &[
            Step::layer("ADD base /"),
            Step::layer("COPY app /app"),
            Step::layer("RUN extras"),
        ],
    )
}

struct Fixture {
    registry: Registry,
    a: TestImage,
    b: TestImage,
    base: Blob,
    home: TempDir,
}

async fn fixture() -> Fixture {
    let registry = Registry::start().await;
    let base = base_layer();
    let a = image_a(&base);
    let b = image_b(&base);
    let pusher = Pusher::new(&registry.url());
    pusher.push_image("app", Some("1.3"), &a).await;
    pusher.push_image("app", Some("1.4"), &b).await;
    pusher.push_image("copy/app", Some("1.3"), &a).await;
    Fixture {
        registry,
        a,
        b,
        base: base.0,
        home: TempDir::new("home"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_images_sharing_a_base_differ_by_hand_computed_files_and_bytes() {
    let f = fixture().await;
    let a_ref = format!("{}/app:1.3", f.registry.host);
    let b_ref = format!("{}/app:1.4", f.registry.host);
    let out = cli::run(f.home.path(), &["diff", "--json", &a_ref, &b_ref]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["identical"], false);
    assert_eq!(doc["sameConfig"], false);
    assert_eq!(doc["a"]["digest"], f.a.manifest_digest);
    assert_eq!(doc["b"]["digest"], f.b.manifest_digest);
    assert_eq!(doc["a"]["layerCount"], 2);
    assert_eq!(doc["b"]["layerCount"], 3);

    let layers = &doc["layers"];
    assert_eq!(layers["commonPrefix"], 1);
    assert_eq!(layers["divergeA"], 1);
    assert_eq!(layers["divergeB"], 1);
    assert_eq!(
        layers["shared"],
        json!([{"digest": f.base.digest, "aIndex": 0, "bIndex": 0,
                "compressedSizeBytes": f.base.bytes.len()}])
    );
    assert_eq!(layers["sharedBytes"], f.base.bytes.len());
    let statuses: Vec<&str> = layers["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| p["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, vec!["shared", "different", "only-b"]);
    assert_eq!(layers["pairs"][2]["a"], Value::Null);
    assert_eq!(layers["pairs"][2]["b"]["digest"], f.b.layers[2].blob.digest);

    let files: Vec<(String, String, Value, Value, Value)> = doc["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_string(),
                c["change"].as_str().unwrap_or("").to_string(),
                c["a"]["sizeBytes"].clone(),
                c["b"]["sizeBytes"].clone(),
                c["differences"].clone(),
            )
        })
        .collect();
    let none = Value::Null;
    assert_eq!(
        files,
        vec![
            (
                "/app/extra.bin".into(),
                "added".into(),
                none.clone(),
                json!(2000),
                json!([])
            ),
            (
                "/app/main".into(),
                "modified".into(),
                json!(300),
                json!(350),
                json!(["content"])
            ),
            (
                "/bin/tool".into(),
                "modified".into(),
                json!(1000),
                json!(1000),
                json!(["mode"])
            ),
            (
                "/data/old.txt".into(),
                "removed".into(),
                json!(50),
                none.clone(),
                json!([])
            ),
            (
                "/usr/lib/libx.so.1".into(),
                "added".into(),
                none,
                json!(0),
                json!([])
            ),
        ]
    );
    assert_eq!(doc["files"][2]["a"]["mode"], "644");
    assert_eq!(doc["files"][2]["b"]["mode"], "755");
    assert_eq!(doc["files"][4]["b"]["type"], "symlink");
    assert_eq!(doc["files"][4]["b"]["linkTarget"], "libx.so");
    assert_eq!(
        doc["summary"],
        json!({"added": 2, "removed": 1, "modified": 2, "addedBytes": 2000,
               "removedBytes": 50, "modifiedBytesA": 1300, "modifiedBytesB": 1350,
               "netBytes": 2000})
    );

    // The text report says the same.
    let out = cli::run(f.home.path(), &["diff", &a_ref, &b_ref]).await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Layers: A has 2, B has 3; common base of 1; they diverge at layer 1 of A and layer 1 of B"),
        "{text}"
    );
    let row = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
            .to_string()
    };
    assert!(row("0  sha256:").contains("shared"), "{text}");
    assert!(row("2  -").contains("only in B"), "{text}");
    assert_eq!(row("+ /app/extra.bin").trim(), "+ /app/extra.bin  2.0 kB");
    assert_eq!(
        row("~ /app/main").trim(),
        "~ /app/main  300 B → 350 B, content"
    );
    assert_eq!(
        row("~ /bin/tool").trim(),
        "~ /bin/tool  1.0 kB → 1.0 kB, mode 644→755"
    );
    assert_eq!(row("- /data/old.txt").trim(), "- /data/old.txt  50 B");
    assert_eq!(
        row("+ /usr/lib/libx.so.1").trim(),
        "+ /usr/lib/libx.so.1  symlink → libx.so"
    );
    assert!(
        !text.contains("/etc/app.conf"),
        "unchanged paths are not listed: {text}"
    );
    let summary = row("Summary:");
    assert!(
        summary.starts_with("Summary: 2 added (2.0 kB), 1 removed (50 B), 2 modified (1.3 kB → "),
        "{summary}"
    );
    assert!(summary.contains("1 shared layer ("), "{summary}");
    assert!(
        summary.ends_with("common base of 1; different"),
        "{summary}"
    );

    // --summary leaves the paths out.
    let out = cli::run(f.home.path(), &["diff", "--summary", &a_ref, &b_ref]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("/app/main"));
    assert!(stdout(&out).contains("Summary: 2 added"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_images_exit_0() {
    let f = fixture().await;
    let a_ref = format!("{}/app:1.3", f.registry.host);
    let copy = format!("{}/copy/app:1.3", f.registry.host);
    let out = cli::run(f.home.path(), &["diff", &a_ref, &copy]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Files: no differences"), "{text}");
    assert!(text.contains("the same layers"), "{text}");
    assert!(text.contains("Config: the same"), "{text}");
    assert!(text.trim_end().ends_with("; identical"), "{text}");
    let out = cli::run(f.home.path(), &["diff", "--json", &a_ref, &copy]).await;
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["identical"], true);
    assert_eq!(doc["files"], json!([]));
    assert_eq!(doc["layers"]["commonPrefix"], 2);
    assert_eq!(doc["layers"]["divergeA"], Value::Null);

    // An index entry chosen by platform against the same manifest named by digest.
    let pusher = Pusher::new(&f.registry.url());
    let arm64 = build_image(
        Flavor::Oci,
        ("linux", "arm64", Some("v8")),
        vec![gzip_layer(
            LayerBuilder::new().file("bin/app", &sized(9, 700)),
        )],
        &[Step::layer("COPY app /bin/app")],
    );
    let amd64 = image_a(&base_layer());
    let attestation = attestation_for(&arm64);
    for image in [&arm64, &amd64, &attestation] {
        pusher.push_image("multi", None, image).await;
    }
    let index = index_json(
        &[
            (&amd64, "linux", "amd64", None),
            (&arm64, "linux", "arm64", Some("v8")),
        ],
        &[(&attestation, &arm64)],
    );
    pusher
        .push_manifest("multi", "v1", &index, mt::OCI_INDEX)
        .await;
    let out = cli::run(
        f.home.path(),
        &[
            "diff",
            "--platform",
            "linux/arm64",
            &format!("{}/multi:v1", f.registry.host),
            &format!("{}/multi@{}", f.registry.host, arm64.manifest_digest),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_loaded_is_an_error_naming_its_side() {
    let f = fixture().await;
    let a_ref = format!("{}/app:1.3", f.registry.host);
    let out = cli::run(
        f.home.path(),
        &["diff", &a_ref, &format!("{}/app:9.9", f.registry.host)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("layerscope: error: image B ("), "{err}");
    assert!(err.contains("tag 9.9 not found"), "{err}");
    assert!(out.stdout.is_empty());

    // A layer of A that fails verification.
    let wrong = f.a.layers[1].blob.clone();
    let corrupt = FaultProxy::start(
        &f.registry.url(),
        Arc::new(move |r: &Request, _| {
            r.is_blob(&wrong.digest).then(|| {
                let mut bytes = wrong.bytes.clone();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
                Reply::new(200).body(bytes)
            })
        }),
    )
    .await;
    let out = cli::run(
        f.home.path(),
        &[
            "diff",
            // The layer was indexed before in this home: only an uncached run meets the blob.
            "--no-cache",
            &format!("{}/app:1.3", corrupt.host()),
            &format!("{}/app:1.4", f.registry.host),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("image A ("), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");

    let out = cli::run(f.home.path(), &["diff", &a_ref, "Bad/Name"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("uppercase"), "{}", stderr(&out));
}

fn mark(tree: &FileTree, marks: &[Option<ChangeKind>], path: &str) -> Option<ChangeKind> {
    let node = tree
        .lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} is not in the tree"));
    marks[node.index()]
}

/// The model the explorer's compare view reads: per-node marks on both trees, directories
/// marked when anything below them changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_model_marks_both_trees() {
    let f = fixture().await;
    let client = RegistryClient::new(isolated_options(f.home.path())).expect("client");
    let a_ref = format!("{}/app:1.3", f.registry.host).parse().expect("ref");
    let b_ref = format!("{}/app:1.4", f.registry.host).parse().expect("ref");
    let (a, b) = tokio::join!(
        layerscope::toolbox::load_image(&client, a_ref, None),
        layerscope::toolbox::load_image(&client, b_ref, None)
    );
    let (a, b) = (a.expect("A loads"), b.expect("B loads"));
    let tree_a = a.tree.read().expect("tree A");
    let tree_b = b.tree.read().expect("tree B");
    let c = compare(&a.info, &tree_a, &b.info, &tree_b);
    assert!(!c.identical());
    assert_eq!(c.layers.pairs[0].status, LayerMatch::Shared);
    assert_eq!(c.summary.added, 2);
    assert_eq!(c.summary.net_bytes(), 2000);

    let in_a = |p: &str| mark(&tree_a, &c.a_marks, p);
    let in_b = |p: &str| mark(&tree_b, &c.b_marks, p);
    assert_eq!(in_a("/data/old.txt"), Some(ChangeKind::Removed));
    assert_eq!(in_a("/data"), Some(ChangeKind::Modified));
    assert_eq!(in_a("/app/main"), Some(ChangeKind::Modified));
    assert_eq!(in_a("/app"), Some(ChangeKind::Modified));
    assert_eq!(in_a("/etc"), Some(ChangeKind::Unmodified));
    assert_eq!(in_a("/etc/app.conf"), Some(ChangeKind::Unmodified));
    assert_eq!(in_a("/"), Some(ChangeKind::Modified));
    assert_eq!(in_b("/app/extra.bin"), Some(ChangeKind::Added));
    assert_eq!(in_b("/usr/lib/libx.so.1"), Some(ChangeKind::Added));
    assert_eq!(in_b("/usr/lib"), Some(ChangeKind::Modified));
    assert_eq!(in_b("/usr/lib/libx.so"), Some(ChangeKind::Unmodified));
    assert_eq!(in_b("/bin/tool"), Some(ChangeKind::Modified));
    // Hidden in B's final filesystem: no mark.
    assert_eq!(in_b("/data/old.txt"), None);

    // Each change points at its nodes.
    let main = c
        .files
        .iter()
        .find(|f| f.path(&tree_a, &tree_b) == b"/app/main")
        .expect("/app/main changed");
    assert_eq!(main.a_node, tree_a.lookup(b"/app/main"));
    assert_eq!(main.b_node, tree_b.lookup(b"/app/main"));
    assert_eq!((main.a_size(), main.b_size()), (300, 350));
}
