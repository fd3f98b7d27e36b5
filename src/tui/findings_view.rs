//! The Findings view: why bytes are wasted and which build step to change, over the whole
//! body like the viewer. One row per finding (bytes, kind, layers, where, the remedy), and
//! below the list the selected finding in full: its hint, the steps of its layers and its
//! paths. Enter shows the finding in the tree; Esc goes back.
//!
//! ```text
//! ┌ Findings (7) · 9.0 kB reclaimable ──────────────────────────────────────────┐
//! │     Bytes  Kind                    Layers   Where · remedy                   │
//! │    4.5 kB  removed-later           1→2      /var/lib/apt/lists · delete it …  │
//! │    2.0 kB  package-cache           1        /var/cache/apt · add apt-get …    │
//! │─────────────────────────────────────────────────────────────────────────────│
//! │ RUN apt-get update (layer 1) left 4.5 kB in /var/lib/apt/lists that …         │
//! │ 4.5 kB in 2 files                                                           │
//! │ layer 1  RUN apt-get update && apt-get install -y curl                       │
//! │ /var/lib/apt/lists/deb_Packages                                              │
//! └ ↑↓ select  enter show in the tree  esc back ───────────────────────────────┘
//! ```
//! The details take `DETAILS_PERCENT` of the inner height (at least `DETAILS_MIN` rows).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::escape::{escape_bytes, escape_str};
use crate::findings::{step_line, Finding, FindingKind};

use super::action::Action;
use super::app::App;
use super::ui::{human_size, list_offset, truncate};

/// Share of the inner height for the selected finding's details, in percent.
const DETAILS_PERCENT: u16 = 45;
/// The details never get fewer rows than this (when the screen has them).
const DETAILS_MIN: u16 = 7;

/// The list (header row included) and the details, inside the view's border.
fn split(body: Rect) -> (Rect, Rect, Rect) {
    let inner = Block::default().borders(Borders::ALL).inner(body);
    let details = (inner.height * DETAILS_PERCENT / 100)
        .max(DETAILS_MIN)
        .min(inner.height.saturating_sub(3));
    let [list, rule, details] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(details),
    ])
    .areas(inner);
    (list, rule, details)
}

/// Rows of findings on screen when the view covers `body`.
pub fn list_rows(body: Rect) -> usize {
    split(body).0.height.saturating_sub(1) as usize
}

/// Screen row of the first finding when the view covers `body`.
pub fn first_row(body: Rect) -> u16 {
    split(body).0.y + 1
}

/// `1→2` for hidden bytes (writer → hider), else the layers with commas.
fn layers_text(finding: &Finding) -> String {
    let parts: Vec<String> = finding.layers.iter().map(ToString::to_string).collect();
    if finding.kind.is_hidden() {
        parts.join("→")
    } else {
        parts.join(",")
    }
}

/// Where the finding is, for one row: its place, or its number of files.
fn where_text(finding: &Finding) -> String {
    match &finding.place {
        Some(place) => escape_bytes(place).into_owned(),
        None => format!("{} files", finding.files),
    }
}

/// Draw the Findings view over `area`.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let title = match &app.findings {
        Some(f) => format!(
            " Findings ({}) · {} reclaimable ",
            f.items.len(),
            human_size(f.reclaimable_bytes)
        ),
        None => " Findings ".to_string(),
    };
    let keys = format!(
        " ↑↓ select  {} show in the tree  {} back ",
        app.key(Action::Open),
        app.key(Action::Back)
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(title, theme.title(true)))
        .title_bottom(Span::styled(keys, theme.dim()));
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let (list, rule, details) = split(area);
    let Some(findings) = &app.findings else {
        let text = if app.error.is_some() {
            "no findings: the image did not load"
        } else {
            "findings come when every layer is in…"
        };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim())), list);
        return;
    };
    if findings.items.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "No findings: no hidden, cached, temporary or duplicated bytes.",
                theme.dim(),
            )),
            list,
        );
        return;
    }

    let width = list.width as usize;
    let kind_width = FindingKind::ALL
        .iter()
        .map(|k| k.label().len())
        .max()
        .unwrap_or(0);
    let mut lines = vec![Line::styled(
        truncate(
            &format!(
                "{:>9}  {:<kind_width$}  {:<7}  Where · remedy",
                "Bytes", "Kind", "Layers"
            ),
            width,
        ),
        theme.label(),
    )];
    let height = list.height.saturating_sub(1) as usize;
    let offset = list_offset(app.findings_cursor, height);
    for (i, f) in findings.items.iter().enumerate().skip(offset).take(height) {
        let text = truncate(
            &format!(
                "{:>9}  {:<kind_width$}  {:<7}  {} · {}",
                human_size(f.bytes),
                f.kind.label(),
                layers_text(f),
                where_text(f),
                escape_str(&f.remedy)
            ),
            width,
        );
        lines.push(if i == app.findings_cursor {
            Line::styled(format!("{text:<width$}"), theme.selected(true))
        } else {
            Line::raw(text)
        });
    }
    frame.render_widget(Paragraph::new(lines), list);
    frame.render_widget(
        Paragraph::new(Line::styled("─".repeat(rule.width as usize), theme.dim())),
        rule,
    );

    let Some(f) = findings.items.get(app.findings_cursor) else {
        return;
    };
    let width = details.width as usize;
    let files = if f.files == 1 {
        "1 file".to_string()
    } else {
        format!("{} files", f.files)
    };
    let mut lines = vec![
        Line::raw(escape_str(&f.hint).into_owned()),
        Line::styled(
            format!(
                "{} ({} bytes) in {files} · {}",
                human_size(f.bytes),
                f.bytes,
                f.kind
            ),
            theme.label(),
        ),
    ];
    for (layer, step) in f.layers.iter().zip(&f.steps) {
        let step = step_line(step);
        lines.push(Line::raw(truncate(
            &format!("layer {layer}  {}", escape_str(&step)),
            width,
        )));
    }
    for path in &f.paths {
        lines.push(Line::styled(
            truncate(&escape_bytes(path), width),
            theme.dim(),
        ));
    }
    if f.paths_omitted > 0 {
        lines.push(Line::styled(
            format!("… {} more", f.paths_omitted),
            theme.dim(),
        ));
    }
    // Only the hint is long enough to wrap; the rest is cut to the width above.
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), details);
}
