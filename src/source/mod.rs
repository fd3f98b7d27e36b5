//! Every kind of input gives the same face: resolve to an [`ImageInfo`] (manifest, config,
//! history), then one verified byte stream per layer. The pipeline knows nothing else about
//! where bytes come from.
//!
//! Kinds: a registry ([`registry`]), a `docker save` / skopeo archive ([`docker_archive`]), an
//! OCI layout or its tar ([`oci_layout`]), and a local Docker or Podman engine ([`daemon`]).
//! [`Source::with_cache`] puts the on-disk [`Cache`] in front of any of them.

pub mod daemon;
pub mod docker_archive;
pub mod fallback;
pub mod layout;
pub mod oci_layout;
pub mod registry;
pub mod spec;
pub mod store;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::cache::Cache;
use crate::digest::Verifier;
use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo};
use crate::layer::LayerIndex;

pub use daemon::{DaemonSource, Engine};
pub use fallback::RegistryOrEngine;
pub use layout::{Choice, LocalKind, LocalSource};
pub use registry::RegistrySource;
pub use spec::{SourceKind, SourceSpec};

/// The compressed bytes of one layer blob, verified against its digest and size as they flow:
/// a mismatch arrives as the stream's last item, an `Err`.
pub type LayerStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// Where an image comes from.
pub enum Source {
    /// A registry over its HTTP API.
    Registry(RegistrySource),
    /// A docker archive, an OCI layout directory or an OCI archive on disk.
    Local(LocalSource),
    /// A local Docker Engine or Podman, through its image export.
    Daemon(DaemonSource),
    /// A bare name: the registry, or the local engine when the registry lacks the image.
    RegistryOrEngine(RegistryOrEngine),
    /// Another source with the on-disk cache in front of it.
    Cached {
        /// The source the data comes from when the cache has none.
        inner: Box<Source>,
        /// The cache.
        cache: Arc<Cache>,
    },
}

impl Source {
    /// Put `cache` in front of this source: configs, layer blobs (from sources whose blobs
    /// are not already local files) and layer indexes are kept there and served from there.
    pub fn with_cache(self, cache: Arc<Cache>) -> Source {
        match self {
            Source::Cached { inner, .. } => Source::Cached { inner, cache },
            other => Source::Cached {
                inner: Box::new(other),
                cache,
            },
        }
    }

    /// The cache in front of this source, if any.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        match self {
            Source::Cached { cache, .. } => Some(cache),
            Source::RegistryOrEngine(s) => s.current().cache(),
            _ => None,
        }
    }

    /// What the user should be told about where the image came from (a bare name read from
    /// the local engine, a Docker Hub image read from a mirror), once resolved.
    pub fn notice(&self) -> Option<&str> {
        match self {
            Source::RegistryOrEngine(s) => s.notice(),
            Source::Registry(s) => s.notice(),
            Source::Cached { inner, .. } => inner.notice(),
            _ => None,
        }
    }

    /// The source without its cache.
    fn origin(&self) -> &Source {
        match self {
            Source::Cached { inner, .. } => inner.origin(),
            Source::RegistryOrEngine(s) => s.current().origin(),
            other => other,
        }
    }

    /// Whether layer blobs are worth copying into the cache: they are for a registry or an
    /// engine; an archive or layout already is a local file.
    pub fn caches_blobs(&self) -> bool {
        matches!(self.origin(), Source::Registry(_) | Source::Daemon(_))
    }

    /// Fetch the manifest (choosing a platform from an index) and the config.
    pub async fn resolve(&self) -> Result<ImageInfo, Error> {
        match self {
            Source::Registry(s) => s.resolve(None).await,
            Source::Local(s) => s.resolve().await,
            Source::Daemon(s) => s.resolve().await,
            Source::RegistryOrEngine(s) => s.resolve().await,
            Source::Cached { inner, cache } => match inner.origin() {
                Source::Registry(s) => s.resolve(Some(cache)).await,
                Source::Daemon(s) => s.resolve_with_cache(cache).await,
                other => Box::pin(other.resolve()).await,
            },
        }
    }

    /// An index the source already built while resolving (an engine export is read whole),
    /// handed over once.
    pub fn take_index(&self, layer: &LayerInfo) -> Option<LayerIndex> {
        match self.origin() {
            Source::Daemon(s) => s.take_index(layer),
            _ => None,
        }
    }

    /// Open the blob of `layer` as a verified stream: from the cache when it holds the blob,
    /// else from the source. A cached blob found damaged as it streams is removed, so the
    /// next open fetches it again.
    pub async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        match self {
            Source::Registry(s) => s.open_layer(layer).await,
            Source::Local(s) => s.open_layer(layer).await,
            Source::Daemon(s) => s.open_layer(layer).await,
            Source::RegistryOrEngine(s) => Box::pin(s.current().open_layer(layer)).await,
            Source::Cached { inner, cache } => {
                if let Some(stream) = open_cached_blob(cache, layer) {
                    return Ok(stream);
                }
                Box::pin(inner.open_layer(layer)).await
            }
        }
    }

    /// Open the blob of `layer` from the source itself, never from the cache.
    pub async fn open_layer_from_origin(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        match self {
            Source::Cached { inner, .. } => Box::pin(inner.open_layer_from_origin(layer)).await,
            Source::RegistryOrEngine(s) => {
                Box::pin(s.current().open_layer_from_origin(layer)).await
            }
            other => Box::pin(other.open_layer(layer)).await,
        }
    }

    /// Which source this is, for messages ("registry 127.0.0.1:5000").
    pub fn describe(&self) -> String {
        match self {
            Source::Registry(s) => s.describe(),
            Source::Local(s) => s.describe(),
            Source::Daemon(s) => s.describe(),
            Source::RegistryOrEngine(s) => s.current().describe(),
            Source::Cached { inner, .. } => inner.describe(),
        }
    }
}

/// Stream a cached blob, verified; on a mismatch the entry is removed and the stream ends
/// with the error.
pub fn open_cached_blob(cache: &Arc<Cache>, layer: &LayerInfo) -> Option<LayerStream> {
    let path = cache.blob_file(&layer.digest)?;
    let size = std::fs::metadata(&path).ok()?.len();
    let place = store::Place {
        file: path,
        offset: 0,
        size,
    };
    let digest = layer.digest.clone();
    let cache = cache.clone();
    let mut verifier = Some(Verifier::new(&digest, Some(layer.compressed_size)));
    let raw = store::stream_place(place, None);
    let checked = raw.chain(futures_util::stream::once(async { Ok(Bytes::new()) }));
    // Verify here (not in `stream_place`) to remove the entry when it is damaged.
    let stream = checked.filter_map(move |chunk| {
        let result = match chunk {
            Ok(bytes) if bytes.is_empty() => match verifier.take().map(Verifier::finish) {
                Some(Err(source)) => {
                    cache.remove_blob(&digest);
                    Some(Err(Error::Blob {
                        origin: "the cache".to_string(),
                        digest: digest.clone(),
                        source,
                    }))
                }
                _ => None,
            },
            Ok(bytes) => match verifier.as_mut().map(|v| v.update(&bytes)) {
                Some(Err(source)) => {
                    verifier = None;
                    cache.remove_blob(&digest);
                    Some(Err(Error::Blob {
                        origin: "the cache".to_string(),
                        digest: digest.clone(),
                        source,
                    }))
                }
                _ => Some(Ok(bytes)),
            },
            Err(e) => Some(Err(e)),
        };
        std::future::ready(result)
    });
    Some(Box::pin(stream))
}
