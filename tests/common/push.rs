//! Putting test images into a real registry: a small pusher (monolithic blob uploads, manifest
//! PUTs, Basic or bearer auth of its own so the client under test never pushes for itself), and
//! builders for config JSON, Docker v2 and OCI manifests, and an OCI index with platforms and a
//! BuildKit-style attestation entry.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

/// Media types the builders write.
pub mod mt {
    /// Docker v2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// OCI manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// In-toto attestation layer.
    pub const IN_TOTO: &str = "application/vnd.in-toto+json";
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        layerscope::digest::to_hex(&sha2::Sha256::digest(bytes))
    )
}

/// `sha512:HEX` of `bytes`.
pub fn sha512(bytes: &[u8]) -> String {
    format!(
        "sha512:{}",
        layerscope::digest::to_hex(&sha2::Sha512::digest(bytes))
    )
}

/// Bytes with their digest and media type.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Content.
    pub bytes: Vec<u8>,
    /// `sha256:…` of the content.
    pub digest: String,
    /// Media type for descriptors.
    pub media_type: String,
}

impl Blob {
    /// A blob of `bytes`.
    pub fn new(bytes: Vec<u8>, media_type: &str) -> Blob {
        Blob {
            digest: sha256(&bytes),
            bytes,
            media_type: media_type.to_string(),
        }
    }

    /// Its descriptor JSON.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A layer: its blob (compressed) and the diff_id of its uncompressed tar.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob as pushed.
    pub blob: Blob,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
}

/// One history step for a config.
#[derive(Debug, Clone)]
pub struct Step {
    /// `created_by`.
    pub created_by: String,
    /// Whether it made no layer.
    pub empty_layer: bool,
}

impl Step {
    /// A step that made a layer.
    pub fn layer(created_by: &str) -> Step {
        Step {
            created_by: created_by.to_string(),
            empty_layer: false,
        }
    }

    /// A metadata-only step.
    pub fn empty(created_by: &str) -> Step {
        Step {
            created_by: created_by.to_string(),
            empty_layer: true,
        }
    }
}

/// Which manifest format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Docker image manifest v2 schema 2.
    DockerV2,
    /// OCI image manifest with `mediaType`.
    Oci,
    /// OCI image manifest without `mediaType` (allowed by the spec).
    OciWithoutMediaType,
}

/// A complete single-platform image, ready to push.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The config blob.
    pub config: Blob,
    /// Layers, base first.
    pub layers: Vec<Layer>,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type (Content-Type for the PUT).
    pub manifest_media_type: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
}

/// A config JSON with `diff_ids` and `history`.
pub fn config_json(
    os: &str,
    arch: &str,
    variant: Option<&str>,
    diff_ids: &[String],
    history: &[Step],
) -> Vec<u8> {
    let history: Vec<Value> = history
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut entry = json!({
                "created": format!("2024-01-0{}T00:00:00Z", (i % 9) + 1),
                "created_by": step.created_by,
            });
            if step.empty_layer {
                entry["empty_layer"] = json!(true);
            }
            entry
        })
        .collect();
    let mut config = json!({
        "architecture": arch,
        "os": os,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
    }
    serde_json::to_vec(&config).unwrap()
}

