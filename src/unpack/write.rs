//! Carrying out a [`Plan`]: directories, then each layer's files (its blob read once, front to
//! back, every file checked against its indexed hash as it streams), then links, pipes and
//! markers, into a [`Sink`].
//!
//! This runs on a blocking thread. Blobs come through [`Blobs`]: [`SourceBlobs`] reads them
//! through the image's source (the cache first), turning the async download into a plain
//! `Read`; tests hand in bytes directly.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::error::Error;
use crate::image::LayerInfo;
use crate::layer::extract::{is_content_mismatch, layer_error, LayerCursor};
use crate::source::{LayerStream, Source};
use crate::tree::{Entry, FileTree, NodeId};

use super::plan::{relative_path, Plan, Tail};
use super::tar_writer::{Meta, TarWriter};
use super::{shown, UnpackError};

/// Where an export's entries go: a tar stream or a directory.
pub trait Sink {
    /// A directory.
    fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()>;
    /// A regular file of `size` bytes from `data`; an error from `data` (a hash mismatch)
    /// must leave no complete file behind.
    fn file(&mut self, path: &[u8], meta: Meta, size: u64, data: &mut dyn Read) -> io::Result<()>;
    /// A hard link to `target`, a path written before.
    fn hardlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()>;
    /// A symbolic link.
    fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()>;
    /// A named pipe.
    fn fifo(&mut self, path: &[u8], meta: Meta) -> io::Result<()>;
}

impl<W: Write> Sink for TarWriter<W> {
    fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        TarWriter::dir(self, path, meta)
    }

    fn file(&mut self, path: &[u8], meta: Meta, size: u64, data: &mut dyn Read) -> io::Result<()> {
        TarWriter::file(self, path, meta, size, data)
    }

    fn hardlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        TarWriter::hardlink(self, path, target, meta)
    }

    fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        TarWriter::symlink(self, path, target, meta)
    }

    fn fifo(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        TarWriter::fifo(self, path, meta)
    }
}

/// Layer blobs, opened one at a time in ascending order.
pub trait Blobs {
    /// The compressed blob of `layer`, from its first byte.
    fn open(&mut self, layer: usize) -> Result<Box<dyn Read + Send + '_>, Error>;
}

/// In-memory blobs by layer index (tests, and anything already holding the bytes).
impl Blobs for Vec<Vec<u8>> {
    fn open(&mut self, layer: usize) -> Result<Box<dyn Read + Send + '_>, Error> {
        match self.get(layer) {
            Some(blob) => Ok(Box::new(blob.as_slice())),
            None => Err(Error::Other(format!("no blob for layer {layer}"))),
        }
    }
}

/// Blobs read through an image's source, from a blocking thread of `handle`'s runtime.
/// Setting `cancel` to true ends the reading at once (Ctrl-C).
pub struct SourceBlobs {
    /// The runtime the source's downloads run on.
    pub handle: Handle,
    /// Where the blobs come from (with its cache).
    pub source: Arc<Source>,
    /// The image's layers.
    pub layers: Vec<LayerInfo>,
    /// Becomes true when the work must stop.
    pub cancel: watch::Receiver<bool>,
}

impl Blobs for SourceBlobs {
    fn open(&mut self, layer: usize) -> Result<Box<dyn Read + Send + '_>, Error> {
        let info = self
            .layers
            .get(layer)
            .ok_or_else(|| Error::Other(format!("the image has no layer {layer}")))?;
        let stream = self.handle.block_on(self.source.open_layer(info))?;
        Ok(Box::new(BlockingStream {
            handle: &self.handle,
            stream,
            current: Bytes::new(),
            cancel: self.cancel.clone(),
        }))
    }
}

/// A download read as a blocking `Read`.
struct BlockingStream<'a> {
    handle: &'a Handle,
    stream: LayerStream,
    current: Bytes,
    cancel: watch::Receiver<bool>,
}

