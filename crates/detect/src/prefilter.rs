//! A byte-level pre-filter for hunts: most lines of a Unified Audit Log export cannot match
//! any rule, and parsing them into JSON trees is where a hunt spends its time.
//!
//! From the rules' Sigma detections we derive *anchors*: strings of which at least one must
//! appear in a record's values for any rule to select it (a field compared with a plain
//! string, with or without `contains`/`startswith`/`endswith`). Sigma compares strings
//! case-insensitively, so the search is ASCII case-insensitive. A line containing none of the
//! anchors, nor the names of the records that feed shared state, is skipped unparsed.
//!
//! Soundness: the raw JSON text must contain a value's characters as the rule writes them.
//! JSON can also write any character as `\uXXXX` and `/` as `\/`; a line with either escape is
//! never skipped. `"` and `\` are matched in their escaped form (`\"`, `\\`), which is the only
//! other way to write them. A rule with anything else (regular expressions, CIDR, numbers,
//! wildcards, non-ASCII text, negations, quantified selectors, IPv6 text that normalisation
//! may rewrite) makes the whole rule set unanchored, and nothing is skipped.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use rsigma_parser::{ConditionExpr, Detection, DetectionItem, Modifier, SigmaValue, StringPart};

use crate::rules::{Rule, RuleSet};

/// Operations that feed the detector's shared state whatever the rules select.
const STATE_FEEDERS: [&str; 6] = [
    "TokenIssued",
    "KeyCreated",
    "KeyActivated",
    "KeyRetired",
    "KeyRevoked",
    "Alert",
];

/// Shortest anchor worth searching for (a shorter one would match nearly every line).
const MIN_ANCHOR: usize = 4;

/// The pre-filter of a rule set.
#[derive(Debug, Clone)]
pub struct Prefilter {
    anchors: AhoCorasick,
    count: usize,
}

impl Prefilter {
    /// The pre-filter for `set`, or `None` when some rule cannot be anchored (then every
    /// line must be parsed).
    pub fn for_rules(set: &RuleSet) -> Option<Prefilter> {
        let mut all: Vec<String> = STATE_FEEDERS.iter().map(|s| (*s).to_owned()).collect();
        for rule in &set.rules {
            all.extend(rule_anchors(rule)?);
        }
        all.sort();
        all.dedup();
        let anchors = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            // A DFA: a few hundred KiB for the pack, and the fastest scan per byte.
            .kind(Some(AhoCorasickKind::DFA))
            .match_kind(MatchKind::LeftmostFirst)
            .build(&all)
            .ok()?;
        Some(Prefilter {
            anchors,
            count: all.len(),
        })
    }

    /// How many strings are searched for.
    pub fn anchor_count(&self) -> usize {
        self.count
    }

    /// False only when no rule can select the record whose raw JSON text is `raw`.
    pub fn may_match(&self, raw: &[u8]) -> bool {
        if memchr::memmem::find(raw, b"\\u").is_some()
            || memchr::memmem::find(raw, b"\\/").is_some()
        {
            return true;
        }
        self.anchors.is_match(raw)
    }
}

/// The anchors of one rule: every condition must be anchored (they are alternatives).
fn rule_anchors(rule: &Rule) -> Option<Vec<String>> {
    let detections = &rule.sigma.detection;
    if detections.conditions.is_empty() {
        return None;
    }
    let mut all = Vec::new();
    for condition in &detections.conditions {
        all.extend(condition_anchors(condition, rule)?);
    }
    Some(all)
}

fn condition_anchors(condition: &ConditionExpr, rule: &Rule) -> Option<Vec<String>> {
    match condition {
        ConditionExpr::Identifier(name) => detection_anchors(rule.sigma.detection.named.get(name)?),
        // Every alternative must be anchored.
        ConditionExpr::Or(parts) => {
            let mut all = Vec::new();
            for part in parts {
                all.extend(condition_anchors(part, rule)?);
            }
            Some(all)
        }
        // One anchored conjunct is enough: the most selective one.
        ConditionExpr::And(parts) => {
            most_selective(parts.iter().filter_map(|p| condition_anchors(p, rule)))
        }
        ConditionExpr::Not(_) | ConditionExpr::Selector { .. } => None,
    }
}

