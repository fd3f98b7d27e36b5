//! CI mode: the rules (dive's three, plus the reclaimable-bytes and growth-against-a-baseline
//! rules), their thresholds from defaults, `.dive-ci` and flags (flags over file over
//! defaults, merged here and nowhere else), the paths left out of what the rules measure, and
//! the verdict.

use std::fmt;
use std::path::Path;

use bytesize::ByteSize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::analysis::Figures;

/// The name of dive's rule file, read from the working directory.
pub const DEFAULT_CONFIG_FILE: &str = ".dive-ci";

/// The top-level key of `.dive-ci` that lists paths left out of what the rules measure.
pub const IGNORE_PATHS_KEY: &str = "ignorePaths";

/// Rule names as dive spells them (also the keys of `.dive-ci` and the flag names).
pub mod rule_name {
    /// Fails when efficiency is below the threshold.
    pub const LOWEST_EFFICIENCY: &str = "lowestEfficiency";
    /// Fails when wasted bytes exceed the threshold.
    pub const HIGHEST_WASTED_BYTES: &str = "highestWastedBytes";
    /// Fails when the user-wasted fraction exceeds the threshold.
    pub const HIGHEST_USER_WASTED_PERCENT: &str = "highestUserWastedPercent";
    /// Fails when the reclaimable bytes of the findings exceed the threshold.
    pub const HIGHEST_RECLAIMABLE_BYTES: &str = "highestReclaimableBytes";
    /// Fails when the image's size grew past the threshold since the baseline.
    pub const HIGHEST_SIZE_INCREASE: &str = "highestSizeIncrease";
    /// Fails when the wasted bytes grew past the threshold since the baseline.
    pub const HIGHEST_WASTED_INCREASE: &str = "highestWastedIncrease";

    /// Every rule, in the order reports list them.
    pub const ALL: [&str; 6] = [
        LOWEST_EFFICIENCY,
        HIGHEST_WASTED_BYTES,
        HIGHEST_USER_WASTED_PERCENT,
        HIGHEST_RECLAIMABLE_BYTES,
        HIGHEST_SIZE_INCREASE,
        HIGHEST_WASTED_INCREASE,
    ];
}

/// One rule's threshold, or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold<T> {
    /// The rule is checked against this value.
    Enabled(T),
    /// The rule is skipped.
    Disabled,
}

impl<T> Threshold<T> {
    /// Whether the rule is checked.
    pub fn is_enabled(&self) -> bool {
        matches!(self, Threshold::Enabled(_))
    }
}

/// How much an image may grow against its baseline: a size (`20MB`) or a fraction of the
/// baseline's value (`5%`, kept as 0.05).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    /// Bytes more than the baseline.
    Bytes(u64),
    /// A fraction of the baseline's value.
    Ratio(f64),
}

/// The thresholds of all rules, after merging defaults, file and flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// `lowestEfficiency`, a ratio 0–1.
    pub lowest_efficiency: Threshold<f64>,
    /// `highestWastedBytes`, in bytes.
    pub highest_wasted_bytes: Threshold<u64>,
    /// `highestUserWastedPercent`, a ratio 0–1.
    pub highest_user_wasted_percent: Threshold<f64>,
    /// `highestReclaimableBytes`, in bytes (the findings' reclaimable total).
    pub highest_reclaimable_bytes: Threshold<u64>,
    /// `highestSizeIncrease`: growth of `sizeBytes` against the baseline.
    pub highest_size_increase: Threshold<Growth>,
    /// `highestWastedIncrease`: growth of the wasted bytes against the baseline.
    pub highest_wasted_increase: Threshold<Growth>,
}

impl Default for Rules {
    /// dive's defaults (efficiency 0.9, wasted bytes disabled, user-wasted 0.1); the rules
    /// dive does not have are disabled.
    fn default() -> Self {
        Rules {
            lowest_efficiency: Threshold::Enabled(0.9),
            highest_wasted_bytes: Threshold::Disabled,
            highest_user_wasted_percent: Threshold::Enabled(0.1),
            highest_reclaimable_bytes: Threshold::Disabled,
            highest_size_increase: Threshold::Disabled,
            highest_wasted_increase: Threshold::Disabled,
        }
    }
}

