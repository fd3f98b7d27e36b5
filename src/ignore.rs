//! Paths left out of what the CI rules measure: the `ignorePaths` list of `.dive-ci` and each
//! `--ignore-path`, for known exceptions a team accepts without turning a rule off.
//!
//! A pattern is a glob over the absolute path, anchored at the root (`/var/cache/**` and
//! `var/cache/**` are the same): `*` matches within one name, `?` one character of a name,
//! `[abc]`, `[a-z]` and `[!abc]` one character of a set, `**` any number of whole names
//! (`**/*.log` is a `.log` file anywhere), and `\` takes the next character literally. A
//! pattern that matches a directory leaves out everything below it too.
//!
//! The rules then see the figures of the paths that remain, computed exactly as the image's
//! own: efficiency over the kept paths' visits, wasted bytes of the kept paths visited twice or
//! more, and user wasted percent over the kept bytes of every layer but the first. The image's
//! own figures (in the summary, the explorer and `--json`'s `image`) stay whole.

use regex::bytes::Regex;

use crate::analysis::Figures;
use crate::ci::CiConfigError;
use crate::findings::{self, Findings};
use crate::image::ImageInfo;
use crate::tree::{FileTree, NodeId, VersionState};

/// Compiled ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct IgnorePaths {
    patterns: Vec<String>,
    regex: Option<Regex>,
}

