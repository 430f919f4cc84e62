//! A metric with labels: one series per label set, at most `cap` of them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::text;
use crate::value::{Buckets, Counter, Gauge, Histogram};
use crate::{MetricsError, valid_label_name, valid_metric_name};

/// A kind of series value a [`Family`] holds.
pub trait Metric: Send + Sync + Sized {
    /// The `# TYPE` word.
    const TYPE: &'static str;
    /// What a new series needs (histogram buckets).
    type Config: Send + Sync;
    /// A new series at zero.
    fn create(config: &Self::Config) -> Self;
    /// Writes this series' sample lines.
    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String);
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    type Config = ();
    fn create(_: &()) -> Counter {
        Counter::new()
    }
    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        text::write_sample_u64(out, name, labels, self.get());
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    type Config = ();
    fn create(_: &()) -> Gauge {
        Gauge::new()
    }
    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        text::write_sample(out, name, labels, self.get());
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    type Config = Buckets;
    fn create(buckets: &Buckets) -> Histogram {
        Histogram::new(buckets)
    }
    fn write(&self, name: &str, labels: &[(&str, &str)], out: &mut String) {
        text::write_histogram(out, name, labels, &self.snapshot());
    }
}

/// One series: its label values and its value.
struct Series<M> {
    values: Box<[Box<str>]>,
    metric: M,
}

/// A metric family: a name, a help text, label names, and one series per label set seen,
/// at most `cap` series. Beyond the cap a new label set is refused (its update is dropped and
/// counted in [`Family::refused`]); existing series keep counting.
pub struct Family<M: Metric> {
    name: String,
    help: String,
    label_names: Box<[String]>,
    cap: usize,
    config: M::Config,
    hasher: RandomState,
    /// Series by the hash of their label values (collisions share a bucket).
    series: RwLock<HashMap<u64, Vec<Series<M>>>>,
    count: AtomicU64,
    refused: AtomicU64,
}

impl<M: Metric> std::fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .field("labels", &self.label_names)
            .field("series", &self.len())
            .field("cap", &self.cap)
            .field("refused", &self.refused())
            .finish()
    }
}

