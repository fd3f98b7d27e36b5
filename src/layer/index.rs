//! The tar walk: headers (with PAX and GNU long names) become [`Entry`] records, whiteout
//! markers go to their own lists, and every regular file's bytes are hashed as they stream.

use sha2::Digest as _;

use super::path::{common_prefix, join_into, normalize_into, split_last};
use super::stream::{ChunkSource, TarStream};
use super::tar::{
    gnu_long_name, is_zero_block, parse_pax, HeaderError, PaxOverrides, RawHeader, BLOCK,
};
use super::{
    Entry, EntryKind, EntryTap, FrontCoded, LayerError, Markers, Payload, Span, MAX_FILE_SIZE,
};

/// Extended headers (PAX, GNU long names) larger than this are refused: real ones are a few
/// hundred bytes, and garbage must not make us allocate gigabytes.
const MAX_EXTENDED_HEADER: u64 = 16 * 1024 * 1024;

/// Whiteout marker prefix (`DIR/.wh.NAME` deletes `NAME`).
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Opaque-directory marker (`DIR/.wh..wh..opq`).
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of aufs bookkeeping names, which are markers too (never files).
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// SHA-256 of no bytes: the content digest of every empty file.
const EMPTY_CONTENT: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// What the walk collects; becomes a [`super::LayerIndex`].
#[derive(Default)]
pub struct Collected {
    pub entries: Vec<Entry>,
    pub paths: FrontCoded,
    pub markers: Markers,
    pub size_bytes: u64,
    pub skipped: u64,
}

fn tar_error(offset: u64, message: impl Into<String>) -> LayerError {
    LayerError::Tar {
        offset,
        message: message.into(),
    }
}

fn truncated(offset: u64) -> LayerError {
    tar_error(offset, "truncated tar: the stream ends inside an entry")
}

/// Pending extended-header state that applies to the next real entry.
#[derive(Default)]
struct Pending {
    pax: PaxOverrides,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    any: bool,
}

/// Skip the padding after `size` data bytes.
fn skip_padding<S: ChunkSource>(
    stream: &mut TarStream<S>,
    size: u64,
    entry_offset: u64,
) -> Result<(), LayerError> {
    let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    if !stream.take(padding, |_| {})? {
        return Err(truncated(entry_offset));
    }
    Ok(())
}

