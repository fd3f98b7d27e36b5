//! The command line: arguments, the choice of mode (explorer, CI, JSON, text summary) and exit
//! codes. Logic lives in the library modules; this file only wires them together.

// The argument docs below are clap's --help text, where `[:TAG]` means "optional", not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc;

use crate::baseline::{Baseline, BaselineComparison, BaselineSpec};
use crate::cache::{self, Cache};
use crate::ci::{CiConfig, CiOutcome, Measures, RuleOverrides};
use crate::ci_report::{self, CiRun, Delivery, ReportRequest};
use crate::error::{exit_code, Error};
use crate::export::Export;
use crate::ignore::{self, IgnorePaths};
use crate::image::Platform;
use crate::output_file;
use crate::pipeline::{self, Loaded};
use crate::progress::{self, ProgressLine};
use crate::reference::Reference;
use crate::registry::stall::StallLimits;
use crate::registry::{mirror, Mirror, RegistryClient, RegistryOptions};
use crate::report;
use crate::source::{
    Choice, DaemonSource, Engine, LocalSource, RegistryOrEngine, RegistrySource, Source,
    SourceKind, SourceSpec,
};
use crate::toolbox::{blob, config, diff, history, listing, manifest, tag, ToolboxError};
use crate::tree::FileTree;
use crate::unpack;

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

    /// CI rule: fail when the reclaimable bytes of the findings exceed this size (20MB, 1GiB,
    /// bytes) or `disabled` (the default).
    #[arg(
        long = "highestReclaimableBytes",
        alias = "highest-reclaimable-bytes",
        value_name = "SIZE"
    )]
    pub highest_reclaimable_bytes: Option<String>,

    /// CI rule: fail when sizeBytes grew more than this since --baseline: a size (20MB) or a
    /// percent (5%), or `disabled` (the default).
    #[arg(
        long = "highestSizeIncrease",
        alias = "highest-size-increase",
        value_name = "SIZE|PERCENT"
    )]
    pub highest_size_increase: Option<String>,

    /// CI rule: fail when the wasted bytes grew more than this since --baseline: a size
    /// (20MB) or a percent (5%), or `disabled` (the default).
    #[arg(
        long = "highestWastedIncrease",
        alias = "highest-wasted-increase",
        value_name = "SIZE|PERCENT"
    )]
    pub highest_wasted_increase: Option<String>,

    /// Write a CI report; may be repeated. FORMAT: junit (default file layerscope-junit.xml),
    /// github (workflow commands, and the job summary appended to $GITHUB_STEP_SUMMARY or
    /// FILE; on by default when GITHUB_ACTIONS=true), gitlab (Code Quality JSON, default
    /// gl-code-quality-report.json), markdown (default layerscope-report.md). FILE `-` is
    /// standard output. Turns CI mode on.
    #[arg(long = "ci-report", value_name = "FORMAT[:FILE]")]
    pub ci_reports: Vec<ReportRequest>,

    /// Compare with an earlier image (IMAGE, from any source) or an earlier --json report
    /// (REPORT.json), for the highestSizeIncrease and highestWastedIncrease rules and the
    /// report's before/after figures. Turns CI mode on.
    #[arg(long, value_name = "IMAGE|REPORT.json")]
    pub baseline: Option<String>,

    /// Leave paths matching GLOB out of what the CI rules measure (anchored at /, `*` within a
    /// name, `**` across names, e.g. /var/cache/** or **/*.log); may be repeated, adds to
    /// ignorePaths of the rule file. Turns CI mode on.
    #[arg(long = "ignore-path", value_name = "GLOB")]
    pub ignore_paths: Vec<String>,

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
    /// Print one file's bytes as of the last layer (or --layer N), verified against the
    /// content hash recorded while indexing.
    Cat(unpack::cat::CatArgs),
    /// Write the filesystem as of the last layer (or --layer N), or with --changes what one
    /// layer changed, as a tar or into a directory.
    Export(unpack::export::ExportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::completions::CompletionsArgs),
    /// Print the manual page of layerscope or of a subcommand (--dir: write them all).
    Man(crate::manpage::ManArgs),
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
            // The image's own registry, through its source (as for the explorer).
            Command::Cat(_) | Command::Export(_) => Ok(Vec::new()),
            Command::Completions(_) | Command::Man(_) => Ok(Vec::new()),
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
            Command::Cat(args) => run_cat(args, registry).await,
            Command::Export(args) => run_export(args, registry).await,
            Command::Completions(args) => crate::completions::run(args),
            Command::Man(args) => crate::manpage::run(args),
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

    /// Read Docker Hub images from this mirror first (falling back to Docker Hub); may be
    /// repeated. Asked before the `registry-mirrors` of Docker's daemon.json.
    #[arg(long = "registry-mirror", value_name = "URL", global = true)]
    pub registry_mirrors: Vec<String>,

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

    /// Give up on a registry request that makes no progress for this long, its retries
    /// included: seconds, or a duration such as 90s or 2m [default: 60s].
    #[arg(
        long,
        value_name = "DURATION",
        env = "LAYERSCOPE_TIMEOUT",
        global = true
    )]
    pub timeout: Option<String>,

    /// A transfer that stays under this many bytes a second for --low-speed-time counts as
    /// stalled (1KiB, 500; 0: only silence does) [default: 1KiB].
    #[arg(
        long,
        value_name = "BYTES",
        env = "LAYERSCOPE_LOW_SPEED_LIMIT",
        global = true
    )]
    pub low_speed_limit: Option<String>,

    /// How long a transfer may stay under --low-speed-limit (and wait for an answer) before
    /// it counts as stalled and is retried or resumed [default: 20s].
    #[arg(
        long,
        value_name = "DURATION",
        env = "LAYERSCOPE_LOW_SPEED_TIME",
        global = true
    )]
    pub low_speed_time: Option<String>,
}