/// Build an image of `layers` (compressed blob, uncompressed tar) in `flavor`.
pub fn build_image(
    flavor: Flavor,
    platform: (&str, &str, Option<&str>),
    layers: Vec<(Blob, Vec<u8>)>,
    history: &[Step],
) -> TestImage {
    let layers: Vec<Layer> = layers
        .into_iter()
        .map(|(blob, tar)| Layer {
            diff_id: sha256(&tar),
            blob,
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let (os, arch, variant) = platform;
    let config_type = if flavor == Flavor::DockerV2 {
        mt::DOCKER_CONFIG
    } else {
        mt::OCI_CONFIG
    };
    let config = Blob::new(
        config_json(os, arch, variant, &diff_ids, history),
        config_type,
    );
    let layer_descriptors: Vec<Value> = layers.iter().map(|l| l.blob.descriptor()).collect();
    let (manifest, media_type) = match flavor {
        Flavor::DockerV2 => (
            json!({"schemaVersion": 2, "mediaType": mt::DOCKER_MANIFEST,
                   "config": config.descriptor(), "layers": layer_descriptors}),
            mt::DOCKER_MANIFEST,
        ),
        Flavor::Oci => (
            json!({"schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
                   "config": config.descriptor(), "layers": layer_descriptors}),
            mt::OCI_MANIFEST,
        ),
        Flavor::OciWithoutMediaType => (
            json!({"schemaVersion": 2, "config": config.descriptor(), "layers": layer_descriptors}),
            mt::OCI_MANIFEST,
        ),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    TestImage {
        manifest_digest: sha256(&manifest),
        config,
        layers,
        manifest,
        manifest_media_type: media_type.to_string(),
    }
}

/// A BuildKit-style attestation manifest for `subject` (platform `unknown/unknown` in an index).
pub fn attestation_for(subject: &TestImage) -> TestImage {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "test", "digest": {"sha256": subject.manifest_digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://spdx.dev/Document",
        "predicate": {}
    }))
    .unwrap();
    let layer = Blob::new(statement, mt::IN_TOTO);
    let config = Blob::new(
        serde_json::to_vec(&json!({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap(),
        mt::OCI_CONFIG,
    );
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": config.descriptor(), "layers": [layer.descriptor()],
    }))
    .unwrap();
    TestImage {
        manifest_digest: sha256(&manifest),
        config,
        layers: vec![Layer {
            diff_id: layer.digest.clone(),
            blob: layer,
        }],
        manifest,
        manifest_media_type: mt::OCI_MANIFEST.to_string(),
    }
}

/// An OCI index of `entries` (image, os, arch, variant), plus attestation entries pointing at
/// their subjects, as BuildKit writes them.
pub fn index_json(
    entries: &[(&TestImage, &str, &str, Option<&str>)],
    attestations: &[(&TestImage, &TestImage)],
) -> Vec<u8> {
    list_json(mt::OCI_INDEX, entries, attestations)
}

/// An index or Docker manifest list (`media_type`) of `entries`, plus attestation entries.
pub fn list_json(
    media_type: &str,
    entries: &[(&TestImage, &str, &str, Option<&str>)],
    attestations: &[(&TestImage, &TestImage)],
) -> Vec<u8> {
    let mut manifests: Vec<Value> = entries
        .iter()
        .map(|(image, os, arch, variant)| {
            let mut platform = json!({"os": os, "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({"mediaType": image.manifest_media_type, "digest": image.manifest_digest,
                   "size": image.manifest.len(), "platform": platform})
        })
        .collect();
    for (attestation, subject) in attestations {
        manifests.push(json!({
            "mediaType": attestation.manifest_media_type,
            "digest": attestation.manifest_digest,
            "size": attestation.manifest.len(),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": subject.manifest_digest,
            }
        }));
    }
    serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}),
    )
    .unwrap()
}

/// Pushes blobs and manifests with plain HTTP requests, authenticating on its own.
pub struct Pusher {
    client: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    tokens: Mutex<HashMap<String, String>>,
}

