//! The command line: arguments, the choice of mode (explorer, CI, JSON, text summary) and exit
//! codes. Logic lives in the library modules; this file only wires them together.

// The argument docs below are clap's --help text, where `[:TAG]` means "optional", not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc;

use crate::analysis::analyse;
use crate::cache::{self, Cache};
use crate::ci::{CiOutcome, RuleOverrides, Rules};
use crate::error::{exit_code, Error};
use crate::export::Export;
use crate::image::Platform;
use crate::output_file;
use crate::pipeline::{self, Loaded};
use crate::progress::{self, ProgressLine};
use crate::reference::Reference;
use crate::registry::{RegistryClient, RegistryOptions};
use crate::report;
use crate::source::{
    Choice, DaemonSource, Engine, LocalSource, RegistryOrEngine, RegistrySource, Source,
    SourceKind, SourceSpec,
};
use crate::toolbox::{blob, config, diff, history, listing, manifest, tag, ToolboxError};
use crate::tree::FileTree;

/// Explore what every layer of a container image did to the filesystem, straight from its
/// registry.
///
/// `layerscope IMAGE` explores an image; `layerscope COMMAND …` looks at a registry directly.
#[derive(Debug, Parser)]
#[command(
    name = "layerscope",
    version,
    about,
    long_about = None,
    // `layerscope IMAGE` and `layerscope manifest IMAGE` side by side: a first word that names
    // a subcommand is the subcommand, and the explorer's own options do not mix with one.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A toolbox subcommand; without one, IMAGE is explored.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The image: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, e.g. `localhost:5000/app:1.4`, or a
    /// local one: `docker://NAME`, `docker-archive:PATH`, `oci:DIR[:TAG]` (see --source).
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,

    #[command(flatten)]
    pub analysis: AnalysisArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Options of the analysis modes.
#[derive(Debug, Args)]
pub struct AnalysisArgs {
    /// CI mode: check the rules and exit 0 (pass), 1 (a rule failed) or 2 (error). Also on when
    /// the environment has CI=true.
    #[arg(long)]
    pub ci: bool,

    /// Rule file for CI mode (default: .dive-ci in the working directory, when present).
    #[arg(long, value_name = "FILE")]
    pub ci_config: Option<PathBuf>,

    /// CI rule: fail when efficiency is below this ratio (0-1) or `disabled`.
    #[arg(
        long = "lowestEfficiency",
        alias = "lowest-efficiency",
        value_name = "RATIO"
    )]
    pub lowest_efficiency: Option<String>,

    /// CI rule: fail when wasted bytes exceed this size (20MB, 1GiB, bytes) or `disabled`.
    #[arg(
        long = "highestWastedBytes",
        alias = "highest-wasted-bytes",
        value_name = "SIZE"
    )]
    pub highest_wasted_bytes: Option<String>,

    /// CI rule: fail when wasted bytes exceed this fraction (0-1) of all layers but the first,
    /// or `disabled`.
    #[arg(
        long = "highestUserWastedPercent",
        alias = "highest-user-wasted-percent",
        value_name = "RATIO"
    )]
    pub highest_user_wasted_percent: Option<String>,

    /// Write the analysis as JSON to FILE, or to standard output with `-`.
    #[arg(short = 'j', long, value_name = "FILE|-")]
    pub json: Option<String>,

    /// Platform to choose from a multi-platform image: OS/ARCH[/VARIANT].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// No progress on stderr.
    #[arg(short, long)]
    pub quiet: bool,

    /// Explorer: also load IMAGE_B, mark the layers both share and show the files that differ
    /// (key `c`).
    #[arg(long, value_name = "IMAGE_B")]
    pub compare: Option<String>,

    /// Where IMAGE is: registry (default), docker, podman, docker-archive, oci, oci-archive.
    /// Prefixes say the same: docker://NAME, podman://NAME, docker-archive:PATH[:NAME],
    /// oci:DIR[:TAG], oci-archive:PATH[:TAG].
    #[arg(long, value_enum, value_name = "KIND")]
    pub source: Option<SourceKind>,

    /// Neither read nor write the cache of blobs and layer indexes.
    #[arg(long)]
    pub no_cache: bool,

    /// Size limit of the cache (5GiB, 500MB, bytes); least recently used entries go first.
    #[arg(long, value_name = "SIZE", env = "LAYERSCOPE_CACHE_SIZE")]
    pub cache_size: Option<String>,
}

