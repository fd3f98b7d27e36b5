//! Pull benchmark: synthetic images pushed to a real loopback registry, then
//! analysed by the release binary exactly as a user runs it (`--json`), with wall time and the
//! child's peak memory printed beside the targets, and the bare shell pipeline
//! `curl | tee >(sha256sum) | gzip -dc | sha256sum` over the same layers for comparison.
//!
//! `cargo bench --bench pull [SCENARIO…]` with scenarios `110k`, `1M`, `600M` (default: all).
//! Layer data is shared with the engine benchmark (`target/tmp/engine-bench/`).
//!
//! To compare with another build (say, of an earlier commit), set
//! `LAYERSCOPE_BENCH_COMPARE=/path/to/layerscope`: its `--json` runs alternate with this
//! build's, so load on a shared machine falls on both alike. `LAYERSCOPE_BENCH_RUNS` sets the
//! number of runs (default 3).

#[path = "support/synthetic.rs"]
mod synthetic;

#[path = "support/publish.rs"]
mod publish;

#[allow(dead_code)]
#[path = "support/measure.rs"]
mod measure;

#[allow(dead_code)]
#[path = "../tests/common/push.rs"]
mod push;

#[allow(dead_code)]
#[path = "../tests/common/registry.rs"]
mod registry;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use layerscope::pipeline::{self, Event};
use layerscope::reference::Reference;
use layerscope::registry::{RegistryClient, RegistryOptions};
use layerscope::source::{RegistrySource, Source};
use layerscope::tree::FileTree;

use measure::{run_measured, Measured};
use registry::Registry;
use synthetic::{ensure_layers, Totals};

/// Measurements per scenario.
const RUNS: usize = 3;

/// Time from nothing to the manifest and config resolved (what the explorer's first frame
/// needs), in process, with a fresh client each time.
async fn time_to_resolved(reference: &str) -> Duration {
    let started = Instant::now();
    let reference: Reference = reference.parse().expect("reference");
    let client = RegistryClient::new(RegistryOptions::default()).expect("client");
    let source = Arc::new(Source::Registry(RegistrySource::new(
        client, reference, None,
    )));
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let tree = Arc::new(RwLock::new(FileTree::new()));
    let load = tokio::spawn(pipeline::load(source, tree, events, |_| {}));
    let mut resolved = None;
    while let Some(event) = received.recv().await {
        if matches!(event, Event::Resolved(_)) {
            resolved = Some(started.elapsed());
            load.abort();
            break;
        }
    }
    resolved.expect("image resolved")
}

/// The shell pipeline a user would otherwise run, one layer after another.
fn shell_baseline(url: &str, repo: &str, digests: &[String]) -> Duration {
    let script = digests
        .iter()
        .map(|d| {
            format!(
                "curl -sf {url}/v2/{repo}/blobs/{d} | tee >(sha256sum >/dev/null) | gzip -dc | sha256sum >/dev/null"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .status()
        .expect("run bash");
    assert!(status.success(), "shell baseline failed");
    started.elapsed()
}

fn targets(name: &str) -> &'static str {
    match name {
        "110k" => "target: < 0.6 s and < 100 MB",
        "1M" => "target: < 1.2 s and < 200 MB",
        _ => "target: at most half the shell pipeline",
    }
}

fn main() {
    if measure::serve_measure_request() {
        return;
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios: Vec<&str> = ["110k", "1M", "600M"]
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s))
        .collect();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-bench");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let exe = env!("CARGO_BIN_EXE_layerscope");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("layerscope pull benchmark ({})", synthetic::machine());
    for name in scenarios {
        let layers = ensure_layers(&dir, name);
        let totals = Totals::of(&layers);
        let (files, compressed) = (totals.files, totals.compressed);
        println!();
        println!("scenario {name}: {totals} ({})", targets(name));
        let registry = runtime.block_on(Registry::start());
        let repo = format!("bench/{}", name.to_ascii_lowercase());
        let digests = runtime.block_on(publish::push_generated(&registry.url(), &repo, &layers));
        let reference = format!("{}/{repo}:latest", registry.host);

        let resolved: Vec<Duration> = (0..RUNS)
            .map(|_| runtime.block_on(time_to_resolved(&reference)))
            .collect();
        let args = ["--quiet", "--no-cache", "--json", "/dev/null", &reference];
        // Never the user's cache; and the runs pass --no-cache so every one pulls.
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pull-bench-cache");
        let compare = std::env::var("LAYERSCOPE_BENCH_COMPARE")
            .ok()
            .filter(|v| !v.is_empty());
        let runs_wanted = std::env::var("LAYERSCOPE_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RUNS);
        let mut runs: Vec<Measured> = Vec::new();
        let mut other_runs: Vec<Measured> = Vec::new();
        for _ in 0..runs_wanted {
            runs.push(run_measured(exe, &cache, &args).expect_success("--json"));
            if let Some(other) = &compare {
                other_runs.push(run_measured(other, &cache, &args).expect_success("--json"));
            }
        }
        if let Some(other) = &compare {
            let wall = other_runs.iter().map(|r| r.wall).min().unwrap_or_default();
            let rss = other_runs.iter().map(|r| r.max_rss_kib).min().unwrap_or(0);
            let walls: Vec<String> = other_runs
                .iter()
                .map(|r| format!("{:.3}", r.wall.as_secs_f64()))
                .collect();
            let rsss: Vec<String> = other_runs
                .iter()
                .map(|r| format!("{:.1}", r.max_rss_kib as f64 / 1024.0))
                .collect();
            println!(
                "  {other} --json: best {:.3} s (runs {} s), least peak RSS {} (runs {} MiB)",
                wall.as_secs_f64(),
                walls.join(", "),
                synthetic::peak(rss),
                rsss.join(", ")
            );
            let rsss: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.1}", r.max_rss_kib as f64 / 1024.0))
                .collect();
            println!(
                "  this build's peak RSS per run: {} MiB (least {})",
                rsss.join(", "),
                synthetic::peak(runs.iter().map(|r| r.max_rss_kib).min().unwrap_or(0))
            );
        }
        let best = runs
            .iter()
            .min_by_key(|r| r.wall)
            .expect("at least one run");
        let walls: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.3}", r.wall.as_secs_f64()))
            .collect();
        let least_cpu = runs.iter().map(|r| r.cpu).min().unwrap_or_default();
        println!(
            "  layerscope --json: best {:.3} s (runs {} s; least CPU {:.3} s), peak RSS {} ({:.0} B per file), {:.0} MB/s compressed",
            best.wall.as_secs_f64(),
            walls.join(", "),
            least_cpu.as_secs_f64(),
            synthetic::peak(best.max_rss_kib),
            best.max_rss_kib as f64 * 1024.0 / files as f64,
            compressed as f64 / 1e6 / best.wall.as_secs_f64()
        );
        let fastest_resolve = resolved.iter().min().copied().unwrap_or_default();
        println!(
            "  manifest + config resolved (first frame's data) after {:.1} ms [target < 300 ms]",
            fastest_resolve.as_secs_f64() * 1e3
        );
        let shell = (0..RUNS.min(2))
            .map(|_| shell_baseline(&registry.url(), &repo, &digests))
            .min()
            .unwrap_or_default();
        println!(
            "  shell pipeline curl | tee >(sha256sum) | gzip -dc | sha256sum: {:.3} s; layerscope takes {:.0} % of it [target <= 50 %]",
            shell.as_secs_f64(),
            best.wall.as_secs_f64() / shell.as_secs_f64() * 100.0
        );
    }
}
