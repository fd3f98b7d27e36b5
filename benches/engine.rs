//! Engine benchmark: synthetic images indexed, merged and analysed, with wall
//! time, throughput and peak memory printed beside the targets.
//!
//! `cargo bench --bench engine`. Layers are generated once into `target/tmp/engine-bench/`
//! (gzip level 6, as `docker push` writes them) and then read from disk by a fresh child
//! process per measurement, so each peak RSS (VmHWM) belongs to one scenario alone.
//!
//! Scenarios:
//! - `110k`: two gzip layers, 100k files under a package-like fan-out (a quarter empty, the
//!   rest 64 B – 4 KiB of text), then 5k overwrites + 5k new files + 11k whiteouts.
//! - `1M`: two gzip layers, one million tiny files, then 100k modified, 100k deleted and
//!   100k added.
//!
//! `cargo bench --bench engine [110k|1M]` runs the scenarios named (default: both).
//!
//! First it prints SHA-256's speed on this machine over bytes in cache and over 512 MiB out of
//! cache, hashed plainly and as layerscope hashes a stream: machines whose hardware prefetcher
//! does not follow the hash show the gap that hashing with loads ahead closes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use layerscope::analysis::analyse;
use layerscope::findings::find;
use layerscope::layer::{index_layer_tapped, index_layer_with, IndexOptions, LayerIndex};
use layerscope::tree::{BaseLayerMerge, FileTree};

/// Layers indexed at once, as the real pipeline does.
const PARALLEL_LAYERS: usize = 3;
/// Measurements per scenario and mode.
const RUNS: usize = 3;

#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{ensure_layers, GeneratedLayer, Totals};

