//! From a layer blob to uncompressed tar bytes: compression sniffing, decoding, and the diff_id
//! hash of every uncompressed byte. Either all of it runs on the parsing thread, or decoding and
//! hashing each get a thread of their own, chained by bounded channels, so one big layer keeps
//! three stages busy instead of one.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, OnceLock};

use crate::digest::{Algorithm, Digest, DigestHasher};

use super::tar::{Block, BLOCK};
use super::{Compression, LayerError};

/// Uncompressed bytes handed over at once; a multiple of [`BLOCK`] so headers rarely straddle.
const CHUNK: usize = 512 * 1024;
/// Chunks each stage may run ahead of the next: 2 MiB, so that the stages of one big layer
/// keep two cores busy once the other layers are done. With 256 KiB chunks a stage that fell
/// behind for a moment stalled the others, and a tenth of both cores sat idle; twice as many
/// in flight gained no more and held 5 MB more on an image of five big layers.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Read buffer between the source and the decompressor.
const SOURCE_BUFFER: usize = 128 * 1024;

/// The source reader, remembering its own failures so they are not blamed on the decoder.
struct SourceReader<R> {
    inner: R,
    failure: Arc<OnceLock<String>>,
    bytes_read: u64,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes_read += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    let _ = self.failure.set(e.to_string());
                }
                Err(e)
            }
        }
    }
}

/// Sniff the compression from the first bytes: gzip `1f 8b`, zstd `28 b5 2f fd`, else tar.
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

enum DecoderKind<R: Read> {
    Plain(SourceReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<SourceReader<R>>>>),
    GzipWithoutCrc(Box<GzipMembers<BufReader<SourceReader<R>>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<SourceReader<R>>>),
}

/// A layer blob being decompressed.
pub struct Decoder<R: Read> {
    kind: DecoderKind<io::Chain<io::Cursor<Vec<u8>>, R>>,
    compression: Compression,
    failure: Arc<OnceLock<String>>,
}

impl<R: Read> Decoder<R> {
    /// Read the magic bytes and set up the matching decoder.
    pub fn new(source: R) -> Result<Self, LayerError> {
        Self::with_crc(source, true)
    }

    /// [`Self::new`] for a stream whose uncompressed bytes are all hashed and compared with an
    /// expected diff_id: gzip members' CRC-32 is not computed then (see [`GzipMembers`]).
    pub fn for_verified_stream(source: R) -> Result<Self, LayerError> {
        Self::with_crc(source, false)
    }

