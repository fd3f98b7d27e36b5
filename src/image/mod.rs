//! The image as specs describe it: manifests, indexes, platforms, the config and its history.
//! Every source (registry, archive, layout, daemon) resolves a reference to an [`ImageInfo`].

pub mod config;
pub mod manifest;
pub mod platform;

pub use config::{
    align_history, clean_created_by, config_too_large, HistoryEntry, HistoryStep, ImageConfig,
    MAX_CONFIG_BYTES,
};
pub use manifest::{
    media_type, Descriptor, ImageIndex, ImageManifest, ManifestError, ParsedManifest,
};
pub use platform::{select_platform, NoMatchingPlatform, Platform};

use crate::digest::Digest;

/// One layer as the manifest and config describe it, before any byte of it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Position, base layer first.
    pub index: usize,
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar, from `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Media type from the manifest.
    pub media_type: String,
    /// Blob size in bytes, from the manifest.
    pub compressed_size: u64,
}

/// A resolved image: everything known once the manifest and config have arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// The reference in full, normalised form (`docker.io/library/alpine:latest`).
    pub reference: String,
    /// Digest of the manifest bytes (of the index when the reference named an index, as
    /// `docker pull` prints it; see `manifest_digest` for the platform manifest itself).
    pub digest: Digest,
    /// Digest of the single-platform manifest.
    pub manifest_digest: Digest,
    /// Media type of the single-platform manifest.
    pub media_type: String,
    /// The platform chosen, from the index entry or else the config.
    pub platform: Option<Platform>,
    /// The manifest bytes exactly as served (the digest is over them).
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// The config bytes exactly as served.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
    /// Layers, base first, with diff_ids paired in.
    pub layers: Vec<LayerInfo>,
    /// History aligned with the layers.
    pub history: Vec<HistoryStep>,
}

/// What a source has read of an image before it becomes an [`ImageInfo`]: the manifest and
/// the config bytes, and where they came from.
pub struct ImageParts {
    /// The reference to show.
    pub reference: String,
    /// The digest of what the reference named (an index or the manifest).
    pub digest: Digest,
    /// The digest of the manifest itself.
    pub manifest_digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest bytes.
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// The config bytes (verified against the manifest).
    pub config_bytes: Vec<u8>,
    /// The platform an index entry stated.
    pub platform: Option<Platform>,
}

/// Why an image's parts do not make an [`ImageInfo`].
#[derive(Debug, Clone, PartialEq)]
pub enum AssembleError {
    /// The config blob is not a valid image config.
    Config(String),
    /// The manifest and config disagree about the layers.
    LayerCount(LayerCountMismatch),
    /// A single-platform image is not the platform asked for.
    Platform(NoMatchingPlatform),
}

impl ImageInfo {
    /// Build the image every source resolves to: config parsed, layers paired with their
    /// diff_ids, history aligned, and a single-platform image checked against `wanted` (as
    /// `docker pull --platform` does); the platform is the index entry's, else the config's.
    pub fn assemble(parts: ImageParts, wanted: Option<&Platform>) -> Result<Self, AssembleError> {
        if let Some(refused) = config_too_large(parts.config_bytes.len() as u64) {
            return Err(AssembleError::Config(refused));
        }
        let config = ImageConfig::parse(&parts.config_bytes)
            .map_err(|e| AssembleError::Config(e.to_string()))?;
        let layers = layer_infos(&parts.manifest, &config).map_err(AssembleError::LayerCount)?;
        let history = align_history(&config.history, layers.len());
        let declared = config_platform(&config);
        if let (None, Some(wanted), Some(actual)) = (&parts.platform, wanted, &declared) {
            if !wanted.accepts(actual) {
                return Err(AssembleError::Platform(NoMatchingPlatform {
                    wanted: wanted.clone(),
                    available: vec![actual.clone()],
                }));
            }
        }
        Ok(ImageInfo {
            reference: parts.reference,
            digest: parts.digest,
            manifest_digest: parts.manifest_digest,
            media_type: parts.media_type,
            platform: parts.platform.or(declared),
            manifest_bytes: parts.manifest_bytes,
            manifest: parts.manifest,
            config_bytes: parts.config_bytes,
            config,
            layers,
            history,
        })
    }
}

/// The manifest and config disagree about the layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCountMismatch {
    /// Layers in the manifest.
    pub manifest_layers: usize,
    /// diff_ids in the config.
    pub diff_ids: usize,
}

impl std::fmt::Display for LayerCountMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the manifest lists {} layers but the config has {} diff_ids",
            self.manifest_layers, self.diff_ids
        )
    }
}

impl std::error::Error for LayerCountMismatch {}

/// Pair manifest layers with config diff_ids.
pub fn layer_infos(
    manifest: &ImageManifest,
    config: &ImageConfig,
) -> Result<Vec<LayerInfo>, LayerCountMismatch> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(LayerCountMismatch {
            manifest_layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .enumerate()
        .map(|(index, (d, diff_id))| LayerInfo {
            index,
            digest: d.digest.clone(),
            diff_id: diff_id.clone(),
            media_type: d.media_type.clone(),
            compressed_size: d.size,
        })
        .collect())
}

/// The platform an image config declares.
pub fn config_platform(config: &ImageConfig) -> Option<Platform> {
    if config.os.is_empty() || config.architecture.is_empty() {
        return None;
    }
    Some(Platform::new(
        &config.os,
        &config.architecture,
        config.variant.as_deref(),
    ))
}
