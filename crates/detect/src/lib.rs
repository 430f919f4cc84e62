//! Keyscope's detection and response logic, free of I/O other than reading input files.
//!
//! - [`record`]: one event as the rules see it, with Microsoft 365 Unified Audit Log names.
//! - [`rules`]: loading Sigma rules with Keyscope's stateful kinds; the built-in pack.
//! - [`engine`]: evaluating them over a stream of records, live or in a hunt.
//! - [`time`]: the time formats the sources use.

pub mod engine;
pub mod import;
pub mod prefilter;
pub mod record;
pub mod report;
pub mod rules;
pub mod time;

pub use engine::{Detector, Evidence, Finding};
pub use prefilter::Prefilter;
pub use record::{CANONICAL_FIELDS, Origin, Record};
pub use report::IncidentReport;
pub use rules::{LoadError, Rule, RuleSet, Stateful};
