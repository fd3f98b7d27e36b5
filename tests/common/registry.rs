//! Real components for registry tests: the CNCF registry (Debian `docker-registry`) started on a
//! free loopback port with no auth, htpasswd Basic or token auth; a token issuer that signs real
//! RS256 JWTs with the `openssl` CLI; a file server behind the registry's `redirect` storage
//! middleware that refuses any request carrying `Authorization`; a fault proxy that misbehaves on
//! demand in front of the real registry; and a tiny HTTP/1.1 server they are all built on.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use layerscope::registry::RegistryOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Client options

/// Registry client options that read nothing of this machine (no Docker config, auth files,
/// credential helpers or CA directories; `dir` stands in for them) and retry quickly.
pub fn isolated_options(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        docker_config: Some(dir.join("no-docker-config")),
        auth_files: Some(vec![]),
        credential_helper_path: Some(dir.join("no-helpers").into_os_string()),
        certs_dirs: Some(vec![]),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(20),
        ..RegistryOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory whose name starts with `tag`.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "layerscope-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server: one request per connection, `Connection: close`.

/// A request as the stub server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Whether this asks for the blob `digest` (`…/blobs/sha256:…`).
    pub fn is_blob(&self, digest: &str) -> bool {
        self.path().ends_with(&format!("/blobs/{digest}"))
    }

    /// Every decoded value of a query parameter.
    pub fn query(&self, key: &str) -> Vec<String> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_values(query, key)
    }

    /// The user of a `Basic` Authorization header, and the password.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((user.to_string(), pass.to_string()))
    }
}

/// Every decoded value of `key` in an `application/x-www-form-urlencoded` string.
pub fn form_values(form: &str, key: &str) -> Vec<String> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a stub server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (Content-Length and Connection are added).
    pub headers: Vec<(String, String)>,
    /// The body bytes actually sent.
    pub body: Vec<u8>,
    /// A `Content-Length` to announce instead of the body's length (to cut a response short).
    pub announced_length: Option<usize>,
    /// Close the connection without answering at all.
    pub hang_up: bool,
    /// Send the body in pieces of this many bytes with this pause before each later piece.
    pub pace: Option<(usize, Duration)>,
    /// Stall: hold the connection open without a word, or after this many body bytes.
    pub stall: Option<Stall>,
}

/// How a stub server stalls (the connection stays open until the client goes, or 10 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Read the request, answer nothing.
    Silent,
    /// Send the headers and this many body bytes, then nothing more.
    After(usize),
}

impl Reply {
    /// An empty answer with `status`.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            announced_length: None,
            hang_up: false,
            pace: None,
            stall: None,
        }
    }

    /// Hold the connection open without answering.
    pub fn silent() -> Reply {
        Reply {
            stall: Some(Stall::Silent),
            ..Reply::new(200)
        }
    }

    /// Close the connection without a word, as a crashing server or a reset does.
    pub fn hang_up() -> Reply {
        Reply {
            hang_up: true,
            ..Reply::new(500)
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(value).unwrap())
    }
}

/// The boxed async handler a stub server calls per request.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Make a [`Handler`] from an async closure.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |request| Box::pin(f(request)))
}

/// A stub HTTP server on a free loopback port; stops when dropped.
pub struct StubServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl StubServer {
    /// Listen on `127.0.0.1:0` and answer every request with `handler`.
    pub async fn start(handler: Handler) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, handler).await;
                });
            }
        });
        StubServer { addr, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(mut stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("stub read timeout"))??;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        // Not HTTP (a TLS ClientHello): answer garbage for the client's TLS layer and close.
        if !buffer[0].is_ascii_uppercase() {
            stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
            return Ok(());
        }
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buffer.len() > 256 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let reply = handler(Request {
        method,
        target,
        headers,
        body,
    })
    .await;
    if reply.hang_up {
        return Ok(());
    }
    if reply.stall == Some(Stall::Silent) {
        return hold(stream).await;
    }
    let reason = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let announced = reply.announced_length.unwrap_or(reply.body.len());
    out.push_str(&format!(
        "Content-Length: {announced}\r\nConnection: close\r\n\r\n"
    ));
    stream.write_all(out.as_bytes()).await?;
    if let Some(Stall::After(n)) = reply.stall {
        stream
            .write_all(&reply.body[..n.min(reply.body.len())])
            .await?;
        stream.flush().await?;
        return hold(stream).await;
    }
    match reply.pace {
        Some((piece, pause)) => {
            for (i, part) in reply.body.chunks(piece.max(1)).enumerate() {
                if i > 0 {
                    tokio::time::sleep(pause).await;
                }
                stream.write_all(part).await?;
                stream.flush().await?;
            }
        }
        None => stream.write_all(&reply.body).await?,
    }
    stream.flush().await?;
    // Closing with fewer bytes than announced cuts the response short.
    let _ = stream.shutdown().await;
    Ok(())
}

