//! The explorer's state and its state machine. The UI loop alone owns an [`App`]: it feeds
//! every [`Message`] to [`App::update`] and draws with [`super::ui::render`]. Work that must
//! happen outside (reading a file window for the viewer) is returned as an [`Effect`] for the
//! loop to start, so the whole machine runs unchanged on a `TestBackend`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent,
    MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use crate::analysis::{analyse, Figures};
use crate::compare::{compare, Comparison, LayerMatch};
use crate::findings::{find, layer_steps, FindingKind, Findings};
use crate::image::ImageInfo;
use crate::pipeline::{Event as PipelineEvent, Progress};
use crate::tree::{ChangeKind, ContentLocation, FileTree, NodeId, VersionState};

use super::action::Action;
use super::event::Message;
use super::keymap::{Keymap, Scope};
use super::save::SavePrompt;
use super::theme::Theme;
use super::tree_view::{
    prepare_marks, PathPattern, PreparedMarks, RowsJob, SpareRows, TreeView, ViewMode,
};
use super::ui::{layout, list_offset, Areas};
use super::viewer::{Viewer, Window, WINDOW_BYTES};

/// A pane that can have focus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    /// Layers and history.
    Layers,
    /// The file tree.
    Tree,
    /// Image details and the inefficient files.
    Image,
    /// The runtime config.
    Config,
}

impl Pane {
    const ORDER: [Pane; 4] = [Pane::Layers, Pane::Tree, Pane::Image, Pane::Config];

    fn scope(self) -> Scope {
        match self {
            Pane::Layers => Scope::Layers,
            Pane::Tree => Scope::Tree,
            Pane::Image | Pane::Config => Scope::Global,
        }
    }
}

/// Where a layer's download stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerState {
    /// Waiting for a download slot.
    Queued,
    /// Downloading and indexing.
    Downloading,
    /// Indexed, waiting for the layers below to merge.
    Indexed,
    /// In the model: browsable.
    Merged,
}

/// A line being typed in the status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// The live path filter.
    Filter(String),
    /// A search pattern (applied with Enter).
    Search(String),
}

/// Work the event loop does on the app's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Read a window of the file at `location` (the layer blob that holds its bytes) and
    /// answer with [`Message::FileWindow`] carrying `request`.
    ReadFile {
        /// Tag for the answer.
        request: u64,
        /// Where the bytes are.
        location: ContentLocation,
        /// First byte wanted.
        offset: u64,
        /// Bytes wanted at most.
        max_len: usize,
    },
    /// Save `node` as of `layer` to `dest` (a directory as a tar) and answer with
    /// [`Message::Saved`].
    Save {
        /// What to save.
        node: NodeId,
        /// As of this layer.
        layer: usize,
        /// Where.
        dest: std::path::PathBuf,
        /// Replace `dest` if it exists (the user confirmed).
        overwrite: bool,
    },
    /// Work out which paths the filter `text` matches on a worker (see
    /// [`App::filter_cancelled`]) and answer with [`Message::Filtered`] carrying `generation`.
    Filter {
        /// Tag for the answer: only the newest filter's is installed.
        generation: u64,
        /// The filter as typed.
        text: String,
        /// Rows' memory to take for the build the answer leads to (see
        /// [`TreeView::spare_rows_wanted`]).
        rows: usize,
    },
    /// Work out which paths the search `text` matches on a worker and answer with
    /// [`Message::Searched`] carrying `generation`.
    Search {
        /// Tag for the answer: only the newest search's is used.
        generation: u64,
        /// The pattern as typed.
        text: String,
    },
    /// Make the marks of `layer` in `mode` on a worker (one pass over the nodes) and answer
    /// with [`Message::Marks`] carrying `generation`.
    Marks {
        /// Tag for the answer: only the newest layer's is kept.
        generation: u64,
        /// The layer.
        layer: usize,
        /// The view mode.
        mode: ViewMode,
        /// Build the rows too, for this state of the view (a sort toggle's).
        rows: Option<RowsJob>,
    },
}

/// The second image of `--compare`.
pub struct CompareState {
    /// What the user named.
    pub reference: String,
    /// The comparison once both images are loaded.
    pub comparison: Option<Comparison>,
    /// The second image once loaded.
    pub info: Option<Arc<ImageInfo>>,
    tree: Option<Arc<RwLock<FileTree>>>,
    /// Why it could not be loaded.
    pub error: Option<String>,
    /// The tree pane shows the differences.
    pub active: bool,
    /// Cursor in the differences list.
    pub cursor: usize,
    /// First difference on screen.
    pub offset: usize,
}

impl CompareState {
    /// The second image's tree, once loaded.
    pub fn tree(&self) -> Option<&Arc<RwLock<FileTree>>> {
        self.tree.as_ref()
    }
}

