//! CI mode (design §6): dive's three rules, their thresholds from defaults, `.dive-ci` and flags
//! (flags over file over defaults, merged here and nowhere else), and the verdict.

use std::fmt;
use std::path::Path;

use bytesize::ByteSize;
use yaml_rust2::{Yaml, YamlLoader};

use crate::analysis::Figures;

/// The name of dive's rule file, read from the working directory.
pub const DEFAULT_CONFIG_FILE: &str = ".dive-ci";

/// Rule names as dive spells them (also the keys of `.dive-ci` and the flag names).
pub mod rule_name {
    /// Fails when efficiency is below the threshold.
    pub const LOWEST_EFFICIENCY: &str = "lowestEfficiency";
    /// Fails when wasted bytes exceed the threshold.
    pub const HIGHEST_WASTED_BYTES: &str = "highestWastedBytes";
    /// Fails when the user-wasted fraction exceeds the threshold.
    pub const HIGHEST_USER_WASTED_PERCENT: &str = "highestUserWastedPercent";
}

/// One rule's threshold, or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold<T> {
    /// The rule is checked against this value.
    Enabled(T),
    /// The rule is skipped.
    Disabled,
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
}

impl Default for Rules {
    /// dive's defaults: efficiency 0.9, wasted bytes disabled, user-wasted 0.1.
    fn default() -> Self {
        Rules {
            lowest_efficiency: Threshold::Enabled(0.9),
            highest_wasted_bytes: Threshold::Disabled,
            highest_user_wasted_percent: Threshold::Enabled(0.1),
        }
    }
}

/// Thresholds given on the command line, as text (`disabled`, `0.95`, `20MB`, …); `None` keeps
/// the file's or the default value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverrides {
    /// `--lowestEfficiency`.
    pub lowest_efficiency: Option<String>,
    /// `--highestWastedBytes`.
    pub highest_wasted_bytes: Option<String>,
    /// `--highestUserWastedPercent`.
    pub highest_user_wasted_percent: Option<String>,
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

impl Rules {
    /// Merge defaults, the rule file and flags. `config_file` is `--ci-config` when given (it must
    /// exist); otherwise `.dive-ci` in `working_dir` is read when present.
    pub fn load(
        config_file: Option<&Path>,
        working_dir: &Path,
        overrides: &RuleOverrides,
    ) -> Result<Rules, CiConfigError> {
        let mut rules = Rules::default();
        let (path, required) = match config_file {
            Some(p) => (p.to_path_buf(), true),
            None => (working_dir.join(DEFAULT_CONFIG_FILE), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => rules
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
        rules.apply_overrides(overrides)?;
        Ok(rules)
    }

    /// Apply a `.dive-ci` document: a `rules:` map with dive's keys; unknown keys are refused so
    /// a typo does not silently disable a check.
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
                Some("rules") => {}
                Some(other) => {
                    return Err(CiConfigError(format!(
                        "unknown key `{other}` (expected `rules`)"
                    )))
                }
                None => return Err(CiConfigError("keys must be strings".into())),
            }
            let rules = match value {
                Yaml::Hash(h) => h,
                Yaml::Null => continue,
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
            other => {
                return Err(CiConfigError(format!(
                    "unknown rule `{other}` (known: {}, {}, {})",
                    rule_name::LOWEST_EFFICIENCY,
                    rule_name::HIGHEST_WASTED_BYTES,
                    rule_name::HIGHEST_USER_WASTED_PERCENT
                )))
            }
        }
        Ok(())
    }