    fn with_crc(mut source: R, gzip_crc: bool) -> Result<Self, LayerError> {
        let mut prefix = vec![0u8; 4];
        let mut got = 0;
        while got < prefix.len() {
            match source.read(&mut prefix[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LayerError::Read(e.to_string())),
            }
        }
        prefix.truncate(got);
        let compression = sniff(&prefix);
        let failure = Arc::new(OnceLock::new());
        let reader = SourceReader {
            inner: io::Cursor::new(prefix).chain(source),
            failure: Arc::clone(&failure),
            bytes_read: 0,
        };
        let kind = match compression {
            Compression::None => DecoderKind::Plain(reader),
            Compression::Gzip if gzip_crc => {
                DecoderKind::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                    BufReader::with_capacity(SOURCE_BUFFER, reader),
                )))
            }
            Compression::Gzip => DecoderKind::GzipWithoutCrc(Box::new(GzipMembers::new(
                BufReader::with_capacity(SOURCE_BUFFER, reader),
            ))),
            Compression::Zstd => {
                let buffered = BufReader::with_capacity(SOURCE_BUFFER, reader);
                let decoder = zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| {
                    LayerError::Decompress {
                        compression,
                        message: e.to_string(),
                    }
                })?;
                DecoderKind::Zstd(decoder)
            }
        };
        Ok(Decoder {
            kind,
            compression,
            failure,
        })
    }

    /// The compression found.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Compressed bytes consumed from the source so far (including the sniffed prefix).
    pub fn compressed_bytes(&self) -> u64 {
        match &self.kind {
            DecoderKind::Plain(r) => r.bytes_read,
            DecoderKind::Gzip(d) => d.get_ref().get_ref().bytes_read,
            DecoderKind::GzipWithoutCrc(d) => d.inflate.get_ref().get_ref().bytes_read,
            DecoderKind::Zstd(d) => d.get_ref().get_ref().bytes_read,
        }
    }

    /// Fill `buf` as far as the stream allows; returns the bytes written (0 only at the end).
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize, LayerError> {
        let mut filled = 0;
        while filled < buf.len() {
            let result = match &mut self.kind {
                DecoderKind::Plain(r) => r.read(&mut buf[filled..]),
                DecoderKind::Gzip(d) => d.read(&mut buf[filled..]),
                DecoderKind::GzipWithoutCrc(d) => d.read(&mut buf[filled..]),
                DecoderKind::Zstd(d) => d.read(&mut buf[filled..]),
            };
            match result {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(&e)),
            }
        }
        Ok(filled)
    }

    fn error(&self, e: &io::Error) -> LayerError {
        if let Some(message) = self.failure.get() {
            return LayerError::Read(message.clone());
        }
        match self.compression {
            Compression::None => LayerError::Read(e.to_string()),
            compression => LayerError::Decompress {
                compression,
                message: if e.kind() == io::ErrorKind::UnexpectedEof {
                    format!("stream cut short ({e})")
                } else {
                    e.to_string()
                },
            },
        }
    }
}

/// gzip members one after another (RFC 1952), inflated without computing their CRC-32.
///
/// Only for streams whose every uncompressed byte is hashed and compared with the diff_id the
/// image config promises: any change the CRC would catch changes that digest too, and the CRC
/// took 3 % of the CPU of a cold million-file run. The header's own CRC-16 (FHCRC) is not
/// checked either: the header holds no byte of the layer. Everything else is checked as
/// flate2's `MultiGzDecoder` checks it: each member header's fixed fields and length, each
/// member's length (ISIZE), a member cut short, and bytes after a member that do not start
/// another one.
pub struct GzipMembers<R> {
    inflate: flate2::bufread::DeflateDecoder<R>,
    state: MemberState,
    /// Bytes the current member has produced; ISIZE is their count mod 2^32.
    produced: u64,
}

enum MemberState {
    Header,
    Body,
    End,
}

/// gzip header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED_FLAGS: u8 = 0xe0;

impl<R: BufRead> GzipMembers<R> {
    /// Members read from `source`, which starts with the first member's header.
    pub fn new(source: R) -> Self {
        GzipMembers {
            inflate: flate2::bufread::DeflateDecoder::new(source),
            state: MemberState::Header,
            produced: 0,
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// Read past one member header, checking its fixed fields and reading past every optional
/// field its flags announce (without keeping them: a name may be as long as the stream).
fn skip_member_header<R: BufRead>(source: &mut R) -> io::Result<()> {
    let mut fixed = [0u8; 10];
    source.read_exact(&mut fixed)?;
    if fixed[..3] != [0x1f, 0x8b, 8] || fixed[3] & RESERVED_FLAGS != 0 {
        return Err(invalid("invalid gzip header"));
    }
    let flags = fixed[3];
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        source.read_exact(&mut len)?;
        skip_exactly(source, u64::from(u16::from_le_bytes(len)))?;
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            skip_past_zero(source)?;
        }
    }
    if flags & FHCRC != 0 {
        skip_exactly(source, 2)?;
    }
    Ok(())
}

fn skip_exactly<R: BufRead>(source: &mut R, n: u64) -> io::Result<()> {
    if io::copy(&mut source.take(n), &mut io::sink())? == n {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

fn skip_past_zero<R: BufRead>(source: &mut R) -> io::Result<()> {
    loop {
        let buf = source.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match buf.iter().position(|&b| b == 0) {
            Some(at) => {
                source.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                source.consume(n);
            }
        }
    }
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                MemberState::Header => {
                    skip_member_header(self.inflate.get_mut())?;
                    self.inflate.reset_data();
                    self.produced = 0;
                    self.state = MemberState::Body;
                }
                MemberState::Body => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let n = self.inflate.read(buf)?;
                    if n > 0 {
                        self.produced += n as u64;
                        return Ok(n);
                    }
                    // The member's deflate data ended: its trailer is CRC-32, then ISIZE.
                    let mut trailer = [0u8; 8];
                    let source = self.inflate.get_mut();
                    source.read_exact(&mut trailer)?;
                    let length =
                        u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                    // ISIZE is the length mod 2^32: the truncation is the comparison.
                    if length != self.produced as u32 {
                        return Err(invalid("gzip member length does not match its trailer"));
                    }
                    let more = !source.fill_buf()?.is_empty();
                    self.state = if more {
                        MemberState::Header
                    } else {
                        MemberState::End
                    };
                }
                MemberState::End => return Ok(0),
            }
        }
    }
}

