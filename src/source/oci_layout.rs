//! OCI image layouts (`oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, and the layout inside Docker
//! 25+ archives): `index.json` names manifests (or nested indexes) by digest, tagged with the
//! `org.opencontainers.image.ref.name` annotation (containerd and Docker also write
//! `io.containerd.image.name`); blobs live under `blobs/ALG/HEX` and are checked against
//! their digests like registry blobs.

use super::docker_archive::same_name;
use super::layout::{read_verified, Choice, Described, LayerPlace, LayoutRead};
use crate::digest::Digest;
use crate::error::Error;
use crate::image::{
    select_platform, Descriptor, ImageIndex, ImageInfo, ImageParts, ParsedManifest, Platform,
};

/// The annotation naming an image in a layout (by the spec, the tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full image name containerd and Docker add beside it.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// The name an index entry goes by, if any.
fn entry_name(d: &Descriptor) -> Option<&str> {
    d.annotations
        .get(CONTAINERD_NAME)
        .or_else(|| d.annotations.get(REF_NAME))
        .map(String::as_str)
}

fn matches(d: &Descriptor, wanted: &str) -> bool {
    d.annotations.get(REF_NAME).is_some_and(|n| n == wanted)
        || d.annotations
            .get(CONTAINERD_NAME)
            .is_some_and(|n| same_name(n, wanted))
}

/// Attestations and signatures stored beside images.
fn is_attestation(d: &Descriptor) -> bool {
    d.platform.as_ref().is_some_and(Platform::is_unknown)
        || d.annotations.contains_key("vnd.docker.reference.type")
}

fn describe_entry(d: &Descriptor) -> String {
    let name = entry_name(d).unwrap_or("(untagged)");
    match &d.platform {
        Some(p) => format!("{name} {p}"),
        None => name.to_string(),
    }
}

fn read_manifest(
    files: &dyn LayoutRead,
    d: &Descriptor,
) -> Result<(Vec<u8>, ParsedManifest), Error> {
    let bytes = read_verified(files, &blob_path(&d.digest), &d.digest, Some(d.size))?;
    let parsed = ParsedManifest::parse(&bytes, Some(&d.media_type))?;
    Ok((bytes, parsed))
}

/// Describe the chosen image of an OCI layout.
pub fn describe_oci(files: &dyn LayoutRead, choice: &Choice) -> Result<Described, Error> {
    let location = files.location();
    let bad = |detail: String| Error::Archive {
        path: location.clone(),
        detail,
    };
    let index_bytes = files.read_small("index.json")?;
    let index: ImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| bad(format!("index.json is not an OCI image index ({e})")))?;
    let mut candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !is_attestation(d))
        .collect();
    if candidates.is_empty() {
        return Err(bad("index.json names no image".to_string()));
    }
    if let Some(wanted) = &choice.name {
        let all: Vec<String> = candidates.iter().map(|d| describe_entry(d)).collect();
        candidates.retain(|d| matches(d, wanted));
        if candidates.is_empty() {
            return Err(bad(format!(
                "no image tagged {wanted}; it holds: {}",
                all.join(", ")
            )));
        }
    }
    let mut names: Vec<Option<&str>> = candidates.iter().map(|d| entry_name(d)).collect();
    names.dedup();
    if names.len() > 1 {
        return Err(Error::Ambiguous {
            what: format!("layout {location}"),
            available: candidates.iter().map(|d| describe_entry(d)).collect(),
            hint:
                "choose one with oci:DIR:TAG (oci-archive:PATH:TAG, docker-archive:PATH:NAME:TAG)"
                    .to_string(),
        });
    }
    let wanted_platform = choice
        .platform
        .clone()
        .unwrap_or_else(Platform::host_default);
    // Entries for several platforms under one name are an index in all but name.
    let top: Descriptor = if candidates.len() == 1 {
        candidates[0].clone()
    } else if candidates.iter().all(|d| d.platform.is_some()) {
        let flat = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: candidates.iter().map(|d| (*d).clone()).collect(),
            annotations: Default::default(),
        };
        select_platform(&flat, &wanted_platform)?.clone()
    } else {
        return Err(Error::Ambiguous {
            what: format!("layout {location}"),
            available: candidates.iter().map(|d| d.digest.to_string()).collect(),
            hint: "tag the one to read and give oci:DIR:TAG".to_string(),
        });
    };

    let (mut bytes, mut parsed) = read_manifest(files, &top)?;
    let mut manifest_digest = top.digest.clone();
    let mut platform = top.platform.clone().filter(|_| candidates.len() > 1);
    if let ParsedManifest::Index(nested) = &parsed {
        let entry = select_platform(nested, &wanted_platform)?.clone();
        let (child_bytes, child) = read_manifest(files, &entry)?;
        bytes = child_bytes;
        parsed = child;
        manifest_digest = entry.digest.clone();
        platform = entry.platform.clone();
    }
    let media_type = parsed.media_type().to_string();
    let ParsedManifest::Image(manifest) = parsed else {
        return Err(bad(
            "the index entry for the platform is itself an index".to_string()
        ));
    };
    let config_bytes = read_verified(
        files,
        &blob_path(&manifest.config.digest),
        &manifest.config.digest,
        Some(manifest.config.size),
    )?;

    let mut places = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        let path = blob_path(&layer.digest);
        let file = files.layer_file(&path)?;
        if file.size != layer.size {
            return Err(Error::Blob {
                origin: format!("{location} ({path})"),
                digest: layer.digest.clone(),
                source: if file.size < layer.size {
                    crate::digest::VerifyError::TooShort {
                        expected: layer.size,
                        actual: file.size,
                    }
                } else {
                    crate::digest::VerifyError::TooLong {
                        expected: layer.size,
                    }
                },
            });
        }
        let verify = match file.digest {
            Some(computed) if computed != layer.digest => {
                return Err(bad(format!(
                    "{path} holds bytes with digest {computed}, not the one its name states"
                )))
            }
            Some(_) => None,
            None => Some(layer.digest.clone()),
        };
        places.push(LayerPlace { path, verify });
    }
    let reference = entry_name(&top)
        .map(str::to_string)
        .or_else(|| choice.name.clone())
        .unwrap_or_else(|| location.clone());
    let info = ImageInfo::assemble(
        ImageParts {
            reference,
            digest: top.digest.clone(),
            manifest_digest,
            media_type,
            manifest_bytes: bytes,
            manifest: *manifest,
            config_bytes,
            platform: platform.clone(),
        },
        choice.platform.as_ref(),
    )?;
    Ok(Described {
        info,
        places,
        index_platform: platform,
    })
}
