//! Images pulled from a registry over its HTTP API.

use futures_util::StreamExt;

use super::LayerStream;
use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo, Platform};
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// A reference to resolve through a registry client.
pub struct RegistrySource {
    client: RegistryClient,
    reference: Reference,
    platform: Option<Platform>,
}

impl RegistrySource {
    /// Pull `reference` with `client`; `platform` chooses from an index (default: the host's).
    pub fn new(client: RegistryClient, reference: Reference, platform: Option<Platform>) -> Self {
        RegistrySource {
            client,
            reference,
            platform,
        }
    }

    /// The reference being pulled.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    pub(super) async fn resolve(&self) -> Result<ImageInfo, Error> {
        Ok(self
            .client
            .resolve(&self.reference, self.platform.as_ref())
            .await?)
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
