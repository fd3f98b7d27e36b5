//! Reading a file's bytes back for the explorer's viewer: through a real loopback registry,
//! out of gzip and zstd layers, as of different layers, through hard links, and in windows of
//! a file too big to read whole.

mod common;

use std::sync::{Arc, RwLock};

use common::layers::{content, Compress, LayerBuilder};
use common::push::{build_image, mt, Flavor, Pusher, Step};
use common::registry::{isolated_options, Registry, TempDir};
use layerscope::pipeline;
use layerscope::reference::Reference;
use layerscope::registry::RegistryClient;
use layerscope::source::{RegistrySource, Source};
use layerscope::tree::FileTree;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_reads_each_files_bytes_as_of_the_layer_shown() {
    let big = content(7, 3 << 20);
    let base = LayerBuilder::new()
        .dir("etc")
        .file("etc/os-release", b"NAME=base\n")
        .file("opt/big.bin", &big)
        .build(Compress::Gzip);
    let app = LayerBuilder::new()
        .file("etc/os-release", b"NAME=app\nVERSION=2\n")
        .hardlink("etc/release-link", "etc/os-release")
        .symlink("etc/alias", "os-release")
        .whiteout("opt/big.bin")
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
        .push_image("viewer/app", Some("1"), &image)
        .await;

    let dir = TempDir::new("file-content");
    let reference: Reference = format!("{}/viewer/app:1", registry.host)
        .parse()
        .expect("reference");
    let client = RegistryClient::new(isolated_options(dir.path())).expect("client");
    let source = Arc::new(Source::Registry(RegistrySource::new(
        client, reference, None,
    )));
    let tree = Arc::new(RwLock::new(FileTree::new()));
    let (events, _rx) = mpsc::unbounded_channel();
    let loaded = pipeline::load(source.clone(), tree, events, |_| {})
        .await
        .expect("image loads");
    let info = loaded.info.clone();

    let location = |path: &str, layer: usize| {
        let tree = loaded.tree.read().expect("tree lock");
        let node = tree.lookup(path.as_bytes())?;
        tree.content_location(node, layer)
    };
    let read = |path: &str, layer: usize, offset: u64, max: usize| {
        let location = location(path, layer).unwrap_or_else(|| panic!("{path} is a file"));
        let layer_info = info.layers[location.layer].clone();
        pipeline::read_file(source.clone(), layer_info, location, offset, max)
    };

    // The same path as of each layer: the base's version from the gzip layer, the app's from
    // the zstd layer.
    let at_base = read("/etc/os-release", 0, 0, 1 << 16).await.expect("reads");
    assert_eq!(at_base.bytes, b"NAME=base\n");
    let at_app = read("/etc/os-release", 1, 0, 1 << 16).await.expect("reads");
    assert_eq!(at_app.bytes, b"NAME=app\nVERSION=2\n");
    assert!(at_app.is_whole_file());

    // A hard link shows its target's bytes; a symlink and a removed file have none.
    let linked = read("/etc/release-link", 1, 0, 1 << 16)
        .await
        .expect("reads");
    assert_eq!(linked.bytes, at_app.bytes);
    assert_eq!(location("/etc/alias", 1), None);
    assert_eq!(location("/opt/big.bin", 1), None);

    // A 3 MiB file, shown in 64 KiB windows: the middle and the last, short one.
    let middle = read("/opt/big.bin", 0, 1 << 20, 1 << 16)
        .await
        .expect("reads");
    assert_eq!(middle.file_size, 3 << 20);
    assert_eq!(middle.bytes, &big[1 << 20..(1 << 20) + (1 << 16)]);
    let last_start = (3 << 20) - 1000;
    let last = read("/opt/big.bin", 0, last_start, 1 << 16)
        .await
        .expect("reads");
    assert_eq!(last.bytes, &big[last_start as usize..]);
    assert_eq!(last.end(), 3 << 20);
}
