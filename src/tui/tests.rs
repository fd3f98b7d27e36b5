//! Screen tests: the real app state machine, fed the pipeline's events and key and mouse events,
//! drawn on a `TestBackend`; the model comes from real tar bytes through the real indexer and
//! merge. Each pane's test asserts what its part of the screen shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, RwLock};

use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, Effect, Pane};
use super::event::Message;
use super::keymap::Keymap;
use super::testing::{image_for, layer_tar, screen, screen_text, LayerSpec};
use super::theme::Theme;
use super::tree_view::RowsJob;
use super::ui;
use crate::image::ImageInfo;
use crate::layer::extract::read_window;
use crate::pipeline::Event as PipelineEvent;

const PASSWD_0: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";
const PASSWD_1: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n";

fn layers() -> Vec<LayerSpec<'static>> {
    vec![
        &[
            ("etc/", None),
            ("etc/passwd", Some(PASSWD_0)),
            ("etc/hosts", Some(b"127.0.0.1 localhost\n")),
            ("usr/bin/tool", Some(&[7u8; 3000])),
            ("tmp/cache.bin", Some(&[1u8; 500])),
        ],
        &[
            ("etc/passwd", Some(PASSWD_1)),
            ("app/main.py", Some(b"print('hi')\n")),
            ("tmp/.wh.cache.bin", None),
        ],
        &[("usr/bin/tool", Some(&[9u8; 3000]))],
    ]
}

struct Harness {
    app: App,
    terminal: Terminal<TestBackend>,
    info: Arc<ImageInfo>,
}

impl Harness {
    /// An app whose image has not resolved yet.
    fn unresolved(width: u16, height: u16) -> Harness {
        Harness::started(width, height, Theme { color: true })
    }

    fn started(width: u16, height: u16, theme: Theme) -> Harness {
        Harness::started_with(width, height, theme, &layers())
    }

