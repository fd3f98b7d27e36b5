//! The one part of an X.509 certificate that the pinned-certificate check reads itself: its
//! validity period. rustls checks everything else (signatures, names), but for a certificate
//! accepted because it is exactly the one trusted in `certs.d` it cannot be asked for the dates,
//! so they are read here from the DER: `Certificate → tbsCertificate → validity`.

use std::time::Duration;

/// When a certificate starts and stops being valid, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    /// `notBefore`.
    pub not_before: u64,
    /// `notAfter`.
    pub not_after: u64,
}

/// The validity period of a DER certificate, or `None` when the bytes are not one.
pub(crate) fn validity(der: &[u8]) -> Option<Validity> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (tbs, _) = element(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, absent in v1 certificates.
    if rest.first() == Some(&VERSION) {
        rest = element(rest, VERSION)?.1;
    }
    let (_, rest) = element(rest, INTEGER)?; // serialNumber
    let (_, rest) = element(rest, SEQUENCE)?; // signature algorithm
    let (_, rest) = element(rest, SEQUENCE)?; // issuer
    let (validity, _) = element(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some(Validity {
        not_before,
        not_after,
    })
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One DER element with tag `tag` at the start of `input`: its content and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        // Long form: the low bits say how many length bytes follow (certificates need 1 to 3).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |length, &b| (length << 8) | usize::from(b))
    };
    if rest.len() < length {
        return None;
    }
    Some(rest.split_at(length))
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`), as
/// RFC 5280 requires them to be written, in seconds since the epoch (0 for earlier dates).
fn time(input: &[u8]) -> Option<(u64, &[u8])> {
    let tag = *input.first()?;
    let (content, rest) = element(input, tag)?;
    let text = std::str::from_utf8(content).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest_digits) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<u32> { rest_digits.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((u64::try_from(seconds).unwrap_or(0), rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `seconds` since the epoch as `2025-01-31 12:00:00 UTC`.
pub(crate) fn format_time(seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element: tag, definite length, content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn certificate(version: bool, not_before: &[u8], not_after: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(VERSION, &tlv(INTEGER, &[2])));
        }
        tbs.extend(tlv(INTEGER, &[0x01, 0x23]));
        tbs.extend(tlv(SEQUENCE, &tlv(0x06, &[0x2a, 0x86, 0x48])));
        // A long issuer name, so its length takes the long form.
        tbs.extend(tlv(SEQUENCE, &[b'x'; 300]));
        let mut validity = not_before.to_vec();
        validity.extend_from_slice(not_after);
        tbs.extend(tlv(SEQUENCE, &validity));
        tbs.extend(tlv(SEQUENCE, b"subject and the rest"));
        let mut cert = tlv(SEQUENCE, &tbs);
        cert.extend(tlv(SEQUENCE, b"signature algorithm"));
        cert.extend(tlv(0x03, b"signature"));
        tlv(SEQUENCE, &cert)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let der = certificate(
            true,
            &tlv(UTC_TIME, b"240229120000Z"),
            &tlv(GENERALIZED_TIME, b"20510101000000Z"),
        );
        let v = validity(&der).expect("validity");
        // 2024-02-29 12:00:00 UTC and 2051-01-01 00:00:00 UTC.
        assert_eq!(v.not_before, 1_709_208_000);
        assert_eq!(v.not_after, 2_556_144_000);
        assert_eq!(format_time(v.not_before), "2024-02-29 12:00:00 UTC");
        // A v1 certificate has no version field; UTCTime 50–99 is 19xx.
        let der = certificate(
            false,
            &tlv(UTC_TIME, b"700101000000Z"),
            &tlv(UTC_TIME, b"491231235959Z"),
        );
        let v = validity(&der).expect("v1 validity");
        assert_eq!(v.not_before, 0);
        assert_eq!(format_time(v.not_after), "2049-12-31 23:59:59 UTC");
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(b"not DER at all"), None);
        // Local times (no Z), fractions and impossible dates are not RFC 5280 times.
        for bad in [
            tlv(UTC_TIME, b"240229120000"),
            tlv(GENERALIZED_TIME, b"20240229120000.5Z"),
            tlv(UTC_TIME, b"241329120000Z"),
            tlv(0x04, b"240229120000Z"),
        ] {
            let der = certificate(true, &bad, &tlv(UTC_TIME, b"300101000000Z"));
            assert_eq!(validity(&der), None);
        }
        // A length running past the end.
        let mut der = certificate(true, &tlv(UTC_TIME, b"240229120000Z"), &[]);
        der.truncate(der.len() - 10);
        assert_eq!(validity(&der), None);
    }
}
