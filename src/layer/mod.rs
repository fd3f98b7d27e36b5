//! One layer blob → a compact per-layer index.
//!
//! [`index_layer`] sniffs the compression from the magic bytes (never the media type),
//! decompresses while it reads (gzip with several members, zstd, or plain tar), walks the tar
//! headers, hashes every regular file's content and the whole uncompressed stream (the
//! diff_id), and keeps only a [`LayerIndex`]: entries, whiteouts and opaque directories, with
//! path bytes in one arena. Nothing else of the layer stays in memory.
//!
//! An entry's path is stored as the length it shares with the previous entry's path and the
//! rest. A tar lists a directory's files one after another, so on a big layer that keeps a few
//! bytes a path instead of the whole path (61 → 4.4 bytes on average for a million-file
//! Python tree).

pub(crate) mod codec;
pub mod extract;
mod index;
pub mod path;
mod stream;
mod tar;

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use crate::digest::{Algorithm, Digest};

pub use codec::{DecodeError, FORMAT_VERSION as INDEX_FORMAT_VERSION};
pub use path::{normalize_path, split_last};
pub use stream::sniff;

/// What a tar entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file (tar type `0`, the old `\0`, or `7`).
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to another path of the same or a lower layer.
    Hardlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
}

impl EntryKind {
    /// A one-letter tag as `ls -l` prints it (`-`, `d`, `l`, `h`, `c`, `b`, `p`).
    pub fn tag(self) -> char {
        match self {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Hardlink => 'h',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Fifo => 'p',
        }
    }
}

/// One filesystem entry of a layer, as its tar header (and content) describe it.
///
/// A million-file image holds a million entries, so an entry keeps its kind, permission bits,
/// size and modification time packed in 11 bytes and takes 56 bytes in all. Read them with
/// [`Self::kind`], [`Self::mode`], [`Self::size`] and [`Self::mtime`]; make one with
/// [`Self::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// A regular file's content digest or a link's target (see [`Self::content`] and
    /// [`Self::link_target`]).
    pub payload: Payload,
    /// Where the entry's data starts in the uncompressed tar, in 512-byte blocks (see
    /// [`Self::data_offset`]).
    pub(crate) data_block: u32,
    /// Kind (bits 0–2), permission bits (3–14), size (15–54) and mtime (55–87), little-endian.
    pub(crate) packed: [u8; 11],
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() == 56);

/// The largest regular file an entry holds: 1 TiB − 1 byte (40 bits). A layer's tar is refused
/// beyond 2 TiB anyway, and a file this big in a layer is refused too.
pub const MAX_FILE_SIZE: u64 = (1 << 40) - 1;

/// The latest modification time an entry holds, in seconds since the epoch: 8^11 − 1, the
/// largest an ustar header's octal field can write (in the year 2242). Later times, which only
/// PAX records or base-256 numbers can give, read as this one, as earlier ones read as 0.
pub const MAX_MTIME: u64 = (1 << 33) - 1;

impl Entry {
    /// An entry of `kind` with permission bits `mode`, `size` bytes of content and the
    /// modification time `mtime`, owned by root, with no payload and its data at the tar's
    /// start (set the public fields for more). `None` when `mode` has bits beyond `0o7777` or
    /// `size` exceeds [`MAX_FILE_SIZE`]; an `mtime` beyond [`MAX_MTIME`] reads as that.
    pub fn new(kind: EntryKind, mode: u16, size: u64, mtime: u64) -> Option<Entry> {
        Some(Entry {
            uid: 0,
            gid: 0,
            payload: Payload::None,
            data_block: 0,
            packed: Self::pack(kind, mode, size, mtime)?,
        })
    }

    /// The packed bytes of [`Self::new`]'s arguments (a `const fn`, for static entries).
    pub(crate) const fn pack(
        kind: EntryKind,
        mode: u16,
        size: u64,
        mtime: u64,
    ) -> Option<[u8; 11]> {
        if mode & !0o7777 != 0 || size > MAX_FILE_SIZE {
            return None;
        }
        let mtime = if mtime > MAX_MTIME { MAX_MTIME } else { mtime };
        let bits = codec::kind_code(kind) as u128
            | (mode as u128) << 3
            | (size as u128) << 15
            | (mtime as u128) << 55;
        let wide = bits.to_le_bytes();
        let mut packed = [0u8; 11];
        let mut i = 0;
        while i < packed.len() {
            packed[i] = wide[i];
            i += 1;
        }
        Some(packed)
    }

