//! Builds real tar layers byte by byte, and compresses them (none, gzip, multi-member gzip,
//! zstd). Headers are written by hand so that tests can produce exactly what images contain
//! and crates refuse to write: whiteout markers, non-UTF-8 and 200+ byte names (PAX or GNU),
//! hard links, the old `\0` type flag, duplicate paths, streams without end blocks.

use std::io::Write;

use layerscope::digest::Digest;

/// Owner, permissions and time of an entry.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
        }
    }
}

/// How long names are written when they do not fit the 100-byte field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongNames {
    /// A PAX extended header (`x`) with `path` / `linkpath`.
    Pax,
    /// GNU `L` / `K` entries.
    Gnu,
    /// The ustar prefix field (paths up to 255 bytes split at a slash).
    UstarPrefix,
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    /// A plain tar.
    None,
    /// One gzip member.
    Gzip,
    /// Several gzip members, split at arbitrary byte offsets (as eStargz does).
    GzipMembers(usize),
    /// zstd.
    Zstd,
    /// Several zstd frames, split at arbitrary byte offsets.
    ZstdFrames(usize),
}

/// A finished layer.
#[derive(Clone, Debug)]
pub struct Built {
    /// The blob bytes (compressed as asked).
    pub blob: Vec<u8>,
    /// Digest of the blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The uncompressed tar.
    pub tar: Vec<u8>,
}

/// Writes a tar stream entry by entry.
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    tar: Vec<u8>,
    long_names: Option<LongNames>,
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    assert!(
        text.len() <= digits,
        "{value} does not fit a {digits}-digit field"
    );
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// One raw header block.
#[derive(Clone, Debug)]
pub struct RawHeader<'a> {
    pub name: &'a [u8],
    pub prefix: &'a [u8],
    pub typeflag: u8,
    pub size: u64,
    pub link: &'a [u8],
    pub meta: Meta,
    /// GNU magic (`ustar  \0`) instead of POSIX (`ustar\0` + `00`).
    pub gnu: bool,
}

impl RawHeader<'_> {
    /// The 512-byte block with a valid checksum.
    pub fn block(&self) -> [u8; 512] {
        assert!(self.name.len() <= 100, "name field holds 100 bytes");
        assert!(self.link.len() <= 100, "link field holds 100 bytes");
        assert!(self.prefix.len() <= 155, "prefix field holds 155 bytes");
        let mut b = [0u8; 512];
        b[..self.name.len()].copy_from_slice(self.name);
        octal(&mut b[100..108], u64::from(self.meta.mode));
        octal(&mut b[108..116], u64::from(self.meta.uid));
        octal(&mut b[116..124], u64::from(self.meta.gid));
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.meta.mtime);
        b[156] = self.typeflag;
        b[157..157 + self.link.len()].copy_from_slice(self.link);
        if self.gnu {
            b[257..265].copy_from_slice(b"ustar  \0");
        } else {
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
            b[345..345 + self.prefix.len()].copy_from_slice(self.prefix);
        }
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let text = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(text.as_bytes());
        b
    }
}

/// A PAX record `"LEN key=value\n"` (LEN counts the whole record, itself included).
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

impl LayerBuilder {
    /// An empty layer; long names use PAX.
    pub fn new() -> Self {
        LayerBuilder::default()
    }

    /// Write names longer than 100 bytes this way from now on.
    pub fn long_names(mut self, how: LongNames) -> Self {
        self.long_names = Some(how);
        self
    }

    fn pad(&mut self) {
        let rem = self.tar.len() % 512;
        if rem != 0 {
            self.tar.resize(self.tar.len() + 512 - rem, 0);
        }
    }

    /// Append a header block and data (padded), as is.
    pub fn raw(mut self, header: RawHeader<'_>, data: &[u8]) -> Self {
        self.tar.extend_from_slice(&header.block());
        self.tar.extend_from_slice(data);
        self.pad();
        self
    }

