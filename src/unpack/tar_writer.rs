//! Writing a tar stream entry by entry: POSIX ustar headers, with a PAX extended header for
//! what ustar cannot hold (names and link targets over 100 bytes, sizes of 8 GiB and more,
//! large ids and times). Names and link targets are written byte for byte as the image holds
//! them (not re-spelled through a platform path type), so a layer written here reads back to
//! the same index.
//!
//! Once a write fails the writer refuses everything after it, and the end-of-archive blocks
//! are written only by [`TarWriter::finish`]: a stream that stopped on an error stays visibly
//! cut short for every tar reader.

use std::io::{self, Read, Write};

/// Size of a tar block.
const BLOCK: usize = 512;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// Largest value of a 7-digit octal field (uid, gid).
const MAX_OCTAL_7: u64 = 0o777_7777;
/// Name of the PAX extended header entries (readers ignore it).
const PAX_NAME: &[u8] = b"././@PaxHeader";

/// Owner, permissions and modification time of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// A tar stream being written to `W`.
pub struct TarWriter<W: Write> {
    out: W,
    failed: bool,
    header: Box<[u8; BLOCK]>,
}

impl<W: Write> TarWriter<W> {
    /// A new, empty stream.
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            failed: false,
            header: Box::new([0u8; BLOCK]),
        }
    }

    /// A directory (written as `path/`).
    pub fn dir(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        let mut name = path.to_vec();
        name.push(b'/');
        self.guard(|w| w.entry(&name, b'5', meta, 0, b""))
    }

    /// A regular file of `size` bytes read from `data`, which must give exactly that many.
    /// An error from `data` leaves the entry cut short and the writer refusing further writes.
    pub fn file(
        &mut self,
        path: &[u8],
        meta: Meta,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        self.guard(|w| {
            w.entry(path, b'0', meta, size, b"")?;
            let mut buf = vec![0u8; (64 * 1024).min(size as usize).max(1)];
            let mut left = size;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
                let n = match data.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file's content ended before its size",
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                w.out.write_all(&buf[..n])?;
                left -= n as u64;
            }
            w.pad(size)
        })
    }

    /// A hard link to `target` (a path written earlier in the stream).
    pub fn hardlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        self.guard(|w| w.entry(path, b'1', meta, 0, target))
    }

    /// A symbolic link; `target` is kept byte for byte.
    pub fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> io::Result<()> {
        self.guard(|w| w.entry(path, b'2', meta, 0, target))
    }

    /// A named pipe.
    pub fn fifo(&mut self, path: &[u8], meta: Meta) -> io::Result<()> {
        self.guard(|w| w.entry(path, b'6', meta, 0, b""))
    }

    /// Write the end-of-archive blocks, flush, and hand the output back.
    pub fn finish(mut self) -> io::Result<W> {
        self.guard(|w| {
            w.out.write_all(&[0u8; 2 * BLOCK])?;
            w.out.flush()
        })?;
        Ok(self.out)
    }

    /// The output, for a caller that gives up on the stream (nothing more is written).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Run one write, refusing it after an earlier failure and remembering a new one.
    fn guard(&mut self, write: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "the tar stream stopped after an earlier error",
            ));
        }
        let result = write(self);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// A header (preceded by a PAX header when needed) for an entry with `size` data bytes.
    fn entry(
        &mut self,
        path: &[u8],
        typeflag: u8,
        meta: Meta,
        size: u64,
        link: &[u8],
    ) -> io::Result<()> {
        let mut pax = Vec::new();
        let mut binary = false;
        if path.len() > 100 {
            binary |= std::str::from_utf8(path).is_err();
            pax_record(&mut pax, "path", path);
        }
        if link.len() > 100 {
            binary |= std::str::from_utf8(link).is_err();
            pax_record(&mut pax, "linkpath", link);
        }
        if size > MAX_OCTAL_11 {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
        }
        if u64::from(meta.uid) > MAX_OCTAL_7 {
            pax_record(&mut pax, "uid", meta.uid.to_string().as_bytes());
        }
        if u64::from(meta.gid) > MAX_OCTAL_7 {
            pax_record(&mut pax, "gid", meta.gid.to_string().as_bytes());
        }
        if meta.mtime > MAX_OCTAL_11 {
            pax_record(&mut pax, "mtime", meta.mtime.to_string().as_bytes());
        }
        if !pax.is_empty() {
            if binary {
                // Names are raw bytes, not UTF-8: say so, as POSIX provides.
                let mut records = Vec::new();
                pax_record(&mut records, "hdrcharset", b"BINARY");
                records.extend_from_slice(&pax);
                pax = records;
            }
            let pax_meta = Meta {
                mode: 0o644,
                ..Meta::default()
            };
            self.header_block(PAX_NAME, b'x', pax_meta, pax.len() as u64, b"");
            self.out.write_all(&self.header[..])?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.header_block(path, typeflag, meta, size, link);
        self.out.write_all(&self.header[..])
    }

    /// Fill `self.header` with a ustar header; fields that do not fit were put in PAX records
    /// and are written here truncated or as 0.
    fn header_block(&mut self, path: &[u8], typeflag: u8, meta: Meta, size: u64, link: &[u8]) {
        let h = &mut self.header;
        h.fill(0);
        let name = &path[..path.len().min(100)];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], u64::from(meta.mode & 0o7777));
        octal(&mut h[108..116], u64::from(meta.uid).min(MAX_OCTAL_7));
        octal(&mut h[116..124], u64::from(meta.gid).min(MAX_OCTAL_7));
        octal(&mut h[124..136], if size > MAX_OCTAL_11 { 0 } else { size });
        octal(&mut h[136..148], meta.mtime.min(MAX_OCTAL_11));
        h[156] = typeflag;
        let link = &link[..link.len().min(100)];
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let checksum = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(checksum.as_bytes());
    }

    /// Zeros up to the next block boundary after `len` data bytes.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

