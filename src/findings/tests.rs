//! Each kind of finding on hand-built layers, with the expected bytes worked out by hand.

use super::*;
use crate::analysis::analyse;
use crate::layer::{index_layer, LayerIndex};

/// A layer tar written entry by entry (whiteouts and opaque markers are the empty files that
/// images carry).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn entry(mut self, path: &str, kind: tar::EntryType, mode: u32, data: &[u8]) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        self.0
            .append_data(&mut header, path, data)
            .expect("tar entry");
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(path, tar::EntryType::Regular, 0o644, data)
    }

    fn file_mode(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.entry(path, tar::EntryType::Regular, mode, data)
    }

    fn dir(self, path: &str) -> Self {
        self.entry(path, tar::EntryType::Directory, 0o755, b"")
    }

    fn link(mut self, path: &str, kind: tar::EntryType, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o777);
        header.set_size(0);
        self.0
            .append_link(&mut header, path, target)
            .expect("tar link");
        self
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.link(path, tar::EntryType::Symlink, target)
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(path, tar::EntryType::Link, target)
    }

    /// `DIR/.wh.NAME` for `DIR/NAME`.
    fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&marker, b"")
    }

    fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    fn index(self) -> LayerIndex {
        let bytes = self.0.into_inner().expect("tar");
        index_layer(bytes.as_slice(), None).expect("index")
    }
}

/// `n` bytes of content that differs with `seed`.
fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

fn tree(layers: Vec<Tar>) -> FileTree {
    let mut tree = FileTree::new();
    for layer in layers {
        tree.push_layer(layer.index());
    }
    tree
}

fn steps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn paths(finding: &Finding) -> Vec<&str> {
    finding
        .paths
        .iter()
        .map(|p| std::str::from_utf8(p).expect("utf-8 test path"))
        .collect()
}

/// The duplicate-content findings, in order.
fn duplicates(found: &Findings) -> Vec<&Finding> {
    found
        .items
        .iter()
        .filter(|f| f.kind == FindingKind::DuplicateContent)
        .collect()
}

/// (kind, bytes, files, layers) of every finding, in order.
fn summary(found: &Findings) -> Vec<(FindingKind, u64, u64, Vec<usize>)> {
    found
        .items
        .iter()
        .map(|f| (f.kind, f.bytes, f.files, f.layers.clone()))
        .collect()
}

