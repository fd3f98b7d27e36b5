//! The interactive explorer (`layerscope IMAGE` in a terminal): dive's panes and keys over the
//! streaming model. The screen comes up before anything is downloaded; layers and history
//! appear when the image resolves, each layer's tree the moment it is merged, and `q` or
//! Ctrl+C leaves at any time, cancelling downloads. This module (and only it) uses ratatui and
//! crossterm; everything it shows comes from the library's model.
//!
//! Shape (trippy, bottom and gitui habits): one channel of [`event::Message`]s into one loop;
//! the [`app::App`] state machine alone owns state; keys map once to [`action::Action`]s
//! through [`keymap`]; each pane draws itself in its own file from `&App`; the tree is a plain
//! data model ([`tree_view`]) flattened into visible rows.

pub mod action;
pub mod app;
mod config_pane;
pub mod event;
mod file_tree;
mod findings_view;
mod help;
mod image_details;
pub mod keymap;
mod layer_details;
mod layers;
pub mod save;
pub mod theme;
pub mod tree_view;
pub mod ui;
pub mod viewer;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, KeyboardEnhancementFlags, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::pipeline;
use crate::source::Source;
use crate::tree::FileTree;

use app::{App, Effect};
use event::Message;
use keymap::Keymap;
use theme::Theme;

/// The image to explore, and optionally a second one to compare it with.
pub struct Target {
    /// What the user typed, shown until the image resolves.
    pub reference: String,
    /// Where its bytes come from.
    pub source: Arc<Source>,
}

/// Run the explorer until the user quits. Returns the exit code: 0, or 2 when loading failed
/// after the screen came up (the error was shown in the status line). Errors before the
/// screen comes up (a bad `keys.yaml`, no terminal) are returned as errors.
pub async fn run(image: Target, compare: Option<Target>) -> Result<i32, Error> {
    let keymap = Keymap::load().map_err(|e| Error::Other(format!("key bindings: {e}")))?;
    let theme = Theme::from_env();
    let mut terminal =
        TerminalGuard::enter().map_err(|e| Error::io("setting up the terminal", e))?;
    let size = terminal
        .terminal
        .size()
        .map_err(|e| Error::io("reading the terminal size", e))?;

    let tree = Arc::new(RwLock::new(FileTree::new()));
    let mut app = App::new(
        image.reference.clone(),
        tree.clone(),
        keymap,
        theme,
        Rect::new(0, 0, size.width, size.height),
    );
    // The first frame goes out before anything else happens (the target is 300 ms).
    terminal
        .terminal
        .draw(|frame| ui::render(frame, &app))
        .map_err(|e| Error::io("drawing the screen", e))?;
    // Before the input thread starts reading: the query reads the terminal's answer.
    enhance_keyboard();
    let (tx, mut rx) = mpsc::unbounded_channel();
    event::spawn_input(tx.clone());
    event::spawn_signals(tx.clone());
    event::spawn_ticks(tx.clone());
    let loader = spawn_loader(image.source.clone(), tree, tx.clone());
    let compare_loader = compare.map(|target| {
        app.expect_compare(target.reference.clone());
        spawn_compare_loader(target.source, tx.clone())
    });

    let result = event_loop(
        &mut terminal.terminal,
        &mut app,
        &mut rx,
        &image.source,
        &tx,
    )
    .await;
    // Dropping the pipeline futures cancels every download.
    loader.abort();
    if let Some(task) = compare_loader {
        task.abort();
    }
    drop(terminal);
    result.map_err(|e| Error::io("drawing the screen", e))?;
    // The status line may have cut it, and the screen is gone: say it once more, in full.
    if let Some(notice) = image.source.notice() {
        eprintln!(
            "layerscope: {}: {}",
            crate::escape::Escaped(&image.reference),
            crate::escape::Escaped(notice)
        );
    }
    if let Some(error) = &app.error {
        eprintln!("layerscope: error: {}", crate::escape::error_line(error));
    }
    Ok(app.exit_code())
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    rx: &mut UnboundedReceiver<Message>,
    source: &Arc<Source>,
    tx: &UnboundedSender<Message>,
) -> io::Result<()> {
    let mut dirty = true;
    // Said once, when the image resolved from somewhere the user did not name.
    let mut told_source = false;
    loop {
        if dirty {
            terminal.draw(|frame| ui::render(frame, app))?;
        }
        let Some(message) = rx.recv().await else {
            return Ok(());
        };
        let mut redraw = !matches!(message, Message::Tick);
        app.update(message);
        // Take whatever else is queued before drawing again (key repeat, bursts of events).
        while let Ok(message) = rx.try_recv() {
            redraw |= !matches!(message, Message::Tick);
            app.update(message);
        }
        for effect in app.take_effects() {
            start(effect, app, source, tx);
        }
        if !told_source {
            if let Some(notice) = source.notice() {
                app.notice = Some(notice.to_string());
                told_source = true;
                redraw = true;
            }
        }
        if app.quit {
            return Ok(());
        }
        // Ticks only matter while progress moves.
        dirty = redraw || !app.finished;
    }
}