/// Everything the explorer shows.
pub struct App {
    /// The key bindings.
    pub keymap: Keymap,
    /// Colours.
    pub theme: Theme,
    /// The reference as given, shown until the image resolves.
    pub reference: String,
    /// The image, once resolved.
    pub info: Option<Arc<ImageInfo>>,
    /// The merged tree, growing while layers load.
    pub tree: Arc<RwLock<FileTree>>,
    /// Download counters.
    pub progress: Option<Arc<Progress>>,
    /// Per layer: where its download stands.
    pub layer_states: Vec<LayerState>,
    /// Every layer is merged.
    pub finished: bool,
    /// The figures, once every layer is merged.
    pub figures: Option<Figures>,
    /// The findings, once every layer is merged.
    pub findings: Option<Findings>,
    /// The Findings view is open.
    pub findings_open: bool,
    /// Selected finding.
    pub findings_cursor: usize,
    /// The focused pane.
    pub focus: Pane,
    /// Selected row of the Layers pane (an index into the history steps).
    pub layer_row: usize,
    /// First Layers row on screen.
    pub layer_offset: usize,
    /// The file tree's model.
    pub view: TreeView,
    /// The view mode the user chose.
    pub mode: ViewMode,
    /// Show permissions, owner and size columns.
    pub show_attributes: bool,
    /// A line being typed.
    pub prompt: Option<Prompt>,
    /// The search pattern for n / N.
    pub search: Option<PathPattern>,
    /// The help overlay is open.
    pub help: bool,
    /// The file viewer, when open.
    pub viewer: Option<Viewer>,
    /// Selected inefficient file.
    pub image_cursor: usize,
    /// First Config line on screen.
    pub config_offset: usize,
    /// Which of Image / Config the shared box shows on short terminals.
    pub bottom: Pane,
    /// A passing message for the status line.
    pub notice: Option<String>,
    /// A loading error; the exit code becomes 2.
    pub error: Option<String>,
    /// `--compare`.
    pub compare: Option<CompareState>,
    /// The terminal's area.
    pub area: Rect,
    /// Set when the user asked to leave.
    pub quit: bool,
    /// The save key's prompt, when open.
    pub save: Option<SavePrompt>,
    next_request: u64,
    effects: Vec<Effect>,
    /// The newest filter asked of a worker: older work sees it changed and stops.
    filter_generation: Arc<AtomicU64>,
    /// The filter being worked out (generation, text), shown as the previous rows meanwhile.
    pending_filter: Option<(u64, String)>,
    /// The layer whose marks a worker is making (generation, layer, mode); the tree pane
    /// shows the layer before meanwhile.
    pending_layer: Option<(u64, usize, ViewMode)>,
    layer_generation: u64,
    /// The search being worked out (generation, text); n and N wait for it.
    pending_search: Option<(u64, String)>,
    search_generation: u64,
}

/// Read the tree even if a panicking reader poisoned the lock (readers never mutate it).
pub(super) fn read(tree: &RwLock<FileTree>) -> RwLockReadGuard<'_, FileTree> {
    tree.read().unwrap_or_else(|p| p.into_inner())
}

impl App {
    /// An explorer for `reference`, loading into `tree`, drawing into `area`.
    pub fn new(
        reference: String,
        tree: Arc<RwLock<FileTree>>,
        keymap: Keymap,
        theme: Theme,
        area: Rect,
    ) -> App {
        App {
            keymap,
            theme,
            reference,
            info: None,
            tree,
            progress: None,
            layer_states: Vec::new(),
            finished: false,
            figures: None,
            findings: None,
            findings_open: false,
            findings_cursor: 0,
            focus: Pane::Layers,
            layer_row: 0,
            layer_offset: 0,
            view: TreeView::new(),
            mode: ViewMode::LayerChanges,
            show_attributes: true,
            prompt: None,
            search: None,
            help: false,
            viewer: None,
            image_cursor: 0,
            config_offset: 0,
            bottom: Pane::Image,
            notice: None,
            error: None,
            compare: None,
            area,
            quit: false,
            save: None,
            next_request: 1,
            effects: Vec::new(),
            filter_generation: Arc::new(AtomicU64::new(0)),
            pending_filter: None,
            pending_layer: None,
            pending_search: None,
            search_generation: 0,
            layer_generation: 0,
        }
    }

    /// Compare with a second image once it loads.
    pub fn expect_compare(&mut self, reference: String) {
        self.compare = Some(CompareState {
            reference,
            comparison: None,
            info: None,
            tree: None,
            error: None,
            active: false,
            cursor: 0,
            offset: 0,
        });
    }

