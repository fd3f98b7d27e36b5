//! The Config pane: the runtime defaults of the image config (Env, Entrypoint, Cmd,
//! WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal), scrollable when focused.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::escape::{escape_str, Escaped};

use super::app::{App, Pane};
use super::ui::block;

/// The config as `(label, values)` rows; absent fields are `-`.
pub fn config_lines(app: &App) -> Vec<(&'static str, Vec<String>)> {
    let Some(info) = &app.info else {
        return Vec::new();
    };
    let c = &info.config.config;
    // Values are the image's own text: control characters are shown visibly.
    let text = |s: &String| escape_str(s).into_owned();
    let list = |v: &Option<Vec<String>>| v.iter().flatten().map(text).collect::<Vec<_>>();
    let keys = |m: &Option<std::collections::BTreeMap<String, serde_json::Value>>| {
        m.iter().flat_map(|m| m.keys()).map(text).collect()
    };
    let one = |v: &Option<String>| v.iter().map(text).collect::<Vec<_>>();
    // Debug formatting quotes and escapes every control character itself.
    let quoted = |v: &Option<Vec<String>>| {
        v.iter()
            .flatten()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
    };
    vec![
        ("Env", list(&c.env)),
        ("Entrypoint", quoted(&c.entrypoint)),
        ("Cmd", quoted(&c.cmd)),
        ("WorkingDir", one(&c.working_dir)),
        ("User", one(&c.user)),
        ("ExposedPorts", keys(&c.exposed_ports)),
        ("Volumes", keys(&c.volumes)),
        (
            "Labels",
            c.labels
                .as_ref()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{}={}", Escaped(k), Escaped(v)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        ("StopSignal", one(&c.stop_signal)),
    ]
}

/// Lines the pane shows (for scrolling).
pub fn line_count(app: &App) -> usize {
    config_lines(app)
        .iter()
        .map(|(label, values)| {
            if matches!(*label, "Entrypoint" | "Cmd") {
                1
            } else {
                values.len().max(1)
            }
        })
        .sum()
}

/// Width of the label column: the longest label (`ExposedPorts`) and a space.
const LABEL_WIDTH: usize = 13;

/// Draw the Config pane.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let focused = app.focus == Pane::Config;
    let block = block("Config", focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    for (label, values) in config_lines(app) {
        let head = Span::styled(format!("{label:<LABEL_WIDTH$}"), theme.label());
        // Entrypoint and Cmd read best on one line, as JSON arrays do.
        let values = if matches!(label, "Entrypoint" | "Cmd") && !values.is_empty() {
            vec![format!("[{}]", values.join(", "))]
        } else {
            values
        };
        match values.split_first() {
            None => lines.push(Line::from(vec![head, Span::styled("-", theme.dim())])),
            Some((first, rest)) => {
                lines.push(Line::from(vec![head, Span::raw(first.clone())]));
                for value in rest {
                    lines.push(Line::from(vec![
                        Span::raw(" ".repeat(LABEL_WIDTH)),
                        Span::raw(value.clone()),
                    ]));
                }
            }
        }
    }
    let max = lines.len().saturating_sub(inner.height as usize);
    let offset = app.config_offset.min(max);
    frame.render_widget(Paragraph::new(lines).scroll((offset as u16, 0)), inner);
}
