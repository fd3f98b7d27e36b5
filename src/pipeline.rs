//! The streaming pipeline: resolve the image, then download, verify, decompress and
//! index up to [`CONCURRENT_LAYERS`] layers at once, and merge them into the shared model in
//! layer order. The first layer is merged while it streams, into a model of its own that
//! replaces the shared (empty) one once the layer is verified; the others wait for the layers
//! below them. Views learn what happened through [`Event`]s and read byte counts from
//! [`Progress`]; nothing here waits on a view.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::cache::{BlobWriter, Cache};
use crate::chunk_channel::chunk_channel;
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{ImageInfo, LayerInfo};
use crate::layer::extract::{read_window, FileWindow};
use crate::layer::{
    index_layer_tapped, index_layer_with, Compression, EntryBatch, IndexOptions, LayerIndex,
};
use crate::source::{LayerStream, Source};
use crate::tree::{BaseLayerMerge, ContentLocation, FileTree};

/// Layers fetched and indexed at the same time: three downloads per registry, as Docker does.
pub const CONCURRENT_LAYERS: usize = 3;

/// A later layer whose blob is at most 1/`SMALL_LAYER_RATIO` of the first layer's runs below
/// normal priority while the first one streams ([`crate::priority`]): at a quarter of its
/// size it is still indexed before the first layer is merged (on the million-file image,
/// 60–460 ms before), and the first layer, which everything waits for, gets the cores. A layer
/// closer in size would be left streaming alone at the end, where decompression on one thread
/// leaves a core idle: with every later layer below normal priority, a five-layer image of
/// similar layers took 2–3 % longer.
const SMALL_LAYER_RATIO: u64 = 4;

/// Whether a later layer of `size` blob bytes is small enough beside a first layer of
/// `first_size` to be indexed below normal priority while the first one streams.
pub fn small_beside_first(size: u64, first_size: u64) -> bool {
    size.saturating_mul(SMALL_LAYER_RATIO) <= first_size
}

/// Entry batches buffered between the first layer's walk and its merge.
const BATCHES_IN_FLIGHT: usize = 8;

/// A layer ready to join the model.
enum Obtained {
    /// Its index, merged once every layer below it is.
    Index(LayerIndex),
    /// The first layer, already merged while it streamed into a model of its own, and its
    /// index on its way into the cache.
    Base(FileTree, CacheWrite),
}

/// What the pipeline tells its views.
#[derive(Debug)]
pub enum Event {
    /// The manifest and config arrived: layers and history can be shown.
    Resolved(Arc<ImageInfo>),
    /// A layer's download began.
    LayerStarted(usize),
    /// A layer was downloaded, verified and indexed (not yet merged).
    LayerIndexed(usize),
    /// A layer was merged into the model: its tree can be browsed.
    LayerMerged(usize),
    /// Every layer is merged.
    Finished,
}

/// Byte and layer counters, shared with views that poll them (cheaper than an event per chunk).
#[derive(Debug, Default)]
pub struct Progress {
    downloaded: Vec<AtomicU64>,
    total_bytes: AtomicU64,
    layers_done: AtomicU64,
}

impl Progress {
    fn for_layers(layers: &[LayerInfo]) -> Progress {
        Progress {
            downloaded: layers.iter().map(|_| AtomicU64::new(0)).collect(),
            total_bytes: AtomicU64::new(layers.iter().map(|l| l.compressed_size).sum()),
            layers_done: AtomicU64::new(0),
        }
    }