impl IgnorePaths {
    /// Compile `patterns`; an empty pattern or one that leaves nothing to match is refused.
    pub fn new(patterns: &[String]) -> Result<IgnorePaths, CiConfigError> {
        if patterns.is_empty() {
            return Ok(IgnorePaths::default());
        }
        let mut alternatives = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            alternatives.push(glob_to_regex(pattern)?);
        }
        // A match of the path or of any of its ancestors: the pattern, then nothing or a
        // slash and anything.
        let source = format!("^(?:{})(?s-u:/.*)?$", alternatives.join("|"));
        let regex = Regex::new(&source)
            .map_err(|e| CiConfigError(format!("ignore patterns cannot be compiled: {e}")))?;
        Ok(IgnorePaths {
            patterns: patterns.to_vec(),
            regex: Some(regex),
        })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` (`/a/b` or `a/b`, raw bytes) or one of its ancestors matches a pattern.
    pub fn matches(&self, path: &[u8]) -> bool {
        let Some(regex) = &self.regex else {
            return false;
        };
        let mut relative = path;
        while let [b'/', rest @ ..] = relative {
            relative = rest;
        }
        regex.is_match(relative)
    }

    /// Per node of `tree` ([`NodeId::index`]), whether it is left out. Walks the tree once
    /// with one path buffer, so deep trees cost no per-node path copies.
    pub fn left_out(&self, tree: &FileTree) -> Vec<bool> {
        let mut out = vec![false; tree.node_count()];
        let Some(regex) = &self.regex else {
            return out;
        };
        let root = tree.root();
        let mut path: Vec<u8> = Vec::new();
        // (node, length of the parent's path, whether the parent is left out)
        let mut stack: Vec<(NodeId, usize, bool)> = vec![(root, 0, false)];
        while let Some((node, base, parent_out)) = stack.pop() {
            path.truncate(base);
            if node != root {
                path.push(b'/');
                path.extend_from_slice(tree.name(node));
            }
            let here = parent_out || (node != root && regex.is_match(&path[1..]));
            out[node.index()] = here;
            let len = path.len();
            for child in tree.children(node) {
                stack.push((child, len, here));
            }
        }
        out
    }
}

/// The figures as the rules see them, and what was left out to get them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleFigures {
    /// Efficiency over the kept paths (1.0 when they hold no bytes).
    pub efficiency: f64,
    /// Wasted bytes of the kept paths.
    pub wasted_bytes: u64,
    /// Those wasted bytes over the kept bytes of all layers but the first.
    pub user_wasted_percent: f64,
    /// Regular-file bytes stored under the paths left out, over every layer.
    pub left_out_bytes: u64,
    /// Paths left out that hold stored bytes.
    pub left_out_paths: u64,
}

impl RuleFigures {
    /// The image's own figures, nothing left out.
    pub fn whole(figures: &Figures) -> RuleFigures {
        RuleFigures {
            efficiency: figures.efficiency,
            wasted_bytes: figures.wasted_bytes,
            user_wasted_percent: figures.user_wasted_percent,
            left_out_bytes: 0,
            left_out_paths: 0,
        }
    }
}

/// The figures of `tree` without the nodes `left_out` marks (see [`IgnorePaths::left_out`];
/// `figures` when it marks none).
///
/// A path written twice in one layer's tar counts its last copy in that layer's kept bytes
/// (the model keeps one version per layer); everything else is exact.
pub fn measure(tree: &FileTree, figures: &Figures, left_out: &[bool]) -> RuleFigures {
    if !left_out.contains(&true) {
        return RuleFigures::whole(figures);
    }
    let layers = tree.layer_count();
    let upper_size: u64 = (1..layers).map(|l| tree.layer_stats(l).size_bytes).sum();
    let (mut sum_all, mut min_all, mut wasted) = (0u64, 0u64, 0u64);
    let (mut left_out_bytes, mut left_out_paths, mut left_out_upper) = (0u64, 0u64, 0u64);
    for (index, &out) in left_out.iter().enumerate() {
        let node = NodeId(index as u32);
        let visits = tree.visits(node);
        if out {
            if visits.sum > 0 {
                left_out_bytes += visits.sum;
                left_out_paths += 1;
                left_out_upper += tree
                    .versions(node)
                    .filter(|v| v.layer >= 1)
                    .map(|v| match v.state {
                        VersionState::Written(e) if e.kind() == crate::tree::EntryKind::File => {
                            e.size()
                        }
                        _ => 0,
                    })
                    .sum::<u64>();
            }
            continue;
        }
        sum_all += visits.sum;
        min_all += visits.min;
        if visits.count >= 2 {
            wasted += visits.sum;
        }
    }
    let upper = upper_size.saturating_sub(left_out_upper);
    RuleFigures {
        efficiency: if sum_all == 0 {
            1.0
        } else {
            min_all as f64 / sum_all as f64
        },
        wasted_bytes: wasted,
        user_wasted_percent: if upper == 0 {
            0.0
        } else {
            wasted as f64 / upper as f64
        },
        left_out_bytes,
        left_out_paths,
    }
}

/// An image analysed for the rules: its own figures and findings, and both as the rules see
/// them.
#[derive(Debug, Clone)]
pub struct Analysed {
    /// The figures, whole.
    pub figures: Figures,
    /// The figures as the rules see them.
    pub rule_figures: RuleFigures,
    /// The findings, whole.
    pub findings: Findings,
    /// The findings as the rules see them (the same as `findings` when nothing is left out).
    pub rule_findings: Findings,
}

/// Figures and findings of `tree` (the image `info`), whole and without what `ignore` leaves
/// out.
pub fn analyse_for_rules(info: &ImageInfo, tree: &FileTree, ignore: &IgnorePaths) -> Analysed {
    let steps = findings::layer_steps(info);
    let (figures, findings) = findings::with_figures(tree, &steps);
    let left_out = ignore.left_out(tree);
    let rule_figures = measure(tree, &figures, &left_out);
    let rule_findings = if left_out.contains(&true) {
        findings::find_without(tree, &steps, &left_out)
    } else {
        findings.clone()
    };
    Analysed {
        figures,
        rule_figures,
        findings,
        rule_findings,
    }
}

/// Wasted bytes of an earlier `--json` report's inefficiencies without the paths left out
/// (every path with wasted bytes is listed there, so this is exact).
pub fn wasted_of_listed<'a>(
    ignore: &IgnorePaths,
    listed: impl IntoIterator<Item = (&'a str, u64)>,
) -> u64 {
    listed
        .into_iter()
        .filter(|(path, _)| !ignore.matches(path.as_bytes()))
        .map(|(_, bytes)| bytes)
        .sum()
}

/// One glob as a regular expression over a path relative to the root.
fn glob_to_regex(pattern: &str) -> Result<String, CiConfigError> {
    let mut text = pattern.trim();
    loop {
        if let Some(rest) = text.strip_prefix("./") {
            text = rest;
        } else if let Some(rest) = text.strip_prefix('/') {
            text = rest;
        } else {
            break;
        }
    }
    let text = text.trim_end_matches('/');
    if text.is_empty() {
        return Err(CiConfigError(format!(
            "ignore pattern {pattern:?} names no path (use ** to leave out everything)"
        )));
    }
    let mut names: Vec<&str> = text.split('/').filter(|n| !n.is_empty()).collect();
    // `**/**` says no more than `**`.
    names.dedup_by(|a, b| *a == "**" && *b == "**");
    let last = names.len() - 1;
    let mut out = String::new();
    // Whether the next name needs a `/` before it (not first, not after a leading `**`).
    let mut need_slash = false;
    for (i, name) in names.iter().enumerate() {
        if *name == "**" {
            match (i == 0, i == last) {
                (true, true) => out.push_str("(?s-u:.)*"),
                (true, false) => out.push_str("(?s-u:.*/)?"),
                (false, _) => {
                    out.push_str("(?s-u:/.*)?");
                    need_slash = true;
                }
            }
            continue;
        }
        if need_slash {
            out.push('/');
        }
        out.push_str(&name_to_regex(name));
        need_slash = true;
    }
    Ok(out)
}

