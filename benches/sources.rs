//! Sources and cache benchmark (issue 4): the ~600 MB synthetic image (`600M` of
//! `support/synthetic.rs`) pushed to a real loopback registry and written as a docker archive
//! (skopeo's docker-archive, which stores layers uncompressed as `docker save` does), then:
//!
//! - the release binary (`--json`), cache off, from the registry and from the archive
//!   [target: the archive at least as fast];
//! - the same with the cache: the cold run that fills it, then warm runs;
//! - in process, `pipeline::load` from a warm cache to the full model, and with the figures
//!   computed [target: < 200 ms; for the `1M` image < 300 ms to the model and figures].
//!
//! `cargo bench --bench sources [SCENARIO]`, SCENARIO `600M` (default), `110k` or `1M` of the
//! synthetic images (the image of the target is `600M`). Layer data is shared with the other benchmarks
//! (`target/tmp/engine-bench/`); the archive and the cache live in `target/tmp/sources-bench/`
//! and are removed at the end.

#[path = "support/synthetic.rs"]
mod synthetic;

#[path = "support/publish.rs"]
mod publish;

#[allow(dead_code)]
#[path = "../tests/common/push.rs"]
mod push;

#[allow(dead_code)]
#[path = "../tests/common/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use layerscope::analysis::analyse;
use layerscope::cache::{Cache, DEFAULT_LIMIT};
use layerscope::pipeline;
use layerscope::reference::Reference;
use layerscope::registry::{RegistryClient, RegistryOptions};
use layerscope::source::{RegistrySource, Source};
use layerscope::tree::FileTree;

use registry::Registry;
use synthetic::{ensure_layers, Totals};

/// Measurements per configuration; the best is reported with all of them.
const RUNS: usize = 3;

/// One run of the binary, timed; panics when it fails.
fn run(exe: &str, cache: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .env_remove("CI")
        .env("LAYERSCOPE_CACHE_DIR", cache)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start layerscope");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "layerscope {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

fn best_of(label: &str, target: &str, runs: Vec<Duration>) -> Duration {
    let best = runs.iter().min().copied().unwrap_or_default();
    let all: Vec<String> = runs
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    println!(
        "  {label}: best {:.3} s (runs {} s){target}",
        best.as_secs_f64(),
        all.join(", ")
    );
    best
}

/// `pipeline::load` from the registry through a warm cache, timed to the full model and to
/// the figures computed.
async fn warm_load(reference: &str, cache: &Path) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let reference: Reference = reference.parse().expect("reference");
    let client = RegistryClient::new(RegistryOptions::default()).expect("client");
    let cache = Arc::new(Cache::open(cache, DEFAULT_LIMIT).expect("cache"));
    let source =
        Arc::new(Source::Registry(RegistrySource::new(client, reference, None)).with_cache(cache));
    let (events, mut drained) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while drained.recv().await.is_some() {} });
    let tree = Arc::new(RwLock::new(FileTree::new()));
    let loaded = pipeline::load(source, tree, events, |_| {})
        .await
        .expect("load");
    let model = started.elapsed();
    let tree = loaded.tree.read().expect("tree");
    let figures = analyse(&tree);
    let analysed = started.elapsed();
    assert!(figures.efficiency > 0.0);
    (model, analysed, tree.node_count())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let data = root.join("engine-bench");
    std::fs::create_dir_all(&data).expect("bench data dir");
    let name = std::env::args()
        .skip(1)
        .find(|a| ["600M", "110k", "1M"].contains(&a.as_str()))
        .unwrap_or_else(|| "600M".to_string());
    let layers = ensure_layers(&data, &name);
    let work = root.join("sources-bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("bench dir");
    let exe = env!("CARGO_BIN_EXE_layerscope");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!("layerscope sources benchmark ({})", synthetic::machine());
    println!("image {name}: {}", Totals::of(&layers));

    let registry = runtime.block_on(Registry::start());
    runtime.block_on(publish::push_generated(
        &registry.url(),
        "bench/image",
        &layers,
    ));
    let reference = format!("{}/bench/image:latest", registry.host);

    // A docker-archive as `docker save` writes it: layers uncompressed.
    let archive = work.join("image.tar");
    let started = Instant::now();
    let status = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("docker-archive:{}:bench/image:latest", archive.display()),
        ])
        .status()
        .expect("run skopeo");
    assert!(status.success(), "skopeo copy failed");
    println!(
        "  (skopeo wrote the docker archive, {:.1} MB, in {:.1} s)",
        std::fs::metadata(&archive).map_or(0, |m| m.len()) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let archive_arg = format!("docker-archive:{}", archive.display());

    let unused_cache = work.join("unused-cache");
    let registry_best = best_of(
        "registry, --no-cache",
        "",
        (0..RUNS)
            .map(|_| {
                run(
                    exe,
                    &unused_cache,
                    &["--quiet", "--no-cache", "--json", "/dev/null", &reference],
                )
            })
            .collect(),
    );
    let archive_best = best_of(
        "docker archive, --no-cache",
        "",
        (0..RUNS)
            .map(|_| {
                run(
                    exe,
                    &unused_cache,
                    &["--quiet", "--no-cache", "--json", "/dev/null", &archive_arg],
                )
            })
            .collect(),
    );
    println!(
        "  archive / registry: {:.0} % [target <= 100 %]",
        archive_best.as_secs_f64() / registry_best.as_secs_f64() * 100.0
    );

    let cache = work.join("cache");
    let cold: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let _ = std::fs::remove_dir_all(&cache);
            run(exe, &cache, &["--quiet", "--json", "/dev/null", &reference])
        })
        .collect();
    best_of("registry, cold cache (filling it)", "", cold);
    let usage = Cache::at(&cache, 0).usage();
    println!(
        "  cache after one image: {} blobs {:.1} MB, {} indexes {:.1} MB, {} merged model {:.1} MB",
        usage.blobs,
        usage.blob_bytes as f64 / 1e6,
        usage.indexes,
        usage.index_bytes as f64 / 1e6,
        usage.models,
        usage.model_bytes as f64 / 1e6
    );
    best_of(
        "registry, warm cache (whole command)",
        "",
        (0..RUNS)
            .map(|_| run(exe, &cache, &["--quiet", "--json", "/dev/null", &reference]))
            .collect(),
    );
    best_of(
        "docker archive, warm cache (whole command)",
        "",
        (0..RUNS)
            .map(|_| {
                run(
                    exe,
                    &cache,
                    &["--quiet", "--json", "/dev/null", &archive_arg],
                )
            })
            .collect(),
    );
    let loads: Vec<(Duration, Duration, usize)> = (0..RUNS + 2)
        .map(|_| runtime.block_on(warm_load(&reference, &cache)))
        .collect();
    let nodes = loads.first().map_or(0, |l| l.2);
    best_of(
        &format!("in process, warm cache: pipeline::load to the full model ({nodes} nodes)"),
        " [target < 0.200 s]",
        loads.iter().map(|l| l.0).collect(),
    );
    best_of(
        "in process, warm cache: full model and figures",
        "",
        loads.iter().map(|l| l.1).collect(),
    );
    drop(registry);
    let _ = std::fs::remove_dir_all(&work);
}
