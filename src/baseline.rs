//! Baselines: the image a check compares with, so a pipeline fails when the image got worse
//! than the last release rather than against a fixed number. A baseline is another image (from
//! any source, analysed like the image) or an earlier `--json` report of one. Either gives the
//! same facts: the figures before, and the layer list, which is paired with the image's as
//! `layerscope diff` pairs them.

use std::path::Path;

use serde::Deserialize;

use crate::analysis::Figures;
use crate::ci::Change;
use crate::compare::{compare_layers, LayerComparison, LayerMatch};
use crate::digest::Digest;
use crate::error::Error;
use crate::ignore::{self, IgnorePaths, RuleFigures};
use crate::image::{ImageInfo, LayerInfo};

/// What `--baseline` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineSpec {
    /// An earlier `--json` report.
    Report(String),
    /// An image, opened like the image checked.
    Image(String),
}

impl BaselineSpec {
    /// A value ending in `.json`, or an existing file that starts with `{`, is a report; any
    /// other value is an image. A missing `*.json` stays a report, so a typo is an error
    /// rather than an image name sent to a registry.
    pub fn parse(value: &str) -> BaselineSpec {
        let is_json_name = value
            .rsplit_once('.')
            .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("json"));
        if is_json_name || starts_like_json(Path::new(value)) {
            BaselineSpec::Report(value.to_string())
        } else {
            BaselineSpec::Image(value.to_string())
        }
    }
}

fn starts_like_json(path: &Path) -> bool {
    use std::io::Read;
    if !path.is_file() {
        return false;
    }
    let mut head = [0u8; 64];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// The baseline's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineFigures {
    /// `sizeBytes`.
    pub size_bytes: u64,
    /// `wastedBytes`, whole.
    pub wasted_bytes: u64,
    /// Wasted bytes as the rules see them (without the paths left out).
    pub rule_wasted_bytes: u64,
    /// `reclaimableBytes`, when known (reports written before findings existed lack it).
    pub reclaimable_bytes: Option<u64>,
    /// `fileCount`.
    pub file_count: u64,
}

/// The image compared with, as far as a check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// What `--baseline` said.
    pub spec: BaselineSpec,
    /// The baseline image's reference.
    pub reference: String,
    /// Its digest.
    pub digest: String,
    /// Its figures.
    pub figures: BaselineFigures,
    /// Its layers, base first.
    pub layers: Vec<LayerInfo>,
    /// The build step of each layer, when known.
    pub steps: Vec<Option<String>>,
}

