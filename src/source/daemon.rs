//! Images held by a local Docker Engine or Podman, read over the engine's unix socket through
//! the image export endpoint (`GET /images/{name}/get`, what `docker save` uses).
//!
//! An export is a docker archive written as a stream, and engines write the metadata
//! (`manifest.json`, `index.json`) after the layers. So the export is read once, front to back,
//! without touching the disk: small JSON members are kept, every other member is hashed and
//! indexed as a layer while it streams. When the metadata arrives, the image is described as
//! for an archive on disk, and every layer's digest and diff_id is checked against it. The
//! pipeline then takes the finished indexes instead of opening the layers.
//!
//! The socket: Docker's from `DOCKER_HOST` (`unix://PATH`), else `/var/run/docker.sock`;
//! Podman's from `$XDG_RUNTIME_DIR/podman/podman.sock`, else `/run/podman/podman.sock`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::sync::{mpsc, OnceCell};

use serde::{Deserialize, Serialize};

use super::layout::{describe, Choice, Described, LayerFile, LayoutRead, METADATA_LIMIT};
use super::store::normalise;
use super::LayerStream;
use crate::cache::Cache;
use crate::chunk_channel::{chunk_channel, ChannelReader};
use crate::digest::{Algorithm, Digest, DigestHasher, Verifier};
use crate::error::Error;
use crate::image::{ImageInfo, ImageParts, LayerInfo, ParsedManifest, Platform};
use crate::layer::{index_layer, sniff, Compression, LayerError, LayerIndex};

/// Cache records of engine images, keyed by the engine's image id.
const ENGINE_RECORD: &str = "engine";

/// What a cache keeps of an exported image, so that reopening it needs no export: with the
/// manifest and config blobs (cached by digest) and the layer indexes (by diff_id), this
/// rebuilds the very [`ImageInfo`] the export gave.
#[derive(Debug, Serialize, Deserialize)]
struct EngineRecord {
    digest: Digest,
    manifest_digest: Digest,
    media_type: String,
    config_digest: Digest,
    index_platform: Option<Platform>,
}

/// Chunks of a layer member buffered between the blocking copy out of an export and the
/// layer stream that reads them.
const CHUNKS_IN_FLIGHT: usize = 16;
/// Links followed before a chain is declared a loop.
const MAX_LINK_HOPS: usize = 16;

/// Which engine answers on the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Docker Engine.
    Docker,
    /// Podman's Docker-compatible service.
    Podman,
}

impl Engine {
    /// The engine's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "Docker engine",
            Engine::Podman => "Podman service",
        }
    }

    /// The socket to talk to, from the environment.
    pub fn socket(self) -> Result<PathBuf, Error> {
        match self {
            Engine::Docker => match std::env::var("DOCKER_HOST") {
                Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
                    Some(path) => Ok(PathBuf::from(path)),
                    None => Err(Error::Engine(format!(
                        "DOCKER_HOST={host}: only unix:// sockets are supported"
                    ))),
                },
                _ => Ok(PathBuf::from("/var/run/docker.sock")),
            },
            Engine::Podman => {
                if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
                    let user = Path::new(&dir).join("podman/podman.sock");
                    if user.exists() {
                        return Ok(user);
                    }
                }
                Ok(PathBuf::from("/run/podman/podman.sock"))
            }
        }
    }
}

/// Percent-encode an image name for a URL path, keeping the characters names are made of.
fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an export left once read: the metadata, and each layer member's facts and index.
struct Exported {
    described: Described,
    /// Per layer position: the index built while the export streamed, until the pipeline
    /// takes it.
    indexes: Mutex<HashMap<usize, LayerIndex>>,
    /// Per layer position: the member that holds its bytes (links resolved).
    members: Vec<String>,
}

/// An image in a local engine.
pub struct DaemonSource {
    engine: Engine,
    socket: PathBuf,
    name: String,
    platform: Option<crate::image::Platform>,
    client: reqwest::Client,
    state: OnceCell<Exported>,
}

