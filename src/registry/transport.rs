//! HTTP plumbing under the registry client: one reqwest client per host (TLS from `certs.d`, see
//! [`super::tls`]; skip-verify only for hosts the user marked insecure), retries with backoff and
//! `Retry-After`, redirects followed by hand so `Authorization` never leaves the origin it was
//! meant for, and transport errors sorted into the sentences of [`RegistryError`]. Every wait
//! on the network is bounded by the stall limits of [`super::stall`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};

use super::error::{
    describe_error_body, parse_error_body, registry_said, status_text, RegistryError,
};
use super::stall::{Budget, Pace, StallLimits, Stalled, Waiting};
use super::tls::{self, HostTls};

/// Redirect hops followed before giving up (CDNs use one or two).
pub(crate) const MAX_REDIRECTS: u32 = 10;
/// Error bodies are read up to this size for their message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay; doubles each retry, with jitter.
    pub base_delay: Duration,
    /// Ceiling of one backoff delay.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the retries at once.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped, with ±50% jitter so
    /// parallel downloads do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let jitter = 0.5 + jitter_fraction();
        capped.mul_f64(jitter)
    }
}

/// A number in [0, 1) that differs between calls; quality does not matter, only spread.
fn jitter_fraction() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut x = COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ nanos;
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    let x = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Settings every per-host client shares.
#[derive(Debug, Clone)]
pub(crate) struct TransportSettings {
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub certs_dirs: Vec<PathBuf>,
    pub insecure_hosts: Vec<String>,
    pub retry: RetryPolicy,
    /// How long a request may go without progress, and the low-speed floor.
    pub stall: StallLimits,
}

/// One logical request. Retries and redirects happen inside [`Transport::send`].
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// Sent only to the origin (scheme, host, port) of `url`, never after a cross-origin
    /// redirect.
    pub authorization: Option<HeaderValue>,
    pub body: Option<Bytes>,
    /// The host named in errors.
    pub host: String,
}

impl Outgoing {
    /// A GET of `url`, errors naming `host`.
    pub fn get(url: Url, host: &str) -> Self {
        Outgoing {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            authorization: None,
            body: None,
            host: host.to_string(),
        }
    }
}

/// A failed attempt: the error to report and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: RegistryError,
    pub transient: bool,
    /// A short reason for "gave up after N attempts: …".
    pub reason: String,
}

/// Per-host HTTP clients plus the retry loop.
pub(crate) struct Transport {
    settings: TransportSettings,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
    /// What TLS found for each client above, to explain a failed handshake.
    tls: Mutex<HashMap<(String, bool), Arc<HostTls>>>,
}

