//! `layerscope config IMAGE`: the image config the way `docker image inspect` shows it (`Id` is
//! the config digest, `RepoDigests`, `Created`, `Architecture`, `Os`, `Config{…}`, `RootFS`, …),
//! read from the registry without pulling a layer. `--raw` prints the config blob unchanged,
//! as `crane config` does.

use std::sync::LazyLock;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{
    human_size, parse_image, relative_time, stream_json_stdout, stream_stdout, write_stdout,
};
use crate::error::{exit_code, Error};
use crate::escape::Escaped;
use crate::image::{ImageInfo, Platform};
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// Arguments of `layerscope config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Print the config blob exactly as served.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,

    /// Print JSON shaped like one `docker image inspect` object.
    #[arg(long)]
    pub json: bool,

    /// Platform to choose from a multi-platform image: OS/ARCH[/VARIANT] (default: linux and
    /// this machine's architecture).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

impl ConfigArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.image)?.registry])
    }
}

/// Run `layerscope config`.
pub async fn run(client: &RegistryClient, args: &ConfigArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.image)?;
    let info = client.resolve(&reference, args.platform.as_ref()).await?;
    if args.raw {
        write_stdout(&info.config_bytes)?;
        return Ok(exit_code::OK);
    }
    // The config as served is read once into JSON values that the output borrows, and the
    // output streams: a config at the size limit costs a few times its size, not dozens.
    // Text shows no history step, so it does not read the history at all.
    let raw = raw_config(&info.config_bytes, args.json);
    let inspect = inspect(&info, &reference, &raw);
    if args.json {
        stream_json_stdout(&inspect)?;
    } else {
        stream_stdout(|out| write_text(out, &info, &inspect, SystemTime::now()))?;
    }
    Ok(exit_code::OK)
}

/// The config blob's top-level keys as JSON values, `history` left out unless `with_history`
/// (it is skipped unread, not parsed and dropped). `Null` when the blob is not a JSON object
/// (it parsed as a config already, so it is one).
pub fn raw_config(bytes: &[u8], with_history: bool) -> Value {
    struct Keys {
        with_history: bool,
    }
    impl<'de> serde::de::DeserializeSeed<'de> for Keys {
        type Value = Map<String, Value>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an image config object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "history" && !self.with_history {
                    map.next_value::<serde::de::IgnoredAny>()?;
                } else {
                    out.insert(key, map.next_value()?);
                }
            }
            Ok(out)
        }
    }
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Keys { with_history }
        .deserialize(&mut de)
        .map_or(Value::Null, Value::Object)
}

static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| json!({}));
static EMPTY_ARRAY: LazyLock<Value> = LazyLock::new(|| json!([]));
static NULL: Value = Value::Null;

/// The config as one `docker image inspect` object, keys in Docker's order. Docker's keys keep
/// their meaning: `Id` is the config digest; `RepoDigests` names the digest pulled (the index's
/// for a multi-platform image); `Config` is the config's `config` object as served, every key
/// kept; `RootFS.Layers` are the diff_ids. `Size` is the sum of the **compressed** layer blobs
/// (what the registry stores; Docker's own figure is the unpacked size, unknown without
/// pulling). Added for this tool: `History` (the steps as served), `Manifest` (`Digest`,
/// `MediaType`, `Platform`) and `Layers` (per layer `Digest`, `DiffID`, `MediaType`, `Size`,
/// as `skopeo inspect` lists them).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect<'a> {
    /// The config digest.
    pub id: String,
    /// `REGISTRY/REPOSITORY:TAG`, when a tag was given.
    pub repo_tags: Vec<String>,
    /// `REGISTRY/REPOSITORY@DIGEST` of what was pulled.
    pub repo_digests: Vec<String>,
    /// Always empty (registries have no parent images).
    pub parent: String,
    /// The config's `comment`.
    pub comment: String,
    /// The config's `created`.
    pub created: &'a Value,
    /// The config's `docker_version`.
    pub docker_version: String,
    /// The config's `author`.
    pub author: String,
    /// The config's `config`, as served.
    pub config: &'a Value,
    /// CPU architecture.
    pub architecture: String,
    /// CPU variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system.
    pub os: String,
    /// The config's `os.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<&'a Value>,
    /// Σ compressed layer sizes.
    pub size: u64,
    /// The diff_ids.
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    /// The config's `history`, as served (an empty list when `raw` was read without it).
    pub history: &'a Value,
    /// The platform manifest.
    pub manifest: InspectManifest,
    /// The layers, base first.
    pub layers: Vec<InspectLayer>,
}

/// `RootFS` of [`Inspect`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The diff_ids, base first.
    pub layers: Vec<String>,
}

/// `Manifest` of [`Inspect`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectManifest {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The platform chosen or declared.
    pub platform: Option<String>,
}

/// One of [`Inspect`]'s `Layers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectLayer {
    /// Blob digest.
    pub digest: String,
    /// Uncompressed digest.
    #[serde(rename = "DiffID")]
    pub diff_id: String,
    /// Media type.
    pub media_type: String,
    /// Blob size.
    pub size: u64,
}

