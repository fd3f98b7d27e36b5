//! The files of an image layout, wherever they lie: in a directory (`oci:DIR`) or inside a tar
//! (`docker-archive:`, `oci-archive:`). A tar is scanned once for its headers (skipping data
//! by seeking); afterwards any member is read, or streamed as a layer, straight from its byte
//! range in the tar, so nothing is unpacked to disk. Symbolic and hard links between members
//! (`docker save` links shared layers) are followed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

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

/// Stream a byte range of a file as a layer blob, verified against `expected` (digest and the
/// range's size) when given: a mismatch is the stream's last item, as for a registry blob.
pub fn stream_place(place: Place, expected: Option<Digest>) -> LayerStream {
    struct State {
        file: Option<tokio::fs::File>,
        place: Place,
        left: u64,
        verifier: Option<Verifier>,
        expected: Option<Digest>,
        done: bool,
    }
    let state = State {
        file: None,
        left: place.size,
        verifier: expected
            .as_ref()
            .map(|d| Verifier::new(d, Some(place.size))),
        expected,
        place,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let io = |s: &State, e| Error::io(format!("reading {}", s.place.file.display()), e);
        if s.file.is_none() {
            let opened = async {
                let mut f = tokio::fs::File::open(&s.place.file).await?;
                f.seek(SeekFrom::Start(s.place.offset)).await?;
                Ok::<_, std::io::Error>(f)
            }
            .await;
            match opened {
                Ok(f) => s.file = Some(f),
                Err(e) => {
                    s.done = true;
                    let err = io(&s, e);
                    return Some((Err(err), s));
                }
            }
        }
        if s.left == 0 {
            s.done = true;
            let verdict = s.verifier.take().map(Verifier::finish);
            return match (verdict, &s.expected) {
                (Some(Err(e)), Some(digest)) => {
                    let err = Error::Blob {
                        origin: s.place.file.display().to_string(),
                        digest: digest.clone(),
                        source: e,
                    };
                    Some((Err(err), s))
                }
                _ => None,
            };
        }
        let want = usize::try_from(s.left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = BytesMut::zeroed(want);
        let read = match s.file.as_mut() {
            Some(f) => f.read(&mut buf).await,
            None => Ok(0),
        };
        match read {
            Ok(0) => {
                s.done = true;
                let err = archive_error(&s.place.file, "the file ends inside a layer (truncated?)");
                Some((Err(err), s))
            }
            Ok(n) => {
                buf.truncate(n);
                s.left -= n as u64;
                if let Some(v) = s.verifier.as_mut() {
                    // The range has exactly the promised size, so it cannot run long.
                    let _ = v.update(&buf);
                }
                Some((Ok(buf.freeze()), s))
            }
            Err(e) => {
                s.done = true;
                let err = io(&s, e);
                Some((Err(err), s))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_member_paths() {
        assert_eq!(normalise("./a/b"), "a/b");
        assert_eq!(normalise("/a//b/"), "a/b");
        assert_eq!(normalise("x/../y.tar"), "y.tar");
        assert_eq!(normalise("../../z"), "z");
    }
}
