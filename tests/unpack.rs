//! `layerscope cat`, `layerscope export` and the explorer's save key end to end: the real
//! binary against images built here from real tar, gzip and zstd bytes and pushed to a real
//! registry, the explorer in a real terminal (tmux). Expected bytes are the ones that went
//! into the layers; `--changes` output is read back through the layer indexer and merged
//! again; a hostile layer is extracted and the filesystem around the output directory is
//! checked; a blob changed in the cache is refused.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::cli::{self, stderr};
use common::layers::{content, Compress, LayerBuilder, Meta};
use common::push::{build_image, mt, Flavor, Pusher, Step};
use common::registry::{Registry, TempDir};
use common::tmux::Tmux;
use layerscope::layer::index_layer;
use layerscope::tree::{FileTree, VersionState};

const BASE_RELEASE: &[u8] = b"NAME=base\n";
const APP_RELEASE: &[u8] = b"NAME=app\nVERSION=2\n";
const FINAL_RELEASE: &[u8] = b"NAME=final\n";
const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";

fn tool_meta() -> Meta {
    Meta {
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        mtime: 1_650_000_000,
    }
}

/// Three layers: a gzip base, a zstd layer that changes, links, whiteouts and makes a
/// directory opaque, and a small gzip layer that rewrites a file the second one hard-linked.
struct Fixture {
    registry: Registry,
    home: TempDir,
    reference: String,
    tars: Vec<Vec<u8>>,
    big: Vec<u8>,
    data: Vec<u8>,
    libc: Vec<u8>,
}

async fn fixture() -> Fixture {
    let big = content(1, 3 << 20);
    let data = content(3, 2 << 20);
    let libc = content(2, 5000);
    let base = LayerBuilder::new()
        .dir("etc")
        .file("etc/os-release", BASE_RELEASE)
        .file("opt/big.bin", &big)
        .file("usr/lib/libc.so", &libc)
        .symlink("lib", "usr/lib")
        .file_with("bin/tool", TOOL, tool_meta())
        .dir("cache")
        .file("cache/a", b"aaaa")
        .file("cache/b", b"bbbb")
        .file("data/old.txt", b"old")
        .build(Compress::Gzip);
    let app = LayerBuilder::new()
        .file("etc/os-release", APP_RELEASE)
        .hardlink("etc/release-link", "etc/os-release")
        .symlink("etc/alias", "os-release")
        .whiteout("opt/big.bin")
        .file("srv/data.bin", &data)
        .opaque("cache")
        .file("cache/c", b"new")
        .fifo("run/pipe")
        .whiteout("data")
        .build(Compress::Zstd);
    let last = LayerBuilder::new()
        .file("etc/os-release", FINAL_RELEASE)
        .build(Compress::Gzip);
    let image = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![
            base.layer(mt::OCI_LAYER_GZIP),
            app.layer(mt::OCI_LAYER_ZSTD),
            last.layer(mt::OCI_LAYER_GZIP),
        ],
        &[
            Step::layer("ADD rootfs /"),
            Step::layer("RUN install-app"),
            Step::layer("RUN configure"),
        ],
    );
    let registry = Registry::start().await;
    Pusher::new(&registry.url())
        .push_image("unpack/app", Some("1"), &image)
        .await;
    let reference = registry.reference("unpack/app", "1");
    Fixture {
        registry,
        home: TempDir::new("unpack-home"),
        reference,
        tars: vec![base.tar, app.tar, last.tar],
        big,
        data,
        libc,
    }
}

impl Fixture {
    async fn run(&self, args: &[&str]) -> Output {
        cli::run(self.home.path(), args).await
    }

    /// `cat` that must succeed: its standard output.
    async fn cat(&self, extra: &[&str]) -> Vec<u8> {
        let mut args = vec!["cat", self.reference.as_str()];
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        assert_ok(&out);
        out.stdout
    }

    /// `cat` that must fail: its one-line error.
    async fn cat_error(&self, extra: &[&str]) -> String {
        let mut args = vec!["cat", self.reference.as_str()];
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        one_line_error(&out)
    }
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\n{}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(2000)])
    );
}