    fn started_with(width: u16, height: u16, theme: Theme, specs: &[LayerSpec<'_>]) -> Harness {
        let (info, tree) = image_for(specs);
        let app = App::new(
            info.reference.clone(),
            Arc::new(RwLock::new(tree)),
            Keymap::defaults(),
            theme,
            Rect::new(0, 0, width, height),
        );
        Harness {
            app,
            terminal: Terminal::new(TestBackend::new(width, height)).unwrap(),
            info,
        }
    }

    /// An app that has resolved the image but merged no layer yet.
    fn resolved(width: u16, height: u16, theme: Theme) -> Harness {
        let mut h = Harness::started(width, height, theme);
        h.app
            .update(Message::Pipeline(PipelineEvent::Resolved(h.info.clone())));
        h
    }

    /// Every layer merged and analysed.
    fn loaded(width: u16, height: u16) -> Harness {
        Harness::loaded_with(width, height, &layers())
    }

    /// Every layer of `specs` merged and analysed.
    fn loaded_with(width: u16, height: u16, specs: &[LayerSpec<'_>]) -> Harness {
        let mut h = Harness::started_with(width, height, Theme { color: true }, specs);
        h.app
            .update(Message::Pipeline(PipelineEvent::Resolved(h.info.clone())));
        for i in 0..h.info.layers.len() {
            h.app
                .update(Message::Pipeline(PipelineEvent::LayerStarted(i)));
            h.app
                .update(Message::Pipeline(PipelineEvent::LayerIndexed(i)));
            h.app
                .update(Message::Pipeline(PipelineEvent::LayerMerged(i)));
        }
        h.app.update(Message::Pipeline(PipelineEvent::Finished));
        h
    }

    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> &mut Self {
        self.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
            code, modifiers,
        ))));
        // Work the event loop would leave to workers is done before the screen is read.
        self.app.settle();
        self
    }

    fn press(&mut self, c: char) -> &mut Self {
        self.key(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn ctrl(&mut self, c: char) -> &mut Self {
        self.key(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(&mut self, text: &str) -> &mut Self {
        for c in text.chars() {
            self.press(c);
        }
        self
    }

    fn click(&mut self, column: u16, row: u16) -> &mut Self {
        self.app.update(Message::Input(TermEvent::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })));
        self.app.settle();
        self
    }

    fn draw(&mut self) -> String {
        self.terminal
            .draw(|frame| ui::render(frame, &self.app))
            .unwrap();
        screen_text(self.terminal.backend().buffer())
    }

    fn lines(&mut self) -> Vec<String> {
        self.draw();
        screen(self.terminal.backend().buffer())
    }

    /// The text of the screen rectangle `area`.
    fn region(&mut self, area: Rect) -> String {
        self.lines()
            .iter()
            .skip(area.y as usize)
            .take(area.height as usize)
            .map(|l| {
                l.chars()
                    .skip(area.x as usize)
                    .take(area.width as usize)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where `needle` first appears on screen.
    fn find(&mut self, needle: &str) -> Option<(u16, u16)> {
        self.lines().iter().enumerate().find_map(|(y, line)| {
            line.find(needle)
                .map(|byte| (line[..byte].chars().count() as u16, y as u16))
        })
    }
}

#[test]
fn before_resolution_the_screen_says_it_is_resolving() {
    let mut h = Harness::resolved(80, 24, Theme { color: true });
    h.app.info = None;
    let text = h.draw();
    assert!(text.contains("resolving the image…"), "{text}");
}

#[test]
fn layers_pane_lists_steps_with_sizes_and_dimmed_metadata_rows() {
    let mut h = Harness::loaded(120, 30);
    let area = h.app.areas().layers;
    let pane = h.region(area);
    assert!(pane.contains("Layers (3)"), "{pane}");
    assert!(pane.contains("#     Size   Compr.  Command"), "{pane}");
    assert!(pane.contains("  0   3.5 kB"), "{pane}");
    // The shell form is shown as RUN, the #(nop) prefix is dropped.
    assert!(pane.contains("RUN echo step 0 > /step0"), "{pane}");
    assert!(
        pane.contains("-                    ENV PATH=/usr/bin"),
        "{pane}"
    );
    // The metadata-only row is dimmed.
    let (x, y) = h.find("ENV PATH").unwrap();
    let cell = &h.terminal.backend().buffer()[(x, y)];
    assert_eq!(cell.fg, Color::DarkGray);
}

#[test]
fn layers_show_download_progress_until_merged() {
    let mut h = Harness::resolved(80, 24, Theme { color: true });
    h.app
        .update(Message::Pipeline(PipelineEvent::LayerStarted(0)));
    let text = h.draw();
    assert!(text.contains("↓0%"), "{text}");
    assert!(text.contains("queued"), "{text}");
    assert!(text.contains("layer 0 is downloading…"), "{text}");
    h.app
        .update(Message::Pipeline(PipelineEvent::LayerIndexed(0)));
    h.app
        .update(Message::Pipeline(PipelineEvent::LayerMerged(0)));
    let text = h.draw();
    // Layer 0's tree is browsable while the others still load.
    assert!(text.contains("passwd"), "{text}");
    assert!(text.contains("layer 0/2"), "{text}");
    // Moving to a layer still loading says so, and shows its tree once it is merged.
    h.press('j').press('j');
    let text = h.draw();
    assert!(text.contains("layer 1 is queued…"), "{text}");
    h.app
        .update(Message::Pipeline(PipelineEvent::LayerMerged(1)));
    assert!(h.draw().contains("Files at layer 1 · its changes"));
}

#[test]
fn layer_details_show_digests_and_change_counts() {
    let mut h = Harness::loaded(80, 24);
    h.press('j').press('j'); // metadata row, then layer 1
    let area = h.app.areas().layer_details;
    let pane = h.region(area);
    let digest = h.info.layers[1].digest.to_string();
    assert!(pane.contains(&digest[..20]), "{pane}");
    assert!(pane.contains("+2 (12 B)"), "{pane}");
    assert!(pane.contains("~3 (60 B)"), "{pane}");
    assert!(pane.contains("-1"), "{pane}");
    assert!(pane.contains("Command  RUN echo step 1"), "{pane}");
    // On the metadata row, the step itself.
    h.press('k');
    let pane = h.region(area);
    assert!(pane.contains("metadata only"), "{pane}");
}

#[test]
fn file_tree_shows_attributes_sizes_and_coloured_kinds() {
    let mut h = Harness::loaded(100, 30);
    h.press('j').press('j'); // layer 1
    let area = h.app.areas().tree;
    let pane = h.region(area);
    assert!(pane.contains("Files at layer 1 · its changes"), "{pane}");
    assert!(
        pane.contains("Permission   UID:GID      Size  Name"),
        "{pane}"
    );
    assert!(
        pane.contains("-rw-r--r--       0:0      12 B  │   └── main.py"),
        "{pane}"
    );
    assert!(
        pane.contains("drwxr-xr-x       0:0    3.0 kB  └── usr/"),
        "{pane}"
    );
    let (x, y) = h.find("main.py").unwrap();
    assert_eq!(h.terminal.backend().buffer()[(x, y)].fg, Color::Green);
    let (x, y) = h.find("passwd").unwrap();
    assert_eq!(h.terminal.backend().buffer()[(x, y)].fg, Color::Yellow);
    let (x, y) = h.find("cache.bin").unwrap();
    assert_eq!(h.terminal.backend().buffer()[(x, y)].fg, Color::Red);
    // Ctrl+B hides the attributes (tree focused).
    h.key(KeyCode::Tab, KeyModifiers::NONE).ctrl('b');
    let pane = h.region(area);
    assert!(!pane.contains("rw-r--r--"), "{pane}");
    assert!(pane.contains("├── app/"), "{pane}");
}

#[test]
fn no_color_uses_markers_instead() {
    let mut h = Harness::resolved(100, 30, Theme { color: false });
    for i in 0..3 {
        h.app
            .update(Message::Pipeline(PipelineEvent::LayerMerged(i)));
    }
    h.app.update(Message::Pipeline(PipelineEvent::Finished));
    h.press('j').press('j');
    let text = h.draw();
    assert!(text.contains("+ -rw-r--r--"), "{text}");
    assert!(text.contains("- -rw-r--r--"), "{text}");
    let buffer = h.terminal.backend().buffer();
    assert!(buffer
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
}

#[test]
fn image_details_list_waste_and_jump_to_the_last_writer() {
    let mut h = Harness::loaded(80, 24);
    h.key(KeyCode::Tab, KeyModifiers::NONE)
        .key(KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(h.app.focus, Pane::Image);
    let area = h.app.areas().bottom;
    let pane = h.region(area);
    assert!(pane.contains("127.0.0.1:5000/demo/app"), "{pane}");
    assert!(
        pane.contains("Size       6.6 kB (16.4 kB compr.)"),
        "{pane}"
    );
    assert!(pane.contains("linux/amd64"), "{pane}");
    assert!(pane.contains("Efficiency"), "{pane}");
    assert!(pane.contains("Path (3 files)"), "{pane}");
    assert!(pane.contains("    2    6.0 kB  /usr/bin/tool"), "{pane}");
    // Enter on the first inefficient file: layer 2 wrote /usr/bin/tool last.
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(h.app.focus, Pane::Tree);
    assert_eq!(h.app.view.layer(), Some(2));
    let tree = h.app.tree.read().unwrap();
    assert_eq!(
        h.app.selected_node(),
        tree.lookup(b"/usr/bin/tool"),
        "cursor on the file"
    );
    drop(tree);
    let text = h.draw();
    assert!(
        text.contains("/usr/bin/tool was last written by layer 2"),
        "{text}"
    );
}

#[test]
fn config_pane_shows_runtime_settings() {
    let mut h = Harness::loaded(80, 24);
    for _ in 0..3 {
        h.key(KeyCode::Tab, KeyModifiers::NONE);
    }
    assert_eq!(h.app.focus, Pane::Config);
    let area = h.app.areas().bottom;
    let pane = h.region(area);
    for needle in [
        "Config",
        "Env          PATH=/usr/bin",
        "             LANG=C",
        "Entrypoint   [\"/app/run\"]",
        "Cmd          [\"--serve\"]",
        "WorkingDir   /app",
        "User         app",
        "ExposedPorts 8080/tcp",
        "Volumes      /data",
    ] {
        assert!(pane.contains(needle), "{needle}: {pane}");
    }
    h.press('j').press('j').press('j');
    let pane = h.region(area);
    assert!(pane.contains("Labels       team=core"), "{pane}");
    assert!(pane.contains("StopSignal   SIGTERM"), "{pane}");
}

#[test]
fn help_lists_every_binding() {
    let mut h = Harness::loaded(80, 24);
    h.press('?');
    let text = h.draw();
    for b in Keymap::defaults().bindings() {
        assert!(text.contains(&b.keys.join(" ")), "{}: {text}", b.name);
    }
    assert!(text.contains("Layers pane"), "{text}");
    h.press('x');
    assert!(!h.app.help);
}

#[test]
fn whole_screen_at_80x24_with_views_filter_search_and_resize() {
    let mut h = Harness::loaded(80, 24);
    let lines = h.lines();
    assert_eq!(lines.len(), 24);
    assert!(lines[0].starts_with("┌ Layers (3) "), "{}", lines[0]);
    assert!(lines[0].contains("┌ Files at layer 0"), "{}", lines[0]);
    assert!(lines[23].contains("layer 0/2 · changes"), "{}", lines[23]);
    assert!(lines[23].ends_with("? help"), "{}", lines[23]);

    // Down to layer 2, aggregated view (Ctrl+A in the Layers pane).
    h.press('j').press('j').press('j').ctrl('a');
    let text = h.draw();
    assert!(text.contains("Files at layer 2 · aggregated"), "{text}");
    assert!(text.contains("layer 2/2 · aggregated"), "{text}");
    // Ctrl+L back to this layer's changes.
    h.ctrl('l');
    assert!(h.draw().contains("Files at layer 2 · its changes"));

    // Tree: only changes (Ctrl+U), then the filter, live.
    h.key(KeyCode::Tab, KeyModifiers::NONE).ctrl('u');
    let text = h.draw();
    assert!(text.contains("hidden: unmodified"), "{text}");
    assert!(!text.contains("hosts"), "{text}");
    h.ctrl('u');
    // Alt+M hides modified files (Ctrl+M arrives as Enter in most terminals); again shows them.
    h.key(KeyCode::Char('m'), KeyModifiers::ALT);
    assert!(h.draw().contains("hidden: modified"), "{}", h.draw());
    h.key(KeyCode::Char('m'), KeyModifiers::ALT);
    assert!(!h.draw().contains("hidden: modified"));
    h.ctrl('f').typed("host");
    let text = h.draw();
    assert!(text.contains("Filter: host▏ (regex)"), "{text}");
    assert!(text.contains("hosts"), "{text}");
    assert!(!text.contains("tool"), "{text}");
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    assert!(h.draw().contains("filter: host"));
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(h.draw().contains("tool"));

    // Search and next match.
    h.press('/').typed("pass|main");
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    let text = h.draw();
    assert!(text.contains("/pass|main: 2 matches"), "{text}");
    let first = h.app.selected_node();
    h.press('n');
    assert_ne!(h.app.selected_node(), first);
    h.press('N');
    assert_eq!(h.app.selected_node(), first);

    // Resize: everything reflows.
    h.terminal.backend_mut().resize(120, 40);
    h.app.update(Message::Input(TermEvent::Resize(120, 40)));
    let lines = h.lines();
    assert_eq!(lines.len(), 40);
    assert!(lines[39].ends_with("? help"), "{}", lines[39]);
    assert!(lines[0].contains("┌ Files at layer"), "{}", lines[0]);
    h.terminal.backend_mut().resize(80, 24);
    h.app.update(Message::Input(TermEvent::Resize(80, 24)));
    assert_eq!(h.lines().len(), 24);

    h.press('q');
    assert!(h.app.quit);
    assert_eq!(h.app.exit_code(), 0);
}

#[test]
fn enter_on_a_file_opens_the_viewer_from_the_layer_that_wrote_it() {
    let mut h = Harness::loaded(80, 24);
    // Layer 2 (which did not touch /etc/passwd), tree focused, filter to passwd.
    h.press('j').press('j').press('j');
    h.key(KeyCode::Tab, KeyModifiers::NONE)
        .ctrl('f')
        .typed("passwd");
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    h.press('j');
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    let effects = h.app.take_effects();
    let [Effect::ReadFile {
        request,
        location,
        offset,
        max_len,
    }] = effects.as_slice()
    else {
        panic!("expected one read, got {effects:?}")
    };
    assert_eq!((location.layer, *offset), (1, 0));
    let text = h.draw();
    assert!(
        text.contains("/etc/passwd (layer 1, as seen at layer 2)"),
        "{text}"
    );
    assert!(text.contains("reading…"), "{text}");
    // What the event loop does: read the window out of layer 1's real tar bytes.
    let tar = layer_tar(layers()[1]);
    let window = read_window(&tar[..], location.span, *offset, *max_len).unwrap();
    h.app.update(Message::FileWindow {
        request: *request,
        result: Ok(window),
    });
    let text = h.draw();
    assert!(
        text.contains("     1 root:x:0:0:root:/root:/bin/sh"),
        "{text}"
    );
    assert!(
        text.contains("     2 app:x:1000:1000::/app:/bin/sh"),
        "{text}"
    );
    // A late answer to another request is ignored; Esc closes.
    h.app.update(Message::FileWindow {
        request: request + 100,
        result: Err("stale".to_string()),
    });
    assert!(!h.draw().contains("stale"));
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(h.app.viewer.is_none());
}

#[test]
fn mouse_click_focuses_and_selects_and_wheel_scrolls() {
    let mut h = Harness::loaded(100, 30);
    h.draw();
    let (x, y) = h.find("hosts").unwrap();
    h.click(x, y);
    assert_eq!(h.app.focus, Pane::Tree);
    let tree = h.app.tree.read().unwrap();
    assert_eq!(h.app.selected_node(), tree.lookup(b"/etc/hosts"));
    drop(tree);
    let (x, y) = h.find("RUN echo step 2").unwrap();
    h.click(x, y);
    assert_eq!(h.app.focus, Pane::Layers);
    assert_eq!(h.app.selected_layer(), Some(2));
    let tree_area = h.app.areas().tree;
    h.app.update(Message::Input(TermEvent::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: tree_area.x + 5,
        row: tree_area.y + 5,
        modifiers: KeyModifiers::NONE,
    })));
    // Everything fits: the window cannot scroll, and the focus stays.
    assert_eq!(h.app.view.offset(), 0);
    assert_eq!(h.app.focus, Pane::Layers);
}

#[test]
fn a_load_error_after_start_shows_in_the_status_line_and_exits_2() {
    let mut h = Harness::resolved(80, 24, Theme { color: true });
    h.app.update(Message::LoadFailed(
        "layer 1 (sha256:ab…): the download failed".to_string(),
    ));
    let text = h.draw();
    assert!(
        text.contains("error: layer 1 (sha256:ab…): the download failed"),
        "{text}"
    );
    h.app.update(Message::Signal);
    assert!(h.app.quit);
    assert_eq!(h.app.exit_code(), 2);
}

#[test]
fn a_failure_before_the_image_resolves_leaves_at_once_with_exit_code_2() {
    let mut h = Harness::unresolved(80, 24);
    h.app.update(Message::LoadFailed(
        "manifest unknown: 127.0.0.1:5000/nothing/here:1".to_string(),
    ));
    assert!(h.app.quit, "nothing to browse: the explorer closes");
    assert_eq!(h.app.exit_code(), 2);
}

#[test]
fn compare_marks_shared_layers_and_lists_differences() {
    let all = layers();
    let mut h = Harness::loaded(100, 30);
    let other: LayerSpec<'static> = &[
        ("etc/passwd", Some(b"root:x:0:0\n")),
        ("srv/new", Some(b"n")),
    ];
    let (info_b, tree_b) = image_for(&[all[0], other]);
    h.app
        .expect_compare("127.0.0.1:5000/demo/other:2".to_string());
    // Before the second image is in, `c` says so.
    h.press('c');
    assert!(h.draw().contains("compare: still loading both images"));
    h.app.update(Message::CompareLoaded(Ok((
        info_b,
        Arc::new(RwLock::new(tree_b)),
    ))));
    let text = h.draw();
    assert!(text.contains("=   0 "), "{text}");
    assert!(text.contains("≠   1 "), "{text}");
    assert!(text.contains("≠   2 "), "{text}");
    h.press('c');
    let text = h.draw();
    assert!(
        text.contains("Differences · 127.0.0.1:5000/demo/other:2"),
        "{text}"
    );
    assert!(
        text.contains("compare with 127.0.0.1:5000/demo/other:2:"),
        "{text}"
    );
    // /srv only in B, /app only in A (each listed once, with what it holds), /usr/bin/tool
    // differs.
    assert!(text.contains("srv/ (1 path)"), "{text}");
    assert!(text.contains("app/ (1 path)"), "{text}");
    assert!(!text.contains("main.py"), "{text}");
    // The first row is under the cursor: move off it to see its colour.
    h.key(KeyCode::Down, KeyModifiers::NONE);
    h.draw();
    let (x, y) = h.find("app/ (1 path)").unwrap();
    assert_eq!(h.terminal.backend().buffer()[(x, y)].fg, Color::Red);
    let (x, y) = h.find("srv/ (1 path)").unwrap();
    assert_eq!(h.terminal.backend().buffer()[(x, y)].fg, Color::Green);
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(h.draw().contains("Files at layer 0"));
}

#[test]
fn keys_yaml_from_the_config_dir_overrides_and_bad_files_are_refused() {
    let dir = std::env::temp_dir().join(format!("layerscope-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Only this test reads the variable.
    std::env::set_var("LAYERSCOPE_CONFIG_DIR", &dir);
    assert!(Keymap::load().is_ok(), "no file: the defaults");
    std::fs::write(dir.join("keys.yaml"), "quit: [x]\n").unwrap();
    let map = Keymap::load().unwrap();
    assert_eq!(map.key_for(super::action::Action::Quit), Some("x"));
    std::fs::write(dir.join("keys.yaml"), "quit: [x]\nexplode: [y]\n").unwrap();
    let err = Keymap::load().unwrap_err();
    assert_eq!(
        err,
        format!(
            "{}: unknown action 'explode'",
            dir.join("keys.yaml").display()
        )
    );
    std::env::remove_var("LAYERSCOPE_CONFIG_DIR");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_image_without_layers_or_history_does_not_break_anything() {
    let mut h = Harness::loaded(80, 24);
    let mut info = (*h.info).clone();
    info.layers.clear();
    info.history.clear();
    h.app
        .update(Message::Pipeline(PipelineEvent::Resolved(Arc::new(info))));
    h.app.update(Message::Pipeline(PipelineEvent::Finished));
    for c in ['j', 'k', 'G', 'g'] {
        h.press(c);
    }
    h.key(KeyCode::Tab, KeyModifiers::NONE)
        .key(KeyCode::Enter, KeyModifiers::NONE)
        .press(' ')
        .ctrl('u');
    let text = h.draw();
    assert!(text.contains("Layers (0)"), "{text}");
}

#[test]
fn tiny_terminals_draw_without_panicking() {
    for (w, h) in [(1, 1), (10, 4), (30, 8), (200, 3)] {
        let mut harness = Harness::loaded(w, h);
        harness.terminal.backend_mut().resize(w, h);
        harness.press('j').press('?');
        harness.draw();
        harness
            .press('x')
            .key(KeyCode::Tab, KeyModifiers::NONE)
            .press('j');
        harness.key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(harness.lines().len(), h as usize);
        // The Findings view, a click in it, and Enter on a finding.
        harness
            .key(KeyCode::Esc, KeyModifiers::NONE)
            .press('F')
            .press('j');
        harness.draw();
        harness.click(1, 1);
        harness.key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(harness.lines().len(), h as usize);
    }
}

#[test]
fn findings_view_lists_findings_and_enter_shows_one_in_the_tree() {
    // The image: /usr/bin/tool (3000 B) overwritten by layer 2, /tmp/cache.bin (500 B)
    // deleted by layer 1, /etc/passwd (30 B) overwritten by layer 1: 3530 B in all.
    let mut h = Harness::loaded(120, 30);
    let text = h.draw();
    assert!(text.contains("3.5 kB reclaimable (F to see why)"), "{text}");

    // F from the tree pane opens the view over the body.
    h.key(KeyCode::Tab, KeyModifiers::NONE).press('F');
    assert!(h.app.findings_open);
    let text = h.draw();
    assert!(text.contains("Findings (3) · 3.5 kB reclaimable"), "{text}");
    let rows: Vec<String> = h.lines().into_iter().filter(|l| l.contains("→")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains("3.0 kB  overwritten             0→2      /usr/bin/tool · write only"),
        "{text}"
    );
    assert!(
        rows[1].contains(
            "500 B  removed-later           0→1      /tmp/cache.bin · delete it in the same RUN"
        ),
        "{text}"
    );
    assert!(
        rows[2].contains("30 B  overwritten             0→1      /etc/passwd"),
        "{text}"
    );
    // The selected finding in full: hint, size, steps.
    assert!(
        text.contains("with new content: write only the final version, in one step"),
        "{text}"
    );
    assert!(text.contains("layer 2  RUN echo step 2 > /step2"), "{text}");

    // Down to the deleted cache: its hint and path below the list.
    h.press('j');
    let text = h.draw();
    assert!(
        text.contains("RUN echo step 0 > /step0 (layer 0) left 500 B in /tmp/cache.bin that"),
        "{text}"
    );
    assert!(
        text.contains("500 B (500 bytes) in 1 file · removed-later"),
        "{text}"
    );

    // Enter: the writer's layer selected, the tree filtered to the finding's paths.
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    assert!(!h.app.findings_open);
    assert_eq!(h.app.focus, Pane::Tree);
    assert_eq!((h.app.view.layer(), h.app.layer_row), (Some(0), 0));
    let tree_area = h.app.areas().tree;
    let pane = h.region(tree_area);
    assert!(pane.contains("cache.bin"), "{pane}");
    assert!(!pane.contains("passwd") && !pane.contains("tool"), "{pane}");
    let tree = h.app.tree.read().unwrap();
    assert_eq!(h.app.selected_node(), tree.lookup(b"/tmp/cache.bin"));
    drop(tree);
    let text = h.draw();
    assert!(
        text.contains("finding 2: removed-later (1 path) at layer 0 · esc clears the filter"),
        "{text}"
    );
    // Ctrl+F does not offer the label as text to edit.
    h.ctrl('f');
    assert!(h.draw().contains("Filter: ▏"));
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(h.app.view.filter().is_none());

    // F again: back on the same finding; Esc goes back to the explorer.
    h.press('F');
    assert_eq!((h.app.findings_open, h.app.findings_cursor), (true, 1));
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(!h.app.findings_open);
    assert!(h.draw().contains("passwd"));

    // From the viewer too: F closes it and opens the view.
    h.ctrl('f').typed("passwd");
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    h.press('j');
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    assert!(h.app.viewer.is_some());
    h.press('F');
    assert!(h.app.viewer.is_none() && h.app.findings_open);
    // The wheel moves the selection; a click selects a row.
    h.app.update(Message::Input(TermEvent::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    })));
    assert_eq!(h.app.findings_cursor, 2);
    let (_, y) = h.find("3.0 kB  overwritten").unwrap();
    h.click(5, y);
    assert_eq!(h.app.findings_cursor, 0);
    // Quit still quits.
    h.press('q');
    assert!(h.app.quit);
}

#[test]
fn findings_view_before_loading_and_with_escaped_paths() {
    let mut h = Harness::resolved(100, 24, Theme { color: true });
    h.press('F');
    assert!(h.draw().contains("findings come when every layer is in…"));
    h.press('F');
    assert!(!h.app.findings_open);

    // A file whose name holds a terminal escape, left in /tmp: shown escaped, never raw.
    let evil: &[LayerSpec<'_>] = &[
        &[("tmp/\x1b]0;pwned\x07.log", Some(&[5u8; 64]))],
        &[("srv/app", Some(b"app"))],
    ];
    let mut h = Harness::loaded_with(100, 24, evil);
    h.press('F');
    let text = h.draw();
    assert!(text.contains("Findings (1) · 64 B reclaimable"), "{text}");
    assert!(text.contains("/tmp/\\x1b]0;pwned\\x07.log"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
    assert!(text.contains("temporary-files"), "{text}");
}

#[test]
fn an_image_without_findings_says_so() {
    let clean: &[LayerSpec<'_>] = &[&[("srv/a", Some(b"a"))], &[("srv/b", Some(b"bb"))]];
    let mut h = Harness::loaded_with(100, 24, clean);
    h.press('F');
    let text = h.draw();
    assert!(text.contains("Findings (0) · 0 B reclaimable"), "{text}");
    assert!(text.contains("No findings"), "{text}");
    // Enter on nothing does nothing.
    h.key(KeyCode::Enter, KeyModifiers::NONE);
    assert!(h.app.findings_open);
}

#[test]
fn a_filter_is_worked_out_aside_and_only_the_newest_answer_is_installed() {
    let mut h = Harness::loaded(80, 24);
    h.key(KeyCode::Tab, KeyModifiers::NONE).ctrl('f');
    let rows = h.app.view.rows().to_vec();
    // Typed without settling, as the event loop does: the rows stay, the status says why.
    for c in "host".chars() {
        h.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        ))));
    }
    let text = h.draw();
    assert!(text.contains("Filter: host▏ filtering…"), "{text}");
    assert_eq!(h.app.view.rows(), rows.as_slice());
    let generations: Vec<u64> = h
        .app
        .take_effects()
        .iter()
        .filter_map(|e| match e {
            Effect::Filter { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    let [old, .., new] = generations.as_slice() else {
        panic!("expected a worker per key, got {generations:?}")
    };
    assert_eq!(generations.len(), 4);
    // Older work is told to stop; its answer, arriving late, is dropped.
    assert!(h.app.filter_cancelled(*old)() && !h.app.filter_cancelled(*new)());
    let tree = h.app.tree.clone();
    let stale = crate::tui::app::filter_matches(&tree, "h", || false);
    h.app.update(Message::Filtered {
        generation: *old,
        result: stale,
        spare: Default::default(),
    });
    assert!(h.draw().contains("filtering…"));
    assert_eq!(h.app.view.rows(), rows.as_slice());
    let fresh = crate::tui::app::filter_matches(&tree, "host", || false);
    h.app.update(Message::Filtered {
        generation: *new,
        result: fresh,
        spare: Default::default(),
    });
    let text = h.draw();
    assert!(text.contains("Filter: host▏ (regex)"), "{text}");
    assert!(!h.app.filter_pending());
    assert!(text.contains("hosts"), "{text}");
    assert_ne!(h.app.view.rows(), rows.as_slice());
}

#[test]
fn a_new_layer_is_marked_aside_and_shown_when_its_marks_arrive() {
    let mut h = Harness::loaded(80, 24);
    let shown = h.app.view.layer();
    // Layer moves without settling, as the event loop does: the layer before stays.
    for _ in 0..h.info.history.len() {
        h.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
            KeyCode::Char('j'),
            KeyModifiers::NONE,
        ))));
    }
    assert!(h.draw().contains("building…"), "{}", h.draw());
    assert_eq!(h.app.view.layer(), shown);
    let asked: Vec<(u64, usize, super::tree_view::ViewMode)> = h
        .app
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Marks {
                generation,
                layer,
                mode,
                ..
            } => Some((generation, layer, mode)),
            _ => None,
        })
        .collect();
    let [old, new] = asked.as_slice() else {
        panic!("expected a worker per move, got {}", asked.len())
    };
    let tree = h.app.tree.clone();
    let order = h.app.view.name_order();
    let marks = |(_, layer, mode): (u64, usize, _)| {
        super::tree_view::prepare_marks(&tree.read().unwrap(), layer, mode, &order, None)
    };
    // The first move's marks arrive late: not shown.
    h.app.update(Message::Marks {
        generation: old.0,
        marks: marks(*old),
    });
    assert_eq!(h.app.view.layer(), shown);
    assert!(h.app.layer_pending());
    h.app.update(Message::Marks {
        generation: new.0,
        marks: marks(*new),
    });
    assert_eq!(h.app.view.layer(), Some(new.1));
    assert!(!h.app.layer_pending());
    assert!(!h.draw().contains("building…"));
    // The same rows as shown without a worker.
    let rows = h.app.view.rows().to_vec();
    let mut direct = Harness::loaded(80, 24);
    for _ in 0..h.info.history.len() {
        direct.press('j');
    }
    assert_eq!(direct.app.view.rows(), rows.as_slice());
}