impl<M: Metric> Family<M> {
    /// A family with its configuration (histogram buckets; `()` otherwise). `cap` is the
    /// largest number of label sets kept (at least 1).
    pub fn with_config(
        name: &str,
        help: &str,
        label_names: &[&str],
        cap: usize,
        config: M::Config,
    ) -> Result<Family<M>, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName(name.to_owned()));
        }
        for (index, label) in label_names.iter().enumerate() {
            let repeated = label_names.get(..index).unwrap_or_default().contains(label);
            let reserved = M::TYPE == "histogram" && *label == "le";
            if !valid_label_name(label) || repeated || reserved {
                return Err(MetricsError::InvalidLabelName((*label).to_owned()));
            }
        }
        Ok(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            label_names: label_names.iter().map(|l| (*l).to_owned()).collect(),
            cap: cap.max(1),
            config,
            hasher: RandomState::new(),
            series: RwLock::new(HashMap::new()),
            count: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        usize::try_from(self.count.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Whether no series exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Updates refused: a new label set beyond the cap, or the wrong number of values.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn hash(&self, values: &[&str]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for value in values {
            value.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Runs `update` on the series of `values` (one per label name, in order), creating it
    /// if the cap allows. Returns `None` when refused.
    pub fn with<R>(&self, values: &[&str], update: impl FnOnce(&M) -> R) -> Option<R> {
        if values.len() != self.label_names.len() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let hash = self.hash(values);
        let same = |series: &&Series<M>| {
            series.values.len() == values.len()
                && series.values.iter().zip(values).all(|(a, b)| **a == **b)
        };
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = map.get(&hash).and_then(|list| list.iter().find(same)) {
                return Some(update(&series.metric));
            }
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let full = self.len() >= self.cap;
        let list = map.entry(hash).or_default();
        if let Some(series) = list.iter().find(same) {
            return Some(update(&series.metric));
        }
        if full {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let series = Series {
            values: values.iter().map(|v| Box::from(*v)).collect(),
            metric: M::create(&self.config),
        };
        let result = update(&series.metric);
        list.push(series);
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    /// Writes `# HELP`, `# TYPE` and every series, ordered by label values.
    pub fn render(&self, out: &mut String) {
        text::write_header(out, &self.name, &self.help, M::TYPE);
        let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<&Series<M>> = map.values().flatten().collect();
        all.sort_by(|a, b| a.values.cmp(&b.values));
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(self.label_names.len());
        for series in all {
            labels.clear();
            labels.extend(
                self.label_names
                    .iter()
                    .map(String::as_str)
                    .zip(series.values.iter().map(|v| &**v)),
            );
            series.metric.write(&self.name, &labels, out);
        }
    }
}

impl<M: Metric<Config = ()>> Family<M> {
    /// A counter or gauge family.
    pub fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        cap: usize,
    ) -> Result<Family<M>, MetricsError> {
        Family::with_config(name, help, label_names, cap, ())
    }
}

impl Family<Counter> {
    /// Adds one to the series of `values`; `false` when refused.
    pub fn inc(&self, values: &[&str]) -> bool {
        self.with(values, Counter::inc).is_some()
    }

    /// The count of `values`' series (0 when it does not exist).
    pub fn get(&self, values: &[&str]) -> u64 {
        self.peek(values, Counter::get).unwrap_or(0)
    }
}

impl Family<Gauge> {
    /// Sets the series of `values`; `false` when refused.
    pub fn set(&self, values: &[&str], value: f64) -> bool {
        self.with(values, |g| g.set(value)).is_some()
    }
}

impl Family<Histogram> {
    /// Records an observation in the series of `values`; `false` when refused.
    pub fn observe(&self, values: &[&str], value: f64) -> bool {
        self.with(values, |h| h.observe(value)).is_some()
    }
}

impl<M: Metric> Family<M> {
    /// Reads the series of `values` without creating it.
    pub fn peek<R>(&self, values: &[&str], read: impl FnOnce(&M) -> R) -> Option<R> {
        let hash = self.hash(values);
        let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&hash)?
            .iter()
            .find(|s| {
                s.values.len() == values.len()
                    && s.values.iter().zip(values).all(|(a, b)| **a == **b)
            })
            .map(|s| read(&s.metric))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_are_checked() {
        assert!(Family::<Counter>::new("ok_total", "h", &["a", "b"], 4).is_ok());
        assert!(Family::<Counter>::new("bad-name", "h", &[], 4).is_err());
        assert!(Family::<Counter>::new("x", "h", &["a", "a"], 4).is_err());
        assert!(Family::<Counter>::new("x", "h", &["__a"], 4).is_err());
        assert!(
            Family::<Histogram>::with_config("x", "h", &["le"], 4, Buckets::latency()).is_err()
        );
        assert!(Family::<Gauge>::new("x", "h", &["le"], 4).is_ok());
    }

    #[test]
    fn the_cap_refuses_new_label_sets_and_counts_them() {
        let family = Family::<Counter>::new("hits_total", "Hits.", &["who"], 3).unwrap();
        for who in ["a", "b", "c"] {
            assert!(family.inc(&[who]));
        }
        // Existing series keep counting; new ones are refused and counted.
        assert!(family.inc(&["a"]));
        for n in 0..1000 {
            assert!(!family.inc(&[&format!("attacker-{n}")]));
        }
        assert_eq!(family.len(), 3);
        assert_eq!(family.refused(), 1000);
        assert_eq!(family.get(&["a"]), 2);
        assert_eq!(family.get(&["attacker-1"]), 0);
        // Wrong arity is refused too.
        assert!(!family.inc(&[]));
        assert!(!family.inc(&["a", "b"]));
        assert_eq!(family.refused(), 1002);
    }

    #[test]
    fn label_sets_are_told_apart_exactly() {
        // Values that concatenate alike are different series.
        let family = Family::<Counter>::new("x_total", "X.", &["a", "b"], 10).unwrap();
        family.inc(&["ab", "c"]);
        family.inc(&["a", "bc"]);
        family.inc(&["a", "bc"]);
        assert_eq!(family.len(), 2);
        assert_eq!(family.get(&["ab", "c"]), 1);
        assert_eq!(family.get(&["a", "bc"]), 2);
    }

    #[test]
    fn concurrent_first_use_creates_one_series() {
        let family = Arc::new(Family::<Counter>::new("c_total", "C.", &["k"], 100).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let family = Arc::clone(&family);
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        family.inc(&[&(i % 10).to_string()]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(family.len(), 10);
        let total: u64 = (0..10).map(|i| family.get(&[&i.to_string()])).sum();
        assert_eq!(total, 20_000);
    }

    #[test]
    fn render_orders_series() {
        let family = Family::<Gauge>::new("g", "G.", &["k"], 10).unwrap();
        family.set(&["b"], 2.0);
        family.set(&["a"], 1.5);
        let mut out = String::new();
        family.render(&mut out);
        assert_eq!(
            out,
            "# HELP g G.\n# TYPE g gauge\ng{k=\"a\"} 1.5\ng{k=\"b\"} 2\n"
        );
    }
}