/// Keep a connection open, sending nothing, until the client closes it (or 10 minutes pass).
async fn hold(mut stream: TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(600), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The real registry

/// How the registry authenticates.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// htpasswd (bcrypt) users, checked with HTTP Basic.
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from this issuer.
    Token(IssuerInfo),
}

/// What the registry needs to trust a token issuer.
#[derive(Debug, Clone)]
pub struct IssuerInfo {
    /// The token endpoint.
    pub realm: String,
    /// The `service` the tokens are for (the JWT audience).
    pub service: String,
    /// The JWT issuer.
    pub issuer: String,
    /// PEM certificate the tokens are signed under.
    pub cert: PathBuf,
}

/// Options for [`Registry::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Authentication.
    pub auth: RegistryAuth,
    /// Answer blob GETs with a redirect to a file server that refuses `Authorization`.
    pub redirect_blobs: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Require TLS client certificates signed by this CA (`http.tls.clientcas`).
    pub client_ca: Option<PathBuf>,
}

/// A running `docker-registry`, killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The storage root.
    pub storage: PathBuf,
    /// Whether it serves HTTPS.
    pub tls: bool,
    /// The redirect target, when blobs are redirected.
    pub file_server: Option<BlobFileServer>,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

/// The registry binary: `$LAYERSCOPE_REGISTRY_BIN`, else `docker-registry` or `registry` on PATH.
pub fn registry_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("LAYERSCOPE_REGISTRY_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    for name in ["docker-registry", "registry"] {
        if let Some(path) = find_on_path(name) {
            return path;
        }
    }
    panic!(
        "no registry binary found: the registry tests start the CNCF registry (Debian package \
         docker-registry). Run the README test command `scripts/test`, which installs it, or set \
         LAYERSCOPE_REGISTRY_BIN to a `registry` binary."
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    listener.local_addr().expect("local addr").port()
}

impl Registry {
    /// A registry without authentication.
    pub async fn start() -> Registry {
        Registry::start_with(RegistryConfig::default()).await
    }

