//! Private registries set up the way their owners set them up, end to end through the binary:
//! real TLS registries (Debian `docker-registry` with `http.tls`) trusted through a certs.d
//! directory (Docker's self-signed recipe, a wrong, an expired and a misnamed certificate, the
//! system trust of `SSL_CERT_FILE`), one requiring client certificates (`http.tls.clientcas`),
//! Docker Hub names served by a registry mirror (and the fallback to Docker Hub, reached
//! through a tunnelling proxy that maps its name to a local registry), and a real forward proxy
//! (tinyproxy) with `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`, each seen in the proxy's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use common::certs::{self, certs_d};
use common::cli::{self, json_ok, stderr};
use common::layers::{Compress, LayerBuilder};
use common::proxy::{Tinyproxy, Tunnel};
use common::push::{build_image, mt, Blob, Flavor, Pusher, Step, TestImage};
use common::registry::{generate_tls, Registry, RegistryConfig, TempDir, TlsFiles};

// ---------------------------------------------------------------------------------------------
// Helpers

fn sized(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A two-layer image with a known waste: `bin/tool` written twice (1000 + 1200 bytes wasted,
/// as dive counts every copy of a path written more than once).
fn sample_image(seed: &str) -> TestImage {
    let layers = [
        LayerBuilder::new()
            .file("bin/tool", &sized(1000))
            .file("etc/seed", seed.as_bytes()),
        LayerBuilder::new()
            .file("bin/tool", &sized(1200))
            .file("app/main", &sized(300)),
    ]
    .into_iter()
    .map(|b| {
        let built = b.build(Compress::Gzip);
        (Blob::new(built.blob, mt::OCI_LAYER_GZIP), built.tar)
    })
    .collect();
    let steps = vec![
        Step::layer("ADD rootfs.tar /"),
        Step::empty("ENV A=1"),
        Step::layer("RUN make"),
    ];
    build_image(Flavor::Oci, ("linux", "amd64", None), layers, &steps)
}

/// A registry serving HTTPS with `tls` (and requiring client certificates signed by
/// `client_ca`), holding `sample_image(seed)` as `repository:v1`.
async fn tls_registry_with_image(
    tls: &TlsFiles,
    client_ca: Option<&Path>,
    pusher_identity: Option<&[u8]>,
    repository: &str,
    seed: &str,
) -> Registry {
    let registry = Registry::start_with(RegistryConfig {
        tls: Some(tls.clone()),
        client_ca: client_ca.map(Path::to_path_buf),
        ..RegistryConfig::default()
    })
    .await;
    let pusher = match pusher_identity {
        Some(pem) => Pusher::with_client_certificate(&registry.url(), pem),
        None => Pusher::new(&registry.url()),
    };
    pusher
        .push_image(repository, Some("v1"), &sample_image(seed))
        .await;
    registry
}

/// The binary with `args`, no cache, extra environment `env`.
async fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = cli::command(home);
    command.arg("--no-cache").args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.expect("run layerscope")
}

/// Assert a one-line error with exit code 2 that contains each of `needles`.
fn assert_error(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("layerscope: error: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

/// The figures of the sample image (2200 bytes of `bin/tool` wasted).
fn assert_sample_figures(json: &Value) {
    assert_eq!(json["image"]["wastedBytes"], 2200, "{json}");
    assert_eq!(json["layers"].as_array().map(Vec::len), Some(2), "{json}");
}

/// The JSON without the image's name (which says where it was read from).
fn without_reference(mut json: Value) -> Value {
    let removed = json["image"]
        .as_object_mut()
        .expect("image object")
        .remove("reference");
    assert!(removed.is_some(), "image.reference exists");
    json
}

// ---------------------------------------------------------------------------------------------
// Server certificates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockers_self_signed_recipe_is_trusted_through_certs_d_and_nothing_else_is() {
    let work = TempDir::new("tls-recipe");
    let home = TempDir::new("tls-recipe-home");
    let h = home.path();
    let tls = certs::docker_recipe(work.path(), "domain", "IP:127.0.0.1,DNS:localhost");
    let registry = tls_registry_with_image(&tls, None, None, "app", "recipe").await;
    let reference = registry.reference("app", "v1");

    // Not trusted yet: refused, with what to do.
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(
        &out,
        &[
            "no certificate authority trusted here signed it",
            &format!("certs.d/{}/ca.crt", registry.host),
        ],
    );

    // domain.crt copied to certs.d/HOST:PORT/ca.crt, as Docker's documentation says: the
    // certificate (CA:TRUE, and the server's own) is accepted, for the IP and for localhost.
    certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("ca.crt", &tls.server_cert)],
    );
    let json = json_ok(&run(h, &[], &["--json", "-", &reference]).await);
    assert_sample_figures(&json);
    let port = registry.host.rsplit_once(':').expect("port").1;
    let by_name = format!("localhost:{port}");
    certs_d(
        &h.join("certs.d"),
        &by_name,
        &[("ca.crt", &tls.server_cert)],
    );
    let json_by_name = json_ok(&run(h, &[], &["--json", "-", &format!("{by_name}/app:v1")]).await);
    assert_eq!(without_reference(json_by_name), without_reference(json));

    // Any *.crt name is read, as Docker reads them.
    std::fs::remove_dir_all(h.join("certs.d")).expect("clear certs.d");
    certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("domain.crt", &tls.server_cert)],
    );
    json_ok(&run(h, &[], &["--json", "-", &reference]).await);

    // Another certificate made by the same recipe for the same names: refused, saying so.
    std::fs::remove_dir_all(h.join("certs.d")).expect("clear certs.d");
    let other = certs::recipe_rsa2048(work.path(), "other", "IP:127.0.0.1,DNS:localhost");
    let dir = certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("ca.crt", &other.server_cert)],
    );
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(
        &out,
        &[
            &format!("the TLS certificate of {} is refused", registry.host),
            "other than the one trusted for it in",
            &dir.join("ca.crt").display().to_string(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_misnamed_certificate_is_refused_with_its_reason() {
    let work = TempDir::new("tls-bad");
    let home = TempDir::new("tls-bad-home");
    let h = home.path();

    let expired = certs::expired(&work.path().join("expired"));
    let registry = tls_registry_with_image(&expired, None, None, "app", "expired").await;
    certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("ca.crt", &expired.server_cert)],
    );
    let out = run(h, &[], &["--json", "-", &registry.reference("app", "v1")]).await;
    assert_error(
        &out,
        &[
            &format!("the TLS certificate of {} is refused", registry.host),
            "it expired on 2021-01-01 00:00:00 UTC",
        ],
    );

    let misnamed = certs::recipe_rsa2048(work.path(), "misnamed", "DNS:registry.example");
    let registry = tls_registry_with_image(&misnamed, None, None, "app", "misnamed").await;
    certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("ca.crt", &misnamed.server_cert)],
    );
    let out = run(h, &[], &["--json", "-", &registry.reference("app", "v1")]).await;
    assert_error(
        &out,
        &["it is issued for registry.example, not for 127.0.0.1"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_in_ssl_cert_file_or_ssl_cert_dir_is_trusted_as_system_roots_are() {
    let work = TempDir::new("tls-system");
    let home = TempDir::new("tls-system-home");
    let h = home.path();
    let tls = generate_tls(work.path());
    let registry = tls_registry_with_image(&tls, None, None, "app", "system").await;
    let reference = registry.reference("app", "v1");
    // Nothing in certs.d: the CA comes from where the system verifier looks.
    let ca = tls.ca_cert.display().to_string();
    let json = json_ok(&run(h, &[("SSL_CERT_FILE", &ca)], &["--json", "-", &reference]).await);
    assert_sample_figures(&json);
    let hashed = work.path().join("hashed");
    std::fs::create_dir_all(&hashed).expect("dir");
    std::fs::copy(&tls.ca_cert, hashed.join("test-ca.pem")).expect("copy");
    common::registry::run_openssl(&["rehash", hashed.to_str().expect("utf-8")]);
    let dir = hashed.display().to_string();
    json_ok(&run(h, &[("SSL_CERT_DIR", &dir)], &["--json", "-", &reference]).await);
    // Without either, the same server is refused.
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(&out, &["no certificate authority trusted here signed it"]);
}

// ---------------------------------------------------------------------------------------------
// Client certificates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_certs_d_are_presented_and_a_missing_one_is_named() {
    let work = TempDir::new("mtls");
    let home = TempDir::new("mtls-home");
    let h = home.path();
    let server = certs::recipe_rsa2048(work.path(), "domain", "IP:127.0.0.1,DNS:localhost");
    let client = certs::client_ca_and_certificate(&work.path().join("client"));
    let registry = tls_registry_with_image(
        &server,
        Some(&client.ca_cert),
        Some(&client.identity_pem()),
        "app",
        "mtls",
    )
    .await;
    let reference = registry.reference("app", "v1");
    let dir = certs_d(
        &h.join("certs.d"),
        &registry.host,
        &[("ca.crt", &server.server_cert)],
    );

    // The registry asks, and there is nothing to present: the error says where it belongs.
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(
        &out,
        &[
            &format!("{} asks for a TLS client certificate", registry.host),
            &format!("put client.cert and client.key in {}/", dir.display()),
        ],
    );

    // client.cert and client.key beside ca.crt, as Docker lays them out.
    std::fs::copy(&client.cert, dir.join("client.cert")).expect("cert");
    std::fs::copy(&client.key, dir.join("client.key")).expect("key");
    let json = json_ok(&run(h, &[], &["--json", "-", &reference]).await);
    assert_sample_figures(&json);

    // A certificate the registry's client CA did not sign is refused, naming the file.
    let stranger = certs::client_ca_and_certificate(&work.path().join("stranger"));
    std::fs::copy(&stranger.cert, dir.join("client.cert")).expect("cert");
    std::fs::copy(&stranger.key, dir.join("client.key")).expect("key");
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(
        &out,
        &[&format!(
            "{} refused the TLS client certificate {}",
            registry.host,
            dir.join("client.cert").display()
        )],
    );

    // A certificate without its key is a setup error naming both files.
    std::fs::remove_file(dir.join("client.key")).expect("remove key");
    let out = run(h, &[], &["--json", "-", &reference]).await;
    assert_error(&out, &["client certificate", "has no key"]);

    // Without LAYERSCOPE_CERTS_D, the per-user Podman location is read (under
    // $XDG_CONFIG_HOME), besides /etc/docker/certs.d and /etc/containers/certs.d.
    let config_home = h.join("config");
    certs_d(
        &config_home.join("containers/certs.d"),
        &registry.host,
        &[
            ("ca.crt", &server.server_cert),
            ("client.cert", &client.cert),
            ("client.key", &client.key),
        ],
    );
    let mut command = cli::command(h);
    command
        .env_remove("LAYERSCOPE_CERTS_D")
        .env("XDG_CONFIG_HOME", &config_home)
        .args(["--no-cache", "--json", "-", &reference]);
    let json = json_ok(&command.output().await.expect("run layerscope"));
    assert_sample_figures(&json);
}

// ---------------------------------------------------------------------------------------------
// Registry mirrors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_hub_name_is_read_from_the_mirror_with_the_same_figures() {
    let home = TempDir::new("mirror-home");
    let h = home.path();
    let mirror = Registry::start().await;
    Pusher::new(&mirror.url())
        .push_image("library/lsmirror", Some("v1"), &sample_image("mirror"))
        .await;
    let direct = json_ok(
        &run(
            h,
            &[],
            &["--json", "-", &mirror.reference("library/lsmirror", "v1")],
        )
        .await,
    );
    assert_sample_figures(&direct);

    // `lsmirror:v1` is docker.io/library/lsmirror:v1; the mirror serves it at the same path.
    let mirror_url = format!("http://{}", mirror.host);
    let out = run(
        h,
        &[],
        &[
            "--registry-mirror",
            &mirror_url,
            "--source",
            "registry",
            "--json",
            "-",
            "lsmirror:v1",
        ],
    )
    .await;
    let via_mirror = json_ok(&out);
    assert_eq!(
        via_mirror["image"]["reference"],
        "docker.io/library/lsmirror:v1"
    );
    assert_eq!(
        without_reference(via_mirror),
        without_reference(direct.clone())
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "lsmirror:v1: read from the registry mirror {mirror_url}"
        )),
        "{err}"
    );

    // The same from the registry-mirrors of Docker's daemon.json, for a bare name (which may
    // also fall back to a local engine: the mirror answers first).
    std::fs::write(
        h.join("daemon.json"),
        serde_json::json!({"registry-mirrors": [mirror_url]}).to_string(),
    )
    .expect("daemon.json");
    let out = run(h, &[], &["--json", "-", "lsmirror:v1"]).await;
    assert_eq!(without_reference(json_ok(&out)), without_reference(direct));
    assert!(
        stderr(&out).contains("read from the registry mirror"),
        "{}",
        stderr(&out)
    );

    // A plain-HTTP mirror that is not on this machine needs --insecure-registry.
    let out = run(
        h,
        &[],
        &[
            "--registry-mirror",
            "http://mirror.example:5000",
            "--json",
            "-",
            "lsmirror:v1",
        ],
    )
    .await;
    assert_error(&out, &["--insecure-registry mirror.example:5000"]);
}