/// Read an extended header's data into memory.
fn read_extended<S: ChunkSource>(
    stream: &mut TarStream<S>,
    size: u64,
    header_offset: u64,
) -> Result<Vec<u8>, LayerError> {
    if size > MAX_EXTENDED_HEADER {
        return Err(tar_error(
            header_offset,
            format!("extended header of {size} bytes is implausibly large"),
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    if !stream.take(size, |bytes| data.extend_from_slice(bytes))? {
        return Err(truncated(header_offset));
    }
    skip_padding(stream, size, header_offset)?;
    Ok(data)
}

/// Walk the whole tar stream, then drain what follows the end-of-archive marker. Each entry
/// kept is also handed to `tap`, when there is one, as soon as it is read.
pub fn walk<S: ChunkSource>(
    stream: &mut TarStream<S>,
    mut tap: Option<EntryTap>,
    keep_paths: bool,
) -> Result<Collected, LayerError> {
    let mut out = Collected::default();
    // Where a header straddling two chunks is put together.
    let mut spare = [0u8; BLOCK];
    let mut pending = Pending::default();
    let mut raw_path = Vec::new();
    // A link's target as its header's link name field holds it.
    let mut raw_link = Vec::new();
    let mut path = Vec::new();
    // The path of the last entry kept: each path is stored as what it shares with it plus
    // the rest.
    let mut previous = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let header_offset = stream.offset();
        // The header is read where it lies in the stream's buffer (copying each was about a tenth
        // of this thread's time), so what the entry needs of it is taken out before its data
        // is read.
        let header = {
            let Some(block) = stream.next_block(&mut spare)? else {
                if pending.any {
                    return Err(truncated(header_offset));
                }
                break;
            };
            if is_zero_block(block) {
                if pending.any {
                    return Err(tar_error(
                        header_offset,
                        "the archive ends right after an extended header",
                    ));
                }
                break;
            }
            let header =
                RawHeader::parse(block).map_err(|e| tar_error(header_offset, e.to_string()))?;
            if pending.pax.path.is_none() && pending.long_name.is_none() {
                header.name_into(&mut raw_path);
            }
            if matches!(header.typeflag(), b'1' | b'2') {
                raw_link.clear();
                raw_link.extend_from_slice(header.link_name());
            }
            header.fields()
        };
        let number = |e: HeaderError| tar_error(header_offset, e.to_string());
        let typeflag = header.typeflag;
        let header_size = header.size.map_err(number)?;
        match typeflag {
            b'x' => {
                let data = read_extended(stream, header_size, header_offset)?;
                parse_pax(&data, &mut pending.pax).map_err(|e| tar_error(header_offset, e))?;
                pending.any = true;
                continue;
            }
            b'L' | b'K' => {
                let data = read_extended(stream, header_size, header_offset)?;
                let name = gnu_long_name(&data);
                if typeflag == b'L' {
                    pending.long_name = Some(name);
                } else {
                    pending.long_link = Some(name);
                }
                pending.any = true;
                continue;
            }
            _ => {}
        }

        let pending_now = std::mem::take(&mut pending);
        // Otherwise `raw_path` holds the header's own name already.
        if let Some(p) = pending_now.pax.path.or(pending_now.long_name) {
            raw_path = p;
        }
        let kind = match typeflag {
            // Pre-POSIX tars mark directories with a trailing slash on a regular entry.
            0 if raw_path.last() == Some(&b'/') => Some(EntryKind::Dir),
            b'0' | 0 | b'7' => Some(EntryKind::File),
            b'1' => Some(EntryKind::Hardlink),
            b'2' => Some(EntryKind::Symlink),
            b'3' => Some(EntryKind::CharDevice),
            b'4' => Some(EntryKind::BlockDevice),
            b'5' => Some(EntryKind::Dir),
            b'6' => Some(EntryKind::Fifo),
            // Global PAX headers, GNU sparse/dump/volume entries: nothing an image shows.
            _ => None,
        };
        // As Go's archive/tar (and so Docker) does: only regular files and unknown types
        // carry data; links, directories and devices never do, whatever `size` says.
        let data_size = match kind {
            Some(EntryKind::File) => pending_now.pax.size.unwrap_or(header_size),
            Some(_) => 0,
            None => header_size,
        };
        let data_offset = stream.offset();

        let Some(kind) = kind else {
            if !stream.take(data_size, |_| {})? {
                return Err(truncated(header_offset));
            }
            skip_padding(stream, data_size, header_offset)?;
            continue;
        };
        // Refused from the header, before a terabyte is read for nothing.
        if data_size > MAX_FILE_SIZE {
            return Err(file_too_large());
        }

        if !normalize_into(&raw_path, &mut path) {
            // A `..` component could point outside the image root: refuse the entry.
            out.skipped += 1;
            if !stream.take(data_size, |_| {})? {
                return Err(truncated(header_offset));
            }
            skip_padding(stream, data_size, header_offset)?;
            continue;
        }

        // aufs keeps bookkeeping under top-level `.wh..wh.*` directories; Docker skips them.
        if path.starts_with(AUFS_META_PREFIX) && path != OPAQUE_MARKER {
            if !stream.take(data_size, |_| {})? {
                return Err(truncated(header_offset));
            }
            skip_padding(stream, data_size, header_offset)?;
            continue;
        }

        // Whiteout markers: recorded apart, never entries.
        if let Some((parent, name)) = split_last(&path) {
            if name.starts_with(WHITEOUT_PREFIX) {
                if name == OPAQUE_MARKER {
                    let span = Span::store(&mut out.markers.arena, parent)?;
                    out.markers.opaque_dirs.push(span);
                } else if !name.starts_with(AUFS_META_PREFIX) {
                    let target = &name[WHITEOUT_PREFIX.len()..];
                    if !target.is_empty() && target != b"." && target != b".." {
                        join_into(parent, target, &mut scratch);
                        let span = Span::store(&mut out.markers.arena, &scratch)?;
                        out.markers.whiteouts.push(span);
                    }
                }
                if !stream.take(data_size, |_| {})? {
                    return Err(truncated(header_offset));
                }
                skip_padding(stream, data_size, header_offset)?;
                continue;
            }
        }

        let mut content = None;
        if kind == EntryKind::File && data_size == 0 {
            // A third of the files of some images are empty: their digest is known.
            content = Some(EMPTY_CONTENT);
        } else if kind == EntryKind::File {
            let mut hasher = sha2::Sha256::new();
            if !stream.take(data_size, |bytes| hasher.update(bytes))? {
                return Err(truncated(header_offset));
            }
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&hasher.finalize());
            content = Some(hash);
        } else if !stream.take(data_size, |_| {})? {
            return Err(truncated(header_offset));
        }
        skip_padding(stream, data_size, header_offset)?;

        if path.is_empty() && kind != EntryKind::Dir {
            // Only a directory can stand at the root.
            out.skipped += 1;
            continue;
        }

        let link_target = match kind {
            EntryKind::Symlink => Some(
                pending_now
                    .pax
                    .link_path
                    .or(pending_now.long_link)
                    .unwrap_or_else(|| std::mem::take(&mut raw_link))
                    .into(),
            ),
            EntryKind::Hardlink => {
                let raw = pending_now
                    .pax
                    .link_path
                    .or(pending_now.long_link)
                    .unwrap_or_else(|| std::mem::take(&mut raw_link));
                let mut target = Vec::with_capacity(raw.len());
                if !normalize_into(&raw, &mut target) || target.is_empty() {
                    // A hard link must name a file inside the image.
                    out.skipped += 1;
                    continue;
                }
                Some(target.into())
            }
            _ => None,
        };

        let uid = pending_now.pax.uid.map_or(header.uid, Ok).map_err(number)?;
        let gid = pending_now.pax.gid.map_or(header.gid, Ok).map_err(number)?;
        let mtime = pending_now
            .pax
            .mtime
            .map_or(header.mtime, Ok)
            .map_err(number)?;
        let size = if kind == EntryKind::File {
            data_size
        } else {
            0
        };
        out.size_bytes += size;
        let shared = common_prefix(&previous, &path);
        if let Some(t) = &mut tap {
            // Within `path`, which extended headers keep under 16 MiB.
            if !t.push(shared as u32, &path[shared..], kind, size) {
                // Nobody listens any more; the index itself is still built.
                tap = None;
            }
        }
        if keep_paths {
            out.paths.push(shared, &path[shared..])?;
        }
        std::mem::swap(&mut previous, &mut path);
        let data_block = Entry::block_at(data_offset)
            .ok_or_else(|| LayerError::TooLarge("the layer's tar exceeds 2 TiB".to_string()))?;
        // The mode is masked to 0o7777 by the header, so only the size can be refused.
        let header_fields = Entry::new(kind, header.mode.map_err(number)? as u16, size, mtime)
            .ok_or_else(file_too_large)?;
        out.entries.push(Entry {
            uid: u32::try_from(uid).unwrap_or(u32::MAX),
            gid: u32::try_from(gid).unwrap_or(u32::MAX),
            payload: match (content, link_target) {
                (Some(hash), _) => Payload::Content(hash),
                (None, Some(target)) => Payload::Link(target),
                (None, None) => Payload::None,
            },
            data_block,
            ..header_fields
        });
    }
    if let Some(mut t) = tap {
        t.flush();
    }
    stream.drain()?;
    Ok(out)
}

/// The error for a file an entry cannot hold ([`MAX_FILE_SIZE`]).
fn file_too_large() -> LayerError {
    LayerError::TooLarge("a file of the layer is 1 TiB or larger".to_string())
}

#[cfg(test)]
mod tests {
    use super::super::stream::UnevenSource;
    use super::*;

    /// A tar written by the `tar` crate (an independent writer, GNU long names included).
    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..40usize {
            let data: Vec<u8> = (0..i * 97).map(|b| (b * 31 + i) as u8).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o640);
            header.set_entry_type(tar::EntryType::Regular);
            let name = if i % 7 == 0 {
                format!("deep/{}/file{i}", "x".repeat(120))
            } else {
                format!("dir{}/file{i}", i % 3)
            };
            builder
                .append_data(&mut header, name, &data[..])
                .expect("tar crate writes to memory");
        }
        builder.into_inner().expect("tar crate finishes")
    }

    fn walk_with(data: &[u8], sizes: &[usize]) -> (Vec<(Vec<u8>, Entry)>, u64) {
        let source = UnevenSource {
            data,
            sizes,
            step: 0,
        };
        let mut stream = TarStream::new(source);
        let collected = walk(&mut stream, None, true).expect("valid tar");
        let (size, _) = stream.finish();
        let mut paths = collected.paths.cursor();
        let entries = collected
            .entries
            .into_iter()
            .map(|e| {
                (
                    paths
                        .next_path()
                        .map(|(p, _)| p.to_vec())
                        .unwrap_or_default(),
                    e,
                )
            })
            .collect();
        (entries, size)
    }

    #[test]
    fn entry_data_is_kept_as_a_tar_block_within_2_tib() {
        const TIB: u64 = 1 << 40;
        assert_eq!(Entry::block_at(0), Some(0));
        assert_eq!(Entry::block_at(512), Some(1));
        assert_eq!(Entry::block_at(2 * TIB - 512), Some(u32::MAX));
        // Off a block, or past what 32 bits of blocks reach: refused, never wrapped.
        for offset in [1, 511, 513, 2 * TIB, 2 * TIB + 512, u64::MAX - 511] {
            assert_eq!(Entry::block_at(offset), None, "{offset}");
        }
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_index() {
        let tar = sample_tar();
        let reference = walk_with(&tar, &[tar.len()]);
        assert_eq!(reference.0.len(), 40);
        assert_eq!(reference.1, tar.len() as u64);
        for sizes in [&[1usize][..], &[7, 511, 513, 4096], &[512], &[100_000, 3]] {
            assert_eq!(walk_with(&tar, sizes), reference, "chunks {sizes:?}");
        }
        let (entries, _) = reference;
        for (path, entry) in &entries {
            let start = entry.data_offset() as usize;
            let data = &tar[start..start + entry.size() as usize];
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&sha2::Sha256::digest(data));
            assert_eq!(entry.content(), Some(hash), "{path:?}");
            assert_eq!(entry.mode(), 0o640);
        }
        assert!(entries
            .iter()
            .any(|(p, _)| p.len() > 120 && p.starts_with(b"deep/")));
    }

    #[test]
    fn the_empty_files_digest_is_the_sha256_of_no_bytes() {
        assert_eq!(EMPTY_CONTENT[..], sha2::Sha256::digest(b"")[..]);
    }
}