    /// Append arbitrary bytes (no padding): for corrupt streams.
    pub fn bytes(mut self, data: &[u8]) -> Self {
        self.tar.extend_from_slice(data);
        self
    }

    /// Append an entry, writing long names and link names the configured way.
    pub fn entry(
        mut self,
        path: impl AsRef<[u8]>,
        typeflag: u8,
        data: &[u8],
        link: impl AsRef<[u8]>,
        meta: Meta,
    ) -> Self {
        let path = path.as_ref();
        let link = link.as_ref();
        let how = self.long_names.unwrap_or(LongNames::Pax);
        let mut name: &[u8] = path;
        let mut prefix: &[u8] = b"";
        let mut link_field: &[u8] = link;
        if path.len() > 100 || link.len() > 100 {
            match how {
                LongNames::Pax => {
                    let mut records = Vec::new();
                    if path.len() > 100 {
                        records.extend(pax_record("path", path));
                        name = &path[..100];
                    }
                    if link.len() > 100 {
                        records.extend(pax_record("linkpath", link));
                        link_field = &link[..100];
                    }
                    self = self.raw(
                        RawHeader {
                            name: b"././@PaxHeader",
                            prefix: b"",
                            typeflag: b'x',
                            size: records.len() as u64,
                            link: b"",
                            meta: Meta::default(),
                            gnu: false,
                        },
                        &records,
                    );
                }
                LongNames::Gnu => {
                    if link.len() > 100 {
                        let mut data = link.to_vec();
                        data.push(0);
                        self = self.raw(
                            RawHeader {
                                name: b"././@LongLink",
                                prefix: b"",
                                typeflag: b'K',
                                size: data.len() as u64,
                                link: b"",
                                meta: Meta::default(),
                                gnu: true,
                            },
                            &data,
                        );
                        link_field = &link[..100];
                    }
                    if path.len() > 100 {
                        let mut data = path.to_vec();
                        data.push(0);
                        self = self.raw(
                            RawHeader {
                                name: b"././@LongLink",
                                prefix: b"",
                                typeflag: b'L',
                                size: data.len() as u64,
                                link: b"",
                                meta: Meta::default(),
                                gnu: true,
                            },
                            &data,
                        );
                        name = &path[..100];
                    }
                }
                LongNames::UstarPrefix => {
                    assert!(link.len() <= 100, "ustar cannot hold long link names");
                    let split = path[..path.len().min(156)]
                        .iter()
                        .rposition(|&b| b == b'/')
                        .expect("a slash to split the path at");
                    prefix = &path[..split];
                    name = &path[split + 1..];
                }
            }
        }
        let gnu = how == LongNames::Gnu;
        self.raw(
            RawHeader {
                name,
                prefix,
                typeflag,
                size: data.len() as u64,
                link: link_field,
                meta,
                gnu,
            },
            data,
        )
    }

    /// A regular file, mode 0644, root-owned.
    pub fn file(self, path: impl AsRef<[u8]>, content: &[u8]) -> Self {
        self.entry(path, b'0', content, b"", Meta::default())
    }

    /// A regular file with the given owner, mode and time.
    pub fn file_with(self, path: impl AsRef<[u8]>, content: &[u8], meta: Meta) -> Self {
        self.entry(path, b'0', content, b"", meta)
    }

    /// A regular file written with the old `\0` type flag.
    pub fn old_style_file(self, path: impl AsRef<[u8]>, content: &[u8]) -> Self {
        self.entry(path, 0, content, b"", Meta::default())
    }

    /// A directory, mode 0755.
    pub fn dir(self, path: impl AsRef<[u8]>) -> Self {
        let mut path = path.as_ref().to_vec();
        if path.last() != Some(&b'/') {
            path.push(b'/');
        }
        let meta = Meta {
            mode: 0o755,
            ..Meta::default()
        };
        self.entry(path, b'5', b"", b"", meta)
    }

    /// A directory with the given owner, mode and time.
    pub fn dir_with(self, path: impl AsRef<[u8]>, meta: Meta) -> Self {
        self.entry(path, b'5', b"", b"", meta)
    }

