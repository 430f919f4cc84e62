//! Loading detection rules: Sigma YAML, with Keyscope's stateful kinds in a `keyscope:`
//! block, placeholders (`Field|expand: '%name%'`) filled from data files, and every problem
//! reported, never skipped.
//!
//! A rule file is a standard Sigma rule. Its `detection` selects events; without a
//! `keyscope:` block every selected event is a finding. With one, the selected events feed
//! a stateful kind (see [`Stateful`]) and a finding is raised when that kind says so.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rsigma_parser::{SigmaRule, parse_sigma_yaml};
use serde::Deserialize;
use thiserror::Error;

/// The built-in pack, compiled into the binary. Each entry is (file name, YAML).
pub const BUILTIN_RULES: [(&str, &str); 9] = [
    (
        "ks-token-key-issuer-mismatch.yml",
        include_str!("../../../rules/ks-token-key-issuer-mismatch.yml"),
    ),
    (
        "ks-token-not-issued.yml",
        include_str!("../../../rules/ks-token-not-issued.yml"),
    ),
    (
        "ks-token-revoked-key.yml",
        include_str!("../../../rules/ks-token-revoked-key.yml"),
    ),
    (
        "ks-token-unknown-key-burst.yml",
        include_str!("../../../rules/ks-token-unknown-key-burst.yml"),
    ),
    (
        "ks-key-age.yml",
        include_str!("../../../rules/ks-key-age.yml"),
    ),
    (
        "ks-mail-new-app.yml",
        include_str!("../../../rules/ks-mail-new-app.yml"),
    ),
    (
        "ks-mail-bulk-access.yml",
        include_str!("../../../rules/ks-mail-bulk-access.yml"),
    ),
    (
        "ks-mail-ioc-ip.yml",
        include_str!("../../../rules/ks-mail-ioc-ip.yml"),
    ),
    (
        "ks-mail-ioc-useragent.yml",
        include_str!("../../../rules/ks-mail-ioc-useragent.yml"),
    ),
];

/// The built-in data files (placeholder lists), as (file name, YAML).
pub const BUILTIN_DATA: [(&str, &str); 1] = [(
    "storm-0558.yml",
    include_str!("../../../rules/data/storm-0558.yml"),
)];

/// Largest rule or data file read from a directory.
const MAX_RULE_FILE_BYTES: u64 = 1024 * 1024;

/// Why rules could not be loaded: every problem found, each naming its file.
#[derive(Debug, Error)]
#[error("{} rule problem(s):\n  {}", .0.len(), .0.join("\n  "))]
pub struct LoadError(pub Vec<String>);