/// Gather [`Inspect`] from a resolved image and its config as served, `raw` (see
/// [`raw_config`]).
pub fn inspect<'a>(info: &ImageInfo, reference: &Reference, raw: &'a Value) -> Inspect<'a> {
    let text = |key: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let repository = format!("{}/{}", reference.registry, reference.repository);
    Inspect {
        id: info.manifest.config.digest.to_string(),
        repo_tags: reference
            .tag
            .iter()
            .map(|t| format!("{repository}:{t}"))
            .collect(),
        repo_digests: vec![format!("{repository}@{}", info.digest)],
        parent: String::new(),
        comment: text("comment"),
        created: raw.get("created").unwrap_or(&NULL),
        docker_version: text("docker_version"),
        author: text("author"),
        config: raw.get("config").unwrap_or(&EMPTY_OBJECT),
        architecture: info.config.architecture.clone(),
        variant: info.config.variant.clone(),
        os: info.config.os.clone(),
        os_version: raw.get("os.version"),
        size: info.layers.iter().map(|l| l.compressed_size).sum(),
        root_fs: InspectRootFs {
            kind: if info.config.rootfs.kind.is_empty() {
                "layers".to_string()
            } else {
                info.config.rootfs.kind.clone()
            },
            layers: info
                .config
                .rootfs
                .diff_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        history: raw.get("history").unwrap_or(&EMPTY_ARRAY),
        manifest: InspectManifest {
            digest: info.manifest_digest.to_string(),
            media_type: info.media_type.clone(),
            platform: info.platform.as_ref().map(ToString::to_string),
        },
        layers: info
            .layers
            .iter()
            .map(|l| InspectLayer {
                digest: l.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                media_type: l.media_type.clone(),
                size: l.compressed_size,
            })
            .collect(),
    }
}

/// Keys of `Config` in the order `docker image inspect` lists them; others follow, sorted.
const CONFIG_ORDER: [&str; 19] = [
    "Hostname",
    "Domainname",
    "User",
    "ExposedPorts",
    "Tty",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "AttachStdin",
];

/// The readable form of [`Inspect`] (see [`write_text`]) as one string.
pub fn render_text(info: &ImageInfo, inspect: &Inspect<'_>, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = write_text(&mut out, info, inspect, now);
    out
}

/// The readable form of [`Inspect`], written as it is made.
pub fn write_text(
    out: &mut dyn std::fmt::Write,
    info: &ImageInfo,
    inspect: &Inspect<'_>,
    now: SystemTime,
) -> std::fmt::Result {
    let _ = writeln!(out, "Image:          {}", Escaped(&info.reference));
    let _ = writeln!(out, "Id:             {}", inspect.id);
    for digest in &inspect.repo_digests {
        let _ = writeln!(out, "RepoDigest:     {digest}");
    }
    if info.manifest_digest != info.digest {
        let _ = writeln!(out, "Manifest:       {}", info.manifest_digest);
    }
    if let Some(raw_created) = inspect.created.as_str() {
        let created = Escaped(raw_created);
        match relative_time(raw_created, now) {
            Some(relative) => {
                let _ = writeln!(out, "Created:        {created} ({relative})");
            }
            None => {
                let _ = writeln!(out, "Created:        {created}");
            }
        }
    }
    for (key, value) in [
        ("Author", &inspect.author),
        ("DockerVersion", &inspect.docker_version),
        ("Comment", &inspect.comment),
    ] {
        if !value.is_empty() {
            let _ = writeln!(out, "{:<16}{}", format!("{key}:"), Escaped(value));
        }
    }
    let platform = info
        .platform
        .as_ref()
        .map_or_else(|| "unknown".to_string(), ToString::to_string);
    let _ = writeln!(out, "Platform:       {}", Escaped(&platform));
    let _ = writeln!(out, "Media type:     {}", Escaped(&info.media_type));
    let _ = writeln!(
        out,
        "Size:           {} compressed in {} layer{}",
        human_size(inspect.size),
        info.layers.len(),
        if info.layers.len() == 1 { "" } else { "s" }
    );
    write_config(out, inspect.config);
    let _ = writeln!(
        out,
        "RootFS:         {} diff_ids",
        inspect.root_fs.layers.len()
    );
    for id in &inspect.root_fs.layers {
        let _ = writeln!(out, "  {id}");
    }
    let metadata_only = info
        .history
        .iter()
        .filter(|s| s.layer_index.is_none())
        .count();
    writeln!(
        out,
        "History:        {} steps: {} with a layer, {} metadata-only (see `layerscope history`)",
        info.config.history.len(),
        info.history.len() - metadata_only,
        metadata_only
    )
}