    /// Eight packed bytes from `at` (at most 3), as a little-endian word.
    #[inline]
    fn packed_word(&self, at: usize) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.packed[at..at + 8]);
        u64::from_le_bytes(word)
    }

    /// What the entry is.
    #[inline]
    pub fn kind(&self) -> EntryKind {
        // Only `pack` writes these bits, with a kind's code.
        codec::kind_of(self.packed[0] & 7).unwrap_or(EntryKind::Fifo)
    }

    /// Permission bits, including setuid/setgid/sticky (`0o7777` mask; type bits dropped).
    #[inline]
    pub fn mode(&self) -> u16 {
        (u16::from_le_bytes([self.packed[0], self.packed[1]]) >> 3) & 0o7777
    }

    /// Content size for regular files; 0 for every other kind.
    #[inline]
    pub fn size(&self) -> u64 {
        (self.packed_word(1) >> 7) & MAX_FILE_SIZE
    }

    /// Modification time, seconds since the epoch (earlier times read as 0, times beyond
    /// [`MAX_MTIME`] as that).
    #[inline]
    pub fn mtime(&self) -> u64 {
        (self.packed_word(3) >> 31) & MAX_MTIME
    }

    /// SHA-256 of the content, for regular files only.
    pub fn content(&self) -> Option<[u8; 32]> {
        match &self.payload {
            Payload::Content(hash) => Some(*hash),
            _ => None,
        }
    }

    /// Symlinks: the target bytes as stored. Hard links: the normalised path of the target
    /// (no leading `/`). `None` for other kinds.
    pub fn link_target(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Link(target) => Some(target),
            _ => None,
        }
    }

    /// Offset of the entry's data in the uncompressed tar (where a file's bytes start; for
    /// other kinds, the byte after the header), so a viewer can read the range again.
    pub fn data_offset(&self) -> u64 {
        u64::from(self.data_block) * tar::BLOCK as u64
    }

    /// Permission bits as an entry keeps them: `None` for bits beyond `0o7777`, which no
    /// header reading gives (a stored index or model that holds them is damaged).
    pub(crate) fn permission_bits(mode: u32) -> Option<u16> {
        u16::try_from(mode).ok().filter(|m| m & !0o7777 == 0)
    }

    /// The block an entry's data starts at, for an offset in the tar: `None` unless the offset
    /// is on a block boundary, as every tar header ends on one, and within the first 2 TiB of
    /// the tar. Storing blocks keeps an entry at 56 bytes; a layer of 2 TiB is refused.
    pub(crate) fn block_at(data_offset: u64) -> Option<u32> {
        // Every tar header, and so every entry's data, starts on a block.
        if !data_offset.is_multiple_of(tar::BLOCK as u64) {
            return None;
        }
        u32::try_from(data_offset / tar::BLOCK as u64).ok()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("size", &self.size())
            .field("mtime", &self.mtime())
            .field("payload", &self.payload)
            .field("data_offset", &self.data_offset())
            .finish()
    }
}

/// What an entry carries beyond its header: a regular file holds a content digest and a link
/// holds a target, never both, so the two share their bytes. Every member has alignment 1,
/// which keeps the payload at 33 bytes and an [`Entry`] at 56.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Directories, devices and pipes.
    None,
    /// A regular file's SHA-256.
    Content([u8; 32]),
    /// A symlink's or hard link's target.
    Link(LinkTarget),
}

impl Payload {
    /// The payload of an entry that has the digest `content` or the target `link` (at most
    /// one of them: `None` when both are given, which no tar header gives).
    pub fn from_parts(content: Option<[u8; 32]>, link: Option<LinkTarget>) -> Option<Self> {
        match (content, link) {
            (None, None) => Some(Payload::None),
            (Some(hash), None) => Some(Payload::Content(hash)),
            (None, Some(target)) => Some(Payload::Link(target)),
            (Some(_), Some(_)) => None,
        }
    }
}

/// A link's target bytes, owned through an address kept as plain bytes.
///
/// A pointer has alignment 8, and beside the 32-byte digest it shares [`Payload`] with it
/// would round an [`Entry`] up from 56 bytes to 64 (11 MB on a million-file image). Kept as
/// bytes, the address has alignment 1. Only this type turns it back into the allocation it
/// came from. Dereferences to the bytes.
pub struct LinkTarget {
    address: [u8; std::mem::size_of::<usize>()],
    len: [u8; std::mem::size_of::<usize>()],
}

impl LinkTarget {
    fn new(bytes: Box<[u8]>) -> Self {
        let len = bytes.len();
        let data = Box::into_raw(bytes).cast::<u8>();
        LinkTarget {
            address: data.expose_provenance().to_ne_bytes(),
            len: len.to_ne_bytes(),
        }
    }

    /// The allocation [`Self::new`] took ownership of.
    fn raw(&self) -> *mut [u8] {
        let data = std::ptr::with_exposed_provenance_mut::<u8>(usize::from_ne_bytes(self.address));
        std::ptr::slice_from_raw_parts_mut(data, usize::from_ne_bytes(self.len))
    }
}

