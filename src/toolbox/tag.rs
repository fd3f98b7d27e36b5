//! `layerscope tag IMAGE NEWTAG`: tag remotely, like `crane tag`. The manifest (or index) bytes
//! IMAGE names are put, unchanged and with their media type, under NEWTAG in the same
//! repository; no layer is downloaded. Then NEWTAG is fetched back and its digest must be the
//! one pushed. What NEWTAG pointed to before (if anything) is reported too.

use std::fmt::Write as _;

use clap::Args;
use serde::Serialize;

use super::{json_text, manifest_media_type, parse_image, print_stdout, ToolboxError};
use crate::digest::Digest;
use crate::error::{exit_code, Error};
use crate::escape::Escaped;
use crate::reference::{Reference, Target};
use crate::registry::RegistryClient;

/// Arguments of `layerscope tag`.
#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    /// The image to tag: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The new tag, in the same repository (such as `v1.4` or `stable`).
    #[arg(value_name = "NEWTAG")]
    pub new_tag: String,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl TagArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.image)?.registry])
    }
}

/// What tagging did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The source, in full.
    pub source: String,
    /// The new tag, in full.
    pub target: String,
    /// The digest of the manifest bytes that were pushed (the source's).
    pub source_digest: Digest,
    /// The digest the registry serves for the new tag, fetched back after the push.
    pub target_digest: Digest,
    /// The media type the manifest was pushed as.
    pub media_type: String,
    /// Its size in bytes.
    pub size: usize,
    /// What the new tag named before, if it existed.
    pub previous: Option<Digest>,
}

/// Check that `tag` is a bare tag, saying why not in words about tags.
pub fn parse_new_tag(tag: &str) -> Result<String, ToolboxError> {
    let invalid = |why: &str| ToolboxError::InvalidNewTag {
        given: tag.to_string(),
        why: why.to_string(),
    };
    if tag.contains(['/', ':', '@']) {
        return Err(invalid(
            "give only the tag; the repository is IMAGE's and a digest cannot be a tag",
        ));
    }
    match Target::parse(tag) {
        Ok(Target::Tag(t)) => Ok(t),
        Ok(Target::Digest(_)) => Err(invalid("a digest cannot be a tag")),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

/// Put the manifest `reference` names under `new_tag` in its repository and check the result.
pub async fn tag(
    client: &RegistryClient,
    reference: &Reference,
    new_tag: &str,
) -> Result<Tagged, Error> {
    let new_tag = parse_new_tag(new_tag)?;
    let target = Target::Tag(new_tag.clone());
    let target_reference = Reference {
        tag: Some(new_tag.clone()),
        digest: None,
        ..reference.clone()
    };
    let source = client.fetch_manifest(reference).await?;
    let media_type = manifest_media_type(&source);
    let previous = client
        .head_manifest(reference, &target)
        .await?
        .and_then(|head| head.digest);
    client
        .put_manifest(reference, &target, &source.bytes, &media_type)
        .await?;
    // Fetched, not only HEADed: the bytes are hashed against the digest the registry announces.
    let check = client.fetch_manifest_by(reference, &new_tag).await?;
    if check.digest != source.digest {
        return Err(ToolboxError::TagMismatch {
            reference: target_reference.to_string(),
            expected: source.digest.clone(),
            actual: check.digest,
        }
        .into());
    }
    Ok(Tagged {
        source: reference.to_string(),
        target: target_reference.to_string(),
        source_digest: source.digest,
        target_digest: check.digest,
        media_type,
        size: source.bytes.len(),
        previous,
    })
}

/// Run `layerscope tag`.
pub async fn run(client: &RegistryClient, args: &TagArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.image)?;
    let tagged = tag(client, &reference, &args.new_tag).await?;
    if args.json {
        print_stdout(&json_text(&to_json(&tagged)))?;
    } else {
        print_stdout(&render_text(&tagged))?;
    }
    Ok(exit_code::OK)
}

/// What tagging did, for people.
pub fn render_text(t: &Tagged) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Tagged {} as {}",
        Escaped(&t.source),
        Escaped(&t.target)
    );
    let _ = writeln!(out, "Source digest:   {}", t.source_digest);
    let _ = writeln!(
        out,
        "New tag digest:  {} (fetched back from the registry)",
        t.target_digest
    );
    let _ = writeln!(
        out,
        "Media type:      {} ({} bytes)",
        Escaped(&t.media_type),
        t.size
    );
    match &t.previous {
        Some(previous) if *previous == t.target_digest => {
            let _ = writeln!(out, "Previously:      the same digest (unchanged)");
        }
        Some(previous) => {
            let _ = writeln!(out, "Previously:      {previous} (moved)");
        }
        None => {
            let _ = writeln!(out, "Previously:      the tag did not exist");
        }
    }
    out
}

/// `tag --json`: `source`, `target`, `sourceDigest`, `targetDigest`, `mediaType`, `size`,
/// `previousDigest` (null when the tag is new).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagJson {
    /// The source reference.
    pub source: String,
    /// The new tag's reference.
    pub target: String,
    /// The digest pushed.
    pub source_digest: String,
    /// The digest fetched back.
    pub target_digest: String,
    /// The media type pushed.
    pub media_type: String,
    /// The manifest's size.
    pub size: usize,
    /// What the tag named before.
    pub previous_digest: Option<String>,
}

/// What tagging did, as JSON (see [`TagJson`]).
pub fn to_json(t: &Tagged) -> TagJson {
    TagJson {
        source: t.source.clone(),
        target: t.target.clone(),
        source_digest: t.source_digest.to_string(),
        target_digest: t.target_digest.to_string(),
        media_type: t.media_type.clone(),
        size: t.size,
        previous_digest: t.previous.as_ref().map(ToString::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tags_are_bare_tags() {
        assert_eq!(parse_new_tag("v1.4").expect("a tag"), "v1.4");
        for bad in ["app:v2", "sha256:abc", "a/b", "-x", ".x", ""] {
            let err = parse_new_tag(bad).expect_err(bad);
            assert!(err.to_string().contains("NEWTAG"), "{err}");
        }
    }
}
