//! The program-level error: every way an image can fail to be analysed, each a one-line sentence,
//! and the exit codes the command line promises.

use std::fmt;

use crate::ci::CiConfigError;
use crate::digest::{Digest, VerifyError};
use crate::image::{AssembleError, LayerCountMismatch, ManifestError, NoMatchingPlatform};
use crate::layer::LayerError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::toolbox::ToolboxError;
use crate::unpack::UnpackError;

/// Exit codes of the `layerscope` command.
pub mod exit_code {
    /// Analysis done; in CI mode every rule passed; for `diff`, the images are identical.
    pub const OK: i32 = 0;
    /// A CI rule failed; for `diff`, the images differ.
    pub const FAILED_CHECK: i32 = 1;
    /// The image could not be analysed (bad input, network, registry or I/O error).
    pub const ERROR: i32 = 2;
}

/// Why an image could not be analysed.
#[derive(Debug)]
pub enum Error {
    /// The image name does not parse.
    Reference(ReferenceError),
    /// Talking to the registry failed.
    Registry(RegistryError),
    /// A manifest could not be used.
    Manifest(ManifestError),
    /// The index has no manifest for the platform asked for.
    Platform(NoMatchingPlatform),
    /// Manifest and config disagree.
    LayerCount(LayerCountMismatch),
    /// The config blob is not a valid image config.
    Config(String),
    /// A layer could not be read, verified or indexed.
    Layer {
        /// Its position, base first.
        index: usize,
        /// Its blob digest.
        digest: Digest,
        /// What went wrong.
        source: LayerError,
    },
    /// The CI rules could not be loaded.
    CiConfig(CiConfigError),
    /// A local file or device failed.
    Io {
        /// What was being done, e.g. "writing report.json".
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A toolbox subcommand refused or failed (an existing output file, a tag that did not
    /// stick, …).
    Toolbox(ToolboxError),
    /// A local archive or layout cannot be read or is not what it claims to be.
    Archive {
        /// The archive, directory or socket concerned.
        path: String,
        /// What is wrong, a sentence.
        detail: String,
    },
    /// Bytes from a local file, the engine or the cache do not match their digest or size.
    Blob {
        /// Where the bytes came from.
        origin: String,
        /// The digest they should have.
        digest: Digest,
        /// How they failed.
        source: VerifyError,
    },
    /// The Docker or Podman engine could not be asked, or refused.
    Engine(String),
    /// An archive or layout holds several images and the command line chose none.
    Ambiguous {
        /// What holds them ("archive app.tar").
        what: String,
        /// The images there: tags, or platforms.
        available: Vec<String>,
        /// How to choose, e.g. "add :TAG to the path".
        hint: String,
    },
    /// `cat`, `export` or the explorer's save could not take files out of the image.
    Unpack(UnpackError),
    /// Anything else a source reports, already a sentence.
    Other(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Reference(e) => write!(f, "{e}"),
            Error::Registry(e) => write!(f, "{e}"),
            Error::Manifest(e) => write!(f, "{e}"),
            Error::Platform(e) => write!(f, "{e}"),
            Error::LayerCount(e) => write!(f, "{e}"),
            Error::Config(e) => write!(f, "invalid image config: {e}"),
            Error::Layer {
                index,
                digest,
                source,
            } => write!(f, "layer {index} ({}): {source}", digest.short()),
            Error::CiConfig(e) => write!(f, "CI rules: {e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Toolbox(e) => write!(f, "{e}"),
            Error::Archive { path, detail } => write!(f, "{path}: {detail}"),
            Error::Blob {
                origin,
                digest,
                source,
            } => write!(f, "{origin}: blob {}: {source}", digest.short()),
            Error::Engine(e) => f.write_str(e),
            Error::Ambiguous {
                what,
                available,
                hint,
            } => write!(
                f,
                "{what} holds several images ({}); {hint}",
                available.join(", ")
            ),
            Error::Unpack(e) => write!(f, "{e}"),
            Error::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Layer { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ReferenceError> for Error {
    fn from(e: ReferenceError) -> Self {
        Error::Reference(e)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(e)
    }
}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Self {
        Error::Manifest(e)
    }
}

impl From<NoMatchingPlatform> for Error {
    fn from(e: NoMatchingPlatform) -> Self {
        Error::Platform(e)
    }
}

impl From<LayerCountMismatch> for Error {
    fn from(e: LayerCountMismatch) -> Self {
        Error::LayerCount(e)
    }
}

impl From<AssembleError> for Error {
    fn from(e: AssembleError) -> Self {
        match e {
            AssembleError::Config(message) => Error::Config(message),
            AssembleError::LayerCount(e) => Error::LayerCount(e),
            AssembleError::Platform(e) => Error::Platform(e),
        }
    }
}

impl From<ToolboxError> for Error {
    fn from(e: ToolboxError) -> Self {
        Error::Toolbox(e)
    }
}

impl From<UnpackError> for Error {
    fn from(e: UnpackError) -> Self {
        Error::Unpack(e)
    }
}

impl From<CiConfigError> for Error {
    fn from(e: CiConfigError) -> Self {
        Error::CiConfig(e)
    }
}
