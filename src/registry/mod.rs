//! The registry client: speaks the OCI distribution API over HTTPS (or HTTP where allowed),
//! authenticates, fetches and identifies manifests, picks the platform from an index, and streams
//! verified blobs. Everything above it sees [`ImageInfo`] and byte streams, never HTTP.
//!
//! Flow of one request: find the host's endpoint (`GET /v2/`, HTTPS first, plain HTTP for
//! loopback and `--insecure-registry` hosts), learn its challenge, attach Basic credentials or a
//! cached bearer token, send with retries, and on a 401 fetch a fresh token (expired, or a
//! scope the token lacks) once before reporting an authentication error.

mod auth;
mod blob;
pub mod credentials;
mod error;
mod listing;
pub mod mirror;
mod push;
pub mod stall;
mod tls;
mod transport;
mod x509;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Semaphore;

pub use blob::BlobStream;
pub use credentials::{Credential, CredentialSources};
pub use error::RegistryError;
pub use listing::{parse_next_link, Listing, MAX_PAGES};
pub use mirror::Mirror;
pub use push::ManifestHead;

use crate::digest::{Digest, DigestHasher};
use crate::image::{
    media_type, select_platform, AssembleError, Descriptor, ImageInfo, ImageParts, ManifestError,
    ParsedManifest, Platform,
};
use crate::reference::{Reference, Target};
use auth::{
    bearer_value, catalog_scope, challenges_of, fetch_token, pull_scope, push_scope, Challenge,
    TokenCache,
};
use error::{describe_error_body, looks_like_html, parse_error_body, status_text};
use transport::{read_limited, Outgoing, RetryPolicy, Transport, TransportSettings};

/// Manifests larger than this are refused (the OCI spec asks registries to accept 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Error and ping bodies are read up to this size.
const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// How many tags to name when a tag is not found.
const TAGS_SHOWN: usize = 10;
/// The environment variable naming the certs.d roots to read instead of Docker's and Podman's.
pub const CERTS_D_ENV: &str = "LAYERSCOPE_CERTS_D";

/// How the client behaves: trust, credentials, retries, timeouts.
#[derive(Clone)]
pub struct RegistryOptions {
    /// `--insecure-registry HOST[:PORT]`: plain HTTP allowed and TLS verification skipped for
    /// these hosts (a bare host matches every port).
    pub insecure_hosts: Vec<String>,
    /// `--creds USER:PASSWORD`: used for every registry, before any stored credentials.
    pub credentials: Option<(String, String)>,
    /// Docker's config directory (`$DOCKER_CONFIG`, default `~/.docker`), or a `.json` file.
    pub docker_config: Option<PathBuf>,
    /// Podman-style `auth.json` files read before Docker's config. `None` reads
    /// `$REGISTRY_AUTH_FILE` (before) and `${XDG_RUNTIME_DIR}/containers/auth.json` (after).
    pub auth_files: Option<Vec<PathBuf>>,
    /// Where to look for `docker-credential-*` helpers (`None`: `$PATH`).
    pub credential_helper_path: Option<OsString>,
    /// certs.d roots: `ROOT/HOST[:PORT]/` holds `*.crt` certificates to trust and
    /// `*.cert`/`*.key` client certificate pairs. `None`: the directories listed in
    /// `$LAYERSCOPE_CERTS_D` (separated by `:`), else the ones Docker and Podman read
    /// (`/etc/docker/certs.d`, `/etc/containers/certs.d`, the per-user
    /// `~/.config/containers/certs.d` and `~/.config/docker/certs.d`, and `certs.d` in Docker's
    /// config directory).
    pub certs_dirs: Option<Vec<PathBuf>>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Retries after the first attempt for 408, 429, 5xx, resets and timeouts.
    pub max_retries: u32,
    /// The first backoff delay; it doubles each retry (with jitter), up to 10 s.
    pub retry_base_delay: Duration,
    /// The longest `Retry-After` waited for; a longer one is reported at once.
    pub max_retry_after: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response (not for the whole download); a
    /// backstop under the stall limits, never shorter than they allow.
    pub read_timeout: Duration,
    /// How long a request may go without progress, and the low-speed floor below which a
    /// transfer counts as stalled (see [`stall`]).
    pub stall: stall::StallLimits,
    /// Blob downloads at once per registry.
    pub max_concurrent_downloads: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_hosts: Vec::new(),
            credentials: None,
            docker_config: None,
            auth_files: None,
            credential_helper_path: None,
            certs_dirs: None,
            user_agent: format!("layerscope/{}", env!("CARGO_PKG_VERSION")),
            max_retries: 4,
            retry_base_delay: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            stall: stall::StallLimits::default(),
            max_concurrent_downloads: 3,
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure_hosts", &self.insecure_hosts)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("docker_config", &self.docker_config)
            .field("auth_files", &self.auth_files)
            .field("credential_helper_path", &self.credential_helper_path)
            .field("certs_dirs", &self.certs_dirs)
            .field("user_agent", &self.user_agent)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("max_retry_after", &self.max_retry_after)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("stall", &self.stall)
            .field("max_concurrent_downloads", &self.max_concurrent_downloads)
            .finish()
    }
}