    /// A symbolic link.
    pub fn symlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let meta = Meta {
            mode: 0o777,
            ..Meta::default()
        };
        self.entry(path, b'2', b"", target, meta)
    }

    /// A hard link to `target`.
    pub fn hardlink(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.entry(path, b'1', b"", target, Meta::default())
    }

    /// A character device.
    pub fn char_device(self, path: impl AsRef<[u8]>) -> Self {
        self.entry(path, b'3', b"", b"", Meta::default())
    }

    /// A block device.
    pub fn block_device(self, path: impl AsRef<[u8]>) -> Self {
        self.entry(path, b'4', b"", b"", Meta::default())
    }

    /// A named pipe.
    pub fn fifo(self, path: impl AsRef<[u8]>) -> Self {
        self.entry(path, b'6', b"", b"", Meta::default())
    }

    /// A whiteout marker deleting `path` from the layers below (`DIR/.wh.NAME`).
    pub fn whiteout(self, path: impl AsRef<[u8]>) -> Self {
        let path = path.as_ref();
        let marker = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => [&path[..=slash], b".wh.", &path[slash + 1..]].concat(),
            None => [&b".wh."[..], path].concat(),
        };
        self.file(marker, b"")
    }

    /// An opaque-directory marker (`DIR/.wh..wh..opq`); `""` for the root.
    pub fn opaque(self, dir: impl AsRef<[u8]>) -> Self {
        let dir = dir.as_ref();
        let marker = if dir.is_empty() {
            b".wh..wh..opq".to_vec()
        } else {
            [dir, b"/.wh..wh..opq"].concat()
        };
        self.file(marker, b"")
    }

    /// The tar as it stands, without end-of-archive blocks.
    pub fn tar_without_end(&self) -> Vec<u8> {
        self.tar.clone()
    }

    /// The finished tar: entries and two zero blocks.
    pub fn tar(&self) -> Vec<u8> {
        let mut tar = self.tar.clone();
        tar.resize(tar.len() + 1024, 0);
        tar
    }

    /// Finish the tar and compress it.
    pub fn build(&self, how: Compress) -> Built {
        built(self.tar(), how)
    }
}

impl Built {
    /// This layer as an image layer: its blob with `media_type`, and its tar (for the diff_id).
    pub fn layer(&self, media_type: &str) -> (super::push::Blob, Vec<u8>) {
        (
            super::push::Blob::new(self.blob.clone(), media_type),
            self.tar.clone(),
        )
    }
}

/// Compress an arbitrary tar (or any bytes) as a layer blob.
pub fn built(tar: Vec<u8>, how: Compress) -> Built {
    let blob = compress(&tar, how);
    Built {
        digest: Digest::sha256_of(&blob),
        diff_id: Digest::sha256_of(&tar),
        blob,
        tar,
    }
}

/// Compress bytes one of the ways layers are stored.
pub fn compress(data: &[u8], how: Compress) -> Vec<u8> {
    match how {
        Compress::None => data.to_vec(),
        Compress::Gzip => gzip(data),
        Compress::GzipMembers(members) => {
            assert!(members > 0);
            // Split at uneven offsets so members do not line up with tar blocks.
            let step = (data.len() / members).max(1) + 7;
            let mut out = Vec::new();
            for piece in data.chunks(step) {
                out.extend(gzip(piece));
            }
            out
        }
        Compress::Zstd => zstd::encode_all(data, 3).expect("zstd compresses in memory"),
        Compress::ZstdFrames(frames) => {
            assert!(frames > 0);
            let step = (data.len() / frames).max(1) + 5;
            let mut out = Vec::new();
            for piece in data.chunks(step) {
                out.extend(zstd::encode_all(piece, 3).expect("zstd compresses in memory"));
            }
            out
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip writes to memory");
    encoder.finish().expect("gzip finishes in memory")
}

/// `n` bytes of deterministic content, different for each `seed`.
pub fn content(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
