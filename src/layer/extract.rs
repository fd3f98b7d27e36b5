//! Reading one file's bytes back out of a layer blob, for the explorer's file viewer.
//!
//! The index keeps no content, only where each file's bytes start in the uncompressed tar
//! ([`Entry::data_offset`](super::Entry)). To show a file, the blob is decompressed again from
//! its start, the bytes before the file are skipped without being kept, and one bounded window
//! of the file is returned: a large file is never held whole in memory.

use std::io::Read;

use sha2::{Digest as _, Sha256};

use super::stream::Decoder;
use super::LayerError;

/// Decompressed bytes skipped per read while seeking to a window.
const SKIP_BUFFER: usize = 256 * 1024;

/// A window of one regular file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWindow {
    /// The whole file's size.
    pub file_size: u64,
    /// Where in the file the window starts.
    pub offset: u64,
    /// The window's bytes (fewer than asked for only at the end of the file).
    pub bytes: Vec<u8>,
}

impl FileWindow {
    /// The file offset just past the window.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// Whether the window holds the whole file.
    pub fn is_whole_file(&self) -> bool {
        self.offset == 0 && self.bytes.len() as u64 == self.file_size
    }
}

/// Where a file's bytes lie inside its layer's uncompressed tar, and what they must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Offset of the first content byte in the uncompressed tar.
    pub data_offset: u64,
    /// Content length.
    pub size: u64,
    /// SHA-256 of the whole content, checked when a window covers the whole file.
    pub sha256: Option<[u8; 32]>,
}

/// Read up to `max_len` bytes at `offset` of the file at `span` from a layer blob (gzip, zstd
/// or plain tar, sniffed as when indexing).
///
/// A window that covers the whole file is checked against the content hash the index
/// recorded, so bytes from a changed blob are refused rather than shown.
pub fn read_window<R: Read>(
    blob: R,
    span: FileSpan,
    offset: u64,
    max_len: usize,
) -> Result<FileWindow, LayerError> {
    let offset = offset.min(span.size);
    let len = (span.size - offset).min(max_len as u64) as usize;
    let mut decoder = Decoder::new(blob)?;

    let mut to_skip = span.data_offset + offset;
    let mut scratch = vec![0u8; SKIP_BUFFER.min(to_skip as usize).max(1)];
    while to_skip > 0 {
        let want = scratch.len().min(to_skip as usize);
        let got = decoder.fill(&mut scratch[..want])?;
        if got == 0 {
            return Err(cut_short(span.data_offset));
        }
        to_skip -= got as u64;
    }

    let mut bytes = vec![0u8; len];
    let got = decoder.fill(&mut bytes)?;
    if got < len {
        return Err(cut_short(span.data_offset));
    }
    let window = FileWindow {
        file_size: span.size,
        offset,
        bytes,
    };
    if let (true, Some(expected)) = (window.is_whole_file(), span.sha256) {
        let actual: [u8; 32] = Sha256::digest(&window.bytes).into();
        if actual != expected {
            return Err(LayerError::Read(
                "the file's bytes do not match the layer's index (the blob changed since it was read)"
                    .to_string(),
            ));
        }
    }
    Ok(window)
}

fn cut_short(data_offset: u64) -> LayerError {
    LayerError::Tar {
        offset: data_offset,
        message: "the layer ends before the file's content does".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;
    use crate::layer::{index_layer, EntryKind};

    fn tar_with(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, content.as_slice())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn span_of(blob: &[u8], path: &[u8]) -> FileSpan {
        let index = index_layer(blob, None).unwrap();
        let (_, entry) = index.entries().find(|(p, _)| *p == path).unwrap();
        assert_eq!(entry.kind, EntryKind::File);
        FileSpan {
            data_offset: entry.data_offset,
            size: entry.size,
            sha256: entry.content,
        }
    }

    #[test]
    fn reads_a_whole_file_and_a_window_from_gzip_zstd_and_plain_layers() {
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let tar = tar_with(&[
            ("etc/hostname", b"box\n".to_vec()),
            ("opt/big.bin", big.clone()),
            ("etc/motd", b"hello\n".to_vec()),
        ]);
        let zstd = zstd::encode_all(tar.as_slice(), 3).unwrap();
        for blob in [tar.clone(), gzip(&tar), zstd] {
            let motd =
                read_window(blob.as_slice(), span_of(&blob, b"etc/motd"), 0, 1 << 20).unwrap();
            assert_eq!(motd.bytes, b"hello\n");
            assert!(motd.is_whole_file());

            let window = read_window(
                blob.as_slice(),
                span_of(&blob, b"opt/big.bin"),
                300_000,
                4096,
            )
            .unwrap();
            assert_eq!(window.file_size, 700_000);
            assert_eq!(window.offset, 300_000);
            assert_eq!(window.bytes, &big[300_000..304_096]);
            assert!(!window.is_whole_file());

            let tail = read_window(
                blob.as_slice(),
                span_of(&blob, b"opt/big.bin"),
                699_990,
                4096,
            )
            .unwrap();
            assert_eq!(tail.bytes, &big[699_990..]);
            assert_eq!(tail.end(), 700_000);
        }
    }

    #[test]
    fn refuses_bytes_that_do_not_match_the_index() {
        let original = tar_with(&[("a.txt", b"original".to_vec())]);
        let changed = tar_with(&[("a.txt", b"tampered".to_vec())]);
        let span = span_of(&original, b"a.txt");
        let err = read_window(changed.as_slice(), span, 0, 1024).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
    }

    #[test]
    fn a_truncated_blob_is_an_error_not_a_short_window() {
        let tar = tar_with(&[("a.bin", vec![7u8; 50_000])]);
        let span = span_of(&tar, b"a.bin");
        let err = read_window(&tar[..20_000], span, 0, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");
        let gz = gzip(&tar);
        let err = read_window(&gz[..gz.len() / 2], span, 0, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("corrupt gzip"), "{err}");
    }
}
