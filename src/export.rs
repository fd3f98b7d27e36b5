//! The JSON export of design §7 (`--json FILE|-`), schemaVersion 1. Field names and meanings
//! are a contract with scripts: later fields may be added, these keep their meaning.

use serde::Serialize;

use crate::analysis::Figures;
use crate::ci::CiOutcome;
use crate::image::ImageInfo;
use crate::report::LayerRow;
use crate::tree::display_path;

/// The schema version written in every export.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole export document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Image-wide facts and figures.
    pub image: ImageSection,
    /// One entry per layer, base first.
    pub layers: Vec<LayerSection>,
    /// Every build step, metadata-only ones included.
    pub history: Vec<HistorySection>,
    /// Paths stored more than once, largest first.
    pub inefficiencies: Vec<InefficiencySection>,
    /// Present only in CI mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiSection>,
}

/// `image` of the export.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSection {
    /// The reference in full, normalised form.
    pub reference: String,
    /// The digest the reference resolved to (the index's when it named an index).
    pub digest: String,
    /// The digest of the single-platform manifest analysed.
    pub manifest_digest: String,
    /// Media type of the single-platform manifest.
    pub media_type: String,
    /// `os/arch[/variant]`, when known.
    pub platform: Option<String>,
    /// Σ sizeBytes of the layers (uncompressed regular-file bytes).
    pub size_bytes: u64,
    /// Σ blob sizes of the layers.
    pub compressed_size_bytes: u64,
    /// Σ min ÷ Σ sum over visited paths.
    pub efficiency: f64,
    /// dive's wasted bytes.
    pub wasted_bytes: u64,
    /// wastedBytes ÷ sizeBytes of all layers but the first.
    pub user_wasted_percent: f64,
    /// Regular-file bytes stored but not visible at the end.
    pub shadowed_bytes: u64,
    /// Regular files visible in the final filesystem.
    pub file_count: u64,
    /// Their bytes.
    pub file_bytes: u64,
}

/// One element of `layers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerSection {
    /// Position, base first, from 0.
    pub index: usize,
    /// Blob digest.
    pub digest: String,
    /// Uncompressed tar digest.
    pub diff_id: String,
    /// Blob media type.
    pub media_type: String,
    /// Blob size.
    pub compressed_size_bytes: u64,
    /// Σ regular-file entry sizes.
    pub size_bytes: u64,
    /// The build step that made the layer.
    pub created_by: Option<String>,
    /// When that step ran.
    pub created: Option<String>,
    /// Paths added.
    pub added: u64,
    /// Paths modified.
    pub modified: u64,
    /// Paths removed.
    pub removed: u64,
}

/// One element of `history`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistorySection {
    /// When the step ran.
    pub created: Option<String>,
    /// The command.
    pub created_by: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// True for metadata-only steps.
    pub empty_layer: bool,
    /// The layer the step made, `null` for metadata-only steps.
    pub layer_index: Option<usize>,
}

/// One element of `inefficiencies`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InefficiencySection {
    /// Absolute path (non-UTF-8 bytes escaped as `\xNN`).
    pub path: String,
    /// Times the path was visited.
    pub count: u32,
    /// Σ of its visit sizes.
    pub wasted_bytes: u64,
}

/// `ci` of the export.
#[derive(Debug, Serialize)]
pub struct CiSection {
    /// True when no rule failed.
    pub pass: bool,
    /// Each rule.
    pub rules: Vec<CiRuleSection>,
}

/// One CI rule.
#[derive(Debug, Serialize)]
pub struct CiRuleSection {
    /// dive's rule name.
    pub name: String,
    /// Threshold, `null` when disabled.
    pub threshold: Option<f64>,
    /// The image's value.
    pub value: f64,
    /// `PASS`, `FAIL` or `SKIP`.
    pub status: String,
}

impl Export {
    /// Assemble the export from the model's views.
    pub fn new(
        info: &ImageInfo,
        layers: &[LayerRow],
        figures: &Figures,
        ci: Option<&CiOutcome>,
    ) -> Export {
        let image = ImageSection {
            reference: info.reference.clone(),
            digest: info.digest.to_string(),
            manifest_digest: info.manifest_digest.to_string(),
            media_type: info.media_type.clone(),
            platform: info.platform.as_ref().map(ToString::to_string),
            size_bytes: figures.size_bytes,
            compressed_size_bytes: info.layers.iter().map(|l| l.compressed_size).sum(),
            efficiency: figures.efficiency,
            wasted_bytes: figures.wasted_bytes,
            user_wasted_percent: figures.user_wasted_percent,
            shadowed_bytes: figures.shadowed_bytes,
            file_count: figures.file_count,
            file_bytes: figures.file_bytes,
        };
        let layers = layers
            .iter()
            .map(|row| LayerSection {
                index: row.info.index,
                digest: row.info.digest.to_string(),
                diff_id: row.info.diff_id.to_string(),
                media_type: row.info.media_type.clone(),
                compressed_size_bytes: row.info.compressed_size,
                size_bytes: row.stats.size_bytes,
                created_by: row.step.and_then(|s| s.created_by.clone()),
                created: row.step.and_then(|s| s.created.clone()),
                added: row.stats.added,
                modified: row.stats.modified,
                removed: row.stats.removed,
            })
            .collect();
        let history = info
            .history
            .iter()
            .map(|step| HistorySection {
                created: step.entry.created.clone(),
                created_by: step.entry.created_by.clone(),
                comment: step.entry.comment.clone(),
                empty_layer: step.entry.empty_layer,
                layer_index: step.layer_index,
            })
            .collect();
        let inefficiencies = figures
            .inefficiencies
            .iter()
            .map(|i| InefficiencySection {
                path: display_path(&i.path).into_owned(),
                count: i.count,
                wasted_bytes: i.wasted_bytes,
            })
            .collect();
        let ci = ci.map(|outcome| CiSection {
            pass: outcome.pass,
            rules: outcome
                .rules
                .iter()
                .map(|r| CiRuleSection {
                    name: r.name.to_string(),
                    threshold: r.threshold,
                    value: r.value,
                    status: r.status.label().to_string(),
                })
                .collect(),
        });
        Export {
            schema_version: SCHEMA_VERSION,
            image,
            layers,
            history,
            inefficiencies,
            ci,
        }
    }

    /// Pretty JSON text, newline-terminated; no string holds a raw control character
    /// ([`crate::escape::json_pretty`]).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail; fall back to an empty
        // object rather than panic should a future field make it possible.
        let mut s = crate::escape::json_pretty(self).unwrap_or_else(|_| "{}".to_string());
        s.push('\n');
        s
    }
}