/// The toolbox: subcommands that talk to a registry directly. Each one's arguments, logic and
/// output live in [`crate::toolbox`]; this enum only names them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the manifest or index as served: digest, media type, size (--raw: the bytes).
    Manifest(manifest::ManifestArgs),
    /// Print the image config as `docker image inspect` shows it (--raw: the blob).
    Config(config::ConfigArgs),
    /// Print the build steps as `docker history` does.
    History(history::HistoryArgs),
    /// Download one blob, verified, to a file (-o) or a pipe.
    Blob(blob::BlobArgs),
    /// Tag an image remotely under NEWTAG in the same repository (no layer is downloaded).
    Tag(tag::TagArgs),
    /// List the tags of a repository, every page.
    Tags(listing::TagsArgs),
    /// List the repositories of a registry, every page.
    Catalog(listing::CatalogArgs),
    /// Compare two images: shared layers, where they diverge, changed files. Exit code 0 when
    /// identical, 1 when different.
    Diff(diff::DiffArgs),
    /// Show the cache of blobs and layer indexes (location, entries, size); `cache clear`
    /// empties it.
    Cache(CacheArgs),
}

/// Arguments of `layerscope cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do; without one, show the cache.
    #[command(subcommand)]
    pub action: Option<CacheAction>,

    /// Size limit to show (and the one eviction uses), as for the explorer.
    #[arg(long, value_name = "SIZE", env = "LAYERSCOPE_CACHE_SIZE")]
    pub cache_size: Option<String>,
}

/// `layerscope cache` actions.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Remove every cached blob and layer index.
    Clear,
}

impl Command {
    /// The registry hosts the subcommand talks to (for `--insecure`).
    fn registries(&self) -> Result<Vec<String>, Error> {
        match self {
            Command::Manifest(args) => args.registries(),
            Command::Config(args) => args.registries(),
            Command::History(args) => args.registries(),
            Command::Blob(args) => args.registries(),
            Command::Tag(args) => args.registries(),
            Command::Tags(args) => args.registries(),
            Command::Catalog(args) => args.registries(),
            // Each image of `diff` opens its own source (registry, archive, engine).
            Command::Diff(_) | Command::Cache(_) => Ok(Vec::new()),
        }
    }

    /// Run the subcommand and return its exit code.
    async fn run(&self, registry: &RegistryArgs) -> Result<i32, Error> {
        let client = || -> Result<RegistryClient, Error> {
            Ok(RegistryClient::new(registry_options_for(
                registry,
                &self.registries()?,
            )?)?)
        };
        match self {
            Command::Manifest(args) => manifest::run(&client()?, args).await,
            Command::Config(args) => config::run(&client()?, args).await,
            Command::History(args) => history::run(&client()?, args).await,
            Command::Blob(args) => blob::run(&client()?, args).await,
            Command::Tag(args) => tag::run(&client()?, args).await,
            Command::Tags(args) => listing::run_tags(&client()?, args).await,
            Command::Catalog(args) => listing::run_catalog(&client()?, args).await,
            Command::Diff(args) => run_diff(args, registry).await,
            Command::Cache(args) => run_cache(args),
        }
    }
}

/// How to reach and log in to registries. Global, so a subcommand accepts them after its name
/// (`layerscope manifest --insecure IMAGE`); before it, they would conflict with the subcommand.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP and unverified TLS for the image's registry (loopback registries fall
    /// back to HTTP without it).
    #[arg(long, global = true)]
    pub insecure: bool,

    /// Also allow plain HTTP and unverified TLS for HOST[:PORT]; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]", global = true)]
    pub insecure_registries: Vec<String>,

    /// Credentials USER:PASSWORD for the image's registry, instead of Docker's config.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        conflicts_with = "username",
        global = true
    )]
    pub creds: Option<String>,

    /// User name for the image's registry; the password is read from standard input.
    #[arg(long, requires = "password_stdin", global = true)]
    pub username: Option<String>,

    /// Read the password for --username from standard input.
    #[arg(long, requires = "username", global = true)]
    pub password_stdin: bool,
}