/// Thresholds given on the command line, as text (`disabled`, `0.95`, `20MB`, `5%`, …);
/// `None` keeps the file's or the default value. Paths to leave out are added to the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverrides {
    /// `--lowestEfficiency`.
    pub lowest_efficiency: Option<String>,
    /// `--highestWastedBytes`.
    pub highest_wasted_bytes: Option<String>,
    /// `--highestUserWastedPercent`.
    pub highest_user_wasted_percent: Option<String>,
    /// `--highestReclaimableBytes`.
    pub highest_reclaimable_bytes: Option<String>,
    /// `--highestSizeIncrease`.
    pub highest_size_increase: Option<String>,
    /// `--highestWastedIncrease`.
    pub highest_wasted_increase: Option<String>,
    /// `--ignore-path`, each a glob pattern.
    pub ignore_paths: Vec<String>,
}

/// A rule file or flag value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiConfigError(pub String);

impl fmt::Display for CiConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CiConfigError {}

/// Everything `.dive-ci` and the flags say: the rules and the paths to leave out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CiConfig {
    /// The thresholds.
    pub rules: Rules,
    /// Glob patterns (`ignorePaths`, then each `--ignore-path`): matching paths are left out
    /// of what the rules measure.
    pub ignore_paths: Vec<String>,
}

