//! The cache end to end: a proxy in front of a real registry counts blob downloads, so "a warm
//! run reads no layer" is seen on the wire, not assumed. Also: two runs at once on one cache,
//! damaged entries fetched again, eviction under a small limit, and `layerscope cache`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use serde_json::Value;

use common::cli::{self, json_ok, stdout};
use common::layers::{content, Compress, LayerBuilder};
use common::push::{build_image, mt, Blob, Flavor, Pusher, Step, TestImage};
use common::registry::{FaultProxy, Registry, TempDir};
use layerscope::cache::Cache;
use layerscope::registry::{RegistryClient, RegistryOptions};
use layerscope::source::{RegistrySource, Source};

async fn layerscope(home: &Path, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = cli::command(home);
    command.args(args).env("LAYERSCOPE_CACHE_DIR", cache);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run layerscope")
}

/// An image of `sizes.len()` gzip layers of incompressible files of those sizes, `seed` making
/// it unlike other images.
fn image(seed: u64, sizes: &[usize]) -> TestImage {
    let layers = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let built = LayerBuilder::new()
                .file(
                    format!("layer{i}/data.bin"),
                    &content(seed * 100 + i as u64, n),
                )
                .file("etc/shared.conf", &content(seed, 64 + i))
                .build(Compress::Gzip);
            (Blob::new(built.blob, mt::DOCKER_LAYER), built.tar)
        })
        .collect();
    let history: Vec<Step> = sizes.iter().map(|_| Step::layer("RUN make")).collect();
    build_image(Flavor::DockerV2, ("linux", "amd64", None), layers, &history)
}

/// A registry, and a counting proxy in front of it.
struct Fixture {
    _registry: Registry,
    proxy: FaultProxy,
    home: TempDir,
    cache: PathBuf,
}

impl Fixture {
    async fn new(images: &[(&str, &TestImage)]) -> Fixture {
        let registry = Registry::start().await;
        let pusher = Pusher::new(&registry.url());
        for (name, image) in images {
            pusher.push_image(name, Some("v1"), image).await;
        }
        let proxy = FaultProxy::start(&registry.url(), Arc::new(|_, _| None)).await;
        let home = TempDir::new("cache-home");
        let cache = home.path().join("cache");
        Fixture {
            _registry: registry,
            proxy,
            home,
            cache,
        }
    }

    fn reference(&self, name: &str) -> String {
        format!("{}/{name}:v1", self.proxy.host())
    }

    async fn run(&self, args: &[&str]) -> Output {
        layerscope(self.home.path(), &self.cache, args, &[]).await
    }

    async fn json(&self, name: &str) -> Value {
        json_ok(&self.run(&["--json", "-", &self.reference(name)]).await)
    }