impl Pusher {
    /// A pusher for the registry at `base` (`http://127.0.0.1:PORT`), anonymous.
    pub fn new(base: &str) -> Pusher {
        Pusher {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
            base: base.trim_end_matches('/').to_string(),
            credentials: None,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A pusher that presents a TLS client certificate (`pem`: certificate and key).
    pub fn with_client_certificate(base: &str, pem: &[u8]) -> Pusher {
        Pusher {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(true)
                .identity(reqwest::Identity::from_pem(pem).unwrap())
                .build()
                .unwrap(),
            ..Pusher::new(base)
        }
    }

    /// A pusher that answers Basic and Bearer challenges with `user`/`password`.
    pub fn with_credentials(base: &str, user: &str, password: &str) -> Pusher {
        Pusher {
            credentials: Some((user.to_string(), password.to_string())),
            ..Pusher::new(base)
        }
    }

    /// Send a request built by `build`, answering a 401 challenge once.
    async fn send(
        &self,
        scope: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let cached = self.tokens.lock().unwrap().get(scope).cloned();
        let mut request = build(&self.client);
        if let Some(token) = &cached {
            request = request.bearer_auth(token);
        } else if let Some((user, pass)) = &self.credentials {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request.send().await.expect("push request");
        if response.status() != 401 {
            return response;
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (user, pass) = self
            .credentials
            .clone()
            .expect("the registry wants credentials but the pusher has none");
        if challenge.starts_with("Bearer") {
            let param = |name: &str| {
                let key = format!("{name}=\"");
                let start = challenge.find(&key)? + key.len();
                let end = challenge[start..].find('"')? + start;
                Some(challenge[start..end].to_string())
            };
            let realm = param("realm").expect("realm in challenge");
            let service = param("service").unwrap_or_default();
            let mut url = reqwest::Url::parse(&realm).expect("realm URL");
            url.query_pairs_mut()
                .append_pair("service", &service)
                .append_pair("scope", scope);
            let body = self
                .client
                .get(url)
                .basic_auth(&user, Some(&pass))
                .send()
                .await
                .expect("token request")
                .bytes()
                .await
                .expect("token answer");
            let answer: Value = serde_json::from_slice(&body).expect("token JSON");
            let token = answer["token"]
                .as_str()
                .or(answer["access_token"].as_str())
                .expect("a token")
                .to_string();
            self.tokens
                .lock()
                .unwrap()
                .insert(scope.to_string(), token.clone());
            build(&self.client)
                .bearer_auth(token)
                .send()
                .await
                .expect("push request")
        } else {
            build(&self.client)
                .basic_auth(user, Some(pass))
                .send()
                .await
                .expect("push request")
        }
    }

    /// Upload `bytes` to `repository` as one blob under `digest` (monolithic upload).
    pub async fn push_blob_as(&self, repository: &str, bytes: &[u8], digest: &str) {
        let scope = format!("repository:{repository}:pull,push");
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self.send(&scope, |c| c.post(&start)).await;
        assert_eq!(response.status(), 202, "starting an upload to {repository}");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_string();
        let location = reqwest::Url::parse(&format!("{}/", self.base))
            .unwrap()
            .join(&location)
            .unwrap();
        let mut put = location.clone();
        put.query_pairs_mut().append_pair("digest", digest);
        let body = bytes.to_vec();
        let response = self
            .send(&scope, |c| {
                c.put(put.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(body.clone())
            })
            .await;
        let status = response.status();
        assert_eq!(
            status,
            201,
            "finishing the upload of {digest}: {:?}",
            response.text().await
        );
    }

    /// Upload `bytes` as a sha256 blob; returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        self.push_blob_as(repository, bytes, &digest).await;
        digest
    }

    /// PUT a manifest under `reference` (tag or digest) with `media_type`; returns the digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> String {
        let scope = format!("repository:{repository}:pull,push");
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let body = bytes.to_vec();
        let response = self
            .send(&scope, |c| {
                c.put(&url)
                    .header("Content-Type", media_type)
                    .body(body.clone())
            })
            .await;
        let status = response.status();
        assert_eq!(
            status,
            201,
            "pushing manifest {repository}:{reference}: {:?}",
            response.text().await
        );
        sha256(bytes)
    }

    /// Push an image's blobs and its manifest under `tag` (or by digest when `tag` is `None`).
    pub async fn push_image(&self, repository: &str, tag: Option<&str>, image: &TestImage) {
        for layer in &image.layers {
            self.push_blob(repository, &layer.blob.bytes).await;
        }
        self.push_blob(repository, &image.config.bytes).await;
        let reference = tag
            .map(str::to_string)
            .unwrap_or_else(|| image.manifest_digest.clone());
        self.push_manifest(
            repository,
            &reference,
            &image.manifest,
            &image.manifest_media_type,
        )
        .await;
    }
}

/// `Basic …` value for `user:password`, for tests that speak HTTP themselves.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
