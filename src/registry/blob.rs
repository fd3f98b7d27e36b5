//! Blob downloads as verified byte streams. Size and digest are checked while bytes pass; a
//! connection that breaks mid-way, or falls below the low-speed floor, is resumed with a
//! `Range` request (a server that ignores the range has the bytes already handed out
//! skipped), so consumers only ever see each byte once. Stalls and resumes stay within the
//! request's patience, counted from the last moment the download kept up with the floor.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::CONTENT_RANGE;
use reqwest::{Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::error::RegistryError;
use super::stall::{Budget, Pace, Waiting};
use super::transport::{classify, host_port, limits_of, stall_failure};
use super::RegistryClient;
use crate::digest::{Digest, Verifier};
use crate::reference::Reference;

/// A blob's bytes as they arrive. Ends with `Err` (and nothing after it) when the download fails
/// or the bytes do not match the expected size or digest; a clean end means verified bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Download {
    client: RegistryClient,
    reference: Reference,
    digest: Digest,
    verifier: Option<Verifier>,
    body: Option<Body>,
    /// Host of the answer being read (a CDN after a redirect), for errors.
    body_host: String,
    /// Bytes handed out so far.
    received: u64,
    /// Bytes still to drop from an answer that ignored our `Range`.
    skip: u64,
    /// Requests made for this blob.
    attempts: u32,
    /// Why the last attempt broke off: the reason to give when the patience then runs out
    /// while a resume is still waiting for its answer.
    last_failure: Option<String>,
    /// The body's credit against the low-speed floor.
    pace: Pace,
    /// The download's patience, restarted whenever it keeps up with the floor.
    budget: Budget,
    done: bool,
    /// Held for the stream's life: one of the registry's download slots.
    _permit: Option<OwnedSemaphorePermit>,
}

/// Wrap the first answer for a blob in a verifying, resuming stream.
pub(crate) fn stream(
    client: RegistryClient,
    reference: Reference,
    digest: Digest,
    size: Option<u64>,
    first: Response,
    permit: Option<OwnedSemaphorePermit>,
) -> BlobStream {
    let body_host = host_port(first.url());
    let budget = Budget::start(limits_of(&first));
    let download = Download {
        pace: budget.pace(),
        budget,
        verifier: Some(Verifier::new(&digest, size)),
        body: Some(Box::pin(first.bytes_stream())),
        client,
        reference,
        digest,
        body_host,
        received: 0,
        skip: 0,
        attempts: 1,
        last_failure: None,
        done: false,
        _permit: permit,
    };
    Box::pin(futures_util::stream::unfold(download, |mut d| async move {
        let item = d.next_item().await?;
        Some((item, d))
    }))
}

impl Download {
    async fn next_item(&mut self) -> Option<Result<Bytes, RegistryError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.resume().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            };
            let next = match self.pace.wait(body.next(), Waiting::Body).await {
                Ok(next) => next.map(|item| item.map_err(Interruption::Http)),
                Err(stalled) => Some(Err(Interruption::Stalled(stalled))),
            };
            match next {
                Some(Ok(mut chunk)) => {
                    self.pace.received(chunk.len());
                    if self.pace.is_full() {
                        self.budget.restart();
                    }
                    if self.skip > 0 {
                        let drop = usize::try_from(self.skip)
                            .unwrap_or(usize::MAX)
                            .min(chunk.len());
                        let _ = chunk.split_to(drop);
                        self.skip -= drop as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(verifier) = self.verifier.as_mut() {
                        if let Err(source) = verifier.update(&chunk) {
                            self.done = true;
                            return Some(Err(self.verification(source)));
                        }
                    }
                    self.received += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                Some(Err(error)) => {
                    self.body = None;
                    let failure = match error {
                        Interruption::Http(error) => classify(&error, &self.body_host),
                        Interruption::Stalled(stalled) => stall_failure(&self.body_host, stalled),
                    };
                    let policy = self.client.retry_policy();
                    let delay = policy.backoff(self.attempts);
                    if !failure.transient
                        || self.attempts > policy.max_retries
                        || delay >= self.budget.remaining()
                    {
                        self.done = true;
                        return Some(Err(RegistryError::BlobInterrupted {
                            host: self.reference.registry.clone(),
                            repository: self.reference.repository.clone(),
                            digest: self.digest.clone(),
                            received: self.received,
                            attempts: self.attempts,
                            detail: failure.reason,
                        }));
                    }
                    self.last_failure = Some(failure.reason);
                    tokio::time::sleep(delay).await;
                }
                None => {
                    self.done = true;
                    let verifier = self.verifier.take()?;
                    return match verifier.finish() {
                        Ok(()) => None,
                        Err(source) => Some(Err(self.verification(source))),
                    };
                }
            }
        }
    }

    /// Ask again from the first byte not yet handed out, within the patience left.
    async fn resume(&mut self) -> Result<(), RegistryError> {
        self.attempts += 1;
        let asked = self
            .client
            .blob_response(&self.reference, &self.digest, self.received);
        let response = match tokio::time::timeout(self.budget.remaining(), asked).await {
            Ok(answer) => answer?,
            Err(_) => {
                let timeout = humantime::format_duration(self.budget.limits().timeout);
                // The patience mostly runs out here because the earlier attempts used it up;
                // their reason comes first, since that is what the user has to look into.
                let detail = match self.last_failure.take() {
                    Some(reason) => {
                        format!("{reason}; the resume had no answer before --timeout ({timeout}) ran out")
                    }
                    None => format!(
                        "{} did not answer within --timeout ({timeout})",
                        self.reference.registry
                    ),
                };
                return Err(RegistryError::BlobInterrupted {
                    host: self.reference.registry.clone(),
                    repository: self.reference.repository.clone(),
                    digest: self.digest.clone(),
                    received: self.received,
                    attempts: self.attempts,
                    detail,
                });
            }
        };
        self.pace = self.budget.pace();
        self.skip = match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let start = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if start != Some(self.received) {
                    return Err(RegistryError::BlobInterrupted {
                        host: self.reference.registry.clone(),
                        repository: self.reference.repository.clone(),
                        digest: self.digest.clone(),
                        received: self.received,
                        attempts: self.attempts,
                        detail: "the server resumed at the wrong offset".to_string(),
                    });
                }
                0
            }
            _ => self.received,
        };
        self.body_host = host_port(response.url());
        self.body = Some(Box::pin(response.bytes_stream()));
        Ok(())
    }

    fn verification(&self, source: crate::digest::VerifyError) -> RegistryError {
        RegistryError::BlobVerification {
            host: self.reference.registry.clone(),
            repository: self.reference.repository.clone(),
            digest: self.digest.clone(),
            source: Box::new(source),
        }
    }
}

/// Why a body stopped before its end.
enum Interruption {
    /// The connection failed.
    Http(reqwest::Error),
    /// It fell below the low-speed floor.
    Stalled(super::stall::Stalled),
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
