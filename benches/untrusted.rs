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

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use layers::{Compress, LayerBuilder};
use push::{mt, Blob, Pusher};
use registry::Registry;

/// One measured run.
struct Run {
    status: i32,
    max_rss_kib: i64,
    stdout_bytes: u64,
    wall: Duration,
}

/// Run `exe args` from a fresh, small copy of this program (a child is charged its parent's
/// resident pages until it execs; this process holds the images).
fn run_measured(exe: &str, args: &[&str]) -> Run {
    let me = std::env::current_exe().expect("own executable");
    let out = Command::new(me)
        .arg("--measure")
        .arg(exe)
        .args(args)
        .output()
        .expect("start the measuring copy");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "measurement failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .split(' ')
        .collect();
    Run {
        status: fields[0].parse().expect("status"),
        max_rss_kib: fields[1].parse().expect("peak"),
        stdout_bytes: fields[2].parse().expect("bytes"),
        wall: Duration::from_secs_f64(fields[3].parse().expect("wall")),
    }
}

/// In the measuring copy: run, count what it prints, wait with `wait4`, print
/// `RESULT exit-code peak-kib stdout-bytes wall-seconds`.
fn measure_child(exe: &str, args: &[String]) {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .env_remove("CI")
        .env(
            "LAYERSCOPE_CACHE_DIR",
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("untrusted-bench-cache"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start layerscope");
    let mut out = child.stdout.take().expect("stdout");
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own un-waited child; status and usage are valid for writing.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    drop(child);
    let bytes = counter.join().unwrap_or(0);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    println!(
        "RESULT {code} {} {bytes} {}",
        usage.ru_maxrss,
        started.elapsed().as_secs_f64()
    );
}

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
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure") {
        measure_child(&args[2], &args[3..]);
        return;
    }
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
    for case in cases {
        let run = run_measured(&exe, &case);
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