impl RegistryOptions {
    /// The credential sources these options describe.
    pub fn credential_sources(&self) -> CredentialSources {
        let env = CredentialSources::from_environment();
        let docker_config = match &self.docker_config {
            Some(path) if path.extension().is_some_and(|x| x == "json") => Some(path.clone()),
            Some(dir) => Some(dir.join("config.json")),
            None => env.docker_config.clone(),
        };
        let (first, last) = match &self.auth_files {
            Some(files) => (files.clone(), Vec::new()),
            None => (env.auth_files_first, env.auth_files_last),
        };
        CredentialSources {
            explicit: self.credentials.clone(),
            docker_config,
            auth_files_first: first,
            auth_files_last: last,
            helper_path: self.credential_helper_path.clone(),
        }
    }

    fn certs_dirs(&self) -> Vec<PathBuf> {
        if let Some(dirs) = &self.certs_dirs {
            return dirs.clone();
        }
        if let Some(list) = std::env::var_os(CERTS_D_ENV).filter(|v| !v.is_empty()) {
            return std::env::split_paths(&list).collect();
        }
        let mut dirs = tls::system_and_user_certs_dirs();
        let config_dir = match &self.docker_config {
            Some(path) if path.extension().is_some_and(|x| x == "json") => {
                path.parent().map(PathBuf::from)
            }
            Some(dir) => Some(dir.clone()),
            None => credentials::default_docker_config_dir(),
        };
        if let Some(dir) = config_dir {
            dirs.push(dir.join("certs.d"));
        }
        dirs
    }
}

/// A manifest as fetched: the exact bytes (the digest is over them), and what they parse to.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedManifest {
    /// The bytes as served.
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry sent.
    pub content_type: Option<String>,
    /// The digest of `bytes`, verified against the reference's digest or the registry's
    /// `Docker-Content-Digest` when either was given.
    pub digest: Digest,
    /// The parsed manifest or index.
    pub parsed: ParsedManifest,
}

/// A registry API client. Cheap to clone; clones share connections, tokens and download slots.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    credentials: CredentialSources,
    tokens: TokenCache,
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
    downloads_per_registry: usize,
}

/// What is known about one registry host.
struct HostState {
    /// The API host (`registry-1.docker.io` for Docker Hub).
    host: String,
    endpoint: tokio::sync::Mutex<Option<Arc<Endpoint>>>,
    challenge: Mutex<Option<Challenge>>,
    /// One token request at a time per host, so parallel downloads share one token.
    token_lock: tokio::sync::Mutex<()>,
    credentials: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
    downloads: Arc<Semaphore>,
}

/// How a host is reached, decided by the first `GET /v2/`.
#[derive(Debug)]
struct Endpoint {
    /// `https://host/` or `http://host/`.
    base: Url,
    /// Whether TLS verification is off (an `--insecure-registry` host).
    skip_verify: bool,
}

/// What authenticated a request, to tell a wrong password from a missing permission.
#[derive(Debug, Clone)]
enum Sent {
    Nothing,
    Basic(String),
    Token(Option<String>),
}

/// What a `GET /v2/` said about a server.
enum Ping {
    Registry(Option<Challenge>),
    NotRegistry { answered: String, html: bool },
}

