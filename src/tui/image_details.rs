//! The Image details pane: reference, manifest digest, platform, total and compressed size,
//! efficiency, wasted and shadowed bytes, the bytes the findings could reclaim,
//! and the inefficient files, largest waste first. With the pane focused, Enter on a file
//! jumps to it in the tree at the layer that wrote it last.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::escape::{escape_bytes, escape_str};

use super::action::Action;
use super::app::{App, Pane};
use super::ui::{block, human_size, list_offset, truncate, IMAGE_FIGURE_LINES};

/// Draw the Image details pane.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let focused = app.focus == Pane::Image;
    let block = block("Image details", focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let label = |text: &str| Span::styled(format!("{text:<11}"), theme.label());
    let Some(info) = &app.info else { return };
    let compressed: u64 = info.layers.iter().map(|l| l.compressed_size).sum();
    let mut lines = vec![
        Line::from(vec![
            label("Image"),
            Span::raw(escape_str(&info.reference).into_owned()),
        ]),
        Line::from(vec![
            label("Digest"),
            Span::raw(info.manifest_digest.to_string()),
        ]),
        Line::from(vec![
            label("Platform"),
            Span::raw(
                info.platform
                    .as_ref()
                    .map(|p| escape_str(&p.to_string()).into_owned())
                    .unwrap_or_else(|| "-".to_string()),
            ),
        ]),
    ];
    let Some(figures) = &app.figures else {
        lines.push(Line::from(vec![
            label("Size"),
            Span::raw(format!("? ({} compr.)", human_size(compressed))),
        ]));
        lines.push(Line::styled(
            "figures come when every layer is in…",
            theme.dim(),
        ));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    lines.push(Line::from(vec![
        label("Size"),
        Span::raw(format!(
            "{} ({} compr.)",
            human_size(figures.size_bytes),
            human_size(compressed)
        )),
    ]));
    lines.push(Line::from(vec![
        label("Efficiency"),
        Span::raw(format!("{:.2} %", figures.efficiency * 100.0)),
    ]));
    lines.push(Line::from(vec![
        label("Wasted"),
        Span::raw(format!(
            "{} (user {:.2} %)",
            human_size(figures.wasted_bytes),
            figures.user_wasted_percent * 100.0
        )),
    ]));
    lines.push(Line::from(vec![
        label("Shadowed"),
        Span::raw(format!(
            "{} stored, not visible",
            human_size(figures.shadowed_bytes)
        )),
    ]));
    let reclaimable = app.findings.as_ref().map_or(0, |f| f.reclaimable_bytes);
    lines.push(Line::from(vec![
        label("Findings"),
        Span::raw(format!(
            "{} reclaimable ({} to see why)",
            human_size(reclaimable),
            app.key(Action::Findings)
        )),
    ]));
    debug_assert_eq!(lines.len() as u16, IMAGE_FIGURE_LINES);
    let width = inner.width as usize;
    if figures.inefficiencies.is_empty() {
        lines.push(Line::styled("no inefficient files", theme.dim()));
    } else {
        lines.push(Line::styled(
            format!(
                "{:>5} {:>9}  Path ({} files)",
                "Count",
                "Wasted",
                figures.inefficiencies.len()
            ),
            theme.label(),
        ));
        let height = inner.height.saturating_sub(IMAGE_FIGURE_LINES + 1) as usize;
        let offset = list_offset(app.image_cursor, height);
        // Figures come once every layer is in, so nothing writes the model any more.
        let tree = app.tree.try_read().ok();
        for (i, item) in figures
            .inefficiencies
            .iter()
            .enumerate()
            .skip(offset)
            .take(height)
        {
            let text = truncate(
                &format!(
                    "{:>5} {:>9}  {}",
                    item.count,
                    human_size(item.wasted_bytes),
                    escape_bytes(&tree.as_ref().map(|t| t.path(item.node)).unwrap_or_default())
                ),
                width,
            );
            let line = if i == app.image_cursor && focused {
                Line::styled(format!("{text:<width$}"), theme.selected(true))
            } else {
                Line::raw(text)
            };
            lines.push(line);
        }
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