impl Transport {
    pub fn new(settings: TransportSettings) -> Self {
        Transport {
            settings,
            clients: Mutex::new(HashMap::new()),
            tls: Mutex::new(HashMap::new()),
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.settings.retry
    }

    /// The stall limits every request is held to.
    pub fn stall_limits(&self) -> StallLimits {
        self.settings.stall
    }

    /// Whether the user listed `host` (`host:port`, or the bare host for every port) as insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        let bare = crate::reference::strip_port(host);
        self.settings
            .insecure_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(bare))
    }

    /// The client for `host` (`host[:port]` as in a URL), built once.
    pub fn client_for(
        &self,
        host: &str,
        skip_verify: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        let key = (host.to_ascii_lowercase(), skip_verify);
        {
            let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(client) = clients.get(&key) {
                return Ok(client.clone());
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.settings.user_agent.clone())
            .connect_timeout(self.settings.connect_timeout)
            // A per-read timeout: a stalled connection fails, a long healthy download does not.
            .read_timeout(self.settings.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Large layers over HTTP/2 (CDNs) need more than the 64 KiB default window.
            .http2_adaptive_window(true);
        let (tls_config, host_tls) =
            tls::client_config(&self.settings.certs_dirs, host, skip_verify)?;
        builder = builder.tls_backend_preconfigured(tls_config);
        self.tls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), Arc::new(host_tls));
        let client = builder.build().map_err(|e| RegistryError::Setup {
            detail: format!("HTTP client for {host}: {}", error_chain(&e)),
        })?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Send `request`, retrying 408, 429, 5xx, resets, timeouts and stalls with backoff
    /// (honouring `Retry-After`), following redirects. Any other answer, success or not, is
    /// returned. The whole of it, waits and retries included, stays within the request's
    /// patience ([`StallLimits::timeout`]); each attempt waits for an answer no longer than
    /// the low-speed time.
    pub async fn send(
        &self,
        request: &Outgoing,
        skip_verify: bool,
    ) -> Result<Response, RegistryError> {
        self.send_within(request, skip_verify, &Budget::start(self.settings.stall))
            .await
    }

    /// [`Transport::send`] within a patience already partly spent (several requests that
    /// make one, such as the HTTPS and plain HTTP probes of a host).
    pub async fn send_within(
        &self,
        request: &Outgoing,
        skip_verify: bool,
        budget: &Budget,
    ) -> Result<Response, RegistryError> {
        let policy = self.settings.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let retries_left = attempt <= policy.max_retries;
            let delay = match self.send_once_within(request, skip_verify, budget).await {
                Ok(response) if !is_retryable_status(response.status()) => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = parse_retry_after(response.headers(), SystemTime::now());
                    // Its message is read within the patience left, like the rest.
                    let body = tokio::time::timeout(
                        budget.remaining(),
                        read_limited(response, ERROR_BODY_LIMIT),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                    let delay = retry_after.unwrap_or_else(|| policy.backoff(attempt));
                    // A wait longer than allowed, or than the request's patience left.
                    let too_long = retry_after.is_some_and(|d| d > policy.max_retry_after)
                        || delay >= budget.remaining();
                    if !retries_left || too_long {
                        return Err(give_up_on_status(
                            &request.host,
                            attempt,
                            status,
                            retry_after,
                            &body,
                        ));
                    }
                    delay
                }
                Err(failure) => {
                    if !failure.transient {
                        return Err(failure.error);
                    }
                    // Out of retries, or of patience for another wait and attempt.
                    let delay = policy.backoff(attempt);
                    if !retries_left || delay >= budget.remaining() {
                        return Err(RegistryError::GaveUp {
                            host: request.host.clone(),
                            attempts: attempt,
                            reason: failure.reason,
                        });
                    }
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt (see [`Transport::send_once`]), waiting for its answer no longer than the
    /// low-speed time or the patience `budget` has left.
    pub async fn send_once_within(
        &self,
        request: &Outgoing,
        skip_verify: bool,
        budget: &Budget,
    ) -> Result<Response, Failure> {
        let mut pace = budget.pace();
        match pace
            .wait(self.send_once(request, skip_verify), Waiting::Answer)
            .await
        {
            Ok(result) => result,
            Err(stalled) => Err(stall_failure(&request.host, stalled)),
        }
    }

    /// One attempt, redirects followed by hand.
    pub async fn send_once(
        &self,
        request: &Outgoing,
        skip_verify: bool,
    ) -> Result<Response, Failure> {
        let origin = Origin::of(&request.url);
        let mut url = request.url.clone();
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        for _hop in 0..=MAX_REDIRECTS {
            let host = host_port(&url);
            let same_origin = Origin::of(&url) == origin;
            let skip = if same_origin {
                skip_verify
            } else {
                self.is_insecure(&host)
            };
            let client = self.client_for(&host, skip).map_err(|error| Failure {
                reason: error.to_string(),
                error,
                transient: false,
            })?;
            let mut builder = client
                .request(method.clone(), url.clone())
                .headers(request.headers.clone());
            if same_origin {
                if let Some(auth) = &request.authorization {
                    builder = builder.header(AUTHORIZATION, auth.clone());
                }
            }
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let mut response = builder
                .send()
                .await
                .map_err(|e| self.classify(&e, &host, skip))?;
            if let Some(tls) = self.host_tls(&host, skip) {
                tls.note_answer();
            }
            // Whoever reads the body holds it to the same floor (see `read_limited`).
            response.extensions_mut().insert(self.settings.stall);
            let status = response.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let Some(location) = response.headers().get(LOCATION) else {
                return Ok(response);
            };
            let next = location
                .to_str()
                .ok()
                .and_then(|l| url.join(l).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| Failure {
                    error: RegistryError::BadRedirect {
                        host: request.host.clone(),
                        detail: format!("{} with an invalid Location header", status_text(status)),
                    },
                    transient: false,
                    reason: "invalid redirect".to_string(),
                })?;
            if status == StatusCode::SEE_OTHER {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        Err(Failure {
            error: RegistryError::TooManyRedirects {
                host: request.host.clone(),
                hops: MAX_REDIRECTS,
            },
            transient: false,
            reason: "too many redirects".to_string(),
        })
    }
}

impl Transport {
    /// What TLS set up for the client of `host`.
    fn host_tls(&self, host: &str, skip_verify: bool) -> Option<Arc<HostTls>> {
        let key = (host.to_ascii_lowercase(), skip_verify);
        let tls = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        tls.get(&key).cloned()
    }

    /// [`classify`], with TLS failures explained by what certs.d held for the host.
    fn classify(&self, error: &reqwest::Error, host: &str, skip_verify: bool) -> Failure {
        match self
            .host_tls(host, skip_verify)
            .and_then(|t| t.explain(error))
        {
            Some(error) => Failure {
                reason: error.to_string(),
                error,
                transient: false,
            },
            None => classify(error, host),
        }
    }
}

/// Scheme, host and port: the unit `Authorization` is scoped to.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str().map(str::to_ascii_lowercase),
            port: url.port_or_known_default(),
        }
    }
}

/// `host[:port]` of a URL, as errors and `certs.d` name it.
pub(crate) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Statuses worth another try: timeouts, rate limits and server-side failures.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

fn give_up_on_status(
    host: &str,
    attempts: u32,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> RegistryError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return RegistryError::RateLimited {
            host: host.to_string(),
            attempts,
            retry_after,
            message: parse_error_body(body)
                .map(|e| registry_said(&e.message))
                .filter(|m| !m.is_empty()),
        };
    }
    let mut reason = format!("the last answer was {}", status_text(status));
    let detail = describe_error_body(status, body);
    if detail != status_text(status) {
        reason = format!("{reason} ({detail})");
    }
    RegistryError::GaveUp {
        host: host.to_string(),
        attempts,
        reason,
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only HTTP date form servers send today.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if *zone != "GMT" {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (*h * 3600 + *m * 60 + *sec) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A stalled attempt as a retryable failure naming the host.
pub(crate) fn stall_failure(host: &str, stalled: Stalled) -> Failure {
    let reason = format!("{host}: {stalled}");
    Failure {
        error: RegistryError::Transfer {
            host: host.to_string(),
            detail: stalled.to_string(),
        },
        transient: true,
        reason,
    }
}

/// The stall limits a response was fetched under (the defaults for one that did not come
/// through [`Transport`]).
pub(crate) fn limits_of(response: &Response) -> StallLimits {
    response
        .extensions()
        .get::<StallLimits>()
        .copied()
        .unwrap_or_default()
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed.
    Http(reqwest::Error),
    /// The body fell below the low-speed floor.
    Stalled(Stalled),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Http(e) => write!(f, "{e}"),
            BodyError::Stalled(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Http(e) => Some(e),
            BodyError::Stalled(e) => Some(e),
        }
    }
}

/// Read a body up to `limit` bytes (the rest is dropped); for error messages and JSON answers
/// whose size is bounded anyway. A body below the low-speed floor is given up on.
pub(crate) async fn read_limited(response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut pace = Pace::new(limits_of(&response), None);
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    loop {
        let next = pace
            .wait(stream.next(), Waiting::Body)
            .await
            .map_err(BodyError::Stalled)?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(BodyError::Http)?;
        pace.received(chunk.len());
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The whole source chain of an error as one line, for details.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The innermost message of an error chain: the one that says what actually happened.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// Sort a transport error into a sentence, and say whether retrying may help.
pub(crate) fn classify(error: &reqwest::Error, host: &str) -> Failure {
    use std::io::ErrorKind as K;
    let host = host.to_string();
    let cause = root_cause(error);
    let kind = io_kind(error);
    if error.is_dns() {
        return Failure {
            reason: format!("{host} does not resolve"),
            error: RegistryError::UnknownHost {
                host,
                detail: cause,
            },
            transient: false,
        };
    }
    if error.is_timeout() {
        let reason = if error.is_connect() {
            format!("connecting to {host} timed out")
        } else {
            format!("{host} stopped answering (timed out)")
        };
        return Failure {
            error: RegistryError::Transfer {
                host,
                detail: reason.clone(),
            },
            transient: true,
            reason,
        };
    }
    if error.is_connect() && cause.contains("invalid dns name") {
        // rustls refuses names that cannot be DNS names before any lookup; neither can resolve.
        return Failure {
            reason: format!("{host} is not a valid DNS name"),
            error: RegistryError::UnknownHost {
                host,
                detail: "not a valid DNS name".to_string(),
            },
            transient: false,
        };
    }
    if error.is_connect() && looks_like_tls_failure(&cause) {
        return Failure {
            reason: format!("TLS handshake with {host} failed"),
            error: RegistryError::Tls {
                host,
                detail: cause,
            },
            transient: false,
        };
    }
    if error.is_connect() {
        return match kind {
            Some(K::ConnectionRefused) => Failure {
                reason: format!("connection refused by {host}"),
                error: RegistryError::ConnectionRefused { host },
                transient: false,
            },
            // rustls reports handshake failures as InvalidData (bad certificate, alerts, or a
            // peer that does not speak TLS at all).
            Some(K::InvalidData) => Failure {
                reason: format!("TLS handshake with {host} failed"),
                error: RegistryError::Tls {
                    host,
                    detail: cause,
                },
                transient: false,
            },
            Some(K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe) => {
                Failure {
                    reason: format!("the connection to {host} was reset ({cause})"),
                    error: RegistryError::Connect {
                        host,
                        detail: cause,
                    },
                    transient: true,
                }
            }
            _ => Failure {
                reason: format!("cannot connect to {host} ({cause})"),
                error: RegistryError::Connect {
                    host,
                    detail: cause,
                },
                transient: false,
            },
        };
    }
    // The request went out and the answer broke: resets and early closes are worth a retry.
    let detail = error_chain(error);
    Failure {
        reason: format!("the connection to {host} broke ({cause})"),
        error: RegistryError::Transfer {
            host,
            detail: detail.clone(),
        },
        transient: true,
    }
}

/// Whether an error message is one of rustls's handshake failures (the TLS error type is not
/// reachable through reqwest's public API, so its messages are matched).
fn looks_like_tls_failure(cause: &str) -> bool {
    const MARKERS: [&str; 8] = [
        "invalid peer certificate",
        "received corrupt message",
        "received fatal alert",
        "peer is incompatible",
        "peer misbehaved",
        "peer sent no certificates",
        "handshake",
        "certificate",
    ];
    let cause = cause.to_ascii_lowercase();
    MARKERS.iter().any(|m| cause.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(3))
        );
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(7))
        );
        // A date in the past means "now".
        let later = now + Duration::from_secs(100);
        assert_eq!(parse_retry_after(&headers, later), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers, now), None);
    }

    #[test]
    fn http_dates_convert_exactly() {
        let t = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").expect("epoch");
        assert_eq!(t, UNIX_EPOCH);
        let t = parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT").expect("leap day");
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(951_825_600));
        assert!(parse_http_date("Tue, 29 Feb 2000 12:00:00 CET").is_none());
        assert!(parse_http_date("garbage").is_none());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(150));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(175) && third < Duration::from_millis(525));
            assert!(policy.backoff(30) < Duration::from_millis(525));
        }
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                is_retryable_status(StatusCode::from_u16(s).expect("status")),
                "{s}"
            );
        }
        for s in [200, 400, 401, 403, 404, 501, 505] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).expect("status")),
                "{s}"
            );
        }
    }

    #[test]
    fn insecure_hosts_match_with_or_without_port() {
        let t = Transport::new(TransportSettings {
            user_agent: "t".into(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            certs_dirs: vec![],
            insecure_hosts: vec!["reg.example:5000".into(), "other.example".into()],
            stall: StallLimits::default(),
            retry: RetryPolicy {
                max_retries: 0,
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                max_retry_after: Duration::ZERO,
            },
        });
        assert!(t.is_insecure("reg.example:5000"));
        assert!(!t.is_insecure("reg.example:5001"));
        assert!(t.is_insecure("other.example:443"));
        assert!(t.is_insecure("OTHER.example"));
        assert!(!t.is_insecure("third.example"));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Url::parse("https://reg.example/v2/x").expect("url");
        let b = Url::parse("https://REG.example:443/v2/y").expect("url");
        let c = Url::parse("http://reg.example/v2/x").expect("url");
        let d = Url::parse("https://reg.example:5000/v2/x").expect("url");
        assert_eq!(Origin::of(&a), Origin::of(&b));
        assert_ne!(Origin::of(&a), Origin::of(&c));
        assert_ne!(Origin::of(&a), Origin::of(&d));
    }
}