/// The hidden kinds add up to the shadowed bytes, and the total to Σ bytes.
fn check_totals(tree: &FileTree, found: &Findings) {
    let hidden: u64 = found
        .items
        .iter()
        .filter(|f| f.kind.is_hidden())
        .map(|f| f.bytes)
        .sum();
    assert_eq!(
        hidden,
        analyse(tree).shadowed_bytes,
        "hidden kinds ≠ shadowedBytes"
    );
    let all: u64 = found.items.iter().map(|f| f.bytes).sum();
    assert_eq!(found.reclaimable_bytes, all);
    for f in &found.items {
        assert!(f.bytes >= 1);
        assert_eq!(f.files, f.paths.len() as u64 + f.paths_omitted);
        assert_eq!(f.layers.len(), f.steps.len());
        assert!(f.layers.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn a_file_deleted_by_a_whiteout_is_removed_later() {
    let tree = tree(vec![
        Tar::new()
            .file("app/big.bin", &bytes(1, 1000))
            .file("app/keep", &bytes(2, 10)),
        Tar::new().whiteout("app/big.bin"),
    ]);
    let found = find(
        &tree,
        &steps(&["/bin/sh -c make", "/bin/sh -c rm app/big.bin"]),
    );
    // 1000 bytes stored in layer 0, deleted by layer 1.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::RemovedLater, 1000, 1, vec![0, 1])]
    );
    let f = &found.items[0];
    assert_eq!(paths(f), ["/app/big.bin"]);
    assert_eq!(f.steps, ["/bin/sh -c make", "/bin/sh -c rm app/big.bin"]);
    assert_eq!(
        f.hint,
        "RUN make (layer 0) left 1.0 kB in /app/big.bin that RUN rm app/big.bin (layer 1) \
         removes: delete it in the same RUN"
    );
    assert_eq!(f.view_layer, 0);
    assert_eq!(found.reclaimable_bytes, 1000);
    check_totals(&tree, &found);
}

#[test]
fn a_whiteout_of_the_parent_removes_everything_below_in_one_finding() {
    let tree = tree(vec![
        Tar::new()
            .file("etc/os-release", &bytes(9, 7))
            .file("var/lib/apt/lists/a_Packages", &bytes(1, 300))
            .file("var/lib/apt/lists/b_Packages", &bytes(2, 200))
            .file("var/lib/apt/lists/partial/c", &bytes(3, 50)),
        Tar::new().whiteout("var/lib/apt/lists"),
    ]);
    let found = find(
        &tree,
        &steps(&[
            "/bin/sh -c apt-get update",
            "/bin/sh -c rm -rf /var/lib/apt/lists/*",
        ]),
    );
    // 300 + 200 + 50 = 550 bytes, largest path first.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::RemovedLater, 550, 3, vec![0, 1])]
    );
    let f = &found.items[0];
    assert_eq!(
        paths(f),
        [
            "/var/lib/apt/lists/a_Packages",
            "/var/lib/apt/lists/b_Packages",
            "/var/lib/apt/lists/partial/c"
        ]
    );
    assert_eq!(f.place.as_deref(), Some(&b"/var/lib/apt/lists"[..]));
    assert_eq!(
        f.hint,
        "RUN apt-get update (layer 0) left 550 B in /var/lib/apt/lists that \
         RUN rm -rf /var/lib/apt/lists/* (layer 1) removes: delete it in the same RUN"
    );
    check_totals(&tree, &found);
}

#[test]
fn an_opaque_directory_removes_the_lower_children() {
    let tree = tree(vec![
        Tar::new()
            .file("d/x", &bytes(1, 100))
            .file("d/y", &bytes(2, 20)),
        // The layer's own d/z is not hidden by its own opaque marker.
        Tar::new().opaque("d").file("d/z", &bytes(3, 5)),
    ]);
    let found = find(&tree, &steps(&["COPY d /d", "COPY d2 /d"]));
    // 100 + 20 bytes of layer 0 hidden by layer 1.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::RemovedLater, 120, 2, vec![0, 1])]
    );
    let f = &found.items[0];
    assert_eq!(paths(f), ["/d/x", "/d/y"]);
    assert_eq!(
        f.hint,
        "COPY d /d (layer 0) added 120 B in /d that COPY d2 /d (layer 1) removes: leave it \
         out of the copy (.dockerignore or a narrower source)"
    );
    check_totals(&tree, &found);
}

#[test]
fn replacement_by_another_type_is_removed_later() {
    let tree = tree(vec![
        Tar::new()
            .file("p", &bytes(1, 70))
            .file("q/r", &bytes(2, 40))
            .file("s", &bytes(3, 9)),
        // p becomes a directory (implicit parent of p/child), q a file over the directory
        // holding q/r, s a symlink.
        Tar::new()
            .file("p/child", &bytes(4, 3))
            .file("q", &bytes(5, 8))
            .symlink("s", "p"),
    ]);
    let found = find(&tree, &[]);
    // 70 + 40 + 9 = 119 bytes of layer 0 gone at layer 1.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::RemovedLater, 119, 3, vec![0, 1])]
    );
    let f = &found.items[0];
    assert_eq!(paths(f), ["/p", "/q/r", "/s"]);
    assert_eq!(f.place, None);
    assert_eq!(f.steps, ["", ""]);
    assert_eq!(
        f.hint,
        "layer 0 added 119 B in 3 files that layer 1 removes: do not write it in layer 0"
    );
    check_totals(&tree, &found);
}

