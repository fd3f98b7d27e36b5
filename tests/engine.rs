//! The analysis engine end to end on real tar/gzip/zstd bytes: layer indexing, the
//! merged tree (views, change kinds, layer statistics) and the image figures, each computed by
//! hand in the comments and asserted exactly.

mod common;

use common::layers::{built, content, Compress, LayerBuilder, LongNames, Meta, RawHeader};
use layerscope::analysis::{analyse, Figures};
use layerscope::digest::Digest;
use layerscope::layer::{
    index_layer, index_layer_tapped, index_layer_with, Compression, EntryKind, IndexOptions,
    LayerError, LayerIndex,
};
use layerscope::tree::{
    display_path, BaseLayerMerge, ChangeKind, FileTree, LayerStats, NodeId, Version, VersionState,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Index every layer (gzip, with its diff_id checked) and merge them in order.
fn tree_of(layers: &[LayerBuilder]) -> FileTree {
    let mut tree = FileTree::new();
    for layer in layers {
        let built = layer.build(Compress::Gzip);
        let index = index_layer(&built.blob[..], Some(&built.diff_id)).expect("valid layer");
        tree.push_layer(index);
    }
    tree
}

fn index_of(layer: &LayerBuilder, how: Compress) -> LayerIndex {
    let built = layer.build(how);
    index_layer(&built.blob[..], Some(&built.diff_id)).expect("valid layer")
}

fn node(tree: &FileTree, path: &str) -> NodeId {
    tree.lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} is in the tree"))
}

/// The view at `layer`: every present path but the root, sorted, as "path kind size".
fn view(tree: &FileTree, layer: usize) -> Vec<String> {
    let mut out: Vec<String> = (1..tree.node_count())
        .filter_map(|i| {
            let id = NodeId(i as u32);
            tree.entry_at(id, layer).map(|e| {
                format!(
                    "{} {} {}",
                    display_path(&tree.path(id)),
                    e.kind().tag(),
                    e.size()
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// The changes as "path KIND", sorted, leaving out absent and unmodified paths.
fn changed(tree: &FileTree, base: Option<usize>, top: usize) -> Vec<String> {
    let kinds = tree.changes(base, top);
    assert_eq!(kinds.len(), tree.node_count());
    let mut out: Vec<String> = kinds
        .iter()
        .enumerate()
        .filter_map(|(i, k)| match k {
            Some(ChangeKind::Unmodified) | None => None,
            Some(kind) => Some(format!(
                "{} {kind:?}",
                display_path(&tree.path(NodeId(i as u32)))
            )),
        })
        .collect();
    out.sort();
    out
}

/// (added, modified, removed, added_bytes, modified_bytes, removed_bytes)
fn counts(stats: &LayerStats) -> (u64, u64, u64, u64, u64, u64) {
    (
        stats.added,
        stats.modified,
        stats.removed,
        stats.added_bytes,
        stats.modified_bytes,
        stats.removed_bytes,
    )
}

/// The layer statistics must agree with `changes()` between consecutive layers.
fn assert_stats_match_changes(tree: &FileTree) {
    for layer in 0..tree.layer_count() {
        let base = layer.checked_sub(1);
        let kinds = tree.changes(base, layer);
        let mut expected = (0, 0, 0, 0, 0, 0);
        for (i, kind) in kinds.iter().enumerate().skip(1) {
            let id = NodeId(i as u32);
            let file_size = |l: Option<usize>| {
                l.and_then(|l| tree.entry_at(id, l))
                    .filter(|e| e.kind() == EntryKind::File)
                    .map_or(0, |e| e.size())
            };
            match kind {
                Some(ChangeKind::Added) => {
                    expected.0 += 1;
                    expected.3 += file_size(Some(layer));
                }
                Some(ChangeKind::Modified) => {
                    expected.1 += 1;
                    expected.4 += file_size(Some(layer));
                }
                Some(ChangeKind::Removed) => {
                    expected.2 += 1;
                    expected.5 += file_size(base);
                }
                _ => {}
            }
        }
        assert_eq!(
            counts(tree.layer_stats(layer)),
            expected,
            "layer {layer} stats vs changes()"
        );
    }
}

#[track_caller]
#[allow(clippy::too_many_arguments)]
fn assert_figures(
    tree: &FileTree,
    f: &Figures,
    size_bytes: u64,
    efficiency: f64,
    wasted_bytes: u64,
    user_wasted_percent: f64,
    shadowed_bytes: u64,
    file_count: u64,
    file_bytes: u64,
    inefficiencies: &[(&str, u32, u64)],
) {
    assert_eq!(f.size_bytes, size_bytes, "sizeBytes");
    assert!(
        (f.efficiency - efficiency).abs() < 1e-9,
        "efficiency {} != {efficiency}",
        f.efficiency
    );
    assert_eq!(f.wasted_bytes, wasted_bytes, "wastedBytes");
    assert!(
        (f.user_wasted_percent - user_wasted_percent).abs() < 1e-9,
        "userWastedPercent {} != {user_wasted_percent}",
        f.user_wasted_percent
    );
    assert_eq!(f.shadowed_bytes, shadowed_bytes, "shadowedBytes");
    assert_eq!(f.file_count, file_count, "fileCount");
    assert_eq!(f.file_bytes, file_bytes, "fileBytes");
    let got: Vec<(String, u32, u64)> = f
        .inefficiencies
        .iter()
        .map(|i| {
            let path = display_path(&tree.path(i.node)).into_owned();
            (path, i.count, i.wasted_bytes)
        })
        .collect();
    let want: Vec<(String, u32, u64)> = inefficiencies
        .iter()
        .map(|(p, c, w)| (p.to_string(), *c, *w))
        .collect();
    assert_eq!(got, want, "inefficiencies");
}

fn strs(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// change-kind cases with their figures

#[test]
fn inefficient_paths_with_equal_waste_are_in_the_byte_order_of_their_paths() {
    // Each path written twice with 10 bytes: 20 wasted apiece. By bytes, `b.txt` ('.') comes
    // before `b/x` ('/'), which comes before `b0` ('0'), whatever the directories' names
    // alone would say; a bigger waste still comes first.
    let names = ["a/b0", "a/b/x", "a/b.txt", "a/b/y", "c", "a/bb/deep/er/z"];
    let layer = |seed: u64| {
        names.iter().fold(LayerBuilder::new(), |l, name| {
            l.file(name, &content(seed, 10))
        })
    };
    let big = LayerBuilder::new().file("z/big", &content(9, 30));
    let tree = tree_of(&[layer(1).file("z/big", &content(8, 30)), layer(2), big]);
    let got: Vec<Vec<u8>> = analyse(&tree)
        .inefficiencies
        .iter()
        .map(|i| tree.path(i.node))
        .collect();
    let mut tied: Vec<Vec<u8>> = got[1..].to_vec();
    tied.sort();
    assert_eq!(got[0], b"/z/big");
    assert_eq!(got[1..], tied[..]);
    assert_eq!(
        got[1..4],
        [&b"/a/b.txt"[..], b"/a/b/x", b"/a/b/y"].map(<[u8]>::to_vec)
    );
}

#[test]
fn plain_overwrite() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("a/x", &content(1, 100))
            .file("a/y", &content(2, 10)),
        LayerBuilder::new().file("a/x", &content(3, 50)),
    ]);
    // Visits: /a/x 100 + 50 (sum 150, min 50, 2 visits); /a/y 10. Implicit /a: none.
    // Σmin = 60, Σsum = 160 → efficiency 0.375; wasted = 150; sizes 110 + 50 = 160;
    // userWasted = 150 / 50 = 3.0; shadowed = 160 − 60 visible = 100; 2 files, 60 bytes.
    let figures = analyse(&tree);
    assert_figures(
        &tree,
        &figures,
        160,
        0.375,
        150,
        3.0,
        100,
        2,
        60,
        &[("/a/x", 2, 150)],
    );
    assert_eq!(view(&tree, 0), strs(&["/a d 0", "/a/x - 100", "/a/y - 10"]));
    assert_eq!(view(&tree, 1), strs(&["/a d 0", "/a/x - 50", "/a/y - 10"]));
    // Layer 0 adds /a, /a/x, /a/y (110 bytes); layer 1 modifies /a/x (50) and so /a.
    assert_eq!(counts(tree.layer_stats(0)), (3, 0, 0, 110, 0, 0));
    assert_eq!(counts(tree.layer_stats(1)), (0, 2, 0, 0, 50, 0));
    assert_eq!(tree.layer_stats(0).size_bytes, 110);
    assert_eq!(tree.layer_stats(0).entry_count, 2);
    assert_eq!(tree.layer_stats(1).size_bytes, 50);
    assert_eq!(
        changed(&tree, Some(0), 1),
        strs(&["/ Modified", "/a Modified", "/a/x Modified"])
    );
    assert_eq!(
        changed(&tree, None, 0),
        strs(&["/ Added", "/a Added", "/a/x Added", "/a/y Added"])
    );
    assert_stats_match_changes(&tree);
    let x = node(&tree, "/a/x");
    assert_eq!(tree.written_at(x, 0), Some(0));
    assert_eq!(tree.written_at(x, 1), Some(1));
    assert_eq!(tree.written_at(node(&tree, "a/y"), 1), Some(0));
}

#[test]
fn whiteout_of_a_file() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .dir("etc")
            .file("etc/passwd", &content(1, 200))
            .file("etc/hosts", &content(2, 30)),
        LayerBuilder::new().whiteout("etc/passwd"),
    ]);
    // Visits: /etc 0; /etc/passwd 200 then 0 by the whiteout; /etc/hosts 30.
    // Σmin = 30, Σsum = 230 → 30/230; wasted = 200; sizes 230 + 0; userWasted: the upper
    // layers hold 0 bytes → 0; shadowed = 230 − 30 = 200; 1 file of 30 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        230,
        30.0 / 230.0,
        200,
        0.0,
        200,
        1,
        30,
        &[("/etc/passwd", 2, 200)],
    );
    assert_eq!(view(&tree, 1), strs(&["/etc d 0", "/etc/hosts - 30"]));
    assert_eq!(counts(tree.layer_stats(1)), (0, 1, 1, 0, 0, 200));
    assert_eq!(tree.layer_stats(1).entry_count, 0);
    assert_eq!(
        changed(&tree, Some(0), 1),
        strs(&["/ Modified", "/etc Modified", "/etc/passwd Removed"])
    );
    assert_stats_match_changes(&tree);
    let passwd = node(&tree, "/etc/passwd");
    assert_eq!(tree.entry_at(passwd, 1), None);
    assert_eq!(tree.written_at(passwd, 1), None);
    let history: Vec<(usize, bool)> = tree
        .versions(passwd)
        .map(|v| (v.layer, matches!(v.state, VersionState::Removed)))
        .collect();
    assert_eq!(history, [(0, false), (1, true)]);
}

