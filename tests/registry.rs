//! The registry client against the real CNCF registry (and real token, file and fault servers in
//! front of it): manifests of every kind, platforms, auth, credentials, redirects, TLS, faults.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use layerscope::digest::{Digest, VerifyError};
use layerscope::image::{ParsedManifest, Platform};
use layerscope::reference::Reference;
use layerscope::registry::stall::StallLimits;
use layerscope::registry::{RegistryClient, RegistryError, RegistryOptions};

use common::push::{
    attestation_for, build_image, index_json, list_json, mt, sha256, sha512, Blob, Flavor, Pusher,
    Step, TestImage,
};
use common::registry::{
    isolated_options, FaultProxy, IssuerConfig, Registry, RegistryAuth, RegistryConfig, Reply,
    Request, TempDir, TokenField, TokenIssuer,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A tar of regular files.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *data)
            .expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip finish")
}

fn zstd_of(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).expect("zstd")
}

/// A gzip layer and its tar.
fn gzip_layer(files: &[(&str, &[u8])], media_type: &str) -> (Blob, Vec<u8>) {
    let tar = tar_of(files);
    (Blob::new(gzip(&tar), media_type), tar)
}

fn history() -> Vec<Step> {
    vec![
        Step::layer("ADD rootfs.tar /"),
        Step::empty("ENV A=1"),
        Step::layer("RUN make"),
        Step::empty("CMD [\"/bin/sh\"]"),
    ]
}

/// A two-layer image; `seed` makes its content unique. OCI flavours use one zstd layer.
fn sample_image(flavor: Flavor, platform: (&str, &str, Option<&str>), seed: &str) -> TestImage {
    let base = format!("base {seed}");
    let app = format!("app {seed}").repeat(100);
    let first = match flavor {
        Flavor::DockerV2 => gzip_layer(&[("etc/base", base.as_bytes())], mt::DOCKER_LAYER),
        _ => gzip_layer(&[("etc/base", base.as_bytes())], mt::OCI_LAYER_GZIP),
    };
    let second = match flavor {
        Flavor::DockerV2 => gzip_layer(&[("srv/app", app.as_bytes())], mt::DOCKER_LAYER),
        _ => {
            let tar = tar_of(&[("srv/app", app.as_bytes())]);
            (Blob::new(zstd_of(&tar), mt::OCI_LAYER_ZSTD), tar)
        }
    };
    build_image(flavor, platform, vec![first, second], &history())
}

const AMD64: (&str, &str, Option<&str>) = ("linux", "amd64", None);
const ARM64: (&str, &str, Option<&str>) = ("linux", "arm64", Some("v8"));

fn client(options: RegistryOptions) -> RegistryClient {
    RegistryClient::new(options).expect("client")
}

fn parse(reference: &str) -> Reference {
    reference.parse().expect("valid reference")
}