impl DaemonSource {
    /// Read `name` from `engine`, at the socket the environment names.
    pub fn new(
        engine: Engine,
        name: &str,
        platform: Option<crate::image::Platform>,
    ) -> Result<Self, Error> {
        let socket = engine.socket()?;
        let client = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .user_agent(format!("layerscope/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Engine(format!("setting up the engine client: {e}")))?;
        Ok(DaemonSource {
            engine,
            socket,
            name: name.to_string(),
            platform,
            client,
            state: OnceCell::new(),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        let why = std::error::Error::source(e)
            .map(ToString::to_string)
            .unwrap_or_else(|| e.to_string());
        Error::Engine(format!(
            "cannot reach the {} at {}: {why}",
            self.engine.name(),
            self.socket.display()
        ))
    }

    async fn refusal(&self, response: reqwest::Response) -> Error {
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Error::Engine(format!(
                "the {} has no image {}",
                self.engine.name(),
                self.name
            ));
        }
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Error::Engine(format!(
            "the {} refused to export {} ({status}): {message}",
            self.engine.name(),
            self.name
        ))
    }

    /// Whether the engine answers and holds the image (`GET /images/{name}/json`). An engine
    /// that does not answer is `Ok(false)`: the caller was only asking.
    pub async fn has_image(&self) -> bool {
        let url = format!("http://localhost/images/{}/json", encode_name(&self.name));
        matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success())
    }

    async fn export(&self) -> Result<reqwest::Response, Error> {
        let url = format!("http://localhost/images/{}/get", encode_name(&self.name));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        Ok(response)
    }

    /// Feed an export to a blocking reader on another thread, chunk by chunk.
    fn pump(
        &self,
        response: reqwest::Response,
    ) -> (ChannelReader, tokio::task::JoinHandle<Result<(), Error>>) {
        let (tx, reader) = chunk_channel();
        let engine = self.engine.name();
        let pump = tokio::spawn(async move {
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| Error::Engine(format!("the {engine} export broke off: {e}")));
                match chunk {
                    Ok(bytes) => {
                        if tx.send(Ok(bytes)).await.is_err() {
                            // The reader finished (or failed and says why).
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        (reader, pump)
    }

    async fn ready(&self) -> Result<&Exported, Error> {
        self.state
            .get_or_try_init(|| async {
                let response = self.export().await?;
                let (reader, pump) = self.pump(response);
                let location = format!("{} export of {}", self.engine.name(), self.name);
                let choice = Choice {
                    name: None,
                    platform: self.platform.clone(),
                };
                let read = tokio::task::spawn_blocking(move || {
                    let streamed = read_export(reader, location)?;
                    let described = describe(&streamed, &choice)?;
                    streamed.finish(described)
                });
                let exported = read
                    .await
                    .map_err(|e| Error::Other(format!("reading the export failed: {e}")))?;
                // A broken download explains a reader error better than the reader can.
                pump.await
                    .map_err(|e| Error::Other(format!("the export download failed: {e}")))??;
                exported
            })
            .await
    }

    pub(super) async fn resolve(&self) -> Result<ImageInfo, Error> {
        let mut info = self.ready().await?.described.info.clone();
        info.reference = self.name.clone();
        Ok(info)
    }

    /// [`DaemonSource::resolve`] with a cache: an image exported before (same engine image
    /// id) whose manifest, config and layer indexes are all cached needs no export at all.
    pub(super) async fn resolve_with_cache(&self, cache: &Arc<Cache>) -> Result<ImageInfo, Error> {
        let id = self.image_id().await;
        if let Some(id) = &id {
            if let Some(info) = self.rebuild_from_record(cache, id) {
                return Ok(info);
            }
        }
        let info = self.resolve().await?;
        if let (Some(id), Some(exported)) = (id, self.state.get()) {
            // A cache that cannot be written only costs the next run an export.
            let _ = remember(cache, &id, &info, &exported.described);
        }
        Ok(info)
    }

    /// The engine's id of the image (`GET /images/{name}/json`), when it answers.
    async fn image_id(&self) -> Option<Digest> {
        let url = format!("http://localhost/images/{}/json", encode_name(&self.name));
        let response = self.client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        body.get("Id")?.as_str()?.parse().ok()
    }

    fn rebuild_from_record(&self, cache: &Cache, id: &Digest) -> Option<ImageInfo> {
        let bytes = cache.load_record(ENGINE_RECORD, id)?;
        let Ok(record) = serde_json::from_slice::<EngineRecord>(&bytes) else {
            cache.remove_record(ENGINE_RECORD, id);
            return None;
        };
        let manifest_bytes = cache.read_small_blob(&record.manifest_digest, None)?;
        let config_bytes = cache.read_small_blob(&record.config_digest, None)?;
        let parsed = ParsedManifest::parse(&manifest_bytes, Some(&record.media_type)).ok()?;
        let ParsedManifest::Image(manifest) = parsed else {
            return None;
        };
        // A platform mismatch, like any other surprise, is left for the export to report.
        let info = ImageInfo::assemble(
            ImageParts {
                reference: self.name.clone(),
                digest: record.digest,
                manifest_digest: record.manifest_digest,
                media_type: record.media_type,
                manifest_bytes,
                manifest: *manifest,
                config_bytes,
                platform: record.index_platform,
            },
            self.platform.as_ref(),
        )
        .ok()?;
        info.layers
            .iter()
            .all(|l| cache.has_index(&l.diff_id))
            .then_some(info)
    }

    /// The index built while the export streamed, once.
    pub(super) fn take_index(&self, layer: &LayerInfo) -> Option<LayerIndex> {
        let exported = self.state.get()?;
        let mut indexes = exported.indexes.lock().unwrap_or_else(|p| p.into_inner());
        indexes.remove(&layer.index)
    }

    /// Export the image again and stream one layer's member out of it, verified (the file
    /// viewer's way back to a layer's bytes when the cache has none).
    pub(super) async fn open_layer(&self, layer: &LayerInfo) -> Result<LayerStream, Error> {
        let exported = self.ready().await?;
        let member = exported
            .members
            .get(layer.index)
            .cloned()
            .ok_or_else(|| Error::Engine(format!("no layer {} in this image", layer.index)))?;
        let response = self.export().await?;
        let (reader, _pump) = self.pump(response);
        let (tx, rx) = mpsc::channel::<Result<Bytes, Error>>(CHUNKS_IN_FLIGHT);
        let digest = layer.digest.clone();
        let origin = format!("{} export of {}", self.engine.name(), self.name);
        tokio::task::spawn_blocking(move || {
            let result = copy_member(reader, &member, &digest, &origin, &tx);
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    pub(super) fn describe(&self) -> String {
        format!("{} {}", self.engine.name(), self.socket.display())
    }

    /// The socket, for messages.
    pub fn describe_socket(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Keep what [`DaemonSource::rebuild_from_record`] needs to rebuild `info` without an export.
fn remember(cache: &Cache, id: &Digest, info: &ImageInfo, described: &Described) -> io::Result<()> {
    cache.store_small_blob(&info.manifest_digest, &info.manifest_bytes)?;
    cache.store_small_blob(&info.manifest.config.digest, &info.config_bytes)?;
    let record = EngineRecord {
        digest: info.digest.clone(),
        manifest_digest: info.manifest_digest.clone(),
        media_type: info.media_type.clone(),
        config_digest: info.manifest.config.digest.clone(),
        index_platform: described.index_platform.clone(),
    };
    let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
    cache.store_record(ENGINE_RECORD, id, &bytes)
}

/// Send the bytes of `member` from an export, verified against `digest`.
fn copy_member(
    mut reader: ChannelReader,
    member: &str,
    digest: &Digest,
    origin: &str,
    tx: &mpsc::Sender<Result<Bytes, Error>>,
) -> Result<(), Error> {
    let broken = |e: io::Error| Error::Engine(format!("{origin}: not a readable tar ({e})"));
    while let Some(header) = next_member(&mut reader).map_err(broken)? {
        if normalise(&header.name) != member || !matches!(header.kind, b'0' | 0 | b'7') {
            skip(&mut reader, header.size).map_err(broken)?;
            continue;
        }
        let mut verifier = Verifier::new(digest, Some(header.size));
        let mut data = (&mut reader).take(header.size);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buf).map_err(broken)?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            let _ = verifier.update(chunk);
            if tx.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_err() {
                return Ok(());
            }
        }
        return verifier.finish().map_err(|source| Error::Blob {
            origin: origin.to_string(),
            digest: digest.clone(),
            source,
        });
    }
    Err(Error::Engine(format!(
        "{origin}: the layer {member} is missing"
    )))
}

/// A layer member of an export: its facts, and its index (or why it is not a layer).
struct StreamedLayer {
    size: u64,
    compression: Compression,
    digest: Digest,
    index: Result<LayerIndex, LayerError>,
}

/// An export read front to back.
struct Streamed {
    location: String,
    small: HashMap<String, Vec<u8>>,
    layers: HashMap<String, StreamedLayer>,
    links: HashMap<String, String>,
}

/// Hashes (and counts) the bytes a reader passes on.
struct Hashing<R> {
    inner: R,
    hasher: DigestHasher,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn read_export(mut reader: ChannelReader, location: String) -> Result<Streamed, Error> {
    let broken = |e: io::Error| Error::Engine(format!("{location}: not a readable tar ({e})"));
    let mut out = Streamed {
        location: location.clone(),
        small: HashMap::new(),
        layers: HashMap::new(),
        links: HashMap::new(),
    };
    while let Some(member) = next_member(&mut reader).map_err(broken)? {
        let name = normalise(&member.name);
        match member.kind {
            b'0' | 0 | b'7' => {}
            b'1' => {
                out.links.insert(name, normalise(&member.link));
                skip(&mut reader, member.size).map_err(broken)?;
                continue;
            }
            b'2' => {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let target = if member.link.starts_with('/') {
                    normalise(&member.link)
                } else {
                    normalise(&format!("{dir}/{}", member.link))
                };
                out.links.insert(name, target);
                skip(&mut reader, member.size).map_err(broken)?;
                continue;
            }
            _ => {
                skip(&mut reader, member.size).map_err(broken)?;
                continue;
            }
        }
        let size = member.size;
        let mut data = (&mut reader).take(size);
        let mut head = Vec::with_capacity(512);
        (&mut data)
            .take(512)
            .read_to_end(&mut head)
            .map_err(broken)?;
        let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let json = matches!(first, Some(b'{') | Some(b'['));
        // Metadata (JSON, the VERSION file) is small; a layer is a tar of at least two blocks.
        if (json && size <= METADATA_LIMIT) || size < 1024 {
            let mut bytes = head;
            data.read_to_end(&mut bytes).map_err(broken)?;
            if (bytes.len() as u64) < size {
                return Err(broken(io::ErrorKind::UnexpectedEof.into()));
            }
            skip_padding(&mut reader, size).map_err(broken)?;
            out.small.insert(name, bytes);
            continue;
        }
        let compression = sniff(&head);
        let mut hashing = Hashing {
            inner: io::Cursor::new(head).chain(&mut data),
            hasher: DigestHasher::new(Algorithm::Sha256),
            count: 0,
        };
        let index = index_layer(&mut hashing, None);
        // Hash whatever the indexer left unread (nothing, when it succeeded).
        io::copy(&mut hashing, &mut io::sink()).map_err(broken)?;
        if hashing.count < size {
            return Err(broken(io::ErrorKind::UnexpectedEof.into()));
        }
        let digest = hashing.hasher.finish();
        skip_padding(&mut reader, size).map_err(broken)?;
        out.layers.insert(
            name,
            StreamedLayer {
                size,
                compression,
                digest,
                index,
            },
        );
    }
    Ok(out)
}

/// One member header of the export tar.
struct Member {
    name: String,
    kind: u8,
    size: u64,
    link: String,
}

const BLOCK: u64 = 512;

/// Read the next member header (GNU long names and PAX paths applied); `None` at the end.
fn next_member<R: Read>(reader: &mut R) -> io::Result<Option<Member>> {
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    loop {
        let mut block = [0u8; BLOCK as usize];
        match reader.read_exact(&mut block) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        if block.iter().all(|&b| b == 0) {
            // The end marker; what follows is padding.
            io::copy(reader, &mut io::sink())?;
            return Ok(None);
        }
        let header = tar::Header::from_byte_slice(&block);
        let size = header.entry_size()?;
        let kind = block[156];
        match kind {
            b'L' | b'K' | b'x' => {
                if size > METADATA_LIMIT {
                    return Err(io::Error::other("an extended header is implausibly large"));
                }
                let mut data = Vec::new();
                reader.take(size).read_to_end(&mut data)?;
                skip_padding(reader, size)?;
                if kind == b'x' {
                    for (key, value) in pax_records(&data) {
                        match key {
                            "path" => long_name = Some(value.to_string()),
                            "linkpath" => long_link = Some(value.to_string()),
                            _ => {}
                        }
                    }
                } else {
                    let text = String::from_utf8_lossy(&data)
                        .trim_end_matches('\0')
                        .to_string();
                    if kind == b'L' {
                        long_name = Some(text);
                    } else {
                        long_link = Some(text);
                    }
                }
            }
            _ => {
                let name = long_name
                    .unwrap_or_else(|| String::from_utf8_lossy(&header.path_bytes()).into_owned());
                let link = long_link.unwrap_or_else(|| {
                    header
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default()
                });
                return Ok(Some(Member {
                    name,
                    kind,
                    size,
                    link,
                }));
            }
        }
    }
}

/// PAX records `LEN key=value\n`.
fn pax_records(data: &[u8]) -> Vec<(&str, &str)> {
    let text = std::str::from_utf8(data).unwrap_or("");
    text.lines()
        .filter_map(|line| {
            let (_, record) = line.split_once(' ')?;
            record.split_once('=')
        })
        .collect()
}

/// Skip `size` data bytes and their padding.
fn skip<R: Read>(reader: &mut R, size: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(size), &mut io::sink())?;
    if copied < size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    skip_padding(reader, size)
}

fn skip_padding<R: Read>(reader: &mut R, size: u64) -> io::Result<()> {
    let padding = (BLOCK - size % BLOCK) % BLOCK;
    let copied = io::copy(&mut reader.take(padding), &mut io::sink())?;
    if copied < padding {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

impl Streamed {
    fn resolve_link(&self, path: &str) -> String {
        let mut name = normalise(path);
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        name
    }

    fn missing(&self, path: &str) -> Error {
        Error::Archive {
            path: self.location.clone(),
            detail: format!("{path} is missing"),
        }
    }

    /// Check every layer of the described image against what streamed, and keep the indexes.
    fn finish(mut self, described: Described) -> Result<Exported, Error> {
        let mut indexes = HashMap::new();
        let mut members = Vec::new();
        for (layer, place) in described.info.layers.iter().zip(&described.places) {
            let member = self.resolve_link(&place.path);
            let layer_error = |source| Error::Layer {
                index: layer.index,
                digest: layer.digest.clone(),
                source,
            };
            // A layer used twice by one image streamed once: later uses get a copy.
            let index = match self.layers.get_mut(&member) {
                None => return Err(self.missing(&place.path)),
                Some(streamed) => match &streamed.index {
                    Err(e) => return Err(layer_error(e.clone())),
                    Ok(index) => index.clone(),
                },
            };
            if index.diff_id() != &layer.diff_id {
                return Err(layer_error(LayerError::DiffIdMismatch {
                    expected: layer.diff_id.clone(),
                    actual: index.diff_id().clone(),
                }));
            }
            indexes.insert(layer.index, index);
            members.push(member);
        }
        Ok(Exported {
            described,
            indexes: Mutex::new(indexes),
            members,
        })
    }
}

impl LayoutRead for Streamed {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn exists(&self, path: &str) -> bool {
        let name = self.resolve_link(path);
        self.small.contains_key(&name) || self.layers.contains_key(&name)
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>, Error> {
        let name = self.resolve_link(path);
        self.small
            .get(&name)
            .cloned()
            .ok_or_else(|| self.missing(path))
    }

    fn layer_file(&self, path: &str) -> Result<LayerFile, Error> {
        let name = self.resolve_link(path);
        let layer = self.layers.get(&name).ok_or_else(|| self.missing(path))?;
        Ok(LayerFile {
            size: layer.size,
            compression: layer.compression,
            digest: Some(layer.digest.clone()),
        })
    }

    fn hash(&self, path: &str) -> Result<Digest, Error> {
        let name = self.resolve_link(path);
        match (self.layers.get(&name), self.small.get(&name)) {
            (Some(layer), _) => Ok(layer.digest.clone()),
            (None, Some(bytes)) => Ok(Digest::sha256_of(bytes)),
            (None, None) => Err(self.missing(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_for_the_url_path() {
        assert_eq!(encode_name("app:dev"), "app:dev");
        assert_eq!(
            encode_name("localhost:5000/a/b@sha256:00"),
            "localhost:5000/a/b@sha256:00"
        );
        assert_eq!(encode_name("a b?#"), "a%20b%3F%23");
    }
}
