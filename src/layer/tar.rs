//! Tar header decoding: the 512-byte ustar/GNU header, its numeric fields, PAX records.
//!
//! Only what an image layer needs is decoded; the stream itself is walked by
//! [`super::index`], which owns offsets, hashing and truncation checks.

/// Size of a tar block; headers are one block and data is padded to whole blocks.
pub const BLOCK: usize = 512;

/// One raw header block.
pub type Block = [u8; BLOCK];

/// The fields of a header block, as stored (before PAX or GNU long names apply).
pub struct RawHeader<'a> {
    block: &'a Block,
}

/// Why a header block could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The checksum does not match: not a tar stream, or corrupt.
    Checksum,
    /// A numeric field holds something other than octal digits or base-256.
    Number(&'static str),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Checksum => {
                f.write_str("bad header checksum (not a tar archive, or corrupt)")
            }
            HeaderError::Number(field) => write!(f, "invalid {field} field in tar header"),
        }
    }
}

/// Whether a block is all zeros (the end-of-archive marker).
pub fn is_zero_block(block: &Block) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Bytes of a string field up to its first NUL.
fn c_str(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Decode a numeric field: octal ASCII (padded with spaces or NULs), or GNU base-256 when the
/// high bit of the first byte is set. Negative base-256 values come back as `Err` unless
/// `clamp_negative`, which maps them to 0 (pre-1970 mtimes).
fn numeric(field: &[u8], name: &'static str, clamp_negative: bool) -> Result<u64, HeaderError> {
    let Some(&first) = field.first() else {
        return Ok(0);
    };
    if first & 0x80 != 0 {
        if first == 0xff {
            return if clamp_negative {
                Ok(0)
            } else {
                Err(HeaderError::Number(name))
            };
        }
        let mut value: u64 = u64::from(first & 0x7f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or(HeaderError::Number(name))?;
        }
        return Ok(value);
    }
    let mut value: u64 = 0;
    let mut seen_digit = false;
    for &b in field {
        match b {
            b'0'..=b'7' => {
                seen_digit = true;
                value = value
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(HeaderError::Number(name))?;
            }
            b' ' if !seen_digit => {}
            b' ' | 0 => break,
            _ => return Err(HeaderError::Number(name)),
        }
    }
    Ok(value)
}

/// Sum of a block's bytes, eight at a time: each 64-bit word is split into four 16-bit lanes
/// (even and odd bytes), which cannot overflow over one block (64 words × 2 × 255 < 2^16). The
/// compiler does not vectorise a byte-by-byte sum into a 64-bit total, and the checksum of
/// every header was a tenth of the index thread's time on a million-file layer.
fn byte_sum(block: &Block) -> u64 {
    const LOW_BYTES: u64 = 0x00ff_00ff_00ff_00ff;
    let mut lanes = 0u64;
    for word in block.chunks_exact(8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        lanes += (w & LOW_BYTES) + ((w >> 8) & LOW_BYTES);
    }
    (lanes & 0xffff) + ((lanes >> 16) & 0xffff) + ((lanes >> 32) & 0xffff) + (lanes >> 48)
}

impl<'a> RawHeader<'a> {
    /// Decode a block whose checksum is valid.
    pub fn parse(block: &'a Block) -> Result<Self, HeaderError> {
        let stored = numeric(&block[148..156], "checksum", false)?;
        // The checksum is the sum of all header bytes with the checksum field taken as spaces:
        // the whole block is summed, then the field is swapped for spaces arithmetically.
        let field_sum: u64 = block[148..156].iter().map(|&b| u64::from(b)).sum();
        let unsigned = byte_sum(block) - field_sum + 8 * u64::from(b' ');
        if stored != unsigned {
            // Some old writers summed signed bytes.
            let field_signed: i64 = block[148..156].iter().map(|&b| i64::from(b as i8)).sum();
            let signed = block.iter().map(|&b| i64::from(b as i8)).sum::<i64>() - field_signed
                + 8 * i64::from(b' ');
            if i64::try_from(stored).ok() != Some(signed) {
                return Err(HeaderError::Checksum);
            }
        }
        Ok(RawHeader { block })
    }

    /// The type flag byte (`0`, `\0`, `5`, `x`, `L`, …).
    pub fn typeflag(&self) -> u8 {
        self.block[156]
    }

    /// The name, joined with the ustar prefix when the header is POSIX ustar (GNU headers use
    /// the prefix area for other fields).
    pub fn name_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let name = c_str(&self.block[0..100]);
        if &self.block[257..263] == b"ustar\0" {
            let prefix = c_str(&self.block[345..500]);
            if !prefix.is_empty() {
                out.extend_from_slice(prefix);
                out.push(b'/');
            }
        }
        out.extend_from_slice(name);
    }

    /// The link name field.
    pub fn link_name(&self) -> &'a [u8] {
        c_str(&self.block[157..257])
    }

    /// Permission bits (type bits some writers add are dropped).
    pub fn mode(&self) -> Result<u32, HeaderError> {
        Ok((numeric(&self.block[100..108], "mode", false)? & 0o7777) as u32)
    }

    /// Owner user id.
    pub fn uid(&self) -> Result<u64, HeaderError> {
        numeric(&self.block[108..116], "uid", false)
    }

    /// Owner group id.
    pub fn gid(&self) -> Result<u64, HeaderError> {
        numeric(&self.block[116..124], "gid", false)
    }

    /// Data size in bytes.
    pub fn size(&self) -> Result<u64, HeaderError> {
        numeric(&self.block[124..136], "size", false)
    }

    /// Modification time in seconds since the epoch (negative times read as 0).
    pub fn mtime(&self) -> Result<u64, HeaderError> {
        numeric(&self.block[136..148], "mtime", true)
    }

    /// The type flag and every numeric field, read out of the block: the walk reads a header
    /// where it lies in the stream's buffer, and lets go of it before the entry's data.
    pub fn fields(&self) -> HeaderFields {
        HeaderFields {
            typeflag: self.typeflag(),
            size: self.size(),
            mode: self.mode(),
            uid: self.uid(),
            gid: self.gid(),
            mtime: self.mtime(),
        }
    }
}