async fn collect(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Vec<u8>, RegistryError> {
    let mut stream = client.blob_stream(reference, digest, size).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn digest(s: &str) -> Digest {
    s.parse().expect("digest")
}

/// Push `image` to `repository:tag` of a fresh unauthenticated registry.
async fn registry_with(repository: &str, tag: &str, image: &TestImage) -> Registry {
    let registry = Registry::start().await;
    Pusher::new(&registry.url())
        .push_image(repository, Some(tag), image)
        .await;
    registry
}

fn assert_image_matches(info: &layerscope::image::ImageInfo, image: &TestImage) {
    assert_eq!(info.manifest_digest.to_string(), image.manifest_digest);
    assert_eq!(info.manifest_bytes, image.manifest);
    assert_eq!(info.config_bytes, image.config.bytes);
    assert_eq!(info.layers.len(), image.layers.len());
    for (got, want) in info.layers.iter().zip(&image.layers) {
        assert_eq!(got.digest.to_string(), want.blob.digest);
        assert_eq!(got.diff_id.to_string(), want.diff_id);
        assert_eq!(got.media_type, want.blob.media_type);
        assert_eq!(got.compressed_size, want.blob.bytes.len() as u64);
    }
    let layer_of: Vec<Option<usize>> = info.history.iter().map(|s| s.layer_index).collect();
    assert_eq!(layer_of, vec![Some(0), None, Some(1), None]);
    assert_eq!(
        info.history[2].entry.created_by.as_deref(),
        Some("RUN make")
    );
    assert_eq!(info.config.config.working_dir.as_deref(), Some("/srv"));
}

// ---------------------------------------------------------------------------------------------
// Manifests, platforms, blobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_a_docker_v2_image() {
    let image = sample_image(Flavor::DockerV2, AMD64, "docker-v2");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&registry.reference("app", "v1")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert_image_matches(&info, &image);
    assert_eq!(info.media_type, mt::DOCKER_MANIFEST);
    assert_eq!(info.digest, info.manifest_digest);
    assert_eq!(
        info.platform.map(|p| p.to_string()).as_deref(),
        Some("linux/amd64")
    );
    assert_eq!(info.reference, format!("{}/app:v1", registry.host));

    // An explicit platform must match a single-platform image.
    let c = client(isolated_options(dir.path()));
    let reference = parse(&registry.reference("app", "v1"));
    let amd64: Platform = "linux/amd64".parse().expect("platform");
    c.resolve(&reference, Some(&amd64))
        .await
        .expect("same platform");
    let arm64: Platform = "linux/arm64".parse().expect("platform");
    let error = c
        .resolve(&reference, Some(&arm64))
        .await
        .expect_err("other platform");
    assert!(
        matches!(error, RegistryError::NoMatchingPlatform { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("available: linux/amd64"),
        "{error}"
    );

    // `localhost` by name is loopback too: HTTPS fails to connect, plain HTTP is used.
    let port = registry.host.rsplit(':').next().expect("port");
    let by_name = parse(&format!("localhost:{port}/app:v1"));
    assert!(by_name.is_loopback());
    let info = client(isolated_options(dir.path()))
        .resolve(&by_name, None)
        .await
        .expect("resolve via localhost");
    assert_image_matches(&info, &image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_an_oci_image_with_gzip_and_zstd_layers() {
    let image = sample_image(Flavor::Oci, AMD64, "oci");
    let registry = registry_with("app", "oci", &image).await;
    let dir = TempDir::new("t");
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&registry.reference("app", "oci")), None)
        .await
        .expect("resolve");
    assert_image_matches(&info, &image);
    assert_eq!(info.media_type, mt::OCI_MANIFEST);
    assert_eq!(info.layers[1].media_type, mt::OCI_LAYER_ZSTD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_an_oci_manifest_without_media_type() {
    let image = sample_image(Flavor::OciWithoutMediaType, AMD64, "oci-bare");
    assert!(!String::from_utf8_lossy(&image.manifest)
        .contains("mediaType\": \"application/vnd.oci.image.manifest"));
    let registry = registry_with("app", "bare", &image).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let reference = parse(&registry.reference("app", "bare"));
    let fetched = c.fetch_manifest(&reference).await.expect("manifest");
    let ParsedManifest::Image(manifest) = &fetched.parsed else {
        panic!("an image manifest expected, got {:?}", fetched.parsed)
    };
    assert_eq!(manifest.media_type, None);
    assert_eq!(fetched.bytes, image.manifest);
    let info = c.resolve(&reference, None).await.expect("resolve");
    assert_image_matches(&info, &image);
    assert_eq!(info.media_type, mt::OCI_MANIFEST);
}

/// An index with linux/amd64, linux/arm64/v8 and an attestation for the amd64 image.
async fn registry_with_index() -> (Registry, TestImage, TestImage, String) {
    let amd = sample_image(Flavor::Oci, AMD64, "index-amd64");
    let arm = sample_image(Flavor::Oci, ARM64, "index-arm64");
    let attestation = attestation_for(&amd);
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    for image in [&amd, &arm, &attestation] {
        pusher.push_image("multi", None, image).await;
    }
    let index = index_json(
        &[
            (&amd, "linux", "amd64", None),
            (&arm, "linux", "arm64", Some("v8")),
        ],
        &[(&attestation, &amd)],
    );
    let index_digest = pusher
        .push_manifest("multi", "latest", &index, mt::OCI_INDEX)
        .await;
    (registry, amd, arm, index_digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_default_platform_is_this_machine() {
    let (registry, amd, arm, index_digest) = registry_with_index().await;
    let dir = TempDir::new("t");
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&registry.reference("multi", "latest")), None)
        .await
        .expect("resolve");
    let host = Platform::host_default();
    let expected = match host.architecture.as_str() {
        "amd64" => &amd,
        "arm64" => &arm,
        other => panic!("this test expects an amd64 or arm64 machine, not {other}"),
    };
    assert_image_matches(&info, expected);
    assert_eq!(
        info.digest.to_string(),
        index_digest,
        "the index digest is the image digest"
    );
    assert_eq!(
        info.platform.expect("platform").architecture,
        host.architecture
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_platform_flag_picks_the_other_entry() {
    let (registry, _amd, arm, _) = registry_with_index().await;
    let dir = TempDir::new("t");
    let wanted: Platform = "linux/arm64".parse().expect("platform");
    let info = client(isolated_options(dir.path()))
        .resolve(
            &parse(&registry.reference("multi", "latest")),
            Some(&wanted),
        )
        .await
        .expect("resolve");
    assert_image_matches(&info, &arm);
    assert_eq!(
        info.platform.map(|p| p.to_string()).as_deref(),
        Some("linux/arm64/v8")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_without_a_match_lists_the_platforms() {
    let (registry, ..) = registry_with_index().await;
    let dir = TempDir::new("t");
    let wanted: Platform = "linux/s390x".parse().expect("platform");
    let error = client(isolated_options(dir.path()))
        .resolve(
            &parse(&registry.reference("multi", "latest")),
            Some(&wanted),
        )
        .await
        .expect_err("no s390x image");
    let RegistryError::NoMatchingPlatform { source, .. } = &error else {
        panic!("NoMatchingPlatform expected, got {error:?}")
    };
    assert_eq!(
        source.available.len(),
        2,
        "the attestation is not a platform"
    );
    let text = error.to_string();
    assert!(
        text.contains("linux/s390x")
            && text.contains("linux/amd64")
            && text.contains("linux/arm64"),
        "{text}"
    );
    assert!(!text.contains("unknown"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_manifest_list_selects_by_platform() {
    let amd = sample_image(Flavor::DockerV2, AMD64, "list-amd64");
    let arm = sample_image(Flavor::DockerV2, ("linux", "arm", Some("v7")), "list-armv7");
    let registry = Registry::start().await;
    let pusher = Pusher::new(&registry.url());
    for image in [&amd, &arm] {
        pusher.push_image("listed", None, image).await;
    }
    let list = list_json(
        mt::DOCKER_LIST,
        &[
            (&amd, "linux", "amd64", None),
            (&arm, "linux", "arm", Some("v7")),
        ],
        &[],
    );
    let list_digest = pusher
        .push_manifest("listed", "v1", &list, mt::DOCKER_LIST)
        .await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let reference = parse(&registry.reference("listed", "v1"));
    let fetched = c.fetch_manifest(&reference).await.expect("list");
    assert!(matches!(fetched.parsed, ParsedManifest::Index(_)));
    assert_eq!(fetched.parsed.media_type(), mt::DOCKER_LIST);
    assert_eq!(fetched.digest.to_string(), list_digest);
    let wanted: Platform = "linux/arm/v7".parse().expect("platform");
    let info = c.resolve(&reference, Some(&wanted)).await.expect("arm/v7");
    assert_image_matches(&info, &arm);
    assert_eq!(info.media_type, mt::DOCKER_MANIFEST);
    let wanted: Platform = "linux/arm/v6".parse().expect("platform");
    let error = c
        .resolve(&reference, Some(&wanted))
        .await
        .expect_err("no v6");
    assert!(error.to_string().contains("linux/arm/v7"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_repository_and_pull_by_digest() {
    let image = sample_image(Flavor::Oci, AMD64, "nested");
    let registry = registry_with("team/project/app", "dev", &image).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let info = c
        .resolve(&parse(&registry.reference("team/project/app", "dev")), None)
        .await
        .expect("resolve nested");
    assert_image_matches(&info, &image);

    let by_digest = parse(&registry.reference("team/project/app", &image.manifest_digest));
    assert_eq!(by_digest.tag, None);
    let info = c
        .resolve(&by_digest, None)
        .await
        .expect("resolve by digest");
    assert_image_matches(&info, &image);

    let fetched = c
        .fetch_manifest_by(
            &parse(&registry.reference("team/project/app", "x")),
            &image.manifest_digest,
        )
        .await
        .expect("fetch by digest string");
    assert_eq!(fetched.digest.to_string(), image.manifest_digest);
    assert_eq!(fetched.content_type.as_deref(), Some(mt::OCI_MANIFEST));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_streams_verify_sha256_and_sha512() {
    let image = sample_image(Flavor::DockerV2, AMD64, "streams");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let reference = parse(&registry.reference("app", "v1"));
    for layer in &image.layers {
        let bytes = collect(
            &c,
            &reference,
            &digest(&layer.blob.digest),
            Some(layer.blob.bytes.len() as u64),
        )
        .await
        .expect("stream");
        assert_eq!(bytes, layer.blob.bytes);
    }
    // The registry stores blobs under sha256 but serves them by any digest it knows; pushing
    // under a sha512 digest registers that one too.
    let payload = b"sha512 addressed content".repeat(1000);
    Pusher::new(&registry.url())
        .push_blob_as("app", &payload, &sha512(&payload))
        .await;
    let d512 = digest(&sha512(&payload));
    let bytes = collect(&c, &reference, &d512, Some(payload.len() as u64))
        .await
        .expect("sha512 stream");
    assert_eq!(bytes, payload);
    // fetch_blob verifies too.
    let config = c
        .fetch_blob(
            &reference,
            &layerscope::image::Descriptor {
                media_type: mt::DOCKER_CONFIG.to_string(),
                digest: digest(&image.config.digest),
                size: image.config.bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
                urls: vec![],
            },
        )
        .await
        .expect("config");
    assert_eq!(config, image.config.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_three_blob_downloads_per_registry() {
    let image = sample_image(Flavor::DockerV2, AMD64, "slots");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let reference = parse(&registry.reference("app", "v1"));
    let d = digest(&image.layers[0].blob.digest);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            c.blob_stream(&reference, &d, None)
                .await
                .expect("a free slot"),
        );
    }
    let fourth = tokio::time::timeout(
        Duration::from_millis(500),
        c.blob_stream(&reference, &d, None),
    )
    .await;
    assert!(fourth.is_err(), "a fourth download must wait for a slot");
    drop(open.pop());
    let fourth = tokio::time::timeout(Duration::from_secs(10), c.blob_stream(&reference, &d, None))
        .await
        .expect("a slot was freed")
        .expect("stream");
    drop(fourth);
}

// ---------------------------------------------------------------------------------------------
// Authentication

const USER: (&str, &str) = ("alice", "wonderland");

async fn basic_registry(image: &TestImage) -> Registry {
    let registry = Registry::start_with(RegistryConfig {
        auth: RegistryAuth::Htpasswd(vec![(USER.0.into(), USER.1.into())]),
        ..RegistryConfig::default()
    })
    .await;
    Pusher::with_credentials(&registry.url(), USER.0, USER.1)
        .push_image("secret/app", Some("v1"), image)
        .await;
    registry
}

fn with_creds(dir: &Path, user: &str, password: &str) -> RegistryOptions {
    RegistryOptions {
        credentials: Some((user.to_string(), password.to_string())),
        ..isolated_options(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth_accepts_the_right_password_and_names_a_wrong_one() {
    let image = sample_image(Flavor::DockerV2, AMD64, "basic");
    let registry = basic_registry(&image).await;
    let reference = parse(&registry.reference("secret/app", "v1"));
    let dir = TempDir::new("t");

    let info = client(with_creds(dir.path(), USER.0, USER.1))
        .resolve(&reference, None)
        .await
        .expect("right password");
    assert_image_matches(&info, &image);

    let error = client(with_creds(dir.path(), USER.0, "wrong"))
        .resolve(&reference, None)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(&error, RegistryError::WrongCredentials { username, .. } if username == "alice"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("wrong username or password"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("wrong\""),
        "never print the password: {error}"
    );

    let error = client(isolated_options(dir.path()))
        .resolve(&reference, None)
        .await
        .expect_err("no credentials");
    assert!(
        matches!(error, RegistryError::AuthenticationRequired { .. }),
        "{error:?}"
    );
}

async fn token_registry(config: IssuerConfig, image: &TestImage) -> (Registry, TokenIssuer) {
    let issuer = TokenIssuer::start(config).await;
    let registry = Registry::start_with(RegistryConfig {
        auth: RegistryAuth::Token(issuer.info()),
        ..RegistryConfig::default()
    })
    .await;
    Pusher::with_credentials(&registry.url(), USER.0, USER.1)
        .push_image("secret/app", Some("v1"), image)
        .await;
    (registry, issuer)
}

/// Token requests the client made (the pusher's carry push scopes).
fn pulls(issuer: &TokenIssuer) -> Vec<common::registry::TokenRequest> {
    issuer
        .requests()
        .into_iter()
        .filter(|r| !r.scopes.iter().any(|s| s.contains("push")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_with_credentials_reuses_one_token() {
    let image = sample_image(Flavor::Oci, AMD64, "token");
    let (registry, issuer) = token_registry(IssuerConfig::default(), &image).await;
    let dir = TempDir::new("t");
    let reference = parse(&registry.reference("secret/app", "v1"));
    let c = client(with_creds(dir.path(), USER.0, USER.1));
    let info = c
        .resolve(&reference, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert_image_matches(&info, &image);
    collect(&c, &reference, &info.layers[0].digest, None)
        .await
        .expect("layer");
    let requests = pulls(&issuer);
    assert_eq!(
        requests.len(),
        1,
        "one token for manifest, config and layer: {requests:?}"
    );
    assert_eq!(requests[0].user.as_deref(), Some("alice"));
    assert_eq!(
        requests[0].scopes,
        vec!["repository:secret/app:pull".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_anonymous_and_access_token_field() {
    let image = sample_image(Flavor::Oci, AMD64, "anon");
    let config = IssuerConfig {
        anonymous_pull: true,
        token_field: TokenField::AccessToken,
        expires_in: None,
        ..IssuerConfig::default()
    };
    let (registry, issuer) = token_registry(config, &image).await;
    let dir = TempDir::new("t");
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&registry.reference("secret/app", "v1")), None)
        .await
        .expect("anonymous pull");
    assert_image_matches(&info, &image);
    let requests = pulls(&issuer);
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.user.is_none()),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_reports_wrong_password_and_missing_credentials() {
    let image = sample_image(Flavor::Oci, AMD64, "token-wrong");
    let (registry, issuer) = token_registry(IssuerConfig::default(), &image).await;
    let dir = TempDir::new("t");
    let reference = parse(&registry.reference("secret/app", "v1"));
    let error = client(with_creds(dir.path(), USER.0, "nope"))
        .resolve(&reference, None)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(&error, RegistryError::WrongCredentials { username, .. } if username == "alice"),
        "{error:?}"
    );
    assert!(pulls(&issuer).iter().any(|r| r.status == 401));

    let error = client(isolated_options(dir.path()))
        .resolve(&reference, None)
        .await
        .expect_err("anonymous gets no access");
    assert!(
        matches!(error, RegistryError::AuthenticationRequired { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refreshed() {
    let image = sample_image(Flavor::Oci, AMD64, "expiry");
    let config = IssuerConfig {
        expires_in: Some(1),
        ..IssuerConfig::default()
    };
    let (registry, issuer) = token_registry(config, &image).await;
    let dir = TempDir::new("t");
    let reference = parse(&registry.reference("secret/app", "v1"));
    let c = client(with_creds(dir.path(), USER.0, USER.1));
    c.fetch_manifest(&reference).await.expect("first fetch");
    assert_eq!(pulls(&issuer).len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.fetch_manifest(&reference)
        .await
        .expect("fetch after expiry");
    assert_eq!(pulls(&issuer).len(), 2, "the expired token was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lacking_scope_is_replaced_after_401() {
    let image = sample_image(Flavor::Oci, AMD64, "scope");
    let (registry, issuer) = token_registry(IssuerConfig::default(), &image).await;
    // The next token grants nothing: the registry answers 401 insufficient_scope.
    issuer.deny_next(1);
    let dir = TempDir::new("t");
    let info = client(with_creds(dir.path(), USER.0, USER.1))
        .resolve(&parse(&registry.reference("secret/app", "v1")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert_image_matches(&info, &image);
    let requests = pulls(&issuer);
    assert_eq!(
        requests.len(),
        2,
        "a denied token, then a fresh one: {requests:?}"
    );
    assert!(!requests[0].granted && requests[1].granted, "{requests:?}");
}

// ---------------------------------------------------------------------------------------------
// Credentials from files and helpers

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn docker_config(dir: &Path, json: &str) -> RegistryOptions {
    let config_dir = dir.join("docker");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("config.json"), json).expect("write config.json");
    RegistryOptions {
        docker_config: Some(config_dir),
        ..isolated_options(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_docker_config_auths() {
    let image = sample_image(Flavor::DockerV2, AMD64, "cfg");
    let registry = basic_registry(&image).await;
    let reference = parse(&registry.reference("secret/app", "v1"));
    let dir = TempDir::new("t");
    for key in [
        registry.host.clone(),
        format!("https://{}/v1/", registry.host),
        format!("http://{}", registry.host),
    ] {
        let json = format!(
            r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
            b64("alice:wonderland")
        );
        let info = client(docker_config(dir.path(), &json))
            .resolve(&reference, None)
            .await
            .unwrap_or_else(|e| panic!("key {key}: {e}"));
        assert_image_matches(&info, &image);
    }
    let json = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        registry.host,
        b64("alice:bad")
    );
    let error = client(docker_config(dir.path(), &json))
        .resolve(&reference, None)
        .await
        .expect_err("bad stored password");
    assert!(
        matches!(error, RegistryError::WrongCredentials { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_token_is_exchanged_by_oauth_post_and_by_get_without_oauth() {
    let image = sample_image(Flavor::Oci, AMD64, "idtoken");
    for oauth in [true, false] {
        let config = IssuerConfig {
            identity_tokens: vec![("refresh-123".into(), "alice".into())],
            oauth,
            ..IssuerConfig::default()
        };
        let (registry, issuer) = token_registry(config, &image).await;
        let dir = TempDir::new("t");
        let json = format!(
            r#"{{"auths":{{"{}":{{"auth":"{}","identitytoken":"refresh-123"}}}}}}"#,
            registry.host,
            b64("alice:")
        );
        let info = client(docker_config(dir.path(), &json))
            .resolve(&parse(&registry.reference("secret/app", "v1")), None)
            .await
            .unwrap_or_else(|e| panic!("oauth={oauth}: {e}"));
        assert_image_matches(&info, &image);
        let requests = pulls(&issuer);
        assert_eq!(requests[0].method, "POST");
        if oauth {
            assert_eq!(requests[0].grant_type.as_deref(), Some("refresh_token"));
            assert_eq!(requests[0].user.as_deref(), Some("alice"));
            assert_eq!(requests.len(), 1, "{requests:?}");
        } else {
            assert_eq!(requests[0].status, 404);
            assert_eq!(requests[1].method, "GET", "{requests:?}");
            assert_eq!(requests[1].status, 200, "{requests:?}");
        }
    }
}

/// Write `docker-credential-test` into `dir`: it logs the server it was asked about and answers
/// `user`/`secret` for `host` only.
fn write_helper(dir: &Path, host: &str, user: &str, secret: &str) {
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> \"{log}\"\n\
         if [ \"$server\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n\
         else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        log = dir.join("helper.log").display()
    );
    let path = dir.join("docker-credential-test");
    std::fs::write(&path, script).expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod helper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_helpers_from_cred_helpers_and_creds_store() {
    let image = sample_image(Flavor::DockerV2, AMD64, "helpers");
    let registry = basic_registry(&image).await;
    let reference = parse(&registry.reference("secret/app", "v1"));
    for config in [
        format!(r#"{{"credHelpers":{{"{}":"test"}}}}"#, registry.host),
        r#"{"credsStore":"test"}"#.to_string(),
    ] {
        let dir = TempDir::new("t");
        write_helper(dir.path(), &registry.host, USER.0, USER.1);
        let options = RegistryOptions {
            credential_helper_path: Some(dir.path().as_os_str().to_owned()),
            ..docker_config(dir.path(), &config)
        };
        let info = client(options)
            .resolve(&reference, None)
            .await
            .unwrap_or_else(|e| panic!("{config}: {e}"));
        assert_image_matches(&info, &image);
        let asked = std::fs::read_to_string(dir.path().join("helper.log")).expect("helper ran");
        assert_eq!(asked.trim(), registry.host, "asked once, for this host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_identity_token_and_podman_auth_file() {
    let image = sample_image(Flavor::Oci, AMD64, "podman");
    let config = IssuerConfig {
        identity_tokens: vec![("helper-refresh".into(), "alice".into())],
        ..IssuerConfig::default()
    };
    let (registry, issuer) = token_registry(config, &image).await;
    let reference = parse(&registry.reference("secret/app", "v1"));

    // A helper answering Username "<token>" hands over an identity token.
    let dir = TempDir::new("t");
    write_helper(dir.path(), &registry.host, "<token>", "helper-refresh");
    let options = RegistryOptions {
        credential_helper_path: Some(dir.path().as_os_str().to_owned()),
        ..docker_config(dir.path(), r#"{"credsStore":"test"}"#)
    };
    client(options)
        .resolve(&reference, None)
        .await
        .expect("helper identity token");
    assert!(pulls(&issuer)
        .iter()
        .any(|r| r.grant_type.as_deref() == Some("refresh_token") && r.status == 200));

    // podman's auth.json with a per-repository key (REGISTRY_AUTH_FILE's format).
    let dir = TempDir::new("t");
    let auth_file = dir.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}/secret":{{"auth":"{}"}},"{}":{{"auth":"{}"}}}}}}"#,
            registry.host,
            b64("alice:wonderland"),
            registry.host,
            b64("alice:wrong")
        ),
    )
    .expect("write auth.json");
    let options = RegistryOptions {
        auth_files: Some(vec![auth_file]),
        ..isolated_options(dir.path())
    };
    let info = client(options)
        .resolve(&reference, None)
        .await
        .expect("auth.json credentials");
    assert_image_matches(&info, &image);
}

// ---------------------------------------------------------------------------------------------
// Redirects and TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_drop_authorization_for_the_other_host() {
    let image = sample_image(Flavor::Oci, AMD64, "redirect");
    let registry = Registry::start_with(RegistryConfig {
        auth: RegistryAuth::Htpasswd(vec![(USER.0.into(), USER.1.into())]),
        redirect_blobs: true,
        ..RegistryConfig::default()
    })
    .await;
    Pusher::with_credentials(&registry.url(), USER.0, USER.1)
        .push_image("secret/app", Some("v1"), &image)
        .await;
    let dir = TempDir::new("t");
    let c = client(with_creds(dir.path(), USER.0, USER.1));
    let reference = parse(&registry.reference("secret/app", "v1"));
    let info = c
        .resolve(&reference, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert_image_matches(&info, &image);
    let layer = &image.layers[1];
    let bytes = collect(
        &c,
        &reference,
        &digest(&layer.blob.digest),
        Some(layer.blob.bytes.len() as u64),
    )
    .await
    .expect("layer");
    assert_eq!(bytes, layer.blob.bytes);
    let served = registry
        .file_server
        .as_ref()
        .expect("file server")
        .requests();
    assert!(
        served.len() >= 2,
        "config and layer came from the file server: {served:?}"
    );
    assert!(served.iter().all(|r| !r.had_authorization), "{served:?}");
}

async fn tls_registry(dir: &Path) -> (Registry, common::registry::TlsFiles) {
    let tls = common::registry::generate_tls(dir);
    let registry = Registry::start_with(RegistryConfig {
        tls: Some(tls.clone()),
        ..RegistryConfig::default()
    })
    .await;
    (registry, tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_an_untrusted_certificate_and_an_insecure_host() {
    let dir = TempDir::new("tls");
    let (registry, tls) = tls_registry(dir.path()).await;
    let image = sample_image(Flavor::Oci, AMD64, "tls");
    Pusher::new(&registry.url())
        .push_image("app", Some("v1"), &image)
        .await;
    let reference = parse(&registry.reference("app", "v1"));

    // Trusted through certs.d/HOST:PORT/ca.crt.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&registry.host)).expect("certs.d");
    std::fs::copy(&tls.ca_cert, certs.join(&registry.host).join("ca.crt")).expect("copy CA");
    let options = RegistryOptions {
        certs_dirs: Some(vec![certs]),
        ..isolated_options(dir.path())
    };
    let info = client(options)
        .resolve(&reference, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    assert_image_matches(&info, &image);

    // Not trusted: a TLS error, not a silent downgrade.
    let error = client(isolated_options(dir.path()))
        .resolve(&reference, None)
        .await
        .expect_err("untrusted");
    assert!(
        matches!(error, RegistryError::CertificateRefused { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("no certificate authority trusted here signed it"),
        "{error}"
    );

    // --insecure-registry skips verification.
    let options = RegistryOptions {
        insecure_hosts: vec![registry.host.clone()],
        ..isolated_options(dir.path())
    };
    let info = client(options)
        .resolve(&reference, None)
        .await
        .expect("insecure host");
    assert_image_matches(&info, &image);
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_and_connection_refused() {
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    // A 70-character label cannot be put in a DNS query: rustls refuses it as a TLS name, and
    // over plain HTTP (an insecure host) the resolver fails without any packet leaving the
    // machine. Both are an unknown host.
    let host = format!("{}.test", "a".repeat(70));
    let reference = parse(&format!("{host}/app:v1"));
    let error = c
        .fetch_manifest(&reference)
        .await
        .expect_err("unknown host");
    assert!(
        matches!(error, RegistryError::UnknownHost { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("unknown host"), "{error}");
    let insecure = client(RegistryOptions {
        insecure_hosts: vec![host.clone()],
        ..isolated_options(dir.path())
    });
    let error = insecure
        .fetch_manifest(&reference)
        .await
        .expect_err("unknown host over HTTP");
    let RegistryError::UnknownHost { detail, .. } = &error else {
        panic!("{error:?}")
    };
    assert_ne!(
        detail, "not a valid DNS name",
        "the resolver answered: {error}"
    );

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let error = c
        .fetch_manifest(&parse(&format!("127.0.0.1:{port}/app:v1")))
        .await
        .expect_err("refused");
    assert!(
        matches!(error, RegistryError::ConnectionRefused { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repository_tag_digest_and_blob() {
    let image = sample_image(Flavor::Oci, AMD64, "unknown");
    let registry = registry_with("app", "v1", &image).await;
    Pusher::new(&registry.url())
        .push_manifest("app", "v2", &image.manifest, mt::OCI_MANIFEST)
        .await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));

    let error = c
        .resolve(&parse(&registry.reference("nope", "v1")), None)
        .await
        .expect_err("no repo");
    assert!(
        matches!(error, RegistryError::RepositoryUnknown { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("repository nope not found on {}", registry.host)
    );

    let error = c
        .resolve(&parse(&registry.reference("app", "v9")), None)
        .await
        .expect_err("no tag");
    assert!(
        matches!(error, RegistryError::ManifestUnknown { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "tag v9 not found in app on {}; tags that exist: v1, v2",
            registry.host
        )
    );

    let missing = sha256(b"not pushed");
    let error = c
        .resolve(&parse(&registry.reference("app", &missing)), None)
        .await
        .expect_err("no digest");
    assert!(
        error
            .to_string()
            .contains(&format!("manifest {missing} not found in app")),
        "{error}"
    );

    let error = collect(
        &c,
        &parse(&registry.reference("app", "v1")),
        &digest(&missing),
        None,
    )
    .await
    .expect_err("no blob");
    assert!(
        matches!(error, RegistryError::BlobUnknown { .. }),
        "{error:?}"
    );
}

/// A proxy in front of `registry` whose `rule` answers some requests itself.
async fn proxy(
    registry: &Registry,
    rule: impl Fn(&Request, usize) -> Option<Reply> + Send + Sync + 'static,
) -> FaultProxy {
    FaultProxy::start(&registry.url(), Arc::new(rule)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_short_blobs_fail_verification() {
    let image = sample_image(Flavor::DockerV2, AMD64, "corrupt");
    let registry = registry_with("app", "v1", &image).await;
    let layer = image.layers[1].blob.clone();
    let size = layer.bytes.len();
    let d = digest(&layer.digest);
    let dir = TempDir::new("t");

    let wrong = layer.clone();
    let corrupt = proxy(&registry, move |r, _| {
        r.is_blob(&wrong.digest).then(|| {
            let mut bytes = wrong.bytes.clone();
            bytes[size / 2] ^= 0xff;
            Reply::new(200).body(bytes)
        })
    })
    .await;
    let reference = parse(&format!("{}/app:v1", corrupt.host()));
    let error = collect(
        &client(isolated_options(dir.path())),
        &reference,
        &d,
        Some(size as u64),
    )
    .await
    .expect_err("corrupt");
    let RegistryError::BlobVerification { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(**source, VerifyError::Mismatch { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("digest mismatch"), "{error}");

    let short_layer = layer.clone();
    let short = proxy(&registry, move |r, _| {
        r.is_blob(&short_layer.digest)
            .then(|| Reply::new(200).body(short_layer.bytes[..size / 2].to_vec()))
    })
    .await;
    let reference = parse(&format!("{}/app:v1", short.host()));
    let error = collect(
        &client(isolated_options(dir.path())),
        &reference,
        &d,
        Some(size as u64),
    )
    .await
    .expect_err("short");
    let RegistryError::BlobVerification { source, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(**source, VerifyError::TooShort { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("truncated"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_resumed_and_a_cut_that_persists_is_reported() {
    let image = sample_image(Flavor::DockerV2, AMD64, "truncated");
    let registry = registry_with("app", "v1", &image).await;
    let layer = image.layers[1].blob.clone();
    let size = layer.bytes.len();
    let d = digest(&layer.digest);
    let dir = TempDir::new("t");

    // First answer cut mid-way, then the real registry answers the Range request.
    let cut_once = layer.clone();
    let resuming = proxy(&registry, move |r, _| {
        (r.is_blob(&cut_once.digest) && r.header("range").is_none()).then(|| Reply {
            announced_length: Some(size),
            ..Reply::new(200).body(cut_once.bytes[..size / 3].to_vec())
        })
    })
    .await;
    let reference = parse(&format!("{}/app:v1", resuming.host()));
    let bytes = collect(
        &client(isolated_options(dir.path())),
        &reference,
        &d,
        Some(size as u64),
    )
    .await
    .expect("resumed");
    assert_eq!(bytes, layer.bytes);
    let ranges: Vec<String> = resuming
        .requests()
        .iter()
        .filter_map(|(_, r, _)| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, vec![format!("bytes={}-", size / 3)]);

    // Always cut: reported after the retries, naming how far it got.
    let always = layer.clone();
    let cutting = proxy(&registry, move |r, _| {
        r.is_blob(&always.digest).then(|| Reply {
            announced_length: Some(size),
            ..Reply::new(200).body(always.bytes[..size / 3].to_vec())
        })
    })
    .await;
    let reference = parse(&format!("{}/app:v1", cutting.host()));
    let error = collect(
        &client(isolated_options(dir.path())),
        &reference,
        &d,
        Some(size as u64),
    )
    .await
    .expect_err("cut");
    assert!(
        matches!(error, RegistryError::BlobInterrupted { received, attempts: 3, .. } if received == (size / 3) as u64),
        "{error:?}"
    );
    assert!(error.to_string().contains("broke off"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_invalid_json_and_html_answers() {
    let image = sample_image(Flavor::DockerV2, AMD64, "bad-manifests");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));

    let schema1 = proxy(&registry, |r, _| {
        r.path().contains("/manifests/").then(|| {
            Reply::new(200)
                .header("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
                .body(r#"{"schemaVersion":1,"name":"app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]}"#)
        })
    })
    .await;
    let error = c
        .resolve(&parse(&format!("{}/app:v1", schema1.host())), None)
        .await
        .expect_err("schema 1");
    assert!(
        matches!(error, RegistryError::UnsupportedSchema1 { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("re-push"), "{error}");

    let invalid = proxy(&registry, |r, _| {
        r.path().contains("/manifests/").then(|| {
            Reply::new(200)
                .header("Content-Type", mt::OCI_MANIFEST)
                .body(r#"{"schemaVersion": 2, "config": "#)
        })
    })
    .await;
    let error = c
        .resolve(&parse(&format!("{}/app:v1", invalid.host())), None)
        .await
        .expect_err("invalid JSON");
    assert!(
        matches!(error, RegistryError::InvalidManifest { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("unreadable"), "{error}");

    let html = proxy(&registry, |_, _| {
        Some(
            Reply::new(200)
                .header("Content-Type", "text/html")
                .body("<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>"),
        )
    })
    .await;
    let error = c
        .resolve(&parse(&format!("{}/app:v1", html.host())), None)
        .await
        .expect_err("HTML");
    assert_eq!(
        error,
        RegistryError::NotRegistry {
            host: html.host(),
            answered: "HTML".into()
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the server at {} answered HTML, not a registry API response",
            html.host()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_bytes_that_do_not_match_their_digest_are_refused() {
    let image = sample_image(Flavor::Oci, AMD64, "tamper");
    let registry = registry_with("app", "v1", &image).await;
    let rewrite: common::registry::Rewrite = Arc::new(|r: &Request, mut reply: Reply| {
        if r.path().contains("/manifests/") {
            reply.body.push(b'\n');
        }
        reply
    });
    let tampering =
        FaultProxy::start_with_rewrite(&registry.url(), Arc::new(|_, _| None), rewrite).await;
    let dir = TempDir::new("t");
    let c = client(isolated_options(dir.path()));
    let error = c
        .fetch_manifest(&parse(&format!("{}/app:v1", tampering.host())))
        .await
        .expect_err("by tag");
    assert!(
        matches!(error, RegistryError::ManifestDigestMismatch { .. }),
        "{error:?}"
    );
    let error = c
        .fetch_manifest(&parse(&format!(
            "{}/app@{}",
            tampering.host(),
            image.manifest_digest
        )))
        .await
        .expect_err("by digest");
    assert!(
        error.to_string().contains("does not match its digest"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_then_reported() {
    let image = sample_image(Flavor::Oci, AMD64, "ratelimit");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");

    // Two 429s with Retry-After: 1, then the registry: it works, and it waited.
    let manifest_requests = std::sync::atomic::AtomicUsize::new(0);
    let limited = proxy(&registry, move |r, _| {
        if !r.path().contains("/manifests/") {
            return None;
        }
        let n = manifest_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (n < 2).then(|| {
            Reply::json(
                429,
                &serde_json::json!({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}),
            )
            .header("Retry-After", "1")
        })
    })
    .await;
    let started = Instant::now();
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&format!("{}/app:v1", limited.host())), None)
        .await
        .expect("success after the limit");
    assert_image_matches(&info, &image);
    let faults = limited
        .requests()
        .iter()
        .filter(|(who, ..)| who == "fault")
        .count();
    assert_eq!(
        faults,
        2,
        "{:?}",
        limited
            .requests()
            .iter()
            .map(|(w, r, s)| (w.clone(), r.target.clone(), *s))
            .collect::<Vec<_>>()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was honoured"
    );

    // Always limited: reported after max_retries + 1 attempts.
    let always = proxy(&registry, |r, _| {
        r.path().contains("/manifests/").then(|| {
            Reply::json(
                429,
                &serde_json::json!({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}),
            )
            .header("Retry-After", "0")
        })
    })
    .await;
    let error = client(isolated_options(dir.path()))
        .fetch_manifest(&parse(&format!("{}/app:v1", always.host())))
        .await
        .expect_err("rate limited");
    assert!(
        matches!(error, RegistryError::RateLimited { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("429") && error.to_string().contains("slow down"),
        "{error}"
    );

    // A Retry-After beyond the cap is reported at once.
    let long = proxy(&registry, |r, _| {
        r.path()
            .contains("/manifests/")
            .then(|| Reply::new(429).header("Retry-After", "3600"))
    })
    .await;
    let started = Instant::now();
    let error = client(isolated_options(dir.path()))
        .fetch_manifest(&parse(&format!("{}/app:v1", long.host())))
        .await
        .expect_err("rate limited for an hour");
    assert!(
        matches!(error, RegistryError::RateLimited { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("1h"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_reported() {
    let image = sample_image(Flavor::Oci, AMD64, "5xx");
    let registry = registry_with("app", "v1", &image).await;
    let dir = TempDir::new("t");

    let flaky = proxy(&registry, |r, n| {
        (r.path().contains("/blobs/") && n % 2 == 0).then(|| Reply::new(503).body("busy"))
    })
    .await;
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&format!("{}/app:v1", flaky.host())), None)
        .await
        .expect("retried through 503s");
    assert_image_matches(&info, &image);

    let broken = proxy(&registry, |r, _| {
        r.path().contains("/manifests/").then(|| {
            Reply::json(
                500,
                &serde_json::json!({"errors":[{"code":"UNKNOWN","message":"storage is on fire"}]}),
            )
        })
    })
    .await;
    let error = client(isolated_options(dir.path()))
        .fetch_manifest(&parse(&format!("{}/app:v1", broken.host())))
        .await
        .expect_err("always 500");
    assert!(
        matches!(error, RegistryError::GaveUp { attempts: 3, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("after 3 attempts")
            && text.contains("500")
            && text.contains("storage is on fire"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_stalls_are_retried_and_slow_downloads_survive() {
    let image = sample_image(Flavor::DockerV2, AMD64, "resets");
    let registry = registry_with("app", "v1", &image).await;
    let layer = image.layers[1].blob.clone();
    let size = layer.bytes.len();
    let d = digest(&layer.digest);
    let dir = TempDir::new("t");

    // The first two manifest requests are dropped without an answer.
    let drops = std::sync::atomic::AtomicUsize::new(0);
    let resetting = proxy(&registry, move |r, _| {
        let dropping = r.path().contains("/manifests/")
            && drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2;
        dropping.then(Reply::hang_up)
    })
    .await;
    let info = client(isolated_options(dir.path()))
        .resolve(&parse(&format!("{}/app:v1", resetting.host())), None)
        .await
        .expect("retried through resets");
    assert_image_matches(&info, &image);

    // A blob answer that falls silent longer than the low-speed time is resumed with a Range
    // request.
    let stalled = layer.clone();
    let stalling = proxy(&registry, move |r, _| {
        (r.is_blob(&stalled.digest) && r.header("range").is_none()).then(|| Reply {
            pace: Some((size / 2, Duration::from_secs(5))),
            ..Reply::new(200).body(stalled.bytes.clone())
        })
    })
    .await;
    let options = RegistryOptions {
        stall: StallLimits {
            low_speed_time: Duration::from_millis(300),
            ..StallLimits::default()
        },
        ..isolated_options(dir.path())
    };
    let reference = parse(&format!("{}/app:v1", stalling.host()));
    let bytes = collect(&client(options), &reference, &d, Some(size as u64))
        .await
        .expect("resumed after a stall");
    assert_eq!(bytes, layer.bytes);
    assert!(
        stalling
            .requests()
            .iter()
            .any(|(_, r, _)| r.header("range") == Some(&format!("bytes={}-", size / 2))),
        "resumed from the first byte not received"
    );

    // A download slower in total than the low-speed time, but above the floor, is fine.
    let dripped = layer.clone();
    let dripping = proxy(&registry, move |r, _| {
        r.is_blob(&dripped.digest).then(|| Reply {
            pace: Some((size / 6 + 1, Duration::from_millis(150))),
            ..Reply::new(200).body(dripped.bytes.clone())
        })
    })
    .await;
    let options = RegistryOptions {
        stall: StallLimits {
            low_speed_time: Duration::from_millis(600),
            low_speed_limit: 100,
            ..StallLimits::default()
        },
        ..isolated_options(dir.path())
    };
    let reference = parse(&format!("{}/app:v1", dripping.host()));
    let bytes = collect(&client(options), &reference, &d, Some(size as u64))
        .await
        .expect("slow but steady");
    assert_eq!(bytes, layer.bytes);
    let blob_requests = dripping
        .requests()
        .iter()
        .filter(|(_, r, _)| r.is_blob(&layer.digest))
        .count();
    assert_eq!(blob_requests, 1, "no timeout, no resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_access_is_its_own_error() {
    let image = sample_image(Flavor::Oci, AMD64, "denied");
    let registry = registry_with("app", "v1", &image).await;
    let denying = proxy(&registry, |r, _| {
        r.path().contains("/manifests/").then(|| {
            Reply::json(
                403,
                &serde_json::json!({"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}),
            )
        })
    })
    .await;
    let dir = TempDir::new("t");
    let error = client(isolated_options(dir.path()))
        .fetch_manifest(&parse(&format!("{}/app:v1", denying.host())))
        .await
        .expect_err("denied");
    assert!(
        matches!(error, RegistryError::AccessDenied { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "access to app on {} was denied: requested access to the resource is denied",
            denying.host()
        )
    );
}