fn write_config(out: &mut dyn std::fmt::Write, config: &Value) {
    let Some(map) = config.as_object().filter(|m| !m.is_empty()) else {
        let _ = writeln!(out, "Config:         (empty)");
        return;
    };
    let _ = writeln!(out, "Config:");
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| {
        (
            CONFIG_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(CONFIG_ORDER.len()),
            (*k).clone(),
        )
    });
    for key in keys {
        let value = &map[key.as_str()];
        if value.is_null() {
            continue;
        }
        let label = format!("{}:", Escaped(key));
        match (key.as_str(), value) {
            ("Env", Value::Array(items)) => {
                let _ = writeln!(out, "  {label}");
                for item in items {
                    let _ = writeln!(out, "    {}", Escaped(&plain(item)));
                }
            }
            ("Labels", Value::Object(labels)) => {
                let _ = writeln!(out, "  {label}");
                for (k, v) in labels {
                    let _ = writeln!(out, "    {}={}", Escaped(k), Escaped(&plain(v)));
                }
            }
            ("ExposedPorts" | "Volumes", Value::Object(set)) => {
                let names: Vec<&str> = set.keys().map(String::as_str).collect();
                let _ = writeln!(out, "  {label:<14}{}", Escaped(&names.join(", ")));
            }
            (_, Value::String(s)) => {
                let _ = writeln!(out, "  {label:<14}{}", Escaped(s));
            }
            _ => {
                let _ = writeln!(out, "  {label:<14}{}", Escaped(&value.to_string()));
            }
        }
    }
}

/// A JSON value as text: strings without quotes, anything else as compact JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::image::{align_history, layer_infos, ImageConfig, ImageManifest, ParsedManifest};
    use std::time::{Duration, UNIX_EPOCH};

    fn info(config_json: &str) -> (ImageInfo, Reference) {
        let config_bytes = config_json.as_bytes().to_vec();
        let config = ImageConfig::parse(&config_bytes).expect("config parses");
        let diff = config.rootfs.diff_ids[0].clone();
        let manifest_json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
               "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1234}}]}}"#,
            Digest::sha256_of(&config_bytes),
            config_bytes.len(),
            diff
        );
        let ParsedManifest::Image(manifest) =
            ParsedManifest::parse(manifest_json.as_bytes(), None).expect("manifest parses")
        else {
            panic!("not an image manifest")
        };
        let manifest: ImageManifest = *manifest;
        let layers = layer_infos(&manifest, &config).expect("counts agree");
        let history = align_history(&config.history, layers.len());
        let reference: Reference = "127.0.0.1:5000/team/app:1.4".parse().expect("reference");
        let digest = Digest::sha256_of(manifest_json.as_bytes());
        (
            ImageInfo {
                reference: reference.to_string(),
                digest: digest.clone(),
                manifest_digest: digest,
                media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
                platform: Some("linux/amd64".parse().expect("platform")),
                manifest_bytes: manifest_json.into_bytes(),
                manifest,
                config_bytes,
                config,
                layers,
                history,
            },
            reference,
        )
    }

    const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","author":"me",
        "config":{"Env":["PATH=/bin","A=1"],"Cmd":["/bin/sh"],"ExposedPorts":{"80/tcp":{}},"Labels":{"k":"v"},"Healthcheck":{"Test":["CMD","true"]}},
        "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
        "history":[{"created_by":"ADD rootfs"},{"created_by":"ENV A=1","empty_layer":true}]}"#;

    #[test]
    fn inspect_json_has_dockers_keys() {
        let (info, reference) = info(CONFIG);
        let raw = raw_config(&info.config_bytes, true);
        let doc = serde_json::to_value(inspect(&info, &reference, &raw)).expect("serialises");
        assert_eq!(doc["Id"], info.manifest.config.digest.to_string());
        assert_eq!(doc["RepoTags"][0], "127.0.0.1:5000/team/app:1.4");
        assert_eq!(
            doc["RepoDigests"][0],
            format!("127.0.0.1:5000/team/app@{}", info.digest)
        );
        assert_eq!(doc["Created"], "2024-01-01T00:00:00Z");
        assert_eq!(doc["Author"], "me");
        assert_eq!(doc["Architecture"], "amd64");
        assert_eq!(doc["Os"], "linux");
        // Every key of `config` is kept, even ones the model does not know.
        assert_eq!(doc["Config"]["Healthcheck"]["Test"][1], "true");
        assert_eq!(doc["Size"], 1234);
        assert_eq!(doc["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
        assert_eq!(doc["History"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["Layers"][0]["Size"], 1234);
    }

    #[test]
    fn text_lists_config_and_counts_history() {
        let (info, reference) = info(CONFIG);
        let raw = raw_config(&info.config_bytes, false);
        let doc = inspect(&info, &reference, &raw);
        assert_eq!(doc.history, &json!([]), "text reads no history");
        let now = UNIX_EPOCH + Duration::from_secs(1_704_067_200 + 3 * 86_400);
        let text = render_text(&info, &doc, now);
        assert!(
            text.contains("Created:        2024-01-01T00:00:00Z (3 days ago)"),
            "{text}"
        );
        assert!(text.contains("  Env:\n    PATH=/bin\n    A=1\n"), "{text}");
        assert!(text.contains("  ExposedPorts: 80/tcp"), "{text}");
        assert!(text.contains("  Cmd:          [\"/bin/sh\"]"), "{text}");
        assert!(text.contains("    k=v"), "{text}");
        assert!(
            text.contains("History:        2 steps: 1 with a layer, 1 metadata-only"),
            "{text}"
        );
    }
}