#[test]
fn a_chmod_only_rewrite_is_rewritten_same_content() {
    let tool = bytes(7, 500);
    let tree = tree(vec![
        Tar::new().file_mode("usr/bin/tool", &tool, 0o644),
        Tar::new().file_mode("usr/bin/tool", &tool, 0o755),
    ]);
    let found = find(
        &tree,
        &steps(&["COPY tool /usr/bin/", "/bin/sh -c chmod +x /usr/bin/tool"]),
    );
    // The first 500 bytes are hidden by the same bytes with a new mode.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::RewrittenSameContent, 500, 1, vec![0, 1])]
    );
    assert_eq!(
        found.items[0].hint,
        "RUN chmod +x /usr/bin/tool (layer 1) rewrites 500 B in /usr/bin/tool with the same \
         content that COPY tool /usr/bin/ (layer 0) wrote (only mode, owner or time changed): \
         set them where the files are written (COPY --chown/--chmod) instead of in a later step"
    );
    check_totals(&tree, &found);
}

#[test]
fn a_rewrite_with_new_content_is_overwritten() {
    let tree = tree(vec![
        Tar::new().file("etc/app.conf", &bytes(1, 30)),
        Tar::new().file("etc/app.conf", &bytes(2, 40)),
    ]);
    let found = find(
        &tree,
        &steps(&["COPY app.conf /etc/", "COPY new.conf /etc/"]),
    );
    // Only the old 30 bytes are hidden; the new 40 are the visible file.
    assert_eq!(
        summary(&found),
        vec![(FindingKind::Overwritten, 30, 1, vec![0, 1])]
    );
    assert_eq!(
        found.items[0].hint,
        "COPY app.conf /etc/ (layer 0) wrote 30 B in /etc/app.conf that COPY new.conf /etc/ \
         (layer 1) overwrites with new content: write only the final version, in one step"
    );
    check_totals(&tree, &found);
}

#[test]
fn a_path_written_twice_in_one_tar_is_hidden_by_its_own_layer() {
    let same = bytes(5, 5);
    let tree = tree(vec![
        Tar::new()
            // /x three times with new content: 10 and 20 hidden by layer 0 itself, 30 by
            // layer 1.
            .file("x", &bytes(1, 10))
            .file("x", &bytes(2, 20))
            .file("x", &bytes(3, 30))
            // /y twice with the same bytes: 5 hidden.
            .file("y", &same)
            .file("y", &same)
            // a/b replaced by a file at its parent in the same tar: 6 hidden.
            .file("a/b", &bytes(4, 6))
            .file("a", &bytes(6, 1)),
        Tar::new().file("x", &bytes(7, 2)),
    ]);
    let found = find(&tree, &steps(&["ADD rootfs.tar /", "COPY x /x"]));
    assert_eq!(
        summary(&found),
        vec![
            (FindingKind::Overwritten, 30, 1, vec![0]),
            (FindingKind::Overwritten, 30, 1, vec![0, 1]),
            (FindingKind::RemovedLater, 6, 1, vec![0]),
            (FindingKind::RewrittenSameContent, 5, 1, vec![0]),
        ]
    );
    // The twice-written /x is listed once, with both hidden copies.
    assert_eq!(paths(&found.items[0]), ["/x"]);
    assert_eq!(found.items[0].steps, ["ADD rootfs.tar /"]);
    assert_eq!(
        found.items[0].hint,
        "ADD rootfs.tar / (layer 0) stores 30 B in /x that the same layer then replaces or \
         deletes: write each path once in that step"
    );
    assert_eq!(paths(&found.items[2]), ["/a/b"]);
    assert_eq!(paths(&found.items[3]), ["/y"]);
    // 10 + 20 + 30 + 5 + 6 = 71 bytes stored and not visible.
    assert_eq!(analyse(&tree).shadowed_bytes, 71);
    check_totals(&tree, &found);
}

