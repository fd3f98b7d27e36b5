//! Text from an image or a registry, made safe to print.
//!
//! An image's author controls its file names, config strings, media types and tags, and a
//! registry's operator controls its error bodies. Printed raw, an ESC sequence in any of them
//! can retitle the terminal, write the clipboard (OSC 52), clear the screen or hide the
//! cursor; a carriage return can overwrite a line and a newline can forge a table row or split
//! a one-line error in two. Every view that prints such text to a terminal or a text report
//! goes through this module: C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls
//! (U+0080–U+009F) are shown visibly, as `\x1b` and `\u{9b}`, and bytes that are not UTF-8 as
//! `\xNN`. JSON output keeps exact strings instead: JSON's own escaping is lossless, and
//! [`json_pretty`] also writes DEL and C1 as `\u007f`…`\u009f`, which plain JSON may leave
//! raw.
//!
//! Besides escaping each field where it is formatted (so a newline in a name cannot forge a
//! row), every text report passes [`escape_report`] on its way out: whatever a view forgot,
//! no control character but its own line breaks reaches the terminal.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// Whether `c` is a control character that must not reach a terminal raw.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Append the visible form of the control character `c`.
fn push_escaped(out: &mut String, c: char) {
    use fmt::Write as _;
    let code = c as u32;
    // Writing to a String cannot fail.
    let _ = if code < 0x80 {
        write!(out, "\\x{code:02x}")
    } else {
        write!(out, "\\u{{{code:x}}}")
    };
}