impl CiConfig {
    /// Merge defaults, the rule file and flags. `config_file` is `--ci-config` when given (it
    /// must exist); otherwise `.dive-ci` in `working_dir` is read when present.
    pub fn load(
        config_file: Option<&Path>,
        working_dir: &Path,
        overrides: &RuleOverrides,
    ) -> Result<CiConfig, CiConfigError> {
        let mut config = CiConfig::default();
        let (path, required) = match config_file {
            Some(p) => (p.to_path_buf(), true),
            None => (working_dir.join(DEFAULT_CONFIG_FILE), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => config
                .apply_yaml(&text)
                .map_err(|e| CiConfigError(format!("{}: {}", path.display(), e.0)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(e) => {
                return Err(CiConfigError(format!(
                    "cannot read CI rules from {}: {e}",
                    path.display()
                )))
            }
        }
        config.rules.apply_overrides(overrides)?;
        config
            .ignore_paths
            .extend(overrides.ignore_paths.iter().cloned());
        Ok(config)
    }

    /// Apply a `.dive-ci` document: a `rules:` map with the rule names as keys and an
    /// `ignorePaths:` list of glob patterns; unknown keys are refused so a typo does not
    /// silently disable a check.
    pub fn apply_yaml(&mut self, text: &str) -> Result<(), CiConfigError> {
        let docs = YamlLoader::load_from_str(text)
            .map_err(|e| CiConfigError(format!("not valid YAML: {e}")))?;
        let Some(doc) = docs.first() else {
            return Ok(());
        };
        let top = match doc {
            Yaml::Hash(h) => h,
            Yaml::Null => return Ok(()),
            _ => return Err(CiConfigError("expected a map with a `rules:` key".into())),
        };
        for (key, value) in top {
            match key.as_str() {
                Some("rules") => self.rules.apply_yaml_rules(value)?,
                Some(IGNORE_PATHS_KEY) => self.ignore_paths.extend(ignore_list(value)?),
                Some(other) => {
                    return Err(CiConfigError(format!(
                        "unknown key `{other}` (expected `rules` or `{IGNORE_PATHS_KEY}`)"
                    )))
                }
                None => return Err(CiConfigError("keys must be strings".into())),
            }
        }
        Ok(())
    }
}

/// The `ignorePaths` list: strings only.
fn ignore_list(value: &Yaml) -> Result<Vec<String>, CiConfigError> {
    let items = match value {
        Yaml::Array(items) => items,
        Yaml::Null => return Ok(Vec::new()),
        _ => {
            return Err(CiConfigError(format!(
                "`{IGNORE_PATHS_KEY}` must be a list of glob patterns"
            )))
        }
    };
    items
        .iter()
        .map(|item| {
            item.as_str().map(str::to_string).ok_or_else(|| {
                CiConfigError(format!(
                    "`{IGNORE_PATHS_KEY}` entries must be strings (glob patterns such as /var/cache/**)"
                ))
            })
        })
        .collect()
}

impl Rules {
    /// Apply the `rules:` map of a `.dive-ci` document.
    fn apply_yaml_rules(&mut self, value: &Yaml) -> Result<(), CiConfigError> {
        let rules = match value {
            Yaml::Hash(h) => h,
            Yaml::Null => return Ok(()),
            _ => return Err(CiConfigError("`rules` must be a map".into())),
        };
        for (name, value) in rules {
            let name = name
                .as_str()
                .ok_or_else(|| CiConfigError("rule names must be strings".into()))?;
            let text = yaml_scalar(value).ok_or_else(|| {
                CiConfigError(format!(
                    "rule `{name}` must be a number, a size or `disabled`"
                ))
            })?;
            self.set(name, &text)?;
        }
        Ok(())
    }

    /// Apply command-line thresholds over whatever is set.
    pub fn apply_overrides(&mut self, overrides: &RuleOverrides) -> Result<(), CiConfigError> {
        let pairs = [
            (rule_name::LOWEST_EFFICIENCY, &overrides.lowest_efficiency),
            (
                rule_name::HIGHEST_WASTED_BYTES,
                &overrides.highest_wasted_bytes,
            ),
            (
                rule_name::HIGHEST_USER_WASTED_PERCENT,
                &overrides.highest_user_wasted_percent,
            ),
            (
                rule_name::HIGHEST_RECLAIMABLE_BYTES,
                &overrides.highest_reclaimable_bytes,
            ),
            (
                rule_name::HIGHEST_SIZE_INCREASE,
                &overrides.highest_size_increase,
            ),
            (
                rule_name::HIGHEST_WASTED_INCREASE,
                &overrides.highest_wasted_increase,
            ),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                self.set(name, value)?;
            }
        }
        Ok(())
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), CiConfigError> {
        match name {
            rule_name::LOWEST_EFFICIENCY => {
                self.lowest_efficiency = parse_threshold(name, value, parse_ratio)?
            }
            rule_name::HIGHEST_WASTED_BYTES => {
                self.highest_wasted_bytes = parse_threshold(name, value, parse_bytes)?
            }
            rule_name::HIGHEST_USER_WASTED_PERCENT => {
                self.highest_user_wasted_percent = parse_threshold(name, value, parse_ratio)?
            }
            rule_name::HIGHEST_RECLAIMABLE_BYTES => {
                self.highest_reclaimable_bytes = parse_threshold(name, value, parse_bytes)?
            }
            rule_name::HIGHEST_SIZE_INCREASE => {
                self.highest_size_increase = parse_threshold(name, value, parse_growth)?
            }
            rule_name::HIGHEST_WASTED_INCREASE => {
                self.highest_wasted_increase = parse_threshold(name, value, parse_growth)?
            }
            other => {
                return Err(CiConfigError(format!(
                    "unknown rule `{other}` (known: {})",
                    rule_name::ALL.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Whether a rule that compares with a baseline is enabled (then `--baseline` is needed).
    pub fn needs_baseline(&self) -> bool {
        self.highest_size_increase.is_enabled() || self.highest_wasted_increase.is_enabled()
    }

    /// Check the measured values against every rule. A rule whose value was not measured
    /// (no baseline, no findings) is skipped when disabled and fails when enabled: an
    /// enabled rule never passes without its value.
    pub fn evaluate(&self, measures: &Measures) -> CiOutcome {
        let mut rules = Vec::with_capacity(rule_name::ALL.len());
        rules.push(lower_bound(
            rule_name::LOWEST_EFFICIENCY,
            self.lowest_efficiency,
            Some(measures.efficiency),
            Unit::Ratio,
        ));
        rules.push(upper_bound(
            rule_name::HIGHEST_WASTED_BYTES,
            self.highest_wasted_bytes.map(|t| t as f64),
            Some(measures.wasted_bytes as f64),
            Unit::Bytes,
        ));
        rules.push(upper_bound(
            rule_name::HIGHEST_USER_WASTED_PERCENT,
            self.highest_user_wasted_percent,
            Some(measures.user_wasted_percent),
            Unit::Ratio,
        ));
        rules.push(upper_bound(
            rule_name::HIGHEST_RECLAIMABLE_BYTES,
            self.highest_reclaimable_bytes.map(|t| t as f64),
            measures.reclaimable_bytes.map(|b| b as f64),
            Unit::Bytes,
        ));
        rules.push(growth_rule(
            rule_name::HIGHEST_SIZE_INCREASE,
            self.highest_size_increase,
            measures.size_change,
        ));
        rules.push(growth_rule(
            rule_name::HIGHEST_WASTED_INCREASE,
            self.highest_wasted_increase,
            measures.wasted_change,
        ));
        let pass = rules.iter().all(|r| r.status != RuleStatus::Fail);
        CiOutcome { pass, rules }
    }
}

impl<T: Copy> Threshold<T> {
    /// The threshold converted, `disabled` kept.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Threshold<U> {
        match self {
            Threshold::Enabled(t) => Threshold::Enabled(f(t)),
            Threshold::Disabled => Threshold::Disabled,
        }
    }
}

/// A rule that fails when the value is below the threshold.
fn lower_bound(
    name: &'static str,
    threshold: Threshold<f64>,
    value: Option<f64>,
    unit: Unit,
) -> RuleResult {
    bound(name, threshold, value, unit, |v, t| v < t)
}

/// A rule that fails when the value is above the threshold.
fn upper_bound(
    name: &'static str,
    threshold: Threshold<f64>,
    value: Option<f64>,
    unit: Unit,
) -> RuleResult {
    bound(name, threshold, value, unit, |v, t| v > t)
}

fn bound(
    name: &'static str,
    threshold: Threshold<f64>,
    value: Option<f64>,
    unit: Unit,
    fails: fn(f64, f64) -> bool,
) -> RuleResult {
    let (threshold, status) = match (threshold, value) {
        (Threshold::Disabled, _) => (None, RuleStatus::Skip),
        (Threshold::Enabled(t), Some(v)) => (Some(t), status(fails(v, t))),
        // Enabled but not measured: never a silent pass.
        (Threshold::Enabled(t), None) => (Some(t), RuleStatus::Fail),
    };
    RuleResult {
        name,
        threshold,
        value,
        unit,
        status,
    }
}

/// A growth rule: bytes more than the baseline, or that growth as a fraction of the baseline.
fn growth_rule(
    name: &'static str,
    threshold: Threshold<Growth>,
    change: Option<Change>,
) -> RuleResult {
    match threshold {
        Threshold::Disabled => RuleResult {
            name,
            threshold: None,
            value: change.map(|c| c.bytes() as f64),
            unit: Unit::BytesGrowth,
            status: RuleStatus::Skip,
        },
        Threshold::Enabled(Growth::Bytes(t)) => upper_bound(
            name,
            Threshold::Enabled(t as f64),
            change.map(|c| c.bytes() as f64),
            Unit::BytesGrowth,
        ),
        Threshold::Enabled(Growth::Ratio(t)) => upper_bound(
            name,
            Threshold::Enabled(t),
            change.map(Change::ratio),
            Unit::RatioGrowth,
        ),
    }
}

fn status(failed: bool) -> RuleStatus {
    if failed {
        RuleStatus::Fail
    } else {
        RuleStatus::Pass
    }
}

fn yaml_scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Real(s) | Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(false) => Some("disabled".to_string()),
        _ => None,
    }
}

fn parse_threshold<T>(
    name: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Threshold<T>, CiConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("disabled") {
        return Ok(Threshold::Disabled);
    }
    parse(value).map(Threshold::Enabled).ok_or_else(|| {
        CiConfigError(format!(
            "invalid value {value:?} for rule `{name}` (expected {} or `disabled`)",
            match name {
                rule_name::HIGHEST_WASTED_BYTES | rule_name::HIGHEST_RECLAIMABLE_BYTES =>
                    "a size such as 20MB, 1GiB or a byte count",
                rule_name::HIGHEST_SIZE_INCREASE | rule_name::HIGHEST_WASTED_INCREASE =>
                    "a size such as 20MB or a byte count, or a percent such as 5%",
                _ => "a ratio between 0 and 1",
            }
        ))
    })
}

fn parse_ratio(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=1.0).contains(v))
}

fn parse_bytes(value: &str) -> Option<u64> {
    value.parse::<ByteSize>().ok().map(|b| b.as_u64())
}

fn parse_growth(value: &str) -> Option<Growth> {
    match value.strip_suffix('%') {
        Some(percent) => percent
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Growth::Ratio(v / 100.0)),
        None => parse_bytes(value).map(Growth::Bytes),
    }
}

/// A figure before (the baseline) and after (the image checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The baseline's value.
    pub before: u64,
    /// The image's value.
    pub after: u64,
}

impl Change {
    /// Bytes more than the baseline (negative when the image shrank).
    pub fn bytes(self) -> i128 {
        i128::from(self.after) - i128::from(self.before)
    }

