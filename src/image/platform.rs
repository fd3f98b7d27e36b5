//! Platforms (`linux/amd64`, `linux/arm/v7`): parsing `--platform`, normalising the spellings
//! that tools disagree on, and choosing one manifest from an index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::manifest::{Descriptor, ImageIndex};

/// An operating system, CPU architecture and optional variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, such as `linux`.
    pub os: String,
    /// CPU architecture in Go's spelling, such as `amd64`.
    pub architecture: String,
    /// CPU variant, such as `v7` for `arm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows images).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// A platform from its parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let (architecture, variant) = normalise_arch(architecture, variant);
        Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
            os_version: None,
        }
    }

    /// The default platform: `linux/` and the architecture this program runs on, as Docker picks.
    pub fn host_default() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// Whether this platform, as asked for, accepts a candidate from an index. A request
    /// without a variant accepts any variant; one with a variant needs the same variant.
    pub fn accepts(&self, candidate: &Platform) -> bool {
        let c = Platform::new(
            &candidate.os,
            &candidate.architecture,
            candidate.variant.as_deref(),
        );
        if c.os != self.os || c.architecture != self.architecture {
            return false;
        }
        match (&self.variant, &c.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
        }
    }

    /// Attestation and signature entries that BuildKit stores in indexes.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

/// Normalise architecture spellings as containerd does: `x86_64`→`amd64`, `aarch64`→`arm64`,
/// `arm64/v8`→`arm64`, and a default `v7` for bare `arm` only when matching requires it.
fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(|v| v.to_ascii_lowercase())
        .filter(|v| !v.is_empty());
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => {
            // amd64 variants (v2, v3) are real; keep them, but "v1" is the baseline.
            let variant = variant.filter(|v| v != "v1");
            ("amd64".to_string(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = variant.filter(|v| v != "v8");
            ("arm64".to_string(), variant)
        }
        "armhf" => ("arm".to_string(), Some("v7".to_string())),
        "armel" => ("arm".to_string(), Some("v6".to_string())),
        "i386" | "i486" | "i586" | "i686" => ("386".to_string(), variant),
        _ => (arch, variant),
    }
}

/// Why a `--platform` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformParseError(pub String);

impl fmt::Display for PlatformParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlatformParseError {}

impl FromStr for Platform {
    type Err = PlatformParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            PlatformParseError(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT], such as linux/amd64 or linux/arm/v7"
            ))
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// No manifest in an index matched the requested platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatchingPlatform {
    /// What was asked for.
    pub wanted: Platform,
    /// The platforms the index offers (attestations left out).
    pub available: Vec<Platform>,
}

impl fmt::Display for NoMatchingPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.available.iter().map(ToString::to_string).collect();
        if list.is_empty() {
            write!(
                f,
                "no image for platform {}: the index lists no platforms",
                self.wanted
            )
        } else {
            write!(
                f,
                "no image for platform {}; available: {} (choose one with --platform)",
                self.wanted,
                list.join(", ")
            )
        }
    }
}

impl std::error::Error for NoMatchingPlatform {}

/// Choose the manifest for `wanted` from an index, skipping attestation entries. Among several
/// matches for a request without a variant, the first listed wins, as with `docker pull`.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, NoMatchingPlatform> {
    let chosen = index.manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| !p.is_unknown() && wanted.accepts(p))
    });
    chosen.ok_or_else(|| NoMatchingPlatform {
        wanted: wanted.clone(),
        available: index
            .manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .filter(|p| !p.is_unknown())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: crate::image::media_type::OCI_MANIFEST.to_string(),
            digest: Digest::sha256_of(&[n]),
            size: 100,
            platform: Some(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.map(str::to_string),
                os_version: None,
            }),
            annotations: Default::default(),
            urls: vec![],
        }
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: entries,
            annotations: Default::default(),
        }
    }

    #[test]
    fn parses_and_normalises_spellings() {
        let p: Platform = "linux/x86_64".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/amd64");
        let p: Platform = "linux/aarch64".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/arm64");
        let p: Platform = "linux/arm64/v8".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/arm64");
        let p: Platform = "linux/arm/v7".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn selects_matching_entry_and_skips_attestations() {
        let idx = index(vec![
            entry("unknown", "unknown", None, 0),
            entry("linux", "arm64", Some("v8"), 1),
            entry("linux", "amd64", None, 2),
        ]);
        let want: Platform = "linux/amd64".parse().expect("valid");
        assert_eq!(
            select_platform(&idx, &want).expect("match").digest,
            idx.manifests[2].digest
        );
        let want: Platform = "linux/arm64".parse().expect("valid");
        assert_eq!(
            select_platform(&idx, &want).expect("match").digest,
            idx.manifests[1].digest
        );
    }

    #[test]
    fn variant_must_match_when_asked_for() {
        let idx = index(vec![
            entry("linux", "arm", Some("v6"), 1),
            entry("linux", "arm", Some("v7"), 2),
        ]);
        let want: Platform = "linux/arm/v7".parse().expect("valid");
        assert_eq!(
            select_platform(&idx, &want).expect("match").digest,
            idx.manifests[1].digest
        );
        let want: Platform = "linux/arm/v5".parse().expect("valid");
        let err = select_platform(&idx, &want).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("linux/arm/v6") && msg.contains("linux/arm/v7"),
            "{msg}"
        );
    }

    #[test]
    fn no_match_lists_platforms_without_attestations() {
        let idx = index(vec![
            entry("unknown", "unknown", None, 0),
            entry("linux", "s390x", None, 1),
        ]);
        let want: Platform = "linux/amd64".parse().expect("valid");
        let err = select_platform(&idx, &want).unwrap_err();
        assert_eq!(err.available.len(), 1);
        assert!(err.to_string().contains("linux/s390x"));
        assert!(!err.to_string().contains("unknown"));
    }
}
