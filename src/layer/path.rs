//! Path normalisation shared by the layer index and the tree: `./a/b`, `a/b`, `/a/b/` and
//! `a//./b` all name the same file, and names are raw bytes (tar does not promise UTF-8).

/// Normalise a tar path into `out` (cleared first): components joined by `/`, with no leading
/// or trailing slash and no empty or `.` components; the root directory is the empty path.
///
/// Returns `false` (leaving `out` unspecified) when a component is `..`: such a path could
/// escape the image root, so callers refuse it rather than guess what it meant.
pub fn normalize_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    // Nearly every path in a layer is normal already, but for a directory's trailing slash:
    // one scan and one copy instead of a copy per component.
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    if is_normal(trimmed) {
        out.extend_from_slice(trimmed);
        return true;
    }
    normalize_by_components(raw, out)
}

/// [`normalize_into`] one component at a time, for any path (`out` cleared first).
fn normalize_by_components(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return false,
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    true
}

/// Whether `path` is surely normal: no component is empty, `.` or `..`, so there is no
/// leading, trailing or doubled slash. Such a component comes first or after a slash, and
/// begins with a slash, a dot or the path's end, which is what is looked for, eight bytes at
/// a time; a name that begins with a dot (`.bashrc`) is left to the slower component walk.
fn is_normal(path: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// The top bit of every byte of `word` that equals `byte`, and no other bit.
    fn bytes_equal(word: u64, byte: u8) -> u64 {
        let x = word ^ (ONES * u64::from(byte));
        // Per byte, the top bit of (x & 0x7f) + 0x7f is set unless its low bits are all
        // zero, and no byte carries into the next.
        !(((x & LOW7) + LOW7) | x) & HIGH
    }
    match (path.first(), path.last()) {
        (None, _) => return true,
        (Some(b'/' | b'.'), _) | (_, Some(b'/')) => return false,
        _ => {}
    }
    let words = path.chunks_exact(8);
    let rest = words.remainder().len();
    // The bytes after the last whole word, at the bottom of a word whose top bytes are zeros
    // (neither slashes nor dots). Taken from the path's last eight bytes when it has them: a
    // copy into a buffer is a call to memcpy and a stalled load, on every path.
    let last = match path.len() {
        _ if rest == 0 => None,
        len if len >= 8 => {
            let tail: [u8; 8] = path[len - 8..].try_into().unwrap_or_default();
            Some(u64::from_le_bytes(tail) >> (8 * (8 - rest)))
        }
        _ => Some(
            path.iter()
                .enumerate()
                .fold(0u64, |word, (i, &b)| word | u64::from(b) << (8 * i)),
        ),
    };
    // A slash in the last byte of the previous word, as the top bit of byte 0.
    let mut carried = 0u64;
    let whole = words.map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    for word in whole.chain(last) {
        let slashes = bytes_equal(word, b'/');
        let starts = slashes | bytes_equal(word, b'.');
        // Byte i + 1 starts a bad component when byte i is a slash.
        if ((slashes << 8) | carried) & starts != 0 {
            return false;
        }
        carried = slashes >> 56;
    }
    true
}

/// The normalised form of `raw` (see [`normalize_into`]), or `None` when it holds a `..`
/// component.
pub fn normalize_path(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    normalize_into(raw, &mut out).then_some(out)
}

/// The components of a normalised path (none for the root).
pub fn components(normalized: &[u8]) -> impl Iterator<Item = &[u8]> {
    normalized
        .split(|&b| b == b'/')
        .filter(|component| !component.is_empty())
}

/// Split a normalised path into its parent and last component; `None` for the root.
pub fn split_last(normalized: &[u8]) -> Option<(&[u8], &[u8])> {
    if normalized.is_empty() {
        return None;
    }
    Some(match normalized.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&normalized[..slash], &normalized[slash + 1..]),
        None => (&[][..], normalized),
    })
}

/// Join a normalised parent path and one name into `out`.
pub fn join_into(parent: &[u8], name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
}

/// Length of the longest common prefix of two byte strings, compared eight bytes at a time.
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut i = 0;
    while i + 8 <= n {
        let diff = word(a, i) ^ word(b, i);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_spellings_normalise_alike() {
        for raw in [
            &b"a/b"[..],
            b"./a/b",
            b"/a/b",
            b"a/b/",
            b"a//b",
            b"./a/./b/",
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Some(&b"a/b"[..]), "{raw:?}");
        }
        assert_eq!(normalize_path(b"./").as_deref(), Some(&b""[..]));
        assert_eq!(normalize_path(b"/").as_deref(), Some(&b""[..]));
        assert_eq!(normalize_path(b"").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn the_quick_check_agrees_with_the_component_walk() {
        // Every path of up to six bytes over the letters that matter, at every alignment
        // against the eight-byte words (leading bytes shift the interesting ones along).
        let alphabet = [b'a', b'/', b'.'];
        let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = paths
                .iter()
                .filter(|p| p.len() == paths.last().map_or(0, Vec::len))
                .flat_map(|p| {
                    alphabet.iter().map(move |&b| {
                        let mut q = p.clone();
                        q.push(b);
                        q
                    })
                })
                .collect();
            paths.extend(longer);
        }
        for tail in &paths {
            for lead in 0..9 {
                let mut raw = b"x".repeat(lead);
                raw.extend_from_slice(tail);
                let mut walked = Vec::new();
                let ok = normalize_by_components(&raw, &mut walked);
                let mut out = Vec::new();
                let normalised = normalize_into(&raw, &mut out);
                assert_eq!(normalised, ok, "{raw:?}");
                if ok {
                    assert_eq!(out, walked, "{raw:?}");
                }
                if is_normal(&raw) {
                    assert_eq!(raw, walked, "{raw:?} is not normal");
                }
            }
        }
    }

    #[test]
    fn parent_components_are_refused() {
        assert_eq!(normalize_path(b"../etc/passwd"), None);
        assert_eq!(normalize_path(b"a/../../b"), None);
        assert_eq!(normalize_path(b"a/..b").as_deref(), Some(&b"a/..b"[..]));
    }

    #[test]
    fn non_utf8_bytes_survive() {
        assert_eq!(
            normalize_path(b"./caf\xe9/x").as_deref(),
            Some(&b"caf\xe9/x"[..])
        );
    }

    #[test]
    fn split_and_join_round_trip() {
        assert_eq!(split_last(b"a/b/c"), Some((&b"a/b"[..], &b"c"[..])));
        assert_eq!(split_last(b"c"), Some((&b""[..], &b"c"[..])));
        assert_eq!(split_last(b""), None);
        let mut out = Vec::new();
        join_into(b"a/b", b"c", &mut out);
        assert_eq!(out, b"a/b/c");
        join_into(b"", b"c", &mut out);
        assert_eq!(out, b"c");
        assert_eq!(components(b"a/b").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        assert_eq!(components(b"").count(), 0);
    }

    #[test]
    fn common_prefix_at_every_position() {
        let a = b"usr/lib/python3/site-packages/pkg0042/mod3";
        for cut in 0..=a.len() {
            let mut b = a.to_vec();
            b.truncate(cut);
            assert_eq!(common_prefix(a, &b), cut);
            if cut < a.len() {
                b.push(b'#');
                assert_eq!(common_prefix(a, &b), cut);
                assert_eq!(common_prefix(&b, a), cut);
            }
        }
    }
}
