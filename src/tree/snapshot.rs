//! The merged model in a compact binary form, so a cache can hand back a whole image's tree
//! without merging its layers again: reopening a million-file image is then reading one file
//! and filling vectors, with no path lookups.
//!
//! Layout (integers little-endian), streamed in both directions:
//! ```text
//! magic "LSTR" | format version u32 |
//! layers: count u32, each: meta (diff_id len u16 + ASCII, tar_size u64, compressed_size u64,
//!         compression u8, size_bytes u64, skipped u64), stats (8 × u64),
//!         entries (count u64, each: kind u8, mode u32, uid u32, gid u32, size u64, mtime u64,
//!         data_offset u64, flags u8, [content 32], [link len u32 + bytes]) |
//! nodes: count u64, each: name u64, parent u32, first_child u32, next_sibling u32, latest u32 |
//! names: len u64 + bytes | child table: slots u64 + each u64, len u64 |
//! versions: count u64, each: layer u32, state u32, prev u32 |
//! visits: one per node, each: sum u64, min u64, count u32 |
//! hidden files: count u64, each: node u32, layer u32, entry u32, by_layer u32, by_state u32 |
//! crc32 of everything before it, u32
//! ```
//! Decoding checks every count against a limit, every link between nodes, versions and
//! entries (parents before children, older versions before newer ones, so no walk can loop),
//! and the checksum; a damaged file is an error, never a panic, a hang or a wrong tree.

use std::io::{self, Read, Write};

use super::lookup::ChildTable;
use super::{
    FileTree, HideRecord, Layer, LayerStats, Node, PackedVisits, VersionRecord, IMPLICIT,
    NAME_LEN_BITS, NONE, REMOVED,
};
use crate::digest::Digest;
use crate::layer::codec::{compression_code, compression_of, kind_code, kind_of};
use crate::layer::{DecodeError, Entry, LayerMeta};

const MAGIC: &[u8; 4] = b"LSTR";
/// Bump when the layout or the meaning of a field changes: older snapshots are then ignored.
pub const FORMAT_VERSION: u32 = 2;

const HAS_CONTENT: u8 = 1;
const HAS_LINK: u8 = 2;

/// Bytes gathered before they are checksummed and written in one piece.
const CHUNK: usize = 1 << 20;

/// A writer that keeps a CRC-32 of what passes; fields gather in a buffer, so the checksum
/// and the writes run over large pieces.
struct Output<W: Write> {
    inner: W,
    buf: Vec<u8>,
    crc: flate2::Crc,
}

impl<W: Write> Output<W> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
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

/// A buffered reader that keeps a CRC-32 of what it hands out.
struct Input<R: Read> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    crc: flate2::Crc,
}

fn damaged(why: &str) -> DecodeError {
    DecodeError(format!("model snapshot: {why}"))
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            crc: flate2::Crc::new(),
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

    /// A count, refused beyond `limit` (so garbage cannot make us allocate without bound).
    fn count(&mut self, limit: u64) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        if n > limit {
            return Err(damaged("a count exceeds the file"));
        }
        usize::try_from(n).map_err(|_| damaged("a count exceeds memory"))
    }

    /// The CRC of everything read so far, then the stored one; and nothing may follow.
    fn finish(mut self) -> Result<(), DecodeError> {
        self.crc.update(&self.buf[..self.pos]);
        let computed = self.crc.sum();
        let stored = self.u32()?;
        if computed != stored {
            return Err(damaged("checksum mismatch"));
        }
        if self.pos < self.len || self.inner.read(&mut [0u8; 1]).map_or(true, |n| n > 0) {
            return Err(damaged("trailing bytes"));
        }
        Ok(())
    }
}

fn write_entry<W: Write>(out: &mut Output<W>, e: &Entry) -> io::Result<()> {
    out.u8(kind_code(e.kind))?;
    for v in [e.mode, e.uid, e.gid] {
        out.u32(v)?;
    }
    for v in [e.size, e.mtime, e.data_offset] {
        out.u64(v)?;
    }
    let flags = if e.content.is_some() { HAS_CONTENT } else { 0 }
        | if e.link_target.is_some() { HAS_LINK } else { 0 };
    out.u8(flags)?;
    if let Some(hash) = &e.content {
        out.put(hash)?;
    }
    if let Some(link) = &e.link_target {
        let len = u32::try_from(link.len())
            .map_err(|_| io::Error::other("a link target exceeds 4 GiB"))?;
        out.u32(len)?;
        out.put(link)?;
    }
    Ok(())
}

