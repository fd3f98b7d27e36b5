//! The file viewer: a regular file's content as of the selected layer, as text with line
//! numbers or as a hex dump for binary files. Only a window of the file is held
//! ([`WINDOW_BYTES`]); scrolling past either end asks for the next window, which the event loop
//! reads again from the layer blob that last wrote the path (see [`super::app::Effect`]).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::escape::{escape_bytes, escape_str};

use super::app::App;

/// Bytes held at a time.
pub const WINDOW_BYTES: usize = 256 * 1024;
/// Bytes per hex dump row.
const HEX_WIDTH: usize = 16;
/// A NUL in the first this-many bytes makes a file binary (git's rule).
const SNIFF_BYTES: usize = 8000;

pub use crate::layer::extract::FileWindow as Window;
use crate::tree::ContentLocation;

/// What the viewer shows and where it stands.
#[derive(Debug)]
pub struct Viewer {
    /// The path as the tree names it (`/etc/passwd`).
    pub path: Vec<u8>,
    /// The layer the bytes are read from (the one that last wrote the path, or for a hard
    /// link the one holding its target's bytes).
    pub layer: usize,
    /// Where the bytes are.
    pub location: ContentLocation,
    /// The layer selected when the viewer opened.
    pub shown_at: usize,
    /// The request whose answer is awaited (answers to older ones are dropped).
    pub request: u64,
    /// Still waiting for a window.
    pub loading: bool,
    /// Why the file could not be read.
    pub error: Option<String>,
    /// The window held.
    pub window: Option<Window>,
    /// Hex dump instead of text.
    pub binary: bool,
    /// Text: byte ranges of the window's lines.
    lines: Vec<(usize, usize)>,
    /// Text: the 1-based number of the window's first line.
    first_line: u64,
    /// Earlier windows (offset, first line), for scrolling back.
    back: Vec<(u64, u64)>,
    /// First row shown (line or hex row within the window).
    pub scroll: usize,
}

impl Viewer {
    /// A viewer waiting for its first window.
    pub fn new(path: Vec<u8>, location: ContentLocation, shown_at: usize, request: u64) -> Viewer {
        Viewer {
            path,
            layer: location.layer,
            location,
            shown_at,
            request,
            loading: true,
            error: None,
            window: None,
            binary: false,
            lines: Vec::new(),
            first_line: 1,
            back: Vec::new(),
            scroll: 0,
        }
    }

    /// Take a window that arrived. The first decides text or binary.
    pub fn receive(&mut self, window: Window) {
        self.loading = false;
        if self.window.is_none() && window.offset == 0 {
            let sniff = &window.bytes[..window.bytes.len().min(SNIFF_BYTES)];
            self.binary = sniff.contains(&0);
        }
        if !self.binary {
            self.lines = split_lines(
                &window.bytes,
                window.offset + window.bytes.len() as u64 >= window.file_size,
            );
        }
        self.window = Some(window);
    }

    /// Rows in the window (text lines or hex rows).
    pub fn row_count(&self) -> usize {
        match &self.window {
            None => 0,
            Some(w) if self.binary => w.bytes.len().div_ceil(HEX_WIDTH),
            Some(_) => self.lines.len(),
        }
    }

