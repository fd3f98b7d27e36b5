//! `layerscope blob IMAGE DIGEST [-o FILE]`: download one blob (a layer, a config, …) of the
//! repository of IMAGE, verifying its digest and, when the manifest names it, its length while
//! it streams, as `crane blob` does but never handing out unverified bytes as if they were good:
//!
//! - with `-o FILE`, bytes go to a temporary file in FILE's directory, which takes FILE's name
//!   only once the whole blob is verified; a blob that fails verification leaves nothing. An
//!   existing FILE is never replaced unless `--force` is given (checked before downloading and
//!   again, without a race, when the file is put in place);
//! - without `-o`, bytes go to standard output, which must not be a terminal. The last piece is
//!   held back until verification passes, so a reader of a corrupted blob sees it cut short
//!   (and the exit code is 2), never whole.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{human_size, parse_image, print_stdout, write_stdout, ToolboxError};
use crate::digest::Digest;
use crate::error::{exit_code, Error};
use crate::image::{select_platform, Descriptor, ParsedManifest, Platform};
use crate::output_file;
use crate::reference::{Reference, ReferenceError};
use crate::registry::RegistryClient;

/// Arguments of `layerscope blob`.
#[derive(Debug, Clone, Args)]
pub struct BlobArgs {
    /// The image whose repository holds the blob: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The blob's digest, `sha256:…` (see `layerscope manifest IMAGE`).
    #[arg(value_name = "DIGEST")]
    pub digest: String,

    /// Write the blob to FILE (placed only once verified) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,

    /// Platform whose manifest is searched for the blob's size, in an index:
    /// OS/ARCH[/VARIANT] (default: linux and this machine's architecture).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

impl BlobArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.image)?.registry])
    }
}

/// Where the bytes go.
enum Destination {
    Stdout,
    File(PathBuf),
}

/// Run `layerscope blob`.
pub async fn run(client: &RegistryClient, args: &BlobArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.image)?;
    let digest: Digest = args
        .digest
        .parse()
        .map_err(
            |e: crate::digest::DigestParseError| ReferenceError::InvalidDigest {
                digest: args.digest.clone(),
                why: e.to_string(),
            },
        )?;
    // Refuse before any download.
    let destination = match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            check_target(path, args.force)?;
            Destination::File(path.clone())
        }
        _ => {
            if std::io::stdout().is_terminal() {
                return Err(ToolboxError::TerminalOutput.into());
            }
            Destination::Stdout
        }
    };
    let descriptor = find_descriptor(client, &reference, &digest, args.platform.as_ref()).await?;
    let size = descriptor.as_ref().map(|d| d.size);
    match destination {
        Destination::Stdout => {
            to_stdout(client, &reference, &digest, size).await?;
        }
        Destination::File(path) => {
            let written = to_file(client, &reference, &digest, size, &path, args.force).await?;
            let mut line = format!("Wrote {digest} to {} ", path.display());
            let checks = if size.is_some() {
                "digest and length verified"
            } else {
                "digest verified"
            };
            let size = if written < 1000 {
                format!("{written} bytes")
            } else {
                format!("{written} bytes, {}", human_size(written))
            };
            let _ = writeln!(line, "({size}; {checks})");
            print_stdout(&line)?;
        }
    }
    Ok(exit_code::OK)
}