#[test]
fn whiteout_of_a_directory_hides_its_subtree() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("usr/lib/a", &content(1, 10))
            .file("usr/lib/sub/b", &content(2, 20))
            .file("usr/lib/sub/c", b"")
            .file("usr/bin/x", &content(3, 5)),
        LayerBuilder::new()
            .whiteout("usr/lib")
            .file("usr/new", &content(4, 7)),
    ]);
    // Visits: a 10,0; b 20,0; c 0,0 (an empty file hidden still counts); x 5; new 7.
    // Σmin = 12, Σsum = 42 → 12/42; wasted = 10 + 20 + 0 = 30; sizes 35 + 7 = 42;
    // userWasted = 30/7; shadowed = 42 − 12 = 30; 2 files (x, new), 12 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        42,
        12.0 / 42.0,
        30,
        30.0 / 7.0,
        30,
        2,
        12,
        &[("/usr/lib/sub/b", 2, 20), ("/usr/lib/a", 2, 10)],
    );
    // Layer 0 adds usr, usr/lib, a, sub, b, c, usr/bin, x = 8 paths, 35 bytes.
    assert_eq!(counts(tree.layer_stats(0)), (8, 0, 0, 35, 0, 0));
    // Layer 1 removes usr/lib, a, sub, b, c (30 bytes), adds new (7), modifies usr.
    assert_eq!(counts(tree.layer_stats(1)), (1, 1, 5, 7, 0, 30));
    assert_eq!(
        view(&tree, 1),
        strs(&["/usr d 0", "/usr/bin d 0", "/usr/bin/x - 5", "/usr/new - 7"])
    );
    assert_eq!(
        changed(&tree, Some(0), 1),
        strs(&[
            "/ Modified",
            "/usr Modified",
            "/usr/lib Removed",
            "/usr/lib/a Removed",
            "/usr/lib/sub Removed",
            "/usr/lib/sub/b Removed",
            "/usr/lib/sub/c Removed",
            "/usr/new Added",
        ])
    );
    assert_stats_match_changes(&tree);
}

#[test]
fn opaque_directory_hides_lower_children_only() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .dir("app")
            .file("app/a", &content(1, 100))
            .file("app/sub/b", &content(2, 50))
            .file("app/keep", b"k"),
        LayerBuilder::new()
            .dir("app")
            .file("app/keep", b"k")
            .opaque("app")
            .file("app/c", &content(3, 9)),
    ]);
    // Visits: /app 0, 0 (two dir entries); a 100, 0; b 50, 0 (implicit /app/sub is no file);
    // keep 1, 0 (hidden by the opaque marker), 1 (re-added by the same layer, which the
    // marker does not hide) → sum 2, min 0, 3 visits; c 9.
    // Σmin = 9, Σsum = 161 → 9/161; wasted = 100 + 50 + 2 (+ /app's 0) = 152;
    // sizes 151 + 10 = 161; userWasted = 152/10; shadowed = 161 − 10 = 151; 2 files, 10 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        161,
        9.0 / 161.0,
        152,
        15.2,
        151,
        2,
        10,
        &[
            ("/app/a", 2, 100),
            ("/app/sub/b", 2, 50),
            ("/app/keep", 3, 2),
        ],
    );
    // Layer 1: /app/keep comes back identical (mtime aside) → unmodified; a, sub, sub/b
    // removed (150 bytes); c added (9); /app modified because of what changed below.
    assert_eq!(counts(tree.layer_stats(1)), (1, 1, 3, 9, 0, 150));
    assert_eq!(
        view(&tree, 1),
        strs(&["/app d 0", "/app/c - 9", "/app/keep - 1"])
    );
    assert_eq!(
        tree.change_of(node(&tree, "/app/keep"), Some(0), 1),
        Some(ChangeKind::Unmodified)
    );
    assert_stats_match_changes(&tree);
}

#[test]
fn opaque_root_hides_everything_below_but_the_layers_own_entries() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("a", &content(1, 10))
            .file("d/b", &content(2, 20)),
        LayerBuilder::new()
            .opaque("")
            .file("c", &content(3, 5))
            .file("d/b", &content(2, 20)),
    ]);
    // a 10, 0; d/b 20, 0 (hidden), 20 (re-added, same bytes) → sum 40, min 0; c 5.
    // Σmin = 5, Σsum = 55 → 5/55; wasted 10 + 40 = 50; sizes 30 + 25; userWasted 50/25;
    // shadowed = 55 − 25 = 30; 2 files (d/b, c), 25 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        55,
        5.0 / 55.0,
        50,
        2.0,
        30,
        2,
        25,
        &[("/d/b", 3, 40), ("/a", 2, 10)],
    );
    assert_eq!(view(&tree, 1), strs(&["/c - 5", "/d d 0", "/d/b - 20"]));
    // /d and /d/b come back identical: unmodified; only /a removed and /c added.
    assert_eq!(counts(tree.layer_stats(1)), (1, 0, 1, 5, 0, 10));
    assert_eq!(
        changed(&tree, Some(0), 1),
        strs(&["/ Modified", "/a Removed", "/c Added"])
    );
    assert_stats_match_changes(&tree);
}

