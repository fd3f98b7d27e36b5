//! The File tree pane: the filesystem at the selected layer with permissions, uid:gid, size
//! (directories: the sum below them), name and link target; added green, modified yellow,
//! removed red. Only the rows on screen are formatted (so a 110k-file tree draws as fast as a small one). In compare mode it lists
//! the paths that differ from the second image instead.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::escape::{escape_bytes, Escaped};
use crate::tree::{ChangeKind, Entry, EntryKind, FileTree};

use super::app::{App, CompareState, LayerState, Pane};
use super::theme::Theme;
use super::tree_view::{Row, ViewMode};
use super::ui::{block, human_size, truncate};

/// From this inner width on, the uid:gid column is shown (at 80 columns it would leave too
/// little room for names).
const WIDE_COLUMNS: usize = 56;

/// `drwxr-xr-x` from a kind and mode.
pub fn permissions(entry: &Entry) -> String {
    let mut out = String::with_capacity(10);
    // A hard link is a regular file to `ls`; the `=>` after the name says it is a link.
    out.push(match entry.kind() {
        EntryKind::Hardlink => '-',
        kind => kind.tag(),
    });
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = entry.mode() & bit != 0;
        let special = match i {
            2 => entry.mode() & 0o4000 != 0,
            5 => entry.mode() & 0o2000 != 0,
            8 => entry.mode() & 0o1000 != 0,
            _ => false,
        };
        out.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => *c,
            (false, false, _) => '-',
        });
    }
    out
}

/// The tree-drawing prefix of a row: `│   ├── `, never wider than `max_width` columns: the
/// deepest levels are drawn, and `…` stands for those above them (a path can be nested
/// thousands of directories deep; its name must stay on screen).
fn prefix(row: &Row, max_width: usize) -> String {
    let depth = usize::from(row.depth);
    let room = (max_width.saturating_sub(4) / 4).max(1);
    let first = depth.saturating_sub(room);
    let mut out = String::new();
    for level in first..depth {
        out.push_str(if level < 64 && row.guides & (1 << level) != 0 {
            "│   "
        } else {
            "    "
        });
    }
    if first > 0 {
        out.replace_range(..1, "…");
    }
    out.push_str(if row.last { "└── " } else { "├── " });
    out
}

/// One row's text and style.
fn row_line(row: &Row, tree: &FileTree, app: &App, width: usize, selected: bool) -> Line<'static> {
    let theme: Theme = app.theme;
    let entry = app.view.entry(tree, row.node);
    let mut text = String::new();
    if let Some(marker) = theme.marker(row.kind) {
        text.push(marker);
        text.push(' ');
    }
    if app.show_attributes {
        let wide = width >= WIDE_COLUMNS;
        match entry {
            Some(e) => {
                let size = if e.kind() == EntryKind::File || e.kind() == EntryKind::Dir {
                    human_size(app.view.size(row.node))
                } else {
                    String::new()
                };
                if wide {
                    let owner = format!("{}:{}", e.uid, e.gid);
                    text.push_str(&format!("{} {owner:>9} {size:>9}  ", permissions(e)));
                } else {
                    text.push_str(&format!("{} {size:>8} ", permissions(e)));
                }
            }
            None => text.push_str(&" ".repeat(if wide { 32 } else { 20 })),
        }
    }
    text.push_str(&prefix(row, width / 2));
    text.push_str(&escape_bytes(tree.name(row.node)));
    if row.is_dir {
        text.push('/');
        if row.collapsed {
            text.push_str(" …");
        }
    }
    if let Some(target) = entry.and_then(|e| e.link_target()) {
        let arrow = if entry.is_some_and(|e| e.kind() == EntryKind::Hardlink) {
            " => "
        } else {
            " -> "
        };
        text.push_str(arrow);
        text.push_str(&escape_bytes(target));
    }
    let text = truncate(&text, width);
    let style = theme.kind(row.kind);
    if selected {
        Line::from(Span::styled(
            format!("{text:<width$}"),
            style.patch(theme.selected(app.focus == Pane::Tree)),
        ))
    } else {
        Line::from(Span::styled(text, style))
    }
}