/// A chunk of uncompressed bytes: the buffer and how much of it is filled.
pub struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Where uncompressed chunks come from.
pub trait ChunkSource {
    /// The next chunk, reusing `spare` as its buffer when possible; `None` at the end.
    fn next_chunk(&mut self, spare: Vec<u8>) -> Result<Option<Chunk>, LayerError>;
}

fn fill_chunk<R: Read>(
    decoder: &mut Decoder<R>,
    mut buf: Vec<u8>,
) -> Result<Option<Chunk>, LayerError> {
    if buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
    let len = decoder.fill(&mut buf)?;
    Ok((len > 0).then_some(Chunk { buf, len }))
}

/// Decompress and hash on the calling thread.
pub struct InlineSource<R: Read> {
    decoder: Decoder<R>,
    hasher: DigestHasher,
}

impl<R: Read> InlineSource<R> {
    /// Read from `decoder` on this thread, hashing with `algorithm`.
    pub fn new(decoder: Decoder<R>, algorithm: Algorithm) -> Self {
        InlineSource {
            decoder,
            hasher: DigestHasher::new(algorithm),
        }
    }

    /// The digest of every uncompressed byte and the compressed bytes consumed; call once
    /// the stream has ended.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.decoder.compressed_bytes())
    }
}

impl<R: Read> ChunkSource for InlineSource<R> {
    fn next_chunk(&mut self, spare: Vec<u8>) -> Result<Option<Chunk>, LayerError> {
        let chunk = fill_chunk(&mut self.decoder, spare)?;
        if let Some(chunk) = &chunk {
            self.hasher.update(&chunk.buf[..chunk.len]);
        }
        Ok(chunk)
    }
}

/// What a stage passes on: a chunk, an error, or the end.
pub enum Message {
    /// More bytes.
    Data(Chunk),
    /// The decoder failed; nothing follows.
    Failed(LayerError),
    /// The end of the stream, after this many compressed bytes; the hash stage adds the
    /// digest of every uncompressed byte.
    End {
        compressed_bytes: u64,
        digest: Option<Digest>,
    },
}

/// Chunks decompressed and hashed on other threads (see [`threaded_channels`]).
pub struct ThreadedSource {
    chunks: Receiver<Message>,
    spares: Sender<Vec<u8>>,
    compressed_bytes: u64,
    digest: Option<Digest>,
}

impl ThreadedSource {
    /// The hash stage's digest of every uncompressed byte and the compressed bytes the
    /// decoder consumed; call once the stream has ended.
    pub fn finish(self) -> Result<(Digest, u64), LayerError> {
        let digest = self.digest.ok_or_else(|| {
            LayerError::Read("the stream ended before the hashing thread did".to_string())
        })?;
        Ok((digest, self.compressed_bytes))
    }
}

