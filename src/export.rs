//! The JSON export (`--json FILE|-`), schemaVersion 1. Field names and meanings
//! are a contract with scripts: later fields may be added, these keep their meaning.

use std::borrow::Cow;

use serde::Serialize;

use crate::analysis::{Figures, Inefficiency};
use crate::baseline::{BaselineComparison, BaselineSpec};
use crate::ci::{Change, CiOutcome};
use crate::findings::Findings;
use crate::ignore::{IgnorePaths, RuleFigures};
use crate::image::ImageInfo;
use crate::report::LayerRow;
use crate::tree::{display_path, FileTree};

/// The schema version written in every export.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole export document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export<'a> {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Image-wide facts and figures.
    pub image: ImageSection,
    /// One entry per layer, base first.
    pub layers: Vec<LayerSection>,
    /// Every build step, metadata-only ones included.
    pub history: Vec<HistorySection>,
    /// Paths stored more than once, largest first.
    pub inefficiencies: InefficiencyList<'a>,
    /// Why bytes are wasted and which step to change, largest first.
    pub findings: Vec<FindingSection>,
    /// Present only in CI mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiSection>,
}

/// `image` of the export.
#[derive(Debug, Default, Serialize)]
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
    /// Σ bytes of the findings: what the image could shed (no byte counted twice).
    pub reclaimable_bytes: u64,
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

/// `inefficiencies` of the export: the figures' list, each path built from the model only as
/// it is written (a big image has a hundred thousand of them, each held once in the model).
pub struct InefficiencyList<'a> {
    tree: &'a FileTree,
    items: &'a [Inefficiency],
}

impl std::fmt::Debug for InefficiencyList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InefficiencyList({} paths)", self.items.len())
    }
}

/// Inefficient paths rendered per batch by [`InefficiencyList::write_pretty`]'s threads.
const PATH_BATCH: usize = 4096;

/// Threads that build and render the batches of [`InefficiencyList::write_pretty`] (the
/// writer only copies their text out).
const RENDER_THREADS: usize = 2;

/// The elements of `items` as [`Export::write_json`] lays them out, each one after a comma
/// (the writer drops the very first one's), into `text` (cleared first).
fn render_batch(tree: &FileTree, items: &[Inefficiency], mut text: Vec<u8>) -> Vec<u8> {
    text.clear();
    text.reserve(items.len() * 128);
    let mut chain = Vec::new();
    for (i, item) in items.iter().enumerate() {
        // The items are in order of wasted bytes: their nodes lie anywhere in the model.
        tree.prefetch_paths_ahead(items, i, |item| item.node);
        text.extend_from_slice(b",\n    {\n      \"path\": \"");
        // The path goes straight into the text; the rare one with something to escape is
        // written again through the serialiser.
        let path_start = text.len();
        tree.append_path(item.node, &mut text, &mut chain);
        if !crate::escape::is_plain_json_text(&text[path_start..]) {
            let path = text.split_off(path_start);
            text.pop();
            // A string is written alike at any depth; writing to a vector cannot fail.
            let _ = crate::escape::write_json_pretty(&mut text, &*display_path(&path));
        } else {
            text.push(b'"');
        }
        text.extend_from_slice(b",\n      \"count\": ");
        push_decimal(&mut text, u64::from(item.count));
        text.extend_from_slice(b",\n      \"wastedBytes\": ");
        push_decimal(&mut text, item.wasted_bytes);
        text.extend_from_slice(b"\n    }");
    }
    text
}

/// `n` in decimal, as the serialiser writes an integer.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