impl RegistryArgs {
    /// The same options for a second image (`--compare`, `--baseline`): a password read from
    /// standard input for the first image cannot be read again, so the second image uses
    /// `--creds` or the stored credentials.
    fn for_another_image(&self) -> RegistryArgs {
        RegistryArgs {
            insecure: self.insecure,
            insecure_registries: self.insecure_registries.clone(),
            registry_mirrors: self.registry_mirrors.clone(),
            creds: self.creds.clone(),
            username: None,
            password_stdin: false,
            timeout: self.timeout.clone(),
            low_speed_limit: self.low_speed_limit.clone(),
            low_speed_time: self.low_speed_time.clone(),
        }
    }
}

/// What the headless run should produce.
struct Outputs {
    ci: Option<CiConfig>,
    json: Option<String>,
}

/// Run the command line and return the process exit code.
pub fn main() -> i32 {
    crate::allocator::return_large_allocations();
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
    eprintln!(
        "layerscope: error: {}",
        crate::escape::error_line(&e.to_string())
    );
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

    let args = &cli.analysis;
    let ci_mode = args.ci
        || ci_from_env()
        || !args.ci_reports.is_empty()
        || args.baseline.is_some()
        || !args.ignore_paths.is_empty();
    let outputs = Outputs {
        ci: if ci_mode {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::io("reading the working directory", e))?;
            Some(CiConfig::load(
                args.ci_config.as_deref(),
                &cwd,
                &rule_overrides(args),
            )?)
        } else {
            None
        },
        json: args.json.clone(),
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

    if let Some(config) = outputs.ci {
        return run_ci(&cli, image, source, config, outputs.json.as_deref()).await;
    }
    let loaded = load_with_progress(image, source, cli.analysis.quiet).await?;
    let tree = loaded.tree.read().unwrap_or_else(|p| p.into_inner());
    let (figures, findings) =
        crate::findings::with_figures(&tree, &crate::findings::layer_steps(&loaded.info));
    let rows = report::layer_rows(&loaded.info, &tree);

    if let Some(target) = &outputs.json {
        let export = Export::new(&loaded.info, &tree, &rows, &figures, &findings, None);
        write_json(target, &export)?;
    }
    if outputs.json.is_none() {
        print_stdout(&report::render_summary(
            &loaded.info,
            &tree,
            &rows,
            &figures,
            &findings,
        ))?;
    }
    Ok(exit_code::OK)
}