impl ChunkSource for ThreadedSource {
    fn next_chunk(&mut self, spare: Vec<u8>) -> Result<Option<Chunk>, LayerError> {
        if spare.capacity() >= CHUNK {
            // The decoder may have finished already; a lost spare is just freed.
            let _ = self.spares.send(spare);
        }
        match self.chunks.recv() {
            Ok(Message::Data(chunk)) => Ok(Some(chunk)),
            Ok(Message::Failed(e)) => Err(e),
            Ok(Message::End {
                compressed_bytes,
                digest,
            }) => {
                self.compressed_bytes = compressed_bytes;
                self.digest = digest;
                Ok(None)
            }
            Err(_) => Err(LayerError::Read(
                "the decompression thread stopped unexpectedly".to_string(),
            )),
        }
    }
}

/// The ends of the decoder and hash threads: run [`run_decoder_thread`] and
/// [`HashStage::run`] on scoped threads, read from the [`ThreadedSource`]. Buffers the parser
/// is done with go straight back to the decoder.
pub fn threaded_channels(algorithm: Algorithm) -> (DecoderThreadEnds, HashStage, ThreadedSource) {
    let (decoded_tx, decoded_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (hashed_tx, hashed_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (spare_tx, spare_rx) = mpsc::channel();
    (
        DecoderThreadEnds {
            chunks: decoded_tx,
            spares: spare_rx,
        },
        HashStage {
            input: decoded_rx,
            output: hashed_tx,
            hasher: DigestHasher::new(algorithm),
        },
        ThreadedSource {
            chunks: hashed_rx,
            spares: spare_tx,
            compressed_bytes: 0,
            digest: None,
        },
    )
}

/// The stage between decoder and parser that hashes every uncompressed byte for the diff_id:
/// at SHA-256 speed over a gigabyte of tar it is as much work as the decoding or the parsing,
/// so it gets its own thread.
pub struct HashStage {
    input: Receiver<Message>,
    output: SyncSender<Message>,
    hasher: DigestHasher,
}

impl HashStage {
    /// Hash and pass on chunks until the end, an error, or either neighbour hanging up.
    pub fn run(self) {
        let HashStage {
            input,
            output,
            mut hasher,
        } = self;
        // A decoder that vanished drops `input`; dropping `output` then tells the parser.
        while let Ok(message) = input.recv() {
            let message = match message {
                Message::Data(chunk) => {
                    hasher.update(&chunk.buf[..chunk.len]);
                    Message::Data(chunk)
                }
                Message::End {
                    compressed_bytes, ..
                } => {
                    let _ = output.send(Message::End {
                        compressed_bytes,
                        digest: Some(hasher.finish()),
                    });
                    return;
                }
                failed @ Message::Failed(_) => failed,
            };
            let last = matches!(message, Message::Failed(_));
            if output.send(message).is_err() || last {
                return;
            }
        }
    }
}

/// The decoder thread's side of the channel.
pub struct DecoderThreadEnds {
    chunks: SyncSender<Message>,
    spares: Receiver<Vec<u8>>,
}

/// Decompress `decoder` into chunks until the end, an error, or the reader hanging up.
pub fn run_decoder_thread<R: Read>(mut decoder: Decoder<R>, ends: DecoderThreadEnds) {
    loop {
        let spare = ends.spares.try_recv().unwrap_or_default();
        let message = match fill_chunk(&mut decoder, spare) {
            Ok(Some(chunk)) => Message::Data(chunk),
            Ok(None) => Message::End {
                compressed_bytes: decoder.compressed_bytes(),
                digest: None,
            },
            Err(e) => Message::Failed(e),
        };
        let last = !matches!(message, Message::Data(_));
        if ends.chunks.send(message).is_err() || last {
            return;
        }
    }
}

/// The uncompressed tar as a byte stream with an absolute offset (the source hashes it).
pub struct TarStream<S: ChunkSource> {
    source: S,
    chunk: Vec<u8>,
    len: usize,
    pos: usize,
    /// Offset of `chunk[pos]` in the uncompressed tar.
    offset: u64,
    ended: bool,
}

impl<S: ChunkSource> TarStream<S> {
    /// Read from `source`.
    pub fn new(source: S) -> Self {
        TarStream {
            source,
            chunk: Vec::new(),
            len: 0,
            pos: 0,
            offset: 0,
            ended: false,
        }
    }

    /// Offset of the next unread byte in the uncompressed tar.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Make bytes available; `false` at the end of the stream.
    fn refill(&mut self) -> Result<bool, LayerError> {
        if self.pos < self.len {
            return Ok(true);
        }
        if self.ended {
            return Ok(false);
        }
        let spare = std::mem::take(&mut self.chunk);
        match self.source.next_chunk(spare)? {
            Some(chunk) => {
                self.chunk = chunk.buf;
                self.len = chunk.len;
                self.pos = 0;
                Ok(true)
            }
            None => {
                self.ended = true;
                self.len = 0;
                self.pos = 0;
                Ok(false)
            }
        }
    }

    /// The next block: where it lies in the current chunk when it lies there whole (nearly
    /// always: chunks are whole blocks), else copied into `spare`. `None` when the stream ends
    /// before the block starts; a stream ending inside it is an error.
    pub fn next_block<'s>(
        &'s mut self,
        spare: &'s mut Block,
    ) -> Result<Option<&'s Block>, LayerError> {
        if self.len - self.pos >= BLOCK {
            let start = self.pos;
            self.pos += BLOCK;
            self.offset += BLOCK as u64;
            return Ok(self.chunk[start..].first_chunk::<BLOCK>());
        }
        let start = self.offset;
        let mut got = 0;
        while got < BLOCK {
            if !self.refill()? {
                if got == 0 {
                    return Ok(None);
                }
                return Err(LayerError::Tar {
                    offset: start,
                    message: "truncated tar: the stream ends inside a header".to_string(),
                });
            }
            let n = (BLOCK - got).min(self.len - self.pos);
            spare[got..got + n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
            got += n;
            self.pos += n;
            self.offset += n as u64;
        }
        Ok(Some(spare))
    }

    /// Pass the next `n` bytes to `sink`. Returns `false` if the stream ends first.
    pub fn take(&mut self, mut n: u64, mut sink: impl FnMut(&[u8])) -> Result<bool, LayerError> {
        while n > 0 {
            if !self.refill()? {
                return Ok(false);
            }
            let available = self.len - self.pos;
            let step = usize::try_from(n).map_or(available, |n| n.min(available));
            sink(&self.chunk[self.pos..self.pos + step]);
            self.pos += step;
            self.offset += step as u64;
            n -= step as u64;
        }
        Ok(true)
    }

    /// Read everything that is left (trailing zero blocks, padding), so the source's diff_id
    /// covers the whole stream.
    pub fn drain(&mut self) -> Result<(), LayerError> {
        loop {
            self.offset += (self.len - self.pos) as u64;
            self.pos = self.len;
            if !self.refill()? {
                return Ok(());
            }
        }
    }

    /// The stream's length and its source; call after [`Self::drain`].
    pub fn finish(self) -> (u64, S) {
        (self.offset, self.source)
    }
}

/// Hands out a byte slice in chunks of cycling sizes, to test every straddling case.
#[cfg(test)]
pub struct UnevenSource<'a> {
    pub data: &'a [u8],
    pub sizes: &'a [usize],
    pub step: usize,
}

#[cfg(test)]
impl ChunkSource for UnevenSource<'_> {
    fn next_chunk(&mut self, _spare: Vec<u8>) -> Result<Option<Chunk>, LayerError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let n = self.sizes[self.step % self.sizes.len()].min(self.data.len());
        self.step += 1;
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(Some(Chunk {
            buf: head.to_vec(),
            len: n,
        }))
    }
}