impl InefficiencyList<'_> {
    /// The list as pretty JSON one level deep (the value of a key of the export's object),
    /// as serde_json's pretty layout would write it.
    ///
    /// Building a path walks the node's ancestors in a model of a million nodes, and writing
    /// an element through the serialiser cost about as much again: [`RENDER_THREADS`]
    /// threads build and render alternate batches, and this one only writes their text, in
    /// order.
    fn write_pretty(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        if self.items.is_empty() {
            return out.write_all(b"[]");
        }
        out.write_all(b"[")?;
        let tree = self.tree;
        std::thread::scope(|scope| {
            let mut rendered = Vec::with_capacity(RENDER_THREADS);
            for first in 0..RENDER_THREADS {
                let (batches, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
                // Written batches come back to be filled again: a batch's text is about half
                // a megabyte, which the allocator maps afresh each time (page faults and all).
                let (give_back, returned) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let chunks = self.items.chunks(PATH_BATCH);
                scope.spawn(move || {
                    for chunk in chunks.skip(first).step_by(RENDER_THREADS) {
                        let text =
                            render_batch(tree, chunk, returned.try_recv().unwrap_or_default());
                        // A closed channel means the writer stopped (a write failed).
                        if batches.send(text).is_err() {
                            return;
                        }
                    }
                });
                rendered.push((received, give_back));
            }
            for (i, chunk) in self.items.chunks(PATH_BATCH).enumerate() {
                let (received, give_back) = &rendered[i % RENDER_THREADS];
                // Each thread sends one batch per chunk of its own unless it panicked (which
                // the scope passes on when it ends); until then the batches are made here.
                let text = received
                    .recv()
                    .unwrap_or_else(|_| render_batch(tree, chunk, Vec::new()));
                // The first element has no comma before it.
                out.write_all(text.get(usize::from(i == 0)..).unwrap_or_default())?;
                // A thread that has ended needs it no more.
                let _ = give_back.try_send(text);
            }
            out.write_all(b"\n  ]")
        })
    }
}

impl Serialize for InefficiencyList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.items.len()))?;
        for item in self.items {
            seq.serialize_element(&InefficiencySection {
                path: display_path(&self.tree.path(item.node)).into_owned().into(),
                count: item.count,
                wasted_bytes: item.wasted_bytes,
            })?;
        }
        seq.end()
    }
}

/// One element of `inefficiencies`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InefficiencySection<'a> {
    /// Absolute path (non-UTF-8 bytes escaped as `\xNN`).
    pub path: Cow<'a, str>,
    /// Times the path was visited.
    pub count: u32,
    /// Σ of its visit sizes.
    pub wasted_bytes: u64,
}

/// One element of `findings`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingSection {
    /// `removed-later`, `rewritten-same-content`, `overwritten`, `package-cache`,
    /// `temporary-files` or `duplicate-content`.
    pub kind: String,
    /// Reclaimable bytes.
    pub bytes: u64,
    /// Number of paths, listed or not.
    pub files: u64,
    /// Layer indexes involved, ascending.
    pub layers: Vec<usize>,
    /// The `createdBy` of each of those layers.
    pub steps: Vec<String>,
    /// The first paths, largest first then by path (non-UTF-8 bytes escaped as `\xNN`).
    pub paths: Vec<String>,
    /// Paths not listed.
    pub paths_omitted: u64,
    /// One sentence of advice naming the steps.
    pub hint: String,
}

/// `ci` of the export.
#[derive(Debug, Serialize)]
pub struct CiSection {
    /// True when no rule failed.
    pub pass: bool,
    /// Each rule.
    pub rules: Vec<CiRuleSection>,
    /// The paths left out of what the rules measure, when any pattern was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<IgnoredSection>,
    /// The image against `--baseline`, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSection>,
}

/// One CI rule.
#[derive(Debug, Serialize)]
pub struct CiRuleSection {
    /// dive's rule name.
    pub name: String,
    /// Threshold, `null` when disabled.
    pub threshold: Option<f64>,
    /// The value as the rule saw it (without the paths left out); `null` when it could not
    /// be measured.
    pub value: Option<f64>,
    /// `ratio` or `bytes`: what `value` and `threshold` count.
    pub unit: &'static str,
    /// `PASS`, `FAIL` or `SKIP`.
    pub status: String,
}

