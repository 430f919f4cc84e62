//! A set of families rendered together, with the refusals of all of them.

use std::sync::{Arc, PoisonError, RwLock};

use crate::family::{Family, Metric};
use crate::value::{Buckets, Counter, Gauge, Histogram};
use crate::{MetricsError, text};

/// Something that writes metric families (a [`Family`], or a function reading values that
/// live elsewhere at scrape time).
pub trait Collector: Send + Sync {
    /// The family name (for duplicate detection and the refusal metric).
    fn name(&self) -> &str;
    /// Writes the family.
    fn render(&self, out: &mut String);
    /// Updates refused by the family's cap.
    fn refused(&self) -> u64 {
        0
    }
}

impl<M: Metric> Collector for Family<M> {
    fn name(&self) -> &str {
        Family::name(self)
    }
    fn render(&self, out: &mut String) {
        Family::render(self, out);
    }
    fn refused(&self) -> u64 {
        Family::refused(self)
    }
}

/// Families, rendered in registration order, followed by one counter family counting each
/// family's refused label sets (so that a cap being hit is visible, not silent).
pub struct Registry {
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
    refused_name: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("refused_name", &self.refused_name)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry; refusals are rendered as `{refused_name}{family="…"}`.
    pub fn new(refused_name: &str) -> Result<Registry, MetricsError> {
        if !crate::valid_metric_name(refused_name) {
            return Err(MetricsError::InvalidName(refused_name.to_owned()));
        }
        Ok(Registry {
            collectors: RwLock::new(Vec::new()),
            refused_name: refused_name.to_owned(),
        })
    }

    /// Adds a collector; its name must be new.
    pub fn register(&self, collector: Arc<dyn Collector>) -> Result<(), MetricsError> {
        let mut list = self
            .collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let name = collector.name();
        if name == self.refused_name || list.iter().any(|c| c.name() == name) {
            return Err(MetricsError::Duplicate(name.to_owned()));
        }
        list.push(collector);
        Ok(())
    }

    fn add<M: Metric + 'static>(&self, family: Family<M>) -> Result<Arc<Family<M>>, MetricsError> {
        let family = Arc::new(family);
        self.register(Arc::clone(&family) as Arc<dyn Collector>)?;
        Ok(family)
    }

    /// Registers a new counter family.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        cap: usize,
    ) -> Result<Arc<Family<Counter>>, MetricsError> {
        self.add(Family::new(name, help, labels, cap)?)
    }

    /// Registers a new gauge family.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        cap: usize,
    ) -> Result<Arc<Family<Gauge>>, MetricsError> {
        self.add(Family::new(name, help, labels, cap)?)
    }

    /// Registers a new histogram family.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        cap: usize,
        buckets: Buckets,
    ) -> Result<Arc<Family<Histogram>>, MetricsError> {
        self.add(Family::with_config(name, help, labels, cap, buckets)?)
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.render_into(&mut out);
        out
    }

    /// Appends the whole exposition to `out`.
    pub fn render_into(&self, out: &mut String) {
        let list = self
            .collectors
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for collector in list.iter() {
            collector.render(out);
        }
        text::write_header(
            out,
            &self.refused_name,
            "Metric updates dropped because the family reached its cap on label sets.",
            "counter",
        );
        for collector in list.iter() {
            text::write_sample_u64(
                out,
                &self.refused_name,
                &[("family", collector.name())],
                collector.refused(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Collector for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn render(&self, out: &mut String) {
            text::write_header(out, "fixed", "Computed at scrape time.", "gauge");
            text::write_sample(out, "fixed", &[], 7.0);
        }
    }

    #[test]
    fn renders_in_order_with_refusals() {
        let registry = Registry::new("t_refused_total").unwrap();
        let hits = registry
            .counter("t_hits_total", "Hits.", &["k"], 1)
            .unwrap();
        registry.register(Arc::new(Fixed)).unwrap();
        hits.inc(&["a"]);
        hits.inc(&["b"]);
        assert!(matches!(
            registry.counter("t_hits_total", "again", &[], 1),
            Err(MetricsError::Duplicate(_))
        ));
        assert!(registry.register(Arc::new(Fixed)).is_err());
        assert_eq!(
            registry.render(),
            "# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\nt_hits_total{k=\"a\"} 1\n\
             # HELP fixed Computed at scrape time.\n# TYPE fixed gauge\nfixed 7\n\
             # HELP t_refused_total Metric updates dropped because the family reached its cap on label sets.\n\
             # TYPE t_refused_total counter\n\
             t_refused_total{family=\"t_hits_total\"} 1\nt_refused_total{family=\"fixed\"} 0\n"
        );
    }
}
