//! Registry authentication: reading `WWW-Authenticate` challenges, getting bearer tokens from a
//! token service (anonymously, with Basic credentials, or with an OAuth2 refresh token), and
//! caching tokens per registry and scope until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::credentials::Credential;
use super::error::{describe_error_body, RegistryError};
use super::transport::{host_port, read_limited, Outgoing, Transport};

/// Tokens last this long when the service does not say (the distribution spec's default).
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Token answers are small; anything bigger is not a token answer.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;
/// The OAuth2 client id registries log; any name works.
const OAUTH_CLIENT_ID: &str = "layerscope";

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send `Authorization: Basic`.
    Basic,
    /// Get a token from `realm`.
    Bearer(BearerChallenge),
}

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    /// Space-separated scopes the registry asks for, if it says.
    pub scope: Option<String>,
    /// `insufficient_scope`, `invalid_token`, …
    pub error: Option<String>,
}

/// All challenges in a set of `WWW-Authenticate` header values. A value may hold several
/// challenges; parameters may be quoted and hold commas. Unknown schemes are skipped.
pub(crate) fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        for (scheme, params) in split_challenges(value) {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            if scheme.eq_ignore_ascii_case("basic") {
                out.push(Challenge::Basic);
            } else if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = get("realm") {
                    out.push(Challenge::Bearer(BearerChallenge {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                        error: get("error"),
                    }));
                }
            }
        }
    }
    out
}

/// The challenges of a response's `WWW-Authenticate` headers.
pub(crate) fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    parse_challenges(
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Tokenise `scheme k=v, k="v, w", Scheme2 k=v` into (scheme, params) pairs (RFC 7235 §4.1).
fn split_challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t' || bytes[*i] == b',') {
            *i += 1;
        }
    };
    let is_token = |b: u8| !matches!(b, b' ' | b'\t' | b',' | b'=' | b'"');
    loop {
        skip_ws(&mut i);
        if i >= bytes.len() {
            break;
        }
        // A token: either a new scheme, or a parameter name when '=' follows.
        let start = i;
        while i < bytes.len() && is_token(bytes[i]) {
            i += 1;
        }
        let token = value[start..i].to_string();
        let mut j = i;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' && !out.is_empty() && !token.is_empty() {
            // key = value
            i = j + 1;
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            let mut val = String::new();
            if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch_len = utf8_len(bytes[i]);
                    let end = (i + ch_len).min(bytes.len());
                    val.push_str(&value[i..end]);
                    i = end;
                }
                i += 1; // closing quote
            } else {
                let vstart = i;
                while i < bytes.len() && bytes[i] != b',' && bytes[i] != b' ' && bytes[i] != b'\t' {
                    i += 1;
                }
                val = value[vstart..i].to_string();
            }
            if let Some((_, params)) = out.last_mut() {
                params.push((token, val));
            }
        } else if token.is_empty() {
            // A stray character such as a lone '=' or '"': step over it.
            i += 1;
        } else {
            out.push((token, Vec::new()));
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The scope that lets us pull `repository`.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope that lets us pull from and push to `repository` (a tag is a push).
pub(crate) fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// The scope that lets us list the repositories of a registry.
pub(crate) fn catalog_scope() -> String {
    "registry:catalog:*".to_string()
}

/// A token and when to stop using it.
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires_at: Instant,
}

/// Bearer tokens per (registry host, scope set).
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl TokenCache {
    /// A token that is still valid.
    pub fn get(&self, host: &str, scopes: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&(host.to_string(), scopes.to_string()))
            .filter(|t| Instant::now() < t.expires_at)
            .map(|t| t.token.clone())
    }

    /// Remember a token for `lifetime`, renewing a little early so a request does not carry a
    /// token that expires on the way.
    pub fn put(&self, host: &str, scopes: &str, token: String, lifetime: Duration) {
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(
            (host.to_string(), scopes.to_string()),
            CachedToken {
                token,
                expires_at: Instant::now() + lifetime - margin,
            },
        );
    }

    /// Forget a token the registry rejected.
    pub fn forget(&self, host: &str, scopes: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&(host.to_string(), scopes.to_string()));
    }
}

/// What a token service answers.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token with its lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub value: String,
    pub lifetime: Duration,
}