    /// Scroll by `delta` rows in a window of `height`; returns the offset of the window to
    /// read next when the move leaves the one held, and the request number to tag it with.
    pub fn scroll_by(&mut self, delta: isize, height: usize, next_request: u64) -> Option<u64> {
        if self.loading {
            return None;
        }
        let window = self.window.as_ref()?;
        let rows = self.row_count();
        let wanted = self.scroll as isize + delta;
        let end = window.offset + window.bytes.len() as u64;
        if wanted + height as isize > rows as isize && end < window.file_size && delta > 0 {
            // Continue from the start of the row at the scroll position, so what is on screen
            // stays put; if that row starts the window (a screenful of one long line), from
            // the last row; if the window is one row, right after it.
            let row_start = |row: usize| {
                if self.binary {
                    row * HEX_WIDTH
                } else {
                    self.lines.get(row).map_or(0, |l| l.0)
                }
            };
            let mut keep_from = self.scroll.min(rows.saturating_sub(1));
            let mut start_in_window = row_start(keep_from);
            if start_in_window == 0 {
                keep_from = rows.saturating_sub(1);
                start_in_window = row_start(keep_from);
            }
            if start_in_window == 0 {
                // The rest of a line longer than the window: same line number, next bytes.
                keep_from = 0;
                start_in_window = window.bytes.len();
            }
            let lines_before = if self.binary { 0 } else { keep_from as u64 };
            self.back.push((window.offset, self.first_line));
            self.first_line += lines_before;
            self.scroll = (wanted as usize).saturating_sub(keep_from);
            return self.request_at(window.offset + start_in_window as u64, next_request);
        }
        if wanted < 0 && window.offset > 0 {
            if let Some((offset, first_line)) = self.back.pop() {
                self.first_line = first_line;
                // Land at the end of the previous window.
                self.scroll = usize::MAX;
                return self.request_at(offset, next_request);
            }
        }
        let max = rows.saturating_sub(height.max(1)) as isize;
        self.scroll = wanted.clamp(0, max.max(0)) as usize;
        None
    }

    fn request_at(&mut self, offset: u64, request: u64) -> Option<u64> {
        self.request = request;
        self.loading = true;
        Some(offset)
    }

    /// After a window arrived while scrolling back: clamp the scroll position.
    pub fn clamp_scroll(&mut self, height: usize) {
        let max = self.row_count().saturating_sub(height.max(1));
        self.scroll = self.scroll.min(max);
    }

    /// The text lines of rows `from..from + count`: line number and bytes; for hex, the dump.
    pub fn visible(&self, from: usize, count: usize) -> Vec<String> {
        let Some(window) = &self.window else {
            return Vec::new();
        };
        if self.binary {
            return window
                .bytes
                .chunks(HEX_WIDTH)
                .enumerate()
                .skip(from)
                .take(count)
                .map(|(i, chunk)| hex_row(window.offset + (i * HEX_WIDTH) as u64, chunk))
                .collect();
        }
        self.lines
            .iter()
            .enumerate()
            .skip(from)
            .take(count)
            .map(|(i, &(start, end))| {
                let text = String::from_utf8_lossy(&window.bytes[start..end]);
                format!(
                    "{:>6} {}",
                    self.first_line + i as u64,
                    escape_str(&text.replace('\t', "    "))
                )
            })
            .collect()
    }
}

/// Line ranges (without the newline). A last line without a newline counts only when the
/// window reaches the end of the file; otherwise it continues in the next window.
fn split_lines(bytes: &[u8], at_end: bool) -> Vec<(usize, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            let end = if i > start && bytes[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            lines.push((start, end));
            start = i + 1;
        }
    }
    if start < bytes.len() && (at_end || lines.is_empty()) {
        lines.push((start, bytes.len()));
    }
    lines
}

fn hex_row(offset: u64, chunk: &[u8]) -> String {
    let mut hex = String::with_capacity(HEX_WIDTH * 3 + 1);
    for (i, b) in chunk.iter().enumerate() {
        if i == HEX_WIDTH / 2 {
            hex.push(' ');
        }
        hex.push_str(&format!("{b:02x} "));
    }
    let ascii: String = chunk
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{offset:08x}  {hex:<49} |{ascii}|")
}