/// Of several sufficient anchor sets, the one least likely to match an unrelated line: its
/// shortest string is the longest, then it has the fewest strings.
fn most_selective(sets: impl Iterator<Item = Vec<String>>) -> Option<Vec<String>> {
    sets.max_by_key(|set| {
        let shortest = set.iter().map(String::len).min().unwrap_or(0);
        (shortest, std::cmp::Reverse(set.len()))
    })
}

fn detection_anchors(detection: &Detection) -> Option<Vec<String>> {
    match detection {
        Detection::AllOf(items) => most_selective(items.iter().filter_map(item_anchors)),
        Detection::AnyOf(parts) => {
            let mut all = Vec::new();
            for part in parts {
                all.extend(detection_anchors(part)?);
            }
            Some(all)
        }
        Detection::Keywords(values) => values.iter().map(value_anchor).collect(),
        _ => None,
    }
}

/// A field item is anchored when its values are all plain strings (one of them must match).
fn item_anchors(item: &DetectionItem) -> Option<Vec<String>> {
    let allowed = item.field.modifiers.iter().all(|m| {
        matches!(
            m,
            Modifier::Contains
                | Modifier::StartsWith
                | Modifier::EndsWith
                | Modifier::Cased
                | Modifier::All
                | Modifier::Expand
        )
    });
    if !allowed || item.values.is_empty() {
        return None;
    }
    item.values.iter().map(value_anchor).collect()
}

fn value_anchor(value: &SigmaValue) -> Option<String> {
    let SigmaValue::String(text) = value else {
        return None;
    };
    let mut plain = String::new();
    for part in &text.parts {
        match part {
            StringPart::Plain(p) => plain.push_str(p),
            StringPart::Special(_) => return None,
        }
    }
    let ipv6_like = plain.matches(':').count() >= 2
        && plain
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    if plain.len() < MIN_ANCHOR
        || ipv6_like
        || !plain.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        return None;
    }
    // As a JSON serialiser writes it inside a string.
    Some(plain.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_builtin_pack_is_anchored_and_skips_only_what_cannot_match() {
        let prefilter = Prefilter::for_rules(&RuleSet::builtin().unwrap()).unwrap();
        assert!(prefilter.anchor_count() > 40);
        let skip = br#"{"Operation":"FileAccessed","ClientIP":"198.51.100.7","UserId":"a@b"}"#;
        assert!(!prefilter.may_match(skip));
        for keep in [
            &br#"{"Operation":"mailitemsaccessed"}"#[..],
            br#"{"Operation":"FileAccessed","ClientIP":"51.89.156.153:443"}"#,
            br#"{"Operation":"TokenIssued"}"#,
            br#"{"Operation":"\u0046ileAccessed"}"#,
            br#"{"UA":"Mozilla\/5.0"}"#,
            br#"{"UA":"\"Microsoft Edge\";v=\"113\", \"Chromium\";v=\"113\", \"Not-A.Brand\";v=\"24\""}"#,
        ] {
            assert!(prefilter.may_match(keep), "{}", String::from_utf8_lossy(keep));
        }
    }

    #[test]
    fn a_rule_that_cannot_be_anchored_turns_the_filter_off() {
        let rule = |body: &str| {
            format!("title: t\nid: x-1\nlogsource: {{product: m365}}\ndetection:\n{body}")
        };
        for body in [
            "  sel:\n    Count|gt: 5\n  condition: sel\n",
            "  sel:\n    UserId|re: '^a'\n  condition: sel\n",
            "  sel:\n    Operation: X-Long\n  condition: not sel\n",
            "  sel:\n    UserId: 'adm*n'\n  condition: sel\n",
            "  sel:\n    ClientIPAddress|cidr: 10.0.0.0/8\n  condition: sel\n",
        ] {
            let set = RuleSet::from_texts(&[("r.yml".into(), rule(body))], &[]).unwrap();
            assert!(Prefilter::for_rules(&set).is_none(), "{body}");
        }
        let anchored = rule(
            "  a:\n    Operation: LongEnough\n  b:\n    UserId|contains: admin\n  condition: a and b\n",
        );
        let set = RuleSet::from_texts(&[("r.yml".into(), anchored)], &[]).unwrap();
        assert!(Prefilter::for_rules(&set).is_some());
    }
}