/// Start an effect the app asked for.
fn start(effect: Effect, app: &App, source: &Arc<Source>, tx: &UnboundedSender<Message>) {
    match effect {
        Effect::ReadFile {
            request,
            location,
            offset,
            max_len,
        } => {
            let Some(layer) = app
                .info
                .as_ref()
                .and_then(|i| i.layers.get(location.layer))
                .cloned()
            else {
                return;
            };
            let source = source.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = pipeline::read_file(source, layer, location, offset, max_len)
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send(Message::FileWindow { request, result });
            });
        }
        Effect::Save {
            node,
            layer,
            dest,
            overwrite,
        } => {
            let Some(info) = app.info.clone() else {
                return;
            };
            let (source, tree, tx) = (source.clone(), app.tree.clone(), tx.clone());
            tokio::spawn(async move {
                let result =
                    crate::unpack::save::save(source, info, tree, node, layer, dest, overwrite)
                        .await
                        .map_err(|e| e.to_string());
                let _ = tx.send(Message::Saved(result));
            });
        }
        Effect::Filter {
            generation,
            text,
            rows,
        } => {
            let cancelled = app.filter_cancelled(generation);
            let (tree, tx) = (app.tree.clone(), tx.clone());
            // Off the loop's threads: matching a large tree is a CPU-bound pass.
            tokio::task::spawn_blocking(move || {
                let result = app::filter_matches(&tree, &text, &cancelled);
                if !cancelled() {
                    let spare = tree_view::spare_rows(rows);
                    let _ = tx.send(Message::Filtered {
                        generation,
                        result,
                        spare,
                    });
                }
            });
        }
        Effect::Marks {
            generation,
            layer,
            mode,
            rows,
        } => {
            let (tree, order, tx) = (app.tree.clone(), app.view.name_order(), tx.clone());
            tokio::task::spawn_blocking(move || {
                let tree = app::read(&tree);
                let marks = tree_view::prepare_marks(&tree, layer, mode, &order, rows.as_ref());
                let _ = tx.send(Message::Marks { generation, marks });
            });
        }
        Effect::Search { generation, text } => {
            let (tree, tx) = (app.tree.clone(), tx.clone());
            // Off the loop's threads, as the filter: one pass over every path.
            tokio::task::spawn_blocking(move || {
                let result = app::filter_matches(&tree, &text, || false);
                let _ = tx.send(Message::Searched { generation, result });
            });
        }
    }
}

/// Run the pipeline for the main image, forwarding its events into the loop.
fn spawn_loader(
    source: Arc<Source>,
    tree: Arc<RwLock<FileTree>>,
    tx: UnboundedSender<Message>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (events, mut pipeline_events) = mpsc::unbounded_channel();
        let forward_tx = tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(event) = pipeline_events.recv().await {
                if forward_tx.send(Message::Pipeline(event)).is_err() {
                    return;
                }
            }
        });
        let progress_tx = tx.clone();
        let result = pipeline::load(source, tree, events, move |progress| {
            let _ = progress_tx.send(Message::Progress(progress));
        })
        .await;
        // The pipeline's sender is gone: the forwarder ends after the last event, so the
        // failure (if any) arrives after everything that happened before it.
        let _ = forward.await;
        match result {
            // The model may still be on its way into the cache.
            Ok(loaded) => loaded.cache_write.wait().await,
            Err(e) => {
                let _ = tx.send(Message::LoadFailed(e.to_string()));
            }
        }
    })
}

/// Load the `--compare` image in the background.
fn spawn_compare_loader(source: Arc<Source>, tx: UnboundedSender<Message>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (events, mut ignored) = mpsc::unbounded_channel();
        tokio::spawn(async move { while ignored.recv().await.is_some() {} });
        let tree = Arc::new(RwLock::new(FileTree::new()));
        let result = pipeline::load(source, tree, events, |_| {}).await;
        let (message, cache_write) = match result {
            Ok(loaded) => (Ok((loaded.info, loaded.tree)), Some(loaded.cache_write)),
            Err(e) => (Err(e.to_string()), None),
        };
        let _ = tx.send(Message::CompareLoaded(message));
        // The model may still be on its way into the cache.
        if let Some(cache_write) = cache_write {
            cache_write.wait().await;
        }
    })
}

/// The terminal in explorer mode: raw, alternate screen, mouse captured. Dropping it puts the
/// terminal back, and a panic hook does the same before the panic message prints.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(mut terminal) => {
                let _ = terminal.hide_cursor();
                Ok(TerminalGuard { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        restore();
    }
}

/// Whether the kitty keyboard protocol was turned on (and must be turned off on the way out).
static KEYBOARD_ENHANCED: AtomicBool = AtomicBool::new(false);

/// Ask terminals that speak the kitty keyboard protocol to report keys unambiguously, so that
/// dive's Ctrl+M (toggle modified files) is told apart from Enter (open a file). Elsewhere
/// Ctrl+M arrives as Enter, as it always has.
fn enhance_keyboard() {
    if matches!(
        crossterm::terminal::supports_keyboard_enhancement(),
        Ok(true)
    ) && execute!(
        io::stdout(),
        PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
    )
    .is_ok()
    {
        KEYBOARD_ENHANCED.store(true, Ordering::SeqCst);
    }
}

/// Leave explorer mode (safe to call more than once).
fn restore() {
    if KEYBOARD_ENHANCED.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), PopKeyboardEnhancementFlags);
    }
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