    /// The process exit code after quitting: 2 when loading failed, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.error.is_some() {
            crate::error::exit_code::ERROR
        } else {
            crate::error::exit_code::OK
        }
    }

    /// Work for the event loop to start.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Ask the event loop to do `effect`.
    pub(super) fn push_effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// The screen's areas for the current size.
    pub fn areas(&self) -> Areas {
        layout(self.area, self.focus, self.bottom, self.layer_row_count())
    }

    /// Layers merged so far.
    pub fn merged(&self) -> usize {
        self.layer_states
            .iter()
            .take_while(|s| **s == LayerState::Merged)
            .count()
    }

    /// Handle one message.
    pub fn update(&mut self, message: Message) {
        match message {
            Message::Input(TermEvent::Key(key)) => self.on_key(key),
            Message::Input(TermEvent::Mouse(mouse)) => self.on_mouse(mouse),
            Message::Input(TermEvent::Resize(w, h)) => self.resize(Rect::new(0, 0, w, h)),
            Message::Input(_) => {}
            Message::Pipeline(event) => self.on_pipeline(event),
            Message::Progress(progress) => self.progress = Some(progress),
            Message::LoadFailed(error) => {
                // Before the image resolved there is nothing to browse: leave at once, and the
                // caller prints the error as the one line it is.
                self.quit = self.info.is_none();
                self.error = Some(error);
                self.finished = true;
            }
            Message::CompareLoaded(result) => self.on_compare_loaded(result),
            Message::FileWindow { request, result } => self.on_file_window(request, result),
            Message::Saved(result) => super::save::finished(self, result),
            Message::Filtered {
                generation,
                result,
                spare,
            } => self.on_filtered(generation, result, spare),
            Message::Marks { generation, marks } => self.on_marks(generation, marks),
            Message::Searched { generation, result } => self.on_searched(generation, result),
            Message::Signal => self.quit = true,
            Message::Tick => {}
        }
    }

    /// Rows the Layers pane lists (history steps, or layers where history is missing), once
    /// the image is resolved.
    pub fn layer_row_count(&self) -> Option<usize> {
        self.info
            .as_ref()
            .map(|info| info.history.len().max(info.layers.len()))
    }

    /// The terminal changed size.
    pub fn resize(&mut self, area: Rect) {
        self.area = area;
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
        let layer_height = self.areas().layers_rows;
        self.scroll_layers(layer_height);
    }

    fn tree_height(&self) -> usize {
        self.areas().tree_rows as usize
    }

    fn on_pipeline(&mut self, event: PipelineEvent) {
        match event {
            PipelineEvent::Resolved(info) => {
                self.layer_states = vec![LayerState::Queued; info.layers.len()];
                // Start on the first step that made a layer.
                self.layer_row = info
                    .history
                    .iter()
                    .position(|s| s.layer_index.is_some())
                    .unwrap_or(0);
                self.info = Some(info);
            }
            PipelineEvent::LayerStarted(i) => self.set_layer_state(i, LayerState::Downloading),
            PipelineEvent::LayerIndexed(i) => self.set_layer_state(i, LayerState::Indexed),
            PipelineEvent::LayerMerged(i) => {
                self.set_layer_state(i, LayerState::Merged);
                // The selected layer (or one it waited for) is in: show it now.
                if self.view.layer().is_none() && self.selected_layer() < Some(self.merged()) {
                    self.show_selected_layer();
                }
            }
            PipelineEvent::Finished => {
                self.finished = true;
                let tree = self.tree.clone();
                let tree = read(&tree);
                self.figures = Some(analyse(&tree));
                let steps = self.info.as_deref().map(layer_steps).unwrap_or_default();
                self.findings = Some(find(&tree, &steps));
                drop(tree);
                if self.view.layer().is_none() {
                    self.show_selected_layer();
                }
                self.try_compare();
            }
        }
    }

    fn set_layer_state(&mut self, i: usize, state: LayerState) {
        if let Some(s) = self.layer_states.get_mut(i) {
            // Events of one layer can race a little; never step back.
            if (*s as u8) < (state as u8) {
                *s = state;
            }
        }
    }

    fn on_compare_loaded(
        &mut self,
        result: Result<(Arc<ImageInfo>, Arc<RwLock<FileTree>>), String>,
    ) {
        let Some(compare) = &mut self.compare else {
            return;
        };
        match result {
            Ok((info, tree)) => {
                compare.info = Some(info);
                compare.tree = Some(tree);
                self.try_compare();
            }
            Err(e) => {
                compare.error = Some(e.clone());
                self.error = Some(format!("{}: {e}", compare.reference));
            }
        }
    }

    fn try_compare(&mut self) {
        let (Some(info_a), true) = (&self.info, self.finished) else {
            return;
        };
        let Some(state) = &mut self.compare else {
            return;
        };
        let (Some(info_b), Some(tree_b)) = (&state.info, &state.tree) else {
            return;
        };
        if state.comparison.is_some() || self.error.is_some() {
            return;
        }
        let tree_a = read(&self.tree);
        let tree_b = read(tree_b);
        state.comparison = Some(compare(info_a, &tree_a, info_b, &tree_b));
    }

    /// The layer the tree shows for the selected row: the row's layer, or for a metadata-only
    /// step the layer below it (the first layer when there is none).
    pub fn selected_layer(&self) -> Option<usize> {
        let info = self.info.as_ref()?;
        let steps = &info.history;
        let upto = steps.len().min(self.layer_row + 1);
        steps[..upto]
            .iter()
            .rev()
            .find_map(|s| s.layer_index)
            .or_else(|| steps.iter().find_map(|s| s.layer_index))
            .or((!info.layers.is_empty()).then_some(0))
    }

    fn show_selected_layer(&mut self) {
        self.pending_layer = None;
        let Some(layer) = self.selected_layer() else {
            return;
        };
        if layer >= self.merged() {
            // Its tree appears when LayerMerged arrives.
            self.view.clear();
            return;
        }
        let tree = self.tree.clone();
        let tree = read(&tree);
        self.view.show_layer(&tree, layer, self.mode);
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
    }

    /// Show the selected layer, as a key asks: when its marks need a pass over the nodes, a
    /// worker makes them and the layer shown before stays until they arrive.
    fn show_selected_layer_soon(&mut self) {
        let Some(layer) = self.selected_layer() else {
            return;
        };
        let needs = layer < self.merged() && {
            let tree = read(&self.tree);
            self.view.needs_marks(&tree, layer, self.mode)
        };
        if !needs {
            self.show_selected_layer();
            return;
        }
        if self
            .pending_layer
            .is_some_and(|p| (p.1, p.2) == (layer, self.mode))
        {
            // Already being made (another history step of the same layer).
            return;
        }
        self.layer_generation += 1;
        let generation = self.layer_generation;
        self.pending_layer = Some((generation, layer, self.mode));
        self.effects.push(Effect::Marks {
            generation,
            layer,
            mode: self.mode,
            rows: None,
        });
    }

    /// Switch between name and size order. The first size order of a large layer sorts
    /// every directory, and the first build of a large layer's rows in either order takes
    /// their memory: a worker does both with the layer's marks, and the rows shown stay
    /// until they arrive.
    fn toggle_sort(&mut self) {
        if self.pending_layer.is_some() {
            // The marks being made come with the size order and the rows' memory: their
            // answer builds the rows in the order asked last. Asking again would drop them.
            self.view.sort = self.view.sort.toggled();
            return;
        }
        if !self.view.sort_toggle_wants_worker() {
            self.with_tree(|view, tree| view.toggle_sort(tree));
            return;
        }
        let Some(layer) = self.view.layer() else {
            return;
        };
        self.view.sort = self.view.sort.toggled();
        let mode = self.view.mode();
        self.layer_generation += 1;
        let generation = self.layer_generation;
        self.pending_layer = Some((generation, layer, mode));
        self.effects.push(Effect::Marks {
            generation,
            layer,
            mode,
            rows: Some(self.view.rows_job()),
        });
    }

    /// Before a jump shows `layer` at once (to a file or a finding): select its row in the
    /// Layers pane, leave the compare view and forget a layer still being made. False when
    /// the image is not known yet.
    fn select_layer_for_jump(&mut self, layer: usize) -> bool {
        let Some(info) = &self.info else {
            return false;
        };
        if let Some(row) = info
            .history
            .iter()
            .position(|s| s.layer_index == Some(layer))
        {
            self.layer_row = row;
        }
        let rows = self.areas().layers_rows;
        self.scroll_layers(rows);
        if let Some(c) = &mut self.compare {
            c.active = false;
        }
        self.pending_layer = None;
        true
    }

    /// A layer's marks are being made: the tree pane still shows the layer before.
    pub fn layer_pending(&self) -> bool {
        self.pending_layer.is_some()
    }

    /// A worker's marks for `generation`: kept and shown unless a newer layer was asked.
    fn on_marks(&mut self, generation: u64, marks: PreparedMarks) {
        if self.pending_layer.map(|p| p.0) != Some(generation) {
            return;
        }
        self.pending_layer = None;
        let tree = self.tree.clone();
        let tree = read(&tree);
        self.view.keep_marks(&tree, marks);
        drop(tree);
        self.show_selected_layer();
    }

    fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        self.notice = None;
        if self.save.is_some() {
            super::save::on_key(self, key);
            return;
        }
        if self.prompt.is_some() {
            self.on_prompt_key(key);
            return;
        }
        let scope = if self.viewer.is_some() || self.help || self.findings_open {
            Scope::Global
        } else {
            self.focus.scope()
        };
        // Ctrl+C always quits, whatever the bindings say.
        let action =
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                Some(Action::Quit)
            } else {
                self.keymap.action(&key, scope)
            };
        if self.help {
            // Any key closes the help; quitting still quits.
            self.help = false;
            self.quit = action == Some(Action::Quit);
            return;
        }
        if let Some(action) = action {
            self.apply(action);
        }
    }

    fn on_prompt_key(&mut self, key: KeyEvent) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        let text = match prompt {
            Prompt::Filter(t) | Prompt::Search(t) => t,
        };
        match key.code {
            KeyCode::Esc => {
                let was_filter = matches!(prompt, Prompt::Filter(_));
                self.prompt = None;
                if was_filter {
                    self.set_filter(None);
                }
                return;
            }
            KeyCode::Enter => {
                let prompt = self.prompt.take();
                if let Some(Prompt::Search(text)) = prompt {
                    self.start_search(text);
                }
                return;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.quit = true;
                return;
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
            _ => return,
        }
        if let Some(Prompt::Filter(text)) = &self.prompt {
            if text.is_empty() {
                self.set_filter(None);
            } else {
                // Matching every path of a large tree takes longer than a frame: a worker does
                // it, and the rows shown stay until its answer arrives.
                let text = text.clone();
                let generation = self.filter_generation.fetch_add(1, Ordering::Relaxed) + 1;
                self.pending_filter = Some((generation, text.clone()));
                let rows = self.view.spare_rows_wanted();
                self.effects.push(Effect::Filter {
                    generation,
                    text,
                    rows,
                });
            }
        }
    }

    /// A filter is being worked out: the rows shown are the previous filter's.
    pub fn filter_pending(&self) -> bool {
        self.pending_filter.is_some()
    }

    /// A check for the worker of filter `generation`: true once a newer filter (or none)
    /// replaced it, so that it stops.
    pub fn filter_cancelled(&self, generation: u64) -> impl Fn() -> bool + Send + 'static {
        let newest = self.filter_generation.clone();
        move || newest.load(Ordering::Relaxed) != generation
    }

    /// Finish at once the work otherwise left to workers (marks, a filter, a search), as if
    /// their answers had arrived: for tests and benchmarks, which run no event loop.
    pub fn settle(&mut self) {
        // The work is done here: no worker needs starting for it.
        self.effects.retain(|e| {
            !matches!(
                e,
                Effect::Filter { .. } | Effect::Marks { .. } | Effect::Search { .. }
            )
        });
        if let Some((generation, layer, mode)) = self.pending_layer {
            let order = self.view.name_order();
            let marks = prepare_marks(&read(&self.tree), layer, mode, &order, None);
            self.on_marks(generation, marks);
        }
        if let Some((generation, text)) = self.pending_search.clone() {
            let result = filter_matches(&self.tree, &text, || false);
            self.on_searched(generation, result);
        }
        let Some((generation, text)) = self.pending_filter.clone() else {
            return;
        };
        let result = filter_matches(&self.tree, &text, || false);
        self.on_filtered(generation, result, SpareRows::default());
    }

    /// A worker's answer for filter `generation`; dropped unless it is the newest asked.
    fn on_filtered(
        &mut self,
        generation: u64,
        result: Option<(PathPattern, Vec<u8>)>,
        spare: SpareRows,
    ) {
        if self.pending_filter.as_ref().map(|p| p.0) != Some(generation) {
            return;
        }
        self.view.lend_rows(spare);
        self.pending_filter = None;
        // Any worker still running is for an older filter.
        self.filter_generation.fetch_add(1, Ordering::Relaxed);
        let tree = self.tree.clone();
        let tree = read(&tree);
        match result {
            Some((pattern, matched)) => self.view.set_filter_matched(&tree, pattern, matched),
            None => self.view.set_filter(&tree, None),
        }
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
    }

    /// Forget a filter being worked out: another one is set at once.
    fn drop_pending_filter(&mut self) {
        if self.pending_filter.take().is_some() {
            self.filter_generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_filter(&mut self, pattern: Option<PathPattern>) {
        self.drop_pending_filter();
        let tree = self.tree.clone();
        let tree = read(&tree);
        self.view.set_filter(&tree, pattern);
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
    }

    /// Search for `text` from the cursor on: at once, or on a worker when matching every
    /// row's path would take longer than a frame.
    fn start_search(&mut self, text: String) {
        self.pending_search = None;
        self.search = PathPattern::new(&text);
        let needs_pass = self.search.as_ref().is_some_and(|pattern| {
            let tree = read(&self.tree);
            self.view.search_needs_pass(&tree, pattern)
        });
        if !needs_pass {
            self.search_step(true);
            return;
        }
        self.search_generation += 1;
        let generation = self.search_generation;
        self.pending_search = Some((generation, text.clone()));
        self.notice = Some(format!("/{text}: searching…"));
        self.effects.push(Effect::Search { generation, text });
    }

    /// A worker's matches for search `generation`: kept, then the first step taken.
    fn on_searched(&mut self, generation: u64, result: Option<(PathPattern, Vec<u8>)>) {
        if self.pending_search.as_ref().map(|p| p.0) != Some(generation) {
            return;
        }
        self.pending_search = None;
        if let Some((pattern, matched)) = result {
            self.view.set_search_matches(&pattern, matched);
        }
        self.search_step(true);
    }

    fn search_step(&mut self, forward: bool) {
        if let Some((_, text)) = &self.pending_search {
            // The worker's answer takes the first step.
            self.notice = Some(format!("/{text}: searching…"));
            return;
        }
        let Some(pattern) = self.search.clone() else {
            self.notice = Some("no search: press / to search".to_string());
            return;
        };
        let tree = self.tree.clone();
        let tree = read(&tree);
        if self.view.search(&tree, &pattern, forward) {
            let count = self.view.count_matches(&tree, &pattern);
            self.notice = Some(format!("/{}: {count} matches", pattern.text()));
            self.focus = Pane::Tree;
        } else {
            self.notice = Some(format!("/{}: no match", pattern.text()));
        }
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
    }

    /// Apply one action.
    pub fn apply(&mut self, action: Action) {
        if self.help {
            match action {
                Action::Quit => self.quit = true,
                _ => self.help = false,
            }
            return;
        }
        if action == Action::Findings {
            // Reachable from anywhere: over the viewer too, which it closes.
            self.viewer = None;
            self.findings_open = !self.findings_open;
            return;
        }
        if self.findings_open {
            self.findings_action(action);
            return;
        }
        if self.viewer.is_some() {
            self.viewer_action(action);
            return;
        }
        let tree_rows = self.tree_height();
        let page = tree_rows.saturating_sub(1).max(1) as isize;
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = true,
            Action::NextPane | Action::PrevPane => {
                let i = Pane::ORDER
                    .iter()
                    .position(|p| *p == self.focus)
                    .unwrap_or(0);
                let n = Pane::ORDER.len();
                let next = if action == Action::NextPane {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.focus(Pane::ORDER[next]);
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Home => self.move_by(isize::MIN / 2),
            Action::End => self.move_by(isize::MAX / 2),
            Action::Left => self.with_tree(|view, tree| view.collapse_or_parent(tree)),
            Action::Right => self.with_tree(|view, tree| {
                view.expand(tree);
            }),
            Action::Filter => {
                // A finding's list of paths is not text to edit: start afresh.
                let text = self
                    .view
                    .filter()
                    .filter(|f| !f.is_exact())
                    .map(|f| f.text().to_string())
                    .unwrap_or_default();
                self.prompt = Some(Prompt::Filter(text));
            }
            Action::Search => self.prompt = Some(Prompt::Search(String::new())),
            Action::SearchNext => self.search_step(true),
            Action::SearchPrev => self.search_step(false),
            Action::CompareLayer => self.set_mode(ViewMode::LayerChanges),
            Action::CompareAll => self.set_mode(ViewMode::Aggregated),
            Action::ToggleCollapse => self.with_tree(|view, tree| view.toggle_collapse(tree)),
            Action::ToggleCollapseAll => {
                self.with_tree(|view, tree| view.toggle_collapse_all(tree))
            }
            Action::ToggleAdded => self.toggle_kind(ChangeKind::Added),
            Action::ToggleRemoved => self.toggle_kind(ChangeKind::Removed),
            Action::ToggleModified => self.toggle_kind(ChangeKind::Modified),
            Action::ToggleUnmodified => self.toggle_kind(ChangeKind::Unmodified),
            Action::ToggleAttributes => self.show_attributes = !self.show_attributes,
            Action::ToggleSort => self.toggle_sort(),
            Action::ToggleCompare => self.toggle_compare(),
            Action::Open => self.open(),
            // Handled before the viewer, above.
            Action::Findings => {}
            Action::SaveFile => super::save::start(self),
            Action::Back => {
                if self.view.filter().is_some() || self.filter_pending() {
                    self.set_filter(None);
                } else if let Some(c) = self.compare.as_mut().filter(|c| c.active) {
                    c.active = false;
                }
            }
        }
    }

    fn focus(&mut self, pane: Pane) {
        self.focus = pane;
        if matches!(pane, Pane::Image | Pane::Config) {
            self.bottom = pane;
        }
    }

    fn with_tree(&mut self, f: impl FnOnce(&mut TreeView, &FileTree)) {
        if self.view.layer().is_none() {
            return;
        }
        let tree = self.tree.clone();
        let tree = read(&tree);
        f(&mut self.view, &tree);
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
    }

    fn toggle_kind(&mut self, kind: ChangeKind) {
        self.with_tree(|view, tree| view.toggle_hidden(tree, kind));
    }

    fn set_mode(&mut self, mode: ViewMode) {
        self.mode = mode;
        if let Some(c) = &mut self.compare {
            c.active = false;
        }
        self.show_selected_layer_soon();
    }

    fn toggle_compare(&mut self) {
        match &mut self.compare {
            None => self.notice = Some("no second image: start with --compare IMAGE".to_string()),
            Some(c) if c.comparison.is_none() => {
                self.notice = Some(match &c.error {
                    Some(e) => format!("compare: {e}"),
                    None => "compare: still loading both images".to_string(),
                });
            }
            Some(c) => {
                c.active = !c.active;
                if c.active {
                    self.focus = Pane::Tree;
                }
            }
        }
    }

    fn move_by(&mut self, delta: isize) {
        match self.focus {
            Pane::Layers => {
                let Some(info) = &self.info else { return };
                let last = info.history.len().saturating_sub(1) as isize;
                self.layer_row = (self.layer_row as isize)
                    .saturating_add(delta)
                    .clamp(0, last.max(0)) as usize;
                let rows = self.areas().layers_rows;
                self.scroll_layers(rows);
                self.show_selected_layer_soon();
            }
            Pane::Tree => {
                let height = self.tree_height();
                if let Some(c) = self.compare.as_mut().filter(|c| c.active) {
                    let n = c.comparison.as_ref().map_or(0, |cmp| cmp.files.len());
                    c.cursor = (c.cursor as isize)
                        .saturating_add(delta)
                        .clamp(0, n.saturating_sub(1) as isize)
                        as usize;
                    scroll_into_view(&mut c.offset, c.cursor, height);
                } else {
                    self.view.move_by(delta, height);
                }
            }
            Pane::Image => {
                let n = self.figures.as_ref().map_or(0, |f| f.inefficiencies.len());
                self.image_cursor = (self.image_cursor as isize)
                    .saturating_add(delta)
                    .clamp(0, n.saturating_sub(1) as isize)
                    as usize;
            }
            Pane::Config => {
                let max = super::config_pane::line_count(self).saturating_sub(1);
                self.config_offset = (self.config_offset as isize)
                    .saturating_add(delta)
                    .clamp(0, max as isize) as usize;
            }
        }
    }

    fn scroll_layers(&mut self, height: u16) {
        scroll_into_view(&mut self.layer_offset, self.layer_row, height as usize);
    }

    fn open(&mut self) {
        match self.focus {
            Pane::Image => self.jump_to_inefficiency(),
            Pane::Tree => self.open_file(),
            Pane::Layers => self.focus = Pane::Tree,
            Pane::Config => {}
        }
    }

    /// Jump to the selected inefficient file at the layer that wrote it last.
    fn jump_to_inefficiency(&mut self) {
        let Some(node) = self
            .figures
            .as_ref()
            .and_then(|f| f.inefficiencies.get(self.image_cursor))
            .map(|i| i.node)
        else {
            return;
        };
        let tree = self.tree.clone();
        let tree = read(&tree);
        let Some(layer) = tree
            .versions(node)
            .filter(|v| matches!(v.state, VersionState::Written(_)))
            .map(|v| v.layer)
            .last()
        else {
            return;
        };
        if !self.select_layer_for_jump(layer) {
            return;
        }
        self.view.show_layer(&tree, layer, self.mode);
        if !self.view.reveal(&tree, node) {
            // Hidden by the filter or a hide flag: show everything and try again.
            self.view.hidden = Default::default();
            self.drop_pending_filter();
            self.view.set_filter(&tree, None);
            self.view.reveal(&tree, node);
        }
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
        self.focus = Pane::Tree;
        self.notice = Some(format!(
            "{} was last written by layer {layer}",
            crate::escape::escape_bytes(&tree.path(node))
        ));
    }

    /// Rows of findings the Findings view shows at once.
    pub fn findings_rows(&self) -> usize {
        super::findings_view::list_rows(self.areas().body)
    }

    fn findings_action(&mut self, action: Action) {
        let page = self.findings_rows().saturating_sub(1).max(1) as isize;
        let delta = match action {
            Action::Quit => {
                self.quit = true;
                return;
            }
            Action::Back => {
                self.findings_open = false;
                return;
            }
            Action::Help => {
                self.help = true;
                return;
            }
            Action::Open => {
                self.jump_to_finding();
                return;
            }
            Action::Up => -1,
            Action::Down => 1,
            Action::PageUp => -page,
            Action::PageDown => page,
            Action::Home => isize::MIN / 2,
            Action::End => isize::MAX / 2,
            _ => return,
        };
        self.move_finding(delta);
    }

    fn move_finding(&mut self, delta: isize) {
        let n = self.findings.as_ref().map_or(0, |f| f.items.len());
        self.findings_cursor = (self.findings_cursor as isize)
            .saturating_add(delta)
            .clamp(0, n.saturating_sub(1) as isize) as usize;
    }

    /// Show the selected finding in the tree: its view layer selected (the writer's, for
    /// hidden bytes) and the tree filtered to its paths (for duplicates, the kept copy too).
    fn jump_to_finding(&mut self) {
        let Some(finding) = self
            .findings
            .as_ref()
            .and_then(|f| f.items.get(self.findings_cursor))
        else {
            return;
        };
        let layer = finding.view_layer;
        if layer >= self.merged() {
            return;
        }
        let mut paths = finding.paths.clone();
        if finding.kind == FindingKind::DuplicateContent {
            paths.extend(finding.place.clone());
        }
        let label = format!(
            "finding {}: {} ({} {})",
            self.findings_cursor + 1,
            finding.kind,
            paths.len(),
            if paths.len() == 1 { "path" } else { "paths" }
        );
        if !self.select_layer_for_jump(layer) {
            return;
        }
        self.findings_open = false;
        let tree = self.tree.clone();
        let tree = read(&tree);
        let nodes: Vec<NodeId> = paths.iter().filter_map(|p| tree.lookup(p)).collect();
        self.view.show_layer(&tree, layer, self.mode);
        self.drop_pending_filter();
        self.view
            .set_filter(&tree, PathPattern::exact(&label, paths));
        if !self.view.reveal_all(&tree, &nodes) && self.view.hidden != Default::default() {
            // Hidden by a hide flag: show every kind and try again.
            self.view.hidden = Default::default();
            self.view.reveal_all(&tree, &nodes);
        }
        let height = self.tree_height();
        self.view.scroll_to_cursor(height);
        self.focus = Pane::Tree;
        self.notice = Some(if self.view.rows().is_empty() {
            format!("{label}: none of its paths is visible at layer {layer} (the layer hid them itself)")
        } else {
            format!(
                "{label} at layer {layer} · esc clears the filter · {} findings",
                self.key(Action::Findings)
            )
        });
    }

    /// Open the viewer on the regular file under the cursor.
    fn open_file(&mut self) {
        if self.compare.as_ref().is_some_and(|c| c.active) {
            return;
        }
        let Some(row) = self.view.selected() else {
            return;
        };
        let Some(shown_at) = self.view.layer() else {
            return;
        };
        let tree = self.tree.clone();
        let tree = read(&tree);
        if row.is_dir {
            self.view.toggle_collapse(&tree);
            return;
        }
        if row.kind == ChangeKind::Removed {
            self.notice =
                Some("removed at this layer: select a lower layer to read it".to_string());
            return;
        }
        // Hard links are followed to the layer that holds the bytes.
        let Some(location) = tree.content_location(row.node, shown_at) else {
            self.notice = Some("only regular files can be opened".to_string());
            return;
        };
        let path = tree.path(row.node);
        let request = self.next_request();
        self.viewer = Some(Viewer::new(path, location, shown_at, request));
        self.effects.push(Effect::ReadFile {
            request,
            location,
            offset: 0,
            max_len: WINDOW_BYTES,
        });
    }

    fn next_request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    fn viewer_height(&self) -> usize {
        self.areas().body.height.saturating_sub(2) as usize
    }

    fn viewer_action(&mut self, action: Action) {
        let height = self.viewer_height();
        let page = height.saturating_sub(1).max(1) as isize;
        let delta = match action {
            Action::Quit => {
                self.quit = true;
                return;
            }
            Action::Back | Action::Open => {
                self.viewer = None;
                return;
            }
            Action::Help => {
                self.help = true;
                return;
            }
            Action::Up => -1,
            Action::Down => 1,
            Action::PageUp => -page,
            Action::PageDown => page,
            Action::Home => isize::MIN / 2,
            Action::End => isize::MAX / 2,
            _ => return,
        };
        let request = self.next_request();
        let Some(viewer) = &mut self.viewer else {
            return;
        };
        if let Some(offset) = viewer.scroll_by(delta, height, request) {
            self.effects.push(Effect::ReadFile {
                request,
                location: viewer.location,
                offset,
                max_len: WINDOW_BYTES,
            });
        }
    }

    fn on_file_window(&mut self, request: u64, result: Result<Window, String>) {
        let height = self.viewer_height();
        let Some(viewer) = &mut self.viewer else {
            return;
        };
        if viewer.request != request {
            return;
        }
        match result {
            Ok(window) => {
                viewer.receive(window);
                viewer.clamp_scroll(height);
            }
            Err(e) => {
                viewer.loading = false;
                viewer.error = Some(e);
            }
        }
    }

    fn on_mouse(&mut self, mouse: MouseEvent) {
        let areas = self.areas();
        let at = Position::new(mouse.column, mouse.row);
        let pane = if areas.tree.contains(at) {
            Some(Pane::Tree)
        } else if areas.layers.contains(at) {
            Some(Pane::Layers)
        } else if areas.bottom.contains(at) {
            Some(self.bottom)
        } else if areas.config.is_some_and(|c| c.contains(at)) {
            Some(Pane::Config)
        } else {
            None
        };
        match mouse.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let delta = if mouse.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                if self.help || self.prompt.is_some() {
                    return;
                }
                if self.findings_open {
                    self.move_finding(if delta > 0 { 1 } else { -1 });
                    return;
                }
                if let Some(viewer) = &mut self.viewer {
                    let _ = viewer;
                    self.viewer_action(if delta > 0 { Action::Down } else { Action::Up });
                    return;
                }
                match pane {
                    Some(Pane::Tree) if !self.compare.as_ref().is_some_and(|c| c.active) => {
                        let height = self.tree_height();
                        self.view.scroll_by(delta, height);
                    }
                    Some(p) => {
                        let saved = self.focus;
                        self.focus = p;
                        self.move_by(delta);
                        self.focus = saved;
                    }
                    None => {}
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if self.help {
                    self.help = false;
                    return;
                }
                if self.findings_open {
                    // A click on a finding selects it.
                    let first = super::findings_view::first_row(areas.body);
                    if mouse.row >= first {
                        let height = self.findings_rows();
                        let i = list_offset(self.findings_cursor, height)
                            + (mouse.row - first) as usize;
                        let n = self.findings.as_ref().map_or(0, |f| f.items.len());
                        if (mouse.row - first) as usize >= height || i >= n {
                            return;
                        }
                        self.findings_cursor = i;
                    }
                    return;
                }
                if self.viewer.is_some() || self.prompt.is_some() {
                    return;
                }
                let Some(pane) = pane else { return };
                self.focus(pane);
                match pane {
                    Pane::Tree => {
                        let first = areas.tree_first_row;
                        if mouse.row >= first {
                            let index = (mouse.row - first) as usize;
                            if let Some(c) = self.compare.as_mut().filter(|c| c.active) {
                                let n = c.comparison.as_ref().map_or(0, |x| x.files.len());
                                if c.offset + index < n {
                                    c.cursor = c.offset + index;
                                }
                            } else if self.view.offset() + index < self.view.rows().len() {
                                let height = self.tree_height();
                                self.view.set_cursor(self.view.offset() + index, height);
                            }
                        }
                    }
                    Pane::Layers => {
                        let first = areas.layers.y + 2;
                        if mouse.row >= first {
                            let row = self.layer_offset + (mouse.row - first) as usize;
                            if self.info.as_ref().is_some_and(|i| row < i.history.len()) {
                                self.layer_row = row;
                                self.show_selected_layer_soon();
                            }
                        }
                    }
                    Pane::Image => {
                        if let Some(first) = areas.inefficiency_first_row {
                            let height = areas.bottom.bottom().saturating_sub(first + 1) as usize;
                            if mouse.row >= first {
                                let i = list_offset(self.image_cursor, height)
                                    + (mouse.row - first) as usize;
                                let n = self.figures.as_ref().map_or(0, |f| f.inefficiencies.len());
                                if i < n {
                                    self.image_cursor = i;
                                }
                            }
                        }
                    }
                    Pane::Config => {}
                }
            }
            _ => {}
        }
    }

    /// The help line's key for an action, e.g. `?`.
    pub fn key(&self, action: Action) -> &str {
        self.keymap.key_for(action).unwrap_or("")
    }

    /// Marks for the Layers pane in compare mode: how each of this image's layers compares.
    pub fn layer_match(&self, layer: usize) -> Option<LayerMatch> {
        let cmp = self.compare.as_ref()?.comparison.as_ref()?;
        cmp.layers.pairs.get(layer).map(|p| p.status)
    }

    /// The node a tree row shows (for tests and mouse handling).
    pub fn selected_node(&self) -> Option<NodeId> {
        self.view.selected().map(|r| r.node)
    }
}

/// The filter `text` and which nodes of `tree` it matches (by node id); `None` for no filter
/// or when `cancelled` said so first. Runs on a worker: it holds the tree's read lock only.
pub fn filter_matches(
    tree: &RwLock<FileTree>,
    text: &str,
    cancelled: impl Fn() -> bool,
) -> Option<(PathPattern, Vec<u8>)> {
    let pattern = PathPattern::new(text)?;
    if cancelled() {
        return None;
    }
    let matched = super::tree_view::match_all(&read(tree), &pattern, cancelled)?;
    Some((pattern, matched))
}

fn scroll_into_view(offset: &mut usize, cursor: usize, height: usize) {
    let height = height.max(1);
    if cursor < *offset {
        *offset = cursor;
    } else if cursor >= *offset + height {
        *offset = cursor + 1 - height;
    }
}