    /// Blob downloads so far (GETs; a digest names the blob).
    fn blob_gets(&self) -> Vec<String> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|(_, r, _)| r.method == "GET" && r.path().contains("/blobs/"))
            .map(|(_, r, _)| r.path().rsplit('/').next().unwrap_or("").to_string())
            .collect()
    }

    fn blob_file(&self, digest: &str) -> PathBuf {
        self.cache
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Forget the merged models, so the next run reads the layer indexes again.
    fn forget_models(&self) {
        let _ = std::fs::remove_dir_all(self.cache.join("trees"));
    }

    /// The merged model files.
    fn model_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![self.cache.join("trees")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    fn index_file(&self, diff_id: &str) -> PathBuf {
        self.cache
            .join(format!(
                "index/v{}/sha256",
                layerscope::layer::INDEX_FORMAT_VERSION
            ))
            .join(diff_id.trim_start_matches("sha256:"))
    }
}

fn flip_byte(path: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(path).expect("cache entry exists");
    let at = ((bytes.len() as f64 * at_fraction) as usize).min(bytes.len() - 1);
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).expect("damage the entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_run_downloads_no_blob_and_gives_the_same_model() {
    let app = image(1, &[200_000, 50_000, 10_000]);
    let f = Fixture::new(&[("app", &app)]).await;

    let cold = f.json("app").await;
    let mut fetched = f.blob_gets();
    fetched.sort();
    let mut expected: Vec<String> = app
        .layers
        .iter()
        .map(|l| l.blob.digest.clone())
        .chain([app.config.digest.clone()])
        .collect();
    expected.sort();
    assert_eq!(fetched, expected, "the cold run fetches every blob once");
    for layer in &app.layers {
        assert_eq!(
            std::fs::read(f.blob_file(&layer.blob.digest)).unwrap(),
            layer.blob.bytes
        );
        assert!(f.index_file(&layer.diff_id).is_file());
    }

    let warm = f.json("app").await;
    assert_eq!(
        f.blob_gets().len(),
        expected.len(),
        "the warm run downloads no blob"
    );
    assert_eq!(warm, cold);

    // `--no-cache` goes to the registry again and writes nothing.
    let out = f
        .run(&["--no-cache", "--json", "-", &f.reference("app")])
        .await;
    assert_eq!(json_ok(&out), cold);
    assert_eq!(f.blob_gets().len(), 2 * expected.len());

    // The explorer's file viewer re-reads a layer through Source::open_layer: from the cache.
    let reference = f.reference("app").parse().unwrap();
    let client = RegistryClient::new(RegistryOptions::default()).unwrap();
    let cache = Arc::new(Cache::open(&f.cache, layerscope::cache::DEFAULT_LIMIT).unwrap());
    let source = Source::Registry(RegistrySource::new(client, reference, None)).with_cache(cache);
    let info = source.resolve().await.unwrap();
    let before = f.blob_gets().len();
    let mut stream = source.open_layer(&info.layers[0]).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, app.layers[0].blob.bytes);
    assert_eq!(f.blob_gets().len(), before, "served from the cache");
    // And the pipeline through the library, as the explorer calls it, reads no layer either.
    let (events, mut drain) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while drain.recv().await.is_some() {} });
    let tree = Arc::new(RwLock::new(layerscope::tree::FileTree::new()));
    let loaded = layerscope::pipeline::load(Arc::new(source), tree, events, |_| {})
        .await
        .unwrap();
    assert_eq!(loaded.progress.layers_done(), 3);
    assert_eq!(f.blob_gets().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_entries_are_detected_and_fetched_again() {
    let app = image(2, &[100_000, 30_000]);
    let f = Fixture::new(&[("app", &app)]).await;
    let cold = f.json("app").await;
    let cold_gets = f.blob_gets().len();

    // A damaged merged model: removed, the model merged again from the layer indexes and
    // stored anew; nothing downloaded.
    let models = f.model_files();
    assert_eq!(models.len(), 1, "one model per image");
    let good_model = std::fs::read(&models[0]).unwrap();
    flip_byte(&models[0], 0.5);
    assert_eq!(f.json("app").await, cold);
    assert_eq!(f.blob_gets().len(), cold_gets);
    assert_eq!(
        std::fs::read(&models[0]).unwrap(),
        good_model,
        "model rewritten"
    );

    // A damaged index alone (and no model): rebuilt from the cached blob, nothing downloaded.
    f.forget_models();
    let index0 = f.index_file(&app.layers[0].diff_id);
    let good_index = std::fs::read(&index0).unwrap();
    flip_byte(&index0, 0.5);
    assert_eq!(f.json("app").await, cold);
    assert_eq!(f.blob_gets().len(), cold_gets);
    assert_eq!(
        std::fs::read(&index0).unwrap(),
        good_index,
        "index rewritten"
    );

    // A damaged index and blob: the blob is downloaded again, once.
    f.forget_models();
    flip_byte(&index0, 0.9);
    flip_byte(&f.blob_file(&app.layers[0].blob.digest), 0.3);
    assert_eq!(f.json("app").await, cold);
    let gets = f.blob_gets();
    assert_eq!(gets.len(), cold_gets + 1);
    assert_eq!(gets.last().unwrap(), &app.layers[0].blob.digest);
    assert_eq!(
        std::fs::read(f.blob_file(&app.layers[0].blob.digest)).unwrap(),
        app.layers[0].blob.bytes
    );

    // A truncated index and a config cut short: the config is downloaded again.
    f.forget_models();
    let index1 = f.index_file(&app.layers[1].diff_id);
    let len = std::fs::metadata(&index1).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&index1)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let config = f.blob_file(&app.config.digest);
    std::fs::write(&config, &app.config.bytes[..app.config.bytes.len() / 2]).unwrap();
    assert_eq!(f.json("app").await, cold);
    let gets = f.blob_gets();
    assert_eq!(gets.len(), cold_gets + 2);
    assert_eq!(gets.last().unwrap(), &app.config.digest);

    // Everything is whole again: the next run downloads nothing.
    assert_eq!(f.json("app").await, cold);
    assert_eq!(f.blob_gets().len(), cold_gets + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_share_one_cache() {
    let app = image(3, &[3_000_000, 2_000_000, 1_000_000]);
    let f = Fixture::new(&[("app", &app)]).await;
    let reference = f.reference("app");
    let args = ["--json", "-", reference.as_str()];
    let (a, b) = tokio::join!(f.run(&args), f.run(&args));
    let (a, b) = (json_ok(&a), json_ok(&b));
    assert_eq!(a, b);
    let gets = f.blob_gets().len();
    assert!(gets >= 4, "both ran cold: {gets} blob GETs");
    let leftovers: Vec<_> = std::fs::read_dir(f.cache.join("tmp")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
    for layer in &app.layers {
        assert_eq!(
            std::fs::read(f.blob_file(&layer.blob.digest)).unwrap(),
            layer.blob.bytes
        );
    }
    assert_eq!(f.json("app").await, a);
    assert_eq!(
        f.blob_gets().len(),
        gets,
        "the shared cache serves the next run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_limit_evicts_the_least_recently_used() {
    // Incompressible layers: each image's blobs take about 400 kB.
    let one = image(4, &[400_000]);
    let two = image(5, &[400_000]);
    let f = Fixture::new(&[("one", &one), ("two", &two)]).await;
    let limit = "600kB";

    json_ok(
        &f.run(&["--cache-size", limit, "--json", "-", &f.reference("one")])
            .await,
    );
    assert!(f.blob_file(&one.layers[0].blob.digest).is_file());
    let out = layerscope(
        f.home.path(),
        &f.cache,
        &["--json", "-", &f.reference("two")],
        &[("LAYERSCOPE_CACHE_SIZE", limit)],
    )
    .await;
    json_ok(&out);
    // Both would not fit: the least recently used entries went, oldest first (the first
    // image's config, then its blob) until the total fit; the rest stayed.
    assert!(!f.blob_file(&one.config.digest).exists());
    assert!(!f.blob_file(&one.layers[0].blob.digest).exists());
    assert!(
        f.index_file(&one.layers[0].diff_id).is_file(),
        "newer than its blob"
    );
    assert!(f.blob_file(&two.layers[0].blob.digest).is_file());
    assert!(f.blob_file(&two.config.digest).is_file());
    assert!(f.index_file(&two.layers[0].diff_id).is_file());
    let usage = Cache::at(&f.cache, 0).usage();
    assert!(usage.total_bytes() <= 600_000, "{usage:?}");

    // Reopening the first image downloads what went (the config) and nothing that stayed.
    let before = f.blob_gets().len();
    json_ok(
        &f.run(&["--cache-size", limit, "--json", "-", &f.reference("one")])
            .await,
    );
    assert_eq!(
        f.blob_gets()[before..],
        *std::slice::from_ref(&one.config.digest)
    );

    let out = f.run(&["--cache-size", "lots", &f.reference("one")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid cache size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_command_shows_and_clears() {
    let app = image(6, &[20_000, 5_000]);
    let f = Fixture::new(&[("app", &app)]).await;

    let out = f.run(&["cache"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("blobs: 0"), "{}", stdout(&out));

    f.json("app").await;
    let out = f.run(&["cache"]).await;
    let text = stdout(&out);
    assert!(
        text.contains(&format!("location: {}", f.cache.display())),
        "{text}"
    );
    assert!(
        text.contains("blobs: 3 ("),
        "two layers and the config: {text}"
    );
    assert!(text.contains("layer indexes: 2 ("), "{text}");
    assert!(text.contains("merged models: 1 ("), "{text}");
    assert!(text.contains("of 5.0 GiB allowed"), "{text}");

    let out = f.run(&["cache", "clear"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("3 blobs and 2 layer indexes"),
        "{}",
        stdout(&out)
    );
    let out = f.run(&["cache"]).await;
    assert!(stdout(&out).contains("blobs: 0 (0 B)"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("layer indexes: 0"),
        "{}",
        stdout(&out)
    );

    // --no-cache writes nothing.
    json_ok(
        &f.run(&["--no-cache", "--json", "-", &f.reference("app")])
            .await,
    );
    assert_eq!(Cache::at(&f.cache, 0).usage().blobs, 0);
}