    /// Compressed bytes downloaded so far for `layer`.
    pub fn layer_bytes(&self, layer: usize) -> u64 {
        self.downloaded
            .get(layer)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Compressed bytes downloaded so far, all layers.
    pub fn bytes(&self) -> u64 {
        self.downloaded
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Compressed bytes of all layers.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// Layers merged so far.
    pub fn layers_done(&self) -> u64 {
        self.layers_done.load(Ordering::Relaxed)
    }

    /// Number of layers.
    pub fn layer_count(&self) -> usize {
        self.downloaded.len()
    }
}

/// The model that views read: the image as resolved and the merged filesystem tree, which
/// grows one layer at a time while the pipeline runs.
pub struct Loaded {
    /// Manifest, config, layers and history.
    pub info: Arc<ImageInfo>,
    /// The merged tree (all layers once loading finished).
    pub tree: Arc<RwLock<FileTree>>,
    /// Download counters.
    pub progress: Arc<Progress>,
    /// The model on its way into the cache, finished before this is dropped.
    pub cache_write: CacheWrite,
}

/// Writes to the cache running on threads of their own, so that the merge, the figures,
/// findings and reports need not wait for them: on a million-file image the merged model is
/// 190 MB and the first layer's index 100 MB. Dropping this waits for every write (and the
/// cache's eviction after them) to finish, so a command does not exit in the middle of one.
#[derive(Default)]
pub struct CacheWrite(Vec<std::thread::JoinHandle<()>>);

impl CacheWrite {
    /// Run `write` on a thread called `name`; here and now when no thread can be started.
    fn spawn(name: &str, write: impl FnOnce() + Send + 'static) -> CacheWrite {
        // The closure comes back when the thread cannot start, so it can run here instead.
        let write = Arc::new(std::sync::Mutex::new(Some(write)));
        let on_thread = Arc::clone(&write);
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Some(write) = on_thread.lock().ok().and_then(|mut w| w.take()) {
                    write();
                }
            });
        match started {
            Ok(handle) => CacheWrite(vec![handle]),
            Err(_) => {
                if let Some(write) = write.lock().ok().and_then(|mut w| w.take()) {
                    write();
                }
                CacheWrite::default()
            }
        }
    }

    /// Store `tree` under `chain` in `cache`, then, once the `earlier` writes are done too,
    /// keep the cache within its limit. A failure costs nothing but time next run, or disk
    /// space.
    fn start(
        cache: Arc<Cache>,
        chain: Digest,
        tree: Arc<RwLock<FileTree>>,
        earlier: CacheWrite,
    ) -> CacheWrite {
        CacheWrite::spawn("cache-model", move || {
            let _ = cache.store_tree(&chain, &tree.read().unwrap_or_else(|p| p.into_inner()));
            drop(earlier);
            cache.evict();
        })
    }

    /// Wait for `other` as well.
    fn add(&mut self, mut other: CacheWrite) {
        self.0.append(&mut other.0);
    }