#[test]
fn dangling_whiteouts_are_ignored() {
    let tree = tree_of(&[
        LayerBuilder::new().file("a", &content(1, 10)),
        LayerBuilder::new()
            .whiteout("b")
            .whiteout("x/y/z")
            .opaque("nowhere")
            .file("c", &content(2, 5)),
    ]);
    // Visits: a 10; c 5. Whiteouts of absent paths visit nothing and create nothing.
    // Σmin = Σsum = 15 → 1.0; nothing wasted; shadowed 0; 2 files, 15 bytes.
    assert_figures(&tree, &analyse(&tree), 15, 1.0, 0, 0.0, 0, 2, 15, &[]);
    assert_eq!(tree.lookup(b"/b"), None);
    assert_eq!(tree.lookup(b"/x"), None);
    assert_eq!(tree.lookup(b"/nowhere"), None);
    assert_eq!(tree.node_count(), 3);
    assert_eq!(counts(tree.layer_stats(1)), (1, 0, 0, 5, 0, 0));
    assert_stats_match_changes(&tree);
}

#[test]
fn whiteouts_that_switch_directories_each_find_their_own() {
    // Markers come in runs per directory; a run's directory is looked up once, so runs
    // that alternate, name a missing directory, or stand at the root must each resolve.
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("a/1", &content(1, 1))
            .file("a/2", &content(2, 2))
            .file("a/sub/3", &content(3, 3))
            .file("b/1", &content(4, 4))
            .file("b/2", &content(5, 5))
            .file("c", &content(6, 6)),
        LayerBuilder::new()
            .whiteout("a/1")
            .whiteout("b/1")
            .whiteout("a/2")
            .whiteout("nowhere/1")
            .whiteout("nowhere/2")
            .whiteout("a/sub/3")
            .whiteout("c")
            .whiteout("b/zzz"),
    ]);
    assert_eq!(
        view(&tree, 1),
        strs(&["/a d 0", "/a/sub d 0", "/b d 0", "/b/2 - 5"])
    );
    assert_eq!(tree.lookup(b"/nowhere"), None);
    assert_eq!(tree.lookup(b"/b/zzz"), None);
    assert_eq!(counts(tree.layer_stats(1)), (0, 3, 5, 0, 0, 16));
    assert_stats_match_changes(&tree);
}

#[test]
fn whiteouts_never_hide_the_same_layers_entries_wherever_they_stand() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("f", &content(1, 40))
            .file("g", &content(2, 40)),
        LayerBuilder::new()
            .whiteout("f")
            .file("f", &content(3, 30))
            .file("g", &content(4, 30))
            .whiteout("g"),
    ]);
    // Each of f and g: 40 (layer 0), 0 (the whiteout hides the lower copy), 30 (layer 1's
    // own entry, visible whether the marker comes before or after it) → sum 70, min 0.
    // Σmin = 0, Σsum = 140 → 0; wasted 140; sizes 80 + 60; userWasted 140/60;
    // shadowed = 140 − 60 = 80; 2 files, 60 bytes; ties sorted by path.
    assert_figures(
        &tree,
        &analyse(&tree),
        140,
        0.0,
        140,
        140.0 / 60.0,
        80,
        2,
        60,
        &[("/f", 3, 70), ("/g", 3, 70)],
    );
    assert_eq!(view(&tree, 1), strs(&["/f - 30", "/g - 30"]));
    assert_eq!(counts(tree.layer_stats(1)), (0, 2, 0, 0, 60, 0));
    assert_stats_match_changes(&tree);
}

#[test]
fn whiteout_of_a_directory_with_a_child_re_added_in_the_same_layer() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("d/x", &content(1, 5))
            .file("d/y", &content(2, 6)),
        LayerBuilder::new()
            .file("d/x", &content(1, 5))
            .whiteout("d"),
    ]);
    // x: 5, 0 (hidden with d), 5 (re-added) → sum 10, min 0, 3 visits; y: 6, 0.
    // Σmin = 0, Σsum = 16 → 0; wasted 16; sizes 11 + 5; userWasted 16/5;
    // shadowed = 16 − 5 = 11; 1 file, 5 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        16,
        0.0,
        16,
        3.2,
        11,
        1,
        5,
        &[("/d/x", 3, 10), ("/d/y", 2, 6)],
    );
    assert_eq!(view(&tree, 1), strs(&["/d d 0", "/d/x - 5"]));
    // /d is an implicit directory again, /d/x identical: only y removed, d modified below.
    assert_eq!(counts(tree.layer_stats(1)), (0, 1, 1, 0, 0, 6));
    assert_stats_match_changes(&tree);
}

#[test]
fn file_replacing_a_directory_hides_the_subtree() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("opt/tool/bin/run", &content(1, 100))
            .file("opt/tool/lib/x.so", &content(2, 200))
            .file("opt/tool/README", &content(3, 3)),
        LayerBuilder::new().file("opt/tool", &content(4, 10)),
    ]);
    // run 100,0; x.so 200,0; README 3,0 (the replacement visits each file it hides);
    // /opt/tool 10 (the new file; the directory itself is no regular file).
    // Σmin = 10, Σsum = 313 → 10/313; wasted 303; sizes 303 + 10; userWasted 303/10;
    // shadowed = 313 − 10 = 303; 1 file, 10 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        313,
        10.0 / 313.0,
        303,
        30.3,
        303,
        1,
        10,
        &[
            ("/opt/tool/lib/x.so", 2, 200),
            ("/opt/tool/bin/run", 2, 100),
            ("/opt/tool/README", 2, 3),
        ],
    );
    assert_eq!(view(&tree, 1), strs(&["/opt d 0", "/opt/tool - 10"]));
    // /opt/tool modified (directory → file, 10 bytes) and /opt with it; bin, run, lib,
    // x.so, README removed (303 bytes).
    assert_eq!(counts(tree.layer_stats(1)), (0, 2, 5, 0, 10, 303));
    assert_stats_match_changes(&tree);
}

#[test]
fn directory_replacing_a_file() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("data", &content(1, 50))
            .file("conf", &content(2, 20)),
        LayerBuilder::new()
            .dir("data")
            .file("data/inner", &content(3, 4))
            .file("conf/sub", &content(4, 8)),
    ]);
    // /data: 50, then 0 by the replacement (it hides the regular file), then 0 for the
    // directory entry itself → sum 50, min 0, 3 visits. /conf: 20, then 0 by the implicit
    // directory replacing it → 2 visits. inner 4; conf/sub 8.
    // Σmin = 12, Σsum = 82 → 12/82; wasted 70; sizes 70 + 12; userWasted 70/12;
    // shadowed = 82 − 12 = 70; 2 files, 12 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        82,
        12.0 / 82.0,
        70,
        70.0 / 12.0,
        70,
        2,
        12,
        &[("/data", 3, 50), ("/conf", 2, 20)],
    );
    assert_eq!(
        view(&tree, 1),
        strs(&["/conf d 0", "/conf/sub - 8", "/data d 0", "/data/inner - 4"])
    );
    // /data and /conf change type (modified, no file bytes); inner and sub added (12 bytes).
    assert_eq!(counts(tree.layer_stats(1)), (2, 2, 0, 12, 0, 0));
    assert_eq!(
        tree.change_of(node(&tree, "/conf"), Some(0), 1),
        Some(ChangeKind::Modified)
    );
    assert_stats_match_changes(&tree);
}