impl Read for BlockingStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let cancel = &mut self.cancel;
            let stream = &mut self.stream;
            let next = self.handle.block_on(async {
                tokio::select! {
                    next = stream.next() => Some(next),
                    _ = cancel.wait_for(|stop| *stop) => None,
                }
            });
            match next {
                None => return Err(io::Error::other(UnpackError::Interrupted)),
                Some(None) => return Ok(0),
                Some(Some(Ok(bytes))) => self.current = bytes,
                Some(Some(Err(e))) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Run `work` on a blocking thread with the blobs of `layers` read through `source`. With
/// `signals`, Ctrl-C and SIGTERM stop it: downloads end at once, the work fails with
/// [`UnpackError::Interrupted`] (cleaning up what it made) and that error is returned. Dropping
/// the returned future stops the downloads too.
pub async fn on_blocking_thread<T, F>(
    source: Arc<Source>,
    layers: Vec<LayerInfo>,
    signals: bool,
    work: F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&mut SourceBlobs) -> Result<T, Error> + Send + 'static,
{
    let (cancel, cancelled) = watch::channel(false);
    let mut blobs = SourceBlobs {
        handle: Handle::current(),
        source,
        layers,
        cancel: cancelled,
    };
    let mut task = tokio::task::spawn_blocking(move || work(&mut blobs));
    let joined = if signals {
        let mut interrupts = crate::toolbox::blob::Interrupts::listen()?;
        tokio::select! {
            joined = &mut task => joined,
            () = interrupts.next() => {
                let _ = cancel.send(true);
                let _ = task.await;
                return Err(UnpackError::Interrupted.into());
            }
        }
    } else {
        (&mut task).await
    };
    drop(cancel);
    joined.map_err(|e| Error::Other(format!("the work on the layers stopped: {e}")))?
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries of every kind.
    pub entries: u64,
    /// Regular files written with their bytes.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// How a failure shows to the reader of the output, for the error message (e.g. "the tar
/// stream was cut short inside it").
pub type Consequence = &'static str;

/// The metadata of `node` as of `layer`.
fn meta_of(entry: &Entry) -> Meta {
    Meta {
        mode: u32::from(entry.mode()),
        uid: entry.uid,
        gid: entry.gid,
        mtime: entry.mtime(),
    }
}

/// A whiteout or opaque marker: an empty file, as image builders write them.
const MARKER_META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 0,
};

/// Write `plan` (made from `tree`) into `sink`, reading file bytes from `blobs`. `cancel`
/// stops the work between entries and inside downloads.
pub fn write_plan(
    tree: &FileTree,
    plan: &Plan,
    blobs: &mut dyn Blobs,
    sink: &mut dyn Sink,
    cancel: &watch::Receiver<bool>,
    consequence: Consequence,
) -> Result<Written, Error> {
    let layer = plan.layer;
    let mut written = Written::default();
    let stopped = |cancel: &watch::Receiver<bool>| -> Result<(), Error> {
        if *cancel.borrow() {
            Err(UnpackError::Interrupted.into())
        } else {
            Ok(())
        }
    };
    let entry = |node: NodeId| -> Result<&Entry, Error> {
        tree.entry_at(node, layer).ok_or_else(|| {
            Error::Other(format!(
                "{} vanished from the model while exporting",
                shown(&relative_path(tree, node))
            ))
        })
    };
    let failed = |e: io::Error, path: &[u8], source_layer: usize| {
        classify(e, path, source_layer, consequence, cancel)
    };

    for &node in &plan.dirs {
        stopped(cancel)?;
        let path = relative_path(tree, node);
        sink.dir(&path, meta_of(entry(node)?))
            .map_err(|e| failed(e, &path, layer))?;
        written.entries += 1;
    }

    let mut groups = plan.groups().peekable();
    while let Some(&first) = groups.peek() {
        let source_layer = first[0].layer as usize;
        let blob = blobs.open(source_layer)?;
        let mut cursor = LayerCursor::new(blob).map_err(|e| layer_failure(source_layer, &e))?;
        while let Some(group) = groups.next_if(|g| g[0].layer as usize == source_layer) {
            stopped(cancel)?;
            let head = group[0].node;
            let path = relative_path(tree, head);
            let Some(location) = tree.content_location(head, layer) else {
                continue;
            };
            let mut reader = cursor
                .file(location.span)
                .map_err(|e| layer_failure(source_layer, &e))?;
            sink.file(
                &path,
                meta_of(entry(head)?),
                location.span.size,
                &mut reader,
            )
            .map_err(|e| failed(e, &path, source_layer))?;
            written.entries += 1;
            written.files += 1;
            written.bytes += location.span.size;
            for link in &group[1..] {
                let link_path = relative_path(tree, link.node);
                sink.hardlink(&link_path, &path, meta_of(entry(link.node)?))
                    .map_err(|e| failed(e, &link_path, layer))?;
                written.entries += 1;
            }
        }
    }

    for tail in &plan.tail {
        stopped(cancel)?;
        let (path, result) = match tail {
            Tail::Symlink(node) => {
                let path = relative_path(tree, *node);
                let e = entry(*node)?;
                let target = e.link_target().unwrap_or_default();
                let result = sink.symlink(&path, target, meta_of(e));
                (path, result)
            }
            Tail::Fifo(node) => {
                let path = relative_path(tree, *node);
                let result = sink.fifo(&path, meta_of(entry(*node)?));
                (path, result)
            }
            Tail::Hardlink(node) => {
                let path = relative_path(tree, *node);
                let e = entry(*node)?;
                let target = e.link_target().unwrap_or_default();
                let result = sink.hardlink(&path, target, meta_of(e));
                (path, result)
            }
            Tail::Marker(path) => {
                let result = sink.file(path, MARKER_META, 0, &mut io::empty());
                (path.clone(), result)
            }
        };
        result.map_err(|e| failed(e, &path, layer))?;
        written.entries += 1;
    }
    Ok(written)
}

fn layer_failure(layer: usize, e: &crate::layer::LayerError) -> Error {
    Error::Other(format!("layer {layer}: {e}"))
}

/// The program error for a sink or reader failure while writing `path`.
pub(super) fn classify(
    e: io::Error,
    path: &[u8],
    source_layer: usize,
    consequence: Consequence,
    cancel: &watch::Receiver<bool>,
) -> Error {
    if *cancel.borrow() {
        return UnpackError::Interrupted.into();
    }
    if is_content_mismatch(&e) {
        return UnpackError::Mismatch {
            path: shown(path),
            layer: source_layer,
            consequence,
        }
        .into();
    }
    if let Some(layer_error) = layer_error(&e) {
        return layer_failure(source_layer, layer_error);
    }
    if e.get_ref().is_some_and(|inner| inner.is::<UnpackError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(unpack) = inner.downcast::<UnpackError>() {
                return (*unpack).into();
            }
        }
        return Error::Other("export failed".to_string());
    }
    Error::io(format!("writing {}", shown(path)), e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::layer::index_layer;
    use crate::unpack::plan::{plan, Links, Mode};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Two layers through the real indexer: their blobs and the merged tree.
    fn image() -> (Vec<Vec<u8>>, FileTree) {
        let mut first = TarWriter::new(Vec::new());
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        };
        first
            .dir(
                b"etc",
                Meta {
                    mode: 0o755,
                    ..meta
                },
            )
            .unwrap();
        first.file(b"etc/a", meta, 3, &mut &b"one"[..]).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        first
            .file(b"opt/big", meta, big.len() as u64, &mut big.as_slice())
            .unwrap();
        first.hardlink(b"etc/a-link", b"etc/a", meta).unwrap();
        let mut second = TarWriter::new(Vec::new());
        second.file(b"etc/a", meta, 3, &mut &b"two"[..]).unwrap();
        second
            .symlink(
                b"etc/b",
                b"a",
                Meta {
                    mode: 0o777,
                    ..meta
                },
            )
            .unwrap();
        let tars = [first.finish().unwrap(), second.finish().unwrap()];
        let mut tree = FileTree::new();
        for tar in &tars {
            tree.push_layer(index_layer(tar.as_slice(), None).unwrap());
        }
        (tars.iter().map(|t| gzip(t)).collect(), tree)
    }

    #[test]
    fn the_view_as_a_tar_holds_each_paths_bytes_as_of_the_layer() {
        let (mut blobs, tree) = image();
        let plan = plan(&tree, 1, Mode::View, Links::Resolved, &[], None).unwrap();
        let mut out = TarWriter::new(Vec::new());
        let (_keep, cancel) = watch::channel(false);
        let written = write_plan(&tree, &plan, &mut blobs, &mut out, &cancel, "").unwrap();
        assert_eq!((written.files, written.bytes), (3, 300_006));
        let tar = out.finish().unwrap();
        let mut contents = Vec::new();
        for entry in tar::Archive::new(tar.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let kind = entry.header().entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            contents.push((path, kind, link, data.len()));
        }
        let names: Vec<&str> = contents.iter().map(|c| c.0.as_str()).collect();
        // Layer 0's bytes of etc/a live on only in the link, written as a file.
        assert_eq!(
            names,
            ["etc/", "opt/", "etc/a-link", "opt/big", "etc/a", "etc/b"]
        );
        assert_eq!(contents[5].2.as_deref(), Some("a"));
    }

    #[test]
    fn a_blob_that_changed_stops_the_export_at_that_file() {
        let (mut blobs, tree) = image();
        // Same length, other bytes: the index's hashes no longer match.
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(blobs[1].as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let at = tar.windows(3).position(|w| w == b"two").unwrap();
        tar[at..at + 3].copy_from_slice(b"TWO");
        blobs[1] = gzip(&tar);
        let plan = plan(&tree, 1, Mode::View, Links::Resolved, &[], None).unwrap();
        let mut out = TarWriter::new(Vec::new());
        let (_keep, cancel) = watch::channel(false);
        let err = write_plan(&tree, &plan, &mut blobs, &mut out, &cancel, "cut short")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/a: the bytes read from layer 1 do not match"),
            "{err}"
        );
        assert!(err.ends_with("cut short"), "{err}");
        assert!(out.finish().is_err(), "no end-of-archive after a failure");
    }
}
