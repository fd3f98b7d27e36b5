//! Reading files' bytes back out of a layer blob: a bounded window for the explorer's file
//! viewer ([`read_window`]), and whole files streamed in order for `cat` and `export`
//! ([`LayerCursor`]).
//!
//! The index keeps no content, only where each file's bytes start in the uncompressed tar
//! ([`Entry::data_offset`](super::Entry)). To read a file, the blob is decompressed again from
//! its start and the bytes before the file are skipped without being kept: a large file is
//! never held whole in memory.

use std::fmt;
use std::io::{self, Read};

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

/// Bytes read from the blob at a time while streaming a file; the last read of a file is held
/// back until the file is verified.
const STREAM_CHUNK: usize = 128 * 1024;

/// A file's bytes did not hash to what the index recorded: the blob is not the one indexed.
/// Reported through [`io::Error`] (kind `InvalidData`) by [`FileReader`]; see
/// [`is_content_mismatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentMismatch;

impl fmt::Display for ContentMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the file's bytes do not match the content hash recorded when the layer was indexed",
        )
    }
}

impl std::error::Error for ContentMismatch {}

/// Whether `e` is a [`FileReader`]'s verification failure.
pub fn is_content_mismatch(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<ContentMismatch>().is_some())
}

/// The [`LayerError`] inside an error a [`FileReader`] returned, if it is one.
pub fn layer_error(e: &io::Error) -> Option<&LayerError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<LayerError>())
}

/// A forward-only reader of files out of one layer blob (gzip, zstd or plain tar, sniffed).
///
/// Files are read in the order they lie in the tar ([`Self::skip_to`] then [`Self::file`]),
/// so one pass over the blob serves any number of them; the bytes in between are decompressed
/// and dropped.
pub struct LayerCursor<R: Read> {
    decoder: Decoder<R>,
    /// Offset in the uncompressed tar of the next byte the decoder gives.
    position: u64,
}

impl<R: Read> LayerCursor<R> {
    /// Start reading `blob` from its first byte.
    pub fn new(blob: R) -> Result<Self, LayerError> {
        Ok(LayerCursor {
            decoder: Decoder::new(blob)?,
            position: 0,
        })
    }

    /// Offset in the uncompressed tar of the next byte.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Decompress and drop everything before `offset`; an offset already passed is an error
    /// (the caller's order is wrong).
    pub fn skip_to(&mut self, offset: u64) -> Result<(), LayerError> {
        if offset < self.position {
            return Err(LayerError::Read(format!(
                "byte {offset} of the layer was wanted after byte {} had been read",
                self.position
            )));
        }
        let mut to_skip = offset - self.position;
        if to_skip == 0 {
            return Ok(());
        }
        let mut scratch = vec![0u8; SKIP_BUFFER.min(to_skip as usize).max(1)];
        while to_skip > 0 {
            let want = scratch.len().min(to_skip as usize);
            let got = self.decoder.fill(&mut scratch[..want])?;
            if got == 0 {
                return Err(cut_short(offset));
            }
            to_skip -= got as u64;
            self.position += got as u64;
        }
        Ok(())
    }

    /// The whole file at `span` (skipping to it first), as a reader that checks the content
    /// hash: it holds its last piece back until every byte has hashed to `span.sha256`, and
    /// fails with [`ContentMismatch`] instead of handing that piece out when they do not. A
    /// consumer of a damaged file therefore never receives it whole.
    pub fn file(&mut self, span: FileSpan) -> Result<FileReader<'_, R>, LayerError> {
        self.skip_to(span.data_offset)?;
        Ok(FileReader {
            cursor: self,
            data_offset: span.data_offset,
            left: span.size,
            expected: span.sha256,
            hasher: Sha256::new(),
            ready: Vec::new(),
            ready_at: 0,
            held: Vec::new(),
            verified: false,
        })
    }
}

/// One file's bytes, streamed and verified (see [`LayerCursor::file`]).
pub struct FileReader<'a, R: Read> {
    cursor: &'a mut LayerCursor<R>,
    data_offset: u64,
    /// Bytes of the file not yet taken from the blob.
    left: u64,
    expected: Option<[u8; 32]>,
    hasher: Sha256,
    /// Bytes that may be handed out, from `ready_at` on.
    ready: Vec<u8>,
    ready_at: usize,
    /// The newest piece, handed out only after the one after it arrived, or after the check.
    held: Vec<u8>,
    verified: bool,
}

