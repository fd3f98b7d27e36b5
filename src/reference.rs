//! Image references (`[registry/]repository[:tag][@digest]`), read the way `docker pull` reads
//! them: Docker Hub defaults, host detection, lowercase repository components, tag and digest
//! syntax. Everything that talks to a registry starts from a parsed [`Reference`].

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::digest::Digest;

/// The registry that names without a host refer to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key under which Docker stores Docker Hub credentials.
pub const DOCKER_HUB_CREDENTIAL_KEY: &str = "https://index.docker.io/v1/";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Longest repository name (host included) that Docker accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag: one leading character plus up to 127 more.
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, normalised: `docker.io`, `ghcr.io`, `localhost:5000`,
    /// `[::1]:5000`.
    pub registry: String,
    /// Repository path, such as `library/alpine` or `team/project/app`.
    pub repository: String,
    /// Tag, when one was written.
    pub tag: Option<String>,
    /// Digest, when one was written.
    pub digest: Option<Digest>,
}

/// What a manifest request asks for: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A tag, resolved by the registry at request time.
    Tag(String),
    /// A content digest, verified against the bytes that arrive.
    Digest(Digest),
}

impl Target {
    /// Read a tag or digest as a registry URL would hold it: a string with `:` is a digest.
    pub fn parse(tag_or_digest: &str) -> Result<Target, ReferenceError> {
        if tag_or_digest.contains(':') {
            tag_or_digest
                .parse::<Digest>()
                .map(Target::Digest)
                .map_err(|e| ReferenceError::InvalidDigest {
                    digest: tag_or_digest.to_string(),
                    why: e.to_string(),
                })
        } else {
            validate_tag(tag_or_digest)?;
            Ok(Target::Tag(tag_or_digest.to_string()))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(tag) => f.write_str(tag),
            Target::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// Why a string is not an image reference. Each message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// Nothing was given.
    Empty,
    /// The name (host and repository) is longer than Docker allows.
    TooLong {
        /// Length of the name.
        length: usize,
    },
    /// The registry host part is malformed.
    InvalidHost {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The repository part is missing (`ghcr.io/` or `:tag`).
    MissingRepository,
    /// A repository path component is empty (`a//b`, trailing `/`).
    EmptyComponent,
    /// A repository component holds uppercase letters.
    Uppercase {
        /// The component as written.
        component: String,
    },
    /// A repository component breaks the `[a-z0-9]+` joined by `.`, `_`, `__`, `-` rule.
    InvalidComponent {
        /// The component as written.
        component: String,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    InvalidTag {
        /// The tag as written.
        tag: String,
    },
    /// The digest is malformed.
    InvalidDigest {
        /// The digest as written.
        digest: String,
        /// What is wrong with it.
        why: String,
    },
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::Empty => f.write_str("the image reference is empty"),
            ReferenceError::TooLong { length } => write!(
                f,
                "the repository name is {length} characters long; at most {NAME_TOTAL_LENGTH_MAX} are allowed"
            ),
            ReferenceError::InvalidHost { host, why } => {
                write!(f, "invalid registry host {host:?}: {why}")
            }
            ReferenceError::MissingRepository => {
                f.write_str("the image reference names no repository")
            }
            ReferenceError::EmptyComponent => f.write_str(
                "the repository name has an empty path component (a leading, trailing or doubled '/')",
            ),
            ReferenceError::Uppercase { component } => write!(
                f,
                "repository names must be lowercase, but {component:?} has uppercase letters"
            ),
            ReferenceError::InvalidComponent { component } => write!(
                f,
                "invalid repository name component {component:?}: use lowercase letters and digits, \
                 joined by '.', '_', '__' or '-'"
            ),
            ReferenceError::InvalidTag { tag } => write!(
                f,
                "invalid tag {tag:?}: tags are 1 to 128 of A-Z a-z 0-9 _ . - and cannot start with '.' or '-'"
            ),
            ReferenceError::InvalidDigest { digest, why } => {
                write!(f, "invalid digest {digest:?}: {why}")
            }
        }
    }
}

impl std::error::Error for ReferenceError {}

impl Reference {
    /// The host that serves this registry's API (`docker.io` → `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The key Docker's credential stores use for this registry.
    pub fn credential_key(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_CREDENTIAL_KEY
        } else {
            &self.registry
        }
    }

    /// Whether this is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`), which may
    /// be reached over plain HTTP as Docker allows.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }

    /// What to fetch: the digest when there is one, else the tag, else `latest`.
    pub fn target(&self) -> Target {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => Target::Digest(digest.clone()),
            (None, Some(tag)) => Target::Tag(tag.clone()),
            (None, None) => Target::Tag(DEFAULT_TAG.to_string()),
        }
    }