/// The app's effects of one kind, taken.
/// A marks worker asked for: its generation, and the rows job if it builds rows too.
type MarksAsked = (u64, Option<RowsJob>);

/// The searches and the marks the app left to workers.
fn searches_and_marks(h: &mut Harness) -> (Vec<(u64, String)>, Vec<MarksAsked>) {
    let mut searches = Vec::new();
    let mut marks = Vec::new();
    for effect in h.app.take_effects() {
        match effect {
            Effect::Search { generation, text } => searches.push((generation, text)),
            Effect::Marks {
                generation, rows, ..
            } => marks.push((generation, rows)),
            _ => {}
        }
    }
    (searches, marks)
}

/// The marks a worker makes for the layer and mode shown (with the size order, as asked by
/// a sort toggle).
fn marks_of_layer_shown(h: &Harness, rows: Option<&RowsJob>) -> super::tree_view::PreparedMarks {
    marks_of(h, h.app.view.layer().expect("a layer shown"), rows)
}

/// The marks a worker makes for `layer` in the view's mode (and the rows, for a job).
fn marks_of(h: &Harness, layer: usize, rows: Option<&RowsJob>) -> super::tree_view::PreparedMarks {
    let mode = h.app.view.mode();
    super::tree_view::prepare_marks(
        &h.app.tree.read().expect("tree lock"),
        layer,
        mode,
        &h.app.view.name_order(),
        rows,
    )
}

