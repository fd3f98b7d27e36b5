//! Manifests and indexes: the four media types registries serve, told apart by `Content-Type`
//! and by the JSON itself, because OCI manifests may omit `mediaType` and some registries send
//! a generic content type.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::platform::Platform;
use crate::digest::Digest;

/// Media types this program reads.
pub mod media_type {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Docker manifest list (multi-platform).
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker schema 1 manifest, unsigned.
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1 manifest, signed.
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// OCI layer, uncompressed.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI layer, zstd.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker layer, gzip.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker foreign (non-distributable) layer.
    pub const DOCKER_LAYER_FOREIGN: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// The `Accept` header value that asks for every manifest kind we understand.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// A content descriptor: what a manifest or index says about one blob or child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Content address.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Alternate download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// An image manifest (OCI or Docker schema 2): one config and ordered layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Present in Docker manifests, optional in OCI ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI index or Docker manifest list: one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// Present in Docker lists, optional in OCI indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The child manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest fetch returned, once identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedManifest {
    /// A multi-platform index or list.
    Index(ImageIndex),
    /// A single-platform image manifest.
    Image(Box<ImageManifest>),
}

/// Why manifest bytes could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Docker schema 1, which carries no config blob or diff_ids.
    Schema1,
    /// Not JSON, or JSON of the wrong shape.
    Invalid(String),
    /// A media type this program does not read.
    UnsupportedMediaType(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Schema1 => f.write_str(
                "Docker schema 1 manifests are unsupported; re-push the image with a current client",
            ),
            ManifestError::Invalid(why) => write!(f, "invalid manifest: {why}"),
            ManifestError::UnsupportedMediaType(mt) => {
                write!(f, "unsupported manifest media type {mt}")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Just enough of any manifest to tell which kind it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestProbe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
    fs_layers: Option<serde_json::Value>,
}

impl ParsedManifest {
    /// Identify and parse manifest bytes. `content_type` is the HTTP `Content-Type` when there is
    /// one; the JSON's own `mediaType`, then its shape, decide when the header is generic.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let probe: ManifestProbe = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not a JSON manifest ({e})")))?;
        let header = content_type
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or(ct)
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|ct| !ct.is_empty());
        let declared = probe.media_type.clone();
        let media_type = match (&declared, &header) {
            (Some(mt), _) => Some(mt.as_str()),
            (None, Some(ct)) if is_manifest_media_type(ct) || is_schema1(ct) => Some(ct.as_str()),
            _ => None,
        };
        if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
            return Err(ManifestError::Schema1);
        }
        let kind = match media_type {
            Some(mt) if is_schema1(mt) => return Err(ManifestError::Schema1),
            Some(media_type::OCI_INDEX) | Some(media_type::DOCKER_MANIFEST_LIST) => Kind::Index,
            Some(media_type::OCI_MANIFEST) | Some(media_type::DOCKER_MANIFEST) => Kind::Image,
            Some(other) if declared.is_some() => {
                return Err(ManifestError::UnsupportedMediaType(other.to_string()))
            }
            _ => {
                if probe.manifests.is_some() {
                    Kind::Index
                } else if probe.config.is_some() && probe.layers.is_some() {
                    Kind::Image
                } else {
                    return Err(ManifestError::Invalid(
                        "neither an image manifest nor an index".to_string(),
                    ));
                }
            }
        };
        match kind {
            Kind::Index => serde_json::from_slice(bytes)
                .map(ParsedManifest::Index)
                .map_err(|e| ManifestError::Invalid(format!("bad index: {e}"))),
            Kind::Image => serde_json::from_slice(bytes)
                .map(|m| ParsedManifest::Image(Box::new(m)))
                .map_err(|e| ManifestError::Invalid(format!("bad image manifest: {e}"))),
        }
    }

    /// The media type to report: the declared one, or the one implied by the shape.
    pub fn media_type(&self) -> &str {
        match self {
            ParsedManifest::Index(i) => i.media_type.as_deref().unwrap_or(media_type::OCI_INDEX),
            ParsedManifest::Image(m) => m.media_type.as_deref().unwrap_or(media_type::OCI_MANIFEST),
        }
    }
}

enum Kind {
    Index,
    Image,
}

fn is_schema1(mt: &str) -> bool {
    mt == media_type::DOCKER_SCHEMA1 || mt == media_type::DOCKER_SCHEMA1_SIGNED
}

/// Whether `mt` names one of the four manifest kinds this program reads.
pub fn is_manifest_media_type(mt: &str) -> bool {
    matches!(
        mt,
        media_type::OCI_INDEX
            | media_type::OCI_MANIFEST
            | media_type::DOCKER_MANIFEST_LIST
            | media_type::DOCKER_MANIFEST
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;

    #[test]
    fn oci_manifest_without_media_type_is_recognised_by_shape() {
        let json = format!(r#"{{"schemaVersion":2,"config":{CONFIG},"layers":[]}}"#);
        let parsed = ParsedManifest::parse(json.as_bytes(), Some("application/json"))
            .expect("manifest parses");
        assert!(matches!(parsed, ParsedManifest::Image(_)));
        assert_eq!(parsed.media_type(), media_type::OCI_MANIFEST);
    }

    #[test]
    fn index_is_recognised_by_content_type_when_json_is_silent() {
        let json = r#"{"schemaVersion":2,"manifests":[]}"#;
        let parsed = ParsedManifest::parse(json.as_bytes(), Some(media_type::DOCKER_MANIFEST_LIST))
            .expect("index parses");
        assert!(matches!(parsed, ParsedManifest::Index(_)));
    }

    #[test]
    fn schema1_is_refused_with_advice() {
        let json = r#"{"schemaVersion":1,"name":"x","tag":"latest","fsLayers":[]}"#;
        let err = ParsedManifest::parse(json.as_bytes(), None).unwrap_err();
        assert_eq!(err, ManifestError::Schema1);
        assert!(err.to_string().contains("re-push"));
    }

    #[test]
    fn html_is_invalid_not_a_panic() {
        let err = ParsedManifest::parse(b"<html><body>login</body></html>", Some("text/html"))
            .unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)));
    }
}