/// `ci.ignored`: what `ignorePaths` and `--ignore-path` left out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredSection {
    /// The glob patterns.
    pub patterns: Vec<String>,
    /// Regular-file bytes stored under the paths left out, over every layer.
    pub bytes: u64,
    /// Paths left out that hold stored bytes.
    pub paths: u64,
}

/// `ci.baseline`: the image against the baseline.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineSection {
    /// The baseline's reference.
    pub reference: String,
    /// Its digest.
    pub digest: String,
    /// `image` (analysed now) or `report` (an earlier `--json` output).
    pub source: &'static str,
    /// `sizeBytes` before and after.
    pub size_bytes: BeforeAfter,
    /// `wastedBytes` before and after.
    pub wasted_bytes: BeforeAfter,
    /// `reclaimableBytes` before and after (`null` where unknown).
    pub reclaimable_bytes: BeforeAfterMaybe,
    /// `fileCount` before and after.
    pub file_count: BeforeAfter,
    /// Leading layers both share.
    pub common_prefix: usize,
    /// The positions whose layers differ.
    pub changed_layers: Vec<ChangedLayerSection>,
}

/// A figure before (the baseline) and after (the image).
#[derive(Debug, Serialize)]
pub struct BeforeAfter {
    /// The baseline's value.
    pub before: u64,
    /// The image's value.
    pub after: u64,
}

/// A figure before and after, each possibly unknown.
#[derive(Debug, Serialize)]
pub struct BeforeAfterMaybe {
    /// The baseline's value.
    pub before: Option<u64>,
    /// The image's value.
    pub after: Option<u64>,
}

/// One layer position that differs from the baseline.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedLayerSection {
    /// The position, base first.
    pub index: usize,
    /// `same-content`, `different`, `only-a` (only the baseline has it) or `only-b` (only
    /// the image has it).
    pub status: &'static str,
    /// The baseline's layer digest there.
    pub before: Option<String>,
    /// The image's layer digest there.
    pub after: Option<String>,
    /// The baseline's layer size (compressed) there.
    pub before_compressed_size_bytes: Option<u64>,
    /// The image's layer size (compressed) there.
    pub after_compressed_size_bytes: Option<u64>,
}

