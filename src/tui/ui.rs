//! The screen: where each pane goes, and the status line. Each pane draws itself in its own
//! file from the app state; this module only places them.

use bytesize::ByteSize;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::escape::Escaped;

use super::app::{App, Pane, Prompt};
use super::tree_view::{SortOrder, ViewMode};
use super::{
    config_pane, file_tree, findings_view, help, image_details, layer_details, layers, viewer,
};

/// Width of the left column on wide terminals, in percent.
const LEFT_PERCENT: u16 = 42;
/// The left column never gets narrower than this (80 columns: 36 left, 44 for the tree).
const LEFT_MIN_WIDTH: u16 = 36;
/// The tree never gets narrower than this.
const TREE_MIN_WIDTH: u16 = 30;
/// Height of the Layer details pane, borders included.
const LAYER_DETAILS_HEIGHT: u16 = 8;
/// From this body height on, Image details and Config get a box each.
const TALL_BODY: u16 = 44;
/// Of the space left in the left column, the focused box gets this share (percent).
const FOCUSED_SHARE: u16 = 70;
/// The status line.
const STATUS_HEIGHT: u16 = 1;
/// Lines of figures above the inefficient files list in the Image pane.
pub const IMAGE_FIGURE_LINES: u16 = 8;

/// Where everything goes for one terminal size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Areas {
    /// Everything above the status line (the viewer covers it).
    pub body: Rect,
    /// The Layers pane.
    pub layers: Rect,
    /// Rows of layers on screen.
    pub layers_rows: u16,
    /// The Layer details pane.
    pub layer_details: Rect,
    /// The Image details box (or Config, on short terminals, when it was focused last).
    pub bottom: Rect,
    /// The Config box, on tall terminals.
    pub config: Option<Rect>,
    /// The File tree pane.
    pub tree: Rect,
    /// Rows of files on screen.
    pub tree_rows: u16,
    /// Screen row of the first file row.
    pub tree_first_row: u16,
    /// Screen row of the first inefficient file, when the Image box shows them.
    pub inefficiency_first_row: Option<u16>,
    /// The status line.
    pub status: Rect,
}

/// Place the panes (see [`render`] for the picture). `focus` gets the larger share of the
/// left column; `bottom` says which of Image / Config the shared box shows on short terminals.
pub fn layout(area: Rect, focus: Pane, bottom: Pane, layer_rows: Option<usize>) -> Areas {
    let [body, status] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(STATUS_HEIGHT)]).areas(area);
    let left_width = (body.width * LEFT_PERCENT / 100)
        .max(LEFT_MIN_WIDTH)
        .min(body.width.saturating_sub(TREE_MIN_WIDTH));
    let [left, tree] =
        Layout::horizontal([Constraint::Length(left_width), Constraint::Min(0)]).areas(body);
    let tall = body.height >= TALL_BODY;
    let bottom_focused = focus == Pane::Image || focus == Pane::Config;
    // On short terminals the Image / Config box, when focused, takes the details' room too.
    let details_height = if !tall && bottom_focused {
        0
    } else {
        LAYER_DETAILS_HEIGHT.min(body.height / 3)
    };
    let rest = left.height.saturating_sub(details_height);
    let (layers_share, bottom_share) = if tall {
        (rest * 35 / 100, rest * 35 / 100)
    } else if bottom_focused {
        (rest * (100 - FOCUSED_SHARE) / 100, 0)
    } else {
        (rest * FOCUSED_SHARE / 100, 0)
    };
    // Borders and the header row around the layer rows.
    let needed = layer_rows.map_or(u16::MAX, |n| {
        u16::try_from(n).unwrap_or(u16::MAX).saturating_add(3)
    });
    let saved = layers_share.saturating_sub(needed);
    let (layers_share, bottom_share) = (layers_share - saved, bottom_share + saved);
    let (layers, layer_details, bottom_area, config) = if tall {
        let [l, d, b, c] = Layout::vertical([
            Constraint::Length(layers_share),
            Constraint::Length(details_height),
            Constraint::Length(bottom_share),
            Constraint::Min(0),
        ])
        .areas(left);
        (l, d, b, Some(c))
    } else {
        let [l, d, b] = Layout::vertical([
            Constraint::Length(layers_share),
            Constraint::Length(details_height),
            Constraint::Min(0),
        ])
        .areas(left);
        (l, d, b, None)
    };
    let shows_image = config.is_some() || bottom != Pane::Config;
    Areas {
        body,
        layers,
        layers_rows: layers.height.saturating_sub(3),
        layer_details,
        bottom: bottom_area,
        config,
        tree,
        tree_rows: tree.height.saturating_sub(3),
        tree_first_row: tree.y + 2,
        inefficiency_first_row: shows_image.then_some(bottom_area.y + 2 + IMAGE_FIGURE_LINES),
        status,
    }
}

