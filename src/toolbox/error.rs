//! What the toolbox subcommands refuse to do, each a one-line sentence that says what to do
//! instead. Registry and reference failures keep their own types in [`crate::error::Error`].

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// Why a toolbox subcommand stopped before or after talking to the registry.
#[derive(Debug)]
pub enum ToolboxError {
    /// `-o FILE` names a file that exists, and `--force` was not given.
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// `-o FILE` names a directory.
    OutputIsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Blob bytes would go to a terminal.
    TerminalOutput,
    /// The download was interrupted (Ctrl-C); nothing was written.
    Interrupted,
    /// `tag`'s NEWTAG is not a bare tag.
    InvalidNewTag {
        /// What was given.
        given: String,
        /// Why it is not a tag.
        why: String,
    },
    /// After tagging, the new tag does not resolve to the digest that was pushed.
    TagMismatch {
        /// The new tag as a full reference.
        reference: String,
        /// The digest of the manifest that was pushed.
        expected: Digest,
        /// What the registry now serves for the tag.
        actual: Digest,
    },
    /// `catalog` was given something that is not a registry host.
    NotARegistryHost {
        /// What was given.
        given: String,
    },
    /// `diff` could not load one of its images.
    Load {
        /// `A` or `B`.
        side: char,
        /// The image reference.
        reference: String,
        /// The underlying error, already a sentence.
        message: String,
    },
}

impl fmt::Display for ToolboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolboxError::OutputExists { path } => write!(
                f,
                "{} already exists; refusing to overwrite it (pass --force to replace it)",
                path.display()
            ),
            ToolboxError::OutputIsDirectory { path } => write!(
                f,
                "{} is a directory; give -o a file name inside it",
                path.display()
            ),
            ToolboxError::TerminalOutput => f.write_str(
                "refusing to write blob bytes to a terminal: redirect standard output \
                 (> FILE, | tar -tzv) or pass -o FILE",
            ),
            ToolboxError::Interrupted => {
                f.write_str("interrupted; the partial download was removed and nothing was written")
            }
            ToolboxError::InvalidNewTag { given, why } => write!(
                f,
                "NEWTAG must be a tag in the same repository, such as v1.4 ({given:?}: {why})"
            ),
            ToolboxError::TagMismatch {
                reference,
                expected,
                actual,
            } => write!(
                f,
                "after tagging, {reference} resolves to {actual}, not to the pushed {expected} \
                 (another push may have raced this one)"
            ),
            ToolboxError::NotARegistryHost { given } => write!(
                f,
                "{given:?} is not a registry host: name one such as localhost:5000, \
                 127.0.0.1:5000 or registry.example.com (a name without '.' or ':' is a \
                 Docker Hub repository)"
            ),
            ToolboxError::Load {
                side,
                reference,
                message,
            } => write!(f, "image {side} ({reference}): {message}"),
        }
    }
}

impl std::error::Error for ToolboxError {}
