//! Test fixtures for the explorer: a model built from real tar bytes through the real layer
//! indexer and tree merge, an [`ImageInfo`] that matches it, and a screen dump of a
//! `TestBackend` buffer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ratatui::buffer::Buffer;

use crate::digest::Digest;
use crate::image::{ImageInfo, ImageParts, ParsedManifest};
use crate::layer::index_layer;
use crate::tree::FileTree;

/// One layer: `(path, Some(content))` writes a regular file, `(path, None)` an empty file
/// (use a `.wh.` name for a whiteout); paths ending in `/` are directories.
pub type LayerSpec<'a> = &'a [(&'a str, Option<&'a [u8]>)];

/// A plain tar of one layer.
pub fn layer_tar(files: LayerSpec<'_>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        if let Some(dir) = path.strip_suffix('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, dir, std::io::empty())
                .unwrap();
        } else {
            let data = content.unwrap_or(b"");
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

/// The tree of the given layers, merged in order.
pub fn tree_from(layers: &[LayerSpec<'_>]) -> FileTree {
    let mut tree = FileTree::new();
    for files in layers {
        let tar = layer_tar(files);
        tree.push_layer(index_layer(&tar[..], None).unwrap());
    }
    tree
}

/// An image whose layers are the given tars, with one metadata-only history step after the
/// first layer; reference `127.0.0.1:5000/demo/app:1.0`.
pub fn image_for(layers: &[LayerSpec<'_>]) -> (Arc<ImageInfo>, FileTree) {
    let tars: Vec<Vec<u8>> = layers.iter().map(|l| layer_tar(l)).collect();
    let diff_ids: Vec<String> = tars
        .iter()
        .map(|t| format!("\"{}\"", Digest::sha256_of(t)))
        .collect();
    let mut history = Vec::new();
    for i in 0..tars.len() {
        history.push(format!(
            r#"{{"created":"2024-05-0{}T10:00:00Z","created_by":"/bin/sh -c echo step {i} > /step{i}"}}"#,
            i + 1
        ));
        if i == 0 {
            history.push(
                r#"{"created":"2024-05-01T10:00:01Z","created_by":"/bin/sh -c #(nop)  ENV PATH=/usr/bin","empty_layer":true}"#
                    .to_string(),
            );
        }
    }
    let config_json = format!(
        r#"{{"architecture":"amd64","os":"linux",
            "config":{{"Env":["PATH=/usr/bin","LANG=C"],"Entrypoint":["/app/run"],"Cmd":["--serve"],
              "WorkingDir":"/app","User":"app","ExposedPorts":{{"8080/tcp":{{}}}},
              "Volumes":{{"/data":{{}}}},"Labels":{{"team":"core"}},"StopSignal":"SIGTERM"}},
            "rootfs":{{"type":"layers","diff_ids":[{}]}},
            "history":[{}]}}"#,
        diff_ids.join(","),
        history.join(",")
    );
    let config_bytes = config_json.into_bytes();
    let layer_json: Vec<String> = tars
        .iter()
        .map(|t| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                Digest::sha256_of(t),
                t.len()
            )
        })
        .collect();
    let manifest_json = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
           "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
           "layers":[{}]}}"#,
        Digest::sha256_of(&config_bytes),
        config_bytes.len(),
        layer_json.join(",")
    );
    let ParsedManifest::Image(manifest) =
        ParsedManifest::parse(manifest_json.as_bytes(), None).unwrap()
    else {
        panic!("not an image manifest")
    };
    let digest = Digest::sha256_of(manifest_json.as_bytes());
    let parts = ImageParts {
        reference: "127.0.0.1:5000/demo/app:1.0".to_string(),
        digest: digest.clone(),
        manifest_digest: digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        manifest_bytes: manifest_json.into_bytes(),
        manifest: *manifest,
        config_bytes,
        platform: Some("linux/amd64".parse().unwrap()),
    };
    let info = ImageInfo::assemble(parts, None).unwrap();
    let mut tree = FileTree::new();
    for tar in &tars {
        tree.push_layer(index_layer(&tar[..], None).unwrap());
    }
    (Arc::new(info), tree)
}

/// The buffer as lines of text (one per row, trailing spaces trimmed).
pub fn screen(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            let mut line = String::new();
            for x in 0..area.width {
                line.push_str(buffer[(area.x + x, area.y + y)].symbol());
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// The whole buffer as one string, for `contains` checks and failure messages.
pub fn screen_text(buffer: &Buffer) -> String {
    screen(buffer).join("\n")
}
