//! The registry toolbox: subcommands that look at an image without pulling it, the way people
//! use `docker history`, `docker image inspect`, `skopeo inspect`, `crane` and `regctl`, plus
//! `diff`, which compares two images.
//!
//! One file per subcommand: its arguments (a clap `Args` struct), the data it gathers, a text
//! renderer and a JSON renderer (pure functions of that data, tested without a registry), and
//! `run`, which the command line calls with a ready [`RegistryClient`]. Standard output gets the
//! result only; errors are one-line sentences that the command line prints with exit code 2.
//!
//! | subcommand | like | what it prints |
//! |---|---|---|
//! | [`manifest`] | `crane manifest`, `skopeo inspect --raw` | manifest or index, digest, media type, size |
//! | [`config`] | `docker image inspect`, `crane config` | the image config |
//! | [`history`] | `docker history` | one row per build step |
//! | [`blob`] | `crane blob` | one verified blob, to a file or a pipe |
//! | [`tag`] | `crane tag` | tags remotely, checking the digest |
//! | [`listing`] | `crane ls`, `crane catalog` | tags of a repository, repositories of a registry |
//! | [`diff`] | `container-diff` | shared layers, divergence, file changes |

pub mod blob;
pub mod config;
pub mod diff;
pub mod error;
pub mod history;
pub mod listing;
pub mod manifest;
pub mod tag;

use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytesize::ByteSize;
use tokio::sync::mpsc;

pub use error::ToolboxError;

use crate::error::Error;
use crate::image::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::image::Platform;
use crate::pipeline::{self, Loaded};
use crate::reference::Reference;
use crate::registry::{FetchedManifest, RegistryClient};
use crate::source::{RegistrySource, Source};
use crate::tree::FileTree;

/// Parse an image reference given on the command line.
pub fn parse_image(text: &str) -> Result<Reference, Error> {
    Ok(text.parse::<Reference>()?)
}

/// Pull `reference` through the pipeline (every layer downloaded, verified and indexed) and
/// return the loaded model.
pub async fn load_image(
    client: &RegistryClient,
    reference: Reference,
    platform: Option<Platform>,
) -> Result<Loaded, Error> {
    load_source(Arc::new(Source::Registry(RegistrySource::new(
        client.clone(),
        reference,
        platform,
    ))))
    .await
}

/// Load an image from any source through the pipeline. Events are drained: only the result
/// matters here.
pub async fn load_source(source: Arc<Source>) -> Result<Loaded, Error> {
    let (events, mut drained) = mpsc::unbounded_channel();
    tokio::spawn(async move { while drained.recv().await.is_some() {} });
    let tree = Arc::new(RwLock::new(FileTree::new()));
    pipeline::load(source, tree, events, |_| {}).await
}

/// Write a text report (or JSON) to standard output, through [`crate::escape::escape_report`]
/// so that no control character but its line breaks reaches the terminal. A closed pipe
/// (`| head`) is the reader's choice, not an error.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    write_stdout(crate::escape::escape_report(text).as_bytes())
}

/// Write a text report to standard output as `write` produces it, buffered and through
/// [`crate::escape::EscapingWriter`]: long listings are never held whole in memory.
pub fn stream_stdout(
    write: impl FnOnce(&mut dyn std::fmt::Write) -> std::fmt::Result,
) -> Result<(), Error> {
    let stdout = std::io::stdout().lock();
    let mut out = crate::escape::EscapingWriter::new(std::io::BufWriter::new(stdout));
    // A failed write is reported by `finish`; `write` only stops early.
    let _ = write(&mut out);
    match out.finish() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to standard output", e)),
    }
}

/// Write `value` to standard output as [`json_text`] formats it, without building the text in
/// memory first.
pub fn stream_json_stdout<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    write_stdout_with(|out| {
        crate::escape::write_json_pretty(&mut *out, value)?;
        out.write_all(b"\n")
    })
}

/// Write to standard output (buffered) what `write` writes; a reader that went away (a closed
/// pipe) is not an error.
pub fn write_stdout_with(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to standard output", e)),
    }
}

/// Write bytes to standard output unchanged (see [`print_stdout`]).
pub fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to standard output", e)),
    }
}

/// Pretty JSON with a final newline, as every `--json` prints it (no raw control character in
/// any string: see [`crate::escape::json_pretty`]). Outputs are `Serialize` structs so their
/// keys keep a deliberate order (a `serde_json::Value` map sorts them).
pub fn json_text<T: serde::Serialize>(value: &T) -> String {
    let mut text = crate::escape::json_pretty(value).unwrap_or_else(|_| "null".to_string());
    text.push('\n');
    text
}

/// A size for people, in SI units as the rest of layerscope prints them (`1.5 kB`).
pub fn human_size(bytes: u64) -> String {
    ByteSize(bytes).display().si().to_string()
}

/// A size the way `docker history` prints it: three significant digits, SI units, no space
/// (`0B`, `512B`, `1.52kB`, `15.2MB`).
pub fn docker_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    // Three significant digits, trailing zeros dropped (Go's %.3g).
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    // Rounding can reach the next unit (999.6 kB → "1000kB"); say it in that unit instead.
    if text == "1000" && unit + 1 < UNITS.len() {
        return format!("1{}", UNITS[unit + 1]);
    }
    format!("{text}{}", UNITS[unit])
}