/// Draw the whole screen from the app state: the panes where [`layout`] puts them, then the
/// viewer, the Findings view and the help on top when open. Left column `LEFT_PERCENT` of the width (at least
/// `LEFT_MIN_WIDTH`), Layer details `LAYER_DETAILS_HEIGHT` rows, the focused left box
/// `FOCUSED_SHARE` % of the rest, one status line; from `TALL_BODY` rows Config gets its
/// own box.
///
/// ```text
/// ┌ Layers ───────────────────┐┌ File tree ─────────────────────────────────┐
/// │ #   Size  Compr  Command  ││ Permission   UID:GID     Size  Name         │
/// │ 0  5.6MB  3.4MB  ADD …    ││ drwxr-xr-x   0:0       4.1 MB  ├── etc      │
/// │ -               ENV …     ││ -rw-r--r--   0:0        120 B  │   ├── hosts│
/// ├ Layer details ────────────┤│                                             │
/// │ Digest, DiffID, type,     ││           (LEFT_PERCENT | the rest)         │
/// │ created, command, counts  ││                                             │
/// ├ Image details │ Config ───┤│                                             │
/// │ figures, inefficient files││                                             │
/// └───────────────────────────┘└─────────────────────────────────────────────┘
///  layer 2/5 · changes · 1234 rows (+12 ~3 -4) · filter …        ↓ 3/5  ? help
/// ```
pub fn render(frame: &mut Frame, app: &App) {
    let areas = layout(frame.area(), app.focus, app.bottom, app.layer_row_count());
    layers::render(frame, areas.layers, app);
    layer_details::render(frame, areas.layer_details, app);
    match areas.config {
        Some(config) => {
            image_details::render(frame, areas.bottom, app);
            config_pane::render(frame, config, app);
        }
        None if app.bottom == Pane::Config => config_pane::render(frame, areas.bottom, app),
        None => image_details::render(frame, areas.bottom, app),
    }
    file_tree::render(frame, areas.tree, app);
    render_status(frame, areas.status, app);
    if app.viewer.is_some() {
        viewer::render(frame, areas.body, app);
    }
    if app.findings_open {
        findings_view::render(frame, areas.body, app);
    }
    if app.help {
        help::render(frame, areas.body, app);
    }
}

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

/// The status line: the prompt being typed, an error, a notice, or the tree's counts; on the
/// right, download progress and the help key.
fn render_status(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let mut right = String::new();
    if let (Some(progress), false) = (&app.progress, app.finished) {
        right.push_str(&format!(
            "↓ {}/{} {}/{} layers  ",
            size(progress.bytes()),
            size(progress.total_bytes()),
            app.merged(),
            progress.layer_count()
        ));
    } else if app.info.is_none() && app.error.is_none() {
        right.push_str("resolving…  ");
    }
    right.push_str(&format!("{} help ", app.key(super::action::Action::Help)));

    let (left, style) = if let Some(text) = super::save::status(app) {
        (text, theme.status())
    } else if let Some(prompt) = &app.prompt {
        let (label, text) = match prompt {
            Prompt::Filter(t) => ("Filter", t),
            Prompt::Search(t) => ("Search", t),
        };
        let kind = match app.view.filter() {
            // The rows are still the previous filter's.
            _ if label == "Filter" && app.filter_pending() => " filtering…",
            Some(f) if label == "Filter" && f.is_regex() => " (regex)",
            Some(_) if label == "Filter" => " (text)",
            _ => "",
        };
        (
            format!(
                " {label}: {text}▏{kind}  {} rows  enter/esc",
                app.view.rows().len()
            ),
            theme.status(),
        )
    } else if let Some(error) = &app.error {
        (format!(" error: {}", Escaped(error)), theme.error())
    } else if let Some(notice) = &app.notice {
        (format!(" {}", Escaped(notice)), theme.status())
    } else {
        (format!(" {}", counts(app)), theme.status())
    };
    let width = area.width as usize;
    let right_width = right.chars().count();
    let left: String = left
        .chars()
        .take(width.saturating_sub(right_width))
        .collect();
    let pad = width.saturating_sub(left.chars().count() + right_width);
    let line = Line::from(vec![
        Span::raw(left),
        Span::raw(" ".repeat(pad)),
        Span::raw(right),
    ])
    .style(style);
    frame.render_widget(Paragraph::new(line), area);
}

