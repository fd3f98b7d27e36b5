//! TLS for one registry host, set up the way Docker and Podman read `certs.d`
//! (`ROOT/HOST[:PORT]/` under each certs.d root):
//!
//! - `*.crt` files are trusted, beside the system's certificate authorities (and
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR`, which the system verifier reads). A certificate there is
//!   also accepted when the server presents exactly it, as Docker accepts it: that is how the
//!   self-signed certificate of Docker's "test an insecure registry" recipe (which says CA:TRUE,
//!   and so is refused as a server certificate by a strict verifier) is trusted. Its validity
//!   period and host name are still checked.
//! - `*.cert` with the `*.key` beside it is a client certificate, presented when the server asks.
//! - A failed handshake is turned into a sentence saying which check failed: a different
//!   certificate, an expired one, a wrong host name, or a missing client certificate (naming the
//!   directory where it belongs).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, OtherError, SignatureScheme,
};

use super::error::RegistryError;
use super::x509;

/// The certs.d roots Docker and Podman read, system-wide first: Docker's, Podman's, then the
/// per-user ones of rootless Podman (`$XDG_CONFIG_HOME/containers/certs.d`) and rootless Docker
/// (`$XDG_CONFIG_HOME/docker/certs.d`), `$XDG_CONFIG_HOME` defaulting to `~/.config`.
pub(crate) fn system_and_user_certs_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    let config_home = super::credentials::user_config_home();
    if let Some(config) = config_home {
        dirs.push(config.join("containers/certs.d"));
        dirs.push(config.join("docker/certs.d"));
    }
    dirs
}

/// What was set up for one host, kept to explain a failed handshake.
#[derive(Debug)]
pub(crate) struct HostTls {
    /// `host[:port]`.
    host: String,
    /// `ROOT/HOST` under the first certs.d root: where files for this host belong.
    home: Option<PathBuf>,
    /// The `*.crt` files read for this host.
    trusted_files: Vec<PathBuf>,
    /// The client certificate file presented when asked, if any.
    client_cert: Option<PathBuf>,
    /// Client key files that exist but could not be read (a root-only `/etc/docker/certs.d`).
    unreadable: Vec<String>,
    /// Set once the server asked for a client certificate.
    asked: Arc<AtomicBool>,
    /// Set once the server answered a request: it does not insist on a client certificate.
    answered: AtomicBool,
}

/// The rustls configuration for connections to `host` (`host[:port]` as in a URL), and what
/// was found for it. `skip_verify` accepts any server certificate (an `--insecure-registry`
/// host); client certificates are presented all the same, as Docker does.
pub(crate) fn client_config(
    certs_dirs: &[PathBuf],
    host: &str,
    skip_verify: bool,
) -> Result<(rustls::ClientConfig, HostTls), RegistryError> {
    let found = read_host_dirs(certs_dirs, host)?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut keys = Vec::new();
    let mut unreadable = Vec::new();
    let mut client_cert = None;
    for pair in &found.client_pairs {
        match load_client_pair(pair, &provider)? {
            Some(key) => {
                client_cert.get_or_insert_with(|| pair.cert.clone());
                keys.push(Arc::new(key));
            }
            None => unreadable.push(format!(
                "{} is not readable by this user",
                pair.key.display()
            )),
        }
    }
    let verifier: Arc<dyn ServerCertVerifier> = if skip_verify {
        Arc::new(AnyCertificate {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
        })
    } else {
        let roots = found.trusted.iter().map(|(der, _)| der.clone());
        let system =
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| RegistryError::Setup {
                    detail: format!("TLS verifier for {host}: {e}"),
                })?;
        Arc::new(CertsDirVerifier {
            system,
            pinned: found.trusted.iter().map(|(der, _)| der.clone()).collect(),
        })
    };
    let asked = Arc::new(AtomicBool::new(false));
    let resolver = ClientCertificates {
        keys,
        asked: asked.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| RegistryError::Setup {
            detail: format!("TLS settings for {host}: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(resolver));
    // reqwest sets ALPN only on configurations it builds itself.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let info = HostTls {
        host: host.to_string(),
        home: host_dir_name(host).and_then(|name| certs_dirs.first().map(|d| d.join(name))),
        trusted_files: found.trusted.into_iter().map(|(_, path)| path).collect(),
        client_cert,
        unreadable,
        asked,
        answered: AtomicBool::new(false),
    };
    Ok((config, info))
}

impl HostTls {
    /// The sentence for a connection that failed in TLS, when a TLS error is in the chain of
    /// `error`; `None` for other failures.
    pub(crate) fn explain(&self, error: &reqwest::Error) -> Option<RegistryError> {
        let host = self.host.clone();
        let Some(tls) = find_tls_error(error) else {
            // A TLS 1.3 server checks the client certificate after the handshake and closes
            // the connection; over HTTP/2 only "connection closed" reaches us.
            let refused = self.asked.load(Ordering::Relaxed)
                && !self.answered.load(Ordering::Relaxed)
                && !error.is_timeout();
            return refused.then(|| self.client_certificate_refused(None));
        };
        match tls {
            rustls::Error::InvalidCertificate(problem) => Some(RegistryError::CertificateRefused {
                problem: self.certificate_problem(problem),
                host,
            }),
            // An alert after the server asked for a client certificate: it did not take ours,
            // or we had none. (TLS 1.3 servers check it after the handshake, so the alert may
            // arrive with the first answer.)
            rustls::Error::AlertReceived(alert) if self.asked.load(Ordering::Relaxed) => {
                Some(self.client_certificate_refused(Some(*alert)))
            }
            _ => None,
        }
    }

    /// Note that the server answered a request.
    pub(crate) fn note_answer(&self) {
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
    }

    fn client_certificate_refused(&self, alert: Option<AlertDescription>) -> RegistryError {
        let host = self.host.clone();
        match &self.client_cert {
            None => RegistryError::ClientCertificateMissing {
                host,
                dir: self
                    .home
                    .as_ref()
                    .map_or_else(|| "certs.d".to_string(), |d| d.display().to_string()),
                note: self.unreadable.first().cloned(),
            },
            Some(file) => RegistryError::ClientCertificateRefused {
                host,
                file: file.display().to_string(),
                alert: alert.map_or_else(|| "it closed the connection".to_string(), alert_text),
            },
        }
    }

    fn certificate_problem(&self, problem: &CertificateError) -> String {
        let advice = || match &self.home {
            Some(dir) => format!(
                "trust its certificate authority, or the certificate itself when it is \
                 self-signed, in {}/ca.crt, or allow it with --insecure-registry {}",
                dir.display(),
                self.host
            ),
            None => format!("allow it with --insecure-registry {}", self.host),
        };
        match problem {
            CertificateError::Expired => "it has expired".to_string(),
            CertificateError::ExpiredContext { not_after, .. } => {
                format!("it expired on {}", x509::format_time(not_after.as_secs()))
            }
            CertificateError::NotValidYet => "it is not valid yet".to_string(),
            CertificateError::NotValidYetContext { not_before, .. } => format!(
                "it is not valid before {}",
                x509::format_time(not_before.as_secs())
            ),
            CertificateError::NotValidForName => {
                format!("it is not issued for the host name {}", self.host)
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => {
                let names: Vec<String> = presented.iter().map(|n| presented_name(n)).collect();
                let names = if names.is_empty() {
                    "no host name at all".to_string()
                } else {
                    names.join(", ")
                };
                format!(
                    "it is issued for {names}, not for {}",
                    crate::escape::escape_str(&expected.to_str())
                )
            }
            CertificateError::Other(other) if other.0.is::<NotTheTrustedCertificate>() => {
                let files: Vec<String> = self
                    .trusted_files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                format!(
                    "the server presents a certificate other than the one trusted for it in {}, \
                     and no certificate authority trusted here signed it",
                    files.join(", ")
                )
            }
            CertificateError::UnknownIssuer | CertificateError::Other(_) => format!(
                "no certificate authority trusted here signed it ({})",
                advice()
            ),
            other => format!("{other:?}"),
        }
    }
}

/// A name from a certificate as webpki describes it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), shown plainly; the certificate is the server's, so it is escaped.
fn presented_name(name: &str) -> String {
    let plain = ["DnsName(\"", "UniformResourceIdentifier(\""]
        .iter()
        .find_map(|p| name.strip_prefix(p).and_then(|r| r.strip_suffix("\")")))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(name);
    crate::escape::escape_str(plain).into_owned()
}

fn alert_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => "it requires a client certificate".to_string(),
        AlertDescription::BadCertificate => "bad certificate".to_string(),
        AlertDescription::UnknownCA => "signed by an authority it does not trust".to_string(),
        AlertDescription::CertificateExpired => "certificate expired".to_string(),
        AlertDescription::AccessDenied => "access denied".to_string(),
        other => format!("TLS alert {other:?}"),
    }
}

/// The rustls error somewhere in an error's chain. I/O errors carry theirs as a payload (which
/// `source()` skips, and which may be another I/O error), so each payload is opened as well.
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(payload) => Some(payload as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The name of a host's directory under a certs.d root, unless `host` could step out of it.
fn host_dir_name(host: &str) -> Option<&str> {
    let bad = host.is_empty()
        || host == "."
        || host == ".."
        || host.contains(['/', '\\'])
        || host.contains('\0');
    (!bad).then_some(host)
}

/// A `*.cert` file and the `*.key` beside it.
#[derive(Debug)]
struct ClientPair {
    cert: PathBuf,
    key: PathBuf,
}

/// Everything the certs.d roots hold for one host.
#[derive(Debug, Default)]
struct HostFiles {
    /// Certificates from `*.crt`, with the file each came from.
    trusted: Vec<(CertificateDer<'static>, PathBuf)>,
    client_pairs: Vec<ClientPair>,
}

/// Read `ROOT/HOST/` under every root: `*.crt` certificates and `*.cert`/`*.key` pairs, as
/// Docker does (a certificate without its key, or a key without its certificate, is an error).
fn read_host_dirs(roots: &[PathBuf], host: &str) -> Result<HostFiles, RegistryError> {
    let mut found = HostFiles::default();
    let Some(name) = host_dir_name(host) else {
        return Ok(found);
    };
    for root in roots {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in &paths {
            match path.extension().and_then(|x| x.to_str()) {
                Some("crt") => {
                    for der in read_certificates(path)? {
                        found.trusted.push((der, path.clone()));
                    }
                }
                Some("cert") => {
                    let key = path.with_extension("key");
                    if !key.is_file() {
                        return Err(setup(format!(
                            "client certificate {} has no key {} beside it (a certificate \
                             authority's file is named *.crt)",
                            path.display(),
                            key.display()
                        )));
                    }
                    found.client_pairs.push(ClientPair {
                        cert: path.clone(),
                        key,
                    });
                }
                Some("key") => {
                    let cert = path.with_extension("cert");
                    if !cert.is_file() {
                        return Err(setup(format!(
                            "client key {} has no certificate {} beside it",
                            path.display(),
                            cert.display()
                        )));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

fn setup(detail: String) -> RegistryError {
    RegistryError::Setup { detail }
}

/// Every PEM certificate in a file; a file with none is an error.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let pem = std::fs::read(path).map_err(|e| {
        setup(format!(
            "cannot read certificate file {}: {e}",
            path.display()
        ))
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            setup(format!(
                "certificate file {} is not PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(setup(format!(
            "certificate file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// A client certificate and its key, ready to present; `None` when the key cannot be read for
/// lack of permission (the pair is then skipped, and named if the server asks for one).
fn load_client_pair(
    pair: &ClientPair,
    provider: &CryptoProvider,
) -> Result<Option<CertifiedKey>, RegistryError> {
    let key_pem = match std::fs::read(&pair.key) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => {
            return Err(setup(format!(
                "cannot read client key {}: {e}",
                pair.key.display()
            )))
        }
    };
    let chain = read_certificates(&pair.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        setup(format!(
            "client key {} is not a PEM private key: {e}",
            pair.key.display()
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        setup(format!(
            "client certificate {} and key {} cannot be used together: {e}",
            pair.cert.display(),
            pair.key.display()
        ))
    })?;
    Ok(Some(certified))
}

/// Presents the client certificates found (the first whose key can sign as the server asks),
/// and notes that the server asked.
#[derive(Debug)]
struct ClientCertificates {
    keys: Vec<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for ClientCertificates {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(sigschemes).is_some())
            .cloned()
    }

    fn has_certs(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// The server presented a certificate that is neither one trusted in certs.d for the host nor
/// signed by a trusted authority.
#[derive(Debug)]
struct NotTheTrustedCertificate;

impl fmt::Display for NotTheTrustedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not the certificate trusted in certs.d")
    }
}

impl std::error::Error for NotTheTrustedCertificate {}

/// The system verifier (system roots, `SSL_CERT_FILE`/`SSL_CERT_DIR`, and the host's certs.d
/// certificates as extra roots), plus Docker's rule for a certificate trusted in certs.d: when
/// the server presents exactly it, it is accepted with its validity and host name checked.
#[derive(Debug)]
struct CertsDirVerifier {
    system: rustls_platform_verifier::Verifier,
    /// The host's certs.d certificates, compared byte for byte with the server's.
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CertsDirVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            check_validity(end_entity, now)?;
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        match self.system.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // Not trusted by chain, and not the pinned certificate either: say the latter.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_),
            )) if !self.pinned.is_empty() => Err(rustls::Error::InvalidCertificate(
                CertificateError::Other(OtherError(Arc::new(NotTheTrustedCertificate))),
            )),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.system.supported_verify_schemes()
    }
}

/// The validity period of a pinned certificate, checked against `now`.
fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let validity = x509::validity(der.as_ref()).ok_or(rustls::Error::InvalidCertificate(
        CertificateError::BadEncoding,
    ))?;
    let time = now.as_secs();
    if time < validity.not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                validity.not_before,
            )),
        }
        .into());
    }
    if time > validity.not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                validity.not_after,
            )),
        }
        .into());
    }
    Ok(())
}

/// Any server certificate, for hosts the user marked insecure.
#[derive(Debug)]
struct AnyCertificate {
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_directories_stay_inside_their_root() {
        assert_eq!(host_dir_name("127.0.0.1:5000"), Some("127.0.0.1:5000"));
        assert_eq!(host_dir_name("[::1]:5000"), Some("[::1]:5000"));
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert_eq!(host_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_from_a_certificate_are_shown_plainly_and_escaped() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(
            presented_name("DnsName(\"evil\u{1b}]0;x\")"),
            "evil\\x1b]0;x"
        );
        assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn certs_d_files_are_read_as_docker_reads_them() {
        let root = std::env::temp_dir().join(format!("layerscope-certsd-{}", std::process::id()));
        let dir = root.join("reg.example:5000");
        std::fs::create_dir_all(&dir).expect("dir");
        let roots = vec![root.clone()];
        // Nothing there, or a directory for another host: nothing found.
        let found = read_host_dirs(&roots, "other.example").expect("empty");
        assert!(found.trusted.is_empty() && found.client_pairs.is_empty());
        // A certificate file that holds no certificate is an error naming it.
        std::fs::write(dir.join("ca.crt"), "not PEM").expect("write");
        let error = read_host_dirs(&roots, "reg.example:5000").expect_err("not PEM");
        assert!(error.to_string().contains("ca.crt"), "{error}");
        std::fs::remove_file(dir.join("ca.crt")).expect("remove");
        // A client certificate without its key, or a key without its certificate.
        std::fs::write(dir.join("client.cert"), "x").expect("write");
        let error = read_host_dirs(&roots, "reg.example:5000").expect_err("no key");
        assert!(error.to_string().contains("has no key"), "{error}");
        std::fs::write(dir.join("client.key"), "x").expect("write");
        let found = read_host_dirs(&roots, "reg.example:5000").expect("pair");
        assert_eq!(found.client_pairs.len(), 1);
        std::fs::remove_file(dir.join("client.cert")).expect("remove");
        let error = read_host_dirs(&roots, "reg.example:5000").expect_err("no cert");
        assert!(error.to_string().contains("has no certificate"), "{error}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
