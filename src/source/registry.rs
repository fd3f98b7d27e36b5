//! Images pulled from a registry over its HTTP API; Docker Hub images from a registry mirror
//! first when mirrors are configured, falling back to Docker Hub when no mirror serves them.

use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::LayerStream;
use crate::cache::Cache;
use crate::error::Error;
use crate::escape::escape_str;
use crate::image::{ImageInfo, LayerInfo, Platform};
use crate::reference::Reference;
use crate::registry::{Mirror, RegistryClient, RegistryError};

/// A reference to resolve through a registry client.
pub struct RegistrySource {
    client: RegistryClient,
    reference: Reference,
    platform: Option<Platform>,
    /// Mirrors to ask before Docker Hub (only for Docker Hub references).
    mirrors: Vec<Mirror>,
    /// The first resolution, reused: the command line resolves once to decide the source
    /// (see the fallback to a local engine), the pipeline again.
    resolved: OnceCell<ImageInfo>,
    /// The reference the image was read from: a mirror's, once one served it.
    served_by: OnceLock<Reference>,
    /// Where the image came from, when mirrors were involved.
    notice: OnceLock<String>,
}

impl RegistrySource {
    /// Pull `reference` with `client`; `platform` chooses from an index (default: the host's).
    pub fn new(client: RegistryClient, reference: Reference, platform: Option<Platform>) -> Self {
        RegistrySource {
            client,
            reference,
            platform,
            mirrors: Vec::new(),
            resolved: OnceCell::new(),
            served_by: OnceLock::new(),
            notice: OnceLock::new(),
        }
    }

    /// Ask `mirrors`, in order, before Docker Hub; ignored unless the reference is a Docker
    /// Hub image. The image keeps its Docker Hub name; digests are verified as always, so a
    /// mirror can only serve the image the tag names there, or fail.
    pub fn with_mirrors(mut self, mirrors: Vec<Mirror>) -> Self {
        if self.reference.is_docker_hub() {
            self.mirrors = mirrors;
        }
        self
    }

    /// The reference being pulled.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Which registry served the image ("read from the registry mirror …"), when mirrors were
    /// asked; known once resolved.
    pub fn notice(&self) -> Option<&str> {
        self.notice.get().map(String::as_str)
    }

    pub(super) async fn resolve(&self, cache: Option<&Arc<Cache>>) -> Result<ImageInfo, Error> {
        let info = self
            .resolved
            .get_or_try_init(|| self.resolve_from_mirrors_or_origin(cache))
            .await?;
        Ok(info.clone())
    }

    async fn resolve_from(
        &self,
        reference: &Reference,
        cache: Option<&Arc<Cache>>,
    ) -> Result<ImageInfo, RegistryError> {
        self.client
            .resolve_with_cache(reference, self.platform.as_ref(), cache.map(|c| c.as_ref()))
            .await
    }

    /// Each mirror in turn, then the reference's own registry. Any failure of a mirror (it
    /// lacks the image, is down, refuses) moves on, as Docker does; the first answer wins.
    async fn resolve_from_mirrors_or_origin(
        &self,
        cache: Option<&Arc<Cache>>,
    ) -> Result<ImageInfo, RegistryError> {
        let mut tried = Vec::new();
        for mirror in &self.mirrors {
            let on_mirror = mirror.reference_for(&self.reference);
            match self.resolve_from(&on_mirror, cache).await {
                Ok(mut info) => {
                    // The image keeps the name it was asked for.
                    info.reference = self.reference.to_string();
                    let _ = self.served_by.set(on_mirror);
                    tried.push(format!("read from the registry mirror {}", mirror.url()));
                    let _ = self.notice.set(tried.join("; "));
                    return Ok(info);
                }
                Err(e) => tried.push(mirror_failure(mirror, &e)),
            }
        }
        match self.resolve_from(&self.reference, cache).await {
            Ok(info) => {
                if !tried.is_empty() {
                    tried.push("read from Docker Hub".to_string());
                    let _ = self.notice.set(tried.join("; "));
                }
                Ok(info)
            }
            Err(error) if !tried.is_empty() => Err(RegistryError::AfterMirrors {
                error: Box::new(error),
                mirrors: tried.join("; "),
            }),
            Err(error) => Err(error),
        }
    }

    /// The reference blobs are read from: the mirror that served the manifest, else the image's.
    fn origin(&self) -> &Reference {
        self.served_by.get().unwrap_or(&self.reference)
    }

    pub(super) async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        let stream = self
            .client
            .blob_stream(self.origin(), &layer.digest, Some(layer.compressed_size))
            .await?;
        Ok(Box::pin(stream.map(|chunk| chunk.map_err(Error::from))))
    }

    pub(super) fn describe(&self) -> String {
        format!("registry {}", self.origin().registry)
    }
}

/// What a mirror did instead of serving the image, a clause for the notice or the error.
fn mirror_failure(mirror: &Mirror, error: &RegistryError) -> String {
    match error {
        RegistryError::ManifestUnknown { .. } | RegistryError::RepositoryUnknown { .. } => {
            format!("the registry mirror {} does not have it", mirror.url())
        }
        // The registry's words may hold anything: escaped for the terminal.
        other => format!(
            "the registry mirror {} failed ({})",
            mirror.url(),
            escape_str(&other.to_string())
        ),
    }
}