    /// The growth as a fraction of the baseline: 0 when both are 0, infinite when only the
    /// baseline is 0.
    pub fn ratio(self) -> f64 {
        match (self.before, self.after) {
            (0, 0) => 0.0,
            (0, _) => f64::INFINITY,
            (before, _) => self.bytes() as f64 / before as f64,
        }
    }
}

/// The values the rules check: the figures as the rules see them (without the paths left
/// out), the findings' reclaimable bytes, and the changes against a baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures {
    /// Efficiency over the paths kept.
    pub efficiency: f64,
    /// Wasted bytes of the paths kept.
    pub wasted_bytes: u64,
    /// Those wasted bytes over the kept bytes of all layers but the first.
    pub user_wasted_percent: f64,
    /// The findings' reclaimable bytes over the paths kept; `None` when not computed.
    pub reclaimable_bytes: Option<u64>,
    /// `sizeBytes` against the baseline; `None` without a baseline.
    pub size_change: Option<Change>,
    /// Wasted bytes (as the rules see them) against the baseline; `None` without one.
    pub wasted_change: Option<Change>,
}

impl Measures {
    /// The image's own figures, nothing left out, no findings and no baseline.
    pub fn from_figures(figures: &Figures) -> Measures {
        Measures {
            efficiency: figures.efficiency,
            wasted_bytes: figures.wasted_bytes,
            user_wasted_percent: figures.user_wasted_percent,
            reclaimable_bytes: None,
            size_change: None,
            wasted_change: None,
        }
    }
}

