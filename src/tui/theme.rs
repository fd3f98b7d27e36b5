//! Colours and text styles. Change kinds are green (added), yellow (modified) and red
//! (removed), as in dive. With `NO_COLOR` set (<https://no-color.org>) no colour is used: added
//! is bold, modified underlined, removed crossed out and dim, the selection reversed, and the
//! tree adds a `+ ~ -` marker column so the kinds stay readable.

use ratatui::style::{Color, Modifier, Style};

use crate::tree::ChangeKind;

/// The styles of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Whether colours may be used.
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// The style of a path by its change kind.
    pub fn kind(self, kind: ChangeKind) -> Style {
        match (self.color, kind) {
            (_, ChangeKind::Unmodified) => Style::default(),
            (true, ChangeKind::Added) => Style::default().fg(Color::Green),
            (true, ChangeKind::Modified) => Style::default().fg(Color::Yellow),
            (true, ChangeKind::Removed) => Style::default().fg(Color::Red),
            (false, ChangeKind::Added) => Style::default().add_modifier(Modifier::BOLD),
            (false, ChangeKind::Modified) => Style::default().add_modifier(Modifier::UNDERLINED),
            (false, ChangeKind::Removed) => Style::default()
                .add_modifier(Modifier::CROSSED_OUT)
                .add_modifier(Modifier::DIM),
        }
    }

    /// The selected row: highlighted in the focused pane, marked in the others.
    pub fn selected(self, focused: bool) -> Style {
        match (self.color, focused) {
            (true, true) => Style::default()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
            (true, false) => Style::default().bg(Color::DarkGray),
            (false, true) => Style::default().add_modifier(Modifier::REVERSED),
            (false, false) => Style::default().add_modifier(Modifier::UNDERLINED),
        }
    }

    /// Secondary text: metadata-only history steps, hints.
    pub fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }

    /// A pane border.
    pub fn border(self, focused: bool) -> Style {
        match (self.color, focused) {
            (true, true) => Style::default().fg(Color::Cyan),
            (true, false) => Style::default().fg(Color::Gray),
            (false, true) => Style::default().add_modifier(Modifier::BOLD),
            (false, false) => Style::default(),
        }
    }

    /// A pane title.
    pub fn title(self, focused: bool) -> Style {
        let base = Style::default().add_modifier(Modifier::BOLD);
        if focused && !self.color {
            base.add_modifier(Modifier::REVERSED)
        } else {
            base
        }
    }

    /// Labels in detail panes.
    pub fn label(self) -> Style {
        if self.color {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        }
    }

    /// Errors in the status line.
    pub fn error(self) -> Style {
        if self.color {
            Style::default().fg(Color::White).bg(Color::Red)
        } else {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// The status line.
    pub fn status(self) -> Style {
        if self.color {
            Style::default().bg(Color::DarkGray).fg(Color::White)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }

    /// A marker column for the tree when there is no colour to tell kinds apart.
    pub fn marker(self, kind: ChangeKind) -> Option<char> {
        if self.color {
            return None;
        }
        Some(match kind {
            ChangeKind::Added => '+',
            ChangeKind::Modified => '~',
            ChangeKind::Removed => '-',
            ChangeKind::Unmodified => ' ',
        })
    }
}