/// CI mode: the image (and an image baseline) loaded, the rules checked on the figures as
/// they see them, the text report, the JSON export and the CI reports written together, and
/// the exit code of the verdict.
async fn run_ci(
    cli: &Cli,
    image: &str,
    source: Arc<Source>,
    config: CiConfig,
    json: Option<&str>,
) -> Result<i32, Error> {
    let started = std::time::Instant::now();
    let args = &cli.analysis;
    let ignore = IgnorePaths::new(&config.ignore_paths)?;
    if config.rules.needs_baseline() && args.baseline.is_none() {
        return Err(Error::Other(
            "the rules highestSizeIncrease and highestWastedIncrease need --baseline IMAGE or --baseline REPORT.json"
                .to_string(),
        ));
    }
    let github_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    let requests = ci_report::requests(&args.ci_reports, github_actions, json)?;

    // A report baseline is read before anything is pulled: a bad one fails at once.
    let mut baseline = None;
    let mut baseline_source = None;
    if let Some(value) = args.baseline.as_deref() {
        match BaselineSpec::parse(value) {
            BaselineSpec::Report(path) => baseline = Some(Baseline::from_report(&path, &ignore)?),
            BaselineSpec::Image(name) => {
                let source = baseline_target(&name, cli)
                    .map_err(|e| Error::Other(format!("baseline {name}: {e}")))?;
                baseline_source = Some((name, source));
            }
        }
    }
    let (loaded, loaded_baseline) =
        tokio::join!(load_with_progress(image, source, args.quiet), async {
            match &baseline_source {
                Some((name, source)) => Some(
                    crate::toolbox::load_source(source.clone())
                        .await
                        .map_err(|e| Error::Other(format!("baseline {name}: {e}"))),
                ),
                None => None,
            }
        });
    let loaded = loaded?;
    if let (Some(result), Some((name, _))) = (loaded_baseline, &baseline_source) {
        let other = result?;
        let tree = other.tree.read().unwrap_or_else(|p| p.into_inner());
        let a = ignore::analyse_for_rules(&other.info, &tree, &ignore);
        baseline = Some(Baseline::from_image(
            name,
            &other.info,
            &a.figures,
            &a.rule_figures,
            Some(a.findings.reclaimable_bytes),
        ));
    }

    let tree = loaded.tree.read().unwrap_or_else(|p| p.into_inner());
    let analysed = ignore::analyse_for_rules(&loaded.info, &tree, &ignore);
    let figures = &analysed.figures;
    let rule_figures = &analysed.rule_figures;
    let rows = report::layer_rows(&loaded.info, &tree);
    let comparison = baseline.map(|b| {
        BaselineComparison::new(
            b,
            &loaded.info,
            figures,
            rule_figures,
            Some(analysed.findings.reclaimable_bytes),
        )
    });
    let measures = Measures {
        efficiency: rule_figures.efficiency,
        wasted_bytes: rule_figures.wasted_bytes,
        user_wasted_percent: rule_figures.user_wasted_percent,
        reclaimable_bytes: Some(analysed.rule_findings.reclaimable_bytes),
        size_change: comparison.as_ref().map(|c| c.size),
        wasted_change: comparison.as_ref().map(|c| c.rule_wasted),
    };
    let outcome = config.rules.evaluate(&measures);
    let run = CiRun {
        info: &loaded.info,
        tree: &tree,
        figures,
        outcome: &outcome,
        rule_figures,
        findings: &analysed.rule_findings,
        reclaimable_bytes: analysed.findings.reclaimable_bytes,
        ignore: &ignore,
        baseline: comparison.as_ref(),
        elapsed: started.elapsed(),
    };

    let step_summary = std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let mut delivery = Delivery::render(&requests, &run, step_summary);
    // The JSON is streamed, into its file beside the other reports or, for `-`, to standard
    // output once they are in place: never held in memory whole.
    let mut json_export = None;
    if let Some(target) = json {
        let mut export = Export::new(
            &loaded.info,
            &tree,
            &rows,
            figures,
            &analysed.findings,
            Some(&outcome),
        );
        export.add_ci_details(&ignore, rule_figures, comparison.as_ref());
        if target == "-" {
            json_export = Some(export);
        } else {
            delivery.stream_file(PathBuf::from(target), |out| export.write_json(out))?;
        }
    }
    // Every file, or none: a report that cannot be written changes nothing else.
    delivery.commit()?;

    let text = report::render_ci(
        &loaded.info,
        &tree,
        figures,
        &analysed.rule_findings,
        &outcome,
        &ci_report::text::render(&run),
    );
    // Standard output belongs to the JSON or the report; people read the rest on stderr.
    let to_stderr = || {
        eprint!(
            "{}",
            crate::escape::escape_report(&format!("{text}{}", delivery.commands))
        )
    };
    if let Some(export) = json_export {
        to_stderr();
        crate::toolbox::write_stdout_with(|out| export.write_json(out))?;
    } else if let Some(bytes) = &delivery.stdout {
        to_stderr();
        crate::toolbox::write_stdout(bytes)?;
    } else {
        print_stdout(&format!("{text}{}", delivery.commands))?;
    }
    Ok(ci_exit_code(&outcome))
}

/// The image of `--baseline`, from any source its name gives (a prefix such as `docker://`;
/// `--source` is the checked image's alone), with the image's other options. A password read
/// from standard input is not read again (see [`compare_target`]).
fn baseline_target(image: &str, cli: &Cli) -> Result<Arc<Source>, Error> {
    let registry = cli.registry.for_another_image();
    let options = SourceOptions {
        kind: None,
        ..SourceOptions::from(&cli.analysis)
    };
    open_source(image, &options, &registry)
}