/// How one rule came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    /// Within the threshold.
    Pass,
    /// Beyond the threshold.
    Fail,
    /// Disabled.
    Skip,
}

impl RuleStatus {
    /// `PASS`, `FAIL` or `SKIP`, as dive prints them.
    pub fn label(self) -> &'static str {
        match self {
            RuleStatus::Pass => "PASS",
            RuleStatus::Fail => "FAIL",
            RuleStatus::Skip => "SKIP",
        }
    }
}

/// What a rule's value and threshold count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A ratio, 0–1.
    Ratio,
    /// Bytes.
    Bytes,
    /// Bytes more than the baseline (may be negative).
    BytesGrowth,
    /// Growth as a fraction of the baseline (0.05 for 5 %; may be negative).
    RatioGrowth,
}

impl Unit {
    /// `ratio` or `bytes`, as the JSON export names the unit of `value` and `threshold`.
    pub fn json_name(self) -> &'static str {
        match self {
            Unit::Ratio | Unit::RatioGrowth => "ratio",
            Unit::Bytes | Unit::BytesGrowth => "bytes",
        }
    }

    /// A value of this unit for people: `0.9000`, `8.7 kB (8710 bytes)`, `+1.2 MB (+1200000
    /// bytes)`, `+12.50 %`.
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::Ratio => format!("{v:.4}"),
            Unit::Bytes => format!("{} ({} bytes)", ByteSize(v as u64).display().si(), v as u64),
            Unit::BytesGrowth => {
                let sign = if v < 0.0 { "-" } else { "+" };
                let abs = v.abs() as u64;
                format!("{sign}{} ({sign}{abs} bytes)", ByteSize(abs).display().si())
            }
            Unit::RatioGrowth if v.is_infinite() => "+∞ % (the baseline had none)".to_string(),
            Unit::RatioGrowth => format!("{:+.2} %", v * 100.0),
        }
    }
}

/// One rule's verdict with the value and threshold it compared.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    /// dive's rule name.
    pub name: &'static str,
    /// The threshold, `None` when disabled.
    pub threshold: Option<f64>,
    /// The value the rule saw; `None` when it could not be measured (no baseline, no
    /// findings).
    pub value: Option<f64>,
    /// What value and threshold count.
    pub unit: Unit,
    /// The verdict.
    pub status: RuleStatus,
}

impl RuleResult {
    /// Whether the rule fails below its threshold (the others fail above it).
    pub fn is_lower_bound(&self) -> bool {
        self.name == rule_name::LOWEST_EFFICIENCY
    }