/// Refuse a target that is a directory, or that exists without `--force`.
fn check_target(path: &Path, force: bool) -> Result<(), ToolboxError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ToolboxError::OutputIsDirectory {
            path: path.to_path_buf(),
        }),
        Ok(_) if !force => Err(ToolboxError::OutputExists {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// The descriptor that names `digest` in the manifest of `reference` (its config or a layer),
/// or, for an index, among its entries and then in the platform's manifest. `None` when no
/// manifest names it: the blob is still verified against its digest, only not its length.
pub async fn find_descriptor(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    platform: Option<&Platform>,
) -> Result<Option<Descriptor>, Error> {
    let top = client.fetch_manifest(reference).await?;
    let child = match &top.parsed {
        ParsedManifest::Image(manifest) => return Ok(find_in_image(manifest, digest)),
        ParsedManifest::Index(index) => {
            if let Some(entry) = index.manifests.iter().find(|d| &d.digest == digest) {
                return Ok(Some(entry.clone()));
            }
            let wanted = platform.cloned().unwrap_or_else(Platform::host_default);
            match select_platform(index, &wanted) {
                Ok(entry) => entry.digest.clone(),
                // The platform is only a place to look; the blob may still exist.
                Err(_) => return Ok(None),
            }
        }
    };
    let fetched = client
        .fetch_manifest_by(reference, &child.to_string())
        .await?;
    Ok(match &fetched.parsed {
        ParsedManifest::Image(manifest) => find_in_image(manifest, digest),
        ParsedManifest::Index(_) => None,
    })
}

fn find_in_image(manifest: &crate::image::ImageManifest, digest: &Digest) -> Option<Descriptor> {
    std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .find(|d| &d.digest == digest)
        .cloned()
}

/// Stream to standard output, holding the last piece back until the blob is verified.
async fn to_stdout(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    size: Option<u64>,
) -> Result<(), Error> {
    let mut stream = client.blob_stream(reference, digest, size).await?;
    let mut held: Option<Bytes> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(previous) = held.replace(chunk) {
            write_stdout(&previous)?;
        }
    }
    // The stream ended cleanly: every byte matched.
    if let Some(last) = held {
        write_stdout(&last)?;
    }
    Ok(())
}

/// A temporary file that is removed unless it was put in place.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Stream into a temporary file beside `path`, then give it `path`'s name once verified.
/// Returns the bytes written.
async fn to_file(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    size: Option<u64>,
    path: &Path,
    force: bool,
) -> Result<u64, Error> {
    let temp = TempFile {
        path: output_file::temp_beside(path),
        keep: false,
    };
    let write_error = |e| Error::io(format!("writing {}", path.display()), e);
    // Listening before the file exists, so no signal can leave it behind.
    let mut interrupts = Interrupts::listen()?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .await
        .map_err(write_error)?;
    let mut stream = client.blob_stream(reference, digest, size).await?;
    let mut written = 0u64;
    loop {
        // Ctrl-C ends the download like a failure, so the guard removes the partial file.
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            () = interrupts.next() => return Err(ToolboxError::Interrupted.into()),
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(write_error)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(write_error)?;
    file.sync_all().await.map_err(write_error)?;
    drop(file);
    place(&temp.path, path, force)?;
    // `place` moved or linked it; a linked temporary name is removed by the guard.
    Ok(written)
}

/// SIGINT (Ctrl-C) and SIGTERM, caught while a partial file exists.
pub(crate) struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Start catching the signals (at once, not on first poll).
    pub(crate) fn listen() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen_error = |e| Error::io("listening for Ctrl-C", e);
            Ok(Interrupts {
                int: signal(SignalKind::interrupt()).map_err(listen_error)?,
                term: signal(SignalKind::terminate()).map_err(listen_error)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupts {})
    }

    /// Wait for the next signal.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Give the verified temporary file its final name: replacing only with `force`, and otherwise
/// with a hard link, which fails if the name was taken meanwhile (no check-then-write race).
pub(crate) fn place(temp: &Path, path: &Path, force: bool) -> Result<(), Error> {
    let place_error = |e| Error::io(format!("writing {}", path.display()), e);
    if force {
        return output_file::replace_with(temp, path).map_err(place_error);
    }
    match std::fs::hard_link(temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(ToolboxError::OutputExists {
                path: path.to_path_buf(),
            }
            .into())
        }
        // Filesystems without hard links: check, then rename.
        Err(_) => {
            if path.exists() {
                return Err(ToolboxError::OutputExists {
                    path: path.to_path_buf(),
                }
                .into());
            }
            std::fs::rename(temp, path).map_err(place_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placing_never_replaces_without_force() {
        let dir = std::env::temp_dir().join(format!("layerscope-place-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let temp = dir.join("t");
        let target = dir.join("out");
        std::fs::write(&temp, b"new").expect("temp");
        std::fs::write(&target, b"old").expect("target");
        let err = place(&temp, &target, false).expect_err("refused");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
        place(&temp, &target, true).expect("forced");
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        assert!(check_target(&dir, true).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
