//! Path normalisation shared by the layer index and the tree: `./a/b`, `a/b`, `/a/b/` and
//! `a//./b` all name the same file, and names are raw bytes (tar does not promise UTF-8).

/// Normalise a tar path into `out` (cleared first): components joined by `/`, with no leading
/// or trailing slash and no empty or `.` components; the root directory is the empty path.
///
/// Returns `false` (leaving `out` unspecified) when a component is `..`: such a path could
/// escape the image root, so callers refuse it rather than guess what it meant.
pub fn normalize_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
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