#[test]
fn implicit_parents_can_be_whited_out_and_come_back() {
    let tree = tree_of(&[
        LayerBuilder::new().file("srv/www/index.html", &content(1, 100)),
        LayerBuilder::new()
            .whiteout("srv/www")
            .file("srv/other", b"o"),
        LayerBuilder::new().file("srv/www/new.html", &content(2, 2)),
    ]);
    // index.html 100, 0; other 1; new.html 2. Σmin = 3, Σsum = 103 → 3/103; wasted 100;
    // sizes 100 + 1 + 2; userWasted 100/3; shadowed = 103 − 3 = 100; 2 files, 3 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        103,
        3.0 / 103.0,
        100,
        100.0 / 3.0,
        100,
        2,
        3,
        &[("/srv/www/index.html", 2, 100)],
    );
    let www = node(&tree, "/srv/www");
    let implicit = tree.entry_at(www, 0).expect("implicit dir at layer 0");
    assert_eq!(
        (implicit.kind(), implicit.mode(), implicit.uid, implicit.gid),
        (EntryKind::Dir, 0o755, 0, 0)
    );
    assert_eq!(tree.entry_at(www, 1), None);
    assert!(tree.entry_at(www, 2).is_some());
    assert_eq!(tree.written_at(www, 2), Some(2));
    assert_eq!(tree.written_at(node(&tree, "/srv/www/index.html"), 2), None);
    let history: Vec<Version<'_>> = tree.versions(www).collect();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.layer, v.state))
            .collect::<Vec<_>>(),
        [
            (0, VersionState::ImplicitDir),
            (1, VersionState::Removed),
            (2, VersionState::ImplicitDir)
        ]
    );
    assert_eq!(
        view(&tree, 0),
        strs(&["/srv d 0", "/srv/www d 0", "/srv/www/index.html - 100"])
    );
    assert_eq!(view(&tree, 1), strs(&["/srv d 0", "/srv/other - 1"]));
    assert_eq!(
        view(&tree, 2),
        strs(&[
            "/srv d 0",
            "/srv/other - 1",
            "/srv/www d 0",
            "/srv/www/new.html - 2"
        ])
    );
    assert_eq!(counts(tree.layer_stats(1)), (1, 1, 2, 1, 0, 100));
    assert_eq!(counts(tree.layer_stats(2)), (2, 1, 0, 2, 0, 0));
    assert_stats_match_changes(&tree);
}

#[test]
fn hard_links_and_symlinks() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("bin/busybox", &content(1, 1000))
            .hardlink("bin/sh", "bin/busybox")
            .symlink("bin/ls", "busybox")
            .symlink("lib", "usr/lib"),
        LayerBuilder::new()
            .file("bin/busybox", &content(2, 1200))
            .hardlink("bin/sh", "/bin/busybox"),
    ]);
    // busybox 1000, 1200 → sum 2200, min 1000; sh 0, 0 (links visit with 0); ls 0; lib 0.
    // Σmin = 1000, Σsum = 2200 → 1000/2200; wasted 2200 (sh's 0 adds nothing); sizes
    // 1000 + 1200; userWasted 2200/1200; shadowed = 2200 − 1200 = 1000. A hard link is not
    // a regular file: 1 file, 1200 bytes. sh has sum 0, so it is no inefficiency.
    assert_figures(
        &tree,
        &analyse(&tree),
        2200,
        1000.0 / 2200.0,
        2200,
        2200.0 / 1200.0,
        1000,
        1,
        1200,
        &[("/bin/busybox", 2, 2200)],
    );
    let sh = tree.entry_at(node(&tree, "/bin/sh"), 1).expect("sh");
    assert_eq!(sh.kind(), EntryKind::Hardlink);
    assert_eq!(sh.link_target(), Some(&b"bin/busybox"[..]));
    assert_eq!(sh.content(), None);
    let ls = tree.entry_at(node(&tree, "/bin/ls"), 1).expect("ls");
    assert_eq!(ls.kind(), EntryKind::Symlink);
    assert_eq!(ls.link_target(), Some(&b"busybox"[..]));
    let lib = tree.entry_at(node(&tree, "/lib"), 0).expect("lib");
    assert_eq!(lib.link_target(), Some(&b"usr/lib"[..]));
    // The hard link names the same (normalised) target: unmodified. busybox modified, and
    // /bin with it.
    assert_eq!(counts(tree.layer_stats(1)), (0, 2, 0, 0, 1200, 0));
    assert_eq!(
        tree.change_of(node(&tree, "/bin/sh"), Some(0), 1),
        Some(ChangeKind::Unmodified)
    );
    assert_stats_match_changes(&tree);
}

#[test]
fn duplicates_within_one_layer() {
    let tree = tree_of(&[LayerBuilder::new()
        .file("a", &content(1, 10))
        .file("a", &content(2, 3))
        .file("d/x", &content(3, 4))
        .file("d", &content(4, 6))]);
    // Every entry visits: /a 10 and 3 (sum 13, min 3); /d/x 4, then 0 when the later file
    // /d replaces the directory; /d 6. Σmin = 3 + 0 + 6 = 9, Σsum = 23 → 9/23; wasted
    // 13 + 4 = 17; one layer, so userWasted 0; shadowed = 23 − 9 = 14; 2 files, 9 bytes.
    assert_figures(
        &tree,
        &analyse(&tree),
        23,
        9.0 / 23.0,
        17,
        0.0,
        14,
        2,
        9,
        &[("/a", 2, 13), ("/d/x", 2, 4)],
    );
    assert_eq!(view(&tree, 0), strs(&["/a - 3", "/d - 6"]));
    // The later duplicate wins; /d/x came and went inside the layer: no change at all.
    assert_eq!(counts(tree.layer_stats(0)), (2, 0, 0, 9, 0, 0));
    assert_eq!(tree.layer_stats(0).entry_count, 4);
    assert_eq!(tree.layer_stats(0).size_bytes, 23);
    let x = node(&tree, "/d/x");
    assert_eq!(tree.entry_at(x, 0), None);
    assert_eq!(tree.versions(x).count(), 0);
    assert_eq!(tree.layer_entries(0).len(), 4);
    assert_stats_match_changes(&tree);
}

#[test]
fn change_kinds_single_layer_and_aggregated() {
    let tree = tree_of(&[
        LayerBuilder::new()
            .file("a", b"1")
            .file("b", b"22")
            .file("d/x", b"333"),
        LayerBuilder::new()
            .file("a", b"11")
            .whiteout("b")
            .file("e", b"55555"),
        LayerBuilder::new()
            .file("a", b"1")
            .file("d/y", b"4444")
            .whiteout("e")
            .file_with(
                "d/x",
                b"333",
                Meta {
                    mode: 0o600,
                    ..Meta::default()
                },
            ),
    ]);
    assert_eq!(
        changed(&tree, None, 0),
        strs(&["/ Added", "/a Added", "/b Added", "/d Added", "/d/x Added"])
    );
    assert_eq!(
        changed(&tree, Some(0), 1),
        strs(&["/ Modified", "/a Modified", "/b Removed", "/e Added"])
    );
    assert_eq!(
        changed(&tree, Some(1), 2),
        strs(&[
            "/ Modified",
            "/a Modified",
            "/d Modified",
            "/d/x Modified",
            "/d/y Added",
            "/e Removed"
        ])
    );
    // Aggregated against the base layer: /a is back to its layer-0 bytes (unmodified),
    // /e came and went (absent in both), /d/x only changed its mode.
    assert_eq!(
        changed(&tree, Some(0), 2),
        strs(&[
            "/ Modified",
            "/b Removed",
            "/d Modified",
            "/d/x Modified",
            "/d/y Added"
        ])
    );
    let kinds = tree.changes(Some(0), 2);
    assert_eq!(
        kinds[node(&tree, "/a").index()],
        Some(ChangeKind::Unmodified)
    );
    assert_eq!(kinds[node(&tree, "/e").index()], None);
    assert!(changed(&tree, Some(2), 2).is_empty());
    assert_eq!(counts(tree.layer_stats(0)), (4, 0, 0, 6, 0, 0));
    assert_eq!(counts(tree.layer_stats(1)), (1, 1, 1, 5, 2, 2));
    assert_eq!(counts(tree.layer_stats(2)), (1, 3, 1, 4, 4, 5));
    assert_stats_match_changes(&tree);
    // Every node at every layer agrees with a replay of the layers by hand.
    let expect = [
        vec!["/a - 1", "/b - 2", "/d d 0", "/d/x - 3"],
        vec!["/a - 2", "/d d 0", "/d/x - 3", "/e - 5"],
        vec!["/a - 1", "/d d 0", "/d/x - 3", "/d/y - 4"],
    ];
    for (layer, want) in expect.iter().enumerate() {
        assert_eq!(view(&tree, layer), strs(want), "layer {layer}");
    }
}