/// `s` with every control character shown visibly; borrowed when there is none.
pub fn escape_str(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(is_control) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if is_control(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Raw bytes (a path, a tar name) for a terminal: UTF-8 as is with control characters shown
/// visibly, and every byte that is not UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => escape_str(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(&escape_str(chunk.valid()));
                for b in chunk.invalid() {
                    use fmt::Write as _;
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// A [`fmt::Display`] wrapper that escapes as [`escape_str`] does, for `format!` arguments:
/// `format!("tag {}", Escaped(&tag))`.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(is_control) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or('\0');
            let mut buf = String::new();
            push_escaped(&mut buf, c);
            f.write_str(&buf)?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// A whole text report on its way to standard output: every control character except the
/// report's own line breaks (`\n`) shown visibly. Idempotent, and borrowed when there is
/// nothing to escape (the usual case: fields were escaped where they were formatted).
pub fn escape_report(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c != '\n' && is_control(c);
    let Some(first) = text.find(unsafe_char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text from a registry or an image for a one-line message (an error body, a notice): control
/// characters shown visibly and the result cut to `max` characters, ending in `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let escaped = escape_str(text.trim());
    if escaped.chars().count() <= max {
        return escaped.into_owned();
    }
    let mut out: String = escaped.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A text report written piece by piece to `W` (standard output, buffered), every piece through
/// [`escape_report`]: what streams out is as safe as what [`escape_report`] returns, and no
/// whole report is held in memory. Pieces are the strings `write!` hands over, so no
/// character is ever split between two of them.
pub struct EscapingWriter<W: io::Write> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: io::Write> EscapingWriter<W> {
    /// Write to `inner`.
    pub fn new(inner: W) -> Self {
        EscapingWriter { inner, error: None }
    }

    /// Flush, and hand back the first write error, if any.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: io::Write> fmt::Write for EscapingWriter<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.error.is_some() {
            return Err(fmt::Error);
        }
        match self.inner.write_all(escape_report(s).as_bytes()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.error = Some(e);
                Err(fmt::Error)
            }
        }
    }
}

/// The longest error line printed, in characters. Messages quote registries and images in
/// excerpts already; this bounds whatever a message gathers (tag lists, platform lists).
pub const MAX_ERROR_CHARS: usize = 4096;

/// An error message as `layerscope: error: …` prints it: one line, every control character
/// shown visibly, at most [`MAX_ERROR_CHARS`] characters.
pub fn error_line(message: &str) -> String {
    excerpt(message, MAX_ERROR_CHARS)
}

/// Whether `bytes` go into a JSON string as they are: printable ASCII, neither `"` nor `\`.
pub fn is_plain_json_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// A serde_json formatter: the pretty layout, with DEL and C1 controls inside strings written
/// as `\u00XX` escapes too (serde_json escapes only C0, `"` and `\`). Still exact JSON: the
/// strings decode to the same text.
struct SafeJson<'a>(serde_json::ser::PrettyFormatter<'a>);

impl serde_json::ser::Formatter for SafeJson<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Almost every string is printable ASCII: one byte scan finds that, where looking for
        // a control character decodes the string char by char. (A fragment never holds a
        // quote or a backslash: the serialiser writes those as escapes of their own.)
        if is_plain_json_text(fragment.as_bytes()) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut rest = fragment;
        while let Some(at) = rest.find(|c: char| is_control(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().unwrap_or('\0');
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Write `value` as pretty JSON to `writer` (see [`json_pretty`]), without building the text
/// in memory first.
pub fn write_json_pretty<W: io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    // The serializer writes a few bytes at a time; a buffer of its own keeps those writes
    // inlined, whatever `writer` is (often a `dyn Write`, one call per piece otherwise).
    let mut buffered = io::BufWriter::with_capacity(64 * 1024, writer);
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut buffered, SafeJson(Default::default()));
    value.serialize(&mut serializer)?;
    io::Write::flush(&mut buffered).map_err(serde_json::Error::io)
}

/// `value` as pretty JSON (serde_json's layout) in which no string holds a raw control
/// character: C0 as serde_json escapes it, DEL and C1 as `\u007f`…`\u009f`.
pub fn json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_json_pretty(&mut out, value)?;
    // The serializer writes UTF-8 only.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape_str("/usr/lib/café"), Cow::Borrowed(_)));
        assert!(matches!(escape_bytes(b"/usr/lib"), Cow::Borrowed(_)));
    }

    #[test]
    fn c0_del_and_c1_are_shown_visibly() {
        assert_eq!(escape_str("a\u{1b}]0;pwned\u{7}b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(
            escape_str("line\r\nnext\t\0"),
            "line\\x0d\\x0anext\\x09\\x00"
        );
        assert_eq!(escape_str("del\u{7f}"), "del\\x7f");
        assert_eq!(
            escape_str("csi\u{9b}2J nel\u{85}"),
            "csi\\u{9b}2J nel\\u{85}"
        );
        // U+00A0 and later are printable.
        assert_eq!(escape_str("nbsp\u{a0}é"), "nbsp\u{a0}é");
    }

    #[test]
    fn invalid_utf8_and_controls_in_bytes() {
        assert_eq!(escape_bytes(b"/caf\xe9/\x1b[2J"), "/caf\\xe9/\\x1b[2J");
        assert_eq!(escape_bytes(b"/a\nb"), "/a\\x0ab");
    }

    #[test]
    fn display_wrapper_matches_escape_str() {
        for s in ["", "plain", "\u{1b}]52;c;aGk=\u{7}", "x\u{9b}y\r", "é\u{0}"] {
            assert_eq!(Escaped(s).to_string(), escape_str(s));
        }
    }

    #[test]
    fn reports_keep_their_line_breaks_only() {
        assert_eq!(escape_report("a\nb\x1b[2J\r\n"), "a\nb\\x1b[2J\\x0d\n");
        assert!(matches!(escape_report("plain\ntext\n"), Cow::Borrowed(_)));
        let once = escape_report("x\u{9b}y\u{7}").into_owned();
        assert_eq!(escape_report(&once), once);
    }

    #[test]
    fn the_escaping_writer_streams_escaped_pieces() {
        use fmt::Write as _;
        let mut out = EscapingWriter::new(Vec::new());
        let name = "a\u{1b}]0;x\u{7}";
        let _ = writeln!(out, "name {name}");
        let _ = write!(out, "row\r");
        let bytes = out.finish().unwrap_or_default();
        assert_eq!(bytes, b"name a\\x1b]0;x\\x07\nrow\\x0d");
    }

    #[test]
    fn excerpts_are_one_escaped_line_of_bounded_length() {
        assert_eq!(
            excerpt("  denied\r\nFAKE: ok \n", 80),
            "denied\\x0d\\x0aFAKE: ok"
        );
        let long = "x".repeat(500);
        let cut = excerpt(&long, 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn json_escapes_every_control_and_stays_exact() {
        let value = serde_json::json!({"k\u{1b}": ["a\u{7f}b\u{9b}c\u{85}", "é\n\u{0}", 1]});
        let text = json_pretty(&value).unwrap_or_default();
        assert!(
            !text.contains(|c: char| c != '\n' && is_control(c)),
            "{text}"
        );
        assert!(text.contains("\\u007f") && text.contains("\\u009b") && text.contains("\\u001b"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, value);
        // The layout is serde_json's pretty one.
        let plain = serde_json::json!({"a": [1, {"b": "c"}]});
        assert_eq!(
            json_pretty(&plain).unwrap_or_default(),
            serde_json::to_string_pretty(&plain).unwrap_or_default()
        );
    }
}