#[test]
fn every_package_cache_is_its_own_finding_with_its_remedy() {
    let caches: [(&str, CacheKind, &str); 13] = [
        (
            "var/lib/apt/lists",
            CacheKind::AptLists,
            "rm -rf /var/lib/apt/lists/*",
        ),
        ("var/cache/apt", CacheKind::AptArchives, "apt-get clean"),
        ("var/cache/apk", CacheKind::Apk, "apk add --no-cache"),
        ("var/cache/yum", CacheKind::Yum, "yum clean all"),
        ("var/cache/dnf", CacheKind::Dnf, "dnf clean all"),
        (
            "root/.cache/pip",
            CacheKind::Pip,
            "pip install --no-cache-dir",
        ),
        (
            "home/app/.cache/pip",
            CacheKind::Pip,
            "pip install --no-cache-dir",
        ),
        (
            "home/app/.npm/_cacache",
            CacheKind::Npm,
            "npm cache clean --force",
        ),
        ("root/.cache/yarn", CacheKind::Yarn, "yarn cache clean"),
        (
            "usr/local/share/.cache/yarn",
            CacheKind::Yarn,
            "yarn cache clean",
        ),
        (
            "root/.cache/go-build",
            CacheKind::GoBuild,
            "go clean -cache",
        ),
        (
            "root/.cargo/registry",
            CacheKind::Cargo,
            "rm -rf /root/.cargo/registry",
        ),
        (
            "home/dev/.cargo/registry",
            CacheKind::Cargo,
            "rm -rf /home/dev/.cargo/registry",
        ),
    ];
    let mut layer = Tar::new();
    for (i, (dir, _, _)) in caches.iter().enumerate() {
        // Cache i holds 100 + i bytes in two files, one of them a level deeper.
        layer = layer
            .file(&format!("{dir}/index"), &bytes(i as u8, 60))
            .file(&format!("{dir}/sub/blob"), &bytes(100 + i as u8, 40 + i));
    }
    // Look-alikes that are no cache: /home itself is no home directory, another .cache dir,
    // a name that only starts like a cache, the cache directory's own name as a file.
    let layer = layer
        .file("home/.cache/pip/x", &bytes(201, 11))
        .file("root/.cache/other/y", &bytes(202, 12))
        .file("var/lib/apt/listsX/z", &bytes(203, 13))
        .file("var/cache/apkfoo", &bytes(204, 14));
    let tree = tree(vec![
        layer,
        Tar::new().file("var/cache/apk/later", &bytes(205, 3)),
    ]);
    let found = find(&tree, &steps(&["/bin/sh -c install", "/bin/sh -c more"]));

    let cache_findings: Vec<&Finding> = found
        .items
        .iter()
        .filter(|f| f.kind == FindingKind::PackageCache)
        .collect();
    // One per directory at layer 0, plus apk's file written by layer 1.
    assert_eq!(cache_findings.len(), caches.len() + 1);
    for (i, (dir, cache, remedy)) in caches.iter().enumerate() {
        let place = format!("/{dir}");
        let f = cache_findings
            .iter()
            .find(|f| f.place.as_deref() == Some(place.as_bytes()) && f.layers == [0])
            .unwrap_or_else(|| panic!("no finding for {place}"));
        assert_eq!((f.bytes, f.files), (100 + i as u64, 2), "{place}");
        assert_eq!(
            paths(f),
            [format!("{place}/index"), format!("{place}/sub/blob")]
        );
        assert_eq!(
            f.hint,
            format!(
                "RUN install (layer 0) left {} B of {} in {place}: {}",
                100 + i,
                cache.what(),
                cache.remedy(&place)
            )
        );
        assert!(f.hint.contains(remedy), "{}", f.hint);
    }
    let apk_later = cache_findings
        .iter()
        .find(|f| f.layers == [1])
        .expect("apk at layer 1");
    assert_eq!(
        (apk_later.bytes, paths(apk_later)),
        (3, vec!["/var/cache/apk/later"])
    );
    // The look-alikes are no finding at all (their content is unique).
    assert_eq!(found.items.len(), caches.len() + 1);
    // 100 + 101 + … + 112 + 3.
    assert_eq!(found.reclaimable_bytes, (100..113).sum::<u64>() + 3);
    check_totals(&tree, &found);
}