/// When an RFC 3339 timestamp was, relative to `now`, as `docker history` words it
/// (`5 seconds ago`, `About an hour ago`, `3 weeks ago`, `2 years ago`). `None` when the
/// timestamp does not parse.
pub fn relative_time(timestamp: &str, now: SystemTime) -> Option<String> {
    let then = parse_timestamp(timestamp)?;
    Some(match now.duration_since(then) {
        Ok(elapsed) => format!("{} ago", human_duration(elapsed)),
        Err(ahead) => format!("{} from now", human_duration(ahead.duration())),
    })
}

/// An RFC 3339 timestamp (`2024-01-01T00:00:00Z`, fractional seconds and `+02:00` offsets
/// accepted).
pub fn parse_timestamp(timestamp: &str) -> Option<SystemTime> {
    let text = timestamp.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(text.trim_end_matches(['Z', 'z'])) {
        if text.ends_with(['Z', 'z']) {
            return Some(t);
        }
    }
    // An explicit offset: read the local part, then move it to UTC.
    let (local, sign, offset) = split_offset(text)?;
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let (hours, minutes) = offset.split_once(':')?;
    let seconds = hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60;
    let shift = Duration::from_secs(seconds);
    if sign == '+' {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

/// `(local time, sign, "HH:MM")` of a timestamp ending in `+HH:MM` or `-HH:MM`.
fn split_offset(text: &str) -> Option<(&str, char, &str)> {
    if text.len() < 6 {
        return None;
    }
    let (local, offset) = text.split_at(text.len() - 6);
    let mut chars = offset.chars();
    let sign = chars.next()?;
    if !matches!(sign, '+' | '-') || !local.contains('T') {
        return None;
    }
    Some((local, sign, &offset[1..]))
}

/// A coarse duration in Docker's words (go-units `HumanDuration`).
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        plural(seconds, "second")
    } else if seconds / 60 == 1 {
        "About a minute".to_string()
    } else if seconds / 60 < 60 {
        plural(seconds / 60, "minute")
    } else {
        // Hours round to the nearest, as Docker's do; longer units count whole ones.
        let hours = (seconds as f64 / 3600.0 + 0.5) as u64;
        if hours == 1 {
            "About an hour".to_string()
        } else if hours < 48 {
            plural(hours, "hour")
        } else if hours < 24 * 7 * 2 {
            plural(hours / 24, "day")
        } else if hours < 24 * 30 * 2 {
            plural(hours / 24 / 7, "week")
        } else if hours < 24 * 365 * 2 {
            plural(hours / 24 / 30, "month")
        } else {
            plural(seconds / (86_400 * 365), "year")
        }
    }
}

/// The media type to report and to push a manifest as: the `Content-Type` the registry sent
/// when it names a manifest kind (parameters dropped), else the one the JSON declares or
/// implies.
pub fn manifest_media_type(fetched: &FetchedManifest) -> String {
    let header = fetched
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    match header {
        Some(ct)
            if matches!(
                ct.as_str(),
                OCI_INDEX | OCI_MANIFEST | DOCKER_MANIFEST_LIST | DOCKER_MANIFEST
            ) =>
        {
            ct
        }
        _ => fetched.parsed.media_type().to_string(),
    }
}

/// Collapse whitespace runs to one space, show other control characters visibly (the text
/// comes from an image) and cut to `max` characters with `…`; `max` of `None` does not cut.
pub fn one_line(text: &str, max: Option<usize>) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = crate::escape::escape_str(&flat).into_owned();
    match max {
        Some(max) if flat.chars().count() > max => {
            let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
            format!("{cut}…")
        }
        _ => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn docker_sizes_have_three_significant_digits() {
        assert_eq!(docker_size(0), "0B");
        assert_eq!(docker_size(999), "999B");
        assert_eq!(docker_size(1000), "1kB");
        assert_eq!(docker_size(1520), "1.52kB");
        assert_eq!(docker_size(1500), "1.5kB");
        assert_eq!(docker_size(15_240), "15.2kB");
        assert_eq!(docker_size(152_400), "152kB");
        assert_eq!(docker_size(999_600), "1MB");
        assert_eq!(docker_size(372_700_000), "373MB");
    }

    #[test]
    fn durations_read_like_docker() {
        let d = Duration::from_secs;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(61)), "About a minute");
        assert_eq!(human_duration(d(300)), "5 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86_400)), "3 days");
        assert_eq!(human_duration(d(21 * 86_400)), "3 weeks");
        assert_eq!(human_duration(d(90 * 86_400)), "3 months");
        assert_eq!(human_duration(d(800 * 86_400)), "2 years");
    }

    #[test]
    fn timestamps_with_zones_and_fractions() {
        let t = |s| {
            parse_timestamp(s).and_then(|t| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs()))
        };
        assert_eq!(t("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(t("1970-01-01T00:01:00.123456789Z"), Some(60));
        assert_eq!(t("1970-01-01T02:01:00+02:00"), Some(60));
        assert_eq!(t("1970-01-01T00:00:00-01:00"), Some(3600));
        assert_eq!(t("yesterday"), None);
        let now = UNIX_EPOCH + Duration::from_secs(3 * 86_400);
        assert_eq!(
            relative_time("1970-01-01T00:00:00Z", now).as_deref(),
            Some("3 days ago")
        );
    }

    #[test]
    fn one_line_collapses_and_cuts() {
        assert_eq!(one_line("a \n  b\tc", None), "a b c");
        assert_eq!(one_line("abcdef", Some(4)), "abc…");
        assert_eq!(one_line("abcd", Some(4)), "abcd");
        assert_eq!(one_line("a\u{1b}[2J\r\nb", None), "a\\x1b[2J b");
    }
}
