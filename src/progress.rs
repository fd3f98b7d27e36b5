//! A one-line progress display on stderr while layers download (bytes and layers done), for the
//! headless modes. Silent when stderr is not a terminal or with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use tokio::sync::watch;

use crate::pipeline::Progress;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Whether progress should be shown at all.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The progress line for the current counters.
pub fn line(progress: &Progress) -> String {
    format!(
        "layers {}/{} · {} / {}",
        progress.layers_done(),
        progress.layer_count(),
        ByteSize(progress.bytes()).display().si(),
        ByteSize(progress.total_bytes()).display().si()
    )
}

/// Redraws the progress line until told to stop, then erases it.
pub struct ProgressLine {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressLine {
    /// Start drawing `progress` on stderr.
    pub fn start(progress: Arc<Progress>) -> ProgressLine {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stderr = std::io::stderr();
            loop {
                let _ = write!(stderr, "\r\x1b[2K{}", line(&progress));
                let _ = stderr.flush();
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = stopped.changed() => break,
                }
            }
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        });
        ProgressLine { stop, task }
    }

    /// Erase the line and stop.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