#[test]
fn temporary_files_are_grouped_by_the_layer_that_wrote_them() {
    let tree = tree(vec![
        Tar::new()
            .file("tmp/build/a.o", &bytes(1, 100))
            .file("var/tmp/b", &bytes(2, 50))
            .file("tmpfile", &bytes(3, 9))
            .file("tmp/empty", b""),
        Tar::new().file("tmp/c", &bytes(4, 7)),
    ]);
    let found = find(&tree, &steps(&["/bin/sh -c make", "COPY c /tmp/"]));
    // Layer 0: 100 + 50 (the empty file and /tmpfile are not counted); layer 1: 7.
    assert_eq!(
        summary(&found),
        vec![
            (FindingKind::TemporaryFiles, 150, 2, vec![0]),
            (FindingKind::TemporaryFiles, 7, 1, vec![1]),
        ]
    );
    assert_eq!(paths(&found.items[0]), ["/tmp/build/a.o", "/var/tmp/b"]);
    assert_eq!(found.items[0].place, None);
    assert_eq!(
        found.items[0].hint,
        "RUN make (layer 0) left 150 B in 2 files: delete it in the same RUN, or use a tmpfs \
         mount (RUN --mount=type=tmpfs,target=/tmp)"
    );
    assert_eq!(
        found.items[1].hint,
        "COPY c /tmp/ (layer 1) left 7 B in /tmp/c: leave it out of the copy (.dockerignore or \
         a narrower source)"
    );
    check_totals(&tree, &found);
}

#[test]
fn duplicates_count_every_copy_but_the_first_and_no_link_or_cached_file() {
    let lib = bytes(42, 64);
    let tree = tree(vec![
        Tar::new()
            .file("opt/a/lib.so", &lib)
            .file("opt/b/lib.so", &lib)
            // A hard link is a link, not a copy.
            .hardlink("opt/c/lib.so", "opt/a/lib.so")
            // Copies in a cache or /tmp belong to those findings only.
            .file("root/.cache/pip/lib.so", &lib)
            .file("tmp/lib.so", &lib)
            // Equal empty files are no duplicates.
            .file("e1", b"")
            .file("e2", b"")
            // A deleted copy is hidden bytes, not a duplicate.
            .file("gone/lib.so", &lib),
        Tar::new().file("usr/lib/lib.so", &lib).whiteout("gone"),
    ]);
    let found = find(
        &tree,
        &steps(&["COPY opt /opt", "/bin/sh -c cp lib.so /usr/lib/"]),
    );
    // Three visible copies outside caches: 2 × 64 bytes reclaimable.
    let dup = duplicates(&found);
    assert_eq!(dup.len(), 1);
    let f = dup[0];
    assert_eq!((f.bytes, f.files, f.layers.clone()), (128, 2, vec![0, 1]));
    // /opt/a/lib.so has the smallest path: it is the copy kept.
    assert_eq!(paths(f), ["/opt/b/lib.so", "/usr/lib/lib.so"]);
    assert_eq!(f.place.as_deref(), Some(&b"/opt/a/lib.so"[..]));
    assert_eq!(f.view_layer, 1);
    assert_eq!(
        f.hint,
        "/opt/a/lib.so (64 B) is stored 2 more times (128 B) by COPY opt /opt (layer 0), \
         RUN cp lib.so /usr/lib/ (layer 1): keep one copy and link to it, or write it once"
    );
    assert_eq!(
        summary(&found),
        vec![
            (FindingKind::DuplicateContent, 128, 2, vec![0, 1]),
            (FindingKind::RemovedLater, 64, 1, vec![0, 1]),
            (FindingKind::PackageCache, 64, 1, vec![0]),
            (FindingKind::TemporaryFiles, 64, 1, vec![0]),
        ]
    );
    // 128 + 64 + 64 + 64: no byte twice.
    assert_eq!(found.reclaimable_bytes, 320);
    check_totals(&tree, &found);
}