    /// A registry with `config`.
    pub async fn start_with(config: RegistryConfig) -> Registry {
        let binary = registry_binary();
        let dir = TempDir::new("registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let file_server = if config.redirect_blobs {
            Some(BlobFileServer::start(storage.clone()).await)
        } else {
            None
        };
        let auth_yaml = match &config.auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd(users) => {
                let path = dir.path().join("htpasswd");
                let mut lines = String::new();
                for (user, pass) in users {
                    let out = Command::new("htpasswd")
                        .args(["-Bbn", user, pass])
                        .output()
                        .expect(
                            "run htpasswd (apache2-utils; `scripts/test` installs it) for the Basic-auth registry",
                        );
                    assert!(out.status.success(), "htpasswd failed");
                    lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                    lines.push('\n');
                }
                std::fs::write(&path, lines).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: layerscope-test\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token(issuer) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                issuer.realm,
                issuer.service,
                issuer.issuer,
                issuer.cert.display()
            ),
        };
        let middleware_yaml = match &file_server {
            Some(fs) => format!(
                "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {}/\n",
                fs.server.url()
            ),
            None => String::new(),
        };
        let mut tls_yaml = match &config.tls {
            Some(tls) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.server_cert.display(),
                tls.server_key.display()
            ),
            None => String::new(),
        };
        if let Some(client_ca) = &config.client_ca {
            tls_yaml.push_str(&format!(
                "    clientcas:\n      - {}\n",
                client_ca.display()
            ));
        }
        let log = dir.path().join("registry.log");
        for _attempt in 0..8 {
            let port = free_port();
            let yaml = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: layerscope-test-secret\n{tls_yaml}{auth_yaml}{middleware_yaml}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, yaml).expect("write registry config");
            let log_file = std::fs::File::create(&log).expect("registry log");
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            match wait_ready(&mut child, &log).await {
                Ready::Yes => {
                    return Registry {
                        host: format!("127.0.0.1:{port}"),
                        storage,
                        tls: config.tls.is_some(),
                        file_server,
                        child,
                        log,
                        _dir: dir,
                    }
                }
                Ready::PortTaken => {
                    let _ = child.wait();
                    continue;
                }
            }
        }
        panic!("the registry could not find a free port after 8 tries");
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// A reference string `127.0.0.1:PORT/REPO:TAG` (or `@digest` when `tag` has a `:`).
    pub fn reference(&self, repository: &str, tag_or_digest: &str) -> String {
        if tag_or_digest.contains(':') {
            format!("{}/{repository}@{tag_or_digest}", self.host)
        } else {
            format!("{}/{repository}:{tag_or_digest}", self.host)
        }
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

enum Ready {
    Yes,
    PortTaken,
}

/// Wait until the registry logs that it listens; a bind race shows as "address already in use".
async fn wait_ready(child: &mut Child, log_path: &Path) -> Ready {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.contains("listening on") {
            return Ready::Yes;
        }
        if let Ok(Some(status)) = child.try_wait() {
            if log.contains("address already in use") {
                return Ready::PortTaken;
            }
            panic!("the registry exited ({status}) before listening; its log:\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the registry did not start within 30 s; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect target

/// A file server over the registry's storage, the target of its `redirect` middleware. Like a
/// presigned-URL CDN, it refuses (403) any request that carries `Authorization`.
pub struct BlobFileServer {
    server: StubServer,
    log: Arc<Mutex<Vec<FileRequest>>>,
}

/// One request the file server saw.
#[derive(Debug, Clone)]
pub struct FileRequest {
    /// The path asked for.
    pub path: String,
    /// Whether it carried an `Authorization` header (and was refused).
    pub had_authorization: bool,
}

impl BlobFileServer {
    async fn start(root: PathBuf) -> BlobFileServer {
        let log: Arc<Mutex<Vec<FileRequest>>> = Arc::default();
        let seen = log.clone();
        let server = StubServer::start(handler(move |request: Request| {
            let root = root.clone();
            let seen = seen.clone();
            async move {
                let had_authorization = request.header("authorization").is_some();
                seen.lock().unwrap().push(FileRequest {
                    path: request.path().to_string(),
                    had_authorization,
                });
                if had_authorization {
                    return Reply::new(403).body("Authorization is not accepted here");
                }
                let relative = request.path().trim_start_matches('/');
                if relative.split('/').any(|c| c == "..") {
                    return Reply::new(400);
                }
                match std::fs::read(root.join(relative)) {
                    Ok(bytes) => Reply::new(200)
                        .header("Content-Type", "application/octet-stream")
                        .body(bytes),
                    Err(_) => Reply::new(404),
                }
            }
        }))
        .await;
        BlobFileServer { server, log }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<FileRequest> {
        self.log.lock().unwrap().clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.host()
    }
}

// ---------------------------------------------------------------------------------------------
// Token issuer

/// Which field carries the token in the issuer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenField {
    /// `token` only.
    #[default]
    Token,
    /// `access_token` only (OAuth2 style).
    AccessToken,
    /// Both.
    Both,
}

/// How the token issuer behaves.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Users and passwords accepted with Basic.
    pub users: Vec<(String, String)>,
    /// Identity (refresh) tokens accepted by OAuth2 POST, and the user each stands for. When
    /// `oauth` is false they are accepted as Basic passwords instead.
    pub identity_tokens: Vec<(String, String)>,
    /// Whether anonymous requests get pull access.
    pub anonymous_pull: bool,
    /// `expires_in` to announce (`None`: leave it out).
    pub expires_in: Option<u64>,
    /// Field name of the token.
    pub token_field: TokenField,
    /// The first N token requests get a token with no access at all.
    pub deny_first: usize,
    /// Whether OAuth2 POST is supported (else POST answers 404).
    pub oauth: bool,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            users: vec![("alice".to_string(), "wonderland".to_string())],
            identity_tokens: Vec::new(),
            anonymous_pull: false,
            expires_in: Some(300),
            token_field: TokenField::Token,
            deny_first: 0,
            oauth: true,
        }
    }
}

/// One request the issuer answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// `grant_type` of a POST.
    pub grant_type: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether the token granted any access.
    pub granted: bool,
}

