//! `layerscope cat IMAGE PATH [--layer N]`: one file's bytes as of the last layer (or layer N),
//! as `regctl image get-file` and `crane export … | tar -xO` give them, without a daemon.
//!
//! The bytes come from the layer that last wrote the file (for a hard link, the one holding
//! its target's bytes), read again through the image's source (the cache first), and are
//! checked against the content hash recorded while indexing as they stream:
//!
//! - to standard output they stream, with the last piece held back until the whole file
//!   matched: a damaged file arrives cut short, with exit code 2 and an error, never whole;
//! - with `-o FILE` they go to a temporary file that takes FILE's name only once verified
//!   (an existing FILE is replaced only with `--force`), so a failure leaves nothing;
//! - to a terminal, text is shown with control characters made visible (as every text from an
//!   image is), and a binary file is refused.
//!
//! Symbolic links are followed inside the image, as a process in the container would see
//! them; a directory, a missing path or one removed by then is an error (exit 2) saying which.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::error::{exit_code, Error};
use crate::escape::escape_str;
use crate::image::Platform;
use crate::pipeline::Loaded;
use crate::source::Source;
use crate::tree::{ContentLocation, EntryKind};

use super::save::{check_new_file, copy_file, into_new_file};
use super::write::on_blocking_thread;
use super::{pick_layer, resolve, shown, UnpackError};

/// A NUL in this many first bytes makes a file binary (git's rule, as the viewer uses).
const SNIFF_BYTES: usize = 8000;

/// Arguments of `layerscope cat`.
#[derive(Debug, Clone, Args)]
pub struct CatArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, or `docker://NAME`,
    /// `docker-archive:PATH`, `oci:DIR[:TAG]`, ….
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The file in the image, e.g. /etc/os-release (symbolic links are followed inside the
    /// image).
    #[arg(value_name = "PATH")]
    pub path: String,

    /// Read the file as of layer N (0 is the base layer; default: the last layer).
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,

    /// Write the bytes to FILE, which takes its name only once verified, instead of standard
    /// output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,

    /// Platform to choose from a multi-platform image: OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Neither read nor write the cache of blobs and layer indexes.
    #[arg(long)]
    pub no_cache: bool,

    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

impl CatArgs {
    /// Refuse what can be refused before anything is downloaded: an existing `-o FILE`
    /// without `--force`.
    pub fn check(&self) -> Result<(), Error> {
        match self.output_file() {
            Some(path) => check_new_file(path, self.force),
            None => Ok(()),
        }
    }

    fn output_file(&self) -> Option<&PathBuf> {
        self.output.as_ref().filter(|p| p.as_os_str() != "-")
    }
}

/// The words for what an entry is, in "PATH is …" sentences.
pub fn kind_words(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "a regular file",
        EntryKind::Dir => "a directory",
        EntryKind::Symlink => "a symbolic link",
        EntryKind::Hardlink => "a hard link",
        EntryKind::CharDevice => "a character device",
        EntryKind::BlockDevice => "a block device",
        EntryKind::Fifo => "a named pipe",
    }
}

/// Run `layerscope cat` on an image loaded from `source`.
pub async fn run(source: Arc<Source>, loaded: Loaded, args: &CatArgs) -> Result<i32, Error> {
    let (location, path) = {
        let tree = loaded.tree.read().unwrap_or_else(|p| p.into_inner());
        let layer = pick_layer(args.layer, tree.layer_count())?;
        let (node, path) = resolve(&tree, &args.path, layer)?;
        let Some(entry) = tree.entry_at(node, layer) else {
            return Err(super::find_at(&tree, &path, layer)
                .err()
                .map_or_else(|| Error::Other("not found".to_string()), Error::from));
        };
        let location = match entry.kind() {
            EntryKind::Dir => return Err(UnpackError::IsDirectory { path: shown(&path) }.into()),
            EntryKind::File | EntryKind::Hardlink => tree
                .content_location(node, layer)
                .ok_or_else(|| UnpackError::NoContent {
                    path: shown(&path),
                    what: "a hard link to a file that does not exist",
                })?,
            kind => {
                return Err(UnpackError::NoContent {
                    path: shown(&path),
                    what: kind_words(kind),
                }
                .into())
            }
        };
        (location, path)
    };
    let layers = loaded.info.layers.clone();
    let output = args.output_file().cloned();
    let force = args.force;
    on_blocking_thread(source, layers, true, move |blobs| {
        let cancel = blobs.cancel.clone();
        match output {
            Some(file) => into_new_file(&file, force, |out| {
                copy_file(blobs, location, &path, out, "nothing was written", &cancel)
            }),
            None => to_stdout(&path, location, |out| {
                copy_file(
                    blobs,
                    location,
                    &path,
                    out,
                    "standard output was cut short before the file's end",
                    &cancel,
                )
            }),
        }
    })
    .await?;
    Ok(exit_code::OK)
}

