//! `layerscope manifest IMAGE`: the manifest or index exactly as the registry serves it, with
//! its digest, media type and size (like `crane manifest` and `skopeo inspect --raw`, with a
//! readable summary by default). `--platform` picks one entry of an index.

use std::fmt::Write as _;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::{human_size, json_text, manifest_media_type, parse_image, print_stdout, write_stdout};
use crate::digest::Digest;
use crate::error::{exit_code, Error};
use crate::escape::{escape_str, Escaped};
use crate::image::{
    config_platform, select_platform, ImageConfig, ImageIndex, ImageManifest, NoMatchingPlatform,
    ParsedManifest, Platform,
};
use crate::reference::Reference;
use crate::registry::{FetchedManifest, RegistryClient, RegistryError};

/// Arguments of `layerscope manifest`.
#[derive(Debug, Clone, Args)]
pub struct ManifestArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Print the manifest bytes exactly as served (byte for byte, no newline added).
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,

    /// Print JSON: digest, media type, size and the manifest itself.
    #[arg(long)]
    pub json: bool,

    /// From an index, show the manifest of this platform: OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

impl ManifestArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.image)?.registry])
    }
}

/// A manifest as fetched, and how it was reached.
#[derive(Debug, Clone)]
pub struct ManifestView {
    /// The reference in full, normalised form.
    pub reference: String,
    /// The bytes, digest and parsed form.
    pub fetched: FetchedManifest,
    /// The media type it is served as.
    pub media_type: String,
    /// When `--platform` chose it from an index: the index digest and the entry's platform.
    pub from_index: Option<(Digest, Option<Platform>)>,
}

/// Fetch the manifest `reference` names; with `platform`, the matching entry of an index (a
/// single-platform image must then be that platform, as with `docker pull --platform`).
pub async fn fetch(
    client: &RegistryClient,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<ManifestView, Error> {
    let top = client.fetch_manifest(reference).await?;
    let (fetched, from_index) = match (&top.parsed, platform) {
        (ParsedManifest::Index(index), Some(wanted)) => {
            let entry = select_platform(index, wanted).map_err(|source| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    source: Box::new(source),
                }
            })?;
            let child = client
                .fetch_manifest_by(reference, &entry.digest.to_string())
                .await?;
            (child, Some((top.digest.clone(), entry.platform.clone())))
        }
        (ParsedManifest::Image(manifest), Some(wanted)) => {
            let config = client.fetch_blob(reference, &manifest.config).await?;
            let actual = ImageConfig::parse(&config)
                .ok()
                .and_then(|c| config_platform(&c));
            if let Some(actual) = actual.filter(|a| !wanted.accepts(a)) {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    source: Box::new(NoMatchingPlatform {
                        wanted: wanted.clone(),
                        available: vec![actual],
                    }),
                }
                .into());
            }
            (top, None)
        }
        (_, None) => (top, None),
    };
    Ok(ManifestView {
        reference: reference.to_string(),
        media_type: manifest_media_type(&fetched),
        fetched,
        from_index,
    })
}

/// Run `layerscope manifest`.
pub async fn run(client: &RegistryClient, args: &ManifestArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.image)?;
    let view = fetch(client, &reference, args.platform.as_ref()).await?;
    if args.raw {
        write_stdout(&view.fetched.bytes)?;
    } else if args.json {
        print_stdout(&json_text(&to_json(&view)))?;
    } else {
        print_stdout(&render_text(&view))?;
    }
    Ok(exit_code::OK)
}

/// `manifest --json`: `reference`, `digest`, `mediaType`, `size` (bytes as served),
/// `contentType` (the header, when sent), `index` (when chosen from one: its `digest` and the
/// entry's `platform`) and `manifest` (the document itself).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestJson {
    /// The reference in full.
    pub reference: String,
    /// The digest of the bytes.
    pub digest: String,
    /// The media type it is served as.
    pub media_type: String,
    /// Its size in bytes.
    pub size: usize,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The index it was chosen from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexJson>,
    /// The manifest document.
    pub manifest: Value,
}

/// The index a manifest was chosen from.
#[derive(Debug, Serialize)]
pub struct IndexJson {
    /// The index digest.
    pub digest: String,
    /// The entry's platform.
    pub platform: Option<String>,
}

/// The manifest as JSON (see [`ManifestJson`]).
pub fn to_json(view: &ManifestView) -> ManifestJson {
    ManifestJson {
        reference: view.reference.clone(),
        digest: view.fetched.digest.to_string(),
        media_type: view.media_type.clone(),
        size: view.fetched.bytes.len(),
        content_type: view.fetched.content_type.clone(),
        index: view
            .from_index
            .as_ref()
            .map(|(digest, platform)| IndexJson {
                digest: digest.to_string(),
                platform: platform.as_ref().map(ToString::to_string),
            }),
        manifest: serde_json::from_slice(&view.fetched.bytes).unwrap_or(Value::Null),
    }
}

