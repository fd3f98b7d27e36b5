//! Running the layerscope binary the way the tests need it: isolated from this machine (its
//! own HOME, Docker config, cache, runtime directory, certs.d and daemon.json under a temporary
//! `home`, no `CI` variable, empty standard input), and reading what it printed.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

/// The binary with an isolated environment. `DOCKER_HOST` is passed on, so engine tests reach
/// the engine the machine has; everything else the binary could read comes from `home`.
pub fn command(home: &Path) -> tokio::process::Command {
    tokio::process::Command::from(std_command(home))
}

/// [`command`] as a `std::process::Command`, for tests that wait for the child themselves.
pub fn std_command(home: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_layerscope"));
    command
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LAYERSCOPE_CACHE_DIR", home.join("cache"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        // certs.d and Docker's daemon.json (registry mirrors) from `home`, not from /etc.
        .env("LAYERSCOPE_CERTS_D", home.join("certs.d"))
        .env("LAYERSCOPE_DOCKER_DAEMON_JSON", home.join("daemon.json"))
        .stdin(std::process::Stdio::null());
    if let Some(host) = std::env::var_os("DOCKER_HOST") {
        command.env("DOCKER_HOST", host);
    }
    command
}

/// Run the binary with `args` (see [`command`]) and wait for it.
pub async fn run(home: &Path, args: &[&str]) -> Output {
    command(home)
        .args(args)
        .output()
        .await
        .expect("run layerscope")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output parsed as JSON.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// The JSON document of a run that succeeded (exit code 0, stderr shown when not).
pub fn json_ok(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    json(output)
}

/// A run whose peak memory was measured.
#[derive(Debug)]
pub struct Measured {
    /// What it printed and how it exited.
    pub output: Output,
    /// The child's peak resident set size, in bytes (`ru_maxrss` from `wait4`).
    pub max_rss: u64,
    /// How long it ran.
    pub elapsed: std::time::Duration,
}

/// The environment variable that turns [`measuring_copy`] on: the home, then the arguments,
/// separated by the ASCII unit separator (an environment value cannot hold a NUL).
const MEASURE: &str = "LAYERSCOPE_TEST_MEASURE";

/// Run the binary with `args` (see [`command`]) and measure its peak memory with `wait4`, as
/// the benchmarks do. A child's peak counts the memory of the process that started it (Linux
/// carries it over through `fork` and `exec`), and a test process holding large images would
/// swamp the figure; so, like the benchmarks, a small copy of this test binary starts the
/// command and waits for it (see [`measuring_copy`]). Blocking: call it from
/// `spawn_blocking` in async tests.
pub fn run_measured(home: &Path, args: &[&str]) -> Measured {
    let started = std::time::Instant::now();
    let mut spec = home.as_os_str().to_string_lossy().into_owned();
    for arg in args {
        spec.push('\u{1f}');
        spec.push_str(arg);
    }
    let copy = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "common::cli::measuring_copy",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEASURE, spec)
        .output()
        .expect("start the measuring copy");
    let report = String::from_utf8_lossy(&copy.stdout);
    let fields: Vec<&str> = report
        .lines()
        .find_map(|l| l.split("RESULT ").nth(1))
        .unwrap_or_else(|| panic!("the measuring copy failed: {report}"))
        .split(' ')
        .collect();
    use std::os::unix::process::ExitStatusExt;
    let status: i32 = fields[0].parse().expect("status");
    let max_rss_kib: u64 = fields[1].parse().expect("peak RSS");
    let read = |name: &str| std::fs::read(home.join(name)).expect("captured output");
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: read("measured.stdout"),
            stderr: read("measured.stderr"),
        },
        max_rss: max_rss_kib * 1024,
        elapsed: started.elapsed(),
    }
}

/// Not a check: the measuring copy of [`run_measured`], which does nothing unless that
/// function started this binary for it. It runs the command with its output in files under
/// the home, waits for it with `wait4` and prints `RESULT wait-status peak-rss-kib`.
#[test]
fn measuring_copy() {
    let Ok(spec) = std::env::var(MEASURE) else {
        return;
    };
    let mut parts = spec.split('\u{1f}');
    let home = std::path::PathBuf::from(parts.next().expect("home"));
    let args: Vec<&str> = parts.collect();
    let child = std_command(&home)
        .args(&args)
        .stdout(std::fs::File::create(home.join("measured.stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(home.join("measured.stderr")).expect("stderr file"))
        .spawn()
        .expect("spawn layerscope");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, waited for by nobody else (the `Child` is dropped unwaited).
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    drop(child);
    println!("RESULT {status} {}", usage.ru_maxrss);
}
