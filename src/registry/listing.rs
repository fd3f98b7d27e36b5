//! Listings that come in pages: the tags of a repository (`GET /v2/NAME/tags/list`) and the
//! repositories of a registry (`GET /v2/_catalog`). Pages are chained by `Link: <…>;
//! rel="next"` headers, followed to the end; `n` asks for a page size. A registry that honours
//! `n` but sends no `Link` is paged with `last` instead, as the distribution spec allows.

use std::collections::HashSet;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LINK};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::error::looks_like_html;
use super::transport::{error_chain, read_limited};
use super::{header_string, Access, ApiRequest, Fetching, RegistryClient, RegistryError};
use crate::reference::Reference;

/// Pages followed at most: a registry linking in circles or without end stops here.
pub const MAX_PAGES: usize = 100_000;
/// One page of a listing is read up to this size.
const PAGE_LIMIT: usize = 16 * 1024 * 1024;

/// A listing followed to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The repository name the registry reports (tag lists), `None` for the catalog.
    pub name: Option<String>,
    /// Every entry, in the order served, pages concatenated.
    pub entries: Vec<String>,
    /// Pages fetched.
    pub pages: usize,
}

/// Which listing.
#[derive(Clone, Copy)]
enum Kind {
    Tags,
    Catalog,
}

/// One page as the API describes it; `tags` for tag lists, `repositories` for the catalog.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every tag of the repository of `reference` (its tag or digest is ignored), following
    /// `Link` pagination to the end. `page_size` is sent as `n`.
    pub async fn list_tags(
        &self,
        reference: &Reference,
        page_size: Option<u32>,
    ) -> Result<Listing, RegistryError> {
        let path = format!("v2/{}/tags/list", reference.repository);
        self.list(reference, Kind::Tags, &path, page_size).await
    }

    /// Every repository of the registry `registry` (`host[:port]`), following `Link`
    /// pagination to the end. `page_size` is sent as `n`.
    pub async fn list_catalog(
        &self,
        registry: &str,
        page_size: Option<u32>,
    ) -> Result<Listing, RegistryError> {
        // The catalog belongs to no repository; the reference only carries the host.
        let reference = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        self.list(&reference, Kind::Catalog, "v2/_catalog", page_size)
            .await
    }

    async fn list(
        &self,
        reference: &Reference,
        kind: Kind,
        path: &str,
        page_size: Option<u32>,
    ) -> Result<Listing, RegistryError> {
        let host = reference.registry.clone();
        let (access, fetching, what) = match kind {
            Kind::Tags => (
                Access::Pull,
                Fetching::Tags,
                format!("the tag list of {}", reference.repository),
            ),
            Kind::Catalog => (
                Access::Catalog,
                Fetching::Catalog,
                "the catalog".to_string(),
            ),
        };
        let mut listing = Listing {
            name: None,
            entries: Vec::new(),
            pages: 0,
        };
        let mut next = Some(match page_size {
            Some(n) => format!("{path}?n={n}"),
            None => path.to_string(),
        });
        let mut seen: HashSet<String> = HashSet::new();
        // The `last` value sent when paging without links.
        let mut sent_last: Option<String> = None;
        while let Some(target) = next.take() {
            if !seen.insert(target.clone()) {
                return Err(RegistryError::BadLink {
                    host,
                    detail: format!("it leads back to a page already read ({target})"),
                });
            }
            if listing.pages >= MAX_PAGES {
                return Err(RegistryError::BadLink {
                    host,
                    detail: format!("{what} goes on for more than {MAX_PAGES} pages"),
                });
            }
            let response = self
                .authorized(
                    reference,
                    access,
                    ApiRequest {
                        method: Method::GET,
                        target: &target,
                        headers: HeaderMap::new(),
                        body: None,
                    },
                )
                .await?;
            if response.status() != StatusCode::OK {
                return Err(self.status_error(reference, fetching, response).await);
            }
            let link = response
                .headers()
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_next_link);
            let content_type = header_string(response.headers(), CONTENT_TYPE.as_str());
            let body =
                read_limited(response, PAGE_LIMIT)
                    .await
                    .map_err(|e| RegistryError::Transfer {
                        host: host.clone(),
                        detail: error_chain(&e),
                    })?;
            if looks_like_html(content_type.as_deref(), &body) {
                return Err(RegistryError::NotRegistry {
                    host,
                    answered: "HTML".to_string(),
                });
            }
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidListing {
                    host: host.clone(),
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
            let entries = match kind {
                Kind::Tags => page.tags,
                Kind::Catalog => page.repositories,
            }
            .unwrap_or_default();
            listing.pages += 1;
            if listing.name.is_none() {
                listing.name = page.name;
            }
            if sent_last
                .as_ref()
                .is_some_and(|last| entries.contains(last))
            {
                // Paged by `last`, it served entries up to `last` again: it ignores `last`,
                // and this page repeats the previous one.
                break;
            }
            let full_page = page_size.is_some_and(|n| n > 0 && entries.len() == n as usize);
            let last_entry = entries.last().cloned();
            listing.entries.extend(entries);
            sent_last = None;
            next = match (link, page_size) {
                (Some(link), _) => Some(link),
                // No link: a registry that honours `n` but not `Link` is paged with `last`
                // for as long as it returns full pages.
                (None, Some(n)) if full_page => last_entry.map(|last| {
                    let target = format!("{path}?n={n}&last={}", query_value(&last));
                    sent_last = Some(last);
                    target
                }),
                _ => None,
            };
        }
        Ok(listing)
    }
}

/// The target of the `rel="next"` link in one `Link` header value, if it has one.
pub fn parse_next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // Parameters run to the next link-value, which starts with '<'.
        let params_end = after.find('<').unwrap_or(after.len());
        let is_next = after[..params_end].split([';', ',']).any(|param| {
            let Some((key, value)) = param.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next && !target.trim().is_empty() {
            return Some(target.trim().to_string());
        }
        rest = &after[params_end..];
    }
}

/// Percent-encode a query value (repository names hold `/`).
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link_among_others() {
        assert_eq!(
            parse_next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            parse_next_link(
                r#"<https://r.example/v2/a/tags/list?n=1&last=x>; rel="prev", <https://r.example/v2/a/tags/list?n=1&last=y>; rel="next""#
            )
            .as_deref(),
            Some("https://r.example/v2/a/tags/list?n=1&last=y")
        );
        assert_eq!(
            parse_next_link("</page2>; title=\"x\"; rel=next").as_deref(),
            Some("/page2")
        );
        assert_eq!(
            parse_next_link(r#"</a>; rel="first last""#).as_deref(),
            None
        );
        assert_eq!(
            parse_next_link(r#"</a>; rel="next prev""#).as_deref(),
            Some("/a")
        );
        assert_eq!(parse_next_link("garbage"), None);
        assert_eq!(parse_next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("team/app"), "team%2Fapp");
        assert_eq!(query_value("v1.2_3-x~"), "v1.2_3-x~");
    }
}