/// The readable summary: digest, media type and size, then the config and layers of an image
/// manifest, or the platforms of an index.
pub fn render_text(view: &ManifestView) -> String {
    let mut out = String::new();
    let fetched = &view.fetched;
    let _ = writeln!(out, "Reference:   {}", Escaped(&view.reference));
    if let Some((index_digest, platform)) = &view.from_index {
        let platform = platform
            .as_ref()
            .map_or_else(|| "no platform".to_string(), escaped);
        let _ = writeln!(out, "From index:  {index_digest} ({platform})");
    }
    let _ = writeln!(out, "Digest:      {}", fetched.digest);
    let _ = writeln!(out, "Media type:  {}", Escaped(&view.media_type));
    let _ = writeln!(out, "Size:        {} bytes", fetched.bytes.len());
    match &fetched.parsed {
        ParsedManifest::Image(manifest) => write_image(&mut out, manifest),
        ParsedManifest::Index(index) => write_index(&mut out, index),
    }
    out
}

fn write_image(out: &mut String, manifest: &ImageManifest) {
    let config = &manifest.config;
    let _ = writeln!(
        out,
        "Config:      {}  {}  {}",
        config.digest,
        human_size(config.size),
        Escaped(&config.media_type)
    );
    let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
    let _ = writeln!(
        out,
        "\nLayers ({}, {} compressed):",
        manifest.layers.len(),
        human_size(total)
    );
    if !manifest.layers.is_empty() {
        let _ = writeln!(
            out,
            "  {:>3}  {:<71}  {:>9}  MEDIA TYPE",
            "#", "DIGEST", "SIZE"
        );
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>3}  {:<71}  {:>9}  {}",
            i,
            layer.digest.to_string(),
            human_size(layer.size),
            Escaped(&layer.media_type)
        );
    }
    write_annotations(out, &manifest.annotations);
}

fn write_index(out: &mut String, index: &ImageIndex) {
    let attestations = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(Platform::is_unknown))
        .count();
    let platforms = index.manifests.len() - attestations;
    let _ = write!(out, "\nPlatforms ({platforms}");
    if attestations > 0 {
        let plural = if attestations == 1 { "" } else { "s" };
        let _ = write!(out, ", and {attestations} attestation{plural}");
    }
    let _ = writeln!(out, "):");
    let _ = writeln!(
        out,
        "  {:<16}  {:<71}  {:>9}  MEDIA TYPE",
        "PLATFORM", "DIGEST", "SIZE"
    );
    for entry in &index.manifests {
        let platform = entry
            .platform
            .as_ref()
            .map_or_else(|| "-".to_string(), escaped);
        let mut line = format!(
            "  {:<16}  {:<71}  {:>9}  {}",
            platform,
            entry.digest.to_string(),
            human_size(entry.size),
            Escaped(&entry.media_type)
        );
        if let Some(subject) = entry.annotations.get("vnd.docker.reference.digest") {
            let _ = write!(line, "  (attestation for {})", Escaped(subject));
        }
        let _ = writeln!(out, "{line}");
    }
    write_annotations(out, &index.annotations);
}

/// A value from the registry as text, control characters shown visibly.
fn escaped(value: &impl ToString) -> String {
    escape_str(&value.to_string()).into_owned()
}

fn write_annotations(out: &mut String, annotations: &std::collections::BTreeMap<String, String>) {
    if annotations.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nAnnotations:");
    for (key, value) in annotations {
        let _ = writeln!(out, "  {}={}", Escaped(key), Escaped(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(bytes: &[u8], content_type: &str) -> ManifestView {
        let parsed = ParsedManifest::parse(bytes, Some(content_type)).expect("parses");
        let fetched = FetchedManifest {
            bytes: bytes.to_vec(),
            content_type: Some(content_type.to_string()),
            digest: Digest::sha256_of(bytes),
            parsed,
        };
        ManifestView {
            reference: "127.0.0.1:5000/app:1".to_string(),
            media_type: manifest_media_type(&fetched),
            fetched,
            from_index: None,
        }
    }

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn an_index_lists_platforms_and_attestations() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST_A}","size":500,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST_B}","size":400,"platform":{{"os":"unknown","architecture":"unknown"}},"annotations":{{"vnd.docker.reference.digest":"{DIGEST_A}"}}}}]}}"#
        );
        let v = view(bytes.as_bytes(), "application/vnd.oci.image.index.v1+json");
        let text = render_text(&v);
        assert!(text.contains("Platforms (1, and 1 attestation):"), "{text}");
        assert!(text.contains("linux/arm64/v8"), "{text}");
        assert!(
            text.contains(&format!("(attestation for {DIGEST_A})")),
            "{text}"
        );
        assert!(
            text.contains(&format!("Size:        {} bytes", bytes.len())),
            "{text}"
        );
        let doc = serde_json::to_value(to_json(&v)).expect("serialises");
        assert_eq!(doc["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(doc["size"], bytes.len());
        assert_eq!(doc["manifest"]["manifests"][1]["size"], 400);
    }

    #[test]
    fn an_image_manifest_lists_config_and_layers() {
        let bytes = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{DIGEST_A}","size":321}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{DIGEST_B}","size":2000}}]}}"#
        );
        // A generic content type: the kind comes from the JSON's shape.
        let v = view(bytes.as_bytes(), "application/json");
        assert_eq!(v.media_type, "application/vnd.oci.image.manifest.v1+json");
        let text = render_text(&v);
        assert!(
            text.contains(&format!("Config:      {DIGEST_A}  321 B")),
            "{text}"
        );
        assert!(text.contains("Layers (1, 2.0 kB compressed):"), "{text}");
        assert!(text.contains(DIGEST_B), "{text}");
    }
}
