//! Synthetic images for the benchmarks, written once as real gzip layers into a
//! data directory and reused by later runs:
//! - `110k`: two layers, 100k files under a package-like fan-out (a quarter empty, the rest
//!   64 B – 4 KiB of text), then 5k overwrites + 5k new files + 11k whiteouts.
//! - `1M`: two layers: one million small files (a third empty, the rest 16 B – 1 KiB of
//!   text), then a layer that modifies 100k of them, deletes another 100k and adds 100k new
//!   ones, so the final filesystem again holds one million files.
//! - `600M`: five layers, ~600 MB of files from bytes to megabytes, about a quarter of the
//!   bytes incompressible (binaries, archives), so gzip shrinks it roughly as real images
//!   shrink (~283 MB).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use layerscope::digest::Digest;

/// Bump when the generator changes, so stale data is rebuilt.
pub const DATA_VERSION: u32 = 5;

/// A small deterministic generator (splitmix64), so every run writes the same bytes.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Text-like bytes (words from a small vocabulary), so gzip behaves as on source trees.
fn text_pool(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "import", "def", "return", "self", "class", "from", "None", "True", "False", "if", "else",
        "for", "in", "while", "value", "data", "config", "layer", "error", "result", "path",
        "name", "index", "size", "node", "tree", "file", "bytes", "stream", "module", "package",
        "test", "assert", "raise", "except", "try", "with", "as", "lambda", "yield", "async",
        "await", "print", "len", "range", "dict", "list", "tuple", "set", "str", "int", "float",
    ];
    let mut rng = Rng(42);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        out.push(match rng.below(12) {
            0 => b'\n',
            1 => b'(',
            2 => b'.',
            3 => b':',
            _ => b' ',
        });
        if rng.below(40) == 0 {
            out.extend_from_slice(format!("{}", rng.next() % 100_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Which files a layer holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SizeProfile {
    /// Source-tree-like: a quarter empty, the rest 64 B – 4 KiB of text.
    Small,
    /// Many tiny files (a Python environment's `__init__.py`, metadata, stubs): a third
    /// empty, the rest 16 B – 1 KiB of text.
    Tiny,
    /// A whole distribution: mostly small text files, some medium ones and a tail of large
    /// files, half of which are incompressible.
    Mixed,
}

/// Incompressible bytes, as in binaries, jars and compressed archives.
fn random_pool(len: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A size for the mixed profile, and whether its bytes should be incompressible.
fn mixed_file(rng: &mut Rng) -> (usize, bool) {
    match rng.below(100) {
        0..=59 => (file_size(rng), false),
        60..=89 => {
            let base = 4096usize << rng.below(5);
            (base + rng.below(base as u64) as usize, rng.below(10) == 0)
        }
        _ => {
            let base = (128 * 1024usize) << rng.below(5);
            (base + rng.below(base as u64) as usize, rng.below(4) == 0)
        }
    }
}

/// A tiny file's size: a third empty, the rest log-spread over 16 B – 1 KiB.
fn tiny_size(rng: &mut Rng) -> usize {
    if rng.below(3) == 0 {
        return 0;
    }
    let base = 16usize << rng.below(6);
    base + rng.below(base as u64) as usize
}

/// A plausible file size: a quarter empty, the rest log-spread over 64 B – 4 KiB.
fn file_size(rng: &mut Rng) -> usize {
    if rng.below(4) == 0 {
        return 0;
    }
    let base = 64usize << rng.below(6);
    base + rng.below(base as u64) as usize
}

fn header(path: &[u8], typeflag: u8, size: u64, mode: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    let (name, prefix): (&[u8], &[u8]) = if path.len() <= 100 {
        (path, b"")
    } else {
        let split = path[..156]
            .iter()
            .rposition(|&c| c == b'/')
            .expect("generated paths split");
        (&path[split + 1..], &path[..split])
    };
    b[..name.len()].copy_from_slice(name);
    let octal = |field: &mut [u8], value: u64| {
        let digits = field.len() - 1;
        field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
    };
    octal(&mut b[100..108], u64::from(mode));
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], 1_700_000_000);
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[345..345 + prefix.len()].copy_from_slice(prefix);
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// Writes one layer as gzip to a file, hashing the tar on the way.
struct LayerWriter {
    gz: flate2::write::GzEncoder<BufWriter<File>>,
    hasher: layerscope::digest::DigestHasher,
    tar_len: u64,
    files: u64,
    whiteouts: u64,
    dirs_written: std::collections::HashSet<Vec<u8>>,
}

impl LayerWriter {
    fn new(path: &Path) -> Self {
        let file = File::create(path).expect("create layer file");
        LayerWriter {
            gz: flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::new(6)),
            hasher: layerscope::digest::DigestHasher::new(layerscope::digest::Algorithm::Sha256),
            tar_len: 0,
            files: 0,
            whiteouts: 0,
            dirs_written: std::collections::HashSet::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.gz.write_all(bytes).expect("write layer");
        self.tar_len += bytes.len() as u64;
    }

    /// Explicit directory entries for the parents, as `docker build` writes them.
    fn parents(&mut self, path: &[u8]) {
        let mut end = 0;
        while let Some(slash) = path[end..].iter().position(|&c| c == b'/') {
            end += slash;
            let dir = path[..end].to_vec();
            if self.dirs_written.insert(dir.clone()) {
                let mut name = dir;
                name.push(b'/');
                self.put(&header(&name, b'5', 0, 0o755));
            }
            end += 1;
        }
    }

    fn file(&mut self, path: &[u8], data: &[u8]) {
        self.parents(path);
        self.put(&header(path, b'0', data.len() as u64, 0o644));
        self.put(data);
        let pad = (512 - data.len() % 512) % 512;
        self.put(&vec![0u8; pad]);
        self.files += 1;
    }

    fn whiteout(&mut self, path: &[u8]) {
        let slash = path.iter().rposition(|&c| c == b'/').expect("nested path");
        let marker = [&path[..=slash], b".wh.", &path[slash + 1..]].concat();
        self.parents(&marker);
        self.put(&header(&marker, b'0', 0, 0o644));
        self.whiteouts += 1;
    }

    fn finish(mut self) -> LayerFile {
        self.put(&[0u8; 1024]);
        let mut out = self.gz.finish().expect("finish gzip");
        out.flush().expect("flush layer");
        LayerFile {
            diff_id: self.hasher.finish(),
            tar_len: self.tar_len,
            files: self.files,
            whiteouts: self.whiteouts,
        }
    }
}

struct LayerFile {
    diff_id: Digest,
    tar_len: u64,
    files: u64,
    whiteouts: u64,
}

/// One generated layer on disk.
pub struct GeneratedLayer {
    /// The gzip blob.
    pub path: PathBuf,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_len: u64,
    /// Regular-file entries.
    pub files: u64,
    /// Whiteout entries.
    pub whiteouts: u64,
}

impl GeneratedLayer {
    /// Bytes of the gzip blob.
    pub fn compressed_len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

fn file_path(i: u64) -> Vec<u8> {
    // site-packages/pkgNNN/modM/subS/file_I.py: 100 files per module, 20 per directory.
    format!(
        "usr/lib/python3/site-packages/pkg{:04}/mod{}/sub{}/file_{i}.py",
        i / 1000,
        (i / 100) % 10,
        (i / 20) % 5
    )
    .into_bytes()
}

/// What one layer of a scenario holds: new files `range`, overwrites, whiteouts, and for the
/// mixed profile a byte budget that ends the layer before the range does.
struct LayerPlan {
    new_files: std::ops::Range<u64>,
    overwrite: Vec<u64>,
    whiteout: Vec<u64>,
    profile: SizeProfile,
    budget: Option<u64>,
}

impl LayerPlan {
    fn small(new_files: std::ops::Range<u64>, overwrite: Vec<u64>, whiteout: Vec<u64>) -> Self {
        LayerPlan {
            new_files,
            overwrite,
            whiteout,
            profile: SizeProfile::Small,
            budget: None,
        }
    }

    fn tiny(new_files: std::ops::Range<u64>, overwrite: Vec<u64>, whiteout: Vec<u64>) -> Self {
        LayerPlan {
            profile: SizeProfile::Tiny,
            ..LayerPlan::small(new_files, overwrite, whiteout)
        }
    }

    fn mixed(first: u64, budget_mb: u64, overwrite: Vec<u64>, whiteout: Vec<u64>) -> Self {
        LayerPlan {
            new_files: first..first + 1_000_000,
            overwrite,
            whiteout,
            profile: SizeProfile::Mixed,
            budget: Some(budget_mb * 1_000_000),
        }
    }
}

fn scenario_plan(name: &str) -> Vec<LayerPlan> {
    match name {
        "110k" => {
            let base = 0..100_000u64;
            let overwrite: Vec<u64> = base.clone().filter(|i| i % 20 == 3).collect();
            let whiteout: Vec<u64> = base
                .clone()
                .filter(|i| (i % 9 == 1 || i % 9 == 5) && i % 20 != 3)
                .take(11_000)
                .collect();
            vec![
                LayerPlan::small(base, Vec::new(), Vec::new()),
                LayerPlan::small(100_000..105_000, overwrite, whiteout),
            ]
        }
        "1M" => {
            // Changes spread over the whole tree, so every directory has some.
            let overwrite: Vec<u64> = (0..1_000_000u64).filter(|i| i % 10 == 3).collect();
            let whiteout: Vec<u64> = (0..1_000_000u64).filter(|i| i % 10 == 7).collect();
            vec![
                LayerPlan::tiny(0..1_000_000, Vec::new(), Vec::new()),
                LayerPlan::tiny(1_000_000..1_100_000, overwrite, whiteout),
            ]
        }
        "600M" => {
            // Each layer's files start at a fresh million so paths never collide by accident;
            // the last layers overwrite and delete some of the first layer's files.
            let overwrite: Vec<u64> = (0..1_000u64).filter(|i| i % 7 == 3).collect();
            let whiteout: Vec<u64> = (0..1_000u64)
                .filter(|i| i % 11 == 4 && i % 7 != 3)
                .collect();
            vec![
                LayerPlan::mixed(0, 150, Vec::new(), Vec::new()),
                LayerPlan::mixed(1_000_000, 250, Vec::new(), Vec::new()),
                LayerPlan::mixed(2_000_000, 120, Vec::new(), Vec::new()),
                LayerPlan::mixed(3_000_000, 60, overwrite, Vec::new()),
                LayerPlan::mixed(4_000_000, 20, Vec::new(), whiteout),
            ]
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Generate (or reuse) the scenario's layer files; returns their paths and diff_ids.
/// Generate (or reuse) the layers of scenario `name` (`110k`, `1M`, `600M`) in `dir`.
pub fn ensure_layers(dir: &Path, name: &str) -> Vec<GeneratedLayer> {
    let plan = scenario_plan(name);
    let manifest = dir.join(format!("{name}-v{DATA_VERSION}.txt"));
    if let Ok(text) = std::fs::read_to_string(&manifest) {
        let layers: Vec<GeneratedLayer> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let path = PathBuf::from(parts.next()?);
                let layer = GeneratedLayer {
                    diff_id: parts.next()?.parse().ok()?,
                    tar_len: parts.next()?.parse().ok()?,
                    files: parts.next()?.parse().ok()?,
                    whiteouts: parts.next()?.parse().ok()?,
                    path,
                };
                layer.path.exists().then_some(layer)
            })
            .collect();
        if layers.len() == plan.len() {
            return layers;
        }
    }
    eprintln!("generating scenario {name} in {} …", dir.display());
    let text = text_pool(8 << 20);
    let random = random_pool(8 << 20);
    let started = Instant::now();
    let results: Vec<GeneratedLayer> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(n, layer)| {
                let (text, random) = (&text, &random);
                let path = dir.join(format!("{name}-v{DATA_VERSION}-layer{n}.tar.gz"));
                scope.spawn(move || {
                    let mut rng = Rng(1000 + n as u64);
                    let mut w = LayerWriter::new(&path);
                    let write_file = |w: &mut LayerWriter, i: u64, rng: &mut Rng| {
                        let (size, incompressible) = match layer.profile {
                            SizeProfile::Small => (file_size(rng), false),
                            SizeProfile::Tiny => (tiny_size(rng), false),
                            SizeProfile::Mixed => mixed_file(rng),
                        };
                        let pool = if incompressible { random } else { text };
                        let start = rng.below((pool.len() - size) as u64) as usize;
                        w.file(&file_path(i), &pool[start..start + size]);
                    };
                    for &i in &layer.overwrite {
                        write_file(&mut w, i, &mut rng);
                    }
                    for i in layer.new_files.clone() {
                        if layer.budget.is_some_and(|b| w.tar_len >= b) {
                            break;
                        }
                        write_file(&mut w, i, &mut rng);
                    }
                    for &i in &layer.whiteout {
                        w.whiteout(&file_path(i));
                    }
                    let l = w.finish();
                    GeneratedLayer {
                        path,
                        diff_id: l.diff_id,
                        tar_len: l.tar_len,
                        files: l.files,
                        whiteouts: l.whiteouts,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread"))
            .collect()
    });
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    let mut listing = String::new();
    for l in &results {
        listing.push_str(&format!(
            "{} {} {} {} {}\n",
            l.path.display(),
            l.diff_id,
            l.tar_len,
            l.files,
            l.whiteouts
        ));
    }
    std::fs::write(&manifest, listing).expect("write manifest");
    results
}

/// "N cores; load average A B C": how busy the machine was, printed with every benchmark.
pub fn machine() -> String {
    format!(
        "{} cores; load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// What a scenario's layers add up to.
pub struct Totals {
    /// Layers.
    pub layers: usize,
    /// Gzip bytes.
    pub compressed: u64,
    /// Tar bytes.
    pub uncompressed: u64,
    /// File entries.
    pub files: u64,
    /// Whiteout entries.
    pub whiteouts: u64,
}

impl Totals {
    /// Sum up `layers`.
    pub fn of(layers: &[GeneratedLayer]) -> Totals {
        Totals {
            layers: layers.len(),
            compressed: layers.iter().map(GeneratedLayer::compressed_len).sum(),
            uncompressed: layers.iter().map(|l| l.tar_len).sum(),
            files: layers.iter().map(|l| l.files).sum(),
            whiteouts: layers.iter().map(|l| l.whiteouts).sum(),
        }
    }
}

impl std::fmt::Display for Totals {
    /// "2 gzip layers, 110000 files, 11000 whiteouts, 29.3 MB gzip, 173.9 MB tar".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} gzip layers, {} files, {} whiteouts, {:.1} MB gzip, {:.1} MB tar",
            self.layers,
            self.files,
            self.whiteouts,
            self.compressed as f64 / 1e6,
            self.uncompressed as f64 / 1e6
        )
    }
}

/// A peak RSS in KiB (as `VmHWM` and `getrusage` give it) in both units a reader may hold a
/// target in: MiB, and MB of 10^6 bytes.
pub fn peak(kib: impl Into<i128>) -> String {
    let kib = kib.into() as f64;
    format!("{:.1} MiB = {:.1} MB", kib / 1024.0, kib * 1024.0 / 1e6)
}
