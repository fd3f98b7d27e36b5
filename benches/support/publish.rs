//! Push a generated scenario to a registry as an image (Docker v2 manifest, one `RUN` step per
//! layer), for the benchmarks that pull through a real registry. Needs the test harness's
//! `push` module at the crate root.

use serde_json::json;

use crate::push::{self, config_json, Pusher, Step};
use crate::synthetic::GeneratedLayer;

/// Push `layers` with a config and a manifest as `repo:latest` to the registry at `base_url`;
/// returns the layer digests.
pub async fn push_generated(base_url: &str, repo: &str, layers: &[GeneratedLayer]) -> Vec<String> {
    let pusher = Pusher::new(base_url);
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for layer in layers {
        let bytes = std::fs::read(&layer.path).expect("read layer");
        let digest = pusher.push_blob(repo, &bytes).await;
        descriptors.push(json!({
            "mediaType": push::mt::DOCKER_LAYER,
            "digest": digest,
            "size": bytes.len(),
        }));
        digests.push(digest);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let history: Vec<Step> = (0..layers.len())
        .map(|i| Step::layer(&format!("RUN build step {i}")))
        .collect();
    let config = config_json("linux", "amd64", None, &diff_ids, &history);
    let config_digest = pusher.push_blob(repo, &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": push::mt::DOCKER_MANIFEST,
        "config": {"mediaType": push::mt::DOCKER_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .expect("manifest JSON");
    pusher
        .push_manifest(repo, "latest", &manifest, push::mt::DOCKER_MANIFEST)
        .await;
    digests
}