/// A token service that signs real RS256 JWTs the registry verifies.
pub struct TokenIssuer {
    server: StubServer,
    /// The issuer name in the JWTs.
    pub issuer: String,
    /// The service (audience) name.
    pub service: String,
    cert: PathBuf,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    denied_left: Arc<AtomicUsize>,
    _dir: TempDir,
}

struct Signer {
    key: PathBuf,
    x5c: String,
    dir: PathBuf,
    counter: AtomicUsize,
}

impl TokenIssuer {
    /// Start an issuer with `config`; it makes its own RSA key and self-signed certificate.
    pub async fn start(config: IssuerConfig) -> TokenIssuer {
        let dir = TempDir::new("issuer");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run_openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&cert),
            "-days",
            "2",
            "-subj",
            "/CN=layerscope-test-issuer",
        ]);
        let der = dir.path().join("cert.der");
        run_openssl(&[
            "x509",
            "-in",
            path_str(&cert),
            "-outform",
            "DER",
            "-out",
            path_str(&der),
        ]);
        let x5c = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).unwrap());
        let signer = Arc::new(Signer {
            key,
            x5c,
            dir: dir.path().to_path_buf(),
            counter: AtomicUsize::new(0),
        });
        let issuer = "layerscope-test-issuer".to_string();
        let service = "layerscope-test-registry".to_string();
        let log: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let denied_left = Arc::new(AtomicUsize::new(config.deny_first));
        let (seen, cfg, iss) = (log.clone(), Arc::new(config), issuer.clone());
        let denied = denied_left.clone();
        let server = StubServer::start(handler(move |request: Request| {
            let (seen, cfg, signer, iss) = (seen.clone(), cfg.clone(), signer.clone(), iss.clone());
            let denied_left = denied.clone();
            async move {
                let (reply, record) =
                    answer_token(&request, &cfg, &signer, &iss, &denied_left).await;
                seen.lock().unwrap().push(record);
                reply
            }
        }))
        .await;
        TokenIssuer {
            server,
            issuer,
            service,
            cert,
            log,
            denied_left,
            _dir: dir,
        }
    }

    /// Make the next `n` tokens grant no access at all.
    pub fn deny_next(&self, n: usize) {
        self.denied_left.store(n, Ordering::SeqCst);
    }

    /// The token endpoint URL.
    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }

    /// What the registry config needs.
    pub fn info(&self) -> IssuerInfo {
        IssuerInfo {
            realm: self.realm(),
            service: self.service.clone(),
            issuer: self.issuer.clone(),
            cert: self.cert.clone(),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap().clone()
    }
}

