//! Where registry credentials come from, in order: `--creds`, `REGISTRY_AUTH_FILE`, Docker's
//! `config.json` (`credHelpers`, `credsStore` through `docker-credential-NAME get`, and `auths`
//! entries), then `${XDG_RUNTIME_DIR}/containers/auth.json` (podman's format). Keys match as
//! Docker matches them (`https://host/v1/`, `host`, `http://host`); podman's per-repository keys
//! (`host/namespace`) match most specific first. Secrets are never printed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::auth::basic_value;
use super::error::RegistryError;
use crate::reference::{DOCKER_HUB, DOCKER_HUB_CREDENTIAL_KEY};

/// A credential helper that does not answer in this long is treated as failed.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The user name credential helpers use to mark an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or personal access token).
    Basic {
        /// User name.
        username: String,
        /// Password; never printed.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token service.
    IdentityToken {
        /// User name, when one was stored beside the token.
        username: Option<String>,
        /// The refresh token; never printed.
        token: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

impl Credential {
    /// The user name to name in messages.
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } => username,
            Credential::IdentityToken { username, .. } => {
                username.as_deref().unwrap_or(IDENTITY_TOKEN_USER)
            }
        }
    }

    /// The `Authorization: Basic` value for these credentials. An identity token goes as the
    /// password, which is what token services that lack OAuth2 accept.
    pub(crate) fn basic_header(&self) -> Result<HeaderValue, RegistryError> {
        match self {
            Credential::Basic { username, password } => basic_value(username, password),
            Credential::IdentityToken { username, token } => {
                basic_value(username.as_deref().unwrap_or(IDENTITY_TOKEN_USER), token)
            }
        }
    }
}

/// The places credentials are looked up, fixed when the client is made.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// Credentials given on the command line; used for every registry.
    pub explicit: Option<(String, String)>,
    /// Docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// Podman-style auth files, read before `docker_config` (the `REGISTRY_AUTH_FILE` one).
    pub auth_files_first: Vec<PathBuf>,
    /// Podman-style auth files read after `docker_config` (the `XDG_RUNTIME_DIR` one).
    pub auth_files_last: Vec<PathBuf>,
    /// The search path for `docker-credential-*` helpers (`$PATH` when `None`).
    pub helper_path: Option<OsString>,
}

/// Docker's `config.json` and podman's `auth.json` share this shape.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

impl CredentialSources {
    /// The usual places: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
    /// `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`.
    pub fn from_environment() -> Self {
        CredentialSources {
            explicit: None,
            docker_config: default_docker_config_dir().map(|d| d.join("config.json")),
            auth_files_first: std::env::var_os("REGISTRY_AUTH_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect(),
            auth_files_last: std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(|d| PathBuf::from(d).join("containers").join("auth.json"))
                .into_iter()
                .collect(),
            helper_path: None,
        }
    }

    /// Credentials for `repository` on `registry` (as in [`crate::reference::Reference`]), or
    /// `None` for anonymous access.
    pub async fn lookup(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some((username, password)) = &self.explicit {
            return Ok(Some(Credential::Basic {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        for path in &self.auth_files_first {
            if let Some(c) = self.lookup_file(path, registry, repository, true).await? {
                return Ok(Some(c));
            }
        }
        if let Some(path) = &self.docker_config {
            if let Some(c) = self.lookup_file(path, registry, repository, false).await? {
                return Ok(Some(c));
            }
        }
        for path in &self.auth_files_last {
            if let Some(c) = self.lookup_file(path, registry, repository, true).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    async fn lookup_file(
        &self,
        path: &Path,
        registry: &str,
        repository: &str,
        per_repository_keys: bool,
    ) -> Result<Option<Credential>, RegistryError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RegistryError::Credentials {
                    detail: format!("cannot read {}: {e}", path.display()),
                })
            }
        };
        let config: ConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Credentials {
                detail: format!("{} is not valid JSON: {e}", path.display()),
            })?;
        let hosts = host_aliases(registry);

        // credHelpers names a helper per registry; it wins over everything in the file.
        if let Some((_, helper)) = config.cred_helpers.iter().find(|(key, _)| {
            hosts
                .iter()
                .any(|h| key_hostname(key).eq_ignore_ascii_case(h))
        }) {
            return self.run_helper(helper, registry, true).await;
        }
        if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty()) {
            // A store copied from another machine may be missing here: fall back to the file.
            if let Some(c) = self.run_helper(store, registry, false).await? {
                return Ok(Some(c));
            }
        }
        let candidates = candidate_keys(&hosts, repository, per_repository_keys);
        for candidate in candidates {
            let found = config
                .auths
                .iter()
                .find(|(key, _)| normalise_key(key).eq_ignore_ascii_case(&candidate));
            if let Some((key, entry)) = found {
                if let Some(c) = entry_credential(entry, key, path)? {
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }

    /// Run `docker-credential-NAME get`. `None` when it has nothing for this registry, or (for
    /// a `credsStore` that `required` is false for) when the helper is not installed.
    async fn run_helper(
        &self,
        name: &str,
        registry: &str,
        required: bool,
    ) -> Result<Option<Credential>, RegistryError> {
        let program = format!("docker-credential-{name}");
        let Some(executable) = find_in_path(&program, self.helper_path.as_deref()) else {
            if required {
                return Err(RegistryError::Credentials {
                    detail: format!("the credential helper {program} is not on PATH"),
                });
            }
            return Ok(None);
        };
        let server = if registry == DOCKER_HUB {
            DOCKER_HUB_CREDENTIAL_KEY.to_string()
        } else {
            registry.to_string()
        };
        let helper_error = |detail: String| RegistryError::Credentials {
            detail: format!("{program} failed: {detail}"),
        };
        let mut child = tokio::process::Command::new(&executable)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| helper_error(format!("cannot start it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .await
                .map_err(|e| helper_error(format!("cannot write to it: {e}")))?;
        }
        let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| helper_error(format!("no answer within {}s", HELPER_TIMEOUT.as_secs())))?
            .map_err(|e| helper_error(e.to_string()))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            if said.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            let first_line = said.lines().next().unwrap_or("").trim().to_string();
            return Err(helper_error(format!(
                "it exited with {} ({first_line})",
                output.status
            )));
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
            .map_err(|e| helper_error(format!("its answer is not JSON: {e}")))?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        if answer.username == IDENTITY_TOKEN_USER {
            return Ok(Some(Credential::IdentityToken {
                username: None,
                token: answer.secret,
            }));
        }
        Ok(Some(Credential::Basic {
            username: answer.username,
            password: answer.secret,
        }))
    }
}

/// `$XDG_CONFIG_HOME`, else `~/.config`: where rootless Docker and Podman keep their per-user
/// configuration (daemon.json, certs.d).
pub fn user_config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })
}

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_docker_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".docker"))
}