/// A stateful kind: what turns selected events into a finding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stateful {
    /// At least `count` selected events with the same `group_by` values within `window`.
    Threshold {
        /// The fields whose values make a group (e.g. the source address).
        group_by: Vec<String>,
        /// How many events raise the finding.
        count: u64,
        /// The sliding window.
        window: Duration,
    },
    /// A value of any of `values` not seen for this `entity` during the last `baseline`,
    /// once the entity has been watched for `baseline` (so a new mailbox's first week
    /// teaches rather than alerts).
    FirstSeen {
        /// The fields that name the entity (e.g. the mailbox).
        entity: Vec<String>,
        /// The fields whose values are learnt per entity (e.g. AppId, ClientAppId).
        values: Vec<String>,
        /// How long a value stays known, and how long an entity is watched before it alerts.
        baseline: Duration,
    },
    /// An entity's volume in the current `window` at least `factor` times its own average
    /// per window over the last `baseline`, and at least `minimum`.
    Volume {
        /// The fields that name the entity.
        entity: Vec<String>,
        /// A numeric field to add up (e.g. OperationCount); each event counts 1 without it.
        #[serde(default)]
        sum: Option<String>,
        /// The bucket.
        window: Duration,
        /// How far back the average goes.
        baseline: Duration,
        /// How many times the average is "far above".
        factor: f64,
        /// The smallest volume that alerts at all.
        minimum: u64,
        /// How long an entity is watched before it may alert.
        learning: Duration,
    },
    /// The selected event's token (`field`, the `jti`) was never issued: no `TokenIssued`
    /// event with that `TokenId` within `retention` before it. Events whose members equal
    /// `verdict` are findings without the join (the validator already joined the ledger).
    NotIssued {
        /// The token id field.
        field: String,
        /// How long an issued token id is remembered (at least the longest token lifetime).
        retention: Duration,
        /// How long an accepted token may wait for its `TokenIssued` record: records reach
        /// the log by different paths (an admin command's issuance goes through the outbox),
        /// so the use can be logged before the issuance. Verdict events do not wait.
        #[serde(default = "default_grace")]
        grace: Duration,
        /// Members that mean "the source already found it not issued".
        #[serde(default)]
        verdict: BTreeMap<String, String>,
    },
    /// The selected event's key (`field`, the `kid`) had been revoked (`KeyRevoked`) before
    /// it. Events whose members equal `verdict` are findings without the join.
    RevokedKey {
        /// The key id field.
        field: String,
        /// Members that mean "the source already found the key revoked".
        #[serde(default)]
        verdict: BTreeMap<String, String>,
    },
    /// The selected event used a key (`field`) that has been active (since `KeyActivated`,
    /// until `KeyRetired` or `KeyRevoked`) for longer than `max_age`. Also checked on the
    /// clock in live detection. One finding per key.
    KeyAge {
        /// The key id field.
        field: String,
        /// The rotation policy.
        max_age: Duration,
    },
}

fn default_grace() -> Duration {
    Duration { micros: 10_000_000 }
}

/// A span of time written `90s`, `15m`, `1h`, `14d` (or a plain number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    /// Microseconds.
    pub micros: i64,
}

impl Duration {
    /// Parses `N`, `Ns`, `Nm`, `Nh` or `Nd` (N a positive whole number).
    pub fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => text.split_at(i),
            None => (text, "s"),
        };
        let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
        let seconds = match unit {
            "s" => n,
            "m" => n.checked_mul(60)?,
            "h" => n.checked_mul(3600)?,
            "d" => n.checked_mul(86_400)?,
            _ => return None,
        };
        Some(Duration {
            micros: seconds.checked_mul(1_000_000)?,
        })
    }

    /// `90s`-style text.
    pub fn display(self) -> String {
        let s = self.micros / 1_000_000;
        if s % 86_400 == 0 {
            format!("{}d", s / 86_400)
        } else if s % 3600 == 0 {
            format!("{}h", s / 3600)
        } else if s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Number(u64),
            Text(String),
        }
        let text = match Text::deserialize(deserializer)? {
            Text::Number(n) => n.to_string(),
            Text::Text(t) => t,
        };
        Duration::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: use a whole number with s, m, h or d, e.g. 15m"
            ))
        })
    }
}

/// One loaded rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its `id` (the built-in pack uses `ks-…`).
    pub id: String,
    /// Its `title`.
    pub title: String,
    /// Its `level` (`informational` … `critical`).
    pub level: String,
    /// Its `description`.
    pub description: String,
    /// The file it came from.
    pub file: String,
    /// The stateful kind, if any.
    pub stateful: Option<Stateful>,
    /// The parsed Sigma rule (placeholders filled in).
    pub sigma: SigmaRule,
}

