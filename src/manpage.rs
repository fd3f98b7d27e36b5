//! Manual pages, generated from the command-line definition in [`crate::cli`]: `layerscope.1`
//! for the command and `layerscope-NAME.1` for each subcommand (`layerscope-cache-clear.1` for
//! a nested one), so the pages never disagree with `--help`. `layerscope man` prints them;
//! `layerscope man --dir DIR` writes them all, which is how packages install them.
//!
//! clap_mangen renders what the definition holds (synopsis, options, subcommands); the command's
//! own page adds what a definition cannot say: the modes, exit status, environment, files and
//! examples.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

use crate::cli::Cli;
use crate::error::{exit_code, Error};
use crate::output_file;
use crate::toolbox::write_stdout;

/// Arguments of `layerscope man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print, e.g. `manifest`, or `cache clear`; without one, the
    /// page of layerscope itself.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Vec<String>,

    /// Write every page (layerscope.1 and one per subcommand) into DIR instead, replacing pages
    /// of the same name, and list the files written.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    pub dir: Option<PathBuf>,
}

/// One manual page.
#[derive(Debug, Clone)]
pub struct Page {
    /// The subcommand path it documents: empty for layerscope itself, `["cache", "clear"]`.
    pub path: Vec<String>,
    /// Its file name, e.g. `layerscope-manifest.1`.
    pub file_name: String,
    /// The page in roff (the `man` macros).
    pub roff: Vec<u8>,
}

/// Every page: the command's own first, then each subcommand's, depth first, in the order of
/// the definition. `help` (clap's own subcommand) has none.
pub fn pages() -> Vec<Page> {
    let mut command = Cli::command().disable_help_subcommand(true);
    // Building fills in the display names (`layerscope-manifest`) the pages are named after.
    command.build();
    let mut out = Vec::new();
    collect(&command, &mut Vec::new(), &mut out);
    out
}

fn collect(command: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Page>) {
    out.push(render(command, path));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        path.push(sub.get_name().to_string());
        collect(sub, path, out);
        path.pop();
    }
}

/// Run `layerscope man`.
pub fn run(args: &ManArgs) -> Result<i32, Error> {
    let pages = pages();
    if let Some(dir) = &args.dir {
        let written = write_all(&pages, dir)?;
        let mut list = String::new();
        for path in written {
            list.push_str(&format!("{}\n", path.display()));
        }
        write_stdout(list.as_bytes())?;
        return Ok(exit_code::OK);
    }
    let Some(page) = pages.iter().find(|p| p.path == args.subcommand) else {
        let known: Vec<String> = pages
            .iter()
            .filter(|p| !p.path.is_empty())
            .map(|p| p.path.join(" "))
            .collect();
        return Err(Error::Other(format!(
            "no manual page for {:?}; pages exist for layerscope and: {}",
            args.subcommand.join(" "),
            known.join(", ")
        )));
    };
    write_stdout(&page.roff)?;
    Ok(exit_code::OK)
}