#[test]
fn a_search_and_the_first_size_order_of_a_large_view_are_left_to_workers() {
    let enter = || {
        Message::Input(TermEvent::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::NONE,
        )))
    };
    let mut direct = Harness::loaded(80, 24);
    let mut h = Harness::loaded(80, 24);
    // Every view counts as large here.
    h.app.view.large = 0;
    direct.key(KeyCode::Tab, KeyModifiers::NONE);
    h.key(KeyCode::Tab, KeyModifiers::NONE);

    // Size order: the rows shown stay until the worker's marks arrive.
    direct.ctrl('o');
    let rows = h.app.view.rows().to_vec();
    h.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::Char('o'),
        KeyModifiers::CONTROL,
    ))));
    let (_, asked) = searches_and_marks(&mut h);
    assert_eq!(asked.len(), 1, "one worker for the size order");
    assert_eq!(h.app.view.rows(), rows.as_slice());
    assert!(h.app.layer_pending());
    let marks = marks_of_layer_shown(&h, asked[0].1.as_ref());
    h.app.update(Message::Marks {
        generation: asked[0].0,
        marks,
    });
    assert!(!h.app.layer_pending());
    assert_ne!(h.app.view.rows(), rows.as_slice(), "sorted by size now");
    assert_eq!(h.app.view.rows(), direct.app.view.rows());

    // Search: n waits for the worker's matches; its answer takes the first step.
    direct.press('/').typed("host");
    direct.app.update(enter());
    h.press('/').typed("host");
    let cursor = h.app.view.cursor();
    h.app.update(enter());
    let (searches, _) = searches_and_marks(&mut h);
    let [(generation, text)] = searches.as_slice() else {
        panic!("expected one search worker, got {searches:?}")
    };
    assert_eq!(text, "host");
    assert!(h.draw().contains("searching…"));
    h.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
        KeyCode::Char('n'),
        KeyModifiers::NONE,
    ))));
    assert_eq!(h.app.view.cursor(), cursor);
    let result = super::app::filter_matches(&h.app.tree, text, || false);
    h.app.update(Message::Searched {
        generation: *generation,
        result,
    });
    assert_ne!(h.app.view.cursor(), cursor, "moved to the match");
    assert_eq!(h.app.view.cursor(), direct.app.view.cursor());
    assert_eq!(h.draw(), direct.draw());
    // Later steps read the matches off the rows, as a search without a worker does.
    for _ in 0..3 {
        direct.press('n');
        h.press('n');
        assert_eq!(h.app.view.cursor(), direct.app.view.cursor());
    }
    assert!(searches_and_marks(&mut h).0.is_empty(), "no second worker");
}