// ---------------------------------------------------------------------------------------------
// Measurement (child process)

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn child(name: &str, threaded: bool, dir: &Path) {
    let layers = ensure_layers(dir, name);
    let options = IndexOptions {
        decompress_thread: threaded,
        ..IndexOptions::default()
    };
    let Totals {
        compressed,
        uncompressed,
        files,
        ..
    } = Totals::of(&layers);

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    // As the pipeline does: the first layer is merged while it streams, the others after.
    let (tx, rx) = mpsc::channel::<(usize, Result<FileTree, LayerIndex>, Duration)>();
    let mut tree = FileTree::new();
    let mut push_time = Duration::ZERO;
    let mut indexed_at = Duration::ZERO;
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_LAYERS.min(layers.len()) {
            let tx = tx.clone();
            let next = &next;
            let layers = &layers;
            scope.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(GeneratedLayer { path, diff_id, .. }) = layers.get(n) else {
                    return;
                };
                let t = Instant::now();
                let file = File::open(path).expect("open layer");
                let obtained = if n == 0 {
                    let (tap, batches) = mpsc::sync_channel(8);
                    let merger = std::thread::spawn(move || BaseLayerMerge::from_batches(batches));
                    // As with --no-cache: the merge has the paths, the index need not keep them.
                    let streamed = IndexOptions {
                        entry_paths: false,
                        ..options
                    };
                    let index = index_layer_tapped(file, Some(diff_id), streamed, tap)
                        .expect("index layer");
                    Ok(merger
                        .join()
                        .expect("merge thread")
                        .finish(index)
                        .expect("every entry was streamed"))
                } else {
                    // As the pipeline does: a small later layer runs below normal priority
                    // while the first one streams.
                    let first = layers.first().map_or(0, GeneratedLayer::compressed_len);
                    let size = layers[n].compressed_len();
                    let later = IndexOptions {
                        background: layerscope::pipeline::small_beside_first(size, first),
                        ..options
                    };
                    Err(index_layer_with(file, Some(diff_id), later).expect("index layer"))
                };
                if tx.send((n, obtained, t.elapsed())).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        // Merge in order as soon as each next layer is ready.
        let mut waiting: Vec<Option<LayerIndex>> = (0..layers.len()).map(|_| None).collect();
        let mut pushed = 0;
        for (n, obtained, took) in rx {
            let (entries, tar_size) = match &obtained {
                Ok(base) => (base.layer_stats(0).entry_count, base.layer_meta(0).tar_size),
                Err(index) => (index.len() as u64, index.tar_size()),
            };
            let merged = if obtained.is_ok() { " and merged" } else { "" };
            println!(
                "    layer {n}: {entries} entries, indexed{merged} in {:.3} s ({:.0} MB/s uncompressed)",
                took.as_secs_f64(),
                tar_size as f64 / 1e6 / took.as_secs_f64()
            );
            match obtained {
                Ok(base) => tree = base,
                Err(index) => waiting[n] = Some(index),
            }
            if n == 0 {
                pushed = 1;
            }
            while let Some(index) = waiting.get_mut(pushed).and_then(Option::take) {
                let t = Instant::now();
                tree.push_layer(index);
                push_time += t.elapsed();
                pushed += 1;
            }
            indexed_at = started.elapsed();
        }
    });
    let t = Instant::now();
    let figures = analyse(&tree);
    let analyse_time = t.elapsed();
    let total = started.elapsed();
    let hwm = vm_hwm_kib();
    // Findings come after the figures in every front end; measured apart.
    let t = Instant::now();
    let found = find(&tree, &[]);
    let findings_time = t.elapsed();
    let hwm_with_findings = vm_hwm_kib();
    let heap = tree.heap_bytes();
    println!("RESULT wall={}", total.as_secs_f64());
    let (time_target, memory_target) = match name {
        "110k" => ("0.6 s", "100 MB"),
        _ => ("1.2 s", "200 MB"),
    };
    println!(
        "  wall {:.3} s [target < {time_target}]  (all layers indexed at {:.3} s; push_layer of the later layers {:.3} s; analyse {:.3} s)",
        total.as_secs_f64(),
        indexed_at.as_secs_f64(),
        push_time.as_secs_f64(),
        analyse_time.as_secs_f64()
    );
    println!(
        "  throughput {:.0} MB/s compressed, {:.0} MB/s uncompressed, {:.0}k files/s",
        compressed as f64 / 1e6 / total.as_secs_f64(),
        uncompressed as f64 / 1e6 / total.as_secs_f64(),
        files as f64 / 1e3 / total.as_secs_f64()
    );
    println!(
        "  peak RSS {} [target < {memory_target}] ({:.0} B per file); tree allocations {:.1} MB by capacity ({:.0} B per node, {} nodes)",
        synthetic::peak(hwm),
        hwm as f64 * 1024.0 / files as f64,
        heap as f64 / 1e6,
        heap as f64 / tree.node_count() as f64,
        tree.node_count()
    );
    println!(
        "  findings {:.3} s more ({:.1} % of the wall time; {} findings, {} B reclaimable); peak RSS {} with them ({:+.1} %)",
        findings_time.as_secs_f64(),
        findings_time.as_secs_f64() / total.as_secs_f64() * 100.0,
        found.items.len(),
        found.reclaimable_bytes,
        synthetic::peak(hwm_with_findings),
        (hwm_with_findings as f64 / hwm as f64 - 1.0) * 100.0
    );
    println!(
        "  figures: efficiency {:.4}, wasted {} B, userWasted {:.4}, shadowed {} B, {} files / {} B visible, {} inefficient paths",
        figures.efficiency,
        figures.wasted_bytes,
        figures.user_wasted_percent,
        figures.shadowed_bytes,
        figures.file_count,
        figures.file_bytes,
        figures.inefficiencies.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Baselines (parent process)

/// Bare `gzip -dc | sha256sum` of each layer on one thread: the floor for one core.
fn gunzip_floor(layers: &[GeneratedLayer]) -> Duration {
    let started = Instant::now();
    for GeneratedLayer { path, .. } in layers {
        let file = BufReader::with_capacity(128 * 1024, File::open(path).expect("open"));
        let mut decoder = flate2::bufread::MultiGzDecoder::new(file);
        let mut hasher =
            layerscope::digest::DigestHasher::new(layerscope::digest::Algorithm::Sha256);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoder.read(&mut buf).expect("gunzip");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        std::hint::black_box(hasher.finish());
    }
    started.elapsed()
}

/// SHA-256's speed on this machine, in GB/s: over one 512 KiB buffer hashed again and again
/// (in cache), and over 512 MiB read once, plainly and as layerscope hashes streams (loading
/// ahead, [`layerscope::digest::update_ahead`]). Where the second is far below the first, the
/// hardware prefetcher does not follow the hash.
fn hash_speeds() -> (f64, f64, f64) {
    use sha2::Digest as _;
    const PIECE: usize = 512 * 1024;
    const TOTAL: usize = 512 * 1024 * 1024;
    let big: Vec<u8> = (0..TOTAL)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rate = |hash: &dyn Fn()| {
        let started = Instant::now();
        hash();
        TOTAL as f64 / 1e9 / started.elapsed().as_secs_f64()
    };
    let in_cache = rate(&|| {
        let mut hasher = sha2::Sha256::new();
        for _ in 0..TOTAL / PIECE {
            hasher.update(&big[..PIECE]);
        }
        std::hint::black_box(hasher.finalize());
    });
    let plain = rate(&|| {
        let mut hasher = sha2::Sha256::new();
        for piece in big.chunks(PIECE) {
            hasher.update(piece);
        }
        std::hint::black_box(hasher.finalize());
    });
    let ahead = rate(&|| {
        let mut hasher = sha2::Sha256::new();
        for piece in big.chunks(PIECE) {
            layerscope::digest::update_ahead(&mut hasher, piece);
        }
        std::hint::black_box(hasher.finalize());
    });
    (in_cache, plain, ahead)
}

/// Our tar walk against the `tar` crate's, on the same uncompressed tar in memory, both
/// hashing every file and the whole stream.
fn tar_parser_comparison(layer: &Path) {
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(File::open(layer).expect("open"))
        .read_to_end(&mut tar)
        .expect("gunzip");
    let best = |f: &dyn Fn() -> usize| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let ours = best(&|| {
        index_layer_with(
            &tar[..],
            None,
            IndexOptions {
                decompress_thread: false,
                ..IndexOptions::default()
            },
        )
        .expect("index")
        .len()
    });
    let crate_time = best(&|| {
        use sha2::Digest as _;
        struct Hashing<'a> {
            inner: &'a [u8],
            hasher: sha2::Sha256,
        }
        impl Read for Hashing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.inner.read(buf)?;
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
        }
        let mut reader = Hashing {
            inner: &tar[..],
            hasher: sha2::Sha256::new(),
        };
        let mut count = 0;
        {
            let mut archive = tar::Archive::new(&mut reader);
            let mut buf = vec![0u8; 64 * 1024];
            for entry in archive.entries().expect("entries") {
                let mut entry = entry.expect("entry");
                let path = entry.path_bytes().into_owned();
                let mut file_hasher = sha2::Sha256::new();
                loop {
                    let n = entry.read(&mut buf).expect("read entry");
                    if n == 0 {
                        break;
                    }
                    file_hasher.update(&buf[..n]);
                }
                std::hint::black_box((path, file_hasher.finalize()));
                count += 1;
            }
        }
        std::io::copy(&mut reader, &mut std::io::sink()).expect("drain");
        std::hint::black_box(reader.hasher.finalize());
        count
    });
    println!(
        "tar walk + hashing on {:.0} MB in memory: ours {:.3} s, tar crate {:.3} s",
        tar.len() as f64 / 1e6,
        ours.as_secs_f64(),
        crate_time.as_secs_f64()
    );
}

