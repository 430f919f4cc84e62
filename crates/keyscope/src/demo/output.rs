//! How the drill tells its story: numbered steps, one line per action with the actor in an
//! aligned column, and the summary table. Colour only on a terminal and without `NO_COLOR`.
//! With `--json` the narrative goes to stderr and everything is also recorded for the one
//! JSON document on stdout.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde_json::{Value, json};

/// Who acts on a line of the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Actor {
    /// The drill itself (set-up, bookkeeping).
    Drill,
    /// The operator (admin commands).
    Operator,
    /// A genuine user with the regular mail client.
    User,
    /// The attacker.
    Attacker,
    /// Keyscope's services answering.
    Keyscope,
    /// Live detection.
    Detection,
    /// The deliberately naive 2023-style validator (`--naive`).
    Naive,
}

impl Actor {
    fn label(self) -> &'static str {
        match self {
            Actor::Drill => "drill",
            Actor::Operator => "operator",
            Actor::User => "user",
            Actor::Attacker => "attacker",
            Actor::Keyscope => "keyscope",
            Actor::Detection => "detection",
            Actor::Naive => "naive 2023",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Actor::Drill => DIM,
            Actor::Operator => BLUE,
            Actor::User => CYAN,
            Actor::Attacker => YELLOW,
            Actor::Keyscope => GREEN,
            Actor::Detection => MAGENTA,
            Actor::Naive => RED,
        }
    }
}

/// Width of the actor column.
const ACTOR_WIDTH: usize = 10;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BLUE: &str = "\x1b[34m";
const MAGENTA: &str = "\x1b[35m";
const CYAN: &str = "\x1b[36m";

/// One row of the summary: an attack (or a control), what should happen, what did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// A stable identifier (for machines and tests).
    pub id: &'static str,
    /// The attack, in a few words.
    pub attack: String,
    /// The expected outcome.
    pub expected: String,
    /// The observed outcome, in the same words as `expected` when the defence held.
    pub observed: String,
    /// Measurements and particulars (latency, counts, kids).
    pub detail: String,
}

impl Row {
    /// Whether the defence held: the observed outcome is the expected one.
    pub fn held(&self) -> bool {
        self.expected == self.observed
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "attack": self.attack,
            "expected": self.expected,
            "observed": self.observed,
            "held": self.held(),
            "detail": self.detail,
        })
    }
}

/// The narrator.
pub(super) struct Out {
    json: bool,
    colour: bool,
    started: Instant,
    steps: Vec<Value>,
}