/// Two harnesses on the same image: one settles every key at once, in the other every
/// view counts as large, so its keys leave work to workers.
fn direct_and_all_large() -> (Harness, Harness) {
    let direct = Harness::loaded(80, 24);
    let mut h = Harness::loaded(80, 24);
    h.app.view.large = 0;
    (direct, h)
}

/// A key handled as the event loop handles it: work left to workers stays undone.
fn unsettled_key(h: &mut Harness, code: KeyCode, modifiers: KeyModifiers) {
    h.app.update(Message::Input(TermEvent::Key(KeyEvent::new(
        code, modifiers,
    ))));
}

#[test]
fn a_sort_toggle_that_would_page_in_a_large_views_rows_waits_for_a_worker() {
    let (mut direct, mut h) = direct_and_all_large();
    // Another layer: its marks come from a worker, with the size order made, and its rows
    // are built in the memory the worker took, so no rows are kept to lend.
    let before = h.app.view.layer();
    while h.app.view.layer() == before && h.app.layer_row + 1 < h.info.history.len() {
        direct.press('j');
        h.press('j');
    }
    assert_ne!(h.app.view.layer(), before, "another layer shown");
    assert_eq!(h.app.view.layer(), direct.app.view.layer());
    direct.key(KeyCode::Tab, KeyModifiers::NONE);
    h.key(KeyCode::Tab, KeyModifiers::NONE);
    assert!(!h.app.view.size_order_missing());

    // The size order: rows of that order need fresh memory, so a worker takes it.
    let rows = h.app.view.rows().to_vec();
    unsettled_key(&mut h, KeyCode::Char('o'), KeyModifiers::CONTROL);
    let (_, asked) = searches_and_marks(&mut h);
    assert_eq!(asked.len(), 1, "one worker for the rows' memory");
    assert_eq!(h.app.view.rows(), rows.as_slice(), "the rows shown stay");
    assert!(h.app.layer_pending());
    assert!(asked[0].1.is_some(), "the worker builds the rows too");
    let marks = marks_of_layer_shown(&h, asked[0].1.as_ref());
    let built = super::tree_view::worker_rows(&marks).map(|r| (r.to_vec(), r.as_ptr() as usize));
    h.app.update(Message::Marks {
        generation: asked[0].0,
        marks,
    });
    assert!(!h.app.layer_pending());
    direct.ctrl('o');
    assert_ne!(h.app.view.rows(), rows.as_slice(), "sorted by size now");
    assert_eq!(h.app.view.rows(), direct.app.view.rows());
    let (built, address) = built.expect("rows built by the worker");
    assert_eq!(
        built,
        direct.app.view.rows(),
        "the worker built the rows shown"
    );
    assert_eq!(
        h.app.view.rows().as_ptr() as usize,
        address,
        "the rows are in the memory the worker wrote"
    );

    // Back and forth again: the rows of both orders are kept, nothing more is asked.
    for _ in 0..2 {
        unsettled_key(&mut h, KeyCode::Char('o'), KeyModifiers::CONTROL);
        direct.ctrl('o');
        assert!(searches_and_marks(&mut h).1.is_empty(), "rows kept");
        assert_eq!(h.app.view.rows(), direct.app.view.rows());
    }
}

