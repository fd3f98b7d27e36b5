//! Peak memory on images shaped to hurt (issue: untrusted input): a file 50,000 directories
//! deep, a config history of 400,000 steps (past the 4 MiB config limit) and one just under
//! the limit. Each command runs from a small measuring copy of this program and is waited for
//! with `wait4`; its peak resident memory, exit code, output size and wall time are printed.
//!
//! `cargo bench --bench untrusted [-- --bin PATH]`: `--bin` measures another build of
//! layerscope (for instance one from before a change) against the same images.

#[allow(dead_code)]
#[path = "../tests/common/push.rs"]
mod push;

#[allow(dead_code)]
#[path = "../tests/common/layers.rs"]
mod layers;

#[allow(dead_code)]
#[path = "../tests/common/registry.rs"]
mod registry;

#[allow(dead_code)]
#[path = "support/measure.rs"]
mod measure;

use serde_json::{json, Value};

use layers::{Compress, LayerBuilder};
use measure::run_measured;
use push::{mt, Blob, Pusher};
use registry::Registry;

/// An OCI image of `layers` with `config` (diff_ids filled in), pushed as `repo:tag`.
async fn push_image(
    pusher: &Pusher,
    repo: &str,
    tag: &str,
    mut config: Value,
    layers: &[layers::Built],
) {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config = Blob::new(serde_json::to_vec(&config).expect("config"), mt::OCI_CONFIG);
    pusher.push_blob(repo, &config.bytes).await;
    let mut descriptors = Vec::new();
    for layer in layers {
        let blob = Blob::new(layer.blob.clone(), mt::OCI_LAYER_GZIP);
        pusher.push_blob(repo, &blob.bytes).await;
        descriptors.push(blob.descriptor());
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": config.descriptor(), "layers": descriptors,
    }))
    .expect("manifest");
    pusher
        .push_manifest(repo, tag, &manifest, mt::OCI_MANIFEST)
        .await;
}

fn history(steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| json!({ "created_by": format!("step {i}") }))
        .collect();
    json!({"architecture": "amd64", "os": "linux", "config": {}, "history": steps})
}

fn main() {
    if measure::serve_measure_request() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let exe = args
        .iter()
        .position(|a| a == "--bin")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_layerscope").to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = runtime.block_on(Registry::start());
    let pusher = Pusher::new(&registry.url());
    let base = LayerBuilder::new()
        .file("etc/os-release", b"NAME=deep\n")
        .build(Compress::Gzip);
    let deep_path = format!("deep/{}file", "a/".repeat(50_000));
    let deep = LayerBuilder::new()
        .file(deep_path.as_bytes(), b"at the bottom\n")
        .build(Compress::Gzip);
    runtime.block_on(async {
        push_image(
            &pusher,
            "deep",
            "base",
            history(1),
            std::slice::from_ref(&base),
        )
        .await;
        push_image(
            &pusher,
            "deep",
            "deep",
            history(2),
            &[base.clone(), deep.clone()],
        )
        .await;
        push_image(
            &pusher,
            "history",
            "huge",
            history(400_000),
            std::slice::from_ref(&base),
        )
        .await;
        push_image(
            &pusher,
            "history",
            "big",
            history(140_000),
            std::slice::from_ref(&base),
        )
        .await;
    });
    let host = registry.host.clone();
    let a = format!("{host}/deep:base");
    let b = format!("{host}/deep:deep");
    let huge = format!("{host}/history:huge");
    let big = format!("{host}/history:big");
    println!("layerscope untrusted-input benchmark: {exe}");
    println!(
        "{:<52} {:>4} {:>10} {:>14} {:>8}",
        "command", "exit", "peak", "printed", "wall"
    );
    let cases: Vec<Vec<&str>> = vec![
        vec!["diff", "--no-cache", &a, &b],
        vec!["diff", "--no-cache", "--json", &a, &b],
        vec!["--no-cache", "--json", "-", &b],
        vec!["config", &huge],
        vec!["history", &huge],
        vec!["config", &big],
        vec!["config", "--json", &big],
        vec!["history", &big],
    ];
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("untrusted-bench-cache");
    for case in cases {
        let run = run_measured(&exe, &cache, &case);
        let shown = case
            .iter()
            .map(|a| a.replace(&host, "REGISTRY"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{shown:<52} {:>4} {:>7} MB {:>11} B {:>7.2}s",
            run.status,
            run.max_rss_kib / 1000,
            run.stdout_bytes,
            run.wall.as_secs_f64()
        );
    }
}
