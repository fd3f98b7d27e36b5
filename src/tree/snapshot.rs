//! The merged model in a compact binary form, so a cache can hand back a whole image's tree
//! without merging its layers again: reopening a million-file image is then reading one file
//! and filling vectors, with no path lookups.
//!
//! Layout (integers little-endian): two parts, each checksummed on its own so that two
//! threads read and decode them at once, then a trailer:
//! ```text
//! part 1: magic "LSTR" | format version u32 |
//!         layers: count u32, each: meta (diff_id len u16 + ASCII, tar_size u64,
//!         compressed_size u64, compression u8, size_bytes u64, skipped u64), stats (8 × u64),
//!         entries (count u64, each: kind u8, flags u8, mode u32, uid u32, gid u32, size u64,
//!         mtime u64, data_offset u64, [content 32], [link len u32 + bytes])
//! part 2: nodes: count u64, each: name u64, parent u32, first_child u32, next_sibling u32,
//!         latest u32 | names: len u64 + bytes | child table: slots u64 + each u64, len u64 |
//!         versions: count u64, each: layer u32, state u32, prev u32 |
//!         visits: one per node, each: sum u64, min u64, count u32 |
//!         hidden files: count u64, each: node u32, layer u32, entry u32, by_layer u32,
//!         by_state u32
//! trailer: length of part 1 u64 | crc32 of part 1 u32 | crc32 of part 2 u32
//! ```
//! Fixed-size records are decoded in bulk from the read buffer. Decoding checks every count
//! against the part's length, every link between nodes, versions and entries (parents before
//! children, older versions before newer ones, so no walk can loop), and both checksums; a
//! damaged file is an error, never a panic, a hang or a wrong tree.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::lookup::ChildTable;
use super::visits::VisitTable;
use super::{
    FileTree, HideRecord, Layer, LayerStats, Node, VersionRecord, Visits, IMPLICIT, NAME_LEN_BITS,
    NONE, REMOVED,
};
use crate::digest::Digest;
use crate::layer::codec::{
    compression_code, compression_of, kind_code, kind_of, payload_flags, HAS_CONTENT, HAS_LINK,
};
use crate::layer::{DecodeError, Entry, LayerMeta, Payload};

const MAGIC: &[u8; 4] = b"LSTR";
/// Bump when the layout or the meaning of a field changes: older snapshots are then ignored.
pub const FORMAT_VERSION: u32 = 3;

/// The fixed part of an entry: kind, flags, mode, uid, gid, size, mtime, data_offset.
const ENTRY_ROW: usize = 38;
/// Bytes of the trailer: part 1's length and the two checksums.
const TRAILER: u64 = 16;

/// Bytes gathered before they are checksummed and written in one piece.
const CHUNK: usize = 1 << 20;

/// A writer that keeps a CRC-32 of what passes; fields gather in a buffer, so the checksum
/// and the writes run over large pieces.
struct Output<W: Write> {
    inner: W,
    buf: Vec<u8>,
    crc: flate2::Crc,
    /// Bytes written so far, the buffer included.
    written: u64,
}

impl<W: Write> Output<W> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() >= CHUNK {
            // A big slice (the names, 16 MB on a million-file image) goes straight out: the
            // buffer would grow to its size and keep that for the rest of the write.
            self.flush_chunk()?;
            self.crc.update(bytes);
            self.written += bytes.len() as u64;
            return self.inner.write_all(bytes);
        }
        self.buf.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        self.crc.update(&self.buf);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// End a part: its checksum, and a fresh one for what follows.
    fn end_part(&mut self) -> io::Result<u32> {
        self.flush_chunk()?;
        Ok(std::mem::replace(&mut self.crc, flate2::Crc::new()).sum())
    }
    #[inline]
    fn u8(&mut self, v: u8) -> io::Result<()> {
        self.put(&[v])
    }
    #[inline]
    fn u16(&mut self, v: u16) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    #[inline]
    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
    #[inline]
    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.put(&v.to_le_bytes())
    }
}

/// A buffered reader of one part that keeps a CRC-32 of what it hands out.
struct Input<R: Read> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    crc: flate2::Crc,
    /// The part's length: no count may promise more than it holds.
    limit: u64,
}

fn damaged(why: &str) -> DecodeError {
    DecodeError(format!("model snapshot: {why}"))
}

