//! `layerscope tags REPOSITORY` and `layerscope catalog REGISTRY`: the tags of a repository
//! and the repositories of a registry, like `crane ls` and `crane catalog`: one per line, in
//! the order the registry serves them, every page followed (`Link: <…>; rel="next"`). `-n`
//! sets the page size asked for.

use clap::Args;
use serde_json::{json, Value};

use super::{json_text, parse_image, print_stdout, ToolboxError};
use crate::error::{exit_code, Error};
use crate::reference::Reference;
use crate::registry::RegistryClient;

/// Arguments of `layerscope tags`.
#[derive(Debug, Clone, Args)]
pub struct TagsArgs {
    /// The repository: `[REGISTRY/]REPOSITORY` (a tag or digest is ignored).
    #[arg(value_name = "REPOSITORY")]
    pub repository: String,

    /// Page size to ask the registry for (`n`); every page is read either way.
    #[arg(short = 'n', long = "page-size", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,

    /// Print JSON: `{"repository": …, "tags": […]}`.
    #[arg(long)]
    pub json: bool,
}

impl TagsArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_image(&self.repository)?.registry])
    }
}

/// Arguments of `layerscope catalog`.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// The registry host: `HOST[:PORT]`, such as `localhost:5000`.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,

    /// Page size to ask the registry for (`n`); every page is read either way.
    #[arg(short = 'n', long = "page-size", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,

    /// Print JSON: `{"registry": …, "repositories": […]}`.
    #[arg(long)]
    pub json: bool,
}

impl CatalogArgs {
    /// The registries this command talks to.
    pub fn registries(&self) -> Result<Vec<String>, Error> {
        Ok(vec![parse_registry_host(&self.registry)?])
    }
}

/// A registry host as `docker pull` would read it in front of a repository: `localhost`, or a
/// name with `.` or `:` (`index.docker.io` is `docker.io`).
pub fn parse_registry_host(text: &str) -> Result<String, Error> {
    let host = text.trim_end_matches('/');
    let not_a_host = || ToolboxError::NotARegistryHost {
        given: text.to_string(),
    };
    if host.is_empty() || host.contains(['/', '@']) {
        return Err(not_a_host().into());
    }
    let probe: Reference = format!("{host}/probe").parse()?;
    let normalised = if host == "index.docker.io" {
        "docker.io"
    } else {
        host
    };
    if probe.registry != normalised {
        return Err(not_a_host().into());
    }
    Ok(probe.registry)
}

/// Run `layerscope tags`.
pub async fn run_tags(client: &RegistryClient, args: &TagsArgs) -> Result<i32, Error> {
    let reference = parse_image(&args.repository)?;
    let listing = client.list_tags(&reference, args.page_size).await?;
    let repository = format!("{}/{}", reference.registry, reference.repository);
    if args.json {
        print_stdout(&json_text(&tags_json(&repository, &listing.entries)))?;
    } else {
        print_stdout(&lines(&listing.entries))?;
    }
    Ok(exit_code::OK)
}

/// Run `layerscope catalog`.
pub async fn run_catalog(client: &RegistryClient, args: &CatalogArgs) -> Result<i32, Error> {
    let registry = parse_registry_host(&args.registry)?;
    let listing = client.list_catalog(&registry, args.page_size).await?;
    if args.json {
        print_stdout(&json_text(&catalog_json(&registry, &listing.entries)))?;
    } else {
        print_stdout(&lines(&listing.entries))?;
    }
    Ok(exit_code::OK)
}

/// One entry per line, control characters shown visibly (a registry names its own tags and
/// repositories).
pub fn lines(entries: &[String]) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&crate::escape::escape_str(entry));
        out.push('\n');
    }
    out
}

/// `{"repository": "HOST/NAME", "tags": [...]}`.
pub fn tags_json(repository: &str, tags: &[String]) -> Value {
    json!({ "repository": repository, "tags": tags })
}

/// `{"registry": "HOST", "repositories": [...]}`.
pub fn catalog_json(registry: &str, repositories: &[String]) -> Value {
    json!({ "registry": registry, "repositories": repositories })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_told_from_repositories() {
        assert_eq!(
            parse_registry_host("localhost:5000").expect("host"),
            "localhost:5000"
        );
        assert_eq!(parse_registry_host("ghcr.io/").expect("host"), "ghcr.io");
        assert_eq!(
            parse_registry_host("index.docker.io").expect("host"),
            "docker.io"
        );
        assert_eq!(
            parse_registry_host("[::1]:5000").expect("host"),
            "[::1]:5000"
        );
        for bad in ["myregistry", "ghcr.io/org", "", "bad_host.example"] {
            assert!(parse_registry_host(bad).is_err(), "{bad}");
        }
    }
}