#[test]
fn devices_fifos_old_style_files_and_attributes() {
    let layer = LayerBuilder::new()
        .old_style_file("old", b"plain")
        .entry("olddir/", 0, b"", b"", Meta::default())
        .char_device("dev/null")
        .block_device("dev/sda")
        .fifo("run/pipe")
        .file_with(
            "srv/owned",
            b"xyz",
            Meta {
                mode: 0o4750,
                uid: 1000,
                gid: 2000,
                mtime: 1_234_567_890,
            },
        );
    let built = layer.build(Compress::None);
    let index = index_layer(&built.blob[..], Some(&built.diff_id)).expect("valid");
    let got: Vec<(String, EntryKind)> = index
        .entries()
        .map(|(p, e)| (display_path(&p).into_owned(), e.kind()))
        .collect();
    assert_eq!(
        got,
        [
            ("old".to_string(), EntryKind::File),
            ("olddir".to_string(), EntryKind::Dir),
            ("dev/null".to_string(), EntryKind::CharDevice),
            ("dev/sda".to_string(), EntryKind::BlockDevice),
            ("run/pipe".to_string(), EntryKind::Fifo),
            ("srv/owned".to_string(), EntryKind::File),
        ]
    );
    let (_, owned) = index.entries().last().expect("entries");
    assert_eq!(
        (
            owned.mode(),
            owned.uid,
            owned.gid,
            owned.mtime(),
            owned.size()
        ),
        (0o4750, 1000, 2000, 1_234_567_890, 3)
    );
    assert_eq!(owned.content(), Some(sha256(b"xyz")));
    // Data offsets point at the bytes in the uncompressed tar.
    for (_, e) in index.entries() {
        if e.kind() == EntryKind::File {
            let start = e.data_offset() as usize;
            let bytes = &built.tar[start..start + e.size() as usize];
            assert_eq!(Some(sha256(bytes)), e.content());
        }
    }
    let mut tree = FileTree::new();
    tree.push_layer(index);
    // Two regular files (old, owned); devices and pipes are entries but not files.
    let f = analyse(&tree);
    assert_eq!((f.file_count, f.file_bytes), (2, 8));
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = Digest::sha256_of(bytes);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&d.hex()[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn long_and_non_utf8_names_via_pax_gnu_and_ustar_prefix() {
    let long_pax: Vec<u8> = [
        &b"pax/"[..],
        "d".repeat(120).as_bytes(),
        b"/caf\xe9-",
        "n".repeat(100).as_bytes(),
    ]
    .concat();
    let long_gnu: Vec<u8> = [
        &b"gnu/"[..],
        "g".repeat(110).as_bytes(),
        b"/\xff\xfe",
        "e".repeat(100).as_bytes(),
    ]
    .concat();
    let prefixed: Vec<u8> = [
        &b"ustar/"[..],
        "p".repeat(90).as_bytes(),
        b"/",
        "q".repeat(60).as_bytes(),
    ]
    .concat();
    let long_target: Vec<u8> = [&b"/target/"[..], "t".repeat(200).as_bytes()].concat();
    for how in [LongNames::Pax, LongNames::Gnu] {
        let mut layer = LayerBuilder::new()
            .long_names(how)
            .file(&long_pax, &content(1, 10))
            .file(&long_gnu, &content(2, 20))
            .file(b"short-\xff", &content(3, 1))
            .symlink("lnk", &long_target)
            .hardlink("hard", &long_gnu);
        layer = layer
            .long_names(LongNames::UstarPrefix)
            .file(&prefixed, &content(4, 4));
        let index = index_of(&layer, Compress::Gzip);
        let paths: Vec<Vec<u8>> = index.entries().map(|(p, _)| p.to_vec()).collect();
        assert_eq!(
            paths,
            [
                long_pax.clone(),
                long_gnu.clone(),
                b"short-\xff".to_vec(),
                b"lnk".to_vec(),
                b"hard".to_vec(),
                prefixed.clone()
            ],
            "{how:?}"
        );
        let links: Vec<Option<Vec<u8>>> = index
            .entries()
            .map(|(_, e)| e.link_target().map(<[u8]>::to_vec))
            .collect();
        assert_eq!(links[3].as_deref(), Some(&long_target[..]));
        assert_eq!(links[4].as_deref(), Some(&long_gnu[..]));
        let mut tree = FileTree::new();
        tree.push_layer(index);
        let id = tree.lookup(&long_pax).expect("long PAX name");
        assert_eq!(tree.path(id), [&b"/"[..], &long_pax].concat());
        assert!(display_path(&tree.path(id)).contains("/caf\\xe9-nnn"));
        assert!(tree.lookup(&[&b"./"[..], &long_gnu].concat()).is_some());
        assert!(tree.lookup(b"/short-\xff").is_some());
        let f = analyse(&tree);
        assert_eq!((f.file_count, f.file_bytes), (4, 35));
    }
}

#[test]
fn gnu_tar_archives_agree() {
    // The real GNU tar writes the archive; names over 100 bytes, a non-UTF-8 name, a hard
    // link, a symlink and an empty directory, in both its gnu and pax formats.
    let dir = std::env::temp_dir().join(format!("layerscope-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    let long = "l".repeat(150);
    std::fs::create_dir_all(root.join(&long).join("sub")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::fs::write(
        root.join(&long).join("sub").join("file.txt"),
        content(1, 3000),
    )
    .expect("write");
    std::fs::write(root.join("plain"), b"hello").expect("write");
    std::fs::hard_link(root.join("plain"), root.join("hard")).expect("link");
    std::os::unix::fs::symlink("plain", root.join("soft")).expect("symlink");
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bin\xff");
        std::fs::write(root.join(name), b"x").expect("write");
    }
    for format in ["gnu", "pax"] {
        let out = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .args(["--sort=name", "-C"])
            .arg(&root)
            .args(["-cf", "-", "."])
            .output()
            .expect("run tar");
        assert!(
            out.status.success(),
            "tar failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = out.stdout;
        for how in [Compress::None, Compress::Gzip, Compress::Zstd] {
            let b = built(tar.clone(), how);
            let index = index_layer(&b.blob[..], Some(&b.diff_id)).expect("GNU tar output");
            assert_eq!(index.tar_size(), tar.len() as u64);
            let got: Vec<(String, EntryKind, u64)> = index
                .entries()
                .map(|(p, e)| (display_path(&p).into_owned(), e.kind(), e.size()))
                .collect();
            let want = vec![
                (String::new(), EntryKind::Dir, 0),
                ("bin\\xff".to_string(), EntryKind::File, 1),
                ("empty".to_string(), EntryKind::Dir, 0),
                ("hard".to_string(), EntryKind::File, 5),
                (long.clone(), EntryKind::Dir, 0),
                (format!("{long}/sub"), EntryKind::Dir, 0),
                (format!("{long}/sub/file.txt"), EntryKind::File, 3000),
                ("plain".to_string(), EntryKind::Hardlink, 0),
                ("soft".to_string(), EntryKind::Symlink, 0),
            ];
            assert_eq!(got, want, "{format} {how:?}");
            let file = index
                .entries()
                .find(|(p, _)| p.ends_with(b"file.txt"))
                .expect("file");
            assert_eq!(file.1.content(), Some(sha256(&content(1, 3000))));
            let (_, plain) = index
                .entries()
                .find(|(p, _)| *p == b"plain")
                .expect("plain");
            assert_eq!(plain.link_target(), Some(&b"hard"[..]));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Streams

fn sample_layer() -> LayerBuilder {
    let mut layer = LayerBuilder::new()
        .dir("etc")
        .file("etc/os-release", b"ID=test\n");
    // Files that straddle the decoder's 512 KiB chunks (1.5 MB in all).
    for i in 0..12u64 {
        layer = layer.file(
            format!("data/f{i}"),
            &content(i, 70_000 + 9_999 * i as usize),
        );
    }
    layer
        .whiteout("old/thing")
        .opaque("var/cache")
        .symlink("bin", "usr/bin")
        .hardlink("etc/alias", "etc/os-release")
}

#[test]
fn gzip_multi_member_gzip_zstd_and_plain_give_identical_indexes() {
    let layer = sample_layer();
    let summary = |index: &LayerIndex| {
        (
            index
                .entries()
                .map(|(p, e)| (p.to_vec(), e.clone()))
                .collect::<Vec<_>>(),
            index.whiteouts().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            index.opaque_dirs().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            index.diff_id().clone(),
            index.tar_size(),
            index.size_bytes(),
        )
    };
    let plain = layer.build(Compress::None);
    let reference = summary(&index_layer(&plain.blob[..], None).expect("plain"));
    assert_eq!(reference.1, [b"old/thing".to_vec()]);
    assert_eq!(reference.2, [b"var/cache".to_vec()]);
    assert_eq!(reference.3, plain.diff_id);
    assert_eq!(reference.4, plain.tar.len() as u64);
    for (how, compression) in [
        (Compress::None, Compression::None),
        (Compress::Gzip, Compression::Gzip),
        (Compress::GzipMembers(5), Compression::Gzip),
        (Compress::GzipMembers(300), Compression::Gzip),
        (Compress::Zstd, Compression::Zstd),
        (Compress::ZstdFrames(7), Compression::Zstd),
    ] {
        let b = layer.build(how);
        for decompress_thread in [true, false] {
            let index = index_layer_with(
                &b.blob[..],
                Some(&b.diff_id),
                IndexOptions {
                    decompress_thread,
                    ..IndexOptions::default()
                },
            )
            .expect("valid layer");
            assert_eq!(index.compression(), compression);
            assert_eq!(index.compressed_size(), b.blob.len() as u64);
            assert_eq!(
                summary(&index),
                reference,
                "{how:?} thread={decompress_thread}"
            );
        }
    }
}

#[test]
fn a_stream_without_end_blocks_is_accepted_at_a_header_boundary() {
    let layer = LayerBuilder::new().file("a", b"abc").file("b", b"");
    let tar = layer.tar_without_end();
    let b = built(tar.clone(), Compress::Gzip);
    let index = index_layer(&b.blob[..], Some(&b.diff_id)).expect("no end blocks is fine");
    assert_eq!(index.len(), 2);
    assert_eq!(index.tar_size(), tar.len() as u64);
    // Trailing bytes after the end marker still count for the diff_id.
    let mut padded = layer.tar();
    padded.extend_from_slice(&[0u8; 8192]);
    let b = built(padded, Compress::Zstd);
    assert!(index_layer(&b.blob[..], Some(&b.diff_id)).is_ok());
    let empty = built(Vec::new(), Compress::None);
    let index = index_layer(&empty.blob[..], Some(&empty.diff_id)).expect("empty stream");
    assert!(index.is_empty());
    assert_eq!(index.diff_id(), &Digest::sha256_of(b""));
}

#[test]
fn diff_id_mismatch_is_reported() {
    let b = sample_layer().build(Compress::Gzip);
    let wrong = Digest::sha256_of(b"something else");
    let err = index_layer(&b.blob[..], Some(&wrong)).expect_err("wrong diff_id");
    assert_eq!(
        err,
        LayerError::DiffIdMismatch {
            expected: wrong.clone(),
            actual: b.diff_id.clone()
        }
    );
    let message = err.to_string();
    assert!(message.contains(&wrong.to_string()) && message.contains(&b.diff_id.to_string()));
    assert!(!message.contains('\n'));
    // sha512 diff_ids are checked with sha512.
    let mut hasher = layerscope::digest::DigestHasher::new(layerscope::digest::Algorithm::Sha512);
    hasher.update(&b.tar);
    let sha512 = hasher.finish();
    let index = index_layer(&b.blob[..], Some(&sha512)).expect("sha512 diff_id");
    assert_eq!(index.diff_id(), &sha512);
}

#[track_caller]
fn assert_one_line_error(result: Result<LayerIndex, LayerError>, expect: &str) -> LayerError {
    let err = result.expect_err("must fail");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains(expect),
        "{message:?} should mention {expect:?}"
    );
    err
}

#[test]
fn truncated_streams_fail_cleanly() {
    let layer = sample_layer();
    let tar = layer.tar();
    for how in [
        Compress::Gzip,
        Compress::GzipMembers(4),
        Compress::Zstd,
        Compress::ZstdFrames(3),
    ] {
        let b = layer.build(how);
        for cut in [
            b.blob.len() / 3,
            b.blob.len() / 2,
            b.blob.len() - 4,
            b.blob.len() - 1,
        ] {
            for decompress_thread in [true, false] {
                let err = index_layer_with(
                    &b.blob[..cut],
                    None,
                    IndexOptions {
                        decompress_thread,
                        ..IndexOptions::default()
                    },
                )
                .expect_err("truncated blob");
                assert!(
                    matches!(err, LayerError::Decompress { .. }),
                    "{how:?} cut at {cut}: {err}"
                );
                assert!(!err.to_string().contains('\n'));
            }
        }
    }
    // Plain tar cut inside a header, inside file data, inside padding.
    let first_data = 1024; // after the `etc/` and `etc/os-release` headers
    for cut in [100, first_data + 3, first_data + 100, 3000, tar.len() / 2] {
        let err = assert_one_line_error(index_layer(&tar[..cut], None), "truncated tar");
        assert!(matches!(err, LayerError::Tar { .. }), "{err}");
    }
    // An archive that stops right after an extended header.
    let pax_only = LayerBuilder::new()
        .file("x".repeat(150), b"data")
        .tar_without_end();
    assert_one_line_error(index_layer(&pax_only[..1024], None), "truncated tar");
}

#[test]
fn garbage_and_corrupt_input_fail_cleanly() {
    let garbage = content(99, 5000);
    assert_one_line_error(index_layer(&garbage[..], None), "checksum");
    let mut fake_gzip = vec![0x1f, 0x8b];
    fake_gzip.extend(content(5, 300));
    let err = assert_one_line_error(index_layer(&fake_gzip[..], None), "gzip");
    assert!(matches!(err, LayerError::Decompress { .. }));
    let mut fake_zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    fake_zstd.extend(content(6, 300));
    assert_one_line_error(index_layer(&fake_zstd[..], None), "zstd");
    // Valid gzip of something that is not a tar.
    let b = built(
        b"hello, this is not a tar archive".repeat(40),
        Compress::Gzip,
    );
    assert_one_line_error(index_layer(&b.blob[..], None), "checksum");
    // A flipped bit inside the gzip data.
    let mut b = sample_layer().build(Compress::Gzip).blob;
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    assert!(index_layer(&b[..], None).is_err());
    // A bad numeric field.
    let bad_size = LayerBuilder::new()
        .raw(
            RawHeader {
                name: b"f",
                prefix: b"",
                typeflag: b'0',
                size: 0,
                link: b"",
                meta: Meta::default(),
                gnu: false,
            },
            b"",
        )
        .tar();
    let mut corrupt = bad_size.clone();
    corrupt[124..136].copy_from_slice(b"12345678z00\0");
    // Re-sum so only the size field is wrong.
    corrupt[148..156].copy_from_slice(b"        ");
    let sum: u32 = corrupt[..512].iter().map(|&x| u32::from(x)).sum();
    corrupt[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    assert_one_line_error(index_layer(&corrupt[..], None), "size");
}

/// An extended (PAX) header that gives the next entry `records`.
fn pax_header(records: &[(&str, &[u8])]) -> (Vec<u8>, RawHeader<'static>) {
    let body: Vec<u8> = records
        .iter()
        .flat_map(|(key, value)| common::layers::pax_record(key, value))
        .collect();
    let header = RawHeader {
        name: b"PaxHeaders/f",
        prefix: b"",
        typeflag: b'x',
        size: body.len() as u64,
        link: b"",
        meta: Meta::default(),
        gnu: false,
    };
    (body, header)
}

#[test]
fn sizes_and_times_beyond_what_an_entry_holds() {
    let file = |size| RawHeader {
        name: b"big",
        prefix: b"",
        typeflag: b'0',
        size,
        link: b"",
        meta: Meta::default(),
        gnu: false,
    };
    // A file of 1 TiB is refused from its header, before any of its data is awaited.
    let (body, header) = pax_header(&[("size", b"1099511627776")]);
    let tar = LayerBuilder::new()
        .raw(header, &body)
        .raw(file(0), b"")
        .tar();
    assert_one_line_error(index_layer(&tar[..], None), "1 TiB");
    // A time after the year 2242 (the largest ustar octal) reads as that time; an entry
    // keeps everything else of the header exactly.
    let (body, header) = pax_header(&[("mtime", b"99999999999999"), ("uid", b"4294967295")]);
    let tar = LayerBuilder::new()
        .raw(header, &body)
        .raw(file(3), b"abc")
        .tar();
    let index = index_layer(&tar[..], None).expect("a valid tar");
    let (path, entry) = index.entries().next().expect("one entry");
    assert_eq!(path, b"big");
    assert_eq!(entry.mtime(), layerscope::layer::MAX_MTIME);
    assert_eq!(entry.mtime(), 8u64.pow(11) - 1);
    assert_eq!(
        (entry.size(), entry.uid, entry.mode()),
        (3, u32::MAX, 0o644)
    );
}

/// A source that fails after some bytes, like a dropped connection.
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl std::io::Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.fail_at {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        let n = buf
            .len()
            .min(self.fail_at - self.pos)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn source_errors_are_reported_as_read_errors() {
    for how in [Compress::Gzip, Compress::Zstd, Compress::None] {
        let b = sample_layer().build(how);
        let reader = FailingReader {
            fail_at: b.blob.len() / 2,
            data: b.blob,
            pos: 0,
        };
        let err = index_layer(reader, None).expect_err("source fails");
        assert_eq!(
            err,
            LayerError::Read("connection reset by peer".to_string()),
            "{how:?}"
        );
    }
}

#[test]
fn unsafe_paths_and_aufs_markers_are_not_entries() {
    let layer = LayerBuilder::new()
        .file("../escape", b"x")
        .file("a/../../b", b"y")
        .file("ok/../fine", b"z")
        .file(".wh..wh.plnk/123.456", b"")
        .file("dir/.wh..wh.aufs", b"")
        .hardlink("badlink", "../outside")
        .file("kept", b"k");
    let index = index_of(&layer, Compress::Gzip);
    let paths: Vec<Vec<u8>> = index.entries().map(|(p, _)| p).collect();
    // aufs metadata (`/.wh..wh.*` and anything below it, `.wh..wh.*` names) is skipped as
    // Docker skips it; it is bookkeeping, not a whiteout.
    assert_eq!(paths, [b"kept".to_vec()]);
    assert_eq!(index.skipped_entries(), 4);
    assert_eq!(index.whiteouts().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// The first layer merged while it streams

/// Everything a view, a report or the findings read of a model, as text: per node its path,
/// versions and visits; per layer its stats; the hidden files; the figures.
fn model_dump(tree: &FileTree) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..tree.node_count() {
        let id = NodeId(i as u32);
        out.push(format!(
            "{} {:?} {:?}",
            display_path(&tree.path(id)),
            tree.versions(id).collect::<Vec<_>>(),
            tree.visits(id)
        ));
    }
    for layer in 0..tree.layer_count() {
        out.push(format!(
            "layer {layer} {:?} {:?}",
            tree.layer_stats(layer),
            tree.layer_meta(layer)
        ));
    }
    for hidden in tree.hidden_files() {
        out.push(format!("{hidden:?}"));
    }
    out.push(format!("{:?}", analyse(tree)));
    out.push(format!("{:?}", layerscope::findings::find(tree, &[])));
    out
}

/// A first layer with everything a merge decides on: parents no entry names, paths written
/// twice (a file, then a directory and a file again at one path), links, markers (which have
/// nothing below them to act on), the root itself, and enough entries in nested directories
/// that the paths cross batch boundaries.
fn base_layer_with_every_case() -> LayerBuilder {
    let mut layer = LayerBuilder::new()
        .dir("")
        .file("usr/lib/implicit/parents", b"deep")
        .file("twice", b"first")
        .dir("twice")
        .file("twice/child", b"under")
        .file("twice", b"second, replacing the directory")
        .symlink("bin", "usr/bin")
        .hardlink("usr/alias", "usr/lib/implicit/parents")
        .whiteout("usr/lib/implicit")
        .opaque("usr")
        .opaque("");
    for d in 0..9u64 {
        for f in 0..1500u64 {
            let path = format!("site-packages/pkg{d}/module{}/file{f}.py", f / 300);
            layer = layer.file(path, &content(d * 10_000 + f, (f % 7) as usize * 40));
        }
    }
    layer.file(
        "site-packages/pkg0/module0/file0.py",
        b"written again at the end",
    )
}

#[test]
fn a_first_layer_merged_while_it_streams_gives_the_same_model_as_merged_after() {
    let base = base_layer_with_every_case();
    let top = LayerBuilder::new()
        .whiteout("site-packages/pkg3")
        .opaque("site-packages/pkg4/module1")
        .file("twice", b"third")
        .file("site-packages/pkg5/module2/file700.py", b"changed");
    let built = base.build(Compress::Gzip);

    // Threaded and inline; with the paths kept in the index (to cache it) and without; and
    // with the threads below normal priority, each stage then on a thread of its own.
    for (decompress_thread, entry_paths, background) in [
        (true, true, false),
        (false, true, false),
        (true, false, false),
        (true, true, true),
    ] {
        let options = IndexOptions {
            decompress_thread,
            entry_paths,
            background,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let merger = std::thread::spawn(move || {
            let mut batches = 0;
            let merge = BaseLayerMerge::from_batches(rx.into_iter().inspect(|_| batches += 1));
            (merge, batches)
        });
        let index = index_layer_tapped(&built.blob[..], Some(&built.diff_id), options, tx)
            .expect("valid layer");
        let (merge, batches) = merger.join().expect("the merge thread ends");
        assert!(
            batches >= 3,
            "{batches} batches: the paths must cross batch boundaries"
        );
        assert_eq!(index.has_entry_paths(), entry_paths);
        assert_eq!(
            index.encode().is_empty(),
            !entry_paths,
            "only an index with its paths can be cached"
        );
        let mut streamed = merge.finish(index).expect("every entry was streamed");
        let mut after = FileTree::new();
        after.push_layer(index_of(&base, Compress::Gzip));
        assert_eq!(
            model_dump(&streamed),
            model_dump(&after),
            "{options:?}, first layer"
        );

        for tree in [&mut streamed, &mut after] {
            tree.push_layer(index_of(&top, Compress::Gzip));
        }
        assert_eq!(
            model_dump(&streamed),
            model_dump(&after),
            "{options:?}, two layers"
        );
        assert_stats_match_changes(&streamed);
        assert!(view(&streamed, 0).contains(&"/twice - 31".to_string()));
        // pkg3 with its 5 module directories and 1500 files; the 300 files of pkg4/module1.
        assert_eq!(streamed.layer_stats(1).removed, 1 + 5 + 1500 + 300);
    }
}

#[test]
fn a_streamed_first_layer_that_missed_entries_is_merged_again_from_its_index() {
    // The batches never arrived (say, the merge thread started late): the index decides.
    let base = base_layer_with_every_case();
    let merge = BaseLayerMerge::new();
    let streamed = merge
        .finish(index_of(&base, Compress::Zstd))
        .expect("merged again from the index");
    let mut after = FileTree::new();
    after.push_layer(index_of(&base, Compress::Zstd));
    assert_eq!(model_dump(&streamed), model_dump(&after));
    assert!(streamed.layer_stats(0).added > 13_500);

    // An index kept without its paths cannot stand in: the merge is refused, not guessed.
    let built = base.build(Compress::Zstd);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // The merge stops listening after the first batch.
    let merger = std::thread::spawn(move || BaseLayerMerge::from_batches(rx.into_iter().take(1)));
    let options = IndexOptions {
        entry_paths: false,
        ..IndexOptions::default()
    };
    let index = index_layer_tapped(&built.blob[..], Some(&built.diff_id), options, tx)
        .expect("the layer itself is valid");
    assert!(!index.has_entry_paths());
    let merge = merger.join().expect("the merge thread ends");
    let err = merge.finish(index).expect_err("entries are missing");
    assert!(
        err.to_string().contains("kept no paths"),
        "one line that says why: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// gzip without its CRC when the diff_id checks every byte

/// One gzip member of `data` by hand (RFC 1952), with the optional header fields `flags` names
/// (FHCRC 0x02, FEXTRA 0x04, FNAME 0x08, FCOMMENT 0x10), the real CRC-32 and ISIZE.
fn gzip_member(data: &[u8], flags: u8) -> Vec<u8> {
    use std::io::Write;
    let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
    if flags & 0x04 != 0 {
        out.extend_from_slice(&5u16.to_le_bytes());
        out.extend_from_slice(b"extra");
    }
    if flags & 0x08 != 0 {
        out.extend_from_slice(b"layer.tar\0");
    }
    if flags & 0x10 != 0 {
        out.extend_from_slice(&[b'c'; 300]);
        out.push(0);
    }
    if flags & 0x02 != 0 {
        // The header's CRC-16: the low bytes of the CRC-32 of the header so far.
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        out.extend_from_slice(&crc.sum().to_le_bytes()[..2]);
    }
    let mut deflate = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
    deflate.write_all(data).expect("deflate to memory");
    let mut out = deflate.finish().expect("deflate to memory");
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The layer's tar in three members (every optional header field, none, and an empty one),
/// the diff_id of the tar, the tar, and where the first member's trailer starts.
fn three_member_gzip() -> (Vec<u8>, Digest, Vec<u8>, usize) {
    let tar = sample_layer().tar();
    let cut = tar.len() / 3;
    let mut blob = gzip_member(&tar[..cut], 0x02 | 0x04 | 0x08 | 0x10);
    let first_trailer = blob.len() - 8;
    blob.extend(gzip_member(&tar[cut..], 0));
    blob.extend(gzip_member(b"", 0x08));
    let diff_id = built(tar.clone(), Compress::None).diff_id;
    (blob, diff_id, tar, first_trailer)
}

#[test]
fn gzip_members_with_every_header_field_index_alike_with_or_without_the_crc() {
    let (blob, diff_id, tar, _) = three_member_gzip();
    let plain = index_layer(&tar[..], Some(&diff_id)).expect("plain tar");
    for decompress_thread in [true, false] {
        let options = IndexOptions {
            decompress_thread,
            ..IndexOptions::default()
        };
        // With a diff_id the CRC is skipped; without one it is checked.
        for expected in [Some(&diff_id), None] {
            let index = index_layer_with(&blob[..], expected, options).expect("valid members");
            assert_eq!(index.diff_id(), &diff_id);
            assert_eq!(index.compression(), Compression::Gzip);
            assert_eq!(index.compressed_size(), blob.len() as u64);
            assert_eq!(index.tar_size(), tar.len() as u64);
            let entries =
                |i: &LayerIndex| i.entries().map(|(p, e)| (p, e.clone())).collect::<Vec<_>>();
            assert_eq!(entries(&index), entries(&plain), "{expected:?} {options:?}");
        }
    }
}

#[test]
fn with_a_diff_id_every_change_to_a_gzip_member_is_still_refused() {
    let (blob, diff_id, _, first_trailer) = three_member_gzip();
    let index = |bytes: &[u8]| index_layer(bytes, Some(&diff_id));

    // A wrong CRC alone: the bytes are right, as the diff_id proves, so the layer is read; a
    // layer without a diff_id to check still has its CRC checked.
    let mut wrong_crc = blob.clone();
    wrong_crc[first_trailer] ^= 0xff;
    assert!(index(&wrong_crc).is_ok());
    assert_one_line_error(index_layer(&wrong_crc[..], None), "corrupt gzip stream");

    // A wrong length, a bit flipped anywhere in the deflate data, bytes after the last member
    // that start no other, and a stream cut anywhere: each is an error.
    let mut wrong_length = blob.clone();
    wrong_length[first_trailer + 4] ^= 0x01;
    assert_one_line_error(index(&wrong_length), "length does not match");
    for at in (first_trailer / 10..first_trailer).step_by(first_trailer / 7) {
        let mut flipped = blob.clone();
        flipped[at] ^= 0x08;
        let Err(err) = index(&flipped) else {
            panic!("the stream with a bit flipped at {at} was read");
        };
        assert!(
            matches!(
                err,
                LayerError::Decompress { .. }
                    | LayerError::DiffIdMismatch { .. }
                    | LayerError::Tar { .. }
            ),
            "bit at {at}: {err}"
        );
    }
    let mut trailing = blob.clone();
    trailing.extend_from_slice(b"not a gzip member");
    assert_one_line_error(index(&trailing), "invalid gzip header");
    // The last member is 30 bytes: a cut just before it leaves two whole members, which is a
    // valid stream, so the cuts near the end fall inside it.
    for cut in [
        5,
        12,
        20,
        400,
        first_trailer + 3,
        blob.len() / 2,
        blob.len() - 29,
        blob.len() - 1,
    ] {
        let Err(err) = index(&blob[..cut]) else {
            panic!("the stream cut at {cut} of {} was read", blob.len());
        };
        assert!(
            matches!(err, LayerError::Decompress { .. }),
            "cut at {cut}: {err}"
        );
    }
}
