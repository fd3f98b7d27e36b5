//! Images pulled from a registry over its HTTP API.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::LayerStream;
use crate::cache::Cache;
use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo, Platform};
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// A reference to resolve through a registry client.
pub struct RegistrySource {
    client: RegistryClient,
    reference: Reference,
    platform: Option<Platform>,
    /// The first resolution, reused: the command line resolves once to decide the source
    /// (see the fallback to a local engine), the pipeline again.
    resolved: OnceCell<ImageInfo>,
}

impl RegistrySource {
    /// Pull `reference` with `client`; `platform` chooses from an index (default: the host's).
    pub fn new(client: RegistryClient, reference: Reference, platform: Option<Platform>) -> Self {
        RegistrySource {
            client,
            reference,
            platform,
            resolved: OnceCell::new(),
        }
    }

    /// The reference being pulled.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    pub(super) async fn resolve(&self, cache: Option<&Arc<Cache>>) -> Result<ImageInfo, Error> {
        let info = self
            .resolved
            .get_or_try_init(|| async {
                self.client
                    .resolve_with_cache(
                        &self.reference,
                        self.platform.as_ref(),
                        cache.map(|c| c.as_ref()),
                    )
                    .await
            })
            .await?;
        Ok(info.clone())
    }

    pub(super) async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        let stream = self
            .client
            .blob_stream(&self.reference, &layer.digest, Some(layer.compressed_size))
            .await?;
        Ok(Box::pin(stream.map(|chunk| chunk.map_err(Error::from))))
    }

    pub(super) fn describe(&self) -> String {
        format!("registry {}", self.reference.registry)
    }
}