    /// Wait for the write from async code: the join runs on a blocking thread, not on the
    /// runtime's.
    pub async fn wait(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

impl Drop for CacheWrite {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Resolve `source` and load every layer into `tree`, sending events as things happen.
/// `on_resolved` receives the progress counters as soon as the layer list is known, so a view
/// can show them while layers download. Dropping the returned future cancels every download.
pub async fn load(
    source: Arc<Source>,
    tree: Arc<RwLock<FileTree>>,
    events: mpsc::UnboundedSender<Event>,
    on_resolved: impl FnOnce(Arc<Progress>),
) -> Result<Loaded, Error> {
    let info = Arc::new(source.resolve().await?);
    let progress = Arc::new(Progress::for_layers(&info.layers));
    on_resolved(progress.clone());
    // A view that went away is not an error for the loader.
    let _ = events.send(Event::Resolved(info.clone()));

    // The whole merged model, when an earlier run stored it: nothing to index or merge.
    let chain = Cache::chain_key(info.layers.iter().map(|l| &l.diff_id));
    if let Some(cache) = source.cache().cloned() {
        let key = chain.clone();
        let hit = tokio::task::spawn_blocking(move || cache.load_tree(&key))
            .await
            .ok()
            .flatten();
        if let Some(model) = hit.filter(|m| same_layers(m, &info.layers)) {
            let model = with_blob_facts(model, &info.layers);
            *tree.write().unwrap_or_else(|p| p.into_inner()) = model;
            for (i, layer) in info.layers.iter().enumerate() {
                progress.downloaded[i].store(layer.compressed_size, Ordering::Relaxed);
                progress.layers_done.fetch_add(1, Ordering::Relaxed);
                let _ = events.send(Event::LayerStarted(i));
                let _ = events.send(Event::LayerIndexed(i));
                let _ = events.send(Event::LayerMerged(i));
            }
            let _ = events.send(Event::Finished);
            return Ok(Loaded {
                info,
                tree,
                progress,
                cache_write: CacheWrite::default(),
            });
        }
    }

    // The first layer can be merged while it streams when the model starts empty.
    let stream_first = tree.read().unwrap_or_else(|p| p.into_inner()).layer_count() == 0;
    let first_size = info.layers.first().map_or(0, |l| l.compressed_size);
    let permits = Arc::new(Semaphore::new(CONCURRENT_LAYERS));
    let mut tasks = JoinSet::new();
    for layer in info.layers.iter().cloned() {
        let source = source.clone();
        let permits = permits.clone();
        let progress = progress.clone();
        let events = events.clone();
        tasks.spawn(async move {
            let index = layer.index;
            // The semaphore is never closed, so acquiring only fails if that invariant breaks.
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| Error::Other("layer scheduler closed".to_string()))?;
            let _ = events.send(Event::LayerStarted(index));
            let urgency = if !stream_first {
                Urgency::Normal
            } else if index == 0 {
                Urgency::MergedWhileStreaming
            } else if small_beside_first(layer.compressed_size, first_size) {
                Urgency::Background
            } else {
                Urgency::Normal
            };
            let result = obtain_index(&source, &layer, &progress, urgency).await;
            if result.is_ok() {
                let _ = events.send(Event::LayerIndexed(index));
            }
            result.map(|idx| (index, idx))
        });
    }

    let mut pending: BTreeMap<usize, Obtained> = BTreeMap::new();
    let mut next = 0usize;
    // Layer indexes still being written to the cache; joined before this returns or fails.
    let mut index_writes = CacheWrite::default();
    while let Some(joined) = tasks.join_next().await {
        let (index, obtained) = match joined {
            Ok(result) => result?,
            Err(e) => return Err(Error::Other(format!("a layer task failed: {e}"))),
        };
        pending.insert(index, obtained);
        while let Some(ready) = pending.remove(&next) {
            match ready {
                Obtained::Index(layer_index) => merge(&tree, layer_index).await?,
                // Only the first layer comes merged, and the model is empty until it does.
                Obtained::Base(model, write) => {
                    *tree.write().unwrap_or_else(|p| p.into_inner()) = model;
                    index_writes.add(write);
                }
            }
            progress.layers_done.fetch_add(1, Ordering::Relaxed);
            let _ = events.send(Event::LayerMerged(next));
            next += 1;
        }
    }
    // The model is stored for the next run while this one goes on with it.
    let cache_write = match source.cache().cloned() {
        Some(cache) => CacheWrite::start(cache, chain, Arc::clone(&tree), index_writes),
        None => index_writes,
    };
    let _ = events.send(Event::Finished);
    Ok(Loaded {
        info,
        tree,
        progress,
        cache_write,
    })
}

/// Whether a cached model holds exactly these layers (its key says so; this guards it).
fn same_layers(model: &FileTree, layers: &[LayerInfo]) -> bool {
    model.layer_count() == layers.len()
        && layers
            .iter()
            .enumerate()
            .all(|(i, l)| model.layer_meta(i).diff_id == l.diff_id)
}

/// A cached model described with this image's blobs (see [`FileTree::set_blob_facts`]).
fn with_blob_facts(mut model: FileTree, layers: &[LayerInfo]) -> FileTree {
    for (i, layer) in layers.iter().enumerate() {
        let compression =
            compression_of(&layer.media_type).unwrap_or(model.layer_meta(i).compression);
        model.set_blob_facts(i, layer.compressed_size, compression);
    }
    model
}

/// Merge one layer on a blocking thread: it can take a while on big layers, and views keep
/// reading the tree between merges.
async fn merge(tree: &Arc<RwLock<FileTree>>, index: LayerIndex) -> Result<(), Error> {
    let tree = tree.clone();
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means a view panicked while reading; the tree itself is intact
        // because readers never mutate it.
        let mut guard = tree
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.push_layer(index);
    })
    .await
    .map_err(|e| Error::Other(format!("merging a layer failed: {e}")))
}