#[test]
fn contents_that_share_the_first_bytes_of_their_hash_are_no_duplicates() {
    use sha2::{Digest as _, Sha256};
    // Found by search: two contents whose SHA-256 begin with the same 4 bytes (bba800c6),
    // which is all the candidates are sorted by.
    let (a, b) = (b"content 28149", b"content 36680");
    let (hash_a, hash_b) = (Sha256::digest(a), Sha256::digest(b));
    assert_eq!(hash_a[..4], hash_b[..4]);
    assert_ne!(hash_a, hash_b);

    let one_pair = tree(vec![Tar::new()
        .file("x/a1", a)
        .file("y/b1", b)
        .file("x/a2", a)]);
    let found = find(&one_pair, &steps(&["COPY . /"]));
    let dup = duplicates(&found);
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].bytes, a.len() as u64);
    assert_eq!(paths(dup[0]), ["/x/a2"]);
    assert_eq!(dup[0].place.as_deref(), Some(&b"/x/a1"[..]));

    let two_pairs = tree(vec![Tar::new()
        .file("x/a1", a)
        .file("y/b1", b)
        .file("x/a2", a)
        .file("y/b2", b)]);
    let found = find(&two_pairs, &steps(&["COPY . /"]));
    let mut dup: Vec<(Vec<&str>, u64)> = duplicates(&found)
        .into_iter()
        .map(|f| (paths(f), f.bytes))
        .collect();
    dup.sort();
    assert_eq!(dup, [(vec!["/x/a2"], 13), (vec!["/y/b2"], 13)]);
    check_totals(&two_pairs, &found);
}

#[test]
fn findings_are_ordered_by_bytes_then_kind_then_layers_then_path() {
    let tree = tree(vec![
        Tar::new()
            .file("b/removed", &bytes(1, 10))
            .file("a/removed", &bytes(2, 10))
            .file("over", &bytes(3, 10))
            .file("big", &bytes(4, 99))
            .file("dup2a", &bytes(8, 10))
            .file("dup2b", &bytes(8, 10))
            .file("dup1a", &bytes(9, 10))
            .file("dup1b", &bytes(9, 10)),
        Tar::new()
            .whiteout("b/removed")
            .file("over", &bytes(5, 1))
            .file("tmp/t", &bytes(6, 10)),
        Tar::new().whiteout("a/removed"),
    ]);
    let found = find(&tree, &[]);
    assert_eq!(
        summary(&found),
        vec![
            (FindingKind::RemovedLater, 10, 1, vec![0, 1]),
            (FindingKind::RemovedLater, 10, 1, vec![0, 2]),
            (FindingKind::Overwritten, 10, 1, vec![0, 1]),
            (FindingKind::TemporaryFiles, 10, 1, vec![1]),
            (FindingKind::DuplicateContent, 10, 1, vec![0]),
            (FindingKind::DuplicateContent, 10, 1, vec![0]),
        ]
    );
    assert_eq!(paths(&found.items[4]), ["/dup1b"]);
    assert_eq!(paths(&found.items[5]), ["/dup2b"]);
    check_totals(&tree, &found);
}

#[test]
fn paths_stop_at_a_thousand_largest_first_then_by_path() {
    let mut layer = Tar::new();
    // 1003 files: one of 3 bytes, two of 2, the rest of 1 byte (contents all differ).
    for i in 0..1003u32 {
        let size = match i {
            500 => 3,
            7 | 900 => 2,
            _ => 1,
        };
        let data: Vec<u8> = i.to_le_bytes()[..size].to_vec();
        layer = layer.file(&format!("d/f{i:04}"), &data);
    }
    let tree = tree(vec![layer, Tar::new().whiteout("d")]);
    let found = find(&tree, &[]);
    assert_eq!(found.items.len(), 1);
    let f = &found.items[0];
    // 3 + 2·2 + 1000·1 bytes.
    assert_eq!((f.bytes, f.files, f.paths_omitted), (1007, 1003, 3));
    assert_eq!(f.paths.len(), MAX_PATHS);
    let listed = paths(f);
    assert_eq!(
        listed[..4],
        ["/d/f0500", "/d/f0007", "/d/f0900", "/d/f0000"]
    );
    // The last one-byte paths kept are the smallest: f0000 … f1002 minus the three larger
    // ones, cut after 997 of them.
    assert_eq!(listed[MAX_PATHS - 1], "/d/f0999");
    check_totals(&tree, &found);
}

