//! Installing layerscope: the shell completions and manual pages the binary generates from its
//! own command definition, and the Debian package that scripts/package builds. Real tools
//! throughout: bash loads the completion script and completes subcommand names, groff renders
//! every manual page with all warnings on, `man -l` formats the main page, and `dpkg-deb`
//! unpacks the package into a temporary root. A tool that is missing fails the test with the
//! command that installs it (scripts/test installs them all).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cli::{self, stderr, stdout};
use common::registry::TempDir;

const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "elvish", "powershell"];

/// The subcommands the completions and pages must know about.
const SUBCOMMANDS: [&str; 13] = [
    "manifest",
    "config",
    "history",
    "blob",
    "tag",
    "tags",
    "catalog",
    "diff",
    "cat",
    "export",
    "cache",
    "completions",
    "man",
];

/// `program`, or a failure that says how to install it (no test here passes without its tool).
fn tool(program: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: apt-get install {package} (scripts/test installs it)"
    );
    Command::new(program)
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Formatted manual text without the overstrikes (`N\bNA\bA…` for bold) that groff and man
/// write when no terminal reads them.
fn plain(formatted: &[u8]) -> String {
    let mut out = String::new();
    for c in text(formatted).chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Completions

#[tokio::test]
async fn every_shell_gets_a_completion_script_naming_the_subcommands() {
    let home = TempDir::new("completions");
    for shell in SHELLS {
        let out = cli::run(home.path(), &["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        // Options without their dashes: fish writes `-l no-cache`.
        for word in SUBCOMMANDS.iter().chain(&["no-cache", "lowestEfficiency"]) {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = cli::run(home.path(), &["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Load `script` in a real bash (no rc files), then, for each command line in `lines` (the
/// word being completed last, possibly empty), run the completion function that `complete -p`
/// names with COMP_WORDS and COMP_CWORD set as bash sets them. Returns `complete -p`'s line
/// and one line of candidates per command line.
fn bash_complete(script: &Path, lines: &[&[&str]]) -> (String, Vec<Vec<String>>) {
    let mut program = String::from(
        r#"set -u
source "$1"
spec=$(complete -p layerscope)
echo "$spec"
function=$(sed -E 's/.*-F ([^ ]+).*/\1/' <<<"$spec")
complete_line() {
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMP_LINE="$*"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  local previous=""
  [ "$COMP_CWORD" -gt 0 ] && previous=${COMP_WORDS[COMP_CWORD - 1]}
  "$function" layerscope "${COMP_WORDS[COMP_CWORD]}" "$previous"
  echo "${COMPREPLY[*]}"
}
"#,
    );
    for line in lines {
        program.push_str("complete_line");
        for word in *line {
            program.push_str(&format!(" '{word}'"));
        }
        program.push('\n');
    }
    let out = run(tool("bash", "bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script));
    assert!(out.status.success(), "bash: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "bash: {}", text(&out.stderr));
    let output = text(&out.stdout);
    let mut rows = output.lines();
    let spec = rows.next().unwrap_or_default().to_string();
    let candidates = rows
        .map(|row| row.split_whitespace().map(str::to_string).collect())
        .collect::<Vec<Vec<String>>>();
    assert_eq!(candidates.len(), lines.len(), "{output}");
    (spec, candidates)
}

#[tokio::test]
async fn bash_loads_the_script_and_completes_subcommand_names() {
    let home = TempDir::new("bash-completion");
    let out = cli::run(home.path(), &["completions", "bash"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = home.path().join("layerscope.bash");
    std::fs::write(&script, &out.stdout).unwrap();

    let (spec, candidates) = bash_complete(
        &script,
        &[
            &["layerscope", "mani"],
            &["layerscope", "comp"],
            &["layerscope", "cache", ""],
            &["layerscope", "completions", ""],
            &["layerscope", "--source", "oci"],
        ],
    );
    assert!(
        spec.starts_with("complete ") && spec.contains(" -F ") && spec.ends_with(" layerscope"),
        "{spec}"
    );
    assert_eq!(candidates[0], ["manifest"]);
    assert_eq!(candidates[1], ["completions"]);
    assert!(
        candidates[2].contains(&"clear".to_string()),
        "{candidates:?}"
    );
    // With nothing typed yet the options are candidates too.
    let mut shells: Vec<&String> = candidates[3]
        .iter()
        .filter(|c| !c.starts_with('-'))
        .collect();
    shells.sort();
    assert_eq!(shells, ["bash", "elvish", "fish", "powershell", "zsh"]);
    assert_eq!(candidates[4], ["oci", "oci-archive"]);
}

// ---------------------------------------------------------------------------------------------
// Manual pages

/// Every page `layerscope man --dir` writes, as listed on its standard output.
async fn write_pages(home: &Path) -> Vec<PathBuf> {
    let dir = home.join("man");
    let out = cli::run(
        home,
        &["man", "--dir", dir.to_str().expect("UTF-8 temp path")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Vec<PathBuf> = stdout(&out).lines().map(PathBuf::from).collect();
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the page directory")
        .map(|e| e.expect("read the page directory").path())
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk);
    listed
}

fn page_names(pages: &[PathBuf]) -> BTreeSet<String> {
    pages
        .iter()
        .map(|p| {
            p.file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The page rendered for a terminal by groff with every warning on: (text, warnings).
fn groff(page: &Path) -> (String, String) {
    let out = run(tool("groff", "groff-base")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(page));
    assert!(
        out.status.success(),
        "groff {}: {}",
        page.display(),
        text(&out.stderr)
    );
    (plain(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn there_is_a_page_for_the_command_and_each_subcommand() {
    let home = TempDir::new("man-pages");
    let names = page_names(&write_pages(home.path()).await);
    let mut expected: BTreeSet<String> = SUBCOMMANDS
        .iter()
        .map(|s| format!("layerscope-{s}.1"))
        .collect();
    expected.insert("layerscope.1".to_string());
    expected.insert("layerscope-cache-clear.1".to_string());
    assert_eq!(names, expected);
}

#[tokio::test]
async fn every_page_renders_without_warnings() {
    let home = TempDir::new("man-render");
    for page in write_pages(home.path()).await {
        let (rendered, warnings) = groff(&page);
        assert_eq!(warnings, "", "groff warns on {}", page.display());
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(rendered.contains("NAME"), "{rendered}");
        assert!(rendered.contains("SYNOPSIS"), "{rendered}");
        assert!(rendered.contains(&name), "{name}: {rendered}");
    }
}

#[tokio::test]
async fn man_formats_the_main_page_with_its_sections_and_links() {
    let home = TempDir::new("man-l");
    let page = home.path().join("layerscope.1");
    let out = cli::run(home.path(), &["man"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(&page, &out.stdout).unwrap();
    let out = run(tool("man", "man-db")
        .args(["--warnings=all", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "")
        .env("LANG", "C.UTF-8"));
    assert!(out.status.success(), "man -l: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "man -l warns");
    let plain = plain(&out.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(
            plain.lines().any(|l| l == section),
            "no {section} section:\n{plain}"
        );
    }
    for sub in SUBCOMMANDS {
        assert!(plain.contains(&format!("layerscope-{sub}(1)")), "{plain}");
    }
    assert!(plain.contains("--lowestEfficiency"), "{plain}");
}

#[tokio::test]
async fn man_prints_one_subcommands_page_and_refuses_unknown_ones() {
    let home = TempDir::new("man-one");
    let pages = write_pages(home.path()).await;
    let manifest = pages
        .iter()
        .find(|p| p.ends_with("layerscope-manifest.1"))
        .unwrap();
    let out = cli::run(home.path(), &["man", "manifest"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, std::fs::read(manifest).unwrap());
    let out = cli::run(home.path(), &["man", "cache", "clear"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(".TH layerscope-cache-clear 1"));

    let out = cli::run(home.path(), &["man", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("layerscope: error: no manual page for \"nope\""),
        "{err}"
    );
    assert!(err.contains("manifest"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The Debian package

/// The .deb that scripts/package builds with the quick `package-check` profile (the release
/// build takes minutes longer and packs the same files), into `out`.
fn build_package(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let result = run(Command::new(root.join("scripts/package"))
        .current_dir(root)
        .args([
            "--profile",
            "package-check",
            "--fast",
            "--no-install",
            "--output",
        ])
        .arg(out)
        .env_remove("CI"));
    assert!(
        result.status.success(),
        "scripts/package failed:\n{}\n{}",
        text(&result.stdout),
        text(&result.stderr)
    );
    let deb = PathBuf::from(text(&result.stdout).lines().last().unwrap_or_default());
    assert!(
        deb.is_file() && deb.extension().is_some_and(|e| e == "deb"),
        "scripts/package printed {deb:?}\n{}",
        text(&result.stderr)
    );
    deb
}

/// Every regular file under `root`, relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the unpacked package") {
            let path = entry.expect("read the unpacked package").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("a path under the root");
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open a packaged page"))
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{} is not gzip: {e}", path.display()));
    bytes
}

#[tokio::test]
async fn the_debian_package_installs_the_binary_pages_and_completions_where_debian_looks() {
    let work = TempDir::new("deb");
    let deb = build_package(&work.path().join("out"));

    let field = |name: &str| {
        let out = run(tool("dpkg-deb", "dpkg").args(["-f"]).arg(&deb).arg(name));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "layerscope");
    assert!(
        field("Version").starts_with(env!("CARGO_PKG_VERSION")),
        "{}",
        field("Version")
    );
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));

    let root = work.path().join("root");
    let out = run(tool("dpkg-deb", "dpkg").arg("-x").arg(&deb).arg(&root));
    assert!(out.status.success(), "dpkg-deb -x: {}", text(&out.stderr));

    // The binary runs from where the package put it.
    let binary = root.join("usr/bin/layerscope");
    let out = run(Command::new(&binary).arg("--version"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("layerscope {}", env!("CARGO_PKG_VERSION"))
    );

    // Exactly these files: the binary, the docs, one gzip page per page the binary has, and
    // the three completions in the directories bash-completion, zsh and fish read.
    let home = TempDir::new("deb-pages");
    let pages = write_pages(home.path()).await;
    let mut expected: BTreeSet<String> = [
        "usr/bin/layerscope",
        "usr/share/doc/layerscope/README.md",
        "usr/share/doc/layerscope/copyright",
        "usr/share/bash-completion/completions/layerscope",
        "usr/share/zsh/vendor-completions/_layerscope",
        "usr/share/fish/vendor_completions.d/layerscope.fish",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for name in page_names(&pages) {
        expected.insert(format!("usr/share/man/man1/{name}.gz"));
    }
    assert_eq!(files_under(&root), expected);

    // The pages are the binary's own, compressed, and render without warnings.
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy();
        let packed = root.join(format!("usr/share/man/man1/{name}.gz"));
        let roff = gunzip(&packed);
        assert_eq!(roff, std::fs::read(page).unwrap(), "{name}");
        let unpacked = work.path().join(name.as_ref());
        std::fs::write(&unpacked, &roff).unwrap();
        assert_eq!(groff(&unpacked).1, "", "groff warns on {name}");
    }

    // The completions are the binary's own.
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/layerscope"),
        ("zsh", "usr/share/zsh/vendor-completions/_layerscope"),
        (
            "fish",
            "usr/share/fish/vendor_completions.d/layerscope.fish",
        ),
    ] {
        let out = cli::run(home.path(), &["completions", shell]).await;
        assert_eq!(
            std::fs::read(root.join(path)).unwrap(),
            out.stdout,
            "{shell}"
        );
    }

    // bash-completion finds the packaged script by the command's name, as it does on demand
    // when layerscope<TAB> is first pressed (without it, it would fall back to _minimal), and
    // the script completes subcommands.
    let packaged = root.join("usr/share/bash-completion/completions/layerscope");
    let (spec, candidates) = bash_complete(&packaged, &[&["layerscope", "histo"]]);
    assert_eq!(candidates[0], ["history"]);
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    assert!(
        loader.is_file(),
        "bash-completion is not installed: apt-get install bash-completion (scripts/test installs it)"
    );
    let program = r#"source /usr/share/bash-completion/bash_completion
if declare -F _comp_load >/dev/null; then _comp_load layerscope; else _completion_loader layerscope; fi
complete -p layerscope"#;
    let out = run(tool("bash", "bash")
        .args(["--norc", "--noprofile", "-c", program])
        .env("XDG_DATA_DIRS", root.join("usr/share"))
        .env("BASH_COMPLETION_USER_DIR", work.path().join("none")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), spec);
}