impl Out {
    pub fn new(json: bool) -> Out {
        // The story goes to stdout, or to stderr when stdout carries the JSON document.
        let terminal = if json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            json,
            colour: terminal && !no_colour,
            started: Instant::now(),
            steps: Vec::new(),
        }
    }

    fn emit(&self, text: &str) {
        if self.json {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    fn paint(&self, colour: &str, text: &str) -> String {
        if self.colour {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// The title block.
    pub fn banner(&mut self, title: &str, lines: &[(&str, String)]) {
        self.emit(&self.paint(BOLD, title));
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in lines {
            self.emit(&format!("  {}  {value}", self.paint(DIM, &pad(key, width))));
        }
    }

    /// Starts a numbered step.
    pub fn step(&mut self, title: &str) {
        let number = self.steps.len() + 1;
        self.emit("");
        self.emit(&self.paint(BOLD, &format!("{number:>2}  {title}")));
        self.steps
            .push(json!({"step": number, "title": title, "events": []}));
    }

    /// One line of the current step. `ok` marks a check: `Some(true)` passed, `Some(false)`
    /// failed.
    pub fn say(&mut self, actor: Actor, ok: Option<bool>, text: &str) {
        let mark = match ok {
            Some(true) => self.paint(GREEN, "✓"),
            Some(false) => self.paint(RED, "✗"),
            None => " ".to_owned(),
        };
        let label = self.paint(actor.colour(), &pad(actor.label(), ACTOR_WIDTH));
        self.emit(&format!("    {label} {mark} {text}"));
        let at_ms = millis(self.started.elapsed());
        let event = json!({"actor": actor.label(), "ok": ok, "text": text, "at_ms": at_ms});
        if let Some(events) = self
            .steps
            .last_mut()
            .and_then(|s| s.get_mut("events"))
            .and_then(Value::as_array_mut)
        {
            events.push(event);
        }
    }

    /// The summary table and the verdict line.
    pub fn summary(&mut self, rows: &[Row], seconds: f64) {
        self.emit("");
        self.emit(&self.paint(BOLD, "Summary"));
        let table = table(rows);
        for (i, line) in table.lines.iter().enumerate() {
            let held = table.held.get(i).copied().flatten();
            let text = match held {
                None => self.paint(BOLD, line),
                Some(false) => self.paint(RED, line),
                Some(true) => line.clone(),
            };
            let held = match held {
                Some(true) => self.paint(GREEN, "yes"),
                Some(false) => self.paint(RED, "NO"),
                None => self.paint(BOLD, "HELD"),
            };
            self.emit(&format!("  {text}{held}"));
        }
        let failed = rows.iter().filter(|r| !r.held()).count();
        self.emit("");
        if failed == 0 {
            self.emit(&self.paint(
                GREEN,
                &format!(
                    "Every defence held ({} of {}) in {seconds:.1} s.",
                    rows.len(),
                    rows.len()
                ),
            ));
        } else {
            self.emit(&self.paint(
                RED,
                &format!(
                    "{failed} of {} defences did NOT hold ({seconds:.1} s).",
                    rows.len()
                ),
            ));
        }
    }

    /// A closing remark (where the data went).
    pub fn note(&self, text: &str) {
        self.emit(&self.paint(DIM, text));
    }

    pub fn steps(&self) -> Value {
        Value::Array(self.steps.clone())
    }
}

/// The summary as aligned text lines without the HELD column (which is coloured by the
/// caller): the header first, then one line per row; `held[i]` is `None` for the header.
pub(super) struct Table {
    pub lines: Vec<String>,
    pub held: Vec<Option<bool>>,
}

pub(super) fn table(rows: &[Row]) -> Table {
    let header = ["#", "ATTACK", "EXPECTED", "OBSERVED"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            [
                (i + 1).to_string(),
                r.attack.clone(),
                r.expected.clone(),
                r.observed.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths.iter()).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:>width$}"));
            } else {
                out.push_str(&pad(cell, *width));
            }
            out.push_str("  ");
        }
        out
    };
    let mut lines = vec![line(header)];
    let mut held = vec![None];
    for (row, cells) in rows.iter().zip(cells.iter()) {
        let [number, attack, expected, observed] = cells;
        lines.push(line(
            [number, attack, expected, observed].map(String::as_str),
        ));
        held.push(Some(row.held()));
    }
    Table { lines, held }
}

/// Left-aligns `text` in `width` characters (never cuts).
pub(super) fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let mut out = text.to_owned();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    out
}

pub(super) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn row(id: &'static str, attack: &str, expected: &str, observed: &str) -> Row {
        Row {
            id,
            attack: attack.into(),
            expected: expected.into(),
            observed: observed.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn table_columns_line_up() {
        let rows = [
            row("a", "short", "refused x", "refused x"),
            row("b", "a much longer attack ✓", "e", "accepted"),
        ];
        let t = table(&rows);
        assert_eq!(t.lines.len(), 3);
        assert_eq!(t.held, vec![None, Some(true), Some(false)]);
        // Every line has the same width in characters, and each column starts at the same
        // character offset in every line.
        let widths: Vec<usize> = t.lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{:?}", t.lines);
        let column = |line: &str, word: &str| {
            line.find(word)
                .map(|byte| line[..byte].chars().count())
                .unwrap()
        };
        assert_eq!(
            column(&t.lines[0], "EXPECTED"),
            column(&t.lines[1], "refused x")
        );
        assert_eq!(
            column(&t.lines[0], "OBSERVED"),
            column(&t.lines[2], "accepted")
        );
        assert!(t.lines[1].starts_with("1  short"));
    }

    #[test]
    fn held_means_observed_equals_expected() {
        assert!(row("a", "x", "refused y", "refused y").held());
        assert!(!row("a", "x", "refused y", "accepted").held());
        let json = row("a", "x", "e", "o").to_json();
        assert_eq!(json.get("held"), Some(&Value::Bool(false)));
        assert_eq!(json.get("id").and_then(Value::as_str), Some("a"));
    }

    #[test]
    fn pad_counts_characters_not_bytes() {
        assert_eq!(pad("é", 3), "é  ");
        assert_eq!(pad("long", 2), "long");
    }
}