/// One name of a glob (no `/` in it).
fn name_to_regex(name: &str) -> String {
    const ANY: &str = "(?-u:[^/])";
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                out.push_str(ANY);
                out.push('*');
                // `**` inside a name is the same as `*`.
                while chars.get(i + 1) == Some(&'*') {
                    i += 1;
                }
            }
            '?' => out.push_str(ANY),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            '[' => match class(&chars[i..]) {
                Some((class, used)) => {
                    out.push_str(&class);
                    i += used - 1;
                }
                None => out.push_str(r"\["),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out
}

/// A bracket expression at the start of `chars`: the regex class and how many chars it used;
/// `None` when it is not closed (then `[` is literal).
fn class(chars: &[char]) -> Option<(String, usize)> {
    let mut i = 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let start = i;
    let mut body = String::new();
    loop {
        let c = *chars.get(i)?;
        // A `]` first in the set is a member, not the end.
        if c == ']' && i > start {
            break;
        }
        match c {
            '-' if i > start && chars.get(i + 1).is_some_and(|n| *n != ']') => body.push('-'),
            '\\' | '[' | ']' | '^' | '-' | '&' | '~' => {
                body.push('\\');
                body.push(c);
            }
            _ => body.push(c),
        }
        i += 1;
    }
    let class = if negated {
        format!("[^/{body}]")
    } else {
        format!("[{body}]")
    };
    Some((class, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyse;

    fn ignore(patterns: &[&str]) -> IgnorePaths {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        IgnorePaths::new(&owned).expect("patterns compile")
    }

    #[test]
    fn anchored_globs_with_double_star() {
        let i = ignore(&["/var/cache/**"]);
        assert!(i.matches(b"/var/cache"));
        assert!(i.matches(b"/var/cache/apt/pkgcache.bin"));
        assert!(!i.matches(b"/var/cached"));
        assert!(!i.matches(b"/srv/var/cache/x"));

        let i = ignore(&["**/*.log"]);
        assert!(i.matches(b"/app.log"));
        assert!(i.matches(b"/var/log/deep/app.log"));
        assert!(!i.matches(b"/var/log/app.log.1"));

        let i = ignore(&["usr/**/__pycache__"]);
        assert!(i.matches(b"/usr/__pycache__/x.pyc"));
        assert!(i.matches(b"/usr/lib/python3/__pycache__/y.pyc"));
        assert!(!i.matches(b"/opt/__pycache__/y.pyc"));

        for all in ["**", "**/**"] {
            assert!(ignore(&[all]).matches(b"/anything/at/all"), "{all}");
        }
    }

    #[test]
    fn star_question_and_sets_stay_within_one_name() {
        let i = ignore(&["/opt/*.jar"]);
        assert!(i.matches(b"/opt/app.jar"));
        assert!(!i.matches(b"/opt/lib/app.jar"));
        let i = ignore(&["/tmp/?.bin", "/data/[a-c]*", "/x/[!0-9]"]);
        assert!(i.matches(b"/tmp/a.bin"));
        assert!(!i.matches(b"/tmp/ab.bin"));
        assert!(i.matches(b"/data/beta"));
        assert!(!i.matches(b"/data/delta"));
        assert!(i.matches(b"/x/a"));
        assert!(!i.matches(b"/x/5"));
    }

    #[test]
    fn a_directory_pattern_covers_what_is_below() {
        let i = ignore(&["/root/.cache", "./srv/"]);
        assert!(i.matches(b"/root/.cache/pip/wheel"));
        assert!(i.matches(b"/srv/www/index.html"));
        assert!(!i.matches(b"/root/.cachex"));
    }

    #[test]
    fn regex_characters_and_odd_bytes_are_literal() {
        let i = ignore(&["/a.b/(x)+", r"/lit\*"]);
        assert!(i.matches(b"/a.b/(x)+"));
        assert!(!i.matches(b"/aXb/(x)+"));
        assert!(i.matches(b"/lit*"));
        assert!(!i.matches(b"/litx"));
        // Names that are not UTF-8 still match a wildcard.
        let i = ignore(&["/bin/*"]);
        assert!(i.matches(b"/bin/caf\xe9"));
        assert!(i.matches(b"/bin/a\nb"));
        // An unclosed set is a literal bracket.
        let i = ignore(&["/odd[name"]);
        assert!(i.matches(b"/odd[name"));
    }

    #[test]
    fn empty_patterns_are_refused() {
        for bad in ["", "/", "./", "  "] {
            let e = IgnorePaths::new(&[bad.to_string()]).unwrap_err();
            assert!(e.0.contains("names no path"), "{bad:?}: {e}");
        }
        assert!(IgnorePaths::new(&[]).expect("none").is_empty());
    }

    #[test]
    fn listed_wasted_bytes_skip_what_is_left_out() {
        let i = ignore(&["/var/cache/**"]);
        let listed = [("/var/cache/a", 100), ("/bin/tool", 50), ("/var/cache", 1)];
        assert_eq!(wasted_of_listed(&i, listed), 50);
    }

    /// A layer of regular files, `(path, content)`, as a tar indexed like a pulled layer.
    fn layer(files: &[(&str, Vec<u8>)]) -> crate::layer::LayerIndex {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, path, data.as_slice())
                .expect("tar entry");
        }
        let bytes = tar.into_inner().expect("tar");
        crate::layer::index_layer(bytes.as_slice(), None).expect("index")
    }

    fn bytes(seed: u8, n: usize) -> Vec<u8> {
        (0..n).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
    }

    /// Layer 0: /bin/tool 1000, /var/cache/apt/pkg.bin 500, /data/x 300, /opt/copy1 200 (P).
    /// Layer 1: /bin/tool 1200, /var/cache/apt/pkg.bin 600, /opt/copy2 200 (P),
    /// /var/cache/apt/dup 200 (P), /srv/copy3 200 (P).
    /// Layer sizes 2000 and 2400. Visits: tool 1000+1200, pkg.bin 500+600, every other path
    /// once. Σsum 4400, Σmin 2600, wasted 3300, user wasted 3300/2400.
    fn sample() -> FileTree {
        let p = bytes(7, 200);
        let mut tree = FileTree::new();
        tree.push_layer(layer(&[
            ("bin/tool", bytes(1, 1000)),
            ("var/cache/apt/pkg.bin", bytes(2, 500)),
            ("data/x", bytes(3, 300)),
            ("opt/copy1", p.clone()),
        ]));
        tree.push_layer(layer(&[
            ("bin/tool", bytes(4, 1200)),
            ("var/cache/apt/pkg.bin", bytes(5, 600)),
            ("opt/copy2", p.clone()),
            ("var/cache/apt/dup", p.clone()),
            ("srv/copy3", p),
        ]));
        tree
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn rule_figures_leave_out_the_matching_paths_exactly() {
        let tree = sample();
        let figures = analyse(&tree);
        assert_eq!(figures.wasted_bytes, 3300);
        assert!(close(figures.efficiency, 2600.0 / 4400.0));
        assert!(close(figures.user_wasted_percent, 3300.0 / 2400.0));

        let none = measure(&tree, &figures, &ignore(&["/nothing/**"]).left_out(&tree));
        assert_eq!(none, RuleFigures::whole(&figures));

        // Without /var/cache: pkg.bin (1100 stored, 600 of it above the base) and dup (200).
        // Kept: Σsum 3100, Σmin 1900, wasted 2200 (tool), upper bytes 2400 − 800.
        let left_out = ignore(&["/var/cache/**"]).left_out(&tree);
        let rule = measure(&tree, &figures, &left_out);
        assert_eq!(rule.left_out_bytes, 1300);
        assert_eq!(rule.left_out_paths, 2);
        assert_eq!(rule.wasted_bytes, 2200);
        assert!(close(rule.efficiency, 1900.0 / 3100.0));
        assert!(close(rule.user_wasted_percent, 2200.0 / 1600.0));
    }

    #[test]
    fn findings_without_the_left_out_paths() {
        let tree = sample();
        let steps = vec!["COPY a /".to_string(), "RUN b".to_string()];
        // Whole: tool 1000 + pkg.bin 500 overwritten; the apt cache holds pkg.bin 600 and
        // dup 200; copy1, copy2, copy3 are one content (dup is the cache's): 400.
        let whole = findings::find(&tree, &steps);
        assert_eq!(whole.reclaimable_bytes, 1500 + 800 + 400);

        let left_out = ignore(&["/var/cache/**"]).left_out(&tree);
        let found = findings::find_without(&tree, &steps, &left_out);
        assert_eq!(found.reclaimable_bytes, 1000 + 400);
        assert!(found
            .items
            .iter()
            .all(|f| f.paths.iter().all(|p| !p.starts_with(b"/var/cache"))));

        // Leaving out the copy that was kept elects the next one.
        let left_out = ignore(&["/opt/copy1"]).left_out(&tree);
        let found = findings::find_without(&tree, &steps, &left_out);
        assert_eq!(found.reclaimable_bytes, 1500 + 800 + 200);
        let dup = found
            .items
            .iter()
            .find(|f| f.kind == findings::FindingKind::DuplicateContent)
            .expect("duplicate finding");
        assert_eq!(dup.paths, vec![b"/srv/copy3".to_vec()]);
        assert_eq!(dup.place.as_deref(), Some(&b"/opt/copy2"[..]));
    }
}