impl<'a> Export<'a> {
    /// Assemble the export from the model's views.
    pub fn new(
        info: &ImageInfo,
        tree: &'a FileTree,
        layers: &[LayerRow],
        figures: &'a Figures,
        findings: &Findings,
        ci: Option<&CiOutcome>,
    ) -> Export<'a> {
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
            reclaimable_bytes: findings.reclaimable_bytes,
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
        let inefficiencies = InefficiencyList {
            tree,
            items: &figures.inefficiencies,
        };
        let findings = findings
            .items
            .iter()
            .map(|f| FindingSection {
                kind: f.kind.label().to_string(),
                bytes: f.bytes,
                files: f.files,
                layers: f.layers.clone(),
                steps: f.steps.clone(),
                paths: f
                    .paths
                    .iter()
                    .map(|p| display_path(p).into_owned())
                    .collect(),
                paths_omitted: f.paths_omitted,
                hint: f.hint.clone(),
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
                    unit: r.unit.json_name(),
                    status: r.status.label().to_string(),
                })
                .collect(),
            ignored: None,
            baseline: None,
        });
        Export {
            schema_version: SCHEMA_VERSION,
            image,
            layers,
            history,
            inefficiencies,
            findings,
            ci,
        }
    }

    /// Add to the `ci` section what the rules left out and the comparison with the baseline
    /// (nothing without a `ci` section).
    pub fn add_ci_details(
        &mut self,
        ignore: &IgnorePaths,
        rule: &RuleFigures,
        baseline: Option<&BaselineComparison>,
    ) {
        let Some(ci) = self.ci.as_mut() else {
            return;
        };
        if !ignore.is_empty() {
            ci.ignored = Some(IgnoredSection {
                patterns: ignore.patterns().to_vec(),
                bytes: rule.left_out_bytes,
                paths: rule.left_out_paths,
            });
        }
        ci.baseline = baseline.map(|b| {
            let pair = |c: Change| BeforeAfter {
                before: c.before,
                after: c.after,
            };
            BaselineSection {
                reference: b.baseline.reference.clone(),
                digest: b.baseline.digest.clone(),
                source: match b.baseline.spec {
                    BaselineSpec::Report(_) => "report",
                    BaselineSpec::Image(_) => "image",
                },
                size_bytes: pair(b.size),
                wasted_bytes: pair(b.wasted),
                reclaimable_bytes: BeforeAfterMaybe {
                    before: b.reclaimable.0,
                    after: b.reclaimable.1,
                },
                file_count: pair(b.file_count),
                common_prefix: b.layers.common_prefix,
                changed_layers: b
                    .changed_layers()
                    .map(|p| ChangedLayerSection {
                        index: p.index,
                        status: p.status.as_str(),
                        before: p.a.as_ref().map(|l| l.digest.to_string()),
                        after: p.b.as_ref().map(|l| l.digest.to_string()),
                        before_compressed_size_bytes: p.a.as_ref().map(|l| l.compressed_size),
                        after_compressed_size_bytes: p.b.as_ref().map(|l| l.compressed_size),
                    })
                    .collect(),
            }
        });
    }

    /// The export as pretty JSON, newline-terminated, written to `out` as it is made (the text
    /// of a million-file image is tens of megabytes); no string holds a raw control character
    /// ([`crate::escape::json_pretty`]). The same text as serialising the export with that
    /// layout, written section by section so that the inefficient paths, most of it, are
    /// rendered on threads of their own ([`InefficiencyList::write_pretty`]).
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        use std::io::Write as _;
        // Large enough that the file sees few writes; the sections are written in pieces.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
        write!(out, "{{\n  \"schemaVersion\": {}", self.schema_version)?;
        write_section(&mut out, "image", &self.image)?;
        write_section(&mut out, "layers", &self.layers)?;
        write_section(&mut out, "history", &self.history)?;
        out.write_all(b",\n  \"inefficiencies\": ")?;
        self.inefficiencies.write_pretty(&mut out)?;
        write_section(&mut out, "findings", &self.findings)?;
        if let Some(ci) = &self.ci {
            write_section(&mut out, "ci", ci)?;
        }
        out.write_all(b"\n}\n")?;
        out.flush()
    }
}