/// Write `value` as zero-padded octal filling `field` but its last byte, which stays NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..text.len()].copy_from_slice(text);
    field[digits] = 0;
}

/// Append one PAX record, `"LEN key=value\n"`, LEN counting the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len += 1;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::layer::{index_layer, EntryKind};

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 1000,
            gid: 1001,
            mtime: 1_700_000_123,
        }
    }

    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let long_name: Vec<u8> = [&b"deep/"[..], &[b'x'; 150], b"/caf\xe9.txt"].concat();
        let long_target: Vec<u8> = [&b"../../"[..], &[b'y'; 120]].concat();
        let mut w = TarWriter::new(Vec::new());
        w.dir(b"etc", meta(0o755)).unwrap();
        w.file(b"etc/passwd", meta(0o644), 5, &mut &b"root\n"[..])
            .unwrap();
        w.file(&long_name, meta(0o4755), 3, &mut &b"abc"[..])
            .unwrap();
        w.hardlink(b"etc/passwd-link", b"etc/passwd", meta(0o644))
            .unwrap();
        w.symlink(b"etc/alias", b"..//usr/./bin/", meta(0o777))
            .unwrap();
        w.symlink(b"long-link", &long_target, meta(0o777)).unwrap();
        w.fifo(b"run/pipe", meta(0o600)).unwrap();
        let big_ids = Meta {
            mode: 0o640,
            uid: 4_000_000,
            gid: 3_000_000,
            mtime: 1 << 40,
        };
        w.file(b"ids", big_ids, 0, &mut &b""[..]).unwrap();
        (w.finish().unwrap(), long_name, long_target)
    }

    #[test]
    fn the_index_reads_back_every_entry_byte_for_byte() {
        let (tar, long_name, long_target) = sample();
        assert_eq!(tar.len() % 512, 0);
        let index = index_layer(tar.as_slice(), None).unwrap();
        let entries: Vec<_> = index.entries().collect();
        let find = |path: &[u8]| {
            entries
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, e)| (*e).clone())
                .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(path)))
        };
        assert_eq!(find(b"etc").kind(), EntryKind::Dir);
        let passwd = find(b"etc/passwd");
        assert_eq!(
            (passwd.size(), passwd.mode(), passwd.uid, passwd.gid),
            (5, 0o644, 1000, 1001)
        );
        assert_eq!(passwd.mtime(), 1_700_000_123);
        let long = find(&long_name);
        assert_eq!((long.size(), long.mode()), (3, 0o4755));
        let link = find(b"etc/passwd-link");
        assert_eq!(link.kind(), EntryKind::Hardlink);
        assert_eq!(link.link_target(), Some(&b"etc/passwd"[..]));
        let alias = find(b"etc/alias");
        assert_eq!(alias.link_target(), Some(&b"..//usr/./bin/"[..]));
        assert_eq!(find(b"long-link").link_target(), Some(&long_target[..]));
        assert_eq!(find(b"run/pipe").kind(), EntryKind::Fifo);
        let ids = find(b"ids");
        // Written exactly in a PAX record; an entry keeps times up to the year 2242 and
        // reads later ones as that.
        assert_eq!(
            (ids.uid, ids.gid, ids.mtime()),
            (4_000_000, 3_000_000, crate::layer::MAX_MTIME)
        );
    }

    #[test]
    fn an_independent_reader_agrees() {
        let (tar, long_name, _) = sample();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path_bytes().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((path, data));
        }
        assert_eq!(seen.len(), 8);
        assert_eq!(seen[1], (b"etc/passwd".to_vec(), b"root\n".to_vec()));
        assert_eq!(seen[2], (long_name, b"abc".to_vec()));
    }

    #[test]
    fn a_failed_file_leaves_the_stream_cut_short() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("bad bytes"))
            }
        }
        let mut w = TarWriter::new(Vec::new());
        w.file(b"a", meta(0o644), 1, &mut &b"a"[..]).unwrap();
        assert!(w.file(b"b", meta(0o644), 10, &mut Failing).is_err());
        assert!(w.dir(b"c", meta(0o755)).is_err(), "nothing after a failure");
        let out = w.into_inner();
        // Header and data of `a`, then `b`'s header: no end-of-archive blocks.
        assert_eq!(out.len(), 3 * 512);
        let mut archive = tar::Archive::new(out.as_slice());
        let read_all = archive.entries().unwrap().try_for_each(|e| {
            let mut e = e?;
            io::copy(&mut e, &mut io::sink()).map(|_| ())
        });
        assert!(read_all.is_err(), "a reader sees the cut");
    }
}