/// Ask the token service of `challenge` for a token covering `scopes`.
///
/// With an identity token, an OAuth2 refresh-token POST is tried first and a GET with Basic
/// credentials after it when the service does not do OAuth2 (404/405). A 401 or 403 from the
/// service when credentials were sent means they are wrong.
pub(crate) async fn fetch_token(
    transport: &Transport,
    registry_host: &str,
    challenge: &BearerChallenge,
    scopes: &[String],
    credential: Option<&Credential>,
) -> Result<Token, RegistryError> {
    let realm = Url::parse(&challenge.realm)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| RegistryError::TokenService {
            host: registry_host.to_string(),
            realm_host: challenge.realm.clone(),
            detail: "the registry named an invalid token realm".to_string(),
        })?;
    let realm_host = host_port(&realm);
    let service_error = |detail: String| RegistryError::TokenService {
        host: registry_host.to_string(),
        realm_host: realm_host.clone(),
        detail,
    };
    // Credentials go over plain HTTP only to this machine or to a host the user marked insecure.
    if credential.is_some()
        && realm.scheme() == "http"
        && !crate::reference::host_is_loopback(&realm_host)
        && !transport.is_insecure(&realm_host)
    {
        return Err(service_error(
            "refusing to send credentials to a token realm over plain HTTP".to_string(),
        ));
    }
    let skip_verify = transport.is_insecure(&realm_host);

    if let Some(Credential::IdentityToken { token, .. }) = credential {
        let mut form =
            Url::parse("http://form.invalid/").map_err(|e| service_error(e.to_string()))?;
        {
            let mut pairs = form.query_pairs_mut();
            pairs.append_pair("grant_type", "refresh_token");
            pairs.append_pair("refresh_token", token);
            pairs.append_pair("client_id", OAUTH_CLIENT_ID);
            if let Some(service) = &challenge.service {
                pairs.append_pair("service", service);
            }
            if !scopes.is_empty() {
                pairs.append_pair("scope", &scopes.join(" "));
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = Outgoing {
            method: Method::POST,
            url: realm.clone(),
            headers,
            authorization: None,
            body: Some(Bytes::from(form.query().unwrap_or_default().to_string())),
            host: realm_host.clone(),
        };
        let response = transport.send(&request, skip_verify).await?;
        let status = response.status();
        if status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
            return token_from_response(response, registry_host, credential, &service_error).await;
        }
    }

    let mut url = realm.clone();
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(service) = &challenge.service {
            pairs.append_pair("service", service);
        }
        for scope in scopes {
            pairs.append_pair("scope", scope);
        }
    }
    let mut request = Outgoing::get(url, &realm_host);
    if let Some(credential) = credential {
        request.authorization = Some(credential.basic_header()?);
    }
    let response = transport.send(&request, skip_verify).await?;
    token_from_response(response, registry_host, credential, &service_error).await
}

async fn token_from_response(
    response: reqwest::Response,
    registry_host: &str,
    credential: Option<&Credential>,
    service_error: &(dyn Fn(String) -> RegistryError + Sync),
) -> Result<Token, RegistryError> {
    let status = response.status();
    let body = read_limited(response, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| service_error(format!("reading its answer failed: {e}")))?;
    if !status.is_success() {
        let rejected = status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || (status == StatusCode::BAD_REQUEST && oauth_error(&body) == Some("invalid_grant"));
        if let (true, Some(credential)) = (rejected, credential) {
            return Err(RegistryError::WrongCredentials {
                host: registry_host.to_string(),
                username: credential.username().to_string(),
            });
        }
        return Err(service_error(format!(
            "it answered {}",
            describe_error_body(status, &body)
        )));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| service_error(format!("its answer is not a token: {e}")))?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| service_error("its answer holds no token".to_string()))?;
    let lifetime = match answer.expires_in {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds),
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    Ok(Token { value, lifetime })
}

/// The `error` field of an OAuth2 error answer.
fn oauth_error(body: &[u8]) -> Option<&'static str> {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
    }
    let e: OAuthError = serde_json::from_slice(body).ok()?;
    (e.error == "invalid_grant").then_some("invalid_grant")
}