/// Draw the File tree pane.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let focused = app.focus == Pane::Tree;
    if let Some(compare) = app.compare.as_ref().filter(|c| c.active) {
        render_compare(frame, area, app, compare);
        return;
    }
    let title = match (app.view.layer(), app.view.mode()) {
        (Some(layer), ViewMode::LayerChanges) => format!("Files at layer {layer} · its changes"),
        (Some(layer), ViewMode::Aggregated) => format!("Files at layer {layer} · aggregated"),
        (None, _) => "Files".to_string(),
    };
    let block = block(title, focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let Some(layer) = app.view.layer() else {
        let message = match (app.selected_layer(), &app.error) {
            (_, Some(_)) => "the image could not be loaded".to_string(),
            (Some(layer), None) => match app.layer_states.get(layer) {
                Some(LayerState::Downloading) => format!("layer {layer} is downloading…"),
                Some(LayerState::Indexed) => {
                    format!("layer {layer} waits for the layers below it…")
                }
                _ => format!("layer {layer} is queued…"),
            },
            (None, None) => "waiting for the image…".to_string(),
        };
        frame.render_widget(Paragraph::new(Line::styled(message, theme.dim())), inner);
        return;
    };
    let marker = if theme.color { "" } else { "  " };
    let header = if app.show_attributes && width >= WIDE_COLUMNS {
        format!(
            "{marker}{:<10} {:>9} {:>9}  Name",
            "Permission", "UID:GID", "Size"
        )
    } else if app.show_attributes {
        format!("{marker}{:<10} {:>8} Name", "Permission", "Size")
    } else {
        "Name".to_string()
    };
    let mut lines = vec![Line::styled(truncate(&header, width), theme.label())];
    let Ok(tree) = app.tree.try_read() else {
        // The pipeline is merging a layer; the next frame (after LayerMerged) shows the tree.
        lines.push(Line::styled(
            format!("merging… (layer {layer})"),
            theme.dim(),
        ));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let height = inner.height.saturating_sub(1) as usize;
    let rows = app.view.rows();
    if rows.is_empty() {
        let why = if app.view.filter().is_some() {
            "nothing matches the filter"
        } else {
            "nothing to show (see hidden kinds)"
        };
        lines.push(Line::styled(why, theme.dim()));
    }
    let offset = app.view.offset();
    for (i, row) in rows.iter().enumerate().skip(offset).take(height) {
        lines.push(row_line(row, &tree, app, width, i == app.view.cursor()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The differences with the second image, in tree order: one row per change, indented by its
/// depth (never wider than half the pane), a directory only one image has as one row with
/// the number of paths it holds.
fn render_compare(frame: &mut Frame, area: Rect, app: &App, compare: &CompareState) {
    let theme = app.theme;
    let block = block(
        format!("Differences · {}", Escaped(&compare.reference)),
        app.focus == Pane::Tree,
        theme,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let Some(cmp) = &compare.comparison else {
        return;
    };
    let mut lines = vec![Line::styled(
        truncate(
            &format!(
                "{:>9} {:>9}  Path (this image → {})",
                "Size",
                "Then",
                Escaped(&compare.reference)
            ),
            width,
        ),
        theme.label(),
    )];
    if cmp.files.is_empty() {
        lines.push(Line::styled("the filesystems are the same", theme.dim()));
    }
    // Names come from the trees; both are only read (a merge never runs after loading).
    let (Ok(tree_a), Some(Ok(tree_b))) =
        (app.tree.try_read(), compare.tree().map(|t| t.try_read()))
    else {
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let height = inner.height.saturating_sub(1) as usize;
    for (i, change) in cmp
        .files
        .iter()
        .enumerate()
        .skip(compare.offset)
        .take(height)
    {
        let indent = (change.depth.saturating_sub(1) as usize).min(width / 4);
        let mut name = escape_bytes(change.name(&tree_a, &tree_b)).into_owned();
        if let Some(holds) = change.holds {
            name.push_str(&format!(
                "/ ({} path{})",
                holds.paths,
                if holds.paths == 1 { "" } else { "s" }
            ));
        }
        let (a_size, b_size) = match change.holds {
            Some(h) if change.kind == ChangeKind::Removed => (h.bytes, 0),
            Some(h) => (0, h.bytes),
            None => (change.a_size(), change.b_size()),
        };
        let sizes = match change.kind {
            ChangeKind::Added => format!("{:>9} {:>9}", "", human_size(b_size)),
            ChangeKind::Removed => format!("{:>9} {:>9}", human_size(a_size), ""),
            _ => format!("{:>9} {:>9}", human_size(a_size), human_size(b_size)),
        };
        let marker = theme
            .marker(change.kind)
            .map(|m| format!("{m} "))
            .unwrap_or_default();
        let text = truncate(
            &format!("{marker}{sizes}  {}{name}", "  ".repeat(indent)),
            width,
        );
        let style: Style = theme.kind(change.kind);
        lines.push(if i == compare.cursor {
            Line::styled(
                format!("{text:<width$}"),
                style.patch(theme.selected(app.focus == Pane::Tree)),
            )
        } else {
            Line::styled(text, style)
        });
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
