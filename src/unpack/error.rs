//! Why `cat`, `export` or the explorer's save could not take files out of an image: each a
//! one-line sentence that says which path and what to do instead. Names from the image are
//! escaped ([`crate::escape`]) before they are put in a message.

use std::fmt;
use std::path::PathBuf;

/// What went wrong while taking files out of an image.
#[derive(Debug)]
pub enum UnpackError {
    /// `--layer N` names a layer the image does not have.
    NoSuchLayer {
        /// What was asked for.
        layer: usize,
        /// How many layers there are.
        count: usize,
    },
    /// A PATH argument holds a `..` component.
    BadPath {
        /// The argument as given.
        given: String,
    },
    /// No layer up to and including the one asked for ever held the path.
    NotFound {
        /// The path, escaped.
        path: String,
        /// The layer asked for.
        layer: usize,
        /// A later layer that writes the path, if one does.
        later: Option<usize>,
    },
    /// The path was removed (whited out or replaced) by `by`, at or before the layer asked for.
    Removed {
        /// The path, escaped.
        path: String,
        /// The layer asked for.
        layer: usize,
        /// The layer that removed it.
        by: usize,
    },
    /// `cat` of a directory.
    IsDirectory {
        /// The path, escaped.
        path: String,
    },
    /// `cat` of something with no bytes (a device, a pipe, a dangling hard link).
    NoContent {
        /// The path, escaped.
        path: String,
        /// What it is, e.g. "a named pipe".
        what: &'static str,
    },
    /// A symbolic link that points at nothing, or too many links in a row.
    BrokenLink {
        /// The path, escaped.
        path: String,
        /// Why, e.g. "points to /usr/bin/x, which does not exist at layer 3".
        why: String,
    },
    /// A file's bytes did not hash to what the index recorded.
    Mismatch {
        /// The path, escaped.
        path: String,
        /// The layer whose blob was read.
        layer: usize,
        /// What the reader of the output got (cut short, nothing, …).
        consequence: &'static str,
    },
    /// The output exists and `--force` was not given (or the explorer's confirmation).
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// A tar or binary bytes would go to a terminal.
    TerminalOutput {
        /// What would be written, e.g. "a tar archive".
        what: &'static str,
    },
    /// Extracting into a directory met something it will not write through or over.
    Refused {
        /// The place, `OUT/a/b`, escaped.
        path: String,
        /// Why, a sentence fragment.
        why: String,
    },
    /// Ctrl-C or SIGTERM: the partial output was removed (or left cut short on a pipe).
    Interrupted,
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackError::NoSuchLayer { layer, count } => match count {
                0 => write!(f, "layer {layer} does not exist: the image has no layers"),
                1 => write!(
                    f,
                    "layer {layer} does not exist: the image has one layer, layer 0"
                ),
                n => write!(
                    f,
                    "layer {layer} does not exist: the image has {n} layers, 0 to {}",
                    n - 1
                ),
            },
            UnpackError::BadPath { given } => write!(
                f,
                "{given:?}: a path in the image may not hold `..` components"
            ),
            UnpackError::NotFound { path, layer, later } => match later {
                Some(later) => write!(
                    f,
                    "{path} does not exist yet at layer {layer}: layer {later} writes it first"
                ),
                None => write!(f, "{path}: no such file or directory in the image"),
            },
            UnpackError::Removed { path, layer, by } if by == layer => {
                write!(
                    f,
                    "{path} was removed by layer {by}: use --layer {}",
                    by.saturating_sub(1)
                )
            }
            UnpackError::Removed { path, layer, by } => write!(
                f,
                "{path} was removed by layer {by}, so it does not exist at layer {layer}"
            ),
            UnpackError::IsDirectory { path } => write!(
                f,
                "{path} is a directory: use `layerscope export IMAGE {path} -o OUT` to take it out"
            ),
            UnpackError::NoContent { path, what } => {
                write!(
                    f,
                    "{path} is {what}: only regular files have bytes to print"
                )
            }
            UnpackError::BrokenLink { path, why } => write!(f, "{path}: {why}"),
            UnpackError::Mismatch {
                path,
                layer,
                consequence,
            } => write!(
                f,
                "{path}: the bytes read from layer {layer} do not match the content hash \
                 recorded when the layer was indexed (the blob changed); {consequence}"
            ),
            UnpackError::OutputExists { path } => write!(
                f,
                "{} already exists; refusing to overwrite it (pass --force to replace it)",
                path.display()
            ),
            UnpackError::TerminalOutput { what } => write!(
                f,
                "refusing to write {what} to a terminal: redirect standard output or pass -o"
            ),
            UnpackError::Refused { path, why } => write!(f, "{path}: {why}"),
            UnpackError::Interrupted => {
                f.write_str("interrupted; the partial output was removed or left incomplete")
            }
        }
    }
}

impl std::error::Error for UnpackError {}