/// What the headless run should produce.
struct Outputs {
    ci: Option<Rules>,
    json: Option<String>,
}

/// Run the command line and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::io("starting the async runtime", e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> i32 {
    eprintln!("layerscope: error: {e}");
    exit_code::ERROR
}

fn ci_from_env() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    if let Some(command) = &cli.command {
        return run_command(command, &cli.registry).await;
    }
    let Some(image) = cli.image.as_deref() else {
        return Err(Error::Other(
            "no image given; usage: layerscope [OPTIONS] IMAGE, or layerscope COMMAND (see --help)"
                .to_string(),
        ));
    };
    let source = open_source(image, &SourceOptions::from(&cli.analysis), &cli.registry)?;

    let ci_mode = cli.analysis.ci || ci_from_env();
    let outputs = Outputs {
        ci: if ci_mode {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::io("reading the working directory", e))?;
            Some(Rules::load(
                cli.analysis.ci_config.as_deref(),
                &cwd,
                &rule_overrides(&cli.analysis),
            )?)
        } else {
            None
        },
        json: cli.analysis.json.clone(),
    };

    if interactive() && !ci_mode && outputs.json.is_none() {
        let compare = match cli.analysis.compare.as_deref() {
            Some(other) => Some(compare_target(other, &cli)?),
            None => None,
        };
        let image = crate::tui::Target {
            reference: image.to_string(),
            source,
        };
        return crate::tui::run(image, compare).await;
    }
    if cli.analysis.compare.is_some() {
        return Err(Error::Other(
            "--compare needs the explorer (a terminal, no --ci or --json); use `layerscope diff A B`"
                .to_string(),
        ));
    }

    let loaded = load_with_progress(image, source, cli.analysis.quiet).await?;
    let tree = loaded.tree.read().unwrap_or_else(|p| p.into_inner());
    let figures = analyse(&tree);
    let rows = report::layer_rows(&loaded.info, &tree);
    let outcome = outputs.ci.as_ref().map(|rules| rules.evaluate(&figures));

    if let Some(target) = &outputs.json {
        let export = Export::new(&loaded.info, &rows, &figures, outcome.as_ref());
        write_json(target, &export.to_json())?;
    }
    let json_on_stdout = outputs.json.as_deref() == Some("-");
    if let Some(outcome) = &outcome {
        let text = report::render_ci(&loaded.info, &figures, outcome);
        // Keep standard output pure JSON when the export goes there.
        if json_on_stdout {
            eprint!("{text}");
        } else {
            print_stdout(&text)?;
        }
        return Ok(ci_exit_code(outcome));
    }
    if outputs.json.is_none() {
        print_stdout(&report::render_summary(&loaded.info, &rows, &figures))?;
    }
    Ok(exit_code::OK)
}

/// The second image of `--compare`, from any source, with the same options. A password read
/// from standard input for the first image is not read again: the second image uses `--creds`
/// or the stored credentials.
fn compare_target(image: &str, cli: &Cli) -> Result<crate::tui::Target, Error> {
    let registry = RegistryArgs {
        insecure: cli.registry.insecure,
        insecure_registries: cli.registry.insecure_registries.clone(),
        creds: cli.registry.creds.clone(),
        username: None,
        password_stdin: false,
    };
    Ok(crate::tui::Target {
        reference: image.to_string(),
        source: open_source(image, &SourceOptions::from(&cli.analysis), &registry)?,
    })
}

fn ci_exit_code(outcome: &CiOutcome) -> i32 {
    if outcome.pass {
        exit_code::OK
    } else {
        exit_code::FAILED_CHECK
    }
}

fn rule_overrides(args: &AnalysisArgs) -> RuleOverrides {
    RuleOverrides {
        lowest_efficiency: args.lowest_efficiency.clone(),
        highest_wasted_bytes: args.highest_wasted_bytes.clone(),
        highest_user_wasted_percent: args.highest_user_wasted_percent.clone(),
    }
}