impl std::ops::Deref for LinkTarget {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `raw` is the boxed slice that `new` leaked, whose provenance `new`
        // exposed. It is freed only by `drop`, which takes `&mut self`, so it is alive and
        // unaliased by any `&mut` for as long as `self` is borrowed.
        unsafe { &*self.raw() }
    }
}

impl Drop for LinkTarget {
    fn drop(&mut self) {
        // SAFETY: `raw` is the `Box<[u8]>` that `new` turned into a pointer, owned by this
        // value alone (no other constructor, `Clone` allocates anew), and dropped once.
        drop(unsafe { Box::from_raw(self.raw()) });
    }
}

impl Clone for LinkTarget {
    fn clone(&self) -> Self {
        LinkTarget::new(Box::from(&**self))
    }
}

impl PartialEq for LinkTarget {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for LinkTarget {}

impl std::hash::Hash for LinkTarget {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<Vec<u8>> for LinkTarget {
    fn from(bytes: Vec<u8>) -> Self {
        LinkTarget::new(bytes.into_boxed_slice())
    }
}

impl From<&[u8]> for LinkTarget {
    fn from(bytes: &[u8]) -> Self {
        LinkTarget::new(bytes.into())
    }
}

/// A run of path bytes in an index's arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Append `bytes` to `arena` and name them.
    fn store(arena: &mut Vec<u8>, bytes: &[u8]) -> Result<Span, LayerError> {
        let too_large = || LayerError::TooLarge("the layer's path names exceed 4 GiB".to_string());
        let start = u32::try_from(arena.len()).map_err(|_| too_large())?;
        let len = u32::try_from(bytes.len()).map_err(|_| too_large())?;
        start.checked_add(len).ok_or_else(too_large)?;
        arena.extend_from_slice(bytes);
        Ok(Span { start, len })
    }

    fn get(self, arena: &[u8]) -> &[u8] {
        let start = self.start as usize;
        &arena[start..start + self.len as usize]
    }
}

/// The entries' paths, front-coded one after another in one buffer: for each path, how many
/// bytes it shares with the previous one and how many follow (both LEB128), then those bytes.
/// A tar lists a directory's files one after another, so the two lengths take two bytes where
/// two `u32` took eight (6 MB on a layer of a million files, while its index waits to be
/// merged or written to the cache).
#[derive(Clone, Debug, Default)]
pub(crate) struct FrontCoded {
    bytes: Vec<u8>,
    count: usize,
}

impl FrontCoded {
    /// Append a path that shares `shared` bytes with the previous one and then has `suffix`.
    pub fn push(&mut self, shared: usize, suffix: &[u8]) -> Result<(), LayerError> {
        // As when suffixes were counted in u32: a bound on what one layer's names may take.
        if self.bytes.len() + suffix.len() + 2 * MAX_LEB128 > u32::MAX as usize {
            return Err(LayerError::TooLarge(
                "the layer's path names exceed 4 GiB".to_string(),
            ));
        }
        push_leb128(&mut self.bytes, shared);
        push_leb128(&mut self.bytes, suffix.len());
        self.bytes.extend_from_slice(suffix);
        self.count += 1;
        Ok(())
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Each path as what it shares with the previous one and the rest, in order. A malformed
    /// buffer (never built here) ends the sequence early instead of panicking.
    pub fn parts(&self) -> FrontCodedParts<'_> {
        FrontCodedParts { rest: &self.bytes }
    }

    /// The paths themselves, in order.
    pub fn cursor(&self) -> PathCursor<'_> {
        PathCursor {
            parts: self.parts(),
            current: Vec::new(),
        }
    }
}

/// The most bytes LEB128 takes for a `usize`.
const MAX_LEB128: usize = 10;

fn push_leb128(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A LEB128 number at the start of `bytes`, and the bytes after it.
fn read_leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_LEB128) {
        let bits = usize::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        value |= bits;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// The (shared length, suffix) pairs of a [`FrontCoded`].
pub(crate) struct FrontCodedParts<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FrontCodedParts<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (shared, rest) = read_leb128(self.rest)?;
        let (len, rest) = read_leb128(rest)?;
        if len > rest.len() {
            self.rest = &[];
            return None;
        }
        let (suffix, rest) = rest.split_at(len);
        self.rest = rest;
        Some((shared, suffix))
    }
}

/// Rebuilds front-coded paths in order, each in the same buffer.
pub(crate) struct PathCursor<'a> {
    parts: FrontCodedParts<'a>,
    current: Vec<u8>,
}

impl PathCursor<'_> {
    /// The next entry's path, and how many of its first bytes it shares with the previous
    /// path (0 for the first).
    pub fn next_path(&mut self) -> Option<(&[u8], usize)> {
        let (shared, suffix) = self.parts.next()?;
        // Paths are pushed and decoded with `shared` within the previous path; `min` only
        // keeps a broken invariant from panicking.
        let shared = shared.min(self.current.len());
        self.current.truncate(shared);
        self.current.extend_from_slice(suffix);
        Some((&self.current, shared))
    }
}