/// The second image of `--compare`, from any source, with the same options. A password read
/// from standard input for the first image is not read again: the second image uses `--creds`
/// or the stored credentials.
fn compare_target(image: &str, cli: &Cli) -> Result<crate::tui::Target, Error> {
    let registry = cli.registry.for_another_image();
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
        highest_reclaimable_bytes: args.highest_reclaimable_bytes.clone(),
        highest_size_increase: args.highest_size_increase.clone(),
        highest_wasted_increase: args.highest_wasted_increase.clone(),
        ignore_paths: args.ignore_paths.clone(),
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
        let options = registry_options(registry, &reference)?;
        let mirrors = if reference.is_docker_hub() {
            docker_hub_mirrors(registry, &options.insecure_hosts)?
        } else {
            Vec::new()
        };
        let client = RegistryClient::new(options)?;
        Ok(Source::Registry(
            RegistrySource::new(client, reference, platform.clone()).with_mirrors(mirrors),
        ))
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

/// The registry mirrors for a Docker Hub image: `--registry-mirror`, then daemon.json's (a
/// daemon.json that cannot be used is a warning).
fn docker_hub_mirrors(
    args: &RegistryArgs,
    insecure_hosts: &[String],
) -> Result<Vec<Mirror>, Error> {
    let (mirrors, warnings) =
        mirror::configured(&args.registry_mirrors, insecure_hosts).map_err(Error::Other)?;
    for warning in warnings {
        eprintln!("layerscope: warning: {}", crate::escape::Escaped(&warning));
    }
    Ok(mirrors)
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

/// `layerscope cat`: the image from any source (with the cache), loaded, then the file.
async fn run_cat(args: &unpack::cat::CatArgs, registry: &RegistryArgs) -> Result<i32, Error> {
    args.check()?;
    let options = SourceOptions {
        platform: args.platform.clone(),
        kind: None,
        no_cache: args.no_cache,
        cache_size: None,
    };
    let source = open_source(&args.image, &options, registry)?;
    let loaded = load_with_progress(&args.image, source.clone(), args.quiet).await?;
    unpack::cat::run(source, loaded, args).await
}

/// `layerscope export`: the output checked first, then the image loaded and written out.
async fn run_export(
    args: &unpack::export::ExportArgs,
    registry: &RegistryArgs,
) -> Result<i32, Error> {
    let target = args.check()?;
    let options = SourceOptions {
        platform: args.platform.clone(),
        kind: None,
        no_cache: args.no_cache,
        cache_size: None,
    };
    let source = open_source(&args.image, &options, registry)?;
    let loaded = load_with_progress(&args.image, source.clone(), args.quiet).await?;
    unpack::export::run(source, loaded, args, target).await
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
        stall: stall_limits(args)?,
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

/// `--timeout`, `--low-speed-limit` and `--low-speed-time` (or their environment variables)
/// over the defaults.
fn stall_limits(args: &RegistryArgs) -> Result<StallLimits, Error> {
    let mut limits = StallLimits::default();
    if let Some(text) = &args.timeout {
        limits.timeout = parse_duration("--timeout", text)?;
    }
    if let Some(text) = &args.low_speed_time {
        limits.low_speed_time = parse_duration("--low-speed-time", text)?;
    }
    if let Some(text) = &args.low_speed_limit {
        limits.low_speed_limit = text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| {
                Error::Other(format!(
                    "invalid --low-speed-limit {text:?}: expected bytes a second, such as 1KiB, \
                     500 or 0"
                ))
            })?;
    }
    Ok(limits)
}

/// A duration from the command line: whole seconds (`90`) or humantime (`90s`, `2m`, `1m30s`),
/// at least a millisecond.
fn parse_duration(flag: &str, text: &str) -> Result<std::time::Duration, Error> {
    let text = text.trim();
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text),
    };
    match parsed {
        Ok(d) if d >= std::time::Duration::from_millis(1) => Ok(d),
        _ => Err(Error::Other(format!(
            "invalid {flag} {text:?}: expected seconds or a duration such as 90s or 2m \
             (more than zero)"
        ))),
    }
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
            eprintln!(
                "layerscope: {}: {}",
                crate::escape::Escaped(image),
                crate::escape::Escaped(notice)
            );
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

/// The `--json` report, to standard output for `-`, else into the file `target`.
fn write_json(target: &str, export: &Export) -> Result<(), Error> {
    if target == "-" {
        return crate::toolbox::write_stdout_with(|out| export.write_json(out));
    }
    // Streamed into the file: the text is not held in memory beside the model.
    output_file::write_with(Path::new(target), |out| export.write_json(out))
        .map_err(|e| Error::io(format!("writing {target}"), e))
}

/// Write a report (or JSON) to standard output, through [`crate::escape::escape_report`] so that
/// no control character but its line breaks reaches the terminal.
fn print_stdout(text: &str) -> Result<(), Error> {
    let text = crate::escape::escape_report(text);
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
