//! A compact binary form of a [`LayerIndex`], so a cache can hand back a layer's index without
//! reading the layer again.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "LSIX" | format version u32 | payload length u64 | sha256(payload) [32] | payload
//! payload: diff_id (len u16 + ASCII) | tar_size u64 | compressed_size u64 | compression u8 |
//!          size_bytes u64 | skipped u64 | arena (len u64 + bytes) |
//!          entries (count u64, each: shared u32, suffix length u32, kind u8, mode u32, uid u32,
//!                   gid u32, size u64, mtime u64, data_offset u64, flags u8, [content 32],
//!                   [link len u32 + bytes]) |
//!          marker arena (len u64 + bytes) |
//!          whiteouts (count u64 + spans) | opaque dirs (count u64 + spans)
//! ```
//! A span is `start u32, len u32` into the marker arena. The entries' path suffixes fill the
//! arena one after another, in entry order. An entry's path is the first `shared` bytes
//! of the previous entry's path followed by its span (see [`super::PathCursor`]). Decoding
//! checks the checksum first, then every length, span and shared length, so a damaged file is
//! an error, never a panic or a wrong tree.

use std::fmt;
use std::io::{self, Seek, SeekFrom, Write};

use sha2::Digest as _;

use super::{
    Compression, Entry, EntryKind, FrontCoded, LayerIndex, Markers, Payload as EntryPayload, Span,
};
use crate::digest::Digest;

const MAGIC: &[u8; 4] = b"LSIX";
/// Bump when the payload layout or the meaning of any field changes: older entries are then
/// treated as absent and rebuilt.
pub const FORMAT_VERSION: u32 = 3;
const HEADER_LEN: usize = 4 + 4 + 8 + 32;
/// Payload bytes gathered before they are hashed and written.
const PAYLOAD_PIECE: usize = 64 * 1024;

/// The payload on its way out: gathered in pieces, each hashed and written when full.
struct Payload<'a, W> {
    out: &'a mut W,
    buf: Vec<u8>,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Payload<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > PAYLOAD_PIECE {
            self.flush()?;
        }
        if bytes.len() > PAYLOAD_PIECE {
            self.hasher.update(bytes);
            self.len += bytes.len() as u64;
            return self.out.write_all(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.len += self.buf.len() as u64;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// The payload's length and checksum, once the last piece is out.
    fn finish(mut self) -> io::Result<(u64, [u8; 32])> {
        self.flush()?;
        let mut checksum = [0u8; 32];
        checksum.copy_from_slice(&self.hasher.finalize());
        Ok((self.len, checksum))
    }
}

/// Why bytes are not a usable index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged layer index: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Flag bits telling which payload follows an entry's fixed fields, in the index and in the
/// model snapshot alike.
pub(crate) const HAS_CONTENT: u8 = 1;
pub(crate) const HAS_LINK: u8 = 2;

/// The flag bits of an entry's payload.
pub(crate) fn payload_flags(payload: &EntryPayload) -> u8 {
    match payload {
        EntryPayload::None => 0,
        EntryPayload::Content(_) => HAS_CONTENT,
        EntryPayload::Link(_) => HAS_LINK,
    }
}

/// The number that stands for `kind` in the stored formats and in a packed entry.
pub(crate) const fn kind_code(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Hardlink => 3,
        EntryKind::CharDevice => 4,
        EntryKind::BlockDevice => 5,
        EntryKind::Fifo => 6,
    }
}

/// The kind that [`kind_code`] gives `code`.
pub(crate) fn kind_of(code: u8) -> Option<EntryKind> {
    Some(match code {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Hardlink,
        4 => EntryKind::CharDevice,
        5 => EntryKind::BlockDevice,
        6 => EntryKind::Fifo,
        _ => return None,
    })
}

pub(crate) fn compression_code(c: Compression) -> u8 {
    match c {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Zstd => 2,
    }
}