/// Exit code 2 and one `layerscope: error:` line; the line.
fn one_line_error(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].starts_with("layerscope: error: "), "{err}");
    errors[0].to_string()
}

/// One tar entry as an independent reader (the `tar` crate) sees it.
#[derive(Debug)]
struct Item {
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

fn read_tar(bytes: &[u8]) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a whole entry");
        let path = String::from_utf8(entry.path_bytes().into_owned()).expect("UTF-8 names");
        let header = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).expect("UTF-8 link"));
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.insert(
            path.trim_end_matches('/').to_string(),
            Item {
                kind: header.entry_type(),
                data,
                link,
                mode: header.mode().expect("mode"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                mtime: header.mtime().expect("mtime"),
            },
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_prints_each_files_bytes_as_of_a_layer_and_says_why_when_it_cannot() {
    let f = fixture().await;
    // The same path as of each layer, from the gzip, zstd and gzip layers.
    assert_eq!(f.cat(&["/etc/os-release"]).await, FINAL_RELEASE);
    assert_eq!(
        f.cat(&["etc/os-release", "--layer", "1"]).await,
        APP_RELEASE
    );
    assert_eq!(
        f.cat(&["--layer", "0", "/etc/os-release"]).await,
        BASE_RELEASE
    );
    // A hard link gives its target's bytes as of the layer that made the link, even after
    // the target was rewritten.
    assert_eq!(f.cat(&["/etc/release-link"]).await, APP_RELEASE);
    // Large files stream out of gzip and zstd layers whole.
    assert!(f.cat(&["/opt/big.bin", "--layer", "0"]).await == f.big);
    assert!(f.cat(&["/srv/data.bin"]).await == f.data);
    // Symbolic links are followed inside the image.
    assert_eq!(f.cat(&["/lib/libc.so"]).await, f.libc);
    assert_eq!(f.cat(&["/etc/alias", "--layer", "1"]).await, APP_RELEASE);

    let err = f.cat_error(&["/opt/big.bin"]).await;
    assert!(err.contains("/opt/big.bin was removed by layer 1"), "{err}");
    let err = f.cat_error(&["/srv/data.bin", "--layer", "0"]).await;
    assert!(
        err.contains("/srv/data.bin does not exist yet at layer 0: layer 1 writes it first"),
        "{err}"
    );
    let err = f.cat_error(&["/etc"]).await;
    assert!(err.contains("/etc is a directory"), "{err}");
    let err = f.cat_error(&["/run/pipe"]).await;
    assert!(err.contains("/run/pipe is a named pipe"), "{err}");
    let err = f.cat_error(&["/nope"]).await;
    assert!(err.contains("/nope: no such file or directory"), "{err}");
    let err = f.cat_error(&["/data/old.txt"]).await;
    assert!(
        err.contains("/data/old.txt was removed by layer 1"),
        "{err}"
    );
    let err = f.cat_error(&["/data/new.txt"]).await;
    assert!(err.contains("/data was removed by layer 1"), "{err}");
    let err = f.cat_error(&["/etc/os-release", "--layer", "7"]).await;
    assert!(
        err.contains("layer 7 does not exist: the image has 3 layers, 0 to 2"),
        "{err}"
    );

    // -o FILE: written once verified, never over an existing file without --force.
    let target = f.home.path().join("release.txt");
    let target_arg = target.to_str().expect("UTF-8 path");
    f.cat(&["/etc/os-release", "-o", target_arg]).await;
    assert_eq!(std::fs::read(&target).expect("written"), FINAL_RELEASE);
    let err = f
        .cat_error(&["/etc/os-release", "--layer", "0", "-o", target_arg])
        .await;
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&target).expect("kept"), FINAL_RELEASE);
    f.cat(&[
        "/etc/os-release",
        "--layer",
        "0",
        "-o",
        target_arg,
        "--force",
    ])
    .await;
    assert_eq!(std::fs::read(&target).expect("replaced"), BASE_RELEASE);
    drop(f.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_view_as_a_tar_or_into_a_directory() {
    let f = fixture().await;
    let home = f.home.path();

    // The last layer's view as a tar file.
    let tar_path = home.join("rootfs.tar");
    let out = f
        .run(&[
            "export",
            &f.reference,
            "-o",
            tar_path.to_str().expect("path"),
        ])
        .await;
    assert_ok(&out);
    assert!(stderr(&out).contains("exported"), "{}", stderr(&out));
    let items = read_tar(&std::fs::read(&tar_path).expect("the tar"));
    assert_eq!(items["etc/os-release"].data, FINAL_RELEASE);
    // The link's bytes are no longer those of its target: written as a file.
    assert_eq!(items["etc/release-link"].kind, tar::EntryType::Regular);
    assert_eq!(items["etc/release-link"].data, APP_RELEASE);
    assert!(items["srv/data.bin"].data == f.data);
    assert!(items["usr/lib/libc.so"].data == f.libc);
    assert!(!items.contains_key("opt/big.bin"), "whited out");
    assert!(!items.contains_key("data"), "whited out directory");
    assert!(
        !items.contains_key("cache/a"),
        "hidden by the opaque directory"
    );
    assert_eq!(items["cache/c"].data, b"new");
    let tool = &items["bin/tool"];
    assert_eq!(
        (tool.mode, tool.uid, tool.gid, tool.mtime),
        (0o4755, 1000, 1001, 1_650_000_000)
    );
    assert_eq!(tool.data, TOOL);
    assert_eq!(items["lib"].kind, tar::EntryType::Symlink);
    assert_eq!(items["lib"].link.as_deref(), Some("usr/lib"));
    assert_eq!(items["run/pipe"].kind, tar::EntryType::Fifo);
    // Directories come before what they hold.
    let order: Vec<String> = tar::Archive::new(std::fs::read(&tar_path).expect("tar").as_slice())
        .entries()
        .expect("tar")
        .map(|e| String::from_utf8(e.expect("entry").path_bytes().into_owned()).expect("UTF-8"))
        .collect();
    let position = |name: &str| order.iter().position(|p| p == name).expect(name);
    assert!(position("srv/") < position("srv/data.bin"));

    // An existing tar file is kept without --force.
    let again = f
        .run(&[
            "export",
            &f.reference,
            "-o",
            tar_path.to_str().expect("path"),
        ])
        .await;
    assert!(one_line_error(&again).contains("already exists"));

    // Layer 1 into a directory: the hard link is a hard link again, modes and times kept.
    let dir = home.join("layer1");
    let out = f
        .run(&[
            "export",
            &f.reference,
            "--layer",
            "1",
            "-o",
            &format!("{}/", dir.display()),
        ])
        .await;
    assert_ok(&out);
    assert_eq!(
        std::fs::read(dir.join("etc/os-release")).expect("file"),
        APP_RELEASE
    );
    let release = std::fs::metadata(dir.join("etc/os-release")).expect("meta");
    let link = std::fs::metadata(dir.join("etc/release-link")).expect("meta");
    assert_eq!(release.ino(), link.ino(), "one inode");
    assert_eq!(release.mtime(), 1_700_000_000);
    let tool = std::fs::symlink_metadata(dir.join("bin/tool")).expect("meta");
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_650_000_000);
    if rustix_is_root() {
        assert_eq!(
            (tool.uid(), tool.gid()),
            (1000, 1001),
            "owners kept as root"
        );
    }
    assert_eq!(
        std::fs::read_link(dir.join("etc/alias")).expect("link"),
        Path::new("os-release")
    );
    assert!(std::fs::read(dir.join("srv/data.bin")).expect("file") == f.data);
    assert!(!dir.join("opt/big.bin").exists());
    assert_eq!(
        std::fs::metadata(dir.join("etc"))
            .expect("dir")
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    let leftovers = walk(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("layerscope-part"))
        .count();
    assert_eq!(leftovers, 0);

    // Into the same directory again: nothing is overwritten without --force.
    let again = f
        .run(&["export", &f.reference, "-o", dir.to_str().expect("path")])
        .await;
    assert!(one_line_error(&again).contains("already exists"));
    assert_eq!(
        std::fs::read(dir.join("etc/os-release")).expect("kept"),
        APP_RELEASE
    );
    let forced = f
        .run(&[
            "export",
            &f.reference,
            "-o",
            dir.to_str().expect("path"),
            "--force",
        ])
        .await;
    assert_ok(&forced);
    assert_eq!(
        std::fs::read(dir.join("etc/os-release")).expect("new"),
        FINAL_RELEASE
    );

    // Paths: the base layer's /opt to standard output, with its parent directory only.
    let out = f
        .run(&["export", &f.reference, "/opt/", "--layer", "0", "-o", "-"])
        .await;
    assert_ok(&out);
    let items = read_tar(&out.stdout);
    assert_eq!(items.keys().collect::<Vec<_>>(), ["opt", "opt/big.bin"]);
    assert!(items["opt/big.bin"].data == f.big);
    let missing = f
        .run(&["export", &f.reference, "/opt/big.bin", "-o", "-"])
        .await;
    assert!(one_line_error(&missing).contains("/opt/big.bin was removed by layer 1"));
    drop(f.registry);
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Every path's change and state at `top` against `base`, for comparing two models.
fn changes(tree: &FileTree, base: usize, top: usize) -> BTreeMap<String, String> {
    let kinds = tree.changes(Some(base), top);
    let mut out = BTreeMap::new();
    for (id, kind) in kinds.iter().enumerate() {
        let node = layerscope::tree::NodeId(id as u32);
        let Some(kind) = kind else { continue };
        let state = match tree.entry_at(node, top) {
            Some(e) => format!(
                "{:?} {:o} {}:{} {:?} {:?}",
                e.kind(),
                e.mode(),
                e.uid,
                e.gid,
                e.content(),
                e.link_target()
            ),
            None => "absent".to_string(),
        };
        let path = String::from_utf8_lossy(&tree.path(node)).into_owned();
        out.insert(path, format!("{kind:?}: {state}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_read_back_as_a_layer_make_the_same_changes() {
    let f = fixture().await;
    let home = f.home.path();
    let mut original = FileTree::new();
    for tar in &f.tars[..2] {
        original.push_layer(index_layer(tar.as_slice(), None).expect("index"));
    }

    for cache in [true, false] {
        let path = home.join(format!("changes-{cache}.tar"));
        let mut args = vec!["export", f.reference.as_str(), "--changes", "--layer", "1"];
        if !cache {
            args.push("--no-cache");
        }
        args.extend(["-o", path.to_str().expect("path")]);
        let out = f.run(&args).await;
        assert_ok(&out);
        let tar = std::fs::read(&path).expect("the tar");
        let reread = index_layer(tar.as_slice(), None).expect("a layer");
        let mut whiteouts: Vec<&[u8]> = reread.whiteouts().collect();
        whiteouts.sort();
        assert_eq!(whiteouts, [&b"data"[..], b"opt/big.bin"]);
        assert_eq!(reread.opaque_dirs().collect::<Vec<_>>(), [&b"cache"[..]]);
        let items = read_tar(&tar);
        assert_eq!(items["etc/release-link"].kind, tar::EntryType::Link);
        assert!(
            !items.contains_key("usr/lib/libc.so"),
            "not changed by layer 1"
        );

        let mut again = FileTree::new();
        again.push_layer(index_layer(f.tars[0].as_slice(), None).expect("index"));
        again.push_layer(reread);
        assert_eq!(
            changes(&again, 0, 1),
            changes(&original, 0, 1),
            "cache: {cache}"
        );
    }

    // Limited to a path, and into a directory: markers are files named as in a layer.
    let dir = home.join("changes-dir");
    let out = f
        .run(&[
            "export",
            &f.reference,
            "/cache",
            "/opt",
            "--changes",
            "--layer",
            "1",
            "-o",
            &format!("{}/", dir.display()),
        ])
        .await;
    assert_ok(&out);
    let mut found: Vec<String> = walk(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).expect("inside").display().to_string())
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "cache",
            "cache/.wh..wh..opq",
            "cache/c",
            "opt",
            "opt/.wh.big.bin"
        ]
    );
    // The model's view of a version written by that layer, for the record.
    let node = original.lookup(b"/cache/c").expect("node");
    assert!(matches!(
        original.version_at(node, 1).map(|v| v.state),
        Some(VersionState::Written(_))
    ));
    drop(f.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_layer_writes_nothing_outside_the_directory() {
    let scratch = TempDir::new("unpack-hostile");
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(&outside).expect("dir");
    let outside_str = outside.to_str().expect("UTF-8 path").to_string();
    let escape_name = format!("layerscope-escape-{}", std::process::id());
    let absolute = format!("/layerscope-absolute-{}", std::process::id());
    // One layer: `../x`, `/abs`, a link out and a file through it; another layer puts the
    // link and the file through it in two layers.
    let hostile = LayerBuilder::new()
        .file(format!("../{escape_name}"), b"escaped")
        .file(&absolute, b"absolute")
        .symlink("out", &outside_str)
        .file("out/file", b"through the link")
        .build(Compress::Gzip);
    let link_layer = LayerBuilder::new()
        .symlink("out", &outside_str)
        .build(Compress::Gzip);
    let through_layer = LayerBuilder::new()
        .file("out/file", b"through the link")
        .build(Compress::Gzip);
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    let one = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![hostile.layer(mt::OCI_LAYER_GZIP)],
        &[Step::layer("ADD evil.tar /")],
    );
    pusher.push_image("hostile/one", Some("1"), &one).await;
    let two = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![
            link_layer.layer(mt::OCI_LAYER_GZIP),
            through_layer.layer(mt::OCI_LAYER_GZIP),
        ],
        &[Step::layer("ADD link /"), Step::layer("ADD file /")],
    );
    pusher.push_image("hostile/two", Some("1"), &two).await;
    let home = TempDir::new("unpack-hostile-home");

    let out_dir = scratch.path().join("out-one");
    let out = cli::run(
        home.path(),
        &[
            "export",
            &registry.reference("hostile/one", "1"),
            "-o",
            &format!("{}/", out_dir.display()),
        ],
    )
    .await;
    assert_ok(&out);
    let notes = stderr(&out);
    assert!(notes.contains("1 entry of the layers left out"), "{notes}");
    // `../x` refused, `/abs` made relative, `out` a real directory holding the file.
    assert!(!scratch.path().join(&escape_name).exists());
    assert!(!Path::new(&absolute).exists());
    assert_eq!(
        std::fs::read(out_dir.join(absolute.trim_start_matches('/'))).expect("inside"),
        b"absolute"
    );
    assert!(std::fs::symlink_metadata(out_dir.join("out"))
        .expect("out")
        .is_dir());
    assert_eq!(
        std::fs::read(out_dir.join("out/file")).expect("inside"),
        b"through the link"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    let mut everything: Vec<String> = walk(scratch.path())
        .iter()
        .map(|p| {
            p.strip_prefix(scratch.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    everything.sort();
    assert_eq!(
        everything,
        [
            "out-one".to_string(),
            format!("out-one/{}", absolute.trim_start_matches('/')),
            "out-one/out".to_string(),
            "out-one/out/file".to_string(),
            "outside".to_string(),
        ]
    );

    // Layer by layer into one directory: the first writes the image's link (pointing out,
    // said on stderr); the second must not write through it, with or without --force.
    let two_ref = registry.reference("hostile/two", "1");
    let layered = scratch.path().join("layered");
    let layered_arg = format!("{}/", layered.display());
    let first = cli::run(
        home.path(),
        &[
            "export",
            &two_ref,
            "--changes",
            "--layer",
            "0",
            "-o",
            &layered_arg,
        ],
    )
    .await;
    assert_ok(&first);
    assert!(
        stderr(&first).contains("1 symbolic link points outside"),
        "{}",
        stderr(&first)
    );
    assert!(std::fs::symlink_metadata(layered.join("out"))
        .expect("link")
        .file_type()
        .is_symlink());
    let second = cli::run(
        home.path(),
        &[
            "export",
            &two_ref,
            "--changes",
            "--layer",
            "1",
            "-o",
            &layered_arg,
        ],
    )
    .await;
    let err = one_line_error(&second);
    assert!(
        err.contains("out: is a symbolic link, not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    let forced = cli::run(
        home.path(),
        &[
            "export",
            &two_ref,
            "--changes",
            "--layer",
            "1",
            "-o",
            &layered_arg,
            "--force",
        ],
    )
    .await;
    assert_ok(&forced);
    assert!(std::fs::symlink_metadata(layered.join("out"))
        .expect("dir")
        .is_dir());
    assert_eq!(
        std::fs::read(layered.join("out/file")).expect("inside"),
        b"through the link"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_changed_in_the_cache_are_never_handed_out_whole() {
    let big = content(9, 300_000);
    let layer = LayerBuilder::new()
        .file("a.txt", b"first")
        .file("big.bin", &big)
        .file("z.txt", b"last")
        .build(Compress::None);
    let image = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![layer.layer("application/vnd.oci.image.layer.v1.tar")],
        &[Step::layer("ADD files /")],
    );
    let registry = Registry::start().await;
    Pusher::new(&registry.url())
        .push_image("tampered/app", Some("1"), &image)
        .await;
    let reference = registry.reference("tampered/app", "1");
    let home = TempDir::new("unpack-tampered");
    let first = cli::run(home.path(), &["cat", &reference, "/big.bin"]).await;
    assert_ok(&first);
    assert!(first.stdout == big);

    // Change one byte of big.bin inside the cached blob (same length, so only the content
    // hash can tell).
    let cache = layerscope::cache::Cache::at(&home.path().join("cache"), u64::MAX);
    let blob_path = cache.blob_file(&layer.digest).expect("the blob is cached");
    let mut blob = std::fs::read(&blob_path).expect("blob");
    let at = blob
        .windows(64)
        .position(|w| w == &big[big.len() - 100..big.len() - 36])
        .expect("big.bin's bytes in the blob");
    blob[at] ^= 0xff;
    std::fs::write(&blob_path, &blob).expect("tampered");

    let out = cli::run(home.path(), &["cat", &reference, "/big.bin"]).await;
    let err = one_line_error(&out);
    assert!(
        err.contains("/big.bin: the bytes read from layer 0 do not match"),
        "{err}"
    );
    assert!(err.contains("cut short"), "{err}");
    assert!(out.stdout.len() < big.len(), "never whole");

    let tar_path = home.path().join("t.tar");
    let out = cli::run(
        home.path(),
        &["export", &reference, "-o", tar_path.to_str().expect("path")],
    )
    .await;
    assert!(one_line_error(&out).contains("no tar file was written"));
    assert!(!tar_path.exists());
    let leftovers: Vec<_> = walk(home.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("layerscope-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = cli::run(home.path(), &["export", &reference, "-o", "-"]).await;
    assert!(one_line_error(&out).contains("cut short inside that file"));
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    let complete = archive.entries().expect("tar").try_for_each(|e| {
        let mut e = e?;
        std::io::copy(&mut e, &mut std::io::sink()).map(|_| ())
    });
    assert!(
        complete.is_err(),
        "a tar reader sees the stream end too early"
    );

    let dir = home.path().join("dir");
    let out = cli::run(
        home.path(),
        &["export", &reference, "-o", &format!("{}/", dir.display())],
    )
    .await;
    assert!(one_line_error(&out).contains("that file was not written"));
    assert_eq!(
        std::fs::read(dir.join("a.txt")).expect("before it"),
        b"first"
    );
    assert!(!dir.join("big.bin").exists());
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        1,
        "no temporary file left"
    );
}

/// Keys one at a time, with a pause, as the explorer test sends them.
fn keys(tmux: &Tmux, keys: &[&str]) {
    for key in keys {
        tmux.send(&[key]);
        std::thread::sleep(Duration::from_millis(120));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_saves_a_file_or_a_directory_into_the_current_directory() {
    if !Tmux::available() {
        eprintln!("NOTE: tmux is not installed; the explorer save test is skipped");
        return;
    }
    const WAIT: Duration = Duration::from_secs(30);
    let hosts = b"127.0.0.1 localhost\n::1 localhost\n";
    let base = LayerBuilder::new()
        .dir("etc")
        .file("etc/hosts", hosts)
        .file("srv/app/config.json", b"{\"v\": 1}\n")
        .file("srv/app/main.py", b"print('hi')\n")
        .build(Compress::Gzip);
    let app = LayerBuilder::new()
        .file("srv/app/config.json", b"{\"v\": 2}\n")
        .build(Compress::Zstd);
    let image = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![
            base.layer(mt::OCI_LAYER_GZIP),
            app.layer(mt::OCI_LAYER_ZSTD),
        ],
        &[Step::layer("ADD rootfs /"), Step::layer("RUN configure")],
    );
    let registry = Registry::start().await;
    Pusher::new(&registry.url())
        .push_image("save/app", Some("1"), &image)
        .await;
    let home = TempDir::new("save-home");
    let cwd = TempDir::new("save-cwd");
    std::fs::write(cwd.path().join("hosts"), b"mine\n").expect("a file of the user's");
    let tmux = Tmux::start_in(
        cwd.path(),
        120,
        36,
        Path::new(env!("CARGO_BIN_EXE_layerscope")),
        &[&registry.reference("save/app", "1")],
        &[
            (
                "LAYERSCOPE_CONFIG_DIR",
                &home.path().join("config").display().to_string(),
            ),
            (
                "LAYERSCOPE_CACHE_DIR",
                &home.path().join("cache").display().to_string(),
            ),
        ],
    );
    tmux.wait_for("Layers (2)", WAIT);
    tmux.wait_for("hosts", WAIT);

    // The base layer's /etc/hosts: the prompt offers its name, which exists here.
    keys(&tmux, &["Tab", "C-f"]);
    tmux.type_text("hosts");
    keys(&tmux, &["Enter", "Home", "Down", "C-e"]);
    tmux.wait_for("Save /etc/hosts (layer 0) as: hosts", WAIT);
    keys(&tmux, &["Enter"]);
    tmux.wait_for("hosts exists: enter overwrites it, esc keeps it", WAIT);
    keys(&tmux, &["Escape"]);
    tmux.wait_for("not saved", WAIT);
    assert_eq!(
        std::fs::read(cwd.path().join("hosts")).expect("kept"),
        b"mine\n"
    );

    // Another name: saved at once.
    keys(
        &tmux,
        &["C-e", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace"],
    );
    tmux.type_text("hosts.copy");
    keys(&tmux, &["Enter"]);
    tmux.wait_for("saved ", WAIT);
    assert_eq!(
        std::fs::read(cwd.path().join("hosts.copy")).expect("saved"),
        hosts
    );

    // The existing name, confirmed with a second Enter: overwritten.
    keys(&tmux, &["C-e", "Enter"]);
    tmux.wait_for("hosts exists", WAIT);
    keys(&tmux, &["Enter"]);
    tmux.wait_until(WAIT, "the second save", |s| {
        s.contains("saved ") && s.contains("/hosts (")
    });
    assert_eq!(
        std::fs::read(cwd.path().join("hosts")).expect("replaced"),
        hosts
    );

    // Layer 1, the srv/app directory as a tar: everything in it as of that layer.
    keys(&tmux, &["Escape", "BTab", "Down"]);
    tmux.wait_for("Files at layer 1", WAIT);
    keys(&tmux, &["Tab", "C-f"]);
    tmux.type_text("app");
    keys(&tmux, &["Enter", "Home", "Down", "C-e"]);
    tmux.wait_for("Save /srv/app as a tar (layer 1) as: app.tar", WAIT);
    keys(&tmux, &["Enter"]);
    tmux.wait_for("saved ", WAIT);
    let items = read_tar(&std::fs::read(cwd.path().join("app.tar")).expect("the tar"));
    assert_eq!(
        items.keys().collect::<Vec<_>>(),
        ["srv", "srv/app", "srv/app/config.json", "srv/app/main.py"]
    );
    assert_eq!(items["srv/app/config.json"].data, b"{\"v\": 2}\n");

    keys(&tmux, &["q"]);
    let ended = tmux.wait_ended(WAIT);
    assert_eq!(ended.code, 0, "{}", ended.screen);
    let mut names: Vec<String> = std::fs::read_dir(cwd.path())
        .expect("cwd")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app.tar", "hosts", "hosts.copy"],
        "no temporary file left"
    );
}
