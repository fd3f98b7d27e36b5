//! What the local sources share: reading an image's metadata from a layout's files, wherever
//! those files are (a directory, a tar on disk, an export streaming from an engine), and
//! building the same [`ImageInfo`] a registry pull gives.

use std::path::PathBuf;

use tokio::sync::OnceCell;

use super::store::{hash_place, stream_place, LayoutFiles};
use super::LayerStream;
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo, Platform};
use crate::layer::{sniff, Compression};

/// Metadata files (manifests, configs, indexes) larger than this are refused.
pub const METADATA_LIMIT: u64 = 16 * 1024 * 1024;

/// A layer file as a layout holds it.
#[derive(Clone, Debug)]
pub struct LayerFile {
    /// Its size in bytes.
    pub size: u64,
    /// The compression its first bytes show.
    pub compression: Compression,
    /// The digest of its bytes, when the layout already computed it (an engine export is
    /// hashed as it streams); `None` for files on disk.
    pub digest: Option<Digest>,
}

/// Read access to a layout's files by their path inside it.
pub trait LayoutRead {
    /// The layout, for messages.
    fn location(&self) -> String;
    /// Whether a file exists.
    fn exists(&self, path: &str) -> bool;
    /// A metadata file, whole.
    fn read_small(&self, path: &str) -> Result<Vec<u8>, Error>;
    /// The facts of a layer file.
    fn layer_file(&self, path: &str) -> Result<LayerFile, Error>;
    /// The sha256 digest of a file, by reading it (for layers whose name states none).
    fn hash(&self, path: &str) -> Result<Digest, Error>;
}

/// One layer of a described image: where its blob is and what to check it against.
#[derive(Clone, Debug)]
pub struct LayerPlace {
    /// The file inside the layout.
    pub path: String,
    /// The digest its bytes must have while they stream (`None` when the indexer's diff_id
    /// check already covers every byte: an uncompressed layer's blob is its tar).
    pub verify: Option<Digest>,
}

/// An image found in a layout.
#[derive(Clone, Debug)]
pub struct Described {
    /// The model every source gives.
    pub info: ImageInfo,
    /// The layers' files, in the order of `info.layers`.
    pub places: Vec<LayerPlace>,
    /// The platform an index entry chose (not the config's own), as
    /// [`crate::image::ImageParts::platform`].
    pub index_platform: Option<Platform>,
}

/// Which image of a layout to read.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// A tag or name (`app:v1`, `v1`) or, for docker archives, `@N` (the N-th image).
    pub name: Option<String>,
    /// The platform asked for with `--platform`.
    pub platform: Option<Platform>,
}

/// Find the image in a layout: an OCI layout (`index.json`, which Docker 25+ archives hold
/// beside `manifest.json`) when there is one, else a `docker save` `manifest.json`.
pub fn describe(files: &dyn LayoutRead, choice: &Choice) -> Result<Described, Error> {
    if files.exists("index.json") {
        super::oci_layout::describe_oci(files, choice)
    } else if files.exists("manifest.json") {
        super::docker_archive::describe_docker(files, choice)
    } else {
        Err(Error::Archive {
            path: files.location(),
            detail: "neither an OCI layout (index.json) nor a docker archive (manifest.json)"
                .to_string(),
        })
    }
}

/// The digest a file's name states: `blobs/ALG/HEX`, `HEX.tar`, `HEX.json` or `HEX`.
pub fn digest_in_name(path: &str) -> Option<Digest> {
    let mut parts = path.rsplit('/');
    let last = parts.next()?;
    if let Some(alg) = parts.next().filter(|_| path.starts_with("blobs/")) {
        return format!("{alg}:{last}").parse().ok();
    }
    let stem = last
        .strip_suffix(".tar")
        .or_else(|| last.strip_suffix(".json"))
        .unwrap_or(last);
    format!("sha256:{stem}").parse().ok()
}

