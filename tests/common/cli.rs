//! Running the layerscope binary the way the tests need it: isolated from this machine (its
//! own HOME, Docker config, cache, runtime directory, certs.d and daemon.json under a temporary
//! `home`, no `CI` variable, empty standard input), and reading what it printed.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

/// The binary with an isolated environment. `DOCKER_HOST` is passed on, so engine tests reach
/// the engine the machine has; everything else the binary could read comes from `home`.
pub fn command(home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_layerscope"));
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