fn main() {
    // As the binary does.
    layerscope::allocator::return_large_allocations();
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-bench");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let name = &args[pos + 1];
        let threaded = args[pos + 2] == "threaded";
        child(name, threaded, &dir);
        return;
    }
    let exe = std::env::current_exe().expect("own executable");
    let wanted: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!("layerscope engine benchmark ({})", synthetic::machine());
    let (in_cache, plain, ahead) = hash_speeds();
    println!(
        "sha256: {in_cache:.2} GB/s in cache; over 512 MiB out of cache {plain:.2} GB/s plainly, \
         {ahead:.2} GB/s loading ahead"
    );
    for (name, target) in [
        ("110k", "target: < 0.6 s and < 100 MB"),
        ("1M", "target: < 1.2 s and < 200 MB"),
    ] {
        if !wanted.is_empty() && !wanted.iter().any(|w| *w == name) {
            continue;
        }
        let layers = ensure_layers(&dir, name);
        let totals = Totals::of(&layers);
        let uncompressed = totals.uncompressed;
        println!();
        println!("scenario {name}: {totals} ({target})");
        let floor = gunzip_floor(&layers);
        println!(
            "  floor: bare gunzip + sha256 of every layer on one core: {:.3} s ({:.0} MB/s uncompressed)",
            floor.as_secs_f64(),
            uncompressed as f64 / 1e6 / floor.as_secs_f64()
        );
        for mode in ["threaded", "inline"] {
            // The cores are shared with other work: run each measurement a few times in a
            // fresh process and show the fastest run in full, with every run's wall time.
            let mut runs: Vec<(f64, String)> = (0..RUNS)
                .map(|_| {
                    let out = std::process::Command::new(&exe)
                        .args(["--child", name, mode])
                        .output()
                        .expect("run child");
                    assert!(
                        out.status.success(),
                        "child failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let wall = text
                        .lines()
                        .find_map(|l| l.strip_prefix("RESULT wall="))
                        .and_then(|v| v.parse().ok())
                        .expect("child reports its wall time");
                    (wall, text)
                })
                .collect();
            let walls: Vec<String> = runs.iter().map(|(w, _)| format!("{w:.3}")).collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            println!(
                "  [{mode} decompression, {PARALLEL_LAYERS} layers at once; runs: {} s; fastest shown]",
                walls.join(", ")
            );
            for line in runs[0].1.lines().filter(|l| !l.starts_with("RESULT")) {
                println!("{line}");
            }
        }
        if name == "110k" {
            tar_parser_comparison(&layers[0].path);
        }
    }
}