impl RegistryClient {
    /// A client with `options`.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let settings = TransportSettings {
            user_agent: options.user_agent.clone(),
            connect_timeout: options.connect_timeout,
            read_timeout: options
                .read_timeout
                .max(options.stall.timeout)
                .max(options.stall.low_speed_time),
            certs_dirs: options.certs_dirs(),
            insecure_hosts: options.insecure_hosts.clone(),
            retry: RetryPolicy {
                max_retries: options.max_retries,
                base_delay: options.retry_base_delay,
                max_delay: Duration::from_secs(10),
                max_retry_after: options.max_retry_after,
            },
            stall: options.stall,
        };
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                transport: Transport::new(settings),
                credentials: options.credential_sources(),
                tokens: TokenCache::default(),
                hosts: Mutex::new(HashMap::new()),
                downloads_per_registry: options.max_concurrent_downloads.max(1),
            }),
        })
    }

    /// Fetch the manifest or index `reference` names (its digest, else its tag, else `latest`).
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        self.fetch_target(reference, &reference.target()).await
    }

    /// Fetch the manifest `tag_or_digest` from the repository of `reference`.
    pub async fn fetch_manifest_by(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let target = Target::parse(tag_or_digest).map_err(|e| RegistryError::InvalidManifest {
            host: reference.registry.clone(),
            repository: reference.repository.clone(),
            target: tag_or_digest.to_string(),
            detail: e.to_string(),
        })?;
        self.fetch_target(reference, &target).await
    }

    /// Resolve `reference` to one image: the manifest (through the index, choosing `platform`,
    /// default `linux/` + this machine's architecture), its verified config, and the layers
    /// paired with their diff_ids and history. A single-platform image is taken as it is unless
    /// `platform` is given and the config names another one.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
    ) -> Result<ImageInfo, RegistryError> {
        self.resolve_with_cache(reference, platform, None).await
    }

    /// [`RegistryClient::resolve`], reading the config from `cache` when it holds it (checked
    /// against its digest) and storing it there when it did not.
    pub async fn resolve_with_cache(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        cache: Option<&crate::cache::Cache>,
    ) -> Result<ImageInfo, RegistryError> {
        let top = self.fetch_manifest(reference).await?;
        let (image, chosen_platform) = match &top.parsed {
            ParsedManifest::Image(_) => (top.clone(), None),
            ParsedManifest::Index(index) => {
                let wanted = platform.cloned().unwrap_or_else(Platform::host_default);
                let entry = select_platform(index, &wanted).map_err(|source| {
                    RegistryError::NoMatchingPlatform {
                        reference: reference.to_string(),
                        source: Box::new(source),
                    }
                })?;
                let child = self
                    .fetch_target(reference, &Target::Digest(entry.digest.clone()))
                    .await?;
                (child, entry.platform.clone())
            }
        };
        let ParsedManifest::Image(manifest) = &image.parsed else {
            return Err(RegistryError::InvalidManifest {
                host: reference.registry.clone(),
                repository: reference.repository.clone(),
                target: image.digest.to_string(),
                detail: "the index entry for the platform is itself an index".to_string(),
            });
        };
        let config_digest = &manifest.config.digest;
        // Refused before a byte is read; the stream also stops at the size the manifest states.
        if let Some(refused) = crate::image::config_too_large(manifest.config.size) {
            return Err(RegistryError::InvalidConfig {
                reference: reference.to_string(),
                detail: refused,
            });
        }
        let cached =
            cache.and_then(|c| c.read_small_blob(config_digest, Some(manifest.config.size)));
        let config_bytes = match cached {
            Some(bytes) => bytes,
            None => {
                let bytes = self.fetch_blob(reference, &manifest.config).await?;
                if let Some(cache) = cache {
                    // A cache that cannot be written only costs the next run a download.
                    let _ = cache.store_small_blob(config_digest, &bytes);
                }
                bytes
            }
        };
        let parts = ImageParts {
            reference: reference.to_string(),
            digest: top.digest.clone(),
            manifest_digest: image.digest.clone(),
            media_type: image.parsed.media_type().to_string(),
            manifest_bytes: image.bytes.clone(),
            manifest: manifest.as_ref().clone(),
            config_bytes,
            platform: chosen_platform,
        };
        ImageInfo::assemble(parts, platform).map_err(|e| match e {
            AssembleError::Config(detail) => RegistryError::InvalidConfig {
                reference: reference.to_string(),
                detail,
            },
            AssembleError::LayerCount(source) => RegistryError::LayerCount {
                reference: reference.to_string(),
                source,
            },
            AssembleError::Platform(source) => RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                source: Box::new(source),
            },
        })
    }

    /// Fetch a small blob (a config) whole, verified against the descriptor's size and digest.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        use futures_util::StreamExt;
        let mut stream = self
            .open_blob(reference, &descriptor.digest, Some(descriptor.size), None)
            .await?;
        let capacity = usize::try_from(descriptor.size.min(16 * 1024 * 1024)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    /// Stream a blob. Size (when given) and digest are checked as bytes pass: the stream ends
    /// with an `Err` instead of a clean end when they do not match. At most
    /// `max_concurrent_downloads` streams per registry are open at once; this waits for a slot,
    /// which is freed when the stream is dropped.
    pub async fn blob_stream(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        let state = self.host_state(reference.api_host());
        let permit =
            state
                .downloads
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| RegistryError::Setup {
                    detail: "the download limiter was closed".to_string(),
                })?;
        self.open_blob(reference, digest, size, Some(permit)).await
    }

    async fn open_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: Option<u64>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<BlobStream, RegistryError> {
        let response = self.blob_response(reference, digest, 0).await?;
        Ok(blob::stream(
            self.clone(),
            reference.clone(),
            digest.clone(),
            size,
            response,
            permit,
        ))
    }

    /// A blob answer from byte `offset` on: 200 for the whole blob, or 206 when resuming.
    pub(crate) async fn blob_response(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response, RegistryError> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-")).map_err(|e| {
                RegistryError::Setup {
                    detail: e.to_string(),
                }
            })?;
            headers.insert(reqwest::header::RANGE, range);
        }
        let response = self
            .repo_get(reference, &format!("blobs/{digest}"), headers)
            .await?;
        let status = response.status();
        if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
            return Ok(response);
        }
        Err(self
            .status_error(reference, Fetching::Blob(digest), response)
            .await)
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.transport.retry_policy()
    }

    async fn fetch_target(
        &self,
        reference: &Reference,
        target: &Target,
    ) -> Result<FetchedManifest, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let response = self
            .repo_get(reference, &format!("manifests/{target}"), headers)
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(reference, Fetching::Manifest(target), response)
                .await);
        }
        let host = reference.registry.clone();
        let repository = reference.repository.clone();
        let target_text = target.to_string();
        let content_type = header_string(response.headers(), CONTENT_TYPE.as_str());
        let announced = header_string(response.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok());
        let limit = usize::try_from(MAX_MANIFEST_BYTES).unwrap_or(usize::MAX);
        let bytes =
            read_limited(response, limit + 1)
                .await
                .map_err(|e| RegistryError::Transfer {
                    host: host.clone(),
                    detail: transport::error_chain(&e),
                })?;
        if bytes.len() > limit {
            return Err(RegistryError::ManifestTooLarge {
                host,
                repository,
                target: target_text,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        if looks_like_html(content_type.as_deref(), &bytes) {
            return Err(RegistryError::NotRegistry {
                host,
                answered: "HTML".to_string(),
            });
        }
        let expected = match target {
            Target::Digest(d) => Some(d.clone()),
            Target::Tag(_) => announced,
        };
        let digest = match expected {
            Some(expected) => {
                let mut hasher = DigestHasher::new(expected.algorithm());
                hasher.update(&bytes);
                let actual = hasher.finish();
                if actual != expected {
                    return Err(RegistryError::ManifestDigestMismatch {
                        host,
                        repository,
                        target: target_text,
                        expected: Box::new(expected),
                        actual: Box::new(actual),
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        let parsed =
            ParsedManifest::parse(&bytes, content_type.as_deref()).map_err(|e| match e {
                ManifestError::Schema1 => RegistryError::UnsupportedSchema1 {
                    host: host.clone(),
                    repository: repository.clone(),
                    target: target_text.clone(),
                },
                other => RegistryError::InvalidManifest {
                    host: host.clone(),
                    repository: repository.clone(),
                    target: target_text.clone(),
                    detail: other.to_string(),
                },
            })?;
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
            parsed,
        })
    }

    fn host_state(&self, host: &str) -> Arc<HostState> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(HostState {
                    host: host.to_string(),
                    endpoint: tokio::sync::Mutex::new(None),
                    challenge: Mutex::new(None),
                    token_lock: tokio::sync::Mutex::new(()),
                    credentials: tokio::sync::Mutex::new(HashMap::new()),
                    downloads: Arc::new(Semaphore::new(self.inner.downloads_per_registry)),
                })
            })
            .clone()
    }

    /// The endpoint of a host, found once: HTTPS, then plain HTTP for loopback and insecure
    /// hosts when HTTPS does not connect or handshake.
    async fn endpoint(
        &self,
        state: &HostState,
        loopback: bool,
    ) -> Result<Arc<Endpoint>, RegistryError> {
        let mut slot = state.endpoint.lock().await;
        if let Some(endpoint) = slot.as_ref() {
            return Ok(endpoint.clone());
        }
        let host = &state.host;
        let transport = &self.inner.transport;
        let insecure = transport.is_insecure(host);
        let url_for = |scheme: &str| {
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::UnknownHost {
                host: host.clone(),
                detail: e.to_string(),
            })
        };
        let https = url_for("https")?;
        let may_fall_back = insecure || loopback;
        // Both probes are one request: together they stay within its patience.
        let budget = stall::Budget::start(transport.stall_limits());
        let https_result = if may_fall_back {
            // One quick try: a plain-HTTP server fails the handshake at once.
            match transport
                .send_once_within(&Outgoing::get(v2(&https)?, host), insecure, &budget)
                .await
            {
                Ok(response) => Ok(read_ping(response).await),
                Err(failure) => Err(failure.error),
            }
        } else {
            match transport
                .send_within(&Outgoing::get(v2(&https)?, host), false, &budget)
                .await
            {
                Ok(response) => Ok(read_ping(response).await),
                Err(error) => Err(error),
            }
        };
        let (base, ping) = match https_result {
            Ok(ping) => (https, ping),
            Err(https_error) if may_fall_back => {
                let http = url_for("http")?;
                match transport
                    .send_within(&Outgoing::get(v2(&http)?, host), false, &budget)
                    .await
                {
                    Ok(response) => {
                        let ping = read_ping(response).await;
                        match (&ping, &https_error) {
                            // A TLS server answering our plain-HTTP try: its TLS error says more.
                            (Ping::NotRegistry { html: false, .. }, e) if e.is_tls() => {
                                return Err(https_error)
                            }
                            _ => (http, ping),
                        }
                    }
                    Err(http_error) => {
                        // A refused HTTPS port says nothing; a name that does not resolve
                        // fails both ways and the resolver's words are the clearer ones.
                        return Err(match (&https_error, &http_error) {
                            (RegistryError::ConnectionRefused { .. }, _)
                            | (_, RegistryError::UnknownHost { .. }) => http_error,
                            _ => https_error,
                        });
                    }
                }
            }
            Err(error) => return Err(error),
        };
        let challenge = match ping {
            Ping::Registry(challenge) => challenge,
            Ping::NotRegistry { answered, .. } => {
                return Err(RegistryError::NotRegistry {
                    host: host.clone(),
                    answered,
                })
            }
        };
        *state.challenge.lock().unwrap_or_else(|p| p.into_inner()) = challenge;
        let endpoint = Arc::new(Endpoint {
            skip_verify: insecure && base.scheme() == "https",
            base,
        });
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// GET `/v2/<repository>/<path>` with authentication, retrying once with fresh
    /// authentication when the registry answers 401.
    async fn repo_get(
        &self,
        reference: &Reference,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Response, RegistryError> {
        let target = format!("v2/{}/{path}", reference.repository);
        self.authorized(
            reference,
            Access::Pull,
            ApiRequest {
                method: Method::GET,
                target: &target,
                headers,
                body: None,
            },
        )
        .await
    }

    /// Send `request` to the registry of `reference` with the authentication `access` needs
    /// (Basic credentials or a bearer token for its scope), retrying with fresh authentication
    /// when the registry answers 401. `request.target` is a path such as
    /// `v2/app/tags/list`, or an absolute URL on the same origin (a pagination link).
    pub(crate) async fn authorized(
        &self,
        reference: &Reference,
        access: Access,
        request: ApiRequest<'_>,
    ) -> Result<Response, RegistryError> {
        let state = self.host_state(reference.api_host());
        let endpoint = self.endpoint(&state, reference.is_loopback()).await?;
        let url = endpoint
            .base
            .join(request.target)
            .map_err(|e| RegistryError::Setup {
                detail: format!("cannot build a URL for {}: {e}", request.target),
            })?;
        if url.origin() != endpoint.base.origin() {
            // Credentials are for this registry only; a link elsewhere is not followed.
            return Err(RegistryError::BadLink {
                host: reference.registry.clone(),
                detail: format!(
                    "it points to another server ({})",
                    transport::host_port(&url)
                ),
            });
        }
        let mut scopes = vec![access.scope(&reference.repository)];
        let mut fresh = false;
        for round in 0..3 {
            let challenge = state
                .challenge
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (authorization, sent) = self
                .authorization(&state, reference, challenge.as_ref(), &scopes, fresh)
                .await?;
            let outgoing = Outgoing {
                method: request.method.clone(),
                authorization,
                headers: request.headers.clone(),
                body: request.body.clone(),
                ..Outgoing::get(url.clone(), &state.host)
            };
            let response = self
                .inner
                .transport
                .send(&outgoing, endpoint.skip_verify)
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let offered = preferred_challenge(challenges_of(response.headers()));
            let body = read_limited(response, SMALL_BODY_LIMIT)
                .await
                .unwrap_or_default();
            let last_round = round == 2;
            match (offered, &sent) {
                (Some(Challenge::Basic), Sent::Basic(username)) => {
                    return Err(RegistryError::WrongCredentials {
                        host: reference.registry.clone(),
                        username: username.clone(),
                    })
                }
                (Some(Challenge::Basic), _) if !last_round => {
                    if self.credential_for(&state, reference).await?.is_none() {
                        return Err(self.unauthorized(reference, access, &Sent::Nothing, &[]));
                    }
                    *state.challenge.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Challenge::Basic);
                }
                (Some(Challenge::Bearer(bearer)), Sent::Token(_)) if !last_round && !fresh => {
                    // Expired or revoked, or lacking a scope the registry names: ask again.
                    self.inner.tokens.forget(&state.host, &scopes.join(" "));
                    add_scopes(&mut scopes, bearer.scope.as_deref());
                    *state.challenge.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Challenge::Bearer(bearer));
                    fresh = true;
                }
                (Some(Challenge::Bearer(bearer)), Sent::Nothing | Sent::Basic(_))
                    if !last_round =>
                {
                    add_scopes(&mut scopes, bearer.scope.as_deref());
                    *state.challenge.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Challenge::Bearer(bearer));
                    fresh = true;
                }
                _ => return Err(self.unauthorized(reference, access, &sent, &body)),
            }
        }
        Err(self.unauthorized(reference, access, &Sent::Nothing, &[]))
    }

    /// The error for a request that stayed 401, worded for what was being done.
    fn unauthorized(
        &self,
        reference: &Reference,
        access: Access,
        sent: &Sent,
        body: &[u8],
    ) -> RegistryError {
        let host = reference.registry.clone();
        let repository = reference.repository.clone();
        let registry_said = || describe_error_body(StatusCode::UNAUTHORIZED, body);
        let no_credentials = || {
            format!(
                "it needs credentials and none were found: log in with `docker login {host}` \
                 or pass --creds USER:PASSWORD"
            )
        };
        match (sent, access) {
            (Sent::Basic(username), _) => RegistryError::WrongCredentials {
                host,
                username: username.clone(),
            },
            (Sent::Token(Some(username)), Access::Pull) => RegistryError::AccessDenied {
                host,
                repository,
                message: format!(
                    "user {username:?} is not allowed to pull it ({})",
                    registry_said()
                ),
            },
            (Sent::Token(Some(username)), Access::Push) => RegistryError::PushDenied {
                host,
                repository,
                detail: format!(
                    "user {username:?} is not allowed to push to it ({})",
                    registry_said()
                ),
            },
            (Sent::Token(Some(username)), Access::Catalog) => RegistryError::CatalogUnavailable {
                host,
                detail: format!(
                    "user {username:?} is not allowed to list it ({})",
                    registry_said()
                ),
            },
            (Sent::Token(None) | Sent::Nothing, Access::Pull) => {
                RegistryError::AuthenticationRequired { host, repository }
            }
            (Sent::Token(None) | Sent::Nothing, Access::Push) => RegistryError::PushDenied {
                detail: no_credentials(),
                host,
                repository,
            },
            (Sent::Token(None) | Sent::Nothing, Access::Catalog) => {
                RegistryError::CatalogUnavailable {
                    detail: no_credentials(),
                    host,
                }
            }
        }
    }

    /// The `Authorization` value for a request under `challenge`, and what it carries.
    async fn authorization(
        &self,
        state: &HostState,
        reference: &Reference,
        challenge: Option<&Challenge>,
        scopes: &[String],
        fresh: bool,
    ) -> Result<(Option<HeaderValue>, Sent), RegistryError> {
        match challenge {
            None => Ok((None, Sent::Nothing)),
            Some(Challenge::Basic) => match self.credential_for(state, reference).await? {
                Some(credential) => Ok((
                    Some(credential.basic_header()?),
                    Sent::Basic(credential.username().to_string()),
                )),
                None => Ok((None, Sent::Nothing)),
            },
            Some(Challenge::Bearer(bearer)) => {
                let key = scopes.join(" ");
                let _one_at_a_time = state.token_lock.lock().await;
                let credential = self.credential_for(state, reference).await?;
                let sent = Sent::Token(credential.as_ref().map(|c| c.username().to_string()));
                if !fresh {
                    if let Some(token) = self.inner.tokens.get(&state.host, &key) {
                        return Ok((Some(bearer_value(&token)?), sent));
                    }
                }
                let token = fetch_token(
                    &self.inner.transport,
                    &reference.registry,
                    bearer,
                    scopes,
                    credential.as_ref(),
                )
                .await?;
                let value = bearer_value(&token.value)?;
                self.inner
                    .tokens
                    .put(&state.host, &key, token.value, token.lifetime);
                Ok((Some(value), sent))
            }
        }
    }

    /// Credentials for a repository, looked up once (helpers can be slow).
    async fn credential_for(
        &self,
        state: &HostState,
        reference: &Reference,
    ) -> Result<Option<Credential>, RegistryError> {
        let mut cache = state.credentials.lock().await;
        if let Some(found) = cache.get(&reference.repository) {
            return Ok(found.clone());
        }
        let found = self
            .inner
            .credentials
            .lookup(&reference.registry, &reference.repository)
            .await?;
        cache.insert(reference.repository.clone(), found.clone());
        Ok(found)
    }

    /// The error for a non-success answer that authentication did not explain.
    async fn status_error(
        &self,
        reference: &Reference,
        fetching: Fetching<'_>,
        response: Response,
    ) -> RegistryError {
        let host = reference.registry.clone();
        let repository = reference.repository.clone();
        let status = response.status();
        let content_type = header_string(response.headers(), CONTENT_TYPE.as_str());
        let body = read_limited(response, SMALL_BODY_LIMIT)
            .await
            .unwrap_or_default();
        if looks_like_html(content_type.as_deref(), &body) {
            return RegistryError::NotRegistry {
                host,
                answered: "HTML".to_string(),
            };
        }
        let oci = parse_error_body(&body);
        let code = oci.as_ref().map(|e| e.code.as_str()).unwrap_or("");
        let registry_said = describe_error_body(status, &body);
        match &fetching {
            Fetching::PushManifest(target) => match (code, status) {
                ("NAME_UNKNOWN", _) => {}
                ("DENIED" | "UNAUTHORIZED", _) | ("", StatusCode::FORBIDDEN) => {
                    return RegistryError::PushDenied {
                        host,
                        repository,
                        detail: registry_said,
                    }
                }
                (_, StatusCode::METHOD_NOT_ALLOWED) => {
                    return RegistryError::ManifestRejected {
                        host,
                        repository,
                        target: target.to_string(),
                        reason: format!(
                            "the registry does not accept pushes here ({})",
                            status_text(status)
                        ),
                    }
                }
                (
                    "MANIFEST_INVALID"
                    | "MANIFEST_BLOB_UNKNOWN"
                    | "MANIFEST_UNVERIFIED"
                    | "BLOB_UNKNOWN"
                    | "TAG_INVALID"
                    | "NAME_INVALID"
                    | "SIZE_INVALID"
                    | "DIGEST_INVALID"
                    | "UNSUPPORTED",
                    _,
                )
                | ("", StatusCode::BAD_REQUEST) => {
                    let reason = match &oci {
                        Some(e) if !e.code.is_empty() => {
                            format!("{}: {registry_said}", error::registry_said(&e.code))
                        }
                        _ => registry_said,
                    };
                    return RegistryError::ManifestRejected {
                        host,
                        repository,
                        target: target.to_string(),
                        reason,
                    };
                }
                _ => {}
            },
            Fetching::Catalog
                if matches!(code, "DENIED" | "UNAUTHORIZED" | "UNSUPPORTED")
                    || status == StatusCode::FORBIDDEN
                    || status == StatusCode::NOT_FOUND =>
            {
                return RegistryError::CatalogUnavailable {
                    host,
                    detail: format!("it answered {registry_said}"),
                };
            }
            _ => {}
        }
        match (code, &fetching) {
            ("NAME_UNKNOWN", _) => return RegistryError::RepositoryUnknown { host, repository },
            ("MANIFEST_UNKNOWN", Fetching::Manifest(target)) => {
                return self.manifest_unknown(reference, target).await
            }
            ("", Fetching::Manifest(target)) if status == StatusCode::NOT_FOUND => {
                return self.manifest_unknown(reference, target).await
            }
            ("BLOB_UNKNOWN", Fetching::Blob(digest)) | ("", Fetching::Blob(digest))
                if status == StatusCode::NOT_FOUND =>
            {
                return RegistryError::BlobUnknown {
                    host,
                    repository,
                    digest: (*digest).clone(),
                }
            }
            ("DENIED", _) => {
                return RegistryError::AccessDenied {
                    host,
                    repository,
                    message: describe_error_body(status, &body),
                }
            }
            ("", _) if status == StatusCode::FORBIDDEN => {
                return RegistryError::AccessDenied {
                    host,
                    repository,
                    message: status_text(status),
                }
            }
            ("UNAUTHORIZED", _) => {
                return RegistryError::AuthenticationRequired { host, repository }
            }
            ("TOOMANYREQUESTS", _) => {
                return RegistryError::RateLimited {
                    host,
                    attempts: 1,
                    retry_after: None,
                    message: oci
                        .map(|e| error::registry_said(&e.message))
                        .filter(|m| !m.is_empty()),
                }
            }
            _ => {}
        }
        RegistryError::Status {
            host,
            what: fetching.describe(&repository),
            status: status.as_u16(),
            code: oci
                .as_ref()
                .map(|e| error::registry_said(&e.code))
                .filter(|c| !c.is_empty()),
            message: describe_error_body(status, &body),
        }
    }

    /// A manifest is unknown: say whether the repository exists, and which tags it has.
    async fn manifest_unknown(&self, reference: &Reference, target: &Target) -> RegistryError {
        let host = reference.registry.clone();
        let repository = reference.repository.clone();
        let mut available_tags = Vec::new();
        let url_path = format!("tags/list?n={}", TAGS_SHOWN * 10);
        if let Ok(response) = self.repo_get(reference, &url_path, HeaderMap::new()).await {
            let status = response.status();
            let body = read_limited(response, SMALL_BODY_LIMIT)
                .await
                .unwrap_or_default();
            if status.is_success() {
                #[derive(Deserialize)]
                struct TagList {
                    #[serde(default)]
                    tags: Option<Vec<String>>,
                }
                if let Ok(list) = serde_json::from_slice::<TagList>(&body) {
                    let tags = list.tags.unwrap_or_default();
                    if tags.is_empty() && matches!(target, Target::Tag(_)) {
                        return RegistryError::RepositoryUnknown { host, repository };
                    }
                    available_tags = tags
                        .iter()
                        .take(TAGS_SHOWN)
                        .map(|t| error::registry_said(t))
                        .collect();
                }
            } else if parse_error_body(&body).is_some_and(|e| e.code == "NAME_UNKNOWN") {
                return RegistryError::RepositoryUnknown { host, repository };
            }
        }
        if matches!(target, Target::Digest(_)) {
            available_tags.clear();
        }
        RegistryError::ManifestUnknown {
            host,
            repository,
            target: target.to_string(),
            available_tags,
        }
    }
}