    /// A sentence that explains the verdict, with value and threshold.
    pub fn explain(&self) -> String {
        let show = |v: f64| self.unit.show(v);
        match (self.status, self.threshold, self.value) {
            (RuleStatus::Skip, _, _) | (_, None, _) => "rule disabled".to_string(),
            (_, Some(t), None) => format!(
                "no value to compare with threshold {}: {}",
                show(t),
                if matches!(
                    self.name,
                    rule_name::HIGHEST_SIZE_INCREASE | rule_name::HIGHEST_WASTED_INCREASE
                ) {
                    "no baseline"
                } else {
                    "not measured"
                }
            ),
            (status, Some(t), Some(v)) => {
                let op = match (self.is_lower_bound(), status) {
                    (true, RuleStatus::Fail) => "<",
                    (true, _) => ">=",
                    (false, RuleStatus::Fail) => ">",
                    (false, _) => "<=",
                };
                format!("value {} {op} threshold {}", show(v), show(t))
            }
        }
    }
}

/// The verdict of all rules.
#[derive(Debug, Clone, PartialEq)]
pub struct CiOutcome {
    /// True when no rule failed.
    pub pass: bool,
    /// Each rule, in dive's order.
    pub rules: Vec<RuleResult>,
}

impl CiOutcome {
    /// The result lines of the CI report.
    pub fn render(&self) -> String {
        let mut out = String::from("Results:\n");
        for r in &self.rules {
            out.push_str(&format!(
                "  {}: {}: {}\n",
                r.status.label(),
                r.name,
                r.explain()
            ));
        }
        out.push_str(&format!(
            "Result: {} [Total:{}] [Passed:{}] [Failed:{}] [Skipped:{}]\n",
            if self.pass { "PASS" } else { "FAIL" },
            self.rules.len(),
            self.count(RuleStatus::Pass),
            self.count(RuleStatus::Fail),
            self.count(RuleStatus::Skip)
        ));
        out
    }

    /// How many rules came out as `status`.
    pub fn count(&self, status: RuleStatus) -> usize {
        self.rules.iter().filter(|r| r.status == status).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measures(efficiency: f64, wasted: u64, user: f64) -> Measures {
        Measures {
            efficiency,
            wasted_bytes: wasted,
            user_wasted_percent: user,
            reclaimable_bytes: None,
            size_change: None,
            wasted_change: None,
        }
    }

    fn all_disabled() -> Rules {
        Rules {
            lowest_efficiency: Threshold::Disabled,
            highest_wasted_bytes: Threshold::Disabled,
            highest_user_wasted_percent: Threshold::Disabled,
            highest_reclaimable_bytes: Threshold::Disabled,
            highest_size_increase: Threshold::Disabled,
            highest_wasted_increase: Threshold::Disabled,
        }
    }

    fn status_of(outcome: &CiOutcome, name: &str) -> RuleStatus {
        outcome
            .rules
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.status)
            .expect("rule listed")
    }

    #[test]
    fn defaults_are_dives() {
        let r = Rules::default();
        assert_eq!(r.lowest_efficiency, Threshold::Enabled(0.9));
        assert_eq!(r.highest_wasted_bytes, Threshold::Disabled);
        assert_eq!(r.highest_user_wasted_percent, Threshold::Enabled(0.1));
        assert_eq!(r.highest_reclaimable_bytes, Threshold::Disabled);
        assert_eq!(r.highest_size_increase, Threshold::Disabled);
        assert_eq!(r.highest_wasted_increase, Threshold::Disabled);
    }

    #[test]
    fn the_sample_rule_file_holds_the_defaults() {
        let mut c = CiConfig {
            rules: Rules {
                lowest_efficiency: Threshold::Disabled,
                highest_wasted_bytes: Threshold::Enabled(1),
                highest_user_wasted_percent: Threshold::Disabled,
                highest_reclaimable_bytes: Threshold::Enabled(1),
                highest_size_increase: Threshold::Enabled(Growth::Bytes(1)),
                highest_wasted_increase: Threshold::Enabled(Growth::Ratio(1.0)),
            },
            ignore_paths: Vec::new(),
        };
        c.apply_yaml(include_str!("../assets/dive-ci.yaml"))
            .expect("sample parses");
        assert_eq!(c, CiConfig::default());
    }