/// Give `copy` standard output: raw bytes to a pipe or file; escaped text to a terminal (a
/// binary file refused). A reader that closed the pipe (`| head`) is not an error.
fn to_stdout(
    path: &[u8],
    location: ContentLocation,
    copy: impl FnOnce(&mut dyn Write) -> Result<u64, Error>,
) -> Result<u64, Error> {
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut lock = stdout.lock();
    let result = if terminal {
        let mut text = TerminalText::new(&mut lock, path, location.span.size);
        let copied = copy(&mut text);
        copied.and_then(|n| text.finish().map(|()| n))
    } else {
        copy(&mut lock)
    };
    match result {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        other => {
            let _ = lock.flush();
            other
        }
    }
}

/// Text for a terminal: control characters other than newline and tab shown visibly, bytes
/// that are not UTF-8 as `\xNN`; a file with a NUL in its first bytes is refused as binary.
struct TerminalText<'a, W: Write> {
    out: &'a mut W,
    path: &'a [u8],
    /// Bytes of an incomplete UTF-8 sequence at the end of the last write, or the first
    /// bytes while sniffing.
    pending: Vec<u8>,
    sniffed: bool,
    size: u64,
}

impl<'a, W: Write> TerminalText<'a, W> {
    fn new(out: &'a mut W, path: &'a [u8], size: u64) -> Self {
        TerminalText {
            out,
            path,
            pending: Vec::new(),
            sniffed: false,
            size,
        }
    }

    /// Write out what is pending; `last`: also a trailing incomplete sequence.
    fn drain(&mut self, last: bool) -> io::Result<()> {
        if !self.sniffed {
            let enough =
                self.pending.len() >= SNIFF_BYTES || self.pending.len() as u64 >= self.size;
            if !enough && !last {
                return Ok(());
            }
            let head = &self.pending[..self.pending.len().min(SNIFF_BYTES)];
            if head.contains(&0) {
                return Err(io::Error::other(UnpackError::TerminalOutput {
                    what: "a binary file",
                }));
            }
            self.sniffed = true;
        }
        let mut start = 0;
        let mut text = String::new();
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    push_visible(&mut text, valid);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    if let Ok(s) = std::str::from_utf8(&self.pending[start..start + valid]) {
                        push_visible(&mut text, s);
                    }
                    start += valid;
                    match e.error_len() {
                        Some(bad) => {
                            for b in &self.pending[start..start + bad] {
                                text.push_str(&format!("\\x{b:02x}"));
                            }
                            start += bad;
                        }
                        None if last => {
                            for b in &self.pending[start..] {
                                text.push_str(&format!("\\x{b:02x}"));
                            }
                            start = self.pending.len();
                        }
                        // An incomplete sequence: wait for its next bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        self.out.write_all(text.as_bytes())
    }

    fn finish(&mut self) -> Result<(), Error> {
        let path = self.path;
        self.drain(true)
            .and_then(|()| self.out.flush())
            .map_err(|e| unwrap_refusal(e, path))
    }
}

impl<W: Write> Write for TerminalText<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.drain(false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An error raised inside the writer, as the program error it is.
fn unwrap_refusal(e: io::Error, path: &[u8]) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<UnpackError>()) {
        if let Some(Ok(refusal)) = e.into_inner().map(|inner| inner.downcast::<UnpackError>()) {
            return (*refusal).into();
        }
        return Error::Other("writing to the terminal failed".to_string());
    }
    Error::io(format!("writing {} to standard output", shown(path)), e)
}

/// Append `s` with control characters other than newline and tab shown visibly.
fn push_visible(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(at) = rest.find(['\n', '\t']) {
        out.push_str(&escape_str(&rest[..at]));
        out.push_str(&rest[at..at + 1]);
        rest = &rest[at + 1..];
    }
    out.push_str(&escape_str(rest));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Read;

    use super::*;

    /// Read all of `reader` through a [`TerminalText`], for tests.
    fn shown_on_terminal(bytes: &[u8], chunk: usize) -> Result<String, Error> {
        let mut out = Vec::new();
        let mut text = TerminalText::new(&mut out, b"f", bytes.len() as u64);
        let mut reader = bytes;
        let mut buf = vec![0u8; chunk];
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io("reading", e))?;
            if n == 0 {
                break;
            }
            text.write_all(&buf[..n])
                .map_err(|e| unwrap_refusal(e, b"f"))?;
        }
        text.finish()?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn a_terminal_sees_text_with_controls_made_visible() {
        let text = "caf\u{e9}\tline\n\x1b]52;c;aGk=\x07 \u{9b}x\r\n".as_bytes();
        for chunk in [1, 2, 3, 1000] {
            let shown = shown_on_terminal(text, chunk).unwrap();
            assert_eq!(
                shown,
                "caf\u{e9}\tline\n\\x1b]52;c;aGk=\\x07 \\u{9b}x\\x0d\n"
            );
        }
        assert_eq!(
            shown_on_terminal(b"a\xffb\xe2\x82", 1).unwrap(),
            "a\\xffb\\xe2\\x82"
        );
        let err = shown_on_terminal(b"\x7fELF\0\x01", 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("binary file to a terminal"), "{err}");
    }
}