impl<R: Read> FileReader<'_, R> {
    fn next_piece(&mut self) -> io::Result<()> {
        let want = STREAM_CHUNK.min(usize::try_from(self.left).unwrap_or(STREAM_CHUNK));
        // The buffer handed out last is empty now: reuse it for the new piece.
        let mut piece = std::mem::take(&mut self.ready);
        piece.resize(want, 0);
        let got = self
            .cursor
            .decoder
            .fill(&mut piece)
            .map_err(io::Error::other)?;
        self.cursor.position += got as u64;
        if got < want {
            return Err(io::Error::other(cut_short(self.data_offset)));
        }
        self.hasher.update(&piece);
        self.left -= got as u64;
        self.ready = std::mem::replace(&mut self.held, piece);
        self.ready_at = 0;
        Ok(())
    }
}

impl<R: Read> Read for FileReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ready_at < self.ready.len() {
                let n = buf.len().min(self.ready.len() - self.ready_at);
                buf[..n].copy_from_slice(&self.ready[self.ready_at..self.ready_at + n]);
                self.ready_at += n;
                return Ok(n);
            }
            if self.left > 0 {
                self.next_piece()?;
                continue;
            }
            if self.verified {
                return Ok(0);
            }
            if let Some(expected) = self.expected {
                let actual: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if actual != expected {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, ContentMismatch));
                }
            }
            self.verified = true;
            self.ready = std::mem::take(&mut self.held);
            self.ready_at = 0;
        }
    }
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
        assert_eq!(entry.kind(), EntryKind::File);
        FileSpan {
            data_offset: entry.data_offset(),
            size: entry.size(),
            sha256: entry.content(),
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

    fn read_all<R: Read>(cursor: &mut LayerCursor<R>, span: FileSpan) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        cursor
            .file(span)
            .map_err(io::Error::other)?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_cursor_streams_several_files_in_one_pass_from_every_compression() {
        let big: Vec<u8> = (0..900_000u32).map(|i| (i % 253) as u8).collect();
        let tar = tar_with(&[
            ("a.txt", b"first".to_vec()),
            ("empty", Vec::new()),
            ("big.bin", big.clone()),
            ("z.txt", b"last\n".to_vec()),
        ]);
        let zstd = zstd::encode_all(tar.as_slice(), 3).unwrap();
        for blob in [tar.clone(), gzip(&tar), zstd] {
            let spans: Vec<FileSpan> = ["a.txt", "empty", "big.bin", "z.txt"]
                .iter()
                .map(|p| span_of(&blob, p.as_bytes()))
                .collect();
            let mut cursor = LayerCursor::new(blob.as_slice()).unwrap();
            assert_eq!(read_all(&mut cursor, spans[0]).unwrap(), b"first");
            assert_eq!(read_all(&mut cursor, spans[1]).unwrap(), b"");
            assert_eq!(read_all(&mut cursor, spans[2]).unwrap(), big);
            // Skipping past a file is allowed; going back is not.
            assert_eq!(read_all(&mut cursor, spans[3]).unwrap(), b"last\n");
            assert!(cursor.skip_to(spans[0].data_offset).is_err());
        }
    }

    #[test]
    fn a_damaged_file_is_never_handed_out_whole() {
        let big: Vec<u8> = (0..400_000u32).map(|i| (i % 249) as u8).collect();
        let mut tampered = big.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let original = tar_with(&[("big.bin", big.clone())]);
        let changed = tar_with(&[("big.bin", tampered)]);
        let span = span_of(&original, b"big.bin");
        let mut cursor = LayerCursor::new(changed.as_slice()).unwrap();
        let mut reader = cursor.file(span).unwrap();
        let mut got = Vec::new();
        let err = reader.read_to_end(&mut got).unwrap_err();
        assert!(is_content_mismatch(&err), "{err}");
        assert!(got.len() < big.len(), "the last piece was held back");
        assert_eq!(got[..], big[..got.len()]);

        // A file cut short by the end of the blob is an error too, not a short file.
        let mut cursor = LayerCursor::new(&original[..200_000]).unwrap();
        let err = read_all(&mut cursor, span).unwrap_err();
        assert!(layer_error(&err).is_some(), "{err}");
        assert!(err.to_string().contains("ends before"), "{err}");
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