    /// The same repository, pinned to `digest` (keeps the tag for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// Whether `host` (with or without a port) names this machine: `localhost`, an address in
/// `127.0.0.0/8`, or `::1`.
pub fn host_is_loopback(host: &str) -> bool {
    let bare = strip_port(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(inner) = bare.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    bare.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` without the port (`[::1]:5000` → `[::1]`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((bare, _)) => bare,
        None => host,
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let parsed =
                    digest
                        .parse::<Digest>()
                        .map_err(|e| ReferenceError::InvalidDigest {
                            digest: digest.to_string(),
                            why: e.to_string(),
                        })?;
                (rest, Some(parsed))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/', so a host port is never a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(tag)?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::MissingRepository);
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::TooLong { length: name.len() });
        }
        let (registry, path) = split_host(name);
        let registry = match registry {
            Some(host) => {
                validate_host(host)?;
                normalise_host(host)
            }
            None => DOCKER_HUB.to_string(),
        };
        if path.is_empty() {
            return Err(ReferenceError::MissingRepository);
        }
        for component in path.split('/') {
            validate_component(component)?;
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (None, None) => write!(f, ":{DEFAULT_TAG}"),
            (tag, digest) => {
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
        }
    }
}

/// Split off the first path component when it is a registry host: `localhost`, or anything with
/// a `.` or `:`, as Docker decides.
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first == "localhost" || first.contains('.') || first.contains(':') =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `index.docker.io` is another name for Docker Hub.
fn normalise_host(host: &str) -> String {
    if host == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        host.to_string()
    }
}

fn validate_host(host: &str) -> Result<(), ReferenceError> {
    let invalid = |why| ReferenceError::InvalidHost {
        host: host.to_string(),
        why,
    };
    let (bare, port) = if let Some(after_bracket) = host.strip_prefix('[') {
        let Some(end) = after_bracket.find(']') else {
            return Err(invalid("an IPv6 address needs a closing ']'"));
        };
        let address = &after_bracket[..end];
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(invalid("the text in brackets is not an IPv6 address"));
        }
        let rest = &after_bracket[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(port) => Some(port),
            None if rest.is_empty() => None,
            None => return Err(invalid("only ':PORT' may follow an IPv6 address")),
        };
        (None, port)
    } else {
        match host.split_once(':') {
            Some((bare, port)) => (Some(bare), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the port must be a number"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid("the port must be between 1 and 65535"));
        }
    }
    if let Some(bare) = bare {
        if bare.is_empty() {
            return Err(invalid("the host name is empty"));
        }
        for label in bare.split('.') {
            let bytes = label.as_bytes();
            if bytes.is_empty() {
                return Err(invalid("a host name label is empty"));
            }
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            {
                return Err(invalid(
                    "host names may hold only letters, digits, '-' and '.'",
                ));
            }
            if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
                return Err(invalid("a host name label cannot start or end with '-'"));
            }
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or a run of `-` (as the distribution grammar allows).
fn validate_component(component: &str) -> Result<(), ReferenceError> {
    if component.is_empty() {
        return Err(ReferenceError::EmptyComponent);
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            component: component.to_string(),
        });
    }
    let invalid = || ReferenceError::InvalidComponent {
        component: component.to_string(),
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // One alphanumeric run.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        if i == bytes.len() {
            return Ok(());
        }
        // One separator.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return Err(invalid()),
        }
    }
}

fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidTag {
        tag: tag.to_string(),
    };
    let bytes = tag.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(invalid());
    };
    if bytes.len() > TAG_LENGTH_MAX {
        return Err(invalid());
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if !word(first)
        || !bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
    {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn reject(s: &str) -> ReferenceError {
        match s.parse::<Reference>() {
            Ok(r) => panic!("{s:?} should be rejected, parsed as {r}"),
            Err(e) => e,
        }
    }

    #[test]
    fn bare_name_is_a_docker_hub_official_image() {
        let r = parse("alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.target(), Target::Tag("latest".to_string()));
    }

    #[test]
    fn name_with_slash_but_no_host_is_a_docker_hub_repository() {
        let r = parse("myuser/app:1.0");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "myuser/app");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.to_string(), "docker.io/myuser/app:1.0");
    }

    #[test]
    fn first_component_is_a_host_when_localhost_or_dotted_or_ported() {
        let r = parse("localhost/x");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "x")
        );
        let r = parse("localhost:5000/hello-world-java");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "hello-world-java");
        let r = parse("127.0.0.1:5000/x");
        assert_eq!(r.registry, "127.0.0.1:5000");
        let r = parse("ghcr.io/org/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "org/app")
        );
        let r = parse("[::1]:5000/x:v1");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = parse("[::1]/x");
        assert_eq!(r.registry, "[::1]");
        // A plain first component without '.' or ':' is a Docker Hub namespace.
        let r = parse("team/app");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "team/app");
    }

    #[test]
    fn docker_io_spellings_share_one_registry_and_keep_library() {
        for s in [
            "docker.io/alpine",
            "index.docker.io/alpine",
            "docker.io/library/alpine",
        ] {
            let r = parse(s);
            assert_eq!(r.registry, "docker.io", "{s}");
            assert_eq!(r.repository, "library/alpine", "{s}");
            assert_eq!(r.api_host(), "registry-1.docker.io");
            assert_eq!(r.credential_key(), "https://index.docker.io/v1/");
            assert!(r.is_docker_hub());
        }
        let r = parse("ghcr.io/org/app");
        assert_eq!(r.api_host(), "ghcr.io");
        assert_eq!(r.credential_key(), "ghcr.io");
        assert!(!r.is_docker_hub());
    }

    #[test]
    fn nested_repository_paths_are_kept() {
        let r = parse("localhost:5000/team/project/app:dev");
        assert_eq!(r.repository, "team/project/app");
        assert_eq!(r.to_string(), "localhost:5000/team/project/app:dev");
    }

    #[test]
    fn digest_wins_over_tag_and_latest_only_without_either() {
        let with_both = parse(&format!("ghcr.io/org/app:1.2@sha256:{HEX}"));
        assert_eq!(with_both.tag.as_deref(), Some("1.2"));
        let digest: Digest = format!("sha256:{HEX}").parse().expect("digest");
        assert_eq!(with_both.target(), Target::Digest(digest.clone()));
        assert_eq!(
            with_both.to_string(),
            format!("ghcr.io/org/app:1.2@sha256:{HEX}")
        );
        let by_digest = parse(&format!("alpine@sha256:{HEX}"));
        assert_eq!(by_digest.tag, None);
        assert_eq!(by_digest.target(), Target::Digest(digest));
        assert_eq!(
            by_digest.to_string(),
            format!("docker.io/library/alpine@sha256:{HEX}")
        );
        assert_eq!(parse("alpine:3.20").target(), Target::Tag("3.20".into()));
    }

    #[test]
    fn sha512_digests_are_accepted() {
        let hex512 = "a".repeat(128);
        let r = parse(&format!("localhost:5000/x@sha512:{hex512}"));
        assert_eq!(r.target().to_string(), format!("sha512:{hex512}"));
    }

    #[test]
    fn loopback_hosts_are_recognised_with_or_without_port() {
        for s in [
            "localhost/x",
            "localhost:5000/x",
            "LOCALHOST:5000/x",
            "127.0.0.1/x",
            "127.0.0.1:5000/x",
            "127.3.4.5:80/x",
            "[::1]/x",
            "[::1]:5000/x",
        ] {
            assert!(parse(s).is_loopback(), "{s} is loopback");
        }
        for s in [
            "alpine",
            "ghcr.io/x",
            "128.0.0.1:5000/x",
            "localhost.example.com/x",
            "[::2]:5000/x",
            "10.0.0.1:5000/x",
        ] {
            assert!(!parse(s).is_loopback(), "{s} is not loopback");
        }
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in [
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a--b",
            "a1-2.b_c__d",
            "0",
            "x9",
        ] {
            assert_eq!(parse(ok).repository, format!("library/{ok}"), "{ok}");
        }
        for bad in [
            "a___b", "a..b", "_a", "a_", "a.", "-a", "a-", "a+b", "a b", "a._b", "a-.b",
        ] {
            assert!(
                matches!(reject(bad), ReferenceError::InvalidComponent { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn uppercase_repository_is_rejected_with_its_own_message() {
        let e = reject("MyImage");
        assert_eq!(
            e,
            ReferenceError::Uppercase {
                component: "MyImage".into()
            }
        );
        assert!(e.to_string().contains("lowercase"), "{e}");
        assert!(matches!(
            reject("ghcr.io/Org/app"),
            ReferenceError::Uppercase { .. }
        ));
        // Uppercase hosts are hosts, and fine.
        assert_eq!(parse("GHCR.io/org/app").registry, "GHCR.io");
    }

    #[test]
    fn bad_tags_are_rejected() {
        for bad in ["a:", "a:.x", "a:-x", "a:x!y", "a:x+y"] {
            let e = reject(bad);
            assert!(matches!(e, ReferenceError::InvalidTag { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("invalid tag"), "{e}");
        }
        let long = format!("a:{}", "t".repeat(129));
        assert!(matches!(reject(&long), ReferenceError::InvalidTag { .. }));
        let ok = format!("a:{}", "t".repeat(128));
        assert_eq!(parse(&ok).tag.map(|t| t.len()), Some(128));
        assert_eq!(parse("a:_x.Y-1").tag.as_deref(), Some("_x.Y-1"));
    }

    #[test]
    fn bad_digests_are_rejected() {
        for bad in [
            "a@sha256:abc",
            "a@md5:abc",
            "a@",
            "a@sha256",
            "a@SHA256:abc",
        ] {
            let e = reject(bad);
            assert!(
                matches!(e, ReferenceError::InvalidDigest { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("invalid digest"), "{e}");
        }
        let upper = format!("a@sha256:{}", HEX.to_uppercase());
        assert!(matches!(
            reject(&upper),
            ReferenceError::InvalidDigest { .. }
        ));
    }

    #[test]
    fn empty_and_missing_parts_are_rejected() {
        assert_eq!(reject(""), ReferenceError::Empty);
        assert_eq!(reject(":tag"), ReferenceError::MissingRepository);
        assert_eq!(reject("ghcr.io/"), ReferenceError::MissingRepository);
        assert_eq!(reject("a//b"), ReferenceError::EmptyComponent);
        assert_eq!(reject("a/b/"), ReferenceError::EmptyComponent);
        assert_eq!(reject("/a"), ReferenceError::EmptyComponent);
        assert_eq!(
            reject(&format!("@sha256:{HEX}")),
            ReferenceError::MissingRepository
        );
    }

    #[test]
    fn too_long_names_are_rejected() {
        let name = format!("ghcr.io/{}", "a".repeat(250));
        let e = reject(&name);
        assert_eq!(e, ReferenceError::TooLong { length: 258 });
        assert!(e.to_string().contains("at most 255"), "{e}");
        let ok = format!("ghcr.io/{}", "a".repeat(247));
        assert_eq!(parse(&ok).repository.len(), 247);
    }

    #[test]
    fn bad_hosts_are_rejected() {
        for bad in [
            "localhost:/x",
            "localhost:abc/x",
            "localhost:0/x",
            "localhost:70000/x",
            "[::1/x",
            "[zz]:5000/x",
            "[::1]x/x",
            "a..b/x",
            "-a.b/x",
            "a_b.c/x",
            ":5000/x",
        ] {
            let e = reject(bad);
            assert!(
                matches!(e, ReferenceError::InvalidHost { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("invalid registry host"), "{e}");
        }
    }

    #[test]
    fn target_parses_tags_and_digests() {
        assert_eq!(Target::parse("v1").expect("tag"), Target::Tag("v1".into()));
        let d = format!("sha256:{HEX}");
        assert_eq!(Target::parse(&d).expect("digest").to_string(), d);
        assert!(Target::parse("sha256:zz").is_err());
        assert!(Target::parse(".bad").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "docker.io/library/alpine:latest",
            "localhost:5000/team/project/app:dev",
            "[::1]:5000/x:v1",
            &format!("ghcr.io/org/app:1.2@sha256:{HEX}"),
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port("[::1]:5000"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("host:80"), "host");
        assert_eq!(strip_port("host"), "host");
    }
}
