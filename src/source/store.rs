//! The files of an image layout, wherever they lie: in a directory (`oci:DIR`) or inside a tar
//! (`docker-archive:`, `oci-archive:`). A tar is scanned once for its headers (skipping data
//! by seeking); afterwards any member is read, or streamed as a layer, straight from its byte
//! range in the tar, so nothing is unpacked to disk. Symbolic and hard links between members
//! (`docker save` links shared layers) are followed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use futures_util::stream;

use super::LayerStream;
use crate::digest::{Digest, Verifier};
use crate::error::Error;

/// Bytes read at once from a layer file.
const CHUNK: usize = 256 * 1024;
/// Links followed before a chain is declared a loop.
const MAX_LINK_HOPS: usize = 16;

/// Where a member's bytes are: a file and a byte range in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The file holding the bytes.
    pub file: PathBuf,
    /// Where they start.
    pub offset: u64,
    /// How many there are.
    pub size: u64,
}

/// A member of a tar, once scanned.
#[derive(Clone, Debug)]
enum Member {
    Data {
        offset: u64,
        size: u64,
    },
    /// A symbolic link, target relative to the link's directory.
    Symlink(String),
    /// A hard link, target relative to the archive root.
    Hardlink(String),
}

/// A layout's files: a directory, or a tar scanned into a table of members.
#[derive(Debug)]
pub enum LayoutFiles {
    /// An unpacked layout.
    Dir(PathBuf),
    /// A tar holding the layout.
    Tar {
        /// The tar file.
        file: PathBuf,
        /// Members by normalised path.
        members: HashMap<String, MemberRef>,
    },
}

/// A scanned tar member (opaque outside this module).
#[derive(Clone, Debug)]
pub struct MemberRef(Member);

/// Normalise a member path: no leading `./` or `/`, no `.` components, `..` resolved.
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn archive_error(path: &Path, detail: impl Into<String>) -> Error {
    Error::Archive {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

impl LayoutFiles {
    /// Scan the tar at `path`: headers only, data skipped by seeking.
    pub fn scan_tar(path: &Path) -> Result<LayoutFiles, Error> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let not_tar = |e: std::io::Error| archive_error(path, format!("not a readable tar ({e})"));
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::Data {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => Member::Symlink(link()),
                tar::EntryType::Link => Member::Hardlink(normalise(&link())),
                _ => continue,
            };
            members.insert(name, MemberRef(member));
        }
        if members.is_empty() {
            return Err(archive_error(path, "the tar holds no files"));
        }
        Ok(LayoutFiles::Tar {
            file: path.to_path_buf(),
            members,
        })
    }

    /// The path as given to the user in messages.
    pub fn location(&self) -> &Path {
        match self {
            LayoutFiles::Dir(dir) => dir,
            LayoutFiles::Tar { file, .. } => file,
        }
    }

    /// Whether `path` exists in the layout.
    pub fn exists(&self, path: &str) -> bool {
        self.place(path).is_ok()
    }

    /// Where the bytes of `path` are, links followed.
    pub fn place(&self, path: &str) -> Result<Place, Error> {
        match self {
            LayoutFiles::Dir(dir) => {
                let rel = normalise(path);
                let full = dir.join(&rel);
                let meta = std::fs::metadata(&full)
                    .map_err(|_| archive_error(dir, format!("{rel} is missing")))?;
                if !meta.is_file() {
                    return Err(archive_error(dir, format!("{rel} is not a file")));
                }
                Ok(Place {
                    file: full,
                    offset: 0,
                    size: meta.len(),
                })
            }
            LayoutFiles::Tar { file, members } => {
                let mut name = normalise(path);
                for _ in 0..MAX_LINK_HOPS {
                    match members.get(&name).map(|m| &m.0) {
                        None => {
                            return Err(archive_error(file, format!("{name} is missing")));
                        }
                        Some(Member::Data { offset, size }) => {
                            return Ok(Place {
                                file: file.clone(),
                                offset: *offset,
                                size: *size,
                            })
                        }
                        Some(Member::Symlink(target)) => {
                            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                            name = if target.starts_with('/') {
                                normalise(target)
                            } else {
                                normalise(&format!("{dir}/{target}"))
                            };
                        }
                        Some(Member::Hardlink(target)) => name = target.clone(),
                    }
                }
                Err(archive_error(
                    file,
                    format!("{path}: too many levels of links"),
                ))
            }
        }
    }

    /// Read a small member (JSON) whole, refusing anything over `limit` bytes.
    pub fn read_small(&self, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let place = self.place(path)?;
        if place.size > limit {
            return Err(archive_error(
                self.location(),
                format!("{path} is {} bytes, too large for metadata", place.size),
            ));
        }
        read_range(&place, place.size)
    }

    /// The first bytes of a member (to sniff its compression).
    pub fn head(&self, path: &str, n: u64) -> Result<Vec<u8>, Error> {
        let place = self.place(path)?;
        read_range(&place, n.min(place.size))
    }
}

