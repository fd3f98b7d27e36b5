//! The one channel of messages into the event loop (bottom's habit): terminal input, pipeline
//! events, file windows read for the viewer, signals and ticks. Producers only send; the app
//! alone owns and changes state.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::image::ImageInfo;
use crate::pipeline::{self, Progress};
use crate::tree::FileTree;

/// Something the event loop reacts to.
pub enum Message {
    /// A key, mouse or resize event from the terminal.
    Input(crossterm::event::Event),
    /// The main image's pipeline reported progress.
    Pipeline(pipeline::Event),
    /// The main image's byte counters, available once it resolved.
    Progress(Arc<Progress>),
    /// The main image failed to load (after the UI came up).
    LoadFailed(String),
    /// The second image (`--compare`) finished loading, or failed.
    CompareLoaded(Result<(Arc<ImageInfo>, Arc<RwLock<FileTree>>), String>),
    /// A window of a file for the viewer (`request` ties it to what was asked).
    FileWindow {
        /// The request number the viewer gave.
        request: u64,
        /// The window, or why it could not be read.
        result: Result<super::viewer::Window, String>,
    },
    /// The save key's work ended: where the file went, or why it failed.
    Saved(Result<crate::unpack::save::Saved, String>),
    /// A worker worked out the filter asked for with `generation`: the pattern and which
    /// nodes it matches by id (`None`: no filter).
    Filtered {
        /// The generation the app gave.
        generation: u64,
        /// The pattern and its matches.
        result: Option<(crate::tui::tree_view::PathPattern, Vec<u8>)>,
        /// Memory for the rows the filter leaves, taken by the worker.
        spare: crate::tui::tree_view::SpareRows,
    },
    /// A worker worked out which nodes the search asked for with `generation` matches: the
    /// pattern and its matches by id (`None`: not a pattern).
    Searched {
        /// The generation the app gave.
        generation: u64,
        /// The pattern and its matches.
        result: Option<(crate::tui::tree_view::PathPattern, Vec<u8>)>,
    },
    /// A worker made the marks of the layer asked for with `generation`.
    Marks {
        /// The generation the app gave.
        generation: u64,
        /// The marks.
        marks: crate::tui::tree_view::PreparedMarks,
    },
    /// SIGINT, SIGTERM or SIGHUP: quit as if the user pressed `q`.
    Signal,
    /// Time passed: redraw progress.
    Tick,
}

/// How often progress is redrawn while layers download.
pub const TICK: Duration = Duration::from_millis(100);

/// Read terminal events on a thread of their own (crossterm's reader blocks) and send them
/// into the loop until the loop goes away.
pub fn spawn_input(tx: UnboundedSender<Message>) {
    std::thread::spawn(move || loop {
        match crossterm::event::poll(TICK) {
            Ok(true) => match crossterm::event::read() {
                Ok(event) => {
                    if tx.send(Message::Input(event)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {
                if tx.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
}

/// Turn termination signals into [`Message::Signal`].
pub fn spawn_signals(tx: UnboundedSender<Message>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = tx.send(Message::Signal);
    });
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(Message::Signal);
        }
    });
}

/// Send a tick every [`TICK`] until the loop goes away.
pub fn spawn_ticks(tx: UnboundedSender<Message>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            if tx.send(Message::Tick).is_err() {
                return;
            }
        }
    });
}