/// The index of one layer, from the cheapest place that has it: the cache (by diff_id), the
/// source itself (an engine export was indexed while it streamed), a cached blob, and last
/// the source's blob. A fresh index is stored in the cache for the next run. With
/// `merge_while_streaming` (the first layer of an empty model), a layer read from a blob is
/// also merged as it streams and comes back as that model.
async fn obtain_index(
    source: &Source,
    layer: &LayerInfo,
    progress: &Progress,
    urgency: Urgency,
) -> Result<Obtained, Error> {
    let cache = source.cache().cloned();
    let counted = |n: u64| {
        if let Some(c) = progress.downloaded.get(layer.index) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    };
    if let Some(cache) = &cache {
        let (c, diff_id) = (cache.clone(), layer.diff_id.clone());
        let hit = tokio::task::spawn_blocking(move || c.load_index(&diff_id))
            .await
            .ok()
            .flatten();
        if let Some(index) = hit {
            counted(layer.compressed_size);
            let compression = compression_of(&layer.media_type).unwrap_or(index.compression());
            return Ok(Obtained::Index(
                index.with_blob_facts(layer.compressed_size, compression),
            ));
        }
    }
    // A streamed merge carries the paths into the model; its index keeps them only to cache.
    let merge = match (urgency, cache.is_some()) {
        (Urgency::MergedWhileStreaming, true) => StreamedMerge::KeepingPaths,
        (Urgency::MergedWhileStreaming, false) => StreamedMerge::WithoutPaths,
        (Urgency::Normal, _) => StreamedMerge::No,
        (Urgency::Background, _) => StreamedMerge::InBackground,
    };
    let (index, base) = if let Some(index) = source.take_index(layer) {
        counted(layer.compressed_size);
        (index, None)
    } else {
        let blob_cache = cache.clone().filter(|_| source.caches_blobs());
        let from_cache = blob_cache
            .as_ref()
            .and_then(|c| crate::source::open_cached_blob(c, layer));
        let cached = match from_cache {
            Some(stream) => {
                match fetch_and_index(stream, layer, progress, None, merge).await {
                    Ok(indexed) => Some(indexed),
                    Err(_) => {
                        // Damaged: forget it, start the count again and fetch it anew.
                        if let Some(c) = &blob_cache {
                            c.remove_blob(&layer.digest);
                        }
                        if let Some(c) = progress.downloaded.get(layer.index) {
                            c.store(0, Ordering::Relaxed);
                        }
                        None
                    }
                }
            }
            None => None,
        };
        match cached {
            Some(indexed) => indexed,
            None => {
                let stream = source.open_layer_from_origin(layer).await?;
                let cache = blob_cache.as_deref();
                fetch_and_index(stream, layer, progress, cache, merge).await?
            }
        }
    };
    // A cache that cannot be written only costs the next run a download.
    let (index, index_write) = match (cache, &base) {
        // The first layer's model needs only the entries, which it shares with the index
        // being written: on a million-file layer the write (100 MB) then runs beside the
        // later layers' merge instead of before it.
        (Some(cache), Some(base)) if base.merged_all(&index) => {
            let (for_model, for_cache) = index.share_entries();
            let write = CacheWrite::spawn("cache-index", move || {
                let _ = cache.store_index(&for_cache);
            });
            (for_model, write)
        }
        (Some(cache), _) => {
            let index = tokio::task::spawn_blocking(move || {
                let _ = cache.store_index(&index);
                index
            })
            .await
            .map_err(|e| Error::Other(format!("caching layer {} failed: {e}", layer.index)))?;
            (index, CacheWrite::default())
        }
        (None, _) => (index, CacheWrite::default()),
    };
    match base {
        Some(base) => tokio::task::spawn_blocking(move || base.finish(index))
            .await
            .map_err(|e| Error::Other(format!("merging layer {} failed: {e}", layer.index)))?
            .map(|model| Obtained::Base(model, index_write))
            .map_err(|source| Error::Layer {
                index: layer.index,
                digest: layer.digest.clone(),
                source,
            }),
        None => Ok(Obtained::Index(index)),
    }
}

/// The compression a layer media type names, when it names one.
fn compression_of(media_type: &str) -> Option<Compression> {
    if media_type.ends_with("zstd") {
        Some(Compression::Zstd)
    } else if media_type.ends_with("gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with(".tar") {
        Some(Compression::None)
    } else {
        None
    }
}

/// Passes bytes on to the indexer and copies them into a cache entry; a write failure only
/// stops the copy.
struct Tee<R> {
    inner: R,
    copy: Option<BlobWriter>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = self.copy.as_mut() {
            if copy.write_all(&buf[..n]).is_err() {
                self.copy = None;
            }
        }
        Ok(n)
    }
}

/// How a layer is indexed when it has to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Urgency {
    /// The first layer of an empty model: merged while it streams, and waited for by all.
    MergedWhileStreaming,
    /// Indexed at normal priority, merged once the layers below it are.
    Normal,
    /// A small later layer while the first one streams: indexed below normal priority.
    Background,
}

/// Whether a layer is merged while it streams ([`BaseLayerMerge`]), and whether its index then
/// keeps the entries' paths (only the cache needs them: the merge has its own); a layer only
/// indexed is indexed at normal priority or below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamedMerge {
    /// Indexed only, merged later.
    No,
    /// Indexed only, below normal priority ([`Urgency::Background`]), merged later.
    InBackground,
    /// Merged while it streams; the index is cached, paths and all.
    KeepingPaths,
    /// Merged while it streams; the index is not cached and keeps no paths.
    WithoutPaths,
}