fn read_range(place: &Place, n: u64) -> Result<Vec<u8>, Error> {
    let io = |e| Error::io(format!("reading {}", place.file.display()), e);
    let mut file = File::open(&place.file).map_err(io)?;
    file.seek(SeekFrom::Start(place.offset)).map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    file.take(n).read_to_end(&mut bytes).map_err(io)?;
    if (bytes.len() as u64) < n {
        return Err(archive_error(
            &place.file,
            "the file ends early (truncated?)",
        ));
    }
    Ok(bytes)
}

/// The digest of a member's bytes, computed by reading it (for layers whose name says nothing).
pub fn hash_place(place: &Place) -> Result<Digest, Error> {
    let io = |e| Error::io(format!("reading {}", place.file.display()), e);
    let mut file = File::open(&place.file).map_err(io)?;
    file.seek(SeekFrom::Start(place.offset)).map_err(io)?;
    let mut hasher = crate::digest::DigestHasher::new(crate::digest::Algorithm::Sha256);
    let mut reader = file.take(place.size);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Chunks read ahead of the one the pipeline is taking.
const CHUNKS_AHEAD: usize = 2;

/// Stream a byte range of a file as a layer blob, verified against `expected` (digest and the
/// range's size) when given: a mismatch is the stream's last item, as for a registry blob.
///
/// One blocking thread reads the range straight into buffers that come back to it once the
/// pipeline has let go of them. A docker archive's layers are uncompressed, so a big image is
/// a gigabyte or more of reads: through the runtime's file type each read took a trip to a
/// blocking thread (two context switches), a copy out of its buffer, and a fresh, zeroed
/// allocation that the allocator often gave back to the kernel and faulted in again.
pub fn stream_place(place: Place, expected: Option<Digest>) -> LayerStream {
    enum State {
        Start(Place, Option<Digest>),
        Reading(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, Error>>),
    }
    Box::pin(stream::unfold(
        State::Start(place, expected),
        |state| async move {
            let mut chunks = match state {
                State::Reading(chunks) => chunks,
                State::Start(place, expected) => {
                    let (sender, chunks) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
                    tokio::task::spawn_blocking(move || read_place(&place, expected, &sender));
                    chunks
                }
            };
            let item = chunks.recv().await?;
            Some((item, State::Reading(chunks)))
        },
    ))
}

/// A chunk's buffer, handed back to the reader when the last view of the chunk is dropped.
struct PooledChunk {
    bytes: Vec<u8>,
    home: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        // The reader may be gone (the layer is read): the buffer is then simply freed.
        let _ = self.home.send(std::mem::take(&mut self.bytes));
    }
}