async fn answer_token(
    request: &Request,
    config: &IssuerConfig,
    signer: &Signer,
    issuer: &str,
    denied_left: &AtomicUsize,
) -> (Reply, TokenRequest) {
    let mut record = TokenRequest {
        method: request.method.clone(),
        user: None,
        scopes: Vec::new(),
        grant_type: None,
        status: 200,
        granted: false,
    };
    let unauthorized = |record: &mut TokenRequest| {
        record.status = 401;
        Reply::json(
            401,
            &serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}),
        )
    };
    let service;
    match request.method.as_str() {
        "POST" => {
            if !config.oauth {
                record.status = 404;
                return (Reply::new(404).body("404 page not found"), record);
            }
            let form = String::from_utf8_lossy(&request.body).into_owned();
            record.grant_type = form_values(&form, "grant_type").into_iter().next();
            record.scopes = form_values(&form, "scope")
                .iter()
                .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
                .filter(|s| !s.is_empty())
                .collect();
            service = form_values(&form, "service")
                .into_iter()
                .next()
                .unwrap_or_default();
            let refresh = form_values(&form, "refresh_token").into_iter().next();
            match (record.grant_type.as_deref(), refresh) {
                (Some("refresh_token"), Some(token)) => {
                    match config.identity_tokens.iter().find(|(t, _)| *t == token) {
                        Some((_, user)) => record.user = Some(user.clone()),
                        None => {
                            record.status = 400;
                            return (
                                Reply::json(400, &serde_json::json!({"error":"invalid_grant"})),
                                record,
                            );
                        }
                    }
                }
                _ => {
                    record.status = 400;
                    return (
                        Reply::json(400, &serde_json::json!({"error":"unsupported_grant_type"})),
                        record,
                    );
                }
            }
        }
        "GET" => {
            record.scopes = request.query("scope");
            service = request
                .query("service")
                .into_iter()
                .next()
                .unwrap_or_default();
            if let Some((user, pass)) = request.basic_auth() {
                let password_ok = config.users.iter().any(|(u, p)| *u == user && *p == pass);
                let token_ok =
                    !config.oauth && config.identity_tokens.iter().any(|(t, _)| *t == pass);
                if !password_ok && !token_ok {
                    let reply = unauthorized(&mut record);
                    return (reply, record);
                }
                record.user = Some(user);
            }
        }
        _ => {
            record.status = 405;
            return (Reply::new(405), record);
        }
    }
    let deny = denied_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut access = Vec::new();
    if !deny {
        for scope in &record.scopes {
            let parts: Vec<&str> = scope.splitn(3, ':').collect();
            let [kind, name, actions] = parts.as_slice() else {
                continue;
            };
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| record.user.is_some() || (config.anonymous_pull && *a == "pull"))
                .collect();
            if !granted.is_empty() {
                access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
            }
        }
    }
    record.granted = !access.is_empty();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lifetime = config.expires_in.unwrap_or(60);
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": record.user.clone().unwrap_or_default(),
        "aud": service,
        "exp": now + lifetime,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("{now}-{}", signer.counter.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let token = sign_jwt(signer, &claims).await;
    let mut body = serde_json::Map::new();
    match config.token_field {
        TokenField::Token => {
            body.insert("token".into(), token.into());
        }
        TokenField::AccessToken => {
            body.insert("access_token".into(), token.into());
        }
        TokenField::Both => {
            body.insert("token".into(), token.clone().into());
            body.insert("access_token".into(), token.into());
        }
    }
    if let Some(expires_in) = config.expires_in {
        body.insert("expires_in".into(), expires_in.into());
    }
    (Reply::json(200, &serde_json::Value::Object(body)), record)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 JWT over `claims`, signed by `openssl dgst`.
async fn sign_jwt(signer: &Signer, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [signer.x5c]});
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    );
    let n = signer.counter.fetch_add(1, Ordering::Relaxed);
    let input_path = signer.dir.join(format!("input-{n}"));
    std::fs::write(&input_path, &signing_input).unwrap();
    let output = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&signer.key)
        .arg("-binary")
        .arg(&input_path)
        .output()
        .await
        .expect("run openssl dgst to sign a JWT");
    assert!(output.status.success(), "openssl dgst failed");
    let _ = std::fs::remove_file(&input_path);
    format!("{signing_input}.{}", b64url(&output.stdout))
}