/// Read one layer blob and index it while it streams: the stream is read here, the
/// decompression and tar reading run on a blocking thread fed through a bounded channel. With
/// `cache`, the blob is copied into it and published once both its digest (checked by the
/// stream) and its diff_id (checked by the indexer) are right. With a streamed `merge`,
/// one more blocking thread merges the entries into a first-layer model as the walk reads
/// them; the model is returned beside the index, to be finished with it.
async fn fetch_and_index(
    mut stream: LayerStream,
    layer: &LayerInfo,
    progress: &Progress,
    cache: Option<&Cache>,
    merge: StreamedMerge,
) -> Result<(LayerIndex, Option<BaseLayerMerge>), Error> {
    let layer_error = |source| Error::Layer {
        index: layer.index,
        digest: layer.digest.clone(),
        source,
    };
    let copy = cache.and_then(|c| c.blob_writer(&layer.digest).ok());
    let (tx, reader) = chunk_channel();
    let diff_id = layer.diff_id.clone();
    let streams_into_model = matches!(
        merge,
        StreamedMerge::KeepingPaths | StreamedMerge::WithoutPaths
    );
    let (tap, merger) = if streams_into_model {
        let (tap, batches) = std::sync::mpsc::sync_channel::<EntryBatch>(BATCHES_IN_FLIGHT);
        // Ends when the walk drops its end of the channel, whether the layer was valid or not.
        let merger = tokio::task::spawn_blocking(move || BaseLayerMerge::from_batches(batches));
        (Some(tap), Some(merger))
    } else {
        (None, None)
    };
    let indexer = tokio::task::spawn_blocking(move || {
        let mut tee = Tee {
            inner: reader,
            copy,
        };
        let result = match tap {
            Some(tap) => {
                let options = IndexOptions {
                    entry_paths: merge == StreamedMerge::KeepingPaths,
                    ..IndexOptions::default()
                };
                index_layer_tapped(&mut tee, Some(&diff_id), options, tap)
            }
            None => {
                let options = IndexOptions {
                    background: merge == StreamedMerge::InBackground,
                    ..IndexOptions::default()
                };
                index_layer_with(&mut tee, Some(&diff_id), options)
            }
        };
        (result, tee.copy)
    });

    let counter = progress.downloaded.get(layer.index);
    let count = |n: usize| {
        if let Some(c) = counter {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let mut tx = Some(tx);
    while let Some(chunk) = stream.next().await {
        let bytes = match chunk {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Err(io::Error::other("the download failed"))).await;
                }
                return Err(e);
            }
        };
        count(bytes.len());
        let Some(sender) = &tx else { continue };
        if sender.send(Ok(bytes)).await.is_err() {
            // The indexer stopped before the blob ended. If it failed, its error explains why;
            // if it finished, the rest of the blob must still be read to verify the digest.
            tx = None;
        }
    }
    drop(tx);
    let (result, copy) = indexer
        .await
        .map_err(|e| Error::Other(format!("indexing layer {} failed: {e}", layer.index)))?;
    let index = result.map_err(layer_error)?;
    if let Some(copy) = copy {
        // Fewer bytes than the blob (the indexer stopped early) are refused by `commit`.
        let _ = copy.commit(layer.compressed_size);
    }
    let base = match merger {
        Some(merger) => Some(
            merger
                .await
                .map_err(|e| Error::Other(format!("merging layer {} failed: {e}", layer.index)))?,
        ),
        None => None,
    };
    Ok((index, base))
}

/// Read up to `max_len` bytes at `offset` of a file whose bytes are at `location`, by
/// reading `layer`'s blob again through the source (from the cache when it holds the blob, else
/// over the network) and stopping as soon as the window is complete.
///
/// `layer` must be the image's layer number `location.layer`. Only the window is kept in
/// memory; the bytes before it are decompressed and dropped.
pub async fn read_file(
    source: Arc<Source>,
    layer: LayerInfo,
    location: ContentLocation,
    offset: u64,
    max_len: usize,
) -> Result<FileWindow, Error> {
    let mut stream = source.open_layer(&layer).await?;
    let (tx, reader) = chunk_channel();
    let reader =
        tokio::task::spawn_blocking(move || read_window(reader, location.span, offset, max_len));
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if tx.send(Ok(bytes)).await.is_err() {
                    // The window is complete (or the reader failed): the rest is not needed.
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(io::Error::other("the download failed"))).await;
                return Err(e);
            }
        }
    }
    drop(tx);
    reader
        .await
        .map_err(|e| {
            Error::Other(format!(
                "reading a file of layer {} failed: {e}",
                layer.index
            ))
        })?
        .map_err(|source| Error::Layer {
            index: layer.index,
            digest: layer.digest.clone(),
            source,
        })
}
