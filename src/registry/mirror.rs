//! Registry mirrors for Docker Hub images, configured as Docker configures them: the
//! `--registry-mirror URL` option and the `registry-mirrors` list of Docker's `daemon.json`. A
//! mirror serves a Docker Hub image under the same repository path (`library/` included), so
//! `alpine:3.20` is read from `MIRROR/v2/library/alpine/manifests/3.20`. Which mirror answered,
//! and the fallback to Docker Hub, are decided where the image is resolved
//! ([`crate::source::RegistrySource`]).

use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::reference::{host_is_loopback, strip_port, Reference};

/// The environment variable naming the `daemon.json` to read mirrors from instead of Docker's
/// (empty: none).
pub const DAEMON_JSON_ENV: &str = "LAYERSCOPE_DOCKER_DAEMON_JSON";

/// One mirror of Docker Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `scheme://host[:port]`, for messages.
    url: String,
    /// `host[:port]`, as references name registries.
    host: String,
    /// Whether the URL asks for plain HTTP.
    plain_http: bool,
}

impl Mirror {
    /// Read a mirror URL: `https://host[:port]`, `http://host[:port]` or a bare `host[:port]`
    /// (HTTPS, as Docker reads it). A path, query, fragment or user name is refused: a mirror
    /// serves the registry API at its root.
    pub fn parse(text: &str) -> Result<Mirror, String> {
        let trimmed = text.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| format!("invalid registry mirror {trimmed:?}: {e}"))?;
        let plain_http = match url.scheme() {
            "https" => false,
            "http" => true,
            other => {
                return Err(format!(
                    "invalid registry mirror {trimmed:?}: the scheme must be https or http, not {other}"
                ))
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!(
                "invalid registry mirror {trimmed:?}: it names no host"
            ));
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "invalid registry mirror {trimmed:?}: give only scheme, host and port (a mirror \
                 serves the registry API at its root)"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "invalid registry mirror {trimmed:?}: credentials do not belong in the URL (log \
                 in with `docker login HOST`)"
            ));
        }
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Mirror {
            url: format!("{}://{host}", url.scheme()),
            host,
            plain_http,
        })
    }

    /// `scheme://host[:port]`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The reference of a Docker Hub image on this mirror: same repository, tag and digest.
    pub fn reference_for(&self, image: &Reference) -> Reference {
        Reference {
            registry: self.host.clone(),
            ..image.clone()
        }
    }

    /// Refuse a plain-HTTP mirror the user did not allow: plain HTTP is for loopback hosts, and
    /// for other hosts only when they are listed as insecure (`host[:port]` or the bare host).
    pub fn check_plain_http(&self, insecure_hosts: &[String]) -> Result<(), String> {
        if !self.plain_http || host_is_loopback(&self.host) {
            return Ok(());
        }
        let bare = strip_port(&self.host);
        let allowed = insecure_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&self.host) || h.eq_ignore_ascii_case(bare));
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "the registry mirror {} uses plain HTTP: allow it with --insecure-registry {}, or \
                 give it as https://",
                self.url, self.host
            ))
        }
    }
}

/// The `daemon.json` files to read mirrors from: `$LAYERSCOPE_DOCKER_DAEMON_JSON` when set,
/// else rootless Docker's (`$XDG_CONFIG_HOME/docker/daemon.json`, default
/// `~/.config/docker/daemon.json`) and the system's `/etc/docker/daemon.json`.
pub fn daemon_json_paths() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(DAEMON_JSON_ENV) {
        return if path.is_empty() {
            Vec::new()
        } else {
            vec![PathBuf::from(path)]
        };
    }
    let mut paths = Vec::new();
    let config_home = super::credentials::user_config_home();
    if let Some(config) = config_home {
        paths.push(config.join("docker/daemon.json"));
    }
    paths.push(PathBuf::from("/etc/docker/daemon.json"));
    paths
}

/// The `registry-mirrors` of one `daemon.json`; a missing file has none.
pub fn daemon_json_mirrors(path: &Path) -> Result<Vec<Mirror>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let Some(list) = json.get("registry-mirrors") else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(format!(
            "{}: registry-mirrors is not a list of URLs",
            path.display()
        ));
    };
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(text) => Mirror::parse(text).map_err(|e| format!("{}: {e}", path.display())),
            None => Err(format!(
                "{}: registry-mirrors holds something other than a URL",
                path.display()
            )),
        })
        .collect()
}