/// Draw the viewer over `area`.
pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(viewer) = &app.viewer else { return };
    let theme = app.theme;
    let size = viewer
        .window
        .as_ref()
        .map(|w| format!(" {} bytes", w.file_size))
        .unwrap_or_default();
    let title = format!(
        " {} (layer {}{}){} {} ",
        escape_bytes(&viewer.path),
        viewer.layer,
        if viewer.layer == viewer.shown_at {
            String::new()
        } else {
            format!(", as seen at layer {}", viewer.shown_at)
        },
        size,
        if viewer.binary { "hex" } else { "text" }
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(true))
        .title(Span::styled(title, theme.title(true)))
        .title_bottom(Span::styled(
            " esc close  ↑↓ PgUp PgDn scroll ",
            theme.dim(),
        ));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = if let Some(error) = &viewer.error {
        vec![Line::styled(escape_str(error).into_owned(), theme.error())]
    } else if viewer.window.is_none() {
        vec![Line::styled("reading…", theme.dim())]
    } else {
        let mut lines: Vec<Line> = viewer
            .visible(viewer.scroll, inner.height as usize)
            .into_iter()
            .map(Line::raw)
            .collect();
        if viewer.row_count() == 0 {
            lines.push(Line::styled("(empty file)", theme.dim()));
        }
        lines
    };
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn location() -> ContentLocation {
        ContentLocation {
            layer: 0,
            span: crate::layer::extract::FileSpan {
                data_offset: 512,
                size: 0,
                sha256: None,
            },
        }
    }

    fn window(bytes: &[u8], offset: u64, file_size: u64) -> Window {
        Window {
            file_size,
            offset,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_line_longer_than_the_window_continues_in_the_next() {
        let file = [b'x'; 100];
        let mut v = Viewer::new(b"/min.js".to_vec(), location(), 0, 1);
        v.receive(window(&file[..40], 0, 100));
        assert_eq!(v.row_count(), 1);
        assert_eq!(v.scroll_by(1, 5, 2), Some(40));
        v.receive(window(&file[40..80], 40, 100));
        assert_eq!(v.visible(0, 1)[0], format!("     1 {}", "x".repeat(40)));
        assert_eq!(v.scroll_by(1, 5, 3), Some(80));
    }

    #[test]
    fn text_has_line_numbers_and_binary_is_hex() {
        let mut v = Viewer::new(b"/etc/hosts".to_vec(), location(), 0, 1);
        v.receive(window(b"one\ntwo\r\nthree", 0, 14));
        assert!(!v.binary);
        assert_eq!(
            v.visible(0, 10),
            ["     1 one", "     2 two", "     3 three"]
        );
        let mut b = Viewer::new(b"/bin/x".to_vec(), location(), 0, 1);
        b.receive(window(b"\x7fELF\0\x01\x02abcdefghijklmnop", 0, 23));
        assert!(b.binary);
        assert_eq!(b.row_count(), 2);
        assert_eq!(
            b.visible(0, 1)[0],
            "00000000  7f 45 4c 46 00 01 02 61  62 63 64 65 66 67 68 69  |.ELF...abcdefghi|"
        );
    }

    #[test]
    fn scrolling_past_the_window_asks_for_the_next_and_back() {
        // A 30-line file seen through windows: the first holds lines 1-10 and part of 11.
        let file: Vec<u8> = (1..=30)
            .flat_map(|i| format!("line{i:02}\n").into_bytes())
            .collect();
        let size = file.len() as u64;
        let mut v = Viewer::new(b"/f".to_vec(), location(), 0, 1);
        v.receive(window(&file[..73], 0, size));
        assert_eq!(v.row_count(), 10); // the partial 11th line waits for the next window
        assert_eq!(v.scroll_by(3, 5, 2), None);
        let next = v.scroll_by(4, 5, 2).expect("needs the next window");
        // Continues from line 4 (the scroll position): byte 3 * 7.
        assert_eq!(next, 21);
        assert!(v.loading);
        v.receive(window(&file[21..], 21, size));
        assert_eq!(v.visible(v.scroll, 1), ["     8 line08"]);
        // Back past the start: the earlier window again, line numbers restored.
        let back = v.scroll_by(-10, 5, 3).expect("needs the previous window");
        assert_eq!(back, 0);
        v.receive(window(&file[..73], 0, size));
        v.clamp_scroll(5);
        assert_eq!(v.visible(v.scroll, 1), ["     6 line06"]);
    }
}
