//! The explorer end to end in a real terminal (tmux): open an image from a real loopback
//! registry, move to a layer, switch views, filter, open a file, open help, resize and quit,
//! checking the captured screen at each step and the terminal's state afterwards.

mod common;

use std::time::Duration;

use common::layers::{content, Compress, LayerBuilder};
use common::push::{build_image, mt, Flavor, Pusher, Step};
use common::registry::{Registry, TempDir};
use common::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(30);

/// Keys one at a time, with a pause: tmux would otherwise pass `Esc` and the next key's escape
/// sequence as one burst, which a terminal application reads as Alt+key.
fn keys(tmux: &Tmux, keys: &[&str]) {
    for key in keys {
        tmux.send(&[key]);
        std::thread::sleep(Duration::from_millis(120));
    }
}

/// The line of the screen holding `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{screen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dive_user_browses_an_image_in_a_real_terminal() {
    if !Tmux::available() {
        eprintln!("NOTE: tmux is not installed; the end-to-end explorer test is skipped");
        return;
    }
    // Layer 0 installs a base and a cache; layer 1 adds the app and deletes the cache (waste).
    let base = LayerBuilder::new()
        .dir("etc")
        .file("etc/os-release", b"NAME=explorer-test\n")
        .file("var/cache/pkgs.bin", &content(3, 300_000))
        .build(Compress::Gzip);
    let app = LayerBuilder::new()
        .file("srv/hello.txt", b"Hello from layerscope\nsecond line\n")
        .whiteout("var/cache/pkgs.bin")
        .build(Compress::Zstd);
    let image = build_image(
        Flavor::Oci,
        ("linux", "amd64", None),
        vec![
            base.layer(mt::OCI_LAYER_GZIP),
            app.layer(mt::OCI_LAYER_ZSTD),
        ],
        &[
            Step::layer("ADD rootfs.tar /"),
            Step::empty("ENV MODE=test"),
            Step::layer("RUN install-app && rm -rf /var/cache/pkgs.bin"),
        ],
    );
    let registry = Registry::start().await;
    Pusher::new(&registry.url())
        .push_image("e2e/app", Some("1.0"), &image)
        .await;
    let reference = format!("{}/e2e/app:1.0", registry.host);

    let home = TempDir::new("explorer-home");
    let config_dir = home.path().join("config");
    let cache_dir = home.path().join("cache");
    let tmux = Tmux::start(
        110,
        32,
        std::path::Path::new(env!("CARGO_BIN_EXE_layerscope")),
        &[&reference],
        &[
            ("LAYERSCOPE_CONFIG_DIR", &config_dir.display().to_string()),
            ("LAYERSCOPE_CACHE_DIR", &cache_dir.display().to_string()),
        ],
    );

    // Opens on the base layer with layers, history and figures.
    let screen = tmux.wait_for("Layers (2)", WAIT);
    assert!(screen.contains("ADD rootfs.tar /"), "{screen}");
    let screen = tmux.wait_for("Wasted", WAIT);
    assert!(
        line_with(&screen, "ENV MODE=test").contains('-'),
        "{screen}"
    );
    let screen = tmux.wait_for("os-release", WAIT);
    assert!(screen.contains("Files at layer 0"), "{screen}");
    assert!(
        line_with(&screen, "layer 0/1").contains("changes"),
        "{screen}"
    );

    // Down past the metadata-only row to layer 1: its changes show, the deleted cache with it.
    keys(&tmux, &["Down", "Down"]);
    let screen = tmux.wait_for("Files at layer 1", WAIT);
    assert!(screen.contains("hello.txt"), "{screen}");
    assert!(
        screen.contains("pkgs.bin"),
        "the removed file is listed: {screen}"
    );
    assert!(line_with(&screen, "layer 1/1").contains("(+"), "{screen}");
    assert!(
        line_with(&screen, "Command  RUN").contains("install-app"),
        "{screen}"
    );

    // Ctrl+A: aggregated since the base; Ctrl+L: back to this layer's changes.
    keys(&tmux, &["C-a"]);
    let screen = tmux.wait_for("· aggregated", WAIT);
    assert!(screen.contains("os-release"), "{screen}");
    keys(&tmux, &["C-l"]);
    tmux.wait_for("· its changes", WAIT);

    // Into the tree, filter on "hello", open the file.
    keys(&tmux, &["Tab", "C-f"]);
    tmux.type_text("hello");
    keys(&tmux, &["Enter"]);
    let screen = tmux.wait_for("filter: hello", WAIT);
    assert!(!screen.contains("os-release"), "filtered out: {screen}");
    assert!(screen.contains("srv/"), "ancestors kept: {screen}");
    keys(&tmux, &["Down", "Enter"]);
    let screen = tmux.wait_for("Hello from layerscope", WAIT);
    assert!(
        line_with(&screen, "/srv/hello.txt").contains("layer 1"),
        "{screen}"
    );
    assert!(
        line_with(&screen, "Hello from layerscope").contains('1'),
        "numbered: {screen}"
    );
    assert!(screen.contains("second line"), "{screen}");
    keys(&tmux, &["Escape"]);
    tmux.wait_until(WAIT, "the viewer closed", |s| {
        !s.contains("Hello from layerscope")
    });

    // Help lists the keys.
    keys(&tmux, &["?"]);
    let screen = tmux.wait_for("quit (cancels downloads)", WAIT);
    assert!(screen.contains("ctrl+f"), "{screen}");
    keys(&tmux, &["Escape"]);
    tmux.wait_until(WAIT, "help closed", |s| {
        !s.contains("quit (cancels downloads)")
    });

    // Resize to 80x24: everything reflows into the smaller window.
    tmux.resize(80, 24);
    let screen = tmux.wait_until(WAIT, "an 80-column layout", |s| {
        s.contains("Layers (2)") && s.lines().count() <= 24 && s.contains("? help")
    });
    assert!(
        screen.lines().all(|l| l.chars().count() <= 80),
        "lines fit 80 columns:\n{screen}"
    );

    // Quit: exit code 0, the terminal back to normal.
    keys(&tmux, &["q"]);
    let ended = tmux.wait_ended(WAIT);
    assert_eq!(ended.code, 0, "{}", ended.screen);
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor visible again");
    assert_eq!(tmux.format("#{mouse_any_flag}"), "0", "mouse reporting off");
    let modes: Vec<&str> = ended.stty.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "cooked mode: {}",
        ended.stty
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_loading_and_a_missing_tag_leave_the_terminal_usable() {
    if !Tmux::available() {
        eprintln!("NOTE: tmux is not installed; the end-to-end explorer test is skipped");
        return;
    }
    let registry = Registry::start().await;
    let home = TempDir::new("explorer-missing");
    let reference = format!("{}/nothing/here:1", registry.host);
    let tmux = Tmux::start(
        100,
        30,
        std::path::Path::new(env!("CARGO_BIN_EXE_layerscope")),
        &[&reference],
        &[(
            "LAYERSCOPE_CONFIG_DIR",
            &home.path().join("config").display().to_string(),
        )],
    );
    let ended = tmux.wait_ended(WAIT);
    assert_eq!(ended.code, 2, "{}", ended.screen);
    assert!(
        ended.screen.contains("nothing/here"),
        "the error names the image: {}",
        ended.screen
    );
    let modes: Vec<&str> = ended.stty.split_whitespace().collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "cooked mode: {}",
        ended.stty
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0");
}
