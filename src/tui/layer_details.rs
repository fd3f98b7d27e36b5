//! The Layer details pane: the selected layer's digest, diff_id, media type, creation time, full
//! build step, and what it added, modified and removed (counts and bytes). For a
//! metadata-only history step, the step itself.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::image::clean_created_by;

use super::app::App;
use super::ui::{block, human_size, one_line};
use crate::tree::ChangeKind;

/// The build step gets at most this many lines; the full text is in `layerscope history`.
const COMMAND_LINES: u16 = 3;

/// Draw the Layer details pane.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let block = block("Layer details", false, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(info) = &app.info else { return };
    let Some(step) = info.history.get(app.layer_row) else {
        return;
    };
    let label = |text: &str| Span::styled(format!("{text:<9}"), theme.label());
    let command = one_line(&clean_created_by(
        step.entry.created_by.as_deref().unwrap_or(""),
    ));
    // What the layer did first, then the build step (wrapped, a few lines at most), then the
    // identifiers, cut at the edge.
    let mut head = Vec::new();
    let mut tail = Vec::new();
    match step.layer_index.and_then(|i| info.layers.get(i)) {
        Some(layer) => {
            let stats = app.tree.try_read().ok().and_then(|t| {
                (layer.index < t.layer_count()).then(|| t.layer_stats(layer.index).clone())
            });
            head.push(match stats {
                Some(s) => Line::from(vec![
                    label("Changes"),
                    Span::styled(
                        format!("+{} ({}) ", s.added, human_size(s.added_bytes)),
                        theme.kind(ChangeKind::Added),
                    ),
                    Span::styled(
                        format!("~{} ({}) ", s.modified, human_size(s.modified_bytes)),
                        theme.kind(ChangeKind::Modified),
                    ),
                    Span::styled(
                        format!("-{} ({})", s.removed, human_size(s.removed_bytes)),
                        theme.kind(ChangeKind::Removed),
                    ),
                ]),
                None => Line::from(vec![
                    label("Changes"),
                    Span::styled("not loaded yet", theme.dim()),
                ]),
            });
            tail.push(Line::from(vec![
                label("Digest"),
                Span::raw(layer.digest.to_string()),
            ]));
            tail.push(Line::from(vec![
                label("DiffID"),
                Span::raw(layer.diff_id.to_string()),
            ]));
            tail.push(Line::from(vec![
                label("Blob"),
                Span::raw(format!(
                    "{} {}",
                    human_size(layer.compressed_size),
                    crate::escape::Escaped(&layer.media_type)
                )),
            ]));
        }
        None => head.push(Line::styled(
            "metadata only: no filesystem change",
            theme.dim(),
        )),
    }
    if let Some(created) = &step.entry.created {
        tail.push(Line::from(vec![
            label("Created"),
            Span::raw(crate::escape::escape_str(created).into_owned()),
        ]));
    }
    if let Some(comment) = step.entry.comment.as_deref().filter(|c| !c.is_empty()) {
        tail.push(Line::from(vec![
            label("Comment"),
            Span::raw(one_line(comment)),
        ]));
    }
    let command = Line::from(vec![label("Command"), Span::raw(command)]);
    let width = inner.width.max(1) as usize;
    let command_lines = (command.width().div_ceil(width) as u16).clamp(1, COMMAND_LINES);
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(head.len() as u16),
        Constraint::Length(command_lines),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(head), top);
    frame.render_widget(Paragraph::new(command).wrap(Wrap { trim: false }), middle);
    frame.render_widget(Paragraph::new(tail), bottom);
}