/// The names a registry's credentials may be stored under.
fn host_aliases(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            "index.docker.io".to_string(),
            "docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ]
    } else {
        vec![registry.to_string()]
    }
}

/// Keys to try, most specific first: podman's `host/ns/repo`, `host/ns`, then `host`.
fn candidate_keys(hosts: &[String], repository: &str, per_repository: bool) -> Vec<String> {
    let mut keys = Vec::new();
    if per_repository {
        let parts: Vec<&str> = repository.split('/').collect();
        for n in (1..=parts.len()).rev() {
            for host in hosts {
                keys.push(format!("{host}/{}", parts[..n].join("/")));
            }
        }
    }
    keys.extend(hosts.iter().cloned());
    keys
}

/// A stored key as a host name, as Docker compares them: without scheme and path.
fn key_hostname(key: &str) -> &str {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

/// A stored key as `host[/path]`: scheme and Docker's `/v1/`-style API suffixes dropped, so
/// `https://host/v1/`, `http://host` and `host` compare equal while `host/ns` stays specific.
fn normalise_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    match without_scheme {
        // URL-style keys (Docker's) name a host; their path is an API version, not a namespace.
        Some(rest) => rest.split('/').next().unwrap_or(rest).to_string(),
        None => key.trim_end_matches('/').to_string(),
    }
}

fn entry_credential(
    entry: &AuthEntry,
    key: &str,
    path: &Path,
) -> Result<Option<Credential>, RegistryError> {
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| RegistryError::Credentials {
                detail: format!(
                    "the \"auth\" entry for {key} in {} is not base64 of USER:PASSWORD",
                    path.display()
                ),
            })?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| RegistryError::Credentials {
                detail: format!(
                    "the \"auth\" entry for {key} in {} has no ':' between user and password",
                    path.display()
                ),
            })?;
        username = Some(user.to_string());
        password = Some(pass.to_string());
    }
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken {
            username: username.filter(|u| !u.is_empty()),
            token: token.to_string(),
        }));
    }
    match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() || !password.is_empty() => {
            Ok(Some(Credential::Basic { username, password }))
        }
        _ => Ok(None),
    }
}