    /// Check the figures against every rule.
    pub fn evaluate(&self, figures: &Figures) -> CiOutcome {
        let efficiency = match self.lowest_efficiency {
            Threshold::Enabled(t) => RuleResult {
                name: rule_name::LOWEST_EFFICIENCY,
                threshold: Some(t),
                value: figures.efficiency,
                status: status(figures.efficiency < t),
            },
            Threshold::Disabled => {
                RuleResult::skipped(rule_name::LOWEST_EFFICIENCY, figures.efficiency)
            }
        };
        let wasted = figures.wasted_bytes as f64;
        let wasted_bytes = match self.highest_wasted_bytes {
            Threshold::Enabled(t) => RuleResult {
                name: rule_name::HIGHEST_WASTED_BYTES,
                threshold: Some(t as f64),
                value: wasted,
                status: status(figures.wasted_bytes > t),
            },
            Threshold::Disabled => RuleResult::skipped(rule_name::HIGHEST_WASTED_BYTES, wasted),
        };
        let user = figures.user_wasted_percent;
        let user_wasted = match self.highest_user_wasted_percent {
            Threshold::Enabled(t) => RuleResult {
                name: rule_name::HIGHEST_USER_WASTED_PERCENT,
                threshold: Some(t),
                value: user,
                status: status(user > t),
            },
            Threshold::Disabled => {
                RuleResult::skipped(rule_name::HIGHEST_USER_WASTED_PERCENT, user)
            }
        };
        let rules = vec![efficiency, wasted_bytes, user_wasted];
        let pass = rules.iter().all(|r| r.status != RuleStatus::Fail);
        CiOutcome { pass, rules }
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
            if name == rule_name::HIGHEST_WASTED_BYTES {
                "a size such as 20MB, 1GiB or a byte count"
            } else {
                "a ratio between 0 and 1"
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

/// One rule's verdict with the value and threshold it compared.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    /// dive's rule name.
    pub name: &'static str,
    /// The threshold, `None` when disabled.
    pub threshold: Option<f64>,
    /// The image's value for the rule.
    pub value: f64,
    /// The verdict.
    pub status: RuleStatus,
}

impl RuleResult {
    fn skipped(name: &'static str, value: f64) -> Self {
        RuleResult {
            name,
            threshold: None,
            value,
            status: RuleStatus::Skip,
        }
    }

    /// A sentence that explains the verdict, with value and threshold.
    pub fn explain(&self) -> String {
        let show = |v: f64| {
            if self.name == rule_name::HIGHEST_WASTED_BYTES {
                format!("{} ({} bytes)", ByteSize(v as u64).display().si(), v as u64)
            } else {
                format!("{v:.4}")
            }
        };
        match (self.status, self.threshold) {
            (RuleStatus::Skip, _) | (_, None) => "rule disabled".to_string(),
            (status, Some(t)) => {
                let op = match (self.name, status) {
                    (rule_name::LOWEST_EFFICIENCY, RuleStatus::Fail) => "<",
                    (rule_name::LOWEST_EFFICIENCY, _) => ">=",
                    (_, RuleStatus::Fail) => ">",
                    _ => "<=",
                };
                format!("value {} {op} threshold {}", show(self.value), show(t))
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
        let count = |s: RuleStatus| self.rules.iter().filter(|r| r.status == s).count();
        out.push_str(&format!(
            "Result: {} [Total:{}] [Passed:{}] [Failed:{}] [Skipped:{}]\n",
            if self.pass { "PASS" } else { "FAIL" },
            self.rules.len(),
            count(RuleStatus::Pass),
            count(RuleStatus::Fail),
            count(RuleStatus::Skip)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(efficiency: f64, wasted: u64, user: f64) -> Figures {
        Figures {
            efficiency,
            wasted_bytes: wasted,
            user_wasted_percent: user,
            size_bytes: 0,
            shadowed_bytes: 0,
            file_count: 0,
            file_bytes: 0,
            inefficiencies: Vec::new(),
        }
    }

    #[test]
    fn defaults_are_dives() {
        let r = Rules::default();
        assert_eq!(r.lowest_efficiency, Threshold::Enabled(0.9));
        assert_eq!(r.highest_wasted_bytes, Threshold::Disabled);
        assert_eq!(r.highest_user_wasted_percent, Threshold::Enabled(0.1));
    }

    #[test]
    fn the_sample_rule_file_holds_the_defaults() {
        let mut r = Rules {
            lowest_efficiency: Threshold::Disabled,
            highest_wasted_bytes: Threshold::Enabled(1),
            highest_user_wasted_percent: Threshold::Disabled,
        };
        r.apply_yaml(include_str!("../assets/dive-ci.yaml"))
            .expect("sample parses");
        assert_eq!(r, Rules::default());
    }

    #[test]
    fn dive_ci_file_is_read_with_sizes_and_disabled() {
        let mut r = Rules::default();
        r.apply_yaml(
            "rules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: disabled\n",
        )
        .expect("valid file");
        assert_eq!(r.lowest_efficiency, Threshold::Enabled(0.95));
        assert_eq!(r.highest_wasted_bytes, Threshold::Enabled(20_000_000));
        assert_eq!(r.highest_user_wasted_percent, Threshold::Disabled);
        r.apply_yaml("rules:\n  highestWastedBytes: 1GiB\n")
            .expect("valid file");
        assert_eq!(r.highest_wasted_bytes, Threshold::Enabled(1 << 30));
        r.apply_yaml("rules:\n  highestWastedBytes: 1234\n")
            .expect("valid file");
        assert_eq!(r.highest_wasted_bytes, Threshold::Enabled(1234));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_reasons() {
        let mut r = Rules::default();
        let e = r
            .apply_yaml("rules:\n  lowestEfficency: 0.9\n")
            .unwrap_err();
        assert!(e.0.contains("lowestEfficency"), "{e}");
        let e = r
            .apply_yaml("rules:\n  lowestEfficiency: 1.5\n")
            .unwrap_err();
        assert!(e.0.contains("between 0 and 1"), "{e}");
        let e = r.apply_yaml("rulez: {}\n").unwrap_err();
        assert!(e.0.contains("rulez"), "{e}");
        let e = r
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
            "rules:\n  lowestEfficiency: 0.5\n  highestUserWastedPercent: 0.3\n",
        )
        .expect("write rules");
        let overrides = RuleOverrides {
            highest_user_wasted_percent: Some("0.2".into()),
            ..RuleOverrides::default()
        };
        let r = Rules::load(None, &dir, &overrides).expect("loads");
        assert_eq!(r.lowest_efficiency, Threshold::Enabled(0.5));
        assert_eq!(r.highest_user_wasted_percent, Threshold::Enabled(0.2));
        let missing = Rules::load(Some(&dir.join("nope")), &dir, &overrides).unwrap_err();
        assert!(missing.0.contains("nope"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn thresholds_compare_as_dive_does() {
        let rules = Rules {
            lowest_efficiency: Threshold::Enabled(0.9),
            highest_wasted_bytes: Threshold::Enabled(1000),
            highest_user_wasted_percent: Threshold::Enabled(0.1),
        };
        // Exactly at the thresholds passes.
        let at = rules.evaluate(&figures(0.9, 1000, 0.1));
        assert!(at.pass);
        let over = rules.evaluate(&figures(0.89, 1001, 0.11));
        assert!(!over.pass);
        assert!(over.rules.iter().all(|r| r.status == RuleStatus::Fail));
        let text = over.render();
        assert!(text.contains("FAIL: lowestEfficiency"), "{text}");
        assert!(
            text.contains("Result: FAIL [Total:3] [Passed:0] [Failed:3]"),
            "{text}"
        );
    }

    #[test]
    fn disabled_rules_are_skipped() {
        let rules = Rules {
            lowest_efficiency: Threshold::Disabled,
            highest_wasted_bytes: Threshold::Disabled,
            highest_user_wasted_percent: Threshold::Disabled,
        };
        let out = rules.evaluate(&figures(0.1, u64::MAX, 1.0));
        assert!(out.pass);
        assert!(out.rules.iter().all(|r| r.status == RuleStatus::Skip));
    }
}