/// A header's type flag and numeric fields, each as [`RawHeader`]'s method gives it; an error
/// counts only where the field is used.
pub struct HeaderFields {
    /// [`RawHeader::typeflag`].
    pub typeflag: u8,
    /// [`RawHeader::size`].
    pub size: Result<u64, HeaderError>,
    /// [`RawHeader::mode`].
    pub mode: Result<u32, HeaderError>,
    /// [`RawHeader::uid`].
    pub uid: Result<u64, HeaderError>,
    /// [`RawHeader::gid`].
    pub gid: Result<u64, HeaderError>,
    /// [`RawHeader::mtime`].
    pub mtime: Result<u64, HeaderError>,
}

/// The PAX keys an index uses; others are ignored.
#[derive(Default)]
pub struct PaxOverrides {
    /// `path`.
    pub path: Option<Vec<u8>>,
    /// `linkpath`.
    pub link_path: Option<Vec<u8>>,
    /// `size`.
    pub size: Option<u64>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// `mtime` (whole seconds; the fraction is dropped, negatives read as 0).
    pub mtime: Option<u64>,
}

fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 {
        return None;
    }
    let mut out: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        out = out.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(out)
}

/// Apply the records of a PAX extended header (`"LEN key=value\n"` each) to `into`.
pub fn parse_pax(mut data: &[u8], into: &mut PaxOverrides) -> Result<(), &'static str> {
    const MALFORMED: &str = "malformed PAX extended header";
    // Writers pad the data with NULs to the block; stop there.
    while let Some(&first) = data.first() {
        if first == 0 {
            break;
        }
        let space = data.iter().position(|&b| b == b' ').ok_or(MALFORMED)?;
        let len = decimal(&data[..space]).ok_or(MALFORMED)?;
        let len = usize::try_from(len).map_err(|_| MALFORMED)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(MALFORMED);
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or(MALFORMED)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => into.path = (!value.is_empty()).then(|| value.to_vec()),
            b"linkpath" => into.link_path = (!value.is_empty()).then(|| value.to_vec()),
            b"size" => into.size = Some(decimal(value).ok_or("invalid PAX size")?),
            b"uid" => into.uid = decimal(value),
            b"gid" => into.gid = decimal(value),
            b"mtime" => {
                into.mtime = if value.first() == Some(&b'-') {
                    Some(0)
                } else {
                    let whole = value.split(|&b| b == b'.').next().unwrap_or_default();
                    decimal(whole)
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The name stored in a GNU long-name (`L`) or long-link (`K`) entry: its data up to the NUL.
pub fn gnu_long_name(data: &[u8]) -> Vec<u8> {
    c_str(data).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_base256_numbers() {
        assert_eq!(numeric(b"0000644\0", "mode", false), Ok(0o644));
        assert_eq!(numeric(b"   644 \0", "mode", false), Ok(0o644));
        assert_eq!(numeric(b"\0\0\0\0", "size", false), Ok(0));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 0x01;
        big[10] = 0x02;
        assert_eq!(numeric(&big, "size", false), Ok(0x0201));
        assert_eq!(
            numeric(&[0xff; 12], "size", false),
            Err(HeaderError::Number("size"))
        );
        assert_eq!(numeric(&[0xff; 12], "mtime", true), Ok(0));
        assert_eq!(
            numeric(b"12x4", "size", false),
            Err(HeaderError::Number("size"))
        );
    }

    #[test]
    fn byte_sum_matches_a_plain_sum() {
        let mut block = [0u8; BLOCK];
        assert_eq!(byte_sum(&block), 0);
        block = [0xff; BLOCK];
        assert_eq!(byte_sum(&block), 255 * BLOCK as u64);
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i * 131 % 251) as u8;
        }
        let plain: u64 = block.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(byte_sum(&block), plain);
    }

    #[test]
    fn pax_records_apply() {
        let mut pax = PaxOverrides::default();
        let data = b"30 mtime=1700000000.123456789\n15 path=\xff/long\n13 size=4096\n";
        parse_pax(data, &mut pax).expect("valid records");
        assert_eq!(pax.path.as_deref(), Some(&b"\xff/long"[..]));
        assert_eq!(pax.size, Some(4096));
        assert_eq!(pax.mtime, Some(1_700_000_000));
        assert!(parse_pax(b"99 path=x\n", &mut pax).is_err());
        assert!(parse_pax(b"garbage", &mut pax).is_err());
    }
}
