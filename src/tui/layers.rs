//! The Layers pane: one row per history step. Steps that made a layer show its index, sizes and
//! build step (`/bin/sh -c #(nop)` cleaned away); metadata-only steps (ENV, CMD, …) are dimmed
//! rows of their own. Until a layer is merged its row shows its download progress instead of
//! its size; in compare mode a mark says whether the second image shares it.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::compare::LayerMatch;
use crate::image::clean_created_by;

use super::app::{App, LayerState, Pane};
use super::ui::{block, human_size, one_line, truncate};

/// From this inner width on, the compressed size has a column.
const WIDE_COLUMNS: usize = 46;

/// Draw the Layers pane.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let focused = app.focus == Pane::Layers;
    let title = match (&app.info, app.view.mode()) {
        (Some(info), _) => format!("Layers ({})", info.layers.len()),
        (None, _) => "Layers".to_string(),
    };
    let block = block(title, focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(info) = &app.info else {
        let text = match &app.error {
            Some(_) => "could not load the image",
            None => "resolving the image…",
        };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim())), inner);
        return;
    };
    let compare = app
        .compare
        .as_ref()
        .and_then(|c| c.comparison.as_ref())
        .is_some();
    let width = inner.width as usize;
    // The compressed size only when there is room for the command beside it.
    let wide = width >= WIDE_COLUMNS;
    let mut lines = vec![Line::styled(
        format!(
            "{}{:>3} {:>8}{}  Command",
            if compare { "  " } else { "" },
            "#",
            "Size",
            if wide {
                format!(" {:>8}", "Compr.")
            } else {
                String::new()
            }
        ),
        theme.label(),
    )];
    let rows = inner.height.saturating_sub(1) as usize;
    for (row, step) in info
        .history
        .iter()
        .enumerate()
        .skip(app.layer_offset)
        .take(rows)
    {
        let command = one_line(&clean_created_by(
            step.entry.created_by.as_deref().unwrap_or(""),
        ));
        let (mark, head, style) = match step.layer_index {
            Some(i) => {
                let mark = match app.layer_match(i) {
                    Some(LayerMatch::Shared) => "= ",
                    Some(LayerMatch::SameContent) => "≈ ",
                    Some(_) => "≠ ",
                    None if compare => "  ",
                    None => "",
                };
                let sizes = layer_sizes(app, i, wide);
                (mark, format!("{i:>3} {sizes}"), Style::default())
            }
            None => (
                if compare { "  " } else { "" },
                format!(
                    "{:>3} {:>8}{}",
                    "-",
                    "",
                    if wide { " ".repeat(9) } else { String::new() }
                ),
                theme.dim(),
            ),
        };
        let text = truncate(&format!("{mark}{head}  {command}"), width);
        let style = if row == app.layer_row {
            style.patch(theme.selected(focused))
        } else {
            style
        };
        let padded = format!("{text:<width$}");
        lines.push(Line::from(Span::styled(padded, style)));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Size and compressed size of a merged layer, or its download state.
fn layer_sizes(app: &App, i: usize, wide: bool) -> String {
    let compressed = app
        .info
        .as_ref()
        .and_then(|info| info.layers.get(i))
        .map_or(0, |l| l.compressed_size);
    let sizes = |first: String| {
        if wide {
            format!("{first:>8} {:>8}", human_size(compressed))
        } else {
            format!("{first:>8}")
        }
    };
    match app.layer_states.get(i) {
        Some(LayerState::Merged) => {
            let tree = app.tree.try_read();
            let size = match &tree {
                Ok(t) if i < t.layer_count() => human_size(t.layer_stats(i).size_bytes),
                _ => "…".to_string(),
            };
            sizes(size)
        }
        Some(LayerState::Indexed) => sizes("merging".to_string()),
        Some(LayerState::Downloading) => {
            let done = app.progress.as_ref().map_or(0, |p| p.layer_bytes(i));
            let percent = (done * 100).checked_div(compressed).unwrap_or(0).min(100);
            sizes(format!("↓{percent}%"))
        }
        Some(LayerState::Queued) | None => sizes("queued".to_string()),
    }
}