/// What [`open_source`] needs besides the name: the explorer's and `diff`'s options alike.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// `--platform`.
    pub platform: Option<Platform>,
    /// `--source`.
    pub kind: Option<SourceKind>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--cache-size`.
    pub cache_size: Option<String>,
}

impl From<&AnalysisArgs> for SourceOptions {
    fn from(args: &AnalysisArgs) -> Self {
        SourceOptions {
            platform: args.platform.clone(),
            kind: args.source,
            no_cache: args.no_cache,
            cache_size: args.cache_size.clone(),
        }
    }
}

/// The source IMAGE names (see [`SourceSpec`]), with the cache in front unless `--no-cache`.
/// A bare name is read from its registry; only when the registry says the repository or tag
/// does not exist, and the local Docker engine has the image, is the engine used instead
/// (decided when the image resolves; [`Source::notice`] then says so).
pub fn open_source(
    image: &str,
    options: &SourceOptions,
    registry: &RegistryArgs,
) -> Result<Arc<Source>, Error> {
    let cache = open_cache(options.no_cache, options.cache_size.as_deref())?;
    let cached = |source: Source| match &cache {
        Some(cache) => source.with_cache(cache.clone()),
        None => source,
    };
    let platform = options.platform.clone();
    let registry_source = |name: &str| -> Result<Source, Error> {
        let reference: Reference = name.parse()?;
        let client = RegistryClient::new(registry_options(registry, &reference)?)?;
        Ok(Source::Registry(RegistrySource::new(
            client,
            reference,
            platform.clone(),
        )))
    };
    let source = match SourceSpec::parse(image, options.kind)? {
        SourceSpec::Registry(name) => cached(registry_source(&name)?),
        SourceSpec::Engine(engine, name) => {
            cached(Source::Daemon(DaemonSource::new(engine, &name, platform)?))
        }
        SourceSpec::Local(kind, path, name) => cached(Source::Local(LocalSource::new(
            kind,
            path,
            Choice { name, platform },
        ))),
        SourceSpec::Auto(name) => Source::RegistryOrEngine(RegistryOrEngine::new(
            cached(registry_source(&name)?),
            DaemonSource::new(Engine::Docker, &name, platform).ok(),
            cache.clone(),
        )),
    };
    Ok(Arc::new(source))
}

/// The cache, unless turned off; a cache directory that cannot be used is a warning, not an
/// error (the analysis only gets slower).
fn open_cache(no_cache: bool, size: Option<&str>) -> Result<Option<Arc<Cache>>, Error> {
    if no_cache {
        return Ok(None);
    }
    let limit = cache_limit(size)?;
    let Some(dir) = cache::default_dir() else {
        return Ok(None);
    };
    match Cache::open(&dir, limit) {
        Ok(cache) => Ok(Some(Arc::new(cache))),
        Err(e) => {
            eprintln!(
                "layerscope: warning: cannot use the cache at {} ({e}); continuing without it",
                dir.display()
            );
            Ok(None)
        }
    }
}

fn cache_limit(size: Option<&str>) -> Result<u64, Error> {
    match size {
        None => Ok(cache::DEFAULT_LIMIT),
        Some(text) => text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| {
                Error::Other(format!(
                    "invalid cache size {text:?}: expected a size such as 5GiB, 500MB or bytes"
                ))
            }),
    }
}

/// `layerscope cache` and `layerscope cache clear`.
fn run_cache(args: &CacheArgs) -> Result<i32, Error> {
    let Some(dir) = cache::default_dir() else {
        return Err(Error::Other(
            "no cache directory: set LAYERSCOPE_CACHE_DIR, XDG_CACHE_HOME or HOME".to_string(),
        ));
    };
    let cache = Cache::at(&dir, cache_limit(args.cache_size.as_deref())?);
    let size = |bytes: u64| bytesize::ByteSize(bytes).display().iec().to_string();
    let text = match args.action {
        None => {
            let usage = cache.usage();
            format!(
                "location: {}\nblobs: {} ({})\nlayer indexes: {} ({})\nmerged models: {} ({})\ntotal: {} of {} allowed\n",
                dir.display(),
                usage.blobs,
                size(usage.blob_bytes),
                usage.indexes,
                size(usage.index_bytes),
                usage.models,
                size(usage.model_bytes),
                size(usage.total_bytes()),
                size(cache.limit()),
            )
        }
        Some(CacheAction::Clear) => {
            let removed = cache
                .clear()
                .map_err(|e| Error::io(format!("clearing the cache at {}", dir.display()), e))?;
            format!(
                "cleared {}: {} blobs and {} layer indexes, {}\n",
                dir.display(),
                removed.blobs,
                removed.indexes,
                size(removed.total_bytes())
            )
        }
    };
    print_stdout(&text)?;
    Ok(exit_code::OK)
}

/// A toolbox subcommand: a client for the registries it names, then the subcommand itself.
async fn run_command(command: &Command, registry: &RegistryArgs) -> Result<i32, Error> {
    command.run(registry).await
}

/// `layerscope diff`: both images from any source (with the cache), then the comparison.
async fn run_diff(args: &diff::DiffArgs, registry: &RegistryArgs) -> Result<i32, Error> {
    let options = SourceOptions {
        platform: args.platform.clone(),
        kind: None,
        no_cache: args.no_cache,
        cache_size: None,
    };
    let side = |side: char, image: &str, e: Error| -> Error {
        ToolboxError::Load {
            side,
            reference: image.to_string(),
            message: e.to_string(),
        }
        .into()
    };
    let a =
        open_source(&args.image_a, &options, registry).map_err(|e| side('A', &args.image_a, e))?;
    let b =
        open_source(&args.image_b, &options, registry).map_err(|e| side('B', &args.image_b, e))?;
    diff::run(a, b, args).await
}

fn registry_options(args: &RegistryArgs, reference: &Reference) -> Result<RegistryOptions, Error> {
    registry_options_for(args, std::slice::from_ref(&reference.registry))
}

/// Options for talking to `registries` (hosts `--insecure` applies to).
fn registry_options_for(
    args: &RegistryArgs,
    registries: &[String],
) -> Result<RegistryOptions, Error> {
    let mut options = RegistryOptions {
        insecure_hosts: args.insecure_registries.clone(),
        ..RegistryOptions::default()
    };
    if args.insecure {
        options.insecure_hosts.extend(registries.iter().cloned());
    }
    if let Some(creds) = &args.creds {
        let Some((user, pass)) = creds.split_once(':') else {
            return Err(Error::Other(
                "--creds needs USER:PASSWORD (or use --username with --password-stdin)".into(),
            ));
        };
        options.credentials = Some((user.to_string(), pass.to_string()));
    } else if let Some(user) = &args.username {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .map_err(|e| Error::io("reading the password from standard input", e))?;
        let password = password.trim_end_matches(['\r', '\n']).to_string();
        options.credentials = Some((user.clone(), password));
    }
    Ok(options)
}

/// Run the pipeline to the end, with a progress line on stderr when wanted.
async fn load_with_progress(
    image: &str,
    source: Arc<Source>,
    quiet: bool,
) -> Result<Loaded, Error> {
    let (events, mut ignored) = mpsc::unbounded_channel();
    // Headless modes read counters, not events; drain them so they do not pile up.
    tokio::spawn(async move { while ignored.recv().await.is_some() {} });
    let tree = Arc::new(RwLock::new(FileTree::new()));
    let show = progress::wanted(quiet);
    let mut line: Option<ProgressLine> = None;
    let told = source.clone();
    let result = pipeline::load(source, tree, events, |p| {
        if let Some(notice) = told.notice() {
            eprintln!("layerscope: {image}: {notice}");
        }
        if show {
            line = Some(ProgressLine::start(p));
        }
    })
    .await;
    if let Some(line) = line {
        line.finish().await;
    }
    result
}

fn write_json(target: &str, json: &str) -> Result<(), Error> {
    if target == "-" {
        return print_stdout(json);
    }
    output_file::write(Path::new(target), json.as_bytes())
        .map_err(|e| Error::io(format!("writing {target}"), e))
}

fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not a failure of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to standard output", e)),
    }
}

/// Whether the explorer can run: both ends are a terminal.
pub fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}
