//! Every kind of input gives the same face: resolve to an [`ImageInfo`] (manifest, config,
//! history), then one verified byte stream per layer. The pipeline knows nothing else about
//! where bytes come from.

pub mod registry;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo};

pub use registry::RegistrySource;

/// The compressed bytes of one layer blob, verified against its digest and size as they flow:
/// a mismatch arrives as the stream's last item, an `Err`.
pub type LayerStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// Where an image comes from.
pub enum Source {
    /// A registry over its HTTP API.
    Registry(RegistrySource),
}

impl Source {
    /// Fetch the manifest (choosing a platform from an index) and the config.
    pub async fn resolve(&self) -> Result<ImageInfo, Error> {
        match self {
            Source::Registry(s) => s.resolve().await,
        }
    }

    /// Open the blob of `layer` as a verified stream.
    pub async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        match self {
            Source::Registry(s) => s.open_layer(layer).await,
        }
    }

    /// Which source this is, for messages ("registry 127.0.0.1:5000").
    pub fn describe(&self) -> String {
        match self {
            Source::Registry(s) => s.describe(),
        }
    }
}
