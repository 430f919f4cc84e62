//! The values a series holds: counter, gauge, histogram. Each is a few atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::MetricsError;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (an `f64`, stored as its bits).
#[derive(Debug)]
pub struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge(AtomicU64::new(0f64.to_bits()))
    }
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Gauge {
        Gauge::default()
    }

    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: f64) {
        add_f64(&self.0, delta);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + delta).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Histogram bucket upper bounds: finite, strictly increasing. The `+Inf` bucket is implied.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(Arc<[f64]>);

impl Buckets {
    /// Checks and keeps `bounds`.
    pub fn new(bounds: &[f64]) -> Result<Buckets, MetricsError> {
        if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
            return Err(MetricsError::InvalidBuckets(format!(
                "{bad} is not finite (+Inf is always the last bucket)"
            )));
        }
        if bounds.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(MetricsError::InvalidBuckets(
                "bounds must be strictly increasing".to_owned(),
            ));
        }
        Ok(Buckets(Arc::from(bounds)))
    }

    /// Latencies in seconds from 50 µs to 10 s: the range of an fsync, a request or a scrape.
    pub fn latency() -> Buckets {
        Buckets(Arc::from(
            &[
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ][..],
        ))
    }

    /// The upper bounds (without `+Inf`).
    pub fn bounds(&self) -> &[f64] {
        &self.0
    }
}

/// Observations counted in fixed buckets, with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative); one more than `bounds`, the last for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `buckets`.
    pub fn new(buckets: &Buckets) -> Histogram {
        Histogram {
            bounds: Arc::clone(&buckets.0),
            counts: (0..=buckets.0.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation. NaN is ignored (it belongs in no bucket).
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        // The first bucket whose bound is >= value (`le` is inclusive); past the end: +Inf.
        let index = self.bounds.partition_point(|bound| *bound < value);
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        add_f64(&self.sum, value);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The current state. Taken without a lock: under concurrent updates the sum may lag
    /// or lead the counts by the observations in flight.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|count| {
                total = total.saturating_add(count.load(Ordering::Relaxed));
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: Arc::clone(&self.bounds),
            cumulative,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, without `+Inf`.
    pub bounds: Arc<[f64]>,
    /// Cumulative counts per bound, then the `+Inf` bucket (the total count).
    pub cumulative: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// `(le, cumulative count)` per bucket, ending with `(+Inf, count)`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.cumulative.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge() {
        let c = Counter::new();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
        let g = Gauge::new();
        g.set(2.5);
        g.add(-1.0);
        assert_eq!(g.get(), 1.5);
    }

    #[test]
    fn buckets_are_checked() {
        assert!(Buckets::new(&[]).is_ok());
        assert!(Buckets::new(&[1.0, 2.0]).is_ok());
        assert!(Buckets::new(&[1.0, 1.0]).is_err());
        assert!(Buckets::new(&[2.0, 1.0]).is_err());
        assert!(Buckets::new(&[1.0, f64::INFINITY]).is_err());
        assert!(Buckets::new(&[f64::NAN]).is_err());
        assert!(Buckets::new(Buckets::latency().bounds()).is_ok());
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let h = Histogram::new(&Buckets::new(&[1.0, 2.0, 5.0]).unwrap());
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, 7.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 5, 6]);
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum, 15.0);
        let buckets: Vec<_> = s.buckets().collect();
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 6)));
        h.observe_duration(Duration::from_millis(250));
        assert_eq!(h.snapshot().cumulative, vec![3, 5, 6, 7]);
    }

    #[test]
    fn concurrent_updates_are_all_counted() {
        let h = Arc::new(Histogram::new(&Buckets::latency()));
        let c = Arc::new(Counter::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (h, c) = (Arc::clone(&h), Arc::clone(&c));
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        h.observe(f64::from(i % 7) * 0.001);
                        c.inc();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 40_000);
        assert_eq!(h.snapshot().count(), 40_000);
    }
}