#[inline]
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline]
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<R: Read> Input<R> {
    fn new(inner: R, limit: u64) -> Self {
        Input {
            inner,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            crc: flate2::Crc::new(),
            limit,
        }
    }

    /// Make at least `n` (≤ the buffer size) bytes available.
    #[inline]
    fn fill(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.len - self.pos >= n {
            return Ok(());
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<(), DecodeError> {
        self.crc.update(&self.buf[..self.pos]);
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while self.len < n {
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => return Err(damaged("truncated")),
                Ok(got) => self.len += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(damaged(&e.to_string())),
            }
        }
        Ok(())
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.fill(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    #[inline]
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `n` bytes appended to `out`, in pieces of at most the buffer size.
    fn bytes_into(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        while n > 0 {
            let step = n.min(self.buf.len());
            self.fill(step)?;
            out.extend_from_slice(&self.buf[self.pos..self.pos + step]);
            self.pos += step;
            n -= step;
        }
        Ok(())
    }

    /// `n` records of `N` bytes, each decoded by `decode`, appended to `out`: whole runs of
    /// the buffer at a time, with no check per field.
    fn records<const N: usize, T>(
        &mut self,
        n: usize,
        out: &mut Vec<T>,
        decode: impl Fn(&[u8; N]) -> T,
    ) -> Result<(), DecodeError> {
        out.reserve(n);
        self.each_record(n, |record| out.push(decode(record)))
    }

    /// Hand `n` records of `N` bytes to `take`, in order.
    fn each_record<const N: usize>(
        &mut self,
        mut n: usize,
        mut take: impl FnMut(&[u8; N]),
    ) -> Result<(), DecodeError> {
        while n > 0 {
            self.fill(N)?;
            let (whole, _) = self.buf[self.pos..self.len].as_chunks::<N>();
            let count = whole.len().min(n);
            whole[..count].iter().for_each(&mut take);
            self.pos += count * N;
            n -= count;
        }
        Ok(())
    }

    /// A count of records of `size` bytes, refused beyond what the part can hold (so garbage
    /// cannot make us allocate without bound).
    fn count(&mut self, size: u64) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        if n > self.limit / size {
            return Err(damaged("a count exceeds the file"));
        }
        usize::try_from(n).map_err(|_| damaged("a count exceeds memory"))
    }

    /// The part read to its end, with the checksum the trailer gives; nothing may follow.
    fn finish(mut self, stored: u32) -> Result<(), DecodeError> {
        self.crc.update(&self.buf[..self.pos]);
        if self.crc.sum() != stored {
            return Err(damaged("checksum mismatch"));
        }
        if self.pos < self.len || self.inner.read(&mut [0u8; 1]).map_or(true, |n| n > 0) {
            return Err(damaged("trailing bytes"));
        }
        Ok(())
    }
}

fn write_entry<W: Write>(out: &mut Output<W>, e: &Entry) -> io::Result<()> {
    let mut row = [0u8; ENTRY_ROW];
    row[0] = kind_code(e.kind());
    row[1] = payload_flags(&e.payload);
    row[2..6].copy_from_slice(&u32::from(e.mode()).to_le_bytes());
    row[6..10].copy_from_slice(&e.uid.to_le_bytes());
    row[10..14].copy_from_slice(&e.gid.to_le_bytes());
    row[14..22].copy_from_slice(&e.size().to_le_bytes());
    row[22..30].copy_from_slice(&e.mtime().to_le_bytes());
    row[30..38].copy_from_slice(&e.data_offset().to_le_bytes());
    out.put(&row)?;
    if let Payload::Content(hash) = &e.payload {
        out.put(hash)?;
    }
    if let Payload::Link(link) = &e.payload {
        let len = u32::try_from(link.len())
            .map_err(|_| io::Error::other("a link target exceeds 4 GiB"))?;
        out.u32(len)?;
        out.put(link)?;
    }
    Ok(())
}

/// One entry: its fixed row checked and decoded from the buffer in one piece, then the
/// optional content hash and link target.
#[inline]
fn read_entry<R: Read>(r: &mut Input<R>) -> Result<Entry, DecodeError> {
    r.fill(ENTRY_ROW)?;
    let row = &r.buf[r.pos..r.pos + ENTRY_ROW];
    let kind = kind_of(row[0]).ok_or_else(|| damaged("unknown entry kind"))?;
    let flags = row[1];
    let (mode, uid, gid) = (le_u32(row, 2), le_u32(row, 6), le_u32(row, 10));
    let (size, mtime, data_offset) = (le_u64(row, 14), le_u64(row, 22), le_u64(row, 30));
    r.pos += ENTRY_ROW;
    if flags & !(HAS_CONTENT | HAS_LINK) != 0 {
        return Err(damaged("unknown entry flags"));
    }
    let mode = Entry::permission_bits(mode).ok_or_else(|| damaged("mode bits beyond 0o7777"))?;
    let data_block = Entry::block_at(data_offset)
        .ok_or_else(|| damaged("an entry's data is off a tar block"))?;
    let content = if flags & HAS_CONTENT != 0 {
        Some(r.array::<32>()?)
    } else {
        None
    };
    let link_target = if flags & HAS_LINK != 0 {
        let n = r.u32()? as usize;
        // Link targets come from tar headers, which an index bounds at 16 MiB.
        if n > 64 << 20 {
            return Err(damaged("implausible link target"));
        }
        let mut bytes = Vec::with_capacity(n);
        r.bytes_into(n, &mut bytes)?;
        Some(bytes.into())
    } else {
        None
    };
    let header_fields =
        Entry::new(kind, mode, size, mtime).ok_or_else(|| damaged("a file of 1 TiB or more"))?;
    Ok(Entry {
        uid,
        gid,
        payload: Payload::from_parts(content, link_target)
            .ok_or_else(|| damaged("an entry with both a content hash and a link target"))?,
        data_block,
        ..header_fields
    })
}

/// Part 1: the layers, with every entry.
fn read_layers<R: Read>(r: &mut Input<R>) -> Result<Vec<Layer>, DecodeError> {
    if &r.array::<4>()? != MAGIC {
        return Err(damaged("not a layerscope model"));
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(damaged(&format!("format version {version}")));
    }
    let layer_count = r.u32()? as usize;
    if layer_count as u64 > r.limit / 100 {
        return Err(damaged("a count exceeds the file"));
    }
    let mut layers = Vec::with_capacity(layer_count);
    for _ in 0..layer_count {
        let id_len = usize::from(r.u16()?);
        let mut id = Vec::with_capacity(id_len);
        r.bytes_into(id_len, &mut id)?;
        let diff_id: Digest = std::str::from_utf8(&id)
            .map_err(|_| damaged("diff_id is not text"))?
            .parse()
            .map_err(|_| damaged("invalid diff_id"))?;
        let tar_size = r.u64()?;
        let compressed_size = r.u64()?;
        let compression = compression_of(r.u8()?).ok_or_else(|| damaged("unknown compression"))?;
        let meta = LayerMeta {
            diff_id,
            tar_size,
            compressed_size,
            compression,
            size_bytes: r.u64()?,
            skipped_entries: r.u64()?,
        };
        let stats = LayerStats {
            size_bytes: r.u64()?,
            entry_count: r.u64()?,
            added: r.u64()?,
            modified: r.u64()?,
            removed: r.u64()?,
            added_bytes: r.u64()?,
            modified_bytes: r.u64()?,
            removed_bytes: r.u64()?,
        };
        let count = r.count(ENTRY_ROW as u64)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(read_entry(r)?);
        }
        layers.push(Layer {
            entries: Arc::new(entries),
            stats,
            meta,
        });
    }
    Ok(layers)
}

/// Part 2: everything but the layers, read into an otherwise empty tree.
fn read_structure<R: Read>(r: &mut Input<R>) -> Result<FileTree, DecodeError> {
    let node_count = r.count(24)?;
    let mut nodes = Vec::new();
    r.records(node_count, &mut nodes, |b: &[u8; 24]| Node {
        name: le_u64(b, 0),
        parent: le_u32(b, 8),
        first_child: le_u32(b, 12),
        next_sibling: le_u32(b, 16),
        latest: le_u32(b, 20),
    })?;
    let names_len = r.count(1)?;
    let mut names = Vec::with_capacity(names_len);
    r.bytes_into(names_len, &mut names)?;
    let slot_count = r.count(8)?;
    let mut slots = Vec::new();
    r.records(slot_count, &mut slots, |b: &[u8; 8]| u64::from_le_bytes(*b))?;
    let table_len = r.count(8)?;
    let children = ChildTable::from_raw_parts(slots, table_len, node_count)
        .ok_or_else(|| damaged("inconsistent child table"))?;
    let version_count = r.count(12)?;
    let mut versions = Vec::new();
    r.records(version_count, &mut versions, |b: &[u8; 12]| VersionRecord {
        layer: le_u32(b, 0),
        state: le_u32(b, 4),
        prev: le_u32(b, 8),
    })?;
    let mut visits = VisitTable::default();
    visits.reserve_exact(node_count);
    r.each_record(node_count, |b: &[u8; 20]| {
        visits.push_stored(Visits {
            sum: le_u64(b, 0),
            min: le_u64(b, 8),
            count: le_u32(b, 16),
        })
    })?;
    let hidden_count = r.count(20)?;
    let mut hidden = Vec::new();
    r.records(hidden_count, &mut hidden, |b: &[u8; 20]| HideRecord {
        node: le_u32(b, 0),
        layer: le_u32(b, 4),
        entry: le_u32(b, 8),
        by_layer: le_u32(b, 12),
        by_state: le_u32(b, 16),
    })?;
    let tree = FileTree {
        nodes,
        names,
        children,
        versions,
        visits,
        layers: Vec::new(),
        hidden,
    };
    tree.check_nodes()?;
    Ok(tree)
}

/// Read part `at..at + len` of a snapshot with `part`, checking it against `crc`.
fn read_part<R: Read, T>(
    open: &impl Fn(u64) -> io::Result<R>,
    at: u64,
    len: u64,
    crc: u32,
    part: impl FnOnce(&mut Input<io::Take<R>>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let input = open(at).map_err(|e| damaged(&e.to_string()))?;
    let mut r = Input::new(input.take(len), len);
    let value = part(&mut r)?;
    r.finish(crc)?;
    Ok(value)
}

impl FileTree {
    /// Write the whole model (see the module documentation) to `out`.
    pub fn write_snapshot<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = Output {
            inner: out,
            buf: Vec::with_capacity(CHUNK + 64),
            crc: flate2::Crc::new(),
            written: 0,
        };
        out.put(MAGIC)?;
        out.u32(FORMAT_VERSION)?;
        out.u32(self.layers.len() as u32)?;
        for layer in &self.layers {
            let m = &layer.meta;
            let diff_id = m.diff_id.to_string();
            out.u16(diff_id.len() as u16)?;
            out.put(diff_id.as_bytes())?;
            out.u64(m.tar_size)?;
            out.u64(m.compressed_size)?;
            out.u8(compression_code(m.compression))?;
            out.u64(m.size_bytes)?;
            out.u64(m.skipped_entries)?;
            let s = &layer.stats;
            for v in [
                s.size_bytes,
                s.entry_count,
                s.added,
                s.modified,
                s.removed,
                s.added_bytes,
                s.modified_bytes,
                s.removed_bytes,
            ] {
                out.u64(v)?;
            }
            out.u64(layer.entries.len() as u64)?;
            for e in layer.entries.iter() {
                write_entry(&mut out, e)?;
            }
        }
        let part1_len = out.written;
        let part1_crc = out.end_part()?;
        out.u64(self.nodes.len() as u64)?;
        for n in &self.nodes {
            out.u64(n.name)?;
            for v in [n.parent, n.first_child, n.next_sibling, n.latest] {
                out.u32(v)?;
            }
        }
        out.u64(self.names.len() as u64)?;
        out.put(&self.names)?;
        let (slots, len) = self.children.raw_parts();
        out.u64(slots.len() as u64)?;
        for &slot in slots {
            out.u64(slot)?;
        }
        out.u64(len as u64)?;
        out.u64(self.versions.len() as u64)?;
        for v in &self.versions {
            for x in [v.layer, v.state, v.prev] {
                out.u32(x)?;
            }
        }
        for node in 0..self.nodes.len() {
            let Visits { count, sum, min } = self.visits.get(node as u32);
            out.u64(sum)?;
            out.u64(min)?;
            out.u32(count)?;
        }
        out.u64(self.hidden.len() as u64)?;
        for h in &self.hidden {
            for x in [h.node, h.layer, h.entry, h.by_layer, h.by_state] {
                out.u32(x)?;
            }
        }
        let part2_crc = out.end_part()?;
        let mut trailer = [0u8; TRAILER as usize];
        trailer[..8].copy_from_slice(&part1_len.to_le_bytes());
        trailer[8..12].copy_from_slice(&part1_crc.to_le_bytes());
        trailer[12..].copy_from_slice(&part2_crc.to_le_bytes());
        out.inner.write_all(&trailer)?;
        out.inner.flush()
    }

    /// Read a model written by [`FileTree::write_snapshot`], `len` bytes long, checking it
    /// whole (see the module documentation). `open(offset)` gives a reader of the snapshot
    /// from that offset on; the two parts are read through two readers, on two threads.
    pub fn read_snapshot<R, F>(open: F, len: u64) -> Result<FileTree, DecodeError>
    where
        R: Read,
        F: Fn(u64) -> io::Result<R> + Sync,
    {
        let trailer_at = len
            .checked_sub(TRAILER)
            .ok_or_else(|| damaged("truncated"))?;
        let mut trailer = [0u8; TRAILER as usize];
        open(trailer_at)
            .and_then(|mut r| r.read_exact(&mut trailer))
            .map_err(|_| damaged("truncated"))?;
        let part1_len = le_u64(&trailer, 0);
        let (part1_crc, part2_crc) = (le_u32(&trailer, 8), le_u32(&trailer, 12));
        let part2_len = trailer_at
            .checked_sub(part1_len)
            .ok_or_else(|| damaged("a part exceeds the file"))?;
        let (layers, structure) = std::thread::scope(|scope| {
            let open = &open;
            let structure = scope
                .spawn(move || read_part(open, part1_len, part2_len, part2_crc, read_structure));
            let layers = read_part(open, 0, part1_len, part1_crc, read_layers);
            let structure = structure
                .join()
                .unwrap_or_else(|_| Err(damaged("the decoding thread failed")));
            (layers, structure)
        });
        let mut tree = structure?;
        tree.layers = layers?;
        tree.check_versions()?;
        Ok(tree)
    }

    /// Every link from a node points where it may (versions are counted, not yet checked).
    fn check_nodes(&self) -> Result<(), DecodeError> {
        let n = self.nodes.len() as u64;
        let root = self.nodes.first().ok_or_else(|| damaged("no root"))?;
        if root.parent != NONE || root.name != 0 {
            return Err(damaged("bad root"));
        }
        if self.visits.len() != self.nodes.len() {
            return Err(damaged("visits do not match the nodes"));
        }
        let optional = |v: u32, below: u64| v == NONE || u64::from(v) < below;
        for (id, node) in self.nodes.iter().enumerate() {
            let id = id as u64;
            let start = node.name >> NAME_LEN_BITS;
            let len = node.name & ((1 << NAME_LEN_BITS) - 1);
            let name_ok = start
                .checked_add(len)
                .is_some_and(|end| end <= self.names.len() as u64);
            // Parents come before their children, and each sibling link goes to an older
            // node with the same parent: every walk ends.
            let parent_ok = id == 0 || u64::from(node.parent) < id;
            let first_ok = node.first_child == NONE
                || (u64::from(node.first_child) > id
                    && u64::from(node.first_child) < n
                    && u64::from(self.nodes[node.first_child as usize].parent) == id);
            let sibling_ok = node.next_sibling == NONE
                || (u64::from(node.next_sibling) < id
                    && self.nodes[node.next_sibling as usize].parent == node.parent);
            let latest_ok = optional(node.latest, self.versions.len() as u64);
            if !(name_ok && parent_ok && first_ok && sibling_ok && latest_ok) {
                return Err(damaged("a node links outside the model"));
            }
        }
        Ok(())
    }

    /// Every link from a version or a hidden file to a layer's entries points where it may.
    fn check_versions(&self) -> Result<(), DecodeError> {
        let n = self.nodes.len() as u64;
        for (id, v) in self.versions.iter().enumerate() {
            let Some(layer) = self.layers.get(v.layer as usize) else {
                return Err(damaged("a version names a missing layer"));
            };
            let state_ok = v.state == REMOVED
                || v.state == IMPLICIT
                || (v.state as usize) < layer.entries.len();
            let prev_ok = v.prev == NONE || (v.prev as usize) < id;
            if !(state_ok && prev_ok) {
                return Err(damaged("a version links outside the model"));
            }
        }
        let entry_ok = |layer: u32, index: u32| {
            self.layers
                .get(layer as usize)
                .is_some_and(|l| (index as usize) < l.entries.len())
        };
        for h in &self.hidden {
            let by_ok = if h.by_state == REMOVED || h.by_state == IMPLICIT {
                (h.by_layer as usize) < self.layers.len()
            } else {
                entry_ok(h.by_layer, h.by_state)
            };
            if u64::from(h.node) >= n || !entry_ok(h.layer, h.entry) || !by_ok {
                return Err(damaged("a hidden file links outside the model"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyse;

    fn layer(entries: &[(&str, &[u8])]) -> crate::layer::LayerIndex {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).ok();
        }
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder.append_link(&mut link, "bin/sh", "busybox").ok();
        let bytes = builder.into_inner().unwrap_or_default();
        match crate::layer::index_layer(bytes.as_slice(), None) {
            Ok(index) => index,
            Err(e) => panic!("test layer does not index: {e}"),
        }
    }

    fn sample() -> FileTree {
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[
            ("etc/passwd", b"root"),
            ("usr/bin/tool", b"v1"),
            ("tmp/x", b"12345"),
        ]));
        tree.push_layer(layer(&[
            ("etc/passwd", b"root+user"),
            ("tmp/.wh.x", b""),
            ("app/main.py", b"print()"),
        ]));
        tree
    }

    /// A snapshot read from memory, `len` bytes long as the caller says.
    fn read(bytes: &[u8], len: u64) -> Result<FileTree, DecodeError> {
        FileTree::read_snapshot(|at| Ok(bytes.get(at as usize..).unwrap_or_default()), len)
    }

    fn bytes_of(tree: &FileTree) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = tree.write_snapshot(&mut out) {
            panic!("writing to memory failed: {e}");
        }
        out
    }

    #[test]
    fn round_trip_keeps_paths_history_and_figures() {
        let tree = sample();
        let bytes = bytes_of(&tree);
        let back = match read(&bytes, bytes.len() as u64) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(back.node_count(), tree.node_count());
        for id in 0..tree.node_count() as u32 {
            let node = super::super::NodeId(id);
            assert_eq!(back.path(node), tree.path(node));
            assert!(back.versions(node).eq(tree.versions(node)));
            assert_eq!(back.visits(node), tree.visits(node));
            assert_eq!(back.lookup(&tree.path(node)), Some(node));
        }
        for l in 0..tree.layer_count() {
            assert_eq!(back.layer_stats(l), tree.layer_stats(l));
            assert_eq!(back.layer_meta(l), tree.layer_meta(l));
        }
        assert_eq!(analyse(&back), analyse(&tree));
        // The findings read which event hid each stored file.
        assert!(tree.hidden_files().len() > 0);
        assert!(back.hidden_files().eq(tree.hidden_files()));
        let steps = vec![String::new(); tree.layer_count()];
        assert_eq!(
            crate::findings::find(&back, &steps),
            crate::findings::find(&tree, &steps)
        );
        assert_eq!(bytes_of(&back), bytes);
    }

    /// Names longer in all than a write chunk go out in one piece, past the buffer: the
    /// snapshot reads back whole and checks out.
    #[test]
    fn names_bigger_than_a_chunk_round_trip() {
        let names: Vec<String> = (0..9_000)
            .map(|i| format!("srv/{i:06}{}", "n".repeat(120)))
            .collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let mut tree = FileTree::new();
        tree.push_layer(layer(&entries));
        assert!(tree.names.len() > CHUNK, "the names alone fill a chunk");
        let bytes = bytes_of(&tree);
        let back = match read(&bytes, bytes.len() as u64) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(back.node_count(), tree.node_count());
        for id in (0..tree.node_count() as u32).step_by(97) {
            let node = super::super::NodeId(id);
            assert_eq!(back.path(node), tree.path(node));
        }
        assert_eq!(bytes_of(&back), bytes);
    }

    #[test]
    fn damage_is_refused() {
        let bytes = bytes_of(&sample());
        // Every fifth byte, and each byte of the trailer that locates and checks the parts.
        let trailer = bytes.len() - TRAILER as usize;
        for at in (0..bytes.len()).step_by(5).chain(trailer..bytes.len()) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x21;
            assert!(
                read(&damaged, damaged.len() as u64).is_err(),
                "flip at {at}"
            );
        }
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(read(&bytes[..cut], bytes.len() as u64).is_err());
            assert!(read(&bytes[..cut], cut as u64).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer, longer.len() as u64).is_err());
    }
}