pub(crate) fn compression_of(code: u8) -> Option<Compression> {
    Some(match code {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        _ => return None,
    })
}

impl LayerIndex {
    /// The index in the binary form described in this module's documentation.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = io::Cursor::new(Vec::new());
        // Writing into memory cannot fail; an index without its entry paths, which is never
        // stored, encodes as nothing.
        let _ = self.write_to(&mut out);
        out.into_inner()
    }

    /// Write the index in its binary form to `out`, as it is produced: the payload goes out in
    /// small pieces while its checksum is computed, then the header is written in front. A
    /// million-entry index is about 60 MB of payload, which is never held in memory.
    /// An index without its entry paths ([`LayerIndex::has_entry_paths`]) is refused: read
    /// back, it would describe another layer.
    pub fn write_to<W: Write + Seek>(&self, out: W) -> io::Result<()> {
        if !self.has_entry_paths() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a layer index without its entry paths is not stored",
            ));
        }
        let paths = || {
            self.paths
                .parts()
                .map(|(shared, suffix)| (shared, suffix.len(), suffix))
        };
        self.write_with_paths(out, paths)
    }

    /// [`Self::write_to`] with the paths given as (shared length, suffix length, suffix):
    /// the suffixes make the arena, the lengths go with each entry. Tests give lengths that
    /// disagree with the arena, as a damaged file would.
    fn write_with_paths<'p, W, P>(&self, mut out: W, paths: impl Fn() -> P) -> io::Result<()>
    where
        W: Write + Seek,
        P: Iterator<Item = (usize, usize, &'p [u8])>,
    {
        let start = out.stream_position()?;
        out.write_all(&[0u8; HEADER_LEN])?;
        let mut p = Payload {
            out: &mut out,
            buf: Vec::with_capacity(PAYLOAD_PIECE),
            hasher: sha2::Sha256::new(),
            len: 0,
        };
        let diff_id = self.diff_id.to_string();
        // Digests are at most "sha512:" + 128 hex characters.
        p.put(&(diff_id.len() as u16).to_le_bytes())?;
        p.put(diff_id.as_bytes())?;
        for v in [self.tar_size, self.compressed_size] {
            p.put(&v.to_le_bytes())?;
        }
        p.put(&[compression_code(self.compression)])?;
        // The suffixes first, as one arena, then each entry with the two lengths of its path
        // (each within a tar path, which an index keeps under 16 MiB, so within u32).
        let arena_len: usize = paths().map(|(_, _, suffix)| suffix.len()).sum();
        for v in [self.size_bytes, self.skipped, arena_len as u64] {
            p.put(&v.to_le_bytes())?;
        }
        for (_, _, suffix) in paths() {
            p.put(suffix)?;
        }
        p.put(&(self.entries.len() as u64).to_le_bytes())?;
        for ((shared, len, _), e) in paths().zip(self.entries.iter()) {
            p.put(&(shared as u32).to_le_bytes())?;
            p.put(&(len as u32).to_le_bytes())?;
            p.put(&[kind_code(e.kind())])?;
            for v in [u32::from(e.mode()), e.uid, e.gid] {
                p.put(&v.to_le_bytes())?;
            }
            for v in [e.size(), e.mtime(), e.data_offset()] {
                p.put(&v.to_le_bytes())?;
            }
            p.put(&[payload_flags(&e.payload)])?;
            if let EntryPayload::Content(hash) = &e.payload {
                p.put(hash)?;
            }
            if let EntryPayload::Link(link) = &e.payload {
                p.put(&(link.len() as u32).to_le_bytes())?;
                p.put(link)?;
            }
        }
        p.put(&(self.markers.arena.len() as u64).to_le_bytes())?;
        p.put(&self.markers.arena)?;
        for spans in [&self.markers.whiteouts, &self.markers.opaque_dirs] {
            p.put(&(spans.len() as u64).to_le_bytes())?;
            for span in spans.iter() {
                put_span(&mut p, *span)?;
            }
        }
        let (len, checksum) = p.finish()?;
        let end = out.stream_position()?;
        out.seek(SeekFrom::Start(start))?;
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&checksum)?;
        out.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Read an index written by [`LayerIndex::encode`], checking its checksum and every span.
    pub fn decode(bytes: &[u8]) -> Result<LayerIndex, DecodeError> {
        let bad = |why: &str| DecodeError(why.to_string());
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(bad("not a layerscope index"));
        }
        let mut header = Reader {
            bytes: &bytes[4..HEADER_LEN],
            at: 0,
        };
        let version = header.u32()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError(format!("format version {version}")));
        }
        let len = header.u64()?;
        let checksum = header.take(32)?;
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != len {
            return Err(bad("truncated"));
        }
        // Tens of megabytes just read from a file: hashed with loads ahead, as a layer is.
        let mut hasher = sha2::Sha256::new();
        crate::digest::update_ahead(&mut hasher, payload);
        if hasher.finalize().as_slice() != checksum {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader {
            bytes: payload,
            at: 0,
        };
        let id_len = usize::from(r.u16()?);
        let diff_id: Digest = std::str::from_utf8(r.take(id_len)?)
            .map_err(|_| bad("diff_id is not text"))?
            .parse()
            .map_err(|_| bad("invalid diff_id"))?;
        let tar_size = r.u64()?;
        let compressed_size = r.u64()?;
        let compression = compression_of(r.u8()?).ok_or_else(|| bad("unknown compression"))?;
        let size_bytes = r.u64()?;
        let skipped = r.u64()?;
        let arena_len = r.len()?;
        let arena = r.take(arena_len)?;
        let count = r.len()?;
        // Each entry takes at least 46 bytes: refuse counts the payload cannot hold before
        // allocating for them.
        if count > r.remaining() / 46 {
            return Err(bad("entry count exceeds the payload"));
        }
        let mut paths = FrontCoded::default();
        // The suffixes and, for most paths, two bytes of lengths each.
        paths
            .bytes
            .reserve(arena.len().saturating_add(count.saturating_mul(2)));
        let mut entries = Vec::with_capacity(count);
        // Length of the previous entry's path: what the next one may share of it.
        let mut previous_len = 0u64;
        // Where the next suffix starts in the arena.
        let mut offset = 0u64;
        for _ in 0..count {
            let shared = r.u32()?;
            let len = r.u32()?;
            if u64::from(shared) > previous_len {
                return Err(bad("a path shares more than the previous path holds"));
            }
            let start = offset;
            offset += u64::from(len);
            if offset > arena.len() as u64 {
                return Err(bad("a path lies outside the name arena"));
            }
            previous_len = u64::from(shared) + u64::from(len);
            // Both within the arena, just checked.
            paths
                .push(shared as usize, &arena[start as usize..offset as usize])
                .map_err(|_| bad("the paths exceed 4 GiB"))?;
            let kind = kind_of(r.u8()?).ok_or_else(|| bad("unknown entry kind"))?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let size = r.u64()?;
            let mtime = r.u64()?;
            let mode =
                Entry::permission_bits(mode).ok_or_else(|| bad("mode bits beyond 0o7777"))?;
            let data_block = Entry::block_at(r.u64()?)
                .ok_or_else(|| bad("an entry's data is off a tar block"))?;
            let flags = r.u8()?;
            let content = if flags & HAS_CONTENT != 0 {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(r.take(32)?);
                Some(hash)
            } else {
                None
            };
            let link_target = if flags & HAS_LINK != 0 {
                let n = r.u32()? as usize;
                Some(r.take(n)?.into())
            } else {
                None
            };
            let payload = EntryPayload::from_parts(content, link_target)
                .ok_or_else(|| bad("an entry with both a content hash and a link target"))?;
            let header_fields = Entry::new(kind, mode, size, mtime)
                .ok_or_else(|| bad("a file of 1 TiB or more"))?;
            entries.push(Entry {
                uid,
                gid,
                payload,
                data_block,
                ..header_fields
            });
        }
        if offset != arena.len() as u64 {
            return Err(bad("the paths do not fill the name arena"));
        }
        let marker_arena_len = r.len()?;
        let marker_arena = r.take(marker_arena_len)?.to_vec();
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.len()?;
            if n > r.remaining() / 8 {
                return Err(bad("span count exceeds the payload"));
            }
            for _ in 0..n {
                list.push(r.span(marker_arena.len())?);
            }
        }
        if r.remaining() != 0 {
            return Err(bad("trailing bytes"));
        }
        let [whiteouts, opaque_dirs] = lists;
        Ok(LayerIndex {
            entries: std::sync::Arc::new(entries),
            paths,
            markers: Markers {
                arena: marker_arena,
                whiteouts,
                opaque_dirs,
            },
            size_bytes,
            skipped,
            tar_size,
            compressed_size,
            diff_id,
            compression,
        })
    }
}

