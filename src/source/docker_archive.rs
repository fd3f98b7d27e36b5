//! `docker save` archives and the docker-archive format skopeo writes: `manifest.json` lists,
//! per image, its config file, its tags and its layer files, which may be `<id>/layer.tar`
//! (classic), symbolic links to a shared layer (several images, or skopeo), `<diff_id>.tar`
//! (skopeo) or `blobs/sha256/<digest>` (Docker 25+, whose archives also hold an OCI layout:
//! that one is read when present, see [`super::layout::describe`]).
//!
//! The archive has no registry manifest, so one is built from what it does hold (config
//! descriptor, layer digests, sizes and compression), giving the pipeline the same model as a
//! pull. Layer digests come from the file name when it states one (checked as the layer
//! streams), from the diff_id when the layer is an uncompressed tar (the indexer checks it),
//! and otherwise from hashing the file once.

use serde::Deserialize;

use super::layout::{digest_in_name, read_verified, Choice, Described, LayerPlace, LayoutRead};
use super::store::normalise;
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{
    media_type, Descriptor, ImageConfig, ImageInfo, ImageManifest, ImageParts, LayerCountMismatch,
};
use crate::layer::Compression;
use crate::reference::Reference;

/// Media type of an uncompressed Docker layer.
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Media type of a zstd Docker layer.
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

impl ArchiveImage {
    fn tags(&self) -> &[String] {
        self.repo_tags.as_deref().unwrap_or(&[])
    }
}

/// Whether `tag` (as an archive records it) is the name the user gave.
pub fn same_name(tag: &str, wanted: &str) -> bool {
    if tag == wanted {
        return true;
    }
    match (tag.parse::<Reference>(), wanted.parse::<Reference>()) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

fn choose(images: &[ArchiveImage], choice: &Choice, location: &str) -> Result<usize, Error> {
    let listing = || -> Vec<String> {
        images
            .iter()
            .enumerate()
            .map(|(i, img)| match img.tags() {
                [] => format!("@{i} (untagged)"),
                tags => tags.join(" "),
            })
            .collect()
    };
    let Some(name) = choice.name.as_deref() else {
        if images.len() == 1 {
            return Ok(0);
        }
        return Err(Error::Ambiguous {
            what: format!("archive {location}"),
            available: listing(),
            hint: "choose one with docker-archive:PATH:NAME:TAG or docker-archive:PATH:@N"
                .to_string(),
        });
    };
    if let Some(n) = name.strip_prefix('@') {
        return n
            .parse::<usize>()
            .ok()
            .filter(|&n| n < images.len())
            .ok_or_else(|| Error::Archive {
                path: location.to_string(),
                detail: format!(
                    "no image @{n}: the archive holds {} (@0 to @{})",
                    images.len(),
                    images.len().saturating_sub(1)
                ),
            });
    }
    images
        .iter()
        .position(|img| img.tags().iter().any(|t| same_name(t, name)))
        .ok_or_else(|| Error::Archive {
            path: location.to_string(),
            detail: format!("no image named {name}; it holds: {}", listing().join(", ")),
        })
}

fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => DOCKER_LAYER_TAR,
        Compression::Gzip => media_type::DOCKER_LAYER_GZIP,
        Compression::Zstd => DOCKER_LAYER_ZSTD,
    }
}

/// Describe the chosen image of a `manifest.json` archive.
pub fn describe_docker(files: &dyn LayoutRead, choice: &Choice) -> Result<Described, Error> {
    let location = files.location();
    let bad = |detail: String| Error::Archive {
        path: location.clone(),
        detail,
    };
    let bytes = files.read_small("manifest.json")?;
    let images: Vec<ArchiveImage> = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "manifest.json is not a docker archive manifest ({e})"
        ))
    })?;
    if images.is_empty() {
        return Err(bad("manifest.json lists no image".to_string()));
    }
    let chosen = &images[choose(&images, choice, &location)?];

    let config_path = normalise(&chosen.config);
    let config_bytes = match digest_in_name(&config_path) {
        Some(digest) => read_verified(files, &config_path, &digest, None)?,
        None => files.read_small(&config_path)?,
    };
    let config_digest = Digest::sha256_of(&config_bytes);
    let config = ImageConfig::parse(&config_bytes).map_err(|e| Error::Config(e.to_string()))?;
    if chosen.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::LayerCount(LayerCountMismatch {
            manifest_layers: chosen.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }));
    }

    let mut descriptors = Vec::with_capacity(chosen.layers.len());
    let mut places = Vec::with_capacity(chosen.layers.len());
    for (path, diff_id) in chosen.layers.iter().zip(&config.rootfs.diff_ids) {
        let path = normalise(path);
        let file = files.layer_file(&path)?;
        let named = digest_in_name(&path);
        let (digest, verify) = match (file.digest, named) {
            (Some(computed), Some(named)) if computed != named => {
                return Err(bad(format!(
                    "{path} holds bytes with digest {computed}, not the {named} its name states"
                )))
            }
            // Already hashed while it streamed from an engine.
            (Some(computed), _) => (computed, None),
            // The blob is the tar itself: the indexer's diff_id check covers every byte.
            (None, _) if file.compression == Compression::None => (diff_id.clone(), None),
            (None, Some(named)) => (named.clone(), Some(named)),
            (None, None) => {
                let computed = files.hash(&path)?;
                (computed.clone(), Some(computed))
            }
        };
        descriptors.push(Descriptor {
            media_type: layer_media_type(file.compression).to_string(),
            digest,
            size: file.size,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        });
        places.push(LayerPlace { path, verify });
    }

    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_type::DOCKER_MANIFEST.to_string()),
        config: Descriptor {
            media_type: media_type::DOCKER_CONFIG.to_string(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        },
        layers: descriptors,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Other(format!("writing the archive's manifest: {e}")))?;
    let manifest_digest = Digest::sha256_of(&manifest_bytes);
    let reference = match (&choice.name, chosen.tags().first()) {
        (Some(name), _) if !name.starts_with('@') => name.clone(),
        (_, Some(tag)) => tag.clone(),
        _ => location.clone(),
    };
    let info = ImageInfo::assemble(
        ImageParts {
            reference,
            digest: manifest_digest.clone(),
            manifest_digest,
            media_type: media_type::DOCKER_MANIFEST.to_string(),
            manifest_bytes,
            manifest,
            config_bytes,
            platform: None,
        },
        choice.platform.as_ref(),
    )?;
    Ok(Described {
        info,
        places,
        index_platform: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_short_and_full_form() {
        assert!(same_name("app:v1", "app:v1"));
        assert!(same_name("docker.io/library/app:v1", "app:v1"));
        assert!(same_name("app:latest", "app"));
        assert!(!same_name("app:v1", "app:v2"));
        assert!(!same_name("other/app:v1", "app:v1"));
    }
}
