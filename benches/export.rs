//! Export benchmark: the synthetic images (`support/synthetic.rs`) pushed to a real loopback
//! registry, then taken out by the release binary as a user runs it, with wall time and the
//! child's peak memory:
//!
//! - `--json` (load only, no cache): the model's own peak memory, for comparison;
//! - `export -o -` (a tar to a pipe) with the cache warm, and with `--no-cache` (the blobs
//!   downloaded twice);
//! - `export -o DIR/` (extracted to disk) with the cache warm, beside GNU `tar -x` of the same
//!   tar into a directory (extraction speed is mostly the filesystem's);
//! - `cat` of one file of the last layer with the cache warm.
//!
//! Streaming shows as peak memory that stays near the load-only figure whatever the image's
//! size. `cargo bench --bench export [SCENARIO…]` with `600M` (default) and `110k`. Layer data
//! is shared with the other benchmarks (`target/tmp/engine-bench/`); the cache and the
//! extracted directory live in `target/tmp/export-bench/` and are removed at the end.

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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use measure::{run_measured, Measured};
use registry::Registry;
use synthetic::{ensure_layers, Totals};

/// Measurements per configuration; the best is reported with all of them.
const RUNS: usize = 3;

/// Measure `args` `runs` times (running `before` first each time) and print the best.
fn report(
    label: &str,
    exe: &str,
    cache: &Path,
    args: &[&str],
    runs: usize,
    bytes: u64,
    before: impl Fn(),
) {
    let results: Vec<Measured> = (0..runs)
        .map(|_| {
            before();
            run_measured(exe, cache, args).expect_success(&args.join(" "))
        })
        .collect();
    print_runs(label, &results, bytes);
}

/// Print the best of `results` and the highest peak memory.
fn print_runs(label: &str, results: &[Measured], bytes: u64) {
    let best = results
        .iter()
        .min_by_key(|r| r.wall)
        .expect("at least one run");
    let walls: Vec<String> = results
        .iter()
        .map(|r| format!("{:.3}", r.wall.as_secs_f64()))
        .collect();
    let peak = results.iter().map(|r| r.max_rss_kib).max().unwrap_or(0);
    println!(
        "  {label}: best {:.3} s (runs {} s), {:.0} MB/s of tar, peak RSS {} (highest of the runs)",
        best.wall.as_secs_f64(),
        walls.join(", "),
        bytes as f64 / 1e6 / best.wall.as_secs_f64(),
        synthetic::peak(peak),
    );
}

/// The path and size of the first regular file of a gzip layer.
fn first_file(layer: &Path) -> (String, u64) {
    use std::io::Read;
    let bytes = std::fs::read(layer).expect("layer");
    let mut tar = flate2::read::MultiGzDecoder::new(bytes.as_slice());
    let mut header = [0u8; 512];
    loop {
        tar.read_exact(&mut header).expect("a header");
        assert!(
            header.iter().any(|&b| b != 0),
            "no regular file in the layer"
        );
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).trim().to_string()
        };
        let size = u64::from_str_radix(&field(124..136), 8).unwrap_or(0);
        if matches!(header[156], b'0' | 0) {
            return (field(0..100), size);
        }
        let padded = size.div_ceil(512) * 512;
        std::io::copy(&mut (&mut tar).take(padded), &mut std::io::sink()).expect("skip data");
    }
}

fn main() {
    if measure::serve_measure_request() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let wanted: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let scenarios: Vec<&str> = if wanted.is_empty() {
        vec!["600M"]
    } else {
        ["600M", "110k"]
            .into_iter()
            .filter(|s| wanted.iter().any(|w| w == s))
            .collect()
    };
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-bench");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-bench");
    std::fs::create_dir_all(&data).expect("bench data dir");
    let exe = env!("CARGO_BIN_EXE_layerscope");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("layerscope export benchmark ({})", synthetic::machine());
    for name in scenarios {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("work dir");
        let cache = work.join("cache");
        let layers = ensure_layers(&data, name);
        let totals = Totals::of(&layers);
        let tar_bytes = totals.uncompressed;
        println!();
        println!("scenario {name}: {totals}");
        let registry = runtime.block_on(Registry::start());
        let repo = format!("bench/{}", name.to_ascii_lowercase());
        runtime.block_on(publish::push_generated(&registry.url(), &repo, &layers));
        let reference = format!("{}/{repo}:latest", registry.host);
        let r = reference.as_str();
        let nothing = || {};

        report(
            "load only (--json, no cache)",
            exe,
            &cache,
            &["--quiet", "--no-cache", "--json", "/dev/null", r],
            RUNS,
            tar_bytes,
            nothing,
        );
        // Fill the cache once: blobs and indexes.
        run_measured(exe, &cache, &["--quiet", "--json", "/dev/null", r]).expect_success("--json");
        report(
            "export -o - (tar to a pipe), cache warm",
            exe,
            &cache,
            &["export", "--quiet", r, "-o", "-"],
            RUNS,
            tar_bytes,
            nothing,
        );
        report(
            "export -o - --no-cache (blobs downloaded twice)",
            exe,
            &cache,
            &["export", "--quiet", "--no-cache", r, "-o", "-"],
            RUNS.min(2),
            tar_bytes,
            nothing,
        );
        // Each run into a fresh directory, removed only at the end: creating many files
        // right after deleting many is slow on ext4 whatever writes them.
        let dirs: Vec<String> = (0..RUNS)
            .map(|n| format!("{}/", work.join(format!("rootfs-{n}")).display()))
            .collect();
        let results: Vec<Measured> = dirs
            .iter()
            .map(|d| {
                run_measured(exe, &cache, &["export", "--quiet", r, "-o", d])
                    .expect_success("export -o DIR/")
            })
            .collect();
        print_runs(
            "export -o DIR/ (extracted), cache warm",
            &results,
            tar_bytes,
        );
        // The same into a directory by GNU tar, from a tar the export wrote.
        let tar_file = work.join("rootfs.tar");
        run_measured(
            exe,
            &cache,
            &[
                "export",
                "--quiet",
                r,
                "-o",
                &tar_file.display().to_string(),
            ],
        )
        .expect_success("export -o FILE");
        let gnu: Vec<Duration> = (0..RUNS)
            .map(|n| {
                let into = work.join(format!("gnu-{n}"));
                std::fs::create_dir_all(&into).expect("dir");
                let started = Instant::now();
                let status = Command::new("tar")
                    .arg("-xf")
                    .arg(&tar_file)
                    .arg("-C")
                    .arg(&into)
                    .status()
                    .expect("GNU tar");
                assert!(status.success(), "tar -x failed");
                started.elapsed()
            })
            .collect();
        let walls: Vec<String> = gnu
            .iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect();
        println!(
            "  GNU tar -x of that tar into a directory (baseline): best {:.3} s (runs {} s)",
            gnu.iter().min().copied().unwrap_or_default().as_secs_f64(),
            walls.join(", ")
        );
        // The first regular file the last layer writes.
        let (first, size) = first_file(&layers[layers.len() - 1].path);
        report(
            &format!("cat /{first} ({size} bytes), cache warm"),
            exe,
            &cache,
            &["cat", "--quiet", r, &format!("/{first}")],
            RUNS,
            size,
            nothing,
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