fn read_entry<R: Read>(r: &mut Input<R>) -> Result<Entry, DecodeError> {
    let kind = kind_of(r.u8()?).ok_or_else(|| damaged("unknown entry kind"))?;
    let (mode, uid, gid) = (r.u32()?, r.u32()?, r.u32()?);
    let (size, mtime, data_offset) = (r.u64()?, r.u64()?, r.u64()?);
    let flags = r.u8()?;
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
        Some(bytes.into_boxed_slice())
    } else {
        None
    };
    Ok(Entry {
        kind,
        mode,
        uid,
        gid,
        size,
        mtime,
        content,
        link_target,
        data_offset,
    })
}

impl FileTree {
    /// Write the whole model (see the module documentation) to `out`.
    pub fn write_snapshot<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = Output {
            inner: out,
            buf: Vec::with_capacity(CHUNK + 64),
            crc: flate2::Crc::new(),
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
            for e in &layer.entries {
                write_entry(&mut out, e)?;
            }
        }
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
        for v in &self.visits {
            let (sum, min, count) = (v.sum, v.min, v.count);
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
        out.flush_chunk()?;
        let crc = out.crc.sum();
        out.inner.write_all(&crc.to_le_bytes())?;
        out.inner.flush()
    }

    /// Read a model written by [`FileTree::write_snapshot`], at most `limit` bytes long,
    /// checking it whole (see the module documentation).
    pub fn read_snapshot<R: Read>(input: R, limit: u64) -> Result<FileTree, DecodeError> {
        let mut r = Input::new(input);
        if &r.array::<4>()? != MAGIC {
            return Err(damaged("not a layerscope model"));
        }
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(damaged(&format!("format version {version}")));
        }
        // Smallest encodings: an entry 46 bytes, a node 24, a slot 8, a version 12.
        let layer_count = r.u32()? as usize;
        if layer_count as u64 > limit / 100 {
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
            let compression =
                compression_of(r.u8()?).ok_or_else(|| damaged("unknown compression"))?;
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
            let count = r.count(limit / 46)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(read_entry(&mut r)?);
            }
            layers.push(Layer {
                entries,
                stats,
                meta,
            });
        }
        let node_count = r.count(limit / 24)?;
        let mut nodes = Vec::with_capacity(node_count);
        for _ in 0..node_count {
            nodes.push(Node {
                name: r.u64()?,
                parent: r.u32()?,
                first_child: r.u32()?,
                next_sibling: r.u32()?,
                latest: r.u32()?,
            });
        }
        let names_len = r.count(limit)?;
        let mut names = Vec::with_capacity(names_len);
        r.bytes_into(names_len, &mut names)?;
        let slot_count = r.count(limit / 8)?;
        let mut slots = Vec::with_capacity(slot_count);
        for _ in 0..slot_count {
            slots.push(r.u64()?);
        }
        let table_len = r.count(limit / 8)?;
        let children = ChildTable::from_raw_parts(slots, table_len, node_count)
            .ok_or_else(|| damaged("inconsistent child table"))?;
        let version_count = r.count(limit / 12)?;
        let mut versions = Vec::with_capacity(version_count);
        for _ in 0..version_count {
            versions.push(VersionRecord {
                layer: r.u32()?,
                state: r.u32()?,
                prev: r.u32()?,
            });
        }
        let mut visits = Vec::with_capacity(node_count);
        for _ in 0..node_count {
            visits.push(PackedVisits {
                sum: r.u64()?,
                min: r.u64()?,
                count: r.u32()?,
            });
        }
        let hidden_count = r.count(limit / 20)?;
        let mut hidden = Vec::with_capacity(hidden_count);
        for _ in 0..hidden_count {
            hidden.push(HideRecord {
                node: r.u32()?,
                layer: r.u32()?,
                entry: r.u32()?,
                by_layer: r.u32()?,
                by_state: r.u32()?,
            });
        }
        r.finish()?;
        let tree = FileTree {
            nodes,
            names,
            children,
            versions,
            visits,
            layers,
            hidden,
        };
        tree.check_links()?;
        Ok(tree)
    }

    /// Every link between nodes, names, versions and entries points where it may.
    fn check_links(&self) -> Result<(), DecodeError> {
        let n = self.nodes.len() as u64;
        let root = self.nodes.first().ok_or_else(|| damaged("no root"))?;
        if root.parent != NONE || root.name != 0 {
            return Err(damaged("bad root"));
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
        if self.visits.len() != self.nodes.len() {
            return Err(damaged("visits do not match the nodes"));
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
        let back = match FileTree::read_snapshot(&bytes[..], bytes.len() as u64) {
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

    #[test]
    fn damage_is_refused() {
        let bytes = bytes_of(&sample());
        for at in (0..bytes.len()).step_by(5) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x21;
            assert!(
                FileTree::read_snapshot(&damaged[..], damaged.len() as u64).is_err(),
                "flip at {at}"
            );
        }
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(FileTree::read_snapshot(&bytes[..cut], bytes.len() as u64).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(FileTree::read_snapshot(&longer[..], longer.len() as u64).is_err());
    }
}