/// The first executable named `program` on `path` (or `$PATH`).
fn find_in_path(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path = match path {
        Some(p) => p.to_os_string(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "layerscope-creds-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn sources_with_config(dir: &TempDir, json: &str) -> CredentialSources {
        let path = dir.0.join("config.json");
        std::fs::write(&path, json).expect("write config");
        CredentialSources {
            docker_config: Some(path),
            helper_path: Some(OsString::from(&dir.0)),
            ..CredentialSources::default()
        }
    }

    fn basic(user: &str, pass: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: user.into(),
            password: pass.into(),
        })
    }

    #[tokio::test]
    async fn docker_keys_match_in_all_their_spellings() {
        let dir = TempDir::new("keys");
        let json = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "http://plain.example:5000":{{"auth":"{}"}},
                "https://api.example/v1/":{{"auth":"{}"}},
                "bare.example":{{"username":"u4","password":"p4"}}
            }}}}"#,
            b64("hub:pw1"),
            b64("u2:pw:with:colons"),
            b64("u3:p3")
        );
        let s = sources_with_config(&dir, &json);
        assert_eq!(
            s.lookup("docker.io", "library/alpine").await.expect("ok"),
            basic("hub", "pw1")
        );
        assert_eq!(
            s.lookup("plain.example:5000", "x").await.expect("ok"),
            basic("u2", "pw:with:colons")
        );
        assert_eq!(
            s.lookup("api.example", "x").await.expect("ok"),
            basic("u3", "p3")
        );
        assert_eq!(
            s.lookup("bare.example", "x").await.expect("ok"),
            basic("u4", "p4")
        );
        assert_eq!(s.lookup("other.example", "x").await.expect("ok"), None);
        // A port is part of the key.
        assert_eq!(s.lookup("plain.example", "x").await.expect("ok"), None);
    }

    #[tokio::test]
    async fn identity_tokens_are_recognised() {
        let dir = TempDir::new("idtok");
        let json = r#"{"auths":{"reg.example":{"auth":"dXNlcjo=","identitytoken":"refresh-me"}}}"#;
        let s = sources_with_config(&dir, json);
        let c = s.lookup("reg.example", "x").await.expect("ok");
        assert_eq!(
            c,
            Some(Credential::IdentityToken {
                username: Some("user".into()),
                token: "refresh-me".into()
            })
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("refresh-me"), "{debug}");
    }

    #[tokio::test]
    async fn explicit_credentials_win() {
        let dir = TempDir::new("explicit");
        let mut s = sources_with_config(&dir, r#"{"auths":{"h":{"username":"a","password":"b"}}}"#);
        s.explicit = Some(("cli".into(), "pw".into()));
        assert_eq!(s.lookup("h", "x").await.expect("ok"), basic("cli", "pw"));
    }

    #[tokio::test]
    async fn podman_files_match_per_repository_most_specific_first() {
        let dir = TempDir::new("podman");
        let path = dir.0.join("auth.json");
        let json = format!(
            r#"{{"auths":{{"quay.example":{{"auth":"{}"}},"quay.example/team":{{"auth":"{}"}},"docker.io":{{"auth":"{}"}}}}}}"#,
            b64("host:1"),
            b64("team:2"),
            b64("hub:3")
        );
        std::fs::write(&path, json).expect("write");
        let s = CredentialSources {
            auth_files_first: vec![path],
            ..CredentialSources::default()
        };
        assert_eq!(
            s.lookup("quay.example", "team/app").await.expect("ok"),
            basic("team", "2")
        );
        assert_eq!(
            s.lookup("quay.example", "other/app").await.expect("ok"),
            basic("host", "1")
        );
        assert_eq!(
            s.lookup("docker.io", "library/x").await.expect("ok"),
            basic("hub", "3")
        );
    }

    #[tokio::test]
    async fn malformed_files_are_reported_without_secrets() {
        let dir = TempDir::new("bad");
        let s = sources_with_config(&dir, r#"{"auths":{"h":{"auth":"%%%secret%%%"}}}"#);
        let e = s.lookup("h", "x").await.expect_err("bad base64");
        let text = e.to_string();
        assert!(text.contains("not base64"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        let s = sources_with_config(&dir, "{not json");
        assert!(s
            .lookup("h", "x")
            .await
            .expect_err("bad json")
            .to_string()
            .contains("not valid JSON"));
        let missing = CredentialSources {
            docker_config: Some(dir.0.join("absent.json")),
            ..CredentialSources::default()
        };
        assert_eq!(
            missing.lookup("h", "x").await.expect("absent is fine"),
            None
        );
    }

    #[tokio::test]
    async fn missing_helper_named_in_cred_helpers_is_an_error_but_a_missing_store_is_not() {
        let dir = TempDir::new("nohelper");
        let s = sources_with_config(&dir, r#"{"credHelpers":{"h":"absent"}}"#);
        let e = s.lookup("h", "x").await.expect_err("helper missing");
        assert!(e.to_string().contains("docker-credential-absent"), "{e}");
        let s = sources_with_config(
            &dir,
            r#"{"credsStore":"absent","auths":{"h":{"username":"a","password":"b"}}}"#,
        );
        assert_eq!(s.lookup("h", "x").await.expect("fallback"), basic("a", "b"));
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(
            normalise_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalise_key("http://h:5000"), "h:5000");
        assert_eq!(normalise_key("h/ns/"), "h/ns");
        assert_eq!(key_hostname("https://h:1/v2/"), "h:1");
    }
}
