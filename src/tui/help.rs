//! The help overlay: every key binding, grouped by where it applies, straight from the keymap
//! data (so what it lists is what the keys do).

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::app::App;
use super::keymap::Scope;
use super::ui::block;

/// Draw the help overlay centred in `area`.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let mut lines = Vec::new();
    // The key column fits the longest binding (a user's keys.yaml may list several keys).
    let key_width = app
        .keymap
        .bindings()
        .iter()
        .map(|b| b.keys.join(" ").chars().count() + 1)
        .max()
        .unwrap_or(0)
        .max(12);
    for scope in [Scope::Global, Scope::Layers, Scope::Tree] {
        lines.push(Line::styled(scope.label(), theme.label()));
        for b in app.keymap.bindings().iter().filter(|b| b.scope == scope) {
            lines.push(Line::from(vec![
                Span::raw(format!("  {:<key_width$}", b.keys.join(" "))),
                Span::raw(b.help),
            ]));
        }
    }
    lines.push(Line::styled(
        "Mouse: click, wheel. Any key closes.",
        theme.dim(),
    ));
    let widest = lines.iter().map(Line::width).max().unwrap_or(40) as u16;
    // Two columns when one does not fit the height.
    let two = lines.len() as u16 + 2 > area.height;
    let (width, height) = if two {
        (widest * 2 + 5, lines.len().div_ceil(2) as u16 + 2)
    } else {
        (widest + 4, lines.len() as u16 + 2)
    };
    let [popup] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(popup);
    let block = block("Keys", true, theme);
    let inner = block.inner(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(block, popup);
    if two {
        let half = lines.len().div_ceil(2);
        let right = lines.split_off(half);
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(inner);
        frame.render_widget(Paragraph::new(lines), l);
        frame.render_widget(Paragraph::new(right), r);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