/// `Basic base64(user:password)`.
pub(crate) fn basic_value(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
        RegistryError::Credentials {
            detail: "the credentials contain characters that cannot be sent".to_string(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Bearer TOKEN`.
pub(crate) fn bearer_value(token: &str) -> Result<HeaderValue, RegistryError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        RegistryError::Credentials {
            detail: "the token service returned a token that cannot be sent".to_string(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_bearer_challenge_with_quoted_params() {
        let c = parse_challenges([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        ]);
        assert_eq!(
            c,
            vec![Challenge::Bearer(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
                error: None,
            })]
        );
    }

    #[test]
    fn commas_inside_quotes_do_not_split_and_escapes_work() {
        let c = parse_challenges([
            r#"Bearer realm="http://127.0.0.1:9/token",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope",service="x\"y""#,
        ]);
        let Challenge::Bearer(b) = &c[0] else {
            panic!("bearer expected: {c:?}")
        };
        assert_eq!(
            b.scope.as_deref(),
            Some("repository:a:pull,push repository:b:pull")
        );
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(b.service.as_deref(), Some("x\"y"));
    }

    #[test]
    fn several_challenges_in_one_header_and_across_headers() {
        let c = parse_challenges([
            r#"Basic realm="Registry Realm", Bearer realm="https://a/t", service=s"#,
            "Negotiate abc==",
            "basic realm=x",
        ]);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0], Challenge::Basic);
        let Challenge::Bearer(b) = &c[1] else {
            panic!("bearer expected")
        };
        assert_eq!(b.realm, "https://a/t");
        assert_eq!(b.service.as_deref(), Some("s"));
        assert_eq!(c[2], Challenge::Basic);
    }

    #[test]
    fn bearer_without_realm_and_garbage_are_skipped() {
        assert!(parse_challenges(["Bearer service=x"]).is_empty());
        assert!(parse_challenges(["", "=,\"", ",,,"]).is_empty());
        // Unquoted values and spaces around '='.
        let c = parse_challenges(["Bearer realm = https://r/t , service = s"]);
        let Challenge::Bearer(b) = &c[0] else {
            panic!("bearer expected: {c:?}")
        };
        assert_eq!(
            (b.realm.as_str(), b.service.as_deref()),
            ("https://r/t", Some("s"))
        );
    }

    #[test]
    fn token_cache_expires_and_forgets() {
        let cache = TokenCache::default();
        cache.put("h", "s", "t1".into(), Duration::from_secs(60));
        assert_eq!(cache.get("h", "s").as_deref(), Some("t1"));
        assert_eq!(cache.get("h", "other"), None);
        assert_eq!(cache.get("other", "s"), None);
        cache.forget("h", "s");
        assert_eq!(cache.get("h", "s"), None);
        cache.put("h", "s", "t2".into(), Duration::ZERO);
        assert_eq!(
            cache.get("h", "s"),
            None,
            "a zero-lifetime token is never used"
        );
    }

    #[tokio::test]
    async fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
        use super::super::transport::{RetryPolicy, TransportSettings};
        let transport = Transport::new(TransportSettings {
            user_agent: "test".into(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            certs_dirs: vec![],
            insecure_hosts: vec![],
            retry: RetryPolicy {
                max_retries: 0,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                max_retry_after: Duration::ZERO,
            },
            stall: Default::default(),
        });
        let challenge = BearerChallenge {
            realm: "http://auth.example/token".into(),
            service: Some("registry".into()),
            ..Default::default()
        };
        let credential = Credential::Basic {
            username: "alice".into(),
            password: "secret".into(),
        };
        let error = fetch_token(
            &transport,
            "reg.example",
            &challenge,
            &[],
            Some(&credential),
        )
        .await
        .expect_err("refused before any request");
        let text = error.to_string();
        assert!(
            text.contains("plain HTTP") && !text.contains("secret"),
            "{text}"
        );
        let bad_realm = BearerChallenge {
            realm: "ftp://x/".into(),
            ..Default::default()
        };
        let error = fetch_token(&transport, "reg.example", &bad_realm, &[], None)
            .await
            .expect_err("invalid realm");
        assert!(error.to_string().contains("invalid token realm"), "{error}");
    }

    #[test]
    fn header_values_are_marked_sensitive() {
        let v = basic_value("alice", "secret").expect("value");
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().expect("ascii"), "Basic YWxpY2U6c2VjcmV0");
        assert!(bearer_value("abc").expect("value").is_sensitive());
        assert!(bearer_value("a\nb").is_err());
    }
}
