//! What the IMAGE argument names, in the spellings people bring from dive and skopeo:
//! `docker://NAME`, `podman://NAME`, `docker-archive://PATH`, `docker-archive:PATH[:NAME]`,
//! `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, or a bare name (a registry reference), with
//! `--source` choosing the kind when there is no prefix.

use std::path::{Path, PathBuf};

use super::daemon::Engine;
use super::layout::LocalKind;
use crate::error::Error;

/// The kinds `--source` accepts (dive's names, plus `oci`, `oci-archive` and `registry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// A registry (the default for a bare name).
    Registry,
    /// The local Docker Engine.
    Docker,
    /// The local Podman service.
    Podman,
    /// A `docker save` or skopeo docker-archive tar.
    DockerArchive,
    /// An OCI layout directory.
    Oci,
    /// A tar of an OCI layout.
    OciArchive,
}

impl SourceKind {
    fn name(self) -> &'static str {
        match self {
            SourceKind::Registry => "registry",
            SourceKind::Docker => "docker",
            SourceKind::Podman => "podman",
            SourceKind::DockerArchive => "docker-archive",
            SourceKind::Oci => "oci",
            SourceKind::OciArchive => "oci-archive",
        }
    }
}

/// Where the image is to be read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// A bare name: the registry, or a local engine when the registry does not have it and
    /// the engine does.
    Auto(String),
    /// A registry, and only a registry.
    Registry(String),
    /// A local engine.
    Engine(Engine, String),
    /// A local archive or layout, and which image of it (tag, name or `@N`).
    Local(LocalKind, PathBuf, Option<String>),
}

/// Prefixes, longest first where one begins another.
const PREFIXES: &[(&str, SourceKind)] = &[
    ("docker-archive://", SourceKind::DockerArchive),
    ("docker-archive:", SourceKind::DockerArchive),
    ("oci-archive://", SourceKind::OciArchive),
    ("oci-archive:", SourceKind::OciArchive),
    ("oci://", SourceKind::Oci),
    ("oci:", SourceKind::Oci),
    ("docker://", SourceKind::Docker),
    ("podman://", SourceKind::Podman),
    ("registry://", SourceKind::Registry),
];

/// Split `PATH[:CHOICE]`: the longest prefix that exists on disk is the path (paths may hold
/// colons); with none, the whole text is the path and reading it reports what is missing.
fn split_choice(rest: &str, want_dir: bool) -> (PathBuf, Option<String>) {
    let fits = |p: &Path| if want_dir { p.is_dir() } else { p.is_file() };
    if fits(Path::new(rest)) {
        return (PathBuf::from(rest), None);
    }
    for (at, _) in rest
        .match_indices(':')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let (path, choice) = (&rest[..at], &rest[at + 1..]);
        if fits(Path::new(path)) && !choice.is_empty() {
            return (PathBuf::from(path), Some(choice.to_string()));
        }
    }
    (PathBuf::from(rest), None)
}

impl SourceSpec {
    /// Read the IMAGE argument with the `--source` flag.
    pub fn parse(image: &str, flag: Option<SourceKind>) -> Result<SourceSpec, Error> {
        let prefixed = PREFIXES
            .iter()
            .find_map(|(prefix, kind)| image.strip_prefix(prefix).map(|rest| (*kind, rest)));
        let (kind, rest) = match (prefixed, flag) {
            (Some((kind, _)), Some(flag)) if kind != flag => {
                return Err(Error::Other(format!(
                    "--source {} conflicts with the {}: prefix of {image}",
                    flag.name(),
                    kind.name()
                )))
            }
            (Some((kind, rest)), _) => (Some(kind), rest),
            (None, flag) => (flag, image),
        };
        if rest.is_empty() {
            return Err(Error::Other(format!(
                "{image}: no image or path after the prefix"
            )));
        }
        Ok(match kind {
            None => SourceSpec::Auto(rest.to_string()),
            Some(SourceKind::Registry) => SourceSpec::Registry(rest.to_string()),
            Some(SourceKind::Docker) => SourceSpec::Engine(Engine::Docker, rest.to_string()),
            Some(SourceKind::Podman) => SourceSpec::Engine(Engine::Podman, rest.to_string()),
            Some(SourceKind::DockerArchive) => {
                let (path, choice) = split_choice(rest, false);
                SourceSpec::Local(LocalKind::DockerArchive, path, choice)
            }
            Some(SourceKind::OciArchive) => {
                let (path, choice) = split_choice(rest, false);
                SourceSpec::Local(LocalKind::OciArchive, path, choice)
            }
            Some(SourceKind::Oci) => {
                let (path, choice) = split_choice(rest, true);
                SourceSpec::Local(LocalKind::OciDir, path, choice)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_flags_choose_the_kind() {
        assert_eq!(
            SourceSpec::parse("alpine:3.20", None).expect("parses"),
            SourceSpec::Auto("alpine:3.20".into())
        );
        assert_eq!(
            SourceSpec::parse("docker://app:dev", None).expect("parses"),
            SourceSpec::Engine(Engine::Docker, "app:dev".into())
        );
        assert_eq!(
            SourceSpec::parse("app:dev", Some(SourceKind::Podman)).expect("parses"),
            SourceSpec::Engine(Engine::Podman, "app:dev".into())
        );
        assert_eq!(
            SourceSpec::parse("docker-archive://img.tar", None).expect("parses"),
            SourceSpec::Local(LocalKind::DockerArchive, "img.tar".into(), None)
        );
        assert!(SourceSpec::parse("oci:dir", Some(SourceKind::Docker)).is_err());
        assert!(SourceSpec::parse("docker://", None).is_err());
    }

    #[test]
    fn the_existing_path_decides_where_the_tag_starts() {
        let dir = std::env::temp_dir().join(format!("layerscope-spec-{}", std::process::id()));
        let layout = dir.join("lay:out");
        std::fs::create_dir_all(&layout).expect("temp dir");
        let text = format!("oci:{}:v1", layout.display());
        assert_eq!(
            SourceSpec::parse(&text, None).expect("parses"),
            SourceSpec::Local(LocalKind::OciDir, layout.clone(), Some("v1".into()))
        );
        let text = format!("oci:{}", layout.display());
        assert_eq!(
            SourceSpec::parse(&text, None).expect("parses"),
            SourceSpec::Local(LocalKind::OciDir, layout, None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