/// Entries of a layer handed on while the layer is still being read, in tar order, so a model
/// can merge them before the layer ends (see [`index_layer_tapped`]). Paths are front-coded
/// as in the index: what each shares with the previous entry's path (across batches), then
/// the rest.
#[derive(Debug, Default)]
pub struct EntryBatch {
    suffixes: Vec<u8>,
    items: Vec<BatchItem>,
}

/// One entry of an [`EntryBatch`]: what the merge needs of it.
#[derive(Clone, Copy, Debug)]
struct BatchItem {
    shared: u32,
    suffix_len: u32,
    kind: EntryKind,
    size: u64,
}

impl EntryBatch {
    /// Entries a batch holds before it is handed on: big enough that the channel costs
    /// nothing per entry, small enough that the model follows the tar closely.
    const CAPACITY: usize = 4096;

    /// An empty batch with room for a full one (paths of 16 new bytes on average).
    fn with_capacity() -> Self {
        EntryBatch {
            suffixes: Vec::with_capacity(Self::CAPACITY * 16),
            items: Vec::with_capacity(Self::CAPACITY),
        }
    }

    /// Number of entries in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn push(&mut self, shared: u32, suffix: &[u8], kind: EntryKind, size: u64) {
        self.suffixes.extend_from_slice(suffix);
        self.items.push(BatchItem {
            shared,
            // Within a path, which extended headers keep under 16 MiB.
            suffix_len: suffix.len() as u32,
            kind,
            size,
        });
    }

    /// The kinds of the batch's entries, in order.
    pub fn kinds(&self) -> impl Iterator<Item = EntryKind> + '_ {
        self.items.iter().map(|item| item.kind)
    }

    /// Call `each(path, shared, kind, size)` for every entry in order. `path` carries the
    /// previous entry's path in and the last one out, so consecutive batches chain.
    pub fn replay(&self, path: &mut Vec<u8>, mut each: impl FnMut(&[u8], usize, EntryKind, u64)) {
        let mut paths = self.paths_after(std::mem::take(path));
        let mut items = self.items.iter();
        while let (Some((path, shared)), Some(item)) = (paths.next_path(), items.next()) {
            each(path, shared, item.kind, item.size);
        }
        *path = paths.current;
    }

    /// The batch's paths on their own, from `before`, the path of the entry before the batch.
    pub(crate) fn paths(&self, before: &[u8]) -> BatchPaths<'_> {
        self.paths_after(before.to_vec())
    }

    /// The batch's paths, rebuilt in `before`, which holds the path before the batch.
    fn paths_after(&self, before: Vec<u8>) -> BatchPaths<'_> {
        BatchPaths {
            items: self.items.iter(),
            suffixes: &self.suffixes,
            at: 0,
            current: before,
        }
    }
}

/// Entry paths in tar order, each rebuilt in the same buffer from what it shares with the
/// previous one: [`PathCursor`] over a layer index, [`BatchPaths`] over a streamed batch.
pub(crate) trait PathSource {
    /// The next entry's path, and how many of its first bytes it shares with the previous
    /// path.
    fn next_path(&mut self) -> Option<(&[u8], usize)>;
}

impl PathSource for PathCursor<'_> {
    fn next_path(&mut self) -> Option<(&[u8], usize)> {
        PathCursor::next_path(self)
    }
}

/// The paths of an [`EntryBatch`] (see [`EntryBatch::paths`]).
pub(crate) struct BatchPaths<'b> {
    items: std::slice::Iter<'b, BatchItem>,
    suffixes: &'b [u8],
    /// Where the next suffix starts.
    at: usize,
    current: Vec<u8>,
}

impl PathSource for BatchPaths<'_> {
    fn next_path(&mut self) -> Option<(&[u8], usize)> {
        let item = self.items.next()?;
        // Batches are built with `shared` within the previous path and the suffixes within
        // the batch; `min` only keeps a broken invariant from panicking.
        let shared = (item.shared as usize).min(self.current.len());
        let end = (self.at + item.suffix_len as usize).min(self.suffixes.len());
        self.current.truncate(shared);
        self.current
            .extend_from_slice(&self.suffixes[self.at.min(end)..end]);
        self.at = end;
        Some((&self.current, shared))
    }
}

/// The sending end of an [`index_layer_tapped`] walk: fills batches and hands them on.
pub(crate) struct EntryTap {
    to: std::sync::mpsc::SyncSender<EntryBatch>,
    batch: EntryBatch,
}

impl EntryTap {
    fn new(to: std::sync::mpsc::SyncSender<EntryBatch>) -> Self {
        EntryTap {
            to,
            batch: EntryBatch::with_capacity(),
        }
    }