/// A set of rules ready to compile.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules, in load order (files sorted by name).
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The built-in pack.
    pub fn builtin() -> Result<RuleSet, LoadError> {
        let data: Vec<(String, String)> = BUILTIN_DATA
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        let rules: Vec<(String, String)> = BUILTIN_RULES
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        RuleSet::from_texts(&rules, &data)
    }

    /// Every `*.yml`/`*.yaml` rule in `dir`, with placeholders from `dir/data/*.yml`. The
    /// directory replaces the built-in pack (copy the pack from `rules/` to start from it).
    pub fn from_dir(dir: &Path) -> Result<RuleSet, LoadError> {
        let rules = read_yaml_files(dir)?;
        let data_dir = dir.join("data");
        let data = if data_dir.is_dir() {
            read_yaml_files(&data_dir)?
        } else {
            Vec::new()
        };
        if rules.is_empty() {
            return Err(LoadError(vec![format!(
                "{}: no rule files (*.yml, *.yaml)",
                dir.display()
            )]));
        }
        RuleSet::from_texts(&rules, &data)
    }

    /// Rules from (name, YAML) pairs and placeholder data from (name, YAML) pairs.
    pub fn from_texts(
        rules: &[(String, String)],
        data: &[(String, String)],
    ) -> Result<RuleSet, LoadError> {
        let mut problems = Vec::new();
        let placeholders = load_placeholders(data, &mut problems);
        let mut set = RuleSet::default();
        let mut ids: HashMap<String, String> = HashMap::new();
        for (file, text) in rules {
            match load_rule(file, text, &placeholders) {
                Ok(loaded) => {
                    for rule in loaded {
                        if let Some(first) = ids.insert(rule.id.clone(), file.clone()) {
                            problems.push(format!(
                                "{file}: rule id {:?} is already used by {first}",
                                rule.id
                            ));
                        }
                        set.rules.push(rule);
                    }
                }
                Err(mut errors) => problems.append(&mut errors),
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(LoadError(problems))
        }
    }
}