/// `,` and the key `name` with `value`, one level deep in the export's pretty object. The
/// serialiser lays out `value` at the top level; every line break in pretty JSON is layout
/// (strings hold them escaped), so each is followed by one more level of indentation.
fn write_section<T: Serialize>(
    out: &mut dyn std::io::Write,
    name: &str,
    value: &T,
) -> std::io::Result<()> {
    let text = crate::escape::json_pretty(value).map_err(std::io::Error::from)?;
    write!(out, ",\n  \"{name}\": ")?;
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.write_all(b"\n  ")?;
        }
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tui::testing::tree_from;

    /// An export of `tree` with every section filled, strings to escape included.
    fn export_of<'a>(tree: &'a FileTree, figures: &'a Figures, ci: bool) -> Export<'a> {
        Export {
            schema_version: SCHEMA_VERSION,
            image: ImageSection {
                reference: "registry:5000/app:\"1\"\u{1b}[2J".to_string(),
                digest: "sha256:ab".to_string(),
                manifest_digest: "sha256:ab".to_string(),
                media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
                platform: None,
                // Numbers of every kind the section holds; their values are not the point.
                efficiency: 1.0 / 3.0,
                user_wasted_percent: 0.0,
                ..ImageSection::default()
            },
            layers: vec![LayerSection {
                index: 0,
                digest: "sha256:cd".to_string(),
                diff_id: "sha256:ef".to_string(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
                compressed_size_bytes: 12,
                size_bytes: 3,
                created_by: Some("RUN echo \"a\\b\"\n\tdone \u{85}".to_string()),
                created: None,
                added: 3,
                modified: 0,
                removed: 0,
            }],
            history: Vec::new(),
            inefficiencies: InefficiencyList {
                tree,
                items: &figures.inefficiencies,
            },
            findings: vec![FindingSection {
                kind: "overwritten".to_string(),
                bytes: 2,
                files: 1,
                layers: vec![0, 1],
                steps: vec!["a".to_string(), String::new()],
                paths: vec!["/d0/f\u{7f}".to_string()],
                paths_omitted: 0,
                hint: "change it".to_string(),
            }],
            ci: ci.then(|| CiSection {
                pass: false,
                rules: vec![CiRuleSection {
                    name: "lowestEfficiency".to_string(),
                    threshold: Some(0.9),
                    value: None,
                    unit: "ratio",
                    status: "FAIL".to_string(),
                }],
                ignored: None,
                baseline: None,
            }),
        }
    }

    fn written(export: &Export) -> String {
        let mut out = Vec::new();
        export.write_json(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_export_is_written_as_its_serialiser_lays_it_out() {
        // Written twice each: one inefficient path per file, over three batches, some with
        // a quote, a backslash or a control character to escape.
        let names: Vec<String> = (0..2 * PATH_BATCH + 17)
            .map(|i| match i % 97 {
                0 => format!("d{}/q\"{i}", i % 7),
                1 => format!("d{}/b\\{i}", i % 7),
                2 => format!("d{}/e\u{1b}]0;{i}\u{7}", i % 7),
                3 => format!("d{}/c1\u{9b}{i}", i % 7),
                4 => format!("d{}/caf\u{e9}{i}", i % 7),
                _ => format!("d{}/f{i}", i % 7),
            })
            .collect();
        let layer: Vec<(&str, Option<&[u8]>)> = names
            .iter()
            .map(|n| (n.as_str(), Some(&b"x"[..])))
            .collect();
        let tree = tree_from(&[&layer, &layer]);
        let figures = crate::analysis::analyse(&tree);
        assert_eq!(figures.inefficiencies.len(), names.len());
        for ci in [true, false] {
            let export = export_of(&tree, &figures, ci);
            let text = written(&export);
            let serialised = crate::escape::json_pretty(&export).unwrap() + "\n";
            assert_eq!(text, serialised);
            // In order, each with its own path, and no raw control character anywhere.
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let list = value["inefficiencies"].as_array().unwrap();
            assert_eq!(list.len(), names.len());
            for (json, item) in list.iter().zip(&figures.inefficiencies) {
                let path = String::from_utf8(tree.path(item.node)).unwrap();
                assert_eq!(json["path"], path.as_str());
                assert_eq!(json["count"], 2);
                assert_eq!(json["wastedBytes"], 2);
            }
            assert!(!text.contains(['\u{1b}', '\u{7}', '\u{7f}', '\u{85}', '\u{9b}']));
            assert_eq!(value.get("ci").is_some(), ci);
        }
    }

    #[test]
    fn an_export_without_inefficiencies_is_written_as_its_serialiser_lays_it_out() {
        let layer: Vec<(&str, Option<&[u8]>)> = vec![("a", Some(&b"x"[..]))];
        let tree = tree_from(&[&layer]);
        let figures = crate::analysis::analyse(&tree);
        assert!(figures.inefficiencies.is_empty());
        let export = export_of(&tree, &figures, false);
        let text = written(&export);
        assert!(text.contains("\"inefficiencies\": [],"));
        assert_eq!(text, crate::escape::json_pretty(&export).unwrap() + "\n");
    }
}