/// A temp path as `&str` (the test harness makes only UTF-8 ones).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Run the `openssl` CLI, failing the test with its stderr when it fails.
pub fn run_openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (`scripts/test` installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// TLS material

/// A test CA and a server certificate for `127.0.0.1` and `localhost` signed by it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (what a client must trust).
    pub ca_cert: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

/// Make a CA and a server certificate in `dir` with the `openssl` CLI.
pub fn generate_tls(dir: &Path) -> TlsFiles {
    let p = |name: &str| dir.join(name);
    let (ca_key, ca_cert) = (p("ca.key"), p("ca.crt"));
    let (key, csr, cert, ext) = (
        p("server.key"),
        p("server.csr"),
        p("server.crt"),
        p("ext.cnf"),
    );
    run_openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        path_str(&ca_key),
        "-out",
        path_str(&ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=layerscope test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run_openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&csr),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_openssl(&[
        "x509",
        "-req",
        "-in",
        path_str(&csr),
        "-CA",
        path_str(&ca_cert),
        "-CAkey",
        path_str(&ca_key),
        "-CAcreateserial",
        "-out",
        path_str(&cert),
        "-days",
        "2",
        "-extfile",
        path_str(&ext),
    ]);
    TlsFiles {
        ca_cert,
        server_cert: cert,
        server_key: key,
    }
}

// ---------------------------------------------------------------------------------------------
// Fault proxy

/// A rule: given the request and its number (0-based, all requests counted), answer instead of
/// the registry (`Some`), or pass it through (`None`).
pub type Rule = Arc<dyn Fn(&Request, usize) -> Option<Reply> + Send + Sync>;
/// A rewrite of the registry's answer before it is passed on.
pub type Rewrite = Arc<dyn Fn(&Request, Reply) -> Reply + Send + Sync>;

/// A proxy in front of a real registry that misbehaves on demand.
pub struct FaultProxy {
    server: StubServer,
    log: Arc<Mutex<Vec<(String, Request, u16)>>>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://127.0.0.1:PORT`), applying `rule` first.
    pub async fn start(upstream: &str, rule: Rule) -> FaultProxy {
        FaultProxy::start_with_rewrite(upstream, rule, Arc::new(|_, reply| reply)).await
    }

    /// Like [`FaultProxy::start`], rewriting every passed-through answer with `rewrite`.
    pub async fn start_with_rewrite(upstream: &str, rule: Rule, rewrite: Rewrite) -> FaultProxy {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = upstream.trim_end_matches('/').to_string();
        let counter = Arc::new(AtomicUsize::new(0));
        let log: Arc<Mutex<Vec<(String, Request, u16)>>> = Arc::default();
        let seen = log.clone();
        let server = StubServer::start(handler(move |request: Request| {
            let (client, upstream, rule, rewrite) = (
                client.clone(),
                upstream.clone(),
                rule.clone(),
                rewrite.clone(),
            );
            let (counter, seen) = (counter.clone(), seen.clone());
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (source, reply) = match rule(&request, n) {
                    Some(reply) => ("fault".to_string(), reply),
                    None => {
                        let reply = forward(&client, &upstream, &request).await;
                        ("upstream".to_string(), rewrite(&request, reply))
                    }
                };
                seen.lock().unwrap().push((source, request, reply.status));
                reply
            }
        }))
        .await;
        FaultProxy { server, log }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// Every request so far: who answered (`fault` or `upstream`), the request, the status.
    pub fn requests(&self) -> Vec<(String, Request, u16)> {
        self.log.lock().unwrap().clone()
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, request: &Request) -> Reply {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut builder = client.request(method, format!("{upstream}{}", request.target));
    for (k, v) in &request.headers {
        if !matches!(k.as_str(), "host" | "connection" | "content-length") {
            builder = builder.header(k, v);
        }
    }
    builder = builder.body(request.body.clone());
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Reply::new(502).body(format!("proxy: {e}")),
    };
    let mut reply = Reply::new(response.status().as_u16());
    for (k, v) in response.headers() {
        if !matches!(
            k.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            reply = reply.header(k.as_str(), v.to_str().unwrap_or(""));
        }
    }
    let body = response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    reply.body(body)
}