    #[test]
    fn dive_ci_file_is_read_with_sizes_and_disabled() {
        let mut c = CiConfig::default();
        c.apply_yaml(
            "rules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: disabled\n",
        )
        .expect("valid file");
        let r = c.rules;
        assert_eq!(r.lowest_efficiency, Threshold::Enabled(0.95));
        assert_eq!(r.highest_wasted_bytes, Threshold::Enabled(20_000_000));
        assert_eq!(r.highest_user_wasted_percent, Threshold::Disabled);
        c.apply_yaml("rules:\n  highestWastedBytes: 1GiB\n")
            .expect("valid file");
        assert_eq!(c.rules.highest_wasted_bytes, Threshold::Enabled(1 << 30));
        c.apply_yaml("rules:\n  highestWastedBytes: 1234\n")
            .expect("valid file");
        assert_eq!(c.rules.highest_wasted_bytes, Threshold::Enabled(1234));
    }

    #[test]
    fn new_rules_and_ignore_paths_are_read() {
        let mut c = CiConfig::default();
        c.apply_yaml(
            "rules:\n  highestSizeIncrease: 20MB\n  highestWastedIncrease: 5%\n  highestReclaimableBytes: 1MiB\nignorePaths:\n  - /var/cache/**\n  - '**/*.log'\n",
        )
        .expect("valid file");
        assert_eq!(
            c.rules.highest_size_increase,
            Threshold::Enabled(Growth::Bytes(20_000_000))
        );
        assert_eq!(
            c.rules.highest_wasted_increase,
            Threshold::Enabled(Growth::Ratio(0.05))
        );
        assert_eq!(
            c.rules.highest_reclaimable_bytes,
            Threshold::Enabled(1 << 20)
        );
        assert_eq!(c.ignore_paths, vec!["/var/cache/**", "**/*.log"]);
        assert!(c.rules.needs_baseline());

        let e = c.apply_yaml("ignorePaths: /var/cache\n").unwrap_err();
        assert!(e.0.contains("list"), "{e}");
        let e = c.apply_yaml("ignorePaths:\n  - 3\n").unwrap_err();
        assert!(e.0.contains("strings"), "{e}");
        let e = c
            .apply_yaml("rules:\n  highestSizeIncrease: lots\n")
            .unwrap_err();
        assert!(e.0.contains("5%"), "{e}");
        let e = c
            .apply_yaml("rules:\n  highestSizeIncrease: -5%\n")
            .unwrap_err();
        assert!(e.0.contains("highestSizeIncrease"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_reasons() {
        let mut c = CiConfig::default();
        let e = c
            .apply_yaml("rules:\n  lowestEfficency: 0.9\n")
            .unwrap_err();
        assert!(e.0.contains("lowestEfficency"), "{e}");
        let e = c
            .apply_yaml("rules:\n  lowestEfficiency: 1.5\n")
            .unwrap_err();
        assert!(e.0.contains("between 0 and 1"), "{e}");
        let e = c.apply_yaml("rulez: {}\n").unwrap_err();
        assert!(e.0.contains("rulez"), "{e}");
        let e = c.apply_yaml("ignorePath: []\n").unwrap_err();
        assert!(
            e.0.contains("ignorePath") && e.0.contains("ignorePaths"),
            "{e}"
        );
        let e = c
            .apply_yaml("rules:\n  highestWastedBytes: lots\n")
            .unwrap_err();
        assert!(e.0.contains("20MB"), "{e}");
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("layerscope-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join(DEFAULT_CONFIG_FILE),
            "rules:\n  lowestEfficiency: 0.5\n  highestUserWastedPercent: 0.3\nignorePaths: [/tmp/**]\n",
        )
        .expect("write rules");
        let overrides = RuleOverrides {
            highest_user_wasted_percent: Some("0.2".into()),
            highest_size_increase: Some("10%".into()),
            ignore_paths: vec!["/var/cache/**".into()],
            ..RuleOverrides::default()
        };
        let c = CiConfig::load(None, &dir, &overrides).expect("loads");
        assert_eq!(c.rules.lowest_efficiency, Threshold::Enabled(0.5));
        assert_eq!(c.rules.highest_user_wasted_percent, Threshold::Enabled(0.2));
        assert_eq!(
            c.rules.highest_size_increase,
            Threshold::Enabled(Growth::Ratio(0.1))
        );
        assert_eq!(c.ignore_paths, vec!["/tmp/**", "/var/cache/**"]);
        let missing = CiConfig::load(Some(&dir.join("nope")), &dir, &overrides).unwrap_err();
        assert!(missing.0.contains("nope"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn thresholds_compare_as_dive_does() {
        let rules = Rules {
            lowest_efficiency: Threshold::Enabled(0.9),
            highest_wasted_bytes: Threshold::Enabled(1000),
            highest_user_wasted_percent: Threshold::Enabled(0.1),
            ..all_disabled()
        };
        // Exactly at the thresholds passes.
        let at = rules.evaluate(&measures(0.9, 1000, 0.1));
        assert!(at.pass);
        let over = rules.evaluate(&measures(0.89, 1001, 0.11));
        assert!(!over.pass);
        assert!(over.rules[..3].iter().all(|r| r.status == RuleStatus::Fail));
        assert!(over.rules[3..].iter().all(|r| r.status == RuleStatus::Skip));
        let text = over.render();
        assert!(text.contains("FAIL: lowestEfficiency"), "{text}");
        assert!(
            text.contains("Result: FAIL [Total:6] [Passed:0] [Failed:3] [Skipped:3]"),
            "{text}"
        );
    }

    #[test]
    fn disabled_rules_are_skipped() {
        let out = all_disabled().evaluate(&measures(0.1, u64::MAX, 1.0));
        assert!(out.pass);
        assert!(out.rules.iter().all(|r| r.status == RuleStatus::Skip));
        assert_eq!(
            out.rules.iter().map(|r| r.name).collect::<Vec<_>>(),
            rule_name::ALL
        );
    }

    #[test]
    fn growth_rules_compare_bytes_and_percent_against_the_baseline() {
        let mut m = measures(1.0, 0, 0.0);
        m.size_change = Some(Change {
            before: 1000,
            after: 1100,
        });
        m.wasted_change = Some(Change {
            before: 200,
            after: 150,
        });
        let rules = |size: Growth, wasted: Growth| Rules {
            highest_size_increase: Threshold::Enabled(size),
            highest_wasted_increase: Threshold::Enabled(wasted),
            ..all_disabled()
        };
        // +100 bytes, +10 %; wasted shrank by 50.
        let out = rules(Growth::Bytes(100), Growth::Bytes(0)).evaluate(&m);
        assert!(out.pass, "{}", out.render());
        let out = rules(Growth::Bytes(99), Growth::Ratio(0.0)).evaluate(&m);
        assert_eq!(
            status_of(&out, rule_name::HIGHEST_SIZE_INCREASE),
            RuleStatus::Fail
        );
        assert_eq!(
            status_of(&out, rule_name::HIGHEST_WASTED_INCREASE),
            RuleStatus::Pass
        );
        let out = rules(Growth::Ratio(0.1), Growth::Ratio(0.0)).evaluate(&m);
        assert!(out.pass, "{}", out.render());
        let out = rules(Growth::Ratio(0.0999), Growth::Ratio(0.0)).evaluate(&m);
        assert!(!out.pass);
        let text = out.render();
        assert!(
            text.contains("value +10.00 % > threshold +9.99 %"),
            "{text}"
        );
        assert!(
            text.contains("value -25.00 % <= threshold +0.00 %"),
            "{text}"
        );

        // From nothing to something is infinite growth in percent.
        m.size_change = Some(Change {
            before: 0,
            after: 1,
        });
        let out = rules(Growth::Ratio(10.0), Growth::Ratio(0.0)).evaluate(&m);
        assert_eq!(
            status_of(&out, rule_name::HIGHEST_SIZE_INCREASE),
            RuleStatus::Fail
        );
    }

    #[test]
    fn an_enabled_rule_without_its_value_fails_never_passes() {
        let rules = Rules {
            highest_size_increase: Threshold::Enabled(Growth::Bytes(1)),
            highest_reclaimable_bytes: Threshold::Enabled(1),
            ..all_disabled()
        };
        let out = rules.evaluate(&measures(1.0, 0, 0.0));
        assert!(!out.pass);
        let text = out.render();
        assert!(text.contains("no baseline"), "{text}");
        assert!(text.contains("not measured"), "{text}");
    }
}