    /// Add one entry; a full batch is sent. Returns false once the receiver is gone.
    fn push(&mut self, shared: u32, suffix: &[u8], kind: EntryKind, size: u64) -> bool {
        self.batch.push(shared, suffix, kind, size);
        self.batch.len() < EntryBatch::CAPACITY || self.flush()
    }

    /// Send what the batch holds. Returns false once the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, EntryBatch::with_capacity());
        self.to.send(full).is_ok()
    }
}

/// How a layer blob was compressed (found by sniffing its first bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip, possibly many members (eStargz).
    Gzip,
    /// zstd, possibly many frames.
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Why a layer could not be indexed. Every variant displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerError {
    /// Reading the blob failed (the source's own error, such as a network or digest failure).
    Read(String),
    /// The compressed stream is corrupt or cut short.
    Decompress {
        /// The compression that was sniffed.
        compression: Compression,
        /// What the decoder said.
        message: String,
    },
    /// The uncompressed bytes are not a valid tar, or stop inside an entry.
    Tar {
        /// Offset in the uncompressed tar of the header concerned.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The uncompressed tar does not hash to the diff_id the image config promises.
    DiffIdMismatch {
        /// The diff_id from the config.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The layer exceeds what an index can address.
    TooLarge(String),
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::Read(message) => write!(f, "reading the layer failed: {message}"),
            LayerError::Decompress {
                compression,
                message,
            } => write!(f, "corrupt {compression} stream: {message}"),
            LayerError::Tar { offset, message } => {
                write!(f, "corrupt layer tar at byte {offset}: {message}")
            }
            LayerError::DiffIdMismatch { expected, actual } => write!(
                f,
                "layer diff_id mismatch: the config says {expected}, the uncompressed tar is {actual}"
            ),
            LayerError::TooLarge(message) => write!(f, "layer too large: {message}"),
        }
    }
}

impl std::error::Error for LayerError {}

/// Everything kept of one layer: its entries in tar order, whiteouts, opaque directories, and
/// the digest and size of its uncompressed tar.
///
/// Paths are normalised (`a/b`, no leading slash; the root is empty) and stored as raw bytes
/// in arenas: one for the entries' paths, one for the markers' (see `Markers`). Whiteout
/// paths name what is deleted (`a/.wh.b` is stored as `a/b`); opaque directories name the
/// directory (`a/.wh..wh..opq` is stored as `a`).
#[derive(Clone, Debug)]
pub struct LayerIndex {
    /// Shared, so that a first layer's index can be written to the cache while the model
    /// that holds the same entries goes on merging (see [`Self::share_entries`]).
    entries: Arc<Vec<Entry>>,
    paths: FrontCoded,
    markers: Markers,
    size_bytes: u64,
    skipped: u64,
    tar_size: u64,
    compressed_size: u64,
    diff_id: Digest,
    compression: Compression,
}

impl LayerIndex {
    /// Number of entries (whiteout markers not included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the layer holds no entries (it may still hold whiteouts).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the index holds every entry's path: always, unless it was built by a tapped
    /// walk told not to keep them ([`IndexOptions::entry_paths`]). Such an index can finish a
    /// merge that streamed its entries, and nothing else: it is never cached.
    pub fn has_entry_paths(&self) -> bool {
        self.paths.len() == self.entries.len()
    }

    /// Entries in tar order with their normalised paths (empty paths in an index without
    /// them, see [`Self::has_entry_paths`]).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Vec<u8>, &Entry)> + '_ {
        let mut paths = self.paths.cursor();
        self.entries.iter().map(move |entry| {
            let path = paths.next_path().map(|(path, _)| path.to_vec());
            (path.unwrap_or_default(), entry)
        })
    }

    /// The kinds of the entries, in tar order.
    pub fn kinds(&self) -> impl ExactSizeIterator<Item = EntryKind> + '_ {
        self.entries.iter().map(|entry| entry.kind())
    }

    /// Paths deleted by whiteout markers, in tar order.
    pub fn whiteouts(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.markers.whiteouts()
    }

    /// Directories made opaque, in tar order (the root is the empty path).
    pub fn opaque_dirs(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.markers.opaque_dirs()
    }

    /// Σ sizes of the regular-file entries (the JSON `sizeBytes`).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Entries left out because their path had a `..` component, a non-directory stood at
    /// the root, or a hard link named no path inside the image.
    pub fn skipped_entries(&self) -> u64 {
        self.skipped
    }

    /// Length of the uncompressed tar, trailing blocks included.
    pub fn tar_size(&self) -> u64 {
        self.tar_size
    }

    /// Length of the blob as read (compressed).
    pub fn compressed_size(&self) -> u64 {
        self.compressed_size
    }

    /// Digest of the uncompressed tar (the diff_id), verified when one was expected.
    pub fn diff_id(&self) -> &Digest {
        &self.diff_id
    }

    /// The compression that was sniffed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The same index described as read from another blob of the same tar (a cached index
    /// reused for a blob compressed differently): only the blob's size and compression change.
    pub fn with_blob_facts(mut self, compressed_size: u64, compression: Compression) -> Self {
        self.compressed_size = compressed_size;
        self.compression = compression;
        self
    }

    /// The index twice over, with one copy of the entries between them: one without the
    /// entries' paths or the markers, for a model that merged those already while the layer
    /// streamed, and the whole index, for the cache. Whichever is dropped last frees the
    /// entries.
    pub fn share_entries(self) -> (LayerIndex, LayerIndex) {
        let without_paths = LayerIndex {
            entries: Arc::clone(&self.entries),
            paths: FrontCoded::default(),
            markers: Markers::default(),
            diff_id: self.diff_id.clone(),
            ..self
        };
        (without_paths, self)
    }

    /// Take the index apart for the tree: entries, their paths and the markers (each dropped
    /// by the caller once merged).
    pub(crate) fn into_parts(self) -> LayerParts {
        LayerParts {
            entries: self.entries,
            paths: self.paths,
            markers: self.markers,
            meta: LayerMeta {
                diff_id: self.diff_id,
                tar_size: self.tar_size,
                compressed_size: self.compressed_size,
                compression: self.compression,
                size_bytes: self.size_bytes,
                skipped_entries: self.skipped,
            },
        }
    }
}