/// Read `place` in chunks into `chunks`, ending with an error if it cannot be read whole or
/// does not match `expected`. Stops early when the stream is dropped.
fn read_place(
    place: &Place,
    expected: Option<Digest>,
    chunks: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, Error>>,
) {
    let io = |e| Error::io(format!("reading {}", place.file.display()), e);
    let opened = File::open(&place.file).and_then(|mut file| {
        file.seek(SeekFrom::Start(place.offset))?;
        Ok(file)
    });
    let mut range = match opened {
        Ok(file) => file.take(place.size),
        Err(e) => {
            let _ = chunks.blocking_send(Err(io(e)));
            return;
        }
    };
    let mut verifier = expected
        .as_ref()
        .map(|d| Verifier::new(d, Some(place.size)));
    let (home, returned) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut left = place.size;
    while left > 0 {
        let want = left.min(CHUNK as u64);
        let mut buf = returned
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.clear();
        // Reads into the buffer's spare room: nothing is zeroed first.
        let read = range.by_ref().take(want).read_to_end(&mut buf);
        let item = match read {
            Ok(0) => Err(archive_error(
                &place.file,
                "the file ends inside a layer (truncated?)",
            )),
            Ok(n) => {
                left -= n as u64;
                if let Some(v) = verifier.as_mut() {
                    // The range has exactly the promised size, so it cannot run long.
                    let _ = v.update(&buf);
                }
                Ok(bytes::Bytes::from_owner(PooledChunk {
                    bytes: buf,
                    home: home.clone(),
                }))
            }
            Err(e) => Err(io(e)),
        };
        let failed = item.is_err();
        if chunks.blocking_send(item).is_err() || failed {
            return;
        }
    }
    if let (Some(Err(source)), Some(digest)) = (verifier.map(Verifier::finish), expected) {
        let _ = chunks.blocking_send(Err(Error::Blob {
            origin: place.file.display().to_string(),
            digest,
            source,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A file of `bytes` in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        /// `tag` tells the tests of one run apart.
        fn new(tag: &str, bytes: &[u8]) -> Self {
            let name = format!("layerscope-store-{tag}-{}", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, bytes).expect("temp file");
            TempFile(path)
        }

        fn place(&self, offset: u64, size: u64) -> Place {
            Place {
                file: self.0.clone(),
                offset,
                size,
            }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Every item of a stream: the bytes of the chunks before the first error, and that error.
    async fn drain(mut stream: LayerStream) -> (Vec<u8>, usize, Option<Error>) {
        let (mut bytes, mut chunks) = (Vec::new(), 0);
        while let Some(item) = stream.next().await {
            match item {
                // Each chunk is let go of before the next is taken, so buffers go back.
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    chunks += 1;
                }
                Err(e) => {
                    assert!(stream.next().await.is_none(), "nothing after an error");
                    return (bytes, chunks, Some(e));
                }
            }
        }
        (bytes, chunks, None)
    }

    fn numbered(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_range_streams_whole_and_verified_in_chunks() {
        let data = numbered(9 * CHUNK + 1000);
        let mut file = b"before".to_vec();
        file.extend_from_slice(&data);
        file.extend_from_slice(b"after");
        let file = TempFile::new("whole", &file);
        let place = file.place(6, data.len() as u64);
        let (bytes, chunks, error) =
            drain(stream_place(place, Some(Digest::sha256_of(&data)))).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(chunks, 10);
        assert!(bytes == data, "the range's bytes, in order");
    }

    #[tokio::test]
    async fn a_range_past_the_end_or_with_other_bytes_ends_in_an_error() {
        let data = numbered(2 * CHUNK + 10);
        let file = TempFile::new("short", &data);

        let (bytes, _, error) =
            drain(stream_place(file.place(0, data.len() as u64 + 1), None)).await;
        assert_eq!(bytes.len(), data.len());
        let error = error.expect("an error").to_string();
        assert!(error.contains("truncated"), "{error}");

        let other = Digest::sha256_of(b"other bytes");
        let (bytes, _, error) =
            drain(stream_place(file.place(0, data.len() as u64), Some(other))).await;
        assert_eq!(bytes.len(), data.len());
        assert!(matches!(error, Some(Error::Blob { .. })), "{error:?}");

        let missing = file.0.with_extension("missing");
        let (bytes, _, error) = drain(stream_place(
            Place {
                file: missing,
                offset: 0,
                size: 1,
            },
            None,
        ))
        .await;
        assert!(bytes.is_empty());
        let error = error.expect("an error").to_string();
        assert!(error.contains("reading"), "{error}");
    }

    #[test]
    fn normalises_member_paths() {
        assert_eq!(normalise("./a/b"), "a/b");
        assert_eq!(normalise("/a//b/"), "a/b");
        assert_eq!(normalise("x/../y.tar"), "y.tar");
        assert_eq!(normalise("../../z"), "z");
    }
}
