//! Push a sample image, shaped like a small Java service built the usual way (a base, a JDK
//! installed with apt, caches removed in a later step, the app copied and then chmod-ed), to a
//! registry, so there is something realistic to open without network access.
//!
//! `cargo run --example sample_image -- http://127.0.0.1:5000 hello-world-java:latest`

#[allow(dead_code)]
#[path = "../tests/common/layers.rs"]
mod layers;
#[allow(dead_code)]
#[path = "../tests/common/push.rs"]
mod push;

use layers::{content, Compress, LayerBuilder, Meta};
use push::{mt, Blob, Pusher};
use serde_json::json;

fn text(seed: u64, n: usize) -> Vec<u8> {
    let words = [
        "java", "module", "class", "import", "public", "static", "void", "main", "string",
        "return", "layer", "image", "config", "service", "request", "response", "error",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut i = seed as usize;
    while out.len() < n {
        out.extend_from_slice(words[i % words.len()].as_bytes());
        out.push(if i.is_multiple_of(11) { b'\n' } else { b' ' });
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    out.truncate(n);
    out
}

fn executable() -> Meta {
    Meta {
        mode: 0o755,
        ..Meta::default()
    }
}

fn layers() -> Vec<(LayerBuilder, Compress, &'static str)> {
    let mut base = LayerBuilder::new()
        .dir("etc")
        .file(
            "etc/os-release",
            b"PRETTY_NAME=\"Sample Linux 12\"\nID=sample\n",
        )
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
        )
        .dir("bin")
        .file_with("bin/sh", &content(1, 120_000), executable())
        .symlink("bin/bash", "sh")
        .dir("lib")
        .file("lib/libc.so.6", &content(2, 2_000_000))
        .hardlink("lib/libc.so", "lib/libc.so.6")
        .file("var/cache/apt/pkgcache.bin", &content(3, 3_000_000));
    for i in 0..40 {
        base = base.file(
            format!("usr/share/doc/pkg{i}/copyright"),
            &text(i, 2_000 + (i as usize) * 100),
        );
    }
    let mut jdk = LayerBuilder::new()
        .file_with(
            "usr/lib/jvm/java-17/bin/java",
            &content(10, 200_000),
            executable(),
        )
        .file("usr/lib/jvm/java-17/lib/modules", &content(11, 8_000_000))
        .file(
            "usr/lib/jvm/java-17/conf/security/java.security",
            &text(12, 60_000),
        )
        .symlink("usr/bin/java", "/usr/lib/jvm/java-17/bin/java")
        .file("var/cache/apt/pkgcache.bin", &content(13, 3_100_000));
    for i in 0..6 {
        jdk = jdk.file(
            format!("var/lib/apt/lists/deb_{i}_Packages"),
            &text(20 + i, 500_000),
        );
    }
    let mut cleanup = LayerBuilder::new().opaque("var/lib/apt/lists");
    cleanup = cleanup.whiteout("var/cache/apt/pkgcache.bin");
    let app = LayerBuilder::new()
        .dir("app")
        .file("app/hello.jar", &content(30, 50_000))
        .file("app/application.yml", &text(31, 1_500));
    let chmod = LayerBuilder::new().file_with("app/hello.jar", &content(30, 50_000), executable());
    vec![
        (base, Compress::Gzip, mt::DOCKER_LAYER),
        (jdk, Compress::Gzip, mt::DOCKER_LAYER),
        (cleanup, Compress::Gzip, mt::DOCKER_LAYER),
        (app, Compress::Gzip, mt::DOCKER_LAYER),
        (chmod, Compress::Gzip, mt::DOCKER_LAYER),
    ]
}

fn history() -> serde_json::Value {
    let steps: [(&str, bool); 10] = [
        ("/bin/sh -c #(nop) ADD file:7a1c3b4d5e6f in / ", false),
        ("/bin/sh -c #(nop)  CMD [\"sh\"]", true),
        (
            "/bin/sh -c #(nop)  ENV JAVA_HOME=/usr/lib/jvm/java-17",
            true,
        ),
        (
            "/bin/sh -c apt-get update && apt-get install -y openjdk-17-jre-headless",
            false,
        ),
        (
            "/bin/sh -c rm -rf /var/lib/apt/lists/* /var/cache/apt/pkgcache.bin",
            false,
        ),
        ("/bin/sh -c #(nop) WORKDIR /app", true),
        ("/bin/sh -c #(nop) COPY dir:0f1e2d3c4b5a in /app ", false),
        ("/bin/sh -c chmod +x /app/hello.jar", false),
        ("/bin/sh -c #(nop)  EXPOSE 8080", true),
        (
            "/bin/sh -c #(nop)  ENTRYPOINT [\"java\" \"-jar\" \"/app/hello.jar\"]",
            true,
        ),
    ];
    json!(steps
        .iter()
        .enumerate()
        .map(|(i, (created_by, empty))| {
            let mut step = json!({
                "created": format!("2026-11-{:02}T10:{:02}:00Z", 1 + i, i * 3),
                "created_by": created_by,
            });
            if *empty {
                step["empty_layer"] = json!(true);
            }
            step
        })
        .collect::<Vec<_>>())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(target)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: sample_image REGISTRY_URL REPOSITORY[:TAG]");
        std::process::exit(2);
    };
    let (repo, tag) = target
        .split_once(':')
        .unwrap_or((target.as_str(), "latest"));
    let pusher = Pusher::new(url);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (builder, how, media_type) in layers() {
        let built = builder.build(how);
        let blob = Blob::new(built.blob, media_type);
        pusher.push_blob(repo, &blob.bytes).await;
        descriptors.push(blob.descriptor());
        diff_ids.push(built.diff_id.to_string());
    }
    let config = serde_json::to_vec_pretty(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-11-10T10:27:00Z",
        "config": {
            "User": "app",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "JAVA_HOME=/usr/lib/jvm/java-17"],
            "Entrypoint": ["java", "-jar", "/app/hello.jar"],
            "WorkingDir": "/app",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.opencontainers.image.title": "hello-world-java",
                       "org.opencontainers.image.version": "1.0.0"},
            "StopSignal": "SIGTERM"
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history(),
    }))
    .expect("config JSON");
    let config = Blob::new(config, mt::DOCKER_CONFIG);
    pusher.push_blob(repo, &config.bytes).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": mt::DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": descriptors,
    }))
    .expect("manifest JSON");
    let digest = pusher
        .push_manifest(repo, tag, &manifest, mt::DOCKER_MANIFEST)
        .await;
    println!("pushed {repo}:{tag} ({digest})");
}