/// What is known of a layer besides its entries; kept by the tree after a merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerMeta {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
    /// Length of the blob as read.
    pub compressed_size: u64,
    /// The compression sniffed.
    pub compression: Compression,
    /// Σ sizes of regular-file entries.
    pub size_bytes: u64,
    /// Entries refused (see [`LayerIndex::skipped_entries`]).
    pub skipped_entries: u64,
}

/// An index taken apart (see [`LayerIndex::into_parts`]).
pub(crate) struct LayerParts {
    pub entries: Arc<Vec<Entry>>,
    paths: FrontCoded,
    markers: Markers,
    pub meta: LayerMeta,
}

impl LayerParts {
    /// The entries' paths, in order.
    pub fn paths(&self) -> PathCursor<'_> {
        self.paths.cursor()
    }

    /// The entries and what is known of the layer, with the paths and markers freed now: for
    /// a layer whose paths were merged while it streamed.
    pub fn into_entries(self) -> (Arc<Vec<Entry>>, LayerMeta) {
        (self.entries, self.meta)
    }

    /// The whiteouts and opaque directories, taken out so that they can be freed as soon as
    /// they are applied.
    pub fn take_markers(&mut self) -> Markers {
        std::mem::take(&mut self.markers)
    }
}

/// A layer's whiteouts and opaque directories, with their paths in an arena of their own. A
/// merge applies them before the layer's entries and can then free them: on a layer that
/// deletes 100k files that is 7 MB less while the entries merge.
#[derive(Clone, Debug, Default)]
pub(crate) struct Markers {
    arena: Vec<u8>,
    whiteouts: Vec<Span>,
    opaque_dirs: Vec<Span>,
}

impl Markers {
    /// Paths deleted by whiteout markers, in tar order.
    pub fn whiteouts(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.whiteouts.iter().map(|span| span.get(&self.arena))
    }

    /// Directories made opaque, in tar order.
    pub fn opaque_dirs(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.opaque_dirs.iter().map(|span| span.get(&self.arena))
    }
}

/// How [`index_layer_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexOptions {
    /// Decompress and hash on two more threads while this one parses, so one big layer
    /// keeps every core busy. On by default.
    pub decompress_thread: bool,
    /// Keep each entry's path in the index. On by default; it can be off only for a walk
    /// with a tap ([`index_layer_tapped`]), whose batches carry the paths to a merge, when the
    /// index itself is not cached: a million-entry layer then holds about 19 MB less while
    /// it is read. Such an index has no entry paths ([`LayerIndex::has_entry_paths`]).
    pub entry_paths: bool,
    /// Run the layer's threads below normal priority ([`crate::priority`]): for a layer the
    /// model does not wait for while another streams. Off by default. Only with
    /// `decompress_thread`: inline, everything runs on the caller's thread, left as it is.
    pub background: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            decompress_thread: true,
            entry_paths: true,
            background: false,
        }
    }
}

/// Read one layer blob (gzip, zstd or plain tar, sniffed) into its index, verifying the
/// uncompressed tar against `expected_diff_id` when given.
///
/// The stream is read to its end (the diff_id covers trailing blocks too) and never held in
/// memory whole. Corrupt, truncated or non-tar input gives a one-line [`LayerError`].
pub fn index_layer<R: Read + Send>(
    compressed: R,
    expected_diff_id: Option<&Digest>,
) -> Result<LayerIndex, LayerError> {
    index_layer_with(compressed, expected_diff_id, IndexOptions::default())
}