/// Reads the YAML files of a directory, sorted by name.
fn read_yaml_files(dir: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| LoadError(vec![format!("{}: {e}", dir.display())]))?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yml" || e == "yaml");
        if !is_yaml || !path.is_file() {
            continue;
        }
        let name = path.display().to_string();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_RULE_FILE_BYTES => {
                problems.push(format!(
                    "{name}: {} bytes, more than the {MAX_RULE_FILE_BYTES}-byte limit",
                    meta.len()
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
            Ok(_) => {}
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((name, text)),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(LoadError(problems));
    }
    files.sort();
    Ok(files)
}

/// Reads `placeholders:` maps (name → list of strings) from data files.
fn load_placeholders(
    data: &[(String, String)],
    problems: &mut Vec<String>,
) -> HashMap<String, Vec<String>> {
    #[derive(Deserialize)]
    struct DataFile {
        placeholders: BTreeMap<String, Vec<String>>,
    }
    let mut all = HashMap::new();
    for (file, text) in data {
        match yaml_serde::from_str::<DataFile>(text) {
            Ok(parsed) => {
                for (name, values) in parsed.placeholders {
                    if all.insert(name.clone(), values).is_some() {
                        problems.push(format!("{file}: placeholder {name:?} defined twice"));
                    }
                }
            }
            Err(e) => problems.push(format!("{file}: not a data file with `placeholders:`: {e}")),
        }
    }
    all
}

/// Parses one rule file (a single Sigma rule; collections of several are accepted too).
fn load_rule(
    file: &str,
    text: &str,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<Vec<Rule>, Vec<String>> {
    let expanded =
        expand_placeholders(text, placeholders).map_err(|e| vec![format!("{file}: {e}")])?;
    let collection = parse_sigma_yaml(&expanded).map_err(|e| vec![format!("{file}: {e}")])?;
    let mut problems: Vec<String> = collection
        .errors
        .iter()
        .map(|e| format!("{file}: {e}"))
        .collect();
    if !collection.correlations.is_empty() || !collection.filters.is_empty() {
        problems.push(format!(
            "{file}: Sigma correlation and filter rules are not supported; use a `keyscope:` block"
        ));
    }
    if collection.rules.is_empty() && problems.is_empty() {
        problems.push(format!("{file}: no Sigma rule in the file"));
    }
    let mut rules = Vec::new();
    for sigma in collection.rules {
        let Some(id) = sigma.id.clone().filter(|id| !id.trim().is_empty()) else {
            problems.push(format!("{file}: rule {:?} has no id", sigma.title));
            continue;
        };
        let stateful = match sigma.custom_attributes.get("keyscope") {
            None => None,
            Some(block) => match yaml_serde::from_value::<Stateful>(block.clone()) {
                Ok(kind) => match check_stateful(&kind) {
                    Ok(()) => Some(kind),
                    Err(why) => {
                        problems.push(format!("{file}: rule {id}: keyscope block: {why}"));
                        continue;
                    }
                },
                Err(e) => {
                    problems.push(format!("{file}: rule {id}: keyscope block: {e}"));
                    continue;
                }
            },
        };
        // The compiler is the judge of the detection: a rule it refuses is a problem here,
        // at load time, rather than a rule that silently never matches.
        if let Err(e) = rsigma_eval::compile_rule(&sigma) {
            problems.push(format!("{file}: rule {id}: {e}"));
            continue;
        }
        rules.push(Rule {
            id,
            title: sigma.title.clone(),
            level: sigma
                .level
                .map_or_else(|| "medium".to_owned(), |l| l.as_str().to_owned()),
            description: sigma.description.clone().unwrap_or_default(),
            file: file.to_owned(),
            stateful,
            sigma,
        });
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn check_stateful(kind: &Stateful) -> Result<(), String> {
    let non_empty = |fields: &[String], what: &str| {
        if fields.is_empty() || fields.iter().any(|f| f.trim().is_empty()) {
            Err(format!("{what} needs at least one field name"))
        } else {
            Ok(())
        }
    };
    match kind {
        Stateful::Threshold {
            group_by, count, ..
        } => {
            non_empty(group_by, "group_by")?;
            if *count == 0 {
                return Err("count must be at least 1".into());
            }
        }
        Stateful::FirstSeen { entity, values, .. } => {
            non_empty(entity, "entity")?;
            non_empty(values, "values")?;
        }
        Stateful::Volume {
            entity,
            window,
            baseline,
            factor,
            ..
        } => {
            non_empty(entity, "entity")?;
            if baseline <= window {
                return Err("baseline must be longer than window".into());
            }
            if !(factor.is_finite() && *factor >= 1.0) {
                return Err("factor must be a number of at least 1".into());
            }
        }
        Stateful::NotIssued { field, .. }
        | Stateful::RevokedKey { field, .. }
        | Stateful::KeyAge { field, .. } => non_empty(std::slice::from_ref(field), "field")?,
    }
    Ok(())
}

/// Replaces `Field|expand: '%name%'` (Sigma's placeholder syntax) with `Field: [values…]`
/// from the data files, before the Sigma parser sees the rule. An unknown placeholder is an
/// error: a rule with an empty list would silently never match.
fn expand_placeholders(
    text: &str,
    placeholders: &HashMap<String, Vec<String>>,
) -> Result<String, String> {
    use yaml_serde::Value;
    if !text.contains("|expand") {
        return Ok(text.to_owned());
    }
    let mut document: Value =
        yaml_serde::from_str(text).map_err(|e| format!("YAML parse error: {e}"))?;
    let Some(detection) = document
        .as_mapping_mut()
        .and_then(|m| m.get_mut("detection"))
        .and_then(Value::as_mapping_mut)
    else {
        return Ok(text.to_owned());
    };
    for (_, selection) in detection.iter_mut() {
        let Some(map) = selection.as_mapping_mut() else {
            continue;
        };
        let keys: Vec<Value> = map.keys().cloned().collect();
        for key in keys {
            let Some(name) = key.as_str() else { continue };
            if !name.split('|').any(|m| m == "expand") {
                continue;
            }
            let field: Vec<&str> = name.split('|').filter(|m| *m != "expand").collect();
            let new_key = field.join("|");
            let value = map.remove(&key).unwrap_or(Value::Null);
            let wanted: Vec<String> = match value {
                Value::String(s) => vec![s],
                Value::Sequence(items) => items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => return Err(format!("{name}: expand needs '%placeholder%' values")),
            };
            let mut values = Vec::new();
            for placeholder in wanted {
                let Some(inner) = placeholder
                    .strip_prefix('%')
                    .and_then(|p| p.strip_suffix('%'))
                else {
                    return Err(format!("{name}: {placeholder:?} is not a %placeholder%"));
                };
                let list = placeholders.get(inner).ok_or_else(|| {
                    format!("{name}: unknown placeholder %{inner}% (define it in a data file)")
                })?;
                if list.is_empty() {
                    return Err(format!("{name}: placeholder %{inner}% is empty"));
                }
                values.extend(list.iter().cloned().map(Value::String));
            }
            map.insert(Value::String(new_key), Value::Sequence(values));
        }
    }
    yaml_serde::to_string(&document).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_builtin_pack_loads() {
        let set = RuleSet::builtin().unwrap();
        let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "ks-token-key-issuer-mismatch",
            "ks-token-not-issued",
            "ks-token-revoked-key",
            "ks-token-unknown-key-burst",
            "ks-key-age",
            "ks-mail-new-app",
            "ks-mail-bulk-access",
            "ks-mail-ioc-ip",
            "ks-mail-ioc-useragent",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("90s").unwrap().micros, 90_000_000);
        assert_eq!(Duration::parse("2h").unwrap().display(), "2h");
        assert_eq!(Duration::parse("14d").unwrap().micros, 14 * 86_400_000_000);
        for bad in ["", "0s", "-1m", "1w", "1.5h", "99999999999999999d"] {
            assert!(Duration::parse(bad).is_none(), "{bad}");
        }
    }

    fn rule(body: &str) -> String {
        format!("title: t\nid: x-1\nlogsource: {{product: keyscope}}\nlevel: high\n{body}")
    }

    #[test]
    fn every_problem_is_reported_with_its_file() {
        let good = rule("detection:\n  sel:\n    Operation: A\n  condition: sel\n");
        let bad_yaml = "title: [".to_owned();
        let bad_condition = rule("detection:\n  sel:\n    Operation: A\n  condition: nothere\n");
        let bad_kind = rule(
            "detection:\n  sel:\n    Operation: A\n  condition: sel\nkeyscope:\n  kind: magic\n",
        );
        let bad_duration = rule(
            "detection:\n  sel:\n    Operation: A\n  condition: sel\nkeyscope:\n  kind: threshold\n  group_by: [ClientIPAddress]\n  count: 3\n  window: soon\n",
        );
        let unknown_placeholder =
            rule("detection:\n  sel:\n    ClientIPAddress|expand: '%nope%'\n  condition: sel\n");
        let err = RuleSet::from_texts(
            &[
                ("good.yml".into(), good.clone()),
                ("bad_yaml.yml".into(), bad_yaml),
                ("bad_condition.yml".into(), bad_condition),
                ("bad_kind.yml".into(), bad_kind),
                ("bad_duration.yml".into(), bad_duration),
                ("unknown_placeholder.yml".into(), unknown_placeholder),
                ("dup.yml".into(), good),
            ],
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        for file in [
            "bad_yaml.yml",
            "bad_condition.yml",
            "bad_kind.yml",
            "bad_duration.yml",
            "unknown_placeholder.yml",
            "dup.yml",
        ] {
            assert!(text.contains(file), "{file} not reported in:\n{text}");
        }
        assert!(!text.contains("good.yml:"), "{text}");
        assert!(text.contains("soon"), "{text}");
        assert!(text.contains("%nope%"), "{text}");
    }

    #[test]
    fn placeholders_expand_into_lists() {
        let text =
            rule("detection:\n  sel:\n    ClientIPAddress|expand: '%ips%'\n  condition: sel\n");
        let data = "placeholders:\n  ips: [192.0.2.1, 192.0.2.2]\n";
        let set = RuleSet::from_texts(&[("r.yml".into(), text)], &[("d.yml".into(), data.into())])
            .unwrap();
        let debug = format!("{:?}", set.rules[0].sigma.detection);
        assert!(debug.contains("192.0.2.2"), "{debug}");
    }
}