/// "layer 2/5 · changes · 1234 rows (+12 ~3 -4) · filter: x · sort: size".
fn counts(app: &App) -> String {
    let Some(layer) = app.view.layer() else {
        return match &app.info {
            Some(info) => format!("{}: loading layers…", Escaped(&info.reference)),
            None => format!("{}: resolving…", Escaped(&app.reference)),
        };
    };
    if let Some(c) = app.compare.as_ref().filter(|c| c.active) {
        if let Some(cmp) = &c.comparison {
            return format!(
                "compare with {}: {} added, {} modified, {} removed",
                Escaped(&c.reference),
                cmp.summary.added,
                cmp.summary.modified,
                cmp.summary.removed
            );
        }
    }
    let total = app.info.as_ref().map_or(0, |i| i.layers.len());
    let [added, modified, removed, _] = app.view.counts();
    let mut parts = vec![
        format!("layer {layer}/{}", total.saturating_sub(1)),
        match app.view.mode() {
            ViewMode::LayerChanges => "changes".to_string(),
            ViewMode::Aggregated => "aggregated".to_string(),
        },
        format!(
            "{} rows (+{added} ~{modified} -{removed})",
            app.view.rows().len()
        ),
    ];
    if app.layer_pending() {
        parts.push("building…".to_string());
    }
    if app.filter_pending() {
        parts.push("filtering…".to_string());
    } else if let Some(filter) = app.view.filter() {
        parts.push(format!("filter: {}", Escaped(filter.text())));
    }
    if app.view.sort == SortOrder::Size {
        parts.push("sort: size".to_string());
    }
    let hidden = app.view.hidden;
    let mut hid = Vec::new();
    for (flag, name) in [
        (hidden.added, "added"),
        (hidden.modified, "modified"),
        (hidden.removed, "removed"),
        (hidden.unmodified, "unmodified"),
    ] {
        if flag {
            hid.push(name);
        }
    }
    if !hid.is_empty() {
        parts.push(format!("hidden: {}", hid.join(",")));
    }
    parts.join(" · ")
}

/// A pane's frame: title, and a brighter border when focused.
pub fn block(
    title: impl Into<String>,
    focused: bool,
    theme: super::theme::Theme,
) -> ratatui::widgets::Block<'static> {
    ratatui::widgets::Block::bordered()
        .border_style(theme.border(focused))
        .title(Span::styled(
            format!(" {} ", title.into()),
            theme.title(focused),
        ))
}

/// Bytes for people: `4.1 MB`.
pub fn human_size(bytes: u64) -> String {
    size(bytes)
}

/// Text from the image (a build step, a comment) on one line: whitespace runs, line breaks
/// included, become one space, and other control characters are shown visibly.
pub fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::escape::escape_str(&flat).into_owned()
}

/// Cut `text` to `width` characters, with `…` when it was longer.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// The first row of a list of `height` rows that keeps `cursor` on screen, scrolled as
/// little as possible from the top (for lists that keep no scroll state).
pub fn list_offset(cursor: usize, height: usize) -> usize {
    cursor.saturating_sub(height.saturating_sub(1))
}
