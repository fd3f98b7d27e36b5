//! The image config blob: runtime defaults, `rootfs.diff_ids` and build history, and the
//! alignment of history steps with layers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Configs larger than this are refused, as manifests over their limit are: a real config is
/// kilobytes, and Podman, skopeo and CRI-O read configs under the same 4 MiB. Past it, a
/// crafted config (a history of hundreds of thousands of steps) would only cost memory.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Why a config of `size` bytes is refused, or `None` when it is within [`MAX_CONFIG_BYTES`].
pub fn config_too_large(size: u64) -> Option<String> {
    (size > MAX_CONFIG_BYTES).then(|| {
        format!(
            "it is {size} bytes, more than the {MAX_CONFIG_BYTES} bytes (4 MiB) an image config \
             may have; refusing it"
        )
    })
}

/// The image config (OCI `application/vnd.oci.image.config.v1+json` or its Docker twin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// When the image was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Runtime defaults.
    #[serde(default)]
    pub config: RuntimeConfig,
    /// The uncompressed layer digests.
    #[serde(default)]
    pub rootfs: RootFs,
    /// Build steps, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// The container defaults an image carries (`config` in the image config JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// User (and group) the process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports the image declares, as `80/tcp` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Environment, `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Declared volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Signal that stops the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// `rootfs` of the config: the diff_ids of the layers, base first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// sha256 of each uncompressed layer tar.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// One build step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text (BuildKit puts `buildkit.dockerfile.v0` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True for steps that changed metadata only (ENV, CMD, …).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parse config bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A history step placed against the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStep {
    /// The step as the config has it (a synthetic empty one for layers with no history).
    pub entry: HistoryEntry,
    /// The layer this step made, or `None` for metadata-only steps.
    pub layer_index: Option<usize>,
}

/// Place every history step against the layers: non-empty steps map, in order, onto layers;
/// metadata-only steps keep their place with no layer. Layers that history does not account for
/// (images built by tools that write no history) get a synthetic step so none is hidden; extra
/// non-empty steps beyond the layers are kept as metadata-only rows.
pub fn align_history(history: &[HistoryEntry], layer_count: usize) -> Vec<HistoryStep> {
    let mut steps = Vec::with_capacity(history.len().max(layer_count));
    let mut next_layer = 0usize;
    for entry in history {
        let layer_index = if !entry.empty_layer && next_layer < layer_count {
            next_layer += 1;
            Some(next_layer - 1)
        } else {
            None
        };
        steps.push(HistoryStep {
            entry: entry.clone(),
            layer_index,
        });
    }
    for index in next_layer..layer_count {
        steps.push(HistoryStep {
            entry: HistoryEntry::default(),
            layer_index: Some(index),
        });
    }
    steps
}

/// `created_by` as people want to read it: without the `/bin/sh -c #(nop) ` prefix Docker's
/// classic builder wrote before metadata instructions, and with `RUN` made explicit for the
/// shell form.
pub fn clean_created_by(created_by: &str) -> String {
    let s = created_by.trim();
    if let Some(rest) = s.strip_prefix("/bin/sh -c #(nop)") {
        return rest.trim().to_string();
    }
    if let Some(rest) = s.strip_prefix("/bin/sh -c ") {
        return format!("RUN {}", rest.trim());
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(created_by: &str, empty: bool) -> HistoryEntry {
        HistoryEntry {
            created_by: Some(created_by.to_string()),
            empty_layer: empty,
            ..HistoryEntry::default()
        }
    }

    #[test]
    fn metadata_steps_keep_their_place_between_layers() {
        let history = vec![
            step("ADD rootfs", false),
            step("ENV A=1", true),
            step("RUN make", false),
            step("CMD [\"x\"]", true),
        ];
        let steps = align_history(&history, 2);
        let layers: Vec<Option<usize>> = steps.iter().map(|s| s.layer_index).collect();
        assert_eq!(layers, vec![Some(0), None, Some(1), None]);
    }

    #[test]
    fn layers_without_history_get_synthetic_steps() {
        let steps = align_history(&[step("ENV A=1", true)], 2);
        let layers: Vec<Option<usize>> = steps.iter().map(|s| s.layer_index).collect();
        assert_eq!(layers, vec![None, Some(0), Some(1)]);
    }

    #[test]
    fn surplus_history_steps_become_metadata_rows() {
        let steps = align_history(&[step("a", false), step("b", false)], 1);
        let layers: Vec<Option<usize>> = steps.iter().map(|s| s.layer_index).collect();
        assert_eq!(layers, vec![Some(0), None]);
    }

    #[test]
    fn cleans_classic_builder_prefixes() {
        assert_eq!(
            clean_created_by("/bin/sh -c #(nop)  CMD [\"sh\"]"),
            "CMD [\"sh\"]"
        );
        assert_eq!(
            clean_created_by("/bin/sh -c apt-get update"),
            "RUN apt-get update"
        );
        assert_eq!(
            clean_created_by("RUN /bin/sh -c make # buildkit"),
            "RUN /bin/sh -c make # buildkit"
        );
    }

    #[test]
    fn parses_a_docker_config() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"},"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"x","empty_layer":true}]}"#;
        let c = ImageConfig::parse(json).expect("config parses");
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert_eq!(c.config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert!(c.history[0].empty_layer);
    }
}