/// Docker Hub, played by a local TLS registry whose certificate names registry-1.docker.io:
/// reached through a proxy that tunnels `registry-1.docker.io:443` to it (and refuses anything
/// else), trusted through certs.d. Returns the registry, the tunnel and the environment.
async fn local_docker_hub(work: &Path, certs_root: &Path) -> (Registry, Tunnel) {
    let tls = certs::recipe_rsa2048(work, "hub", "DNS:registry-1.docker.io,IP:127.0.0.1");
    let hub = tls_registry_with_image(&tls, None, None, "library/lsfallback", "hub").await;
    certs_d(
        certs_root,
        "registry-1.docker.io",
        &[("ca.crt", &tls.server_cert)],
    );
    certs_d(certs_root, &hub.host, &[("ca.crt", &tls.server_cert)]);
    let tunnel = Tunnel::start(&[("registry-1.docker.io:443", &hub.host)]).await;
    (hub, tunnel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_without_the_image_falls_back_to_docker_hub() {
    let work = TempDir::new("fallback");
    let home = TempDir::new("fallback-home");
    let h = home.path();
    let (hub, tunnel) = local_docker_hub(work.path(), &h.join("certs.d")).await;
    let mirror = Registry::start().await;
    let mirror_url = format!("http://{}", mirror.host);
    // The mirror is on loopback and reached directly; Docker Hub only through the tunnel.
    let proxy = tunnel.url();
    let env = [("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "127.0.0.1")];
    let direct = json_ok(
        &run(
            h,
            &[],
            &["--json", "-", &hub.reference("library/lsfallback", "v1")],
        )
        .await,
    );

    let out = run(
        h,
        &env,
        &[
            "--registry-mirror",
            &mirror_url,
            "--source",
            "registry",
            "--json",
            "-",
            "lsfallback:v1",
        ],
    )
    .await;
    let from_hub = json_ok(&out);
    assert_eq!(without_reference(from_hub), without_reference(direct));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the registry mirror {mirror_url} does not have it; read from Docker Hub"
        )),
        "{err}"
    );
    assert!(
        tunnel
            .requests()
            .iter()
            .all(|r| r == "CONNECT registry-1.docker.io:443 HTTP/1.1"),
        "{:?}",
        tunnel.requests()
    );
    assert!(!tunnel.requests().is_empty());
    assert!(
        mirror.log().contains("/v2/library/lsfallback/manifests/v1"),
        "the mirror was asked first:\n{}",
        mirror.log()
    );

    // Neither has it: Docker Hub's answer, and what the mirror said.
    let out = run(
        h,
        &env,
        &[
            "--registry-mirror",
            &mirror_url,
            "--source",
            "registry",
            "--json",
            "-",
            "lsfallback:v2",
        ],
    )
    .await;
    assert_error(
        &out,
        &[
            "docker.io",
            &format!("(tried first: the registry mirror {mirror_url} does not have it)"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Forward proxies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_http_proxy_and_no_proxy_seen_in_tinyproxys_log() {
    let work = TempDir::new("proxy");
    let home = TempDir::new("proxy-home");
    let h = home.path();
    let proxy = Tinyproxy::start().await;
    let proxy_url = proxy.url();

    // HTTPS through the proxy: a CONNECT tunnel to the registry, TLS end to end.
    let tls = certs::recipe_rsa2048(work.path(), "domain", "IP:127.0.0.1,DNS:localhost");
    let secure = tls_registry_with_image(&tls, None, None, "app", "proxy-tls").await;
    certs_d(
        &h.join("certs.d"),
        &secure.host,
        &[("ca.crt", &tls.server_cert)],
    );
    let reference = secure.reference("app", "v1");
    let connect = format!("CONNECT {} HTTP/1.1", secure.host);
    let json = json_ok(
        &run(
            h,
            &[("HTTPS_PROXY", &proxy_url)],
            &["--json", "-", &reference],
        )
        .await,
    );
    assert_sample_figures(&json);
    let tunnels = proxy.requests().iter().filter(|r| **r == connect).count();
    assert!(tunnels >= 1, "CONNECT seen: {}", proxy.log());

    // NO_PROXY names the registry: it is reached directly, the proxy sees nothing new.
    let before = proxy.requests().len();
    let env = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    json_ok(&run(h, &env, &["--json", "-", &reference]).await);
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());

    // Plain HTTP (a loopback registry) through HTTP_PROXY: absolute-form requests.
    let plain = Registry::start().await;
    Pusher::new(&plain.url())
        .push_image("app", Some("v1"), &sample_image("proxy-http"))
        .await;
    let reference = plain.reference("app", "v1");
    let json = json_ok(
        &run(
            h,
            &[("HTTP_PROXY", &proxy_url)],
            &["--json", "-", &reference],
        )
        .await,
    );
    assert_sample_figures(&json);
    let manifest = format!("GET http://{}/v2/app/manifests/v1 HTTP/1.1", plain.host);
    assert!(
        proxy.requests().contains(&manifest),
        "{manifest} in: {}",
        proxy.log()
    );
    let before = proxy.requests().len();
    let env = [
        ("HTTP_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    json_ok(&run(h, &env, &["--json", "-", &reference]).await);
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
}
