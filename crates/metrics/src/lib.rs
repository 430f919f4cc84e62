//! Keyscope's metrics: counters, gauges and histograms, in families with label sets, rendered
//! in the Prometheus text exposition format 0.0.4.
//!
//! Built for a service that labels metrics with values taken from hostile input (a refusal
//! reason, a route, a tenant): every [`Family`] has a cap on its number of label sets and
//! refuses new ones beyond it, counting each refusal, so that no input can grow memory or the
//! scrape without bound. Updates are atomics on an existing series (a read lock to find it);
//! only the first use of a label set takes a write lock.
//!
//! Pure: no I/O, no threads, std only. [`text`] writes the format and reads it back strictly
//! (tests use the reader to check everything the writer produces).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod family;
mod registry;
pub mod text;
mod value;

pub use family::{Family, Metric};
pub use registry::{Collector, Registry};
pub use value::{Buckets, Counter, Gauge, Histogram, HistogramSnapshot};

use std::fmt;

/// What can be wrong when a metric is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsError {
    /// Not a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    InvalidName(String),
    /// Not a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`), a label
    /// name given twice, or `le` on a histogram.
    InvalidLabelName(String),
    /// Histogram bucket bounds that are not finite and strictly increasing.
    InvalidBuckets(String),
    /// A second metric of the same name in one registry.
    Duplicate(String),
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::InvalidName(name) => write!(f, "invalid metric name {name:?}"),
            MetricsError::InvalidLabelName(name) => write!(f, "invalid label name {name:?}"),
            MetricsError::InvalidBuckets(why) => write!(f, "invalid histogram buckets: {why}"),
            MetricsError::Duplicate(name) => write!(f, "metric {name:?} is defined twice"),
        }
    }
}

impl std::error::Error for MetricsError {}

/// Whether `name` is a valid metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (names starting with `__` are reserved).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "_x", "ns:sub_total", "Z9"] {
            assert!(valid_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!valid_metric_name(bad), "{bad}");
        }
        for good in ["a", "_x", "route", "le"] {
            assert!(valid_label_name(good), "{good}");
        }
        for bad in ["", "__name__", "a:b", "1a", "a.b"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
    }
}