/// Read a metadata file and check it against `digest` (and `size` when known).
pub fn read_verified(
    files: &dyn LayoutRead,
    path: &str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Vec<u8>, Error> {
    let bytes = files.read_small(path)?;
    let mut verifier = crate::digest::Verifier::new(digest, size);
    let checked = verifier.update(&bytes).and_then(|()| verifier.finish());
    checked.map_err(|source| Error::Blob {
        origin: format!("{} ({path})", files.location()),
        digest: digest.clone(),
        source,
    })?;
    Ok(bytes)
}

impl LayoutRead for LayoutFiles {
    fn location(&self) -> String {
        LayoutFiles::location(self).display().to_string()
    }

    fn exists(&self, path: &str) -> bool {
        LayoutFiles::exists(self, path)
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>, Error> {
        LayoutFiles::read_small(self, path, METADATA_LIMIT)
    }

    fn layer_file(&self, path: &str) -> Result<LayerFile, Error> {
        let place = self.place(path)?;
        Ok(LayerFile {
            size: place.size,
            compression: sniff(&self.head(path, 4)?),
            digest: None,
        })
    }

    fn hash(&self, path: &str) -> Result<Digest, Error> {
        hash_place(&self.place(path)?)
    }
}

/// Which kind of local layout a [`LocalSource`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalKind {
    /// `docker save` / skopeo docker-archive tar (Docker 25+ ones hold an OCI layout too).
    DockerArchive,
    /// An OCI layout directory.
    OciDir,
    /// A tar of an OCI layout.
    OciArchive,
}

/// An image in a local archive or layout. The tar is scanned and the image described once,
/// on first use; layers then stream straight from their byte ranges.
pub struct LocalSource {
    kind: LocalKind,
    path: PathBuf,
    choice: Choice,
    state: OnceCell<(LayoutFiles, Described)>,
}

impl LocalSource {
    /// Read the image `choice` names from the layout at `path`.
    pub fn new(kind: LocalKind, path: PathBuf, choice: Choice) -> Self {
        LocalSource {
            kind,
            path,
            choice,
            state: OnceCell::new(),
        }
    }

    /// Which kind of layout this is.
    pub fn kind(&self) -> LocalKind {
        self.kind
    }

    async fn ready(&self) -> Result<&(LayoutFiles, Described), Error> {
        self.state
            .get_or_try_init(|| {
                let (kind, path, choice) = (self.kind, self.path.clone(), self.choice.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        let files = match kind {
                            LocalKind::OciDir => {
                                if !path.is_dir() {
                                    return Err(Error::Archive {
                                        path: path.display().to_string(),
                                        detail: "not a directory".to_string(),
                                    });
                                }
                                LayoutFiles::Dir(path)
                            }
                            LocalKind::DockerArchive | LocalKind::OciArchive => {
                                LayoutFiles::scan_tar(&path)?
                            }
                        };
                        let described = match kind {
                            LocalKind::DockerArchive => describe(&files, &choice)?,
                            LocalKind::OciDir | LocalKind::OciArchive => {
                                super::oci_layout::describe_oci(&files, &choice)?
                            }
                        };
                        Ok((files, described))
                    })
                    .await
                    .map_err(|e| Error::Other(format!("reading the layout failed: {e}")))?
                }
            })
            .await
    }

    pub(super) async fn resolve(&self) -> Result<ImageInfo, Error> {
        Ok(self.ready().await?.1.info.clone())
    }

    pub(super) async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        let (files, described) = self.ready().await?;
        let place = described
            .info
            .layers
            .iter()
            .position(|l| l.digest == layer.digest)
            .and_then(|i| described.places.get(i))
            .ok_or_else(|| Error::Archive {
                path: self.path.display().to_string(),
                detail: format!("no layer {} in this image", layer.digest),
            })?;
        Ok(stream_place(
            files.place(&place.path)?,
            place.verify.clone(),
        ))
    }

    pub(super) fn describe(&self) -> String {
        let what = match self.kind {
            LocalKind::DockerArchive => "docker archive",
            LocalKind::OciDir => "OCI layout",
            LocalKind::OciArchive => "OCI archive",
        };
        format!("{what} {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_from_the_names_tools_write() {
        let hex = "da40ead1a851e13f18f92316a70b7178e4df86e15b6d092dfaabdd912ad1befb";
        let want = format!("sha256:{hex}");
        for path in [
            format!("blobs/sha256/{hex}"),
            format!("{hex}.tar"),
            format!("{hex}.json"),
        ] {
            assert_eq!(
                digest_in_name(&path).map(|d| d.to_string()),
                Some(want.clone())
            );
        }
        assert_eq!(digest_in_name(&format!("{hex}/layer.tar")), None);
        assert_eq!(digest_in_name("manifest.json"), None);
    }
}
