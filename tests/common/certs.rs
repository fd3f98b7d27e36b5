//! TLS certificates as people make them for a private registry, with the `openssl` CLI:
//! Docker's self-signed recipe, an expired one, one for another host name, and a client
//! certificate authority with a client certificate it signed; and a certs.d directory to trust
//! them through.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::registry::{path_str, run_openssl, TlsFiles};

/// A self-signed server certificate made exactly as Docker's documentation tells registry
/// owners to (`openssl req -newkey rsa:4096 -nodes -sha256 -keyout domain.key -x509 -days 365
/// -out domain.crt -addext "subjectAltName = …"`): it says CA:TRUE and is the server's own
/// certificate. The recipe asks for the subject interactively; `-subj` answers for the test.
/// `names` is the subjectAltName value, e.g. `IP:127.0.0.1,DNS:localhost`.
pub fn docker_recipe(dir: &Path, stem: &str, names: &str) -> TlsFiles {
    self_signed(dir, stem, names, "rsa:4096")
}

/// The same recipe with a 2048-bit key, for tests where the certificate's shape matters and
/// not its key size: a 4096-bit key takes 3 to 10 s to generate on a loaded 2-core machine.
pub fn recipe_rsa2048(dir: &Path, stem: &str, names: &str) -> TlsFiles {
    self_signed(dir, stem, names, "rsa:2048")
}

fn self_signed(dir: &Path, stem: &str, names: &str, key_kind: &str) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join(format!("{stem}.key"));
    let cert = dir.join(format!("{stem}.crt"));
    run_openssl(&[
        "req",
        "-newkey",
        key_kind,
        "-nodes",
        "-sha256",
        "-keyout",
        path_str(&key),
        "-x509",
        "-days",
        "365",
        "-out",
        path_str(&cert),
        "-addext",
        &format!("subjectAltName = {names}"),
        "-subj",
        "/CN=layerscope test registry",
    ]);
    TlsFiles {
        ca_cert: cert.clone(),
        server_cert: cert,
        server_key: key,
    }
}

/// A self-signed certificate shaped like Docker's recipe (CA:TRUE, names 127.0.0.1 and
/// localhost) that was valid only during 2020. `openssl req` cannot date a certificate in the
/// past, so `openssl ca -selfsign` signs it with explicit dates.
pub fn expired(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let p = |name: &str| dir.join(name);
    std::fs::write(p("index.txt"), "").unwrap();
    std::fs::write(p("serial"), "01\n").unwrap();
    std::fs::write(
        p("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = test\n[test]\ndatabase = {}\nnew_certs_dir = {}\nserial = {}\n\
             default_md = sha256\npolicy = any\ncopy_extensions = copy\nunique_subject = no\n\
             [any]\ncommonName = supplied\n",
            p("index.txt").display(),
            dir.display(),
            p("serial").display()
        ),
    )
    .unwrap();
    let (key, csr, cert) = (p("expired.key"), p("expired.csr"), p("expired.crt"));
    run_openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&csr),
        "-subj",
        "/CN=layerscope expired registry",
        "-addext",
        "subjectAltName = IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints = critical,CA:TRUE",
    ]);
    run_openssl(&[
        "ca",
        "-batch",
        "-config",
        path_str(&p("ca.cnf")),
        "-selfsign",
        "-keyfile",
        path_str(&key),
        "-in",
        path_str(&csr),
        "-out",
        path_str(&cert),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20210101000000Z",
        "-notext",
    ]);
    TlsFiles {
        ca_cert: cert.clone(),
        server_cert: cert,
        server_key: key,
    }
}

/// A client certificate authority and a client certificate it signed (EC P-256).
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// The CA the registry trusts for clients (`http.tls.clientcas`).
    pub ca_cert: PathBuf,
    /// The client certificate, as `client.cert` is laid out in certs.d.
    pub cert: PathBuf,
    /// Its key, as `client.key`.
    pub key: PathBuf,
}

impl ClientFiles {
    /// Certificate and key in one PEM, as `reqwest::Identity::from_pem` wants them.
    pub fn identity_pem(&self) -> Vec<u8> {
        let mut pem = std::fs::read(&self.cert).unwrap();
        pem.extend(std::fs::read(&self.key).unwrap());
        pem
    }
}

/// Make a client CA and a client certificate signed by it in `dir`.
pub fn client_ca_and_certificate(dir: &Path) -> ClientFiles {
    std::fs::create_dir_all(dir).unwrap();
    let p = |name: &str| path_str(&dir.join(name)).to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca_key, ca_cert) = (p("client-ca.key"), p("client-ca.crt"));
    let (key, csr) = (p("client.key"), p("client.csr"));
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_cert,
        "-days",
        "2",
        "-subj",
        "/CN=layerscope client CA",
    ]);
    run_openssl(&args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=layerscope client",
    ]);
    run_openssl(&args);
    let (cert, ext) = (p("client.cert"), p("client-ext.cnf"));
    std::fs::write(&ext, "extendedKeyUsage = clientAuth\n").unwrap();
    run_openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_cert,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    ClientFiles {
        ca_cert: PathBuf::from(ca_cert),
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
    }
}

/// Copy `files` (`(name in the directory, source)`) into `ROOT/HOST/`, as a registry owner
/// lays out `/etc/docker/certs.d/HOST:PORT/`; returns that directory.
pub fn certs_d(root: &Path, host: &str, files: &[(&str, &Path)]) -> PathBuf {
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, source) in files {
        std::fs::copy(source, dir.join(name)).unwrap();
    }
    dir
}
