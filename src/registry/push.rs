//! Writing to a registry and asking about manifests without reading them: `PUT` of manifest
//! bytes under a tag (with the push scope `repository:NAME:pull,push`), and `HEAD` of a
//! manifest for its digest, media type and size.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::{header_string, Access, ApiRequest, Fetching, RegistryClient, RegistryError};
use crate::digest::{Digest, DigestHasher};
use crate::image::media_type;
use crate::reference::{Reference, Target};

/// What a `HEAD` of a manifest says, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when the registry sends it.
    pub digest: Option<Digest>,
    /// `Content-Type`.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

impl RegistryClient {
    /// Store `bytes` unchanged as a manifest of the repository of `reference` under `target`
    /// (a tag, or the bytes' digest), sent as `media_type`. Returns the digest the registry
    /// reports for what it stored (checked against the bytes), or the bytes' sha256 when it
    /// reports none.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        target: &Target,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let mut headers = HeaderMap::new();
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::ManifestRejected {
                host: reference.registry.clone(),
                repository: reference.repository.clone(),
                target: target.to_string(),
                reason: format!("the media type {media_type:?} cannot be sent as a header"),
            })?;
        headers.insert(CONTENT_TYPE, content_type);
        let path = format!("v2/{}/manifests/{target}", reference.repository);
        let response = self
            .authorized(
                reference,
                Access::Push,
                ApiRequest {
                    method: Method::PUT,
                    target: &path,
                    headers,
                    body: Some(Bytes::copy_from_slice(bytes)),
                },
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(reference, Fetching::PushManifest(target), response)
                .await);
        }
        let announced = header_string(response.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok());
        let Some(announced) = announced else {
            return Ok(Digest::sha256_of(bytes));
        };
        let mut hasher = DigestHasher::new(announced.algorithm());
        hasher.update(bytes);
        let actual = hasher.finish();
        if actual != announced {
            return Err(RegistryError::ManifestDigestMismatch {
                host: reference.registry.clone(),
                repository: reference.repository.clone(),
                target: target.to_string(),
                expected: Box::new(actual),
                actual: Box::new(announced),
            });
        }
        Ok(announced)
    }

    /// `HEAD` the manifest `target` of the repository of `reference`: its digest, media type
    /// and size as the registry announces them, or `None` when it does not exist (404).
    pub async fn head_manifest(
        &self,
        reference: &Reference,
        target: &Target,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let path = format!("v2/{}/manifests/{target}", reference.repository);
        let response = self
            .authorized(
                reference,
                Access::Pull,
                ApiRequest {
                    method: Method::HEAD,
                    target: &path,
                    headers,
                    body: None,
                },
            )
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self
                .status_error(reference, Fetching::Manifest(target), response)
                .await);
        }
        let headers = response.headers();
        Ok(Some(ManifestHead {
            digest: header_string(headers, "docker-content-digest")
                .and_then(|d| d.parse::<Digest>().ok()),
            media_type: header_string(headers, CONTENT_TYPE.as_str()),
            size: header_string(headers, CONTENT_LENGTH.as_str()).and_then(|n| n.parse().ok()),
        }))
    }
}