/// The mirrors for Docker Hub images: `flags` (`--registry-mirror`, in order) first, then those
/// of the `daemon.json` files, each once. A bad flag is an error; a `daemon.json` that cannot
/// be used is skipped with a warning (returned for the caller to print), since Docker itself
/// may not be using it.
pub fn configured(
    flags: &[String],
    insecure_hosts: &[String],
) -> Result<(Vec<Mirror>, Vec<String>), String> {
    let mut mirrors = Vec::new();
    for flag in flags {
        let mirror = Mirror::parse(flag)?;
        mirror.check_plain_http(insecure_hosts)?;
        mirrors.push(mirror);
    }
    let mut warnings = Vec::new();
    for path in daemon_json_paths() {
        let found = daemon_json_mirrors(&path).and_then(|found| {
            for mirror in &found {
                mirror
                    .check_plain_http(insecure_hosts)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(found)
        });
        match found {
            Ok(found) => mirrors.extend(found),
            Err(e) => warnings.push(format!("ignoring the registry mirrors of {e}")),
        }
    }
    let mut seen = std::collections::HashSet::new();
    mirrors.retain(|m| seen.insert(m.host.to_ascii_lowercase()));
    Ok((mirrors, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls_as_docker_reads_them() {
        let m = Mirror::parse("https://mirror.example").expect("https");
        assert_eq!(
            (m.url(), m.host()),
            ("https://mirror.example", "mirror.example")
        );
        let m = Mirror::parse("mirror.example:5000").expect("bare host");
        assert_eq!(m.url(), "https://mirror.example:5000");
        let m = Mirror::parse("http://127.0.0.1:5000/").expect("trailing slash");
        assert_eq!(
            (m.url(), m.host()),
            ("http://127.0.0.1:5000", "127.0.0.1:5000")
        );
        assert!(m.plain_http);
        let m = Mirror::parse("https://MIRROR.example:443").expect("default port");
        assert_eq!(m.host(), "mirror.example");
        let m = Mirror::parse("http://[::1]:5000").expect("IPv6");
        assert_eq!(m.host(), "[::1]:5000");
        for bad in [
            "ftp://mirror.example",
            "https://mirror.example/v2/",
            "https://mirror.example?x=1",
            "https://user:pw@mirror.example",
            "https://",
            "",
        ] {
            assert!(Mirror::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mirror_serves_the_same_repository_path() {
        let image: Reference = "alpine:3.20".parse().expect("reference");
        let m = Mirror::parse("http://127.0.0.1:5000").expect("mirror");
        let on_mirror = m.reference_for(&image);
        assert_eq!(on_mirror.to_string(), "127.0.0.1:5000/library/alpine:3.20");
        assert!(on_mirror.is_loopback());
    }

    #[test]
    fn plain_http_only_for_loopback_or_insecure_hosts() {
        let local = Mirror::parse("http://localhost:5000").expect("local");
        assert!(local.check_plain_http(&[]).is_ok());
        let remote = Mirror::parse("http://mirror.example:5000").expect("remote");
        let error = remote.check_plain_http(&[]).expect_err("not allowed");
        assert!(
            error.contains("--insecure-registry mirror.example:5000"),
            "{error}"
        );
        assert!(remote
            .check_plain_http(&["mirror.example".to_string()])
            .is_ok());
        assert!(Mirror::parse("https://mirror.example")
            .expect("https")
            .check_plain_http(&[])
            .is_ok());
    }

    #[test]
    fn daemon_json_lists_mirrors() {
        let dir = std::env::temp_dir().join(format!("layerscope-mirror-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("daemon.json");
        std::fs::write(
            &path,
            r#"{"registry-mirrors": ["https://a.example", "http://127.0.0.1:5000"], "debug": true}"#,
        )
        .expect("write");
        let found = daemon_json_mirrors(&path).expect("mirrors");
        let urls: Vec<&str> = found.iter().map(Mirror::url).collect();
        assert_eq!(urls, ["https://a.example", "http://127.0.0.1:5000"]);
        std::fs::write(&path, r#"{"debug": true}"#).expect("write");
        assert_eq!(daemon_json_mirrors(&path).expect("none"), Vec::new());
        std::fs::write(&path, r#"{"registry-mirrors": "https://a.example"}"#).expect("write");
        assert!(daemon_json_mirrors(&path).is_err());
        std::fs::write(&path, "{not json").expect("write");
        assert!(daemon_json_mirrors(&path).is_err());
        assert_eq!(
            daemon_json_mirrors(&dir.join("missing.json")).expect("missing"),
            Vec::new()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
