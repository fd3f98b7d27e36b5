//! One measured run of the layerscope binary: wall time, user + system CPU time, exit code, the
//! bytes it printed and its peak resident memory, taken by `wait4` so that it is the child's
//! alone.
//!
//! The run goes through a fresh, small copy of the benchmark (`BENCH --measure CACHE EXE
//! ARGS…`): a forked child is charged its parent's resident pages until it execs, and a
//! benchmark holds images in memory, so measuring from the benchmark itself would charge them
//! to layerscope. Each benchmark's `main` starts with [`serve_measure_request`].

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary cost.
pub struct Measured {
    /// Exit code (-1 when a signal ended it).
    pub status: i32,
    pub wall: Duration,
    /// User + system CPU time: steadier than the wall time when other work shares the cores.
    pub cpu: Duration,
    pub max_rss_kib: i64,
    /// Bytes written to standard output.
    pub stdout_bytes: u64,
    /// What the binary wrote to standard error, to explain a failure.
    pub stderr: String,
}

impl Measured {
    /// Panic with the binary's own words unless it exited with 0.
    pub fn expect_success(self, what: &str) -> Measured {
        assert!(
            self.status == 0,
            "layerscope {what} failed (exit {}): {}",
            self.status,
            self.stderr
        );
        self
    }
}

/// Run `exe args` with `cache` as its cache directory (never the user's), from a measuring copy.
pub fn run_measured(exe: &str, cache: &Path, args: &[&str]) -> Measured {
    let me = std::env::current_exe().expect("own executable");
    let out = Command::new(me)
        .arg("--measure")
        .arg(cache)
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("start the measuring copy");
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fields: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("measurement failed: {stderr}"))
        .split(' ')
        .collect();
    let field = |i: usize| -> &str { fields.get(i).copied().expect("a RESULT field") };
    Measured {
        status: field(0).parse().expect("exit code"),
        wall: Duration::from_secs_f64(field(1).parse().expect("wall time")),
        cpu: Duration::from_secs_f64(field(2).parse().expect("CPU time")),
        max_rss_kib: field(3).parse().expect("peak RSS"),
        stdout_bytes: field(4).parse().expect("output bytes"),
        stderr,
    }
}

/// In the measuring copy (`--measure` as the first argument): run the command, print `RESULT
/// status wall cpu max_rss_kib stdout_bytes` and return true. Otherwise return false at once.
pub fn serve_measure_request() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--measure") || args.len() < 4 {
        return false;
    }
    let (cache, exe, rest) = (&args[2], &args[3], &args[4..]);
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(rest)
        .env_remove("CI")
        .env("LAYERSCOPE_CACHE_DIR", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
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
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    drop(child);
    let bytes = counter.join().unwrap_or(0);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    println!(
        "RESULT {code} {} {cpu} {} {bytes}",
        wall.as_secs_f64(),
        usage.ru_maxrss
    );
    true
}