#[test]
fn no_layers_or_only_empty_files_give_no_findings() {
    let empty = FileTree::new();
    assert_eq!(find(&empty, &[]), Findings::default());
    let tree = tree(vec![
        Tar::new().dir("tmp").file("tmp/a", b"").file("x", b""),
        Tar::new().whiteout("x").file("tmp/a", b""),
    ]);
    let found = find(&tree, &[]);
    assert!(found.items.is_empty(), "{found:?}");
    assert_eq!(found.reclaimable_bytes, 0);
}

#[test]
fn layer_steps_follow_the_history_alignment() {
    use crate::image::{HistoryEntry, HistoryStep};
    let step = |created_by: &str, layer_index| HistoryStep {
        entry: HistoryEntry {
            created_by: Some(created_by.to_string()),
            ..HistoryEntry::default()
        },
        layer_index,
    };
    let history = [
        step("ADD x /", Some(0)),
        step("ENV A=1", None),
        step("RUN y", Some(1)),
    ];
    assert_eq!(steps_of_history(&history, 3), ["ADD x /", "RUN y", ""]);
}

#[test]
fn the_first_event_decides_the_kind() {
    let a = bytes(1, 40);
    let tree = tree(vec![
        Tar::new().file("f", &a).file("g", &bytes(2, 25)),
        // Whiteouts act first: f is deleted, then written again with the same bytes; g is
        // overwritten, then the layer writes g's first bytes back.
        Tar::new()
            .whiteout("f")
            .file("f", &a)
            .file("g", &bytes(3, 4))
            .file("g", &bytes(2, 25)),
    ]);
    let found = find(&tree, &[]);
    // f: 40 removed by layer 1; g: 25 overwritten by layer 1, and layer 1's own 4 bytes
    // rewritten by layer 1.
    assert_eq!(
        summary(&found),
        vec![
            (FindingKind::RemovedLater, 40, 1, vec![0, 1]),
            (FindingKind::Overwritten, 25, 1, vec![0, 1]),
            (FindingKind::Overwritten, 4, 1, vec![1]),
        ]
    );
    check_totals(&tree, &found);
}

#[test]
fn hints_name_buildkit_and_classic_steps_as_written_and_shorten_long_ones() {
    let long = format!("/bin/sh -c apt-get install -y {}", "package ".repeat(20));
    let steps = steps(&[
        "RUN /bin/sh -c apt-get update # buildkit",
        "|2 A=1 B=2 /bin/sh -c make",
        &long,
        "",
    ]);
    assert_eq!(step_name(&steps, 0), "RUN apt-get update (layer 0)");
    assert_eq!(step_kind(&steps, 1), StepKind::Run);
    let name = step_name(&steps, 2);
    assert_eq!(name.chars().count(), STEP_IN_HINT + " (layer 2)".len());
    assert!(name.starts_with("RUN apt-get install -y package") && name.contains("… (layer 2)"));
    assert_eq!(step_name(&steps, 3), "layer 3");
    assert_eq!(step_name(&steps, 9), "layer 9");
    assert_eq!(step_kind(&steps, 3), StepKind::Unknown);
}

#[test]
fn a_bit_set_tells_whether_a_number_was_there_and_ignores_numbers_beyond_it() {
    let mut bits = BitSet::new(130);
    assert!(!bits.insert(129));
    assert!(bits.insert(129));
    assert!(bits.contains(129) && !bits.contains(128) && !bits.contains(0));
    assert!(!bits.insert(1000));
    assert!(!bits.contains(1000));
}