/// The part of a `--json` report a baseline reads; later fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportDoc {
    schema_version: u32,
    image: ReportImage,
    layers: Vec<ReportLayer>,
    inefficiencies: Vec<ReportInefficiency>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportImage {
    reference: String,
    digest: String,
    size_bytes: u64,
    wasted_bytes: u64,
    file_count: u64,
    #[serde(default)]
    reclaimable_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportLayer {
    index: usize,
    digest: String,
    diff_id: String,
    media_type: String,
    compressed_size_bytes: u64,
    #[serde(default)]
    created_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportInefficiency {
    path: String,
    wasted_bytes: u64,
}

/// A baseline that cannot be used: one sentence naming it.
fn unusable(spec: &str, why: impl std::fmt::Display) -> Error {
    Error::Other(format!("baseline {spec}: {why}"))
}

impl Baseline {
    /// Read an earlier `--json` report. The rules' wasted bytes are recomputed from its
    /// inefficiencies without the paths `ignore` leaves out (every path with wasted bytes is
    /// listed there).
    pub fn from_report(path: &str, ignore: &IgnorePaths) -> Result<Baseline, Error> {
        let bytes = std::fs::read(path).map_err(|e| unusable(path, e))?;
        Baseline::from_report_bytes(path, &bytes, ignore)
    }

    fn from_report_bytes(
        path: &str,
        bytes: &[u8],
        ignore: &IgnorePaths,
    ) -> Result<Baseline, Error> {
        let doc: ReportDoc = serde_json::from_slice(bytes)
            .map_err(|e| unusable(path, format_args!("not a layerscope --json report ({e})")))?;
        if doc.schema_version != crate::export::SCHEMA_VERSION {
            return Err(unusable(
                path,
                format_args!(
                    "schemaVersion {} is not one this version reads ({})",
                    doc.schema_version,
                    crate::export::SCHEMA_VERSION
                ),
            ));
        }
        let mut layers = Vec::with_capacity(doc.layers.len());
        let mut steps = Vec::with_capacity(doc.layers.len());
        for (position, layer) in doc.layers.into_iter().enumerate() {
            if layer.index != position {
                return Err(unusable(
                    path,
                    format_args!("layer {position} has index {}", layer.index),
                ));
            }
            let digest = |text: &str| {
                text.parse::<Digest>()
                    .map_err(|e| unusable(path, format_args!("layer {position}: {e}")))
            };
            layers.push(LayerInfo {
                index: position,
                digest: digest(&layer.digest)?,
                diff_id: digest(&layer.diff_id)?,
                media_type: layer.media_type,
                compressed_size: layer.compressed_size_bytes,
            });
            steps.push(layer.created_by);
        }
        let rule_wasted_bytes = if ignore.is_empty() {
            doc.image.wasted_bytes
        } else {
            ignore::wasted_of_listed(
                ignore,
                doc.inefficiencies
                    .iter()
                    .map(|i| (i.path.as_str(), i.wasted_bytes)),
            )
        };
        Ok(Baseline {
            spec: BaselineSpec::Report(path.to_string()),
            reference: doc.image.reference,
            digest: doc.image.digest,
            figures: BaselineFigures {
                size_bytes: doc.image.size_bytes,
                wasted_bytes: doc.image.wasted_bytes,
                rule_wasted_bytes,
                reclaimable_bytes: doc.image.reclaimable_bytes,
                file_count: doc.image.file_count,
            },
            layers,
            steps,
        })
    }

    /// An analysed image as the baseline; `rule` holds its figures as the rules see them.
    pub fn from_image(
        spec: &str,
        info: &ImageInfo,
        figures: &Figures,
        rule: &RuleFigures,
        reclaimable_bytes: Option<u64>,
    ) -> Baseline {
        Baseline {
            spec: BaselineSpec::Image(spec.to_string()),
            reference: info.reference.clone(),
            digest: info.digest.to_string(),
            figures: BaselineFigures {
                size_bytes: figures.size_bytes,
                wasted_bytes: figures.wasted_bytes,
                rule_wasted_bytes: rule.wasted_bytes,
                reclaimable_bytes,
                file_count: figures.file_count,
            },
            layers: info.layers.clone(),
            steps: info
                .layers
                .iter()
                .map(|layer| {
                    info.history
                        .iter()
                        .find(|s| s.layer_index == Some(layer.index))
                        .and_then(|s| s.entry.created_by.clone())
                })
                .collect(),
        }
    }
}

/// The image against its baseline: each figure before and after, and the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineComparison {
    /// The baseline.
    pub baseline: Baseline,
    /// `sizeBytes`.
    pub size: Change,
    /// `wastedBytes`, whole.
    pub wasted: Change,
    /// Wasted bytes as the rules see them.
    pub rule_wasted: Change,
    /// `reclaimableBytes` before and after, each when known.
    pub reclaimable: (Option<u64>, Option<u64>),
    /// `fileCount`.
    pub file_count: Change,
    /// The layer lists side by side (baseline as A, the image as B), as `layerscope diff`
    /// pairs them.
    pub layers: LayerComparison,
}

impl BaselineComparison {
    /// Compare the image (`info`, its figures and its rule figures) with `baseline`.
    pub fn new(
        baseline: Baseline,
        info: &ImageInfo,
        figures: &Figures,
        rule: &RuleFigures,
        reclaimable_bytes: Option<u64>,
    ) -> BaselineComparison {
        let before = baseline.figures;
        let layers = compare_layers(&baseline.layers, &info.layers);
        BaselineComparison {
            size: Change {
                before: before.size_bytes,
                after: figures.size_bytes,
            },
            wasted: Change {
                before: before.wasted_bytes,
                after: figures.wasted_bytes,
            },
            rule_wasted: Change {
                before: before.rule_wasted_bytes,
                after: rule.wasted_bytes,
            },
            reclaimable: (before.reclaimable_bytes, reclaimable_bytes),
            file_count: Change {
                before: before.file_count,
                after: figures.file_count,
            },
            layers,
            baseline,
        }
    }

    /// The layer positions whose layers differ (everything but `shared`).
    pub fn changed_layers(&self) -> impl Iterator<Item = &crate::compare::LayerPair> + '_ {
        self.layers
            .pairs
            .iter()
            .filter(|p| p.status != LayerMatch::Shared)
    }

    /// The baseline's build step for its layer `index`, when known.
    pub fn baseline_step(&self, index: usize) -> Option<&str> {
        self.baseline.steps.get(index).and_then(|s| s.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn report(extra_image: &str) -> String {
        format!(
            r#"{{"schemaVersion":1,
              "image":{{"reference":"r/app:1","digest":"{DIGEST_A}","sizeBytes":1000,
                        "wastedBytes":300,"fileCount":7{extra_image}}},
              "layers":[{{"index":0,"digest":"{DIGEST_A}","diffId":"{DIGEST_B}",
                          "mediaType":"m","compressedSizeBytes":10,"createdBy":"COPY x /"}}],
              "history":[],
              "inefficiencies":[{{"path":"/var/cache/a","count":2,"wastedBytes":200}},
                                {{"path":"/bin/tool","count":2,"wastedBytes":100}}],
              "laterField":true}}"#
        )
    }

    #[test]
    fn a_value_ending_in_json_or_a_json_file_is_a_report() {
        assert_eq!(
            BaselineSpec::parse("last/report.JSON"),
            BaselineSpec::Report("last/report.JSON".into())
        );
        assert_eq!(
            BaselineSpec::parse("registry.example.com/app:1.3"),
            BaselineSpec::Image("registry.example.com/app:1.3".into())
        );
        let file = std::env::temp_dir().join(format!("layerscope-base-{}", std::process::id()));
        std::fs::write(&file, "  \n{\"schemaVersion\":1}").expect("write");
        let name = file.to_string_lossy().into_owned();
        assert_eq!(
            BaselineSpec::parse(&name),
            BaselineSpec::Report(name.clone())
        );
        std::fs::remove_file(&file).expect("cleanup");
    }

    #[test]
    fn a_report_gives_figures_layers_and_rule_wasted_bytes() {
        let ignore = IgnorePaths::new(&["/var/cache/**".to_string()]).expect("pattern");
        let text = report(r#","reclaimableBytes":42"#);
        let b = Baseline::from_report_bytes("r.json", text.as_bytes(), &ignore).expect("reads");
        assert_eq!(b.reference, "r/app:1");
        assert_eq!(b.figures.size_bytes, 1000);
        assert_eq!(b.figures.wasted_bytes, 300);
        assert_eq!(b.figures.rule_wasted_bytes, 100);
        assert_eq!(b.figures.reclaimable_bytes, Some(42));
        assert_eq!(b.figures.file_count, 7);
        assert_eq!(b.layers.len(), 1);
        assert_eq!(b.layers[0].digest.to_string(), DIGEST_A);
        assert_eq!(b.steps, vec![Some("COPY x /".to_string())]);

        let none = IgnorePaths::default();
        let b = Baseline::from_report_bytes("r.json", report("").as_bytes(), &none).expect("ok");
        assert_eq!(b.figures.rule_wasted_bytes, 300);
        assert_eq!(b.figures.reclaimable_bytes, None);
    }

    #[test]
    fn reports_that_cannot_be_used_are_errors_naming_the_file() {
        let none = IgnorePaths::default();
        for (bytes, needle) in [
            ("not json".to_string(), "not a layerscope --json report"),
            (r#"{"schemaVersion":1}"#.to_string(), "image"),
            (
                report("").replace("\"schemaVersion\":1", "\"schemaVersion\":2"),
                "schemaVersion 2",
            ),
            (report("").replace(DIGEST_B, "sha256:xyz"), "layer 0"),
        ] {
            let e = Baseline::from_report_bytes("old.json", bytes.as_bytes(), &none)
                .expect_err("refused")
                .to_string();
            assert!(e.starts_with("baseline old.json: "), "{e}");
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e = Baseline::from_report("/nonexistent/old.json", &none)
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/old.json"), "{e}");
    }
}