#[test]
fn a_sort_toggle_while_a_layer_is_being_made_keeps_that_layers_answer() {
    let (mut direct, mut h) = direct_and_all_large();
    // The layer shown has no size order yet, so a toggle on its own would ask a worker.
    assert!(h.app.view.size_order_missing());
    // The toggle changes the order the coming answer builds in, and asks for nothing that
    // would drop that answer.
    let before = h.app.view.layer();
    let mut asked = Vec::new();
    direct.app.focus = Pane::Layers;
    h.app.focus = Pane::Layers;
    for _ in 0..h.info.history.len() {
        if h.app.layer_pending() {
            break;
        }
        direct.press('j');
        unsettled_key(&mut h, KeyCode::Char('j'), KeyModifiers::NONE);
        asked.extend(searches_and_marks(&mut h).1);
    }
    assert_eq!(asked.len(), 1, "one worker for the next layer");
    assert_eq!(
        h.app.view.layer(),
        before,
        "the layer before stays until then"
    );
    direct.app.focus = Pane::Tree;
    h.app.focus = Pane::Tree;
    unsettled_key(&mut h, KeyCode::Char('o'), KeyModifiers::CONTROL);
    direct.ctrl('o');
    assert!(
        searches_and_marks(&mut h).1.is_empty(),
        "nothing more asked"
    );
    let marks = marks_of(
        &h,
        h.app.selected_layer().expect("a layer selected"),
        asked[0].1.as_ref(),
    );
    h.app.update(Message::Marks {
        generation: asked[0].0,
        marks,
    });
    assert!(!h.app.layer_pending());
    assert_ne!(h.app.view.layer(), before);
    assert_eq!(h.app.view.layer(), direct.app.view.layer());
    assert_eq!(h.app.view.rows(), direct.app.view.rows());
}
