//! Everything that can go wrong talking to a registry, as one typed enum whose `Display` is one
//! sentence a person understands: it names the host and repository, and never a secret.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::digest::{Digest, VerifyError};
use crate::image::{LayerCountMismatch, NoMatchingPlatform};

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The HTTP client could not be built (unreadable CA file, TLS backend failure).
    Setup {
        /// What failed.
        detail: String,
    },
    /// The host name does not resolve.
    UnknownHost {
        /// The host as written.
        host: String,
        /// The resolver's answer.
        detail: String,
    },
    /// Nothing listens on the host's port.
    ConnectionRefused {
        /// `host:port` that refused.
        host: String,
    },
    /// Connecting failed for another reason (unreachable network, reset during connect).
    Connect {
        /// The host.
        host: String,
        /// What the OS said.
        detail: String,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, not TLS at all).
    Tls {
        /// The host.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The server's certificate was refused; `problem` says which check failed (a certificate
    /// other than the one trusted in certs.d, expired, issued for another name, untrusted).
    CertificateRefused {
        /// The host.
        host: String,
        /// Which check failed, a clause.
        problem: String,
    },
    /// The registry asks for a client certificate and none was found for it.
    ClientCertificateMissing {
        /// The host.
        host: String,
        /// The certs.d directory where `client.cert` and `client.key` belong.
        dir: String,
        /// A pair that exists but could not be read, if any.
        note: Option<String>,
    },
    /// The registry refused the client certificate that was presented.
    ClientCertificateRefused {
        /// The host.
        host: String,
        /// The certificate file presented.
        file: String,
        /// What the server's alert said.
        alert: String,
    },
    /// Docker Hub failed after the registry mirrors did not serve the image.
    AfterMirrors {
        /// Docker Hub's failure.
        error: Box<RegistryError>,
        /// What each mirror did, a clause ("the registry mirror … does not have it").
        mirrors: String,
    },
    /// Transient failures (5xx, resets, timeouts) went on past the retry budget.
    GaveUp {
        /// The host.
        host: String,
        /// Requests made, the first included.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The registry kept answering 429 Too Many Requests.
    RateLimited {
        /// The host.
        host: String,
        /// Requests made.
        attempts: u32,
        /// What the last `Retry-After` asked for.
        retry_after: Option<Duration>,
        /// The registry's own message.
        message: Option<String>,
    },
    /// The server answered something that is not the registry API (an HTML page, plain text).
    NotRegistry {
        /// The host.
        host: String,
        /// What it answered instead, such as `HTML`.
        answered: String,
    },
    /// The registry wants credentials and none were found.
    AuthenticationRequired {
        /// The registry host.
        host: String,
        /// The repository asked for.
        repository: String,
    },
    /// The registry or its token service rejected the username and password (or token).
    WrongCredentials {
        /// The registry host.
        host: String,
        /// The user name that was sent (never the password).
        username: String,
    },
    /// Authenticated, but not allowed to pull this repository.
    AccessDenied {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The registry's own words.
        message: String,
    },
    /// The token service failed in a way that is not a wrong password.
    TokenService {
        /// The registry host the token was for.
        host: String,
        /// Host of the token realm.
        realm_host: String,
        /// What went wrong.
        detail: String,
    },
    /// The tag or digest does not exist in the repository.
    ManifestUnknown {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest asked for.
        target: String,
        /// Some tags that do exist, when the registry listed them.
        available_tags: Vec<String>,
    },
    /// The repository does not exist.
    RepositoryUnknown {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
    },
    /// A blob named by the manifest is not in the repository.
    BlobUnknown {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The blob's digest.
        digest: Digest,
    },
    /// The manifest is Docker schema 1.
    UnsupportedSchema1 {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        target: String,
    },
    /// The manifest could not be read (not JSON, wrong shape, unknown media type).
    InvalidManifest {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        target: String,
        /// What is wrong.
        detail: String,
    },
    /// The manifest is larger than any real one.
    ManifestTooLarge {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        target: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The manifest bytes do not hash to the digest that was asked for or announced.
    ManifestDigestMismatch {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        target: String,
        /// The digest expected.
        expected: Box<Digest>,
        /// The digest of the bytes.
        actual: Box<Digest>,
    },
    /// No manifest in the index matches the platform.
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// What was asked for and what exists.
        source: Box<NoMatchingPlatform>,
    },
    /// The config blob is not a valid image config.
    InvalidConfig {
        /// The reference.
        reference: String,
        /// The parse error.
        detail: String,
    },
    /// The manifest and the config disagree on the number of layers.
    LayerCount {
        /// The reference.
        reference: String,
        /// The two counts.
        source: LayerCountMismatch,
    },
    /// A blob's bytes do not match its digest or size.
    BlobVerification {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The blob's digest.
        digest: Digest,
        /// How it failed.
        source: Box<VerifyError>,
    },
    /// A blob download broke off and could not be resumed.
    BlobInterrupted {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The blob's digest.
        digest: Digest,
        /// Bytes received before giving up.
        received: u64,
        /// Requests made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// Redirects went on too long.
    TooManyRedirects {
        /// The registry host.
        host: String,
        /// Hops followed.
        hops: u32,
    },
    /// A redirect pointed somewhere unusable.
    BadRedirect {
        /// The registry host.
        host: String,
        /// What is wrong.
        detail: String,
    },
    /// Any other non-success answer, with the registry's error code when it gave one.
    Status {
        /// The registry host.
        host: String,
        /// What was being fetched.
        what: String,
        /// HTTP status.
        status: u16,
        /// OCI error code, such as `DENIED`.
        code: Option<String>,
        /// The registry's message, or the status text.
        message: String,
    },
    /// The registry refused to let the repository be written to.
    PushDenied {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// Why, and what to do about it.
        detail: String,
    },
    /// The registry refused a manifest that was pushed (invalid, or naming unknown blobs).
    ManifestRejected {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The tag or digest it was pushed under.
        target: String,
        /// The registry's reason.
        reason: String,
    },
    /// The registry does not list its repositories, or not to us.
    CatalogUnavailable {
        /// The registry host.
        host: String,
        /// Why.
        detail: String,
    },
    /// A pagination link could not be followed (malformed, another server, or a loop).
    BadLink {
        /// The registry host.
        host: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A listing (tags, catalog) is not the JSON the API describes.
    InvalidListing {
        /// The registry host.
        host: String,
        /// What was listed: `the tag list of app`, `the catalog`.
        what: String,
        /// The parse error.
        detail: String,
    },
    /// The credential configuration could not be read, or a credential helper failed.
    Credentials {
        /// What failed (never a secret).
        detail: String,
    },
    /// Reading a response failed after it began (not retried: the request had effects or the
    /// stream was already handed out).
    Transfer {
        /// The host.
        host: String,
        /// What failed.
        detail: String,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RegistryError as E;
        match self {
            E::Setup { detail } => write!(f, "cannot set up the registry client: {detail}"),
            E::UnknownHost { host, detail } => {
                write!(f, "unknown host {host}: the name does not resolve ({detail})")
            }
            E::ConnectionRefused { host } => write!(
                f,
                "connection refused by {host}: no registry is listening there"
            ),
            E::Connect { host, detail } => write!(f, "cannot connect to {host}: {detail}"),
            E::Tls { host, detail } => write!(
                f,
                "TLS handshake with {host} failed: {detail} (trust its CA in \
                 /etc/docker/certs.d/{host}/ca.crt, or allow it with --insecure-registry {host})"
            ),
            E::CertificateRefused { host, problem } => {
                write!(f, "the TLS certificate of {host} is refused: {problem}")
            }
            E::ClientCertificateMissing { host, dir, note } => {
                write!(
                    f,
                    "{host} asks for a TLS client certificate and none was found: put \
                     client.cert and client.key in {dir}/"
                )?;
                match note {
                    Some(note) => write!(f, " ({note})"),
                    None => Ok(()),
                }
            }
            E::ClientCertificateRefused { host, file, alert } => {
                write!(f, "{host} refused the TLS client certificate {file} ({alert})")
            }
            E::AfterMirrors { error, mirrors } => {
                write!(f, "{error} (tried first: {mirrors})")
            }
            E::GaveUp {
                host,
                attempts,
                reason,
            } => write!(f, "gave up on {host} after {attempts} attempts: {reason}"),
            E::RateLimited {
                host,
                attempts,
                retry_after,
                message,
            } => {
                write!(
                    f,
                    "{host} is rate-limiting requests (429 Too Many Requests) and still refused after {attempts} attempts"
                )?;
                if let Some(after) = retry_after {
                    write!(f, "; it asks to retry after {}", humantime::format_duration(*after))?;
                }
                if let Some(message) = message {
                    write!(f, " ({message})")?;
                }
                Ok(())
            }
            E::NotRegistry { host, answered } => write!(
                f,
                "the server at {host} answered {answered}, not a registry API response"
            ),
            E::AuthenticationRequired { host, repository } => write!(
                f,
                "{host} refused to let {repository} be pulled without credentials (or it does not \
                 exist), and none were found: log in with `docker login {host}` or pass --creds USER:PASSWORD"
            ),
            E::WrongCredentials { host, username } => write!(
                f,
                "{host} rejected the credentials for user {username:?}: wrong username or password"
            ),
            E::AccessDenied {
                host,
                repository,
                message,
            } => write!(
                f,
                "access to {repository} on {host} was denied: {message}"
            ),
            E::TokenService {
                host,
                realm_host,
                detail,
            } => write!(
                f,
                "the token service {realm_host} for {host} failed: {detail}"
            ),
            E::ManifestUnknown {
                host,
                repository,
                target,
                available_tags,
            } => {
                if target.contains(':') {
                    write!(f, "manifest {target} not found in {repository} on {host}")?;
                } else {
                    write!(f, "tag {target} not found in {repository} on {host}")?;
                }
                if !available_tags.is_empty() {
                    write!(f, "; tags that exist: {}", available_tags.join(", "))?;
                }
                Ok(())
            }
            E::RepositoryUnknown { host, repository } => {
                write!(f, "repository {repository} not found on {host}")
            }
            E::BlobUnknown {
                host,
                repository,
                digest,
            } => write!(
                f,
                "blob {digest} is missing from {repository} on {host} (the manifest names it, the registry does not have it)"
            ),
            E::UnsupportedSchema1 {
                host,
                repository,
                target,
            } => write!(
                f,
                "{repository}:{target} on {host} is a Docker schema 1 manifest, which is unsupported; \
                 re-push the image with a current client"
            ),
            E::InvalidManifest {
                host,
                repository,
                target,
                detail,
            } => write!(
                f,
                "the manifest for {repository}:{target} on {host} is unreadable: {detail}"
            ),
            E::ManifestTooLarge {
                host,
                repository,
                target,
                limit,
            } => write!(
                f,
                "the manifest for {repository}:{target} on {host} is larger than {limit} bytes; refusing it"
            ),
            E::ManifestDigestMismatch {
                host,
                repository,
                target,
                expected,
                actual,
            } => write!(
                f,
                "the manifest for {repository}:{target} on {host} does not match its digest: expected {expected}, got {actual}"
            ),
            E::NoMatchingPlatform { reference, source } => write!(f, "{reference}: {source}"),
            E::InvalidConfig { reference, detail } => {
                write!(f, "the image config of {reference} is invalid: {detail}")
            }
            E::LayerCount { reference, source } => write!(f, "{reference}: {source}"),
            E::BlobVerification {
                host,
                repository,
                digest,
                source,
            } => write!(
                f,
                "blob {digest} from {repository} on {host} failed verification: {source}"
            ),
            E::BlobInterrupted {
                host,
                repository,
                digest,
                received,
                attempts,
                detail,
            } => write!(
                f,
                "download of blob {digest} from {repository} on {host} broke off after {received} bytes \
                 and {attempts} attempts: {detail}"
            ),
            E::TooManyRedirects { host, hops } => {
                write!(f, "{host} redirected more than {hops} times; giving up")
            }
            E::BadRedirect { host, detail } => {
                write!(f, "{host} sent an unusable redirect: {detail}")
            }
            E::Status {
                host,
                what,
                status,
                code,
                message,
            } => {
                write!(f, "{host} answered {status} for {what}")?;
                match code {
                    Some(code) => write!(f, ": {code}: {message}"),
                    None => write!(f, ": {message}"),
                }
            }
            E::PushDenied {
                host,
                repository,
                detail,
            } => write!(f, "{host} refused to let {repository} be pushed to: {detail}"),
            E::ManifestRejected {
                host,
                repository,
                target,
                reason,
            } => write!(
                f,
                "{host} rejected the manifest pushed as {repository}:{target}: {reason}"
            ),
            E::CatalogUnavailable { host, detail } => write!(
                f,
                "{host} does not let its catalog of repositories be listed: {detail}"
            ),
            E::BadLink { host, detail } => {
                write!(f, "{host} sent an unusable pagination link: {detail}")
            }
            E::InvalidListing { host, what, detail } => {
                write!(f, "{what} from {host} is not a valid listing: {detail}")
            }
            E::Credentials { detail } => write!(f, "cannot read registry credentials: {detail}"),
            E::Transfer { host, detail } => {
                write!(f, "the transfer from {host} failed: {detail}")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

impl RegistryError {
    /// The error itself, or Docker Hub's when it came after the mirrors.
    pub fn without_mirrors(&self) -> &RegistryError {
        match self {
            RegistryError::AfterMirrors { error, .. } => error,
            other => other,
        }
    }

    /// Whether the failure happened in TLS (handshake, server or client certificate): a TLS
    /// server then also answers plain HTTP with an error that says less.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(
            self,
            RegistryError::Tls { .. }
                | RegistryError::CertificateRefused { .. }
                | RegistryError::ClientCertificateMissing { .. }
                | RegistryError::ClientCertificateRefused { .. }
        )
    }
}

/// One entry of an OCI distribution error body, `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct OciError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OciErrorBody {
    #[serde(default)]
    errors: Vec<OciError>,
}

/// The first error of an OCI error body, if the bytes are one.
pub(crate) fn parse_error_body(bytes: &[u8]) -> Option<OciError> {
    let body: OciErrorBody = serde_json::from_slice(bytes).ok()?;
    body.errors.into_iter().next()
}

/// The most characters of a registry's own words quoted in an error: enough for any real
/// message, and a hostile registry cannot flood the one-line error.
pub(crate) const REGISTRY_MESSAGE_CHARS: usize = 300;

/// A registry's own words for an error message: one line, control characters shown visibly,
/// at most [`REGISTRY_MESSAGE_CHARS`] characters.
pub(crate) fn registry_said(text: &str) -> String {
    crate::escape::excerpt(text, REGISTRY_MESSAGE_CHARS)
}

/// A short human message for an error body: the registry's message (and a string detail), or
/// the status text when the body is not an OCI error. Escaped and cut (see [`registry_said`]).
pub(crate) fn describe_error_body(status: reqwest::StatusCode, bytes: &[u8]) -> String {
    registry_said(&describe_error_body_raw(status, bytes))
}

fn describe_error_body_raw(status: reqwest::StatusCode, bytes: &[u8]) -> String {
    match parse_error_body(bytes) {
        Some(e) => {
            let mut message = if e.message.is_empty() {
                e.code.to_ascii_lowercase().replace('_', " ")
            } else {
                e.message
            };
            if let Some(serde_json::Value::String(detail)) = e.detail {
                if !detail.is_empty() && detail != message {
                    message = format!("{message} ({detail})");
                }
            }
            message
        }
        None => status_text(status),
    }
}

/// `404 Not Found` style text for a status.
pub(crate) fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Whether a body looks like an HTML page rather than an API answer.
pub(crate) fn looks_like_html(content_type: Option<&str>, body: &[u8]) -> bool {
    if content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html")) {
        return true;
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let head: Vec<u8> = body[start..]
        .iter()
        .take(15)
        .map(u8::to_ascii_lowercase)
        .collect();
    head.starts_with(b"<!doctype") || head.starts_with(b"<html") || head.starts_with(b"<head")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oci_error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"latest"}}]}"#;
        let e = parse_error_body(body).expect("an error body");
        assert_eq!(e.code, "MANIFEST_UNKNOWN");
        assert_eq!(e.message, "manifest unknown");
        assert!(parse_error_body(b"<html>").is_none());
        assert!(parse_error_body(b"{}").is_none());
    }

    #[test]
    fn describes_bodies_with_string_details() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"no pull"}]}"#;
        assert_eq!(
            describe_error_body(reqwest::StatusCode::FORBIDDEN, body),
            "requested access to the resource is denied (no pull)"
        );
        assert_eq!(
            describe_error_body(reqwest::StatusCode::FORBIDDEN, b"nope"),
            "403 Forbidden"
        );
        let no_message = br#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#;
        assert_eq!(
            describe_error_body(reqwest::StatusCode::TOO_MANY_REQUESTS, no_message),
            "toomanyrequests"
        );
    }

    #[test]
    fn hostile_error_bodies_stay_one_short_escaped_line() {
        let message = format!(
            "denied\r\nlayerscope: ok\u{1b}]0;pwned\u{7}{}",
            "x".repeat(5000)
        );
        let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message}]});
        let text = describe_error_body(reqwest::StatusCode::FORBIDDEN, body.to_string().as_bytes());
        assert!(!text.contains(crate::escape::is_control), "{text}");
        assert!(
            text.starts_with("denied\\x0d\\x0alayerscope: ok\\x1b]0;pwned\\x07"),
            "{text}"
        );
        assert_eq!(text.chars().count(), REGISTRY_MESSAGE_CHARS);
    }

    #[test]
    fn recognises_html() {
        assert!(looks_like_html(Some("text/html; charset=utf-8"), b""));
        assert!(looks_like_html(None, b"  \n<!DOCTYPE html><html>"));
        assert!(looks_like_html(Some("application/json"), b"<html><body>"));
        assert!(!looks_like_html(Some("application/json"), b"{\"a\":1}"));
    }

    #[test]
    fn messages_name_host_and_repository_and_no_secret() {
        let e = RegistryError::WrongCredentials {
            host: "127.0.0.1:5000".into(),
            username: "alice".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("127.0.0.1:5000") && text.contains("alice"),
            "{text}"
        );
        assert!(text.contains("wrong username or password"), "{text}");
        let e = RegistryError::ManifestUnknown {
            host: "h".into(),
            repository: "team/app".into(),
            target: "v9".into(),
            available_tags: vec!["v1".into(), "v2".into()],
        };
        assert_eq!(
            e.to_string(),
            "tag v9 not found in team/app on h; tags that exist: v1, v2"
        );
        let e = RegistryError::RepositoryUnknown {
            host: "h".into(),
            repository: "nope".into(),
        };
        assert_eq!(e.to_string(), "repository nope not found on h");
    }
}