/// Write `pages` into `dir` (created when missing); returns the files written.
fn write_all(pages: &[Page], dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = Vec::with_capacity(pages.len());
    for page in pages {
        let path = dir.join(&page.file_name);
        output_file::write(&path, &page.roff)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `command` (already built), reached by `path` from the top.
fn render(command: &clap::Command, path: &[String]) -> Page {
    let man = Man::new(command.clone())
        // No date: the page is the same whenever it is generated. `\&` (nothing) keeps the
        // argument's place, which an empty string would not.
        .date("\\&")
        .source(format!("layerscope {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let file_name = man.get_filename();
    let mut roff = Vec::new();
    // Writing into a Vec cannot fail; the sections are rendered one by one so the command's own
    // page can put its prose between them.
    let mut section = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let _ = render(&mut roff);
    };
    section(&|w| man.render_title(w));
    section(&|w| man.render_name_section(w));
    section(&|w| man.render_synopsis_section(w));
    if path.is_empty() {
        section(&|w| top_description().to_writer(w));
    } else {
        section(&|w| man.render_description_section(w));
    }
    if command
        .get_arguments()
        .any(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
    {
        section(&|w| man.render_options_section(w));
    }
    if command.has_subcommands() {
        section(&|w| man.render_subcommands_section(w));
    }
    if path.is_empty() {
        section(&|w| top_sections().to_writer(w));
    } else {
        section(&|w| see_also(command).to_writer(w));
    }
    // Only the command itself has a version; clap_mangen expects one when asked for it.
    if command.get_version().is_some() {
        section(&|w| man.render_version_section(w));
    }
    Page {
        path: path.to_vec(),
        file_name,
        roff: ascii(&once_preamble(&roff)),
    }
}

/// The page with the apostrophe preamble that every rendered section starts with kept only at
/// its top.
fn once_preamble(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut lines = text.split_inclusive('\n');
    let mut out = String::with_capacity(text.len());
    let mut preamble = Vec::new();
    for line in lines.by_ref().take(2) {
        out.push_str(line);
        preamble.push(line);
    }
    for line in lines {
        if !preamble.contains(&line) {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// The page with every character outside ASCII (the help texts' `…`) written as a groff
/// escape `\[uXXXX]`, so any troff renders it without a preprocessor and without warnings.
fn ascii(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out.into_bytes()
}

/// A paragraph of plain text followed by a paragraph break.
fn paragraph(roff: &mut Roff, text: &str) {
    roff.text([roman(text)]);
    roff.control("PP", []);
}

/// A tagged paragraph: `tag` in bold, then `text` indented below it.
fn item(roff: &mut Roff, tag: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text([roman(text)]);
}

/// DESCRIPTION of layerscope(1): what it is and its modes.
fn top_description() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    paragraph(
        &mut roff,
        "layerscope opens a container image straight from its registry (or from a Docker or \
         Podman engine, a docker-archive tar or an OCI layout) and shows what every layer did \
         to the filesystem: the files each layer added, modified and removed, the bytes wasted \
         by later layers, and the build history that made them. Every blob's digest and every \
         layer's diff_id is verified.",
    );
    roff.text([roman("What it does with "), italic("IMAGE"), roman(":")]);
    item(
        &mut roff,
        "in a terminal",
        "the interactive explorer: layers, history, figures and the file tree of any layer; \
         press ? for its keys.",
    );
    item(
        &mut roff,
        "without a terminal",
        "a text summary: the layers with their build steps, the figures, the largest \
         inefficient files, and the findings: which build step wastes bytes and how to fix it.",
    );
    item(
        &mut roff,
        "--ci, or CI=true in the environment",
        "checks the rules lowestEfficiency, highestWastedBytes, highestUserWastedPercent, \
         highestReclaimableBytes, and with --baseline highestSizeIncrease and \
         highestWastedIncrease (from .dive-ci or the options), prints a report, and with \
         --ci-report writes JUnit, GitHub, GitLab or Markdown reports.",
    );
    item(
        &mut roff,
        "--json FILE",
        "writes the analysis as JSON (schemaVersion 1) to FILE, or to standard output with -.",
    );
    roff.control("PP", []);
    roff.text([roman(
        "The subcommands look at a registry directly, without pulling the image; compare two \
         images; take files out of an image (cat, export); and install the tool's completions \
         and manual pages.",
    )]);
    roff
}

/// EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES and SEE ALSO of layerscope(1).
fn top_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    item(&mut roff, "0", "success; in CI mode, every rule passed.");
    item(
        &mut roff,
        "1",
        "in CI mode, a rule failed; for diff, the images differ.",
    );
    item(
        &mut roff,
        "2",
        "the image could not be analysed or the command failed; one line on standard error \
         says why.",
    );

    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in [
        ("CI", "true, 1 or yes turns on CI mode, as --ci does."),
        (
            "LAYERSCOPE_CACHE_DIR",
            "where blobs and layer indexes are cached (default $XDG_CACHE_HOME/layerscope, \
             else ~/.cache/layerscope).",
        ),
        (
            "LAYERSCOPE_CACHE_SIZE",
            "size limit of the cache, as --cache-size (default 5GiB).",
        ),
        (
            "LAYERSCOPE_CONFIG_DIR",
            "where keys.yaml is read from (default $XDG_CONFIG_HOME/layerscope, else \
             ~/.config/layerscope).",
        ),
        (
            "DOCKER_CONFIG",
            "the directory of Docker's config.json, which holds registry credentials \
             (default ~/.docker).",
        ),
        (
            "REGISTRY_AUTH_FILE",
            "a containers auth.json to read registry credentials from.",
        ),
        (
            "DOCKER_HOST",
            "the Docker engine's socket (unix:// only) for docker:// images.",
        ),
        (
            "XDG_RUNTIME_DIR",
            "where Podman's socket and auth.json are looked for.",
        ),
        (
            "LAYERSCOPE_TIMEOUT, LAYERSCOPE_LOW_SPEED_LIMIT, LAYERSCOPE_LOW_SPEED_TIME",
            "how long a registry may make no progress, and the transfer speed below which it \
             counts as stalled, as --timeout, --low-speed-limit and --low-speed-time.",
        ),
        (
            "LAYERSCOPE_CERTS_D",
            "certs.d directories to read instead of the defaults, separated by colons.",
        ),
        (
            "LAYERSCOPE_DOCKER_DAEMON_JSON",
            "the daemon.json whose registry-mirrors are read (default /etc/docker/daemon.json).",
        ),
        (
            "HTTPS_PROXY, HTTP_PROXY, NO_PROXY",
            "the proxy for registry requests, and the hosts reached without it.",
        ),
        (
            "GITHUB_ACTIONS, GITHUB_STEP_SUMMARY",
            "in GitHub Actions, the github report is on and its summary is appended there.",
        ),
        (
            "NO_COLOR",
            "when set and not empty, the explorer uses no colour.",
        ),
    ] {
        item(&mut roff, name, text);
    }

    roff.control("SH", ["FILES"]);
    for (name, text) in [
        (
            ".dive-ci",
            "CI rules, read from the working directory (or --ci-config FILE).",
        ),
        (
            "~/.config/layerscope/keys.yaml",
            "the explorer's key bindings (see LAYERSCOPE_CONFIG_DIR).",
        ),
        (
            "~/.cache/layerscope/",
            "the cache of blobs and layer indexes (see LAYERSCOPE_CACHE_DIR).",
        ),
        (
            "~/.docker/config.json",
            "registry credentials, credential helpers and credsStore.",
        ),
        (
            "/etc/docker/certs.d/HOST[:PORT]/",
            "certificates trusted for that registry (*.crt), and the client certificate \
             presented to it (client.cert, client.key).",
        ),
        (
            "/etc/docker/daemon.json",
            "registry-mirrors, asked first for Docker Hub images.",
        ),
    ] {
        item(&mut roff, name, text);
    }

    roff.control("SH", ["EXAMPLES"]);
    for (command, text) in [
        (
            "layerscope localhost:5000/hello-world-java",
            "Explore an image of a local registry.",
        ),
        (
            "layerscope --ci registry.example.com/team/app:1.4",
            "Fail a pipeline when the image wastes space.",
        ),
        (
            "layerscope --json report.json docker://app:dev",
            "Write the analysis of an image of the local Docker engine as JSON.",
        ),
        (
            "layerscope cat localhost:5000/hello-world-java /etc/os-release",
            "Print one file of an image, verified against its content hash.",
        ),
        (
            "layerscope export --layer 2 --changes app:1.4 -o layer2.tar",
            "Write what layer 2 changed as a tar, whiteouts included.",
        ),
        (
            "layerscope history alpine:3.20",
            "The build steps of an image, as docker history shows them.",
        ),
        (
            "layerscope completions bash > ~/.local/share/bash-completion/completions/layerscope",
            "Install bash completions for the current user.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(command)]);
        roff.text([roman(text)]);
    }
    roff
}

/// SEE ALSO of a subcommand's page: the page of the command above it.
fn see_also(command: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    let name = command.get_display_name().unwrap_or(command.get_name());
    let parent = name.rsplit_once('-').map_or("layerscope", |(p, _)| p);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold(parent), roman("(1)")]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_subcommand_named_after_it() {
        let pages = pages();
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names[0], "layerscope.1");
        for sub in Cli::command().get_subcommands() {
            let file = format!("layerscope-{}.1", sub.get_name());
            assert!(names.contains(&file.as_str()), "{file} missing: {names:?}");
        }
        assert!(names.contains(&"layerscope-cache-clear.1"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        for page in &pages {
            assert!(page.roff.is_ascii(), "{} is not ASCII", page.file_name);
        }
    }

    #[test]
    fn the_preamble_stands_once_at_the_top() {
        let page = &pages()[0];
        let text = String::from_utf8_lossy(&page.roff);
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{text}");
        assert_eq!(text.matches(".ds Aq").count(), 2, "{text}");
        assert!(
            text.contains("\n.TH layerscope 1 \\& \"layerscope "),
            "{text}"
        );
    }

    #[test]
    fn characters_outside_ascii_become_groff_escapes() {
        assert_eq!(
            ascii("a … b é".as_bytes()),
            b"a \\[u2026] b \\[u00E9]".to_vec()
        );
    }

    #[test]
    fn subcommand_pages_point_to_their_parent() {
        let pages = pages();
        let clear = pages
            .iter()
            .find(|p| p.path == ["cache", "clear"])
            .expect("cache clear page");
        let text = String::from_utf8_lossy(&clear.roff);
        assert!(text.contains(".SH \"SEE ALSO\""), "{text}");
        assert!(text.contains("layerscope\\-cache"), "{text}");
    }
}