/// What a request needs the registry to allow: it decides the token scope asked for and how a
/// refusal is worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read a repository (`repository:NAME:pull`).
    Pull,
    /// Write to a repository (`repository:NAME:pull,push`).
    Push,
    /// List the repositories of the registry (`registry:catalog:*`).
    Catalog,
}

impl Access {
    fn scope(self, repository: &str) -> String {
        match self {
            Access::Pull => pull_scope(repository),
            Access::Push => push_scope(repository),
            Access::Catalog => catalog_scope(),
        }
    }
}

/// One API request before authentication is attached.
pub(crate) struct ApiRequest<'a> {
    /// GET, HEAD, PUT, …
    pub method: Method,
    /// A path under the registry's base URL (`v2/…`) or a same-origin absolute URL.
    pub target: &'a str,
    /// Extra headers (`Accept`, `Content-Type`, `Range`).
    pub headers: HeaderMap,
    /// The body, sent again on every retry.
    pub body: Option<bytes::Bytes>,
}

/// What a failed request was fetching, for its error.
enum Fetching<'a> {
    Manifest(&'a Target),
    Blob(&'a Digest),
    Tags,
    Catalog,
    PushManifest(&'a Target),
}

impl Fetching<'_> {
    fn describe(&self, repository: &str) -> String {
        match self {
            Fetching::Manifest(target) => format!("the manifest {repository}:{target}"),
            Fetching::Blob(digest) => format!("blob {digest} of {repository}"),
            Fetching::Tags => format!("the tag list of {repository}"),
            Fetching::Catalog => "the catalog".to_string(),
            Fetching::PushManifest(target) => format!("pushing the manifest {repository}:{target}"),
        }
    }
}

/// Read a `GET /v2/` answer: a registry (with its challenge), or something else.
async fn read_ping(response: Response) -> Ping {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = header_string(&headers, CONTENT_TYPE.as_str());
    let body = read_limited(response, SMALL_BODY_LIMIT)
        .await
        .unwrap_or_default();
    if looks_like_html(content_type.as_deref(), &body) {
        return Ping::NotRegistry {
            answered: "HTML".to_string(),
            html: true,
        };
    }
    let is_api = headers.contains_key("docker-distribution-api-version");
    if status == StatusCode::OK || status == StatusCode::UNAUTHORIZED || is_api {
        return Ping::Registry(preferred_challenge(challenges_of(&headers)));
    }
    let what = match content_type {
        Some(ct) => format!("{} ({ct})", status_text(status)),
        None => status_text(status),
    };
    Ping::NotRegistry {
        answered: what,
        html: false,
    }
}

/// Bearer is preferred over Basic when a registry offers both, as Docker does.
fn preferred_challenge(challenges: Vec<Challenge>) -> Option<Challenge> {
    let mut basic = None;
    for challenge in challenges {
        match challenge {
            Challenge::Bearer(_) => return Some(challenge),
            Challenge::Basic => basic = Some(Challenge::Basic),
        }
    }
    basic
}

/// Add the scopes a challenge names (space-separated) to ours.
fn add_scopes(scopes: &mut Vec<String>, named: Option<&str>) {
    for scope in named
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
}

fn v2(base: &Url) -> Result<Url, RegistryError> {
    base.join("v2/").map_err(|e| RegistryError::Setup {
        detail: e.to_string(),
    })
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_wins_over_basic() {
        let chosen = preferred_challenge(vec![
            Challenge::Basic,
            Challenge::Bearer(auth::BearerChallenge {
                realm: "r".into(),
                ..Default::default()
            }),
        ]);
        assert!(matches!(chosen, Some(Challenge::Bearer(_))));
        assert_eq!(
            preferred_challenge(vec![Challenge::Basic]),
            Some(Challenge::Basic)
        );
        assert_eq!(preferred_challenge(vec![]), None);
    }

    #[test]
    fn scopes_are_merged_without_duplicates() {
        let mut scopes = vec!["repository:a:pull".to_string()];
        add_scopes(&mut scopes, Some("repository:a:pull repository:b:pull"));
        add_scopes(&mut scopes, None);
        assert_eq!(scopes, vec!["repository:a:pull", "repository:b:pull"]);
    }

    #[test]
    fn options_debug_hides_the_password() {
        let options = RegistryOptions {
            credentials: Some(("alice".into(), "hunter2".into())),
            ..RegistryOptions::default()
        };
        let text = format!("{options:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn docker_config_option_accepts_a_dir_or_a_file() {
        let dir = RegistryOptions {
            docker_config: Some(PathBuf::from("/x/docker")),
            auth_files: Some(vec![]),
            ..RegistryOptions::default()
        };
        assert_eq!(
            dir.credential_sources().docker_config,
            Some(PathBuf::from("/x/docker/config.json"))
        );
        assert!(dir
            .certs_dirs()
            .contains(&PathBuf::from("/x/docker/certs.d")));
        let file = RegistryOptions {
            docker_config: Some(PathBuf::from("/x/my.json")),
            ..RegistryOptions::default()
        };
        assert_eq!(
            file.credential_sources().docker_config,
            Some(PathBuf::from("/x/my.json"))
        );
    }
}