fn put_span<W: Write>(out: &mut Payload<'_, W>, span: Span) -> io::Result<()> {
    out.put(&span.start.to_le_bytes())?;
    out.put(&span.len.to_le_bytes())
}

/// A bounds-checked cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError("truncated".to_string()));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length that must fit in what is left.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| DecodeError("a length exceeds the payload".to_string()))
    }

    fn span(&mut self, arena_len: usize) -> Result<Span, DecodeError> {
        let start = self.u32()?;
        let len = self.u32()?;
        if start as usize + len as usize > arena_len {
            return Err(DecodeError(
                "a path lies outside the name arena".to_string(),
            ));
        }
        Ok(Span { start, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::index_layer;

    fn sample() -> LayerIndex {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(1000);
            h.set_mtime(1_700_000_000);
            if let Some(l) = link {
                h.set_link_name(l).expect("short link");
            }
            b.append_data(&mut h, name, data).expect("in memory");
        };
        add("etc/", tar::EntryType::Directory, b"", None);
        add(
            "etc/hosts",
            tar::EntryType::Regular,
            b"127.0.0.1 localhost\n",
            None,
        );
        add("etc/link", tar::EntryType::Symlink, b"", Some("hosts"));
        add("etc/hard", tar::EntryType::Link, b"", Some("etc/hosts"));
        add("var/.wh.cache", tar::EntryType::Regular, b"", None);
        add("opt/.wh..wh..opq", tar::EntryType::Regular, b"", None);
        let tar = b.into_inner().expect("in memory");
        index_layer(&tar[..], None).expect("valid tar")
    }

    fn same(a: &LayerIndex, b: &LayerIndex) {
        assert!(a.entries().eq(b.entries()));
        assert!(a.whiteouts().eq(b.whiteouts()));
        assert!(a.opaque_dirs().eq(b.opaque_dirs()));
        assert_eq!(a.diff_id(), b.diff_id());
        assert_eq!(
            (a.tar_size(), a.compressed_size(), a.size_bytes()),
            (b.tar_size(), b.compressed_size(), b.size_bytes())
        );
        assert_eq!(a.compression(), b.compression());
        assert_eq!(a.skipped_entries(), b.skipped_entries());
    }

    /// An index whose payload spans many pieces, with a link target longer than one piece.
    fn big() -> LayerIndex {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..3000 {
            let mut h = tar::Header::new_gnu();
            let data = format!("file {i}");
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("dir{}/file{i}", i % 17), data.as_bytes())
                .expect("in memory");
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        let target = "t".repeat(PAYLOAD_PIECE + 5000);
        b.append_link(&mut h, "long-link", &target)
            .expect("in memory");
        let tar = b.into_inner().expect("in memory");
        index_layer(&tar[..], None).expect("valid tar")
    }

    #[test]
    fn an_index_written_in_pieces_after_other_bytes_reads_back() {
        let index = big();
        let mut out = io::Cursor::new(b"before".to_vec());
        out.set_position(6);
        index.write_to(&mut out).expect("into memory");
        let bytes = out.into_inner();
        assert!(bytes.len() > 4 * PAYLOAD_PIECE);
        assert_eq!(&bytes[..6], b"before");
        assert_eq!(&bytes[6..], &index.encode()[..]);
        same(&index, &LayerIndex::decode(&bytes[6..]).expect("decodes"));
    }

    /// Accepts `room` bytes, then fails like a full disk.
    struct FullDisk {
        inner: io::Cursor<Vec<u8>>,
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.inner.get_ref().len() + buf.len() > self.room {
                return Err(io::Error::other("no space left on device"));
            }
            self.inner.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for FullDisk {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_write_that_fails_half_way_is_an_error() {
        let index = big();
        for room in [10, HEADER_LEN + 100, 3 * PAYLOAD_PIECE] {
            let mut out = FullDisk {
                inner: io::Cursor::new(Vec::new()),
                room,
            };
            let error = index.write_to(&mut out).expect_err("the disk is full");
            assert_eq!(error.to_string(), "no space left on device");
        }
    }

    #[test]
    fn round_trips_every_field() {
        let index = sample();
        assert_eq!(index.len(), 4);
        let decoded = LayerIndex::decode(&index.encode()).expect("decodes");
        same(&index, &decoded);
    }

    #[test]
    fn paths_are_stored_as_what_they_share_with_the_previous_one() {
        let index = sample();
        let paths: Vec<Vec<u8>> = index.entries().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [&b"etc"[..], b"etc/hosts", b"etc/link", b"etc/hard"].map(<[u8]>::to_vec)
        );
        let shared: Vec<usize> = index.paths.parts().map(|(shared, _)| shared).collect();
        assert_eq!(shared, [0, 3, 4, 4]);
        // The arena holds each path's rest once, not each whole path.
        let arena: Vec<u8> = index.paths.parts().flat_map(|(_, s)| s.to_vec()).collect();
        assert_eq!(arena, b"etc/hostslinkhard");
        assert_eq!(&index.markers.arena[..], &b"var/cacheopt"[..]);
    }

    /// The sample encoded with entry `at`'s path lengths changed by `change`.
    fn encoded_with_lengths(at: usize, change: impl Fn(usize, usize) -> (usize, usize)) -> Vec<u8> {
        let index = sample();
        let paths = || {
            index
                .paths
                .parts()
                .enumerate()
                .map(|(i, (shared, suffix))| {
                    let (shared, len) = if i == at {
                        change(shared, suffix.len())
                    } else {
                        (shared, suffix.len())
                    };
                    (shared, len, suffix)
                })
        };
        let mut out = io::Cursor::new(Vec::new());
        index
            .write_with_paths(&mut out, paths)
            .expect("writes to memory");
        out.into_inner()
    }

    #[test]
    fn a_path_that_shares_more_than_the_previous_one_holds_is_refused() {
        // The previous path, "etc", has 3 bytes.
        let bytes = encoded_with_lengths(1, |_, len| (4, len));
        let error = LayerIndex::decode(&bytes).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("shares more"), "{error}");
    }

    #[test]
    fn paths_that_leave_or_overrun_the_arena_are_refused() {
        let longer = encoded_with_lengths(3, |shared, len| (shared, len + 1));
        let error = LayerIndex::decode(&longer).map(|_| ()).unwrap_err();
        assert!(
            error.to_string().contains("outside the name arena"),
            "{error}"
        );
        let shorter = encoded_with_lengths(3, |shared, len| (shared, len - 1));
        let error = LayerIndex::decode(&shorter).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("do not fill"), "{error}");
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = sample().encode();
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(LayerIndex::decode(&damaged).is_err(), "flip at {at}");
        }
        for cut in [0, 3, HEADER_LEN, bytes.len() - 1] {
            assert!(LayerIndex::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
