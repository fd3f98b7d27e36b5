//! Text from an image or a registry, made safe to print.
//!
//! An image's author controls its file names, config strings, media types and tags, and a
//! registry's operator controls its error bodies. Printed raw, an ESC sequence in any of them
//! can retitle the terminal, write the clipboard (OSC 52), clear the screen or hide the
//! cursor; a carriage return can overwrite a line and a newline can forge a table row or split
//! a one-line error in two. Every view that prints such text to a terminal or a text report
//! goes through this module: C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls
//! (U+0080–U+009F) are shown visibly, as `\x1b` and `\u{9b}`, and bytes that are not UTF-8 as
//! `\xNN`. JSON output keeps exact strings instead: JSON's own escaping is lossless.

use std::borrow::Cow;
use std::fmt;

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
}
