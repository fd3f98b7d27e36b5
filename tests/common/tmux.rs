//! A real terminal for end-to-end explorer tests: a private tmux server (its own socket, so the
//! user's sessions are never touched) running one program in a window of a chosen size, with
//! keys sent and the screen captured as text.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::registry::TempDir;

/// One tmux server with one window running the program under test.
pub struct Tmux {
    socket: PathBuf,
    _dir: TempDir,
}

/// What the shell around the program reported once it ended.
#[derive(Debug)]
pub struct Ended {
    /// The program's exit code.
    pub code: i32,
    /// The terminal's modes afterwards (`stty -a`), to check raw mode was undone.
    pub stty: String,
    /// The screen after the program ended.
    pub screen: String,
}

impl Tmux {
    /// Whether tmux can be run here.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Start `program args` in a `width`x`height` terminal with `env` added to a clean
    /// environment (PATH, HOME and TERM only). A shell wraps the program so that its exit code
    /// and the terminal modes it left behind are printed when it ends.
    pub fn start(
        width: u16,
        height: u16,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Tmux {
        Tmux::launch(None, width, height, program, args, env)
    }

    /// [`Tmux::start`] with `cwd` as the program's working directory.
    pub fn start_in(
        cwd: &Path,
        width: u16,
        height: u16,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Tmux {
        Tmux::launch(Some(cwd), width, height, program, args, env)
    }

    fn launch(
        cwd: Option<&Path>,
        width: u16,
        height: u16,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Tmux {
        let dir = TempDir::new("tmux");
        let socket = dir.path().join("socket");
        let mut command_line = String::from("env -i");
        for (key, value) in [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", dir.path().display().to_string()),
            ("TERM", "xterm-256color".to_string()),
            ("LANG", "C.UTF-8".to_string()),
        ] {
            command_line.push_str(&format!(" {key}={}", shell_quote(&value)));
        }
        for (key, value) in env {
            command_line.push_str(&format!(" {key}={}", shell_quote(value)));
        }
        command_line.push(' ');
        command_line.push_str(&shell_quote(&program.display().to_string()));
        for arg in args {
            command_line.push(' ');
            command_line.push_str(&shell_quote(arg));
        }
        // After the program: its code, then the terminal modes, then wait so the pane stays.
        let script = format!(
            "{command_line}; code=$?; printf '\\n[ended %s]\\n' \"$code\"; stty -a | tr '\\n' ' '; printf '\\n[stty done]\\n'; sleep 600"
        );
        let tmux = Tmux { socket, _dir: dir };
        let (width, height) = (width.to_string(), height.to_string());
        let mut args = vec![
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width,
            "-y",
            &height,
        ];
        let cwd = cwd.map(|c| c.display().to_string());
        if let Some(cwd) = &cwd {
            args.extend(["-c", cwd.as_str()]);
        }
        args.extend(["sh", "-c", &script]);
        let out = tmux.run(&args);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Send keys in tmux's notation (`"Down"`, `"C-a"`, `"Tab"`, `"q"`), one argument each.
    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "t", "-l", text]);
        assert!(out.status.success(), "send-keys -l failed");
    }

    /// The visible screen as text, one line per row.
    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format value of the pane (e.g. `#{alternate_on}`).
    pub fn format(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "t", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait until the screen shows `needle`; panics with the screen after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_until(timeout, &format!("{needle:?} on screen"), |s| {
            s.contains(needle)
        })
    }

    /// Wait until `check` accepts the screen; panics with the screen after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resize the terminal.
    pub fn resize(&self, width: u16, height: u16) {
        let out = self.run(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
        assert!(
            out.status.success(),
            "resize-window failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Wait for the program to end and report how it left the terminal.
    pub fn wait_ended(&self, timeout: Duration) -> Ended {
        let screen = self.wait_for("[stty done]", timeout);
        let code = screen
            .split("[ended ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no exit code on screen:\n{screen}"));
        // The stty line may wrap over several rows: join everything between the markers.
        let after = screen.split("[ended ").nth(1).unwrap_or("");
        let stty = after
            .split_once('\n')
            .map(|(_, rest)| {
                rest.split("[stty done]")
                    .next()
                    .unwrap_or("")
                    .replace('\n', "")
            })
            .unwrap_or_default();
        Ended { code, stty, screen }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