/// [`index_layer`] with explicit [`IndexOptions`].
pub fn index_layer_with<R: Read + Send>(
    compressed: R,
    expected_diff_id: Option<&Digest>,
    options: IndexOptions,
) -> Result<LayerIndex, LayerError> {
    index(compressed, expected_diff_id, options, None)
}

/// [`index_layer_with`], also sending each entry to `tap` as soon as it is read, in batches,
/// so a model can merge the layer while it streams. The channel closes when the walk ends,
/// successfully or not; only the returned index says whether the layer was valid (the diff_id
/// is checked at its very end), so whatever was built from the batches must wait for it.
pub fn index_layer_tapped<R: Read + Send>(
    compressed: R,
    expected_diff_id: Option<&Digest>,
    options: IndexOptions,
    tap: std::sync::mpsc::SyncSender<EntryBatch>,
) -> Result<LayerIndex, LayerError> {
    index(
        compressed,
        expected_diff_id,
        options,
        Some(EntryTap::new(tap)),
    )
}

fn index<R: Read + Send>(
    compressed: R,
    expected_diff_id: Option<&Digest>,
    options: IndexOptions,
    tap: Option<EntryTap>,
) -> Result<LayerIndex, LayerError> {
    // With a diff_id to check, every uncompressed byte is verified by it: gzip's CRC-32 would
    // only check them a second time.
    let decoder = match expected_diff_id {
        Some(_) => stream::Decoder::for_verified_stream(compressed)?,
        None => stream::Decoder::new(compressed)?,
    };
    let compression = decoder.compression();
    let algorithm = expected_diff_id.map_or(Algorithm::Sha256, Digest::algorithm);
    // Without a tap, the index is the only place the paths go.
    let keep_paths = options.entry_paths || tap.is_none();
    let (collected, diff_id, tar_size, compressed_size) = if options.decompress_thread {
        std::thread::scope(|scope| {
            let (ends, hash_stage, source) = stream::threaded_channels(algorithm);
            // Every stage on a thread of its own, so that a background layer lowers only
            // threads that end with it, never the caller (a runtime's pooled thread).
            let background = options.background;
            let lower = move || {
                if background {
                    crate::priority::lower_this_thread();
                }
            };
            scope.spawn(move || {
                lower();
                stream::run_decoder_thread(decoder, ends)
            });
            scope.spawn(move || {
                lower();
                hash_stage.run()
            });
            let walker = scope.spawn(move || {
                lower();
                let mut tar = stream::TarStream::new(source);
                let collected = index::walk(&mut tar, tap, keep_paths)?;
                let (tar_size, source) = tar.finish();
                let (diff_id, compressed_size) = source.finish()?;
                Ok::<_, LayerError>((collected, diff_id, tar_size, compressed_size))
            });
            walker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?
    } else {
        let mut tar = stream::TarStream::new(stream::InlineSource::new(decoder, algorithm));
        let collected = index::walk(&mut tar, tap, keep_paths)?;
        let (tar_size, source) = tar.finish();
        let (diff_id, compressed_size) = source.finish();
        (collected, diff_id, tar_size, compressed_size)
    };
    if let Some(expected) = expected_diff_id {
        if *expected != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(LayerIndex {
        entries: Arc::new(collected.entries),
        paths: collected.paths,
        markers: collected.markers,
        size_bytes: collected.size_bytes,
        skipped: collected.skipped,
        tar_size,
        compressed_size,
        diff_id,
        compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_the_same_paths_replayed_or_on_their_own() {
        let mut batch = EntryBatch::default();
        // Front-coded against the path before the batch, "usr/lib/a".
        batch.push(8, b"b", EntryKind::File, 1);
        batch.push(4, b"share/c", EntryKind::File, 2);
        batch.push(0, b"etc", EntryKind::Dir, 0);
        batch.push(3, b"/d", EntryKind::File, 3);
        let before = b"usr/lib/a".to_vec();
        let mut replayed = Vec::new();
        let mut path = before.clone();
        batch.replay(&mut path, |p, shared, kind, size| {
            replayed.push((p.to_vec(), shared, kind, size))
        });
        assert_eq!(path, b"etc/d");
        let mut alone = batch.paths(&before);
        let mut listed = Vec::new();
        while let Some((p, shared)) = alone.next_path() {
            listed.push((p.to_vec(), shared));
        }
        let expected: Vec<(Vec<u8>, usize)> = vec![
            (b"usr/lib/b".to_vec(), 8),
            (b"usr/share/c".to_vec(), 4),
            (b"etc".to_vec(), 0),
            (b"etc/d".to_vec(), 3),
        ];
        assert_eq!(listed, expected);
        let replayed_paths: Vec<_> = replayed
            .iter()
            .map(|(p, s, _, _)| (p.clone(), *s))
            .collect();
        assert_eq!(replayed_paths, expected);
        assert_eq!(replayed[3].2, EntryKind::File);
        assert_eq!(replayed[3].3, 3);
    }

    #[test]
    fn a_link_target_owns_its_bytes_through_clones_and_drops() {
        let long = vec![b'x'; 100_000];
        let original = LinkTarget::from(long.clone());
        let copy = original.clone();
        drop(original);
        assert_eq!(&*copy, &long[..]);
        let empty = LinkTarget::from(&b""[..]);
        assert!(empty.is_empty());
        assert_eq!(empty.clone(), empty);
        assert_ne!(empty, copy);
        assert_eq!(format!("{:?}", LinkTarget::from(&b"ab"[..])), "[97, 98]");
        // Sent to another thread and dropped there, as entries are between the pipeline's
        // threads.
        let sent = std::thread::spawn(move || copy.len()).join();
        assert_eq!(sent.ok(), Some(100_000));
    }

    #[test]
    fn front_coded_paths_come_back_as_pushed_across_every_length_width() {
        let mut paths = FrontCoded::default();
        let mut expected = Vec::new();
        let mut previous: Vec<u8> = Vec::new();
        for (shared, suffix_len) in [
            (0, 0),
            (0, 1),
            (1, 126),
            (127, 1),
            (128, 128),
            (200, 16_384),
        ] {
            let suffix: Vec<u8> = (0..suffix_len).map(|i| (i % 251) as u8).collect();
            let shared = shared.min(previous.len());
            paths.push(shared, &suffix).expect("small");
            previous.truncate(shared);
            previous.extend_from_slice(&suffix);
            expected.push((previous.clone(), shared));
        }
        assert_eq!(paths.len(), expected.len());
        let mut cursor = paths.cursor();
        for (path, shared) in &expected {
            assert_eq!(cursor.next_path(), Some((&path[..], *shared)));
        }
        assert_eq!(cursor.next_path(), None);
        let suffix_bytes: usize = paths.parts().map(|(_, suffix)| suffix.len()).sum();
        assert_eq!(suffix_bytes, 1 + 126 + 1 + 128 + 16_384);
        // A buffer cut anywhere ends the paths early, never with a panic.
        for cut in 0..paths.bytes.len() {
            let damaged = FrontCoded {
                bytes: paths.bytes[..cut].to_vec(),
                count: paths.count,
            };
            assert!(damaged.parts().count() < expected.len());
        }
        assert_eq!(read_leb128(&[0xff; 11]), None);
        assert_eq!(read_leb128(&[0x80, 0x01]), Some((128, &[][..])));
    }

    #[test]
    fn an_entry_keeps_its_header_fields_exactly_up_to_their_limits() {
        for kind in (0..8).filter_map(codec::kind_of) {
            for mode in [0, 0o644, 0o4755, 0o7777] {
                for size in [0, 1, 512, u64::from(u32::MAX) + 7, MAX_FILE_SIZE] {
                    for mtime in [0, 1, 1_700_000_000, MAX_MTIME - 1, MAX_MTIME] {
                        let entry = Entry::new(kind, mode, size, mtime).expect("in range");
                        let read = (entry.kind(), entry.mode(), entry.size(), entry.mtime());
                        assert_eq!(read, (kind, mode, size, mtime));
                    }
                }
            }
        }
        // Beyond the limits: a size or mode is refused, a time reads as the latest.
        assert!(Entry::new(EntryKind::File, 0o644, MAX_FILE_SIZE + 1, 0).is_none());
        assert!(Entry::new(EntryKind::File, 0o10644, 1, 0).is_none());
        let late = Entry::new(EntryKind::Dir, 0o755, 0, u64::MAX).expect("clamped");
        assert_eq!((late.mtime(), late.mode()), (MAX_MTIME, 0o755));
    }

    #[test]
    fn an_entry_carries_a_digest_or_a_link_target_and_never_both() {
        let hash = [7u8; 32];
        let link = || Some(LinkTarget::from(&b"usr/lib"[..]));
        assert_eq!(Payload::from_parts(None, None), Some(Payload::None));
        assert_eq!(
            Payload::from_parts(Some(hash), None),
            Some(Payload::Content(hash))
        );
        assert_eq!(
            Payload::from_parts(None, link())
                .as_ref()
                .map(|p| matches!(p, Payload::Link(t) if &**t == b"usr/lib")),
            Some(true)
        );
        assert_eq!(Payload::from_parts(Some(hash), link()), None);
        let entry = Entry {
            payload: Payload::Link(LinkTarget::from(&b"usr/lib"[..])),
            data_block: 1,
            ..Entry::new(EntryKind::Symlink, 0o777, 0, 0).expect("a symlink")
        };
        assert_eq!(entry.link_target(), Some(&b"usr/lib"[..]));
        assert_eq!(entry.content(), None);
        assert_eq!(entry.clone(), entry);
    }
}
