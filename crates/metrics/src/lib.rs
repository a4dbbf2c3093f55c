//! Metrics for the broker and its storage crates.
//!
//! Instruments are plain atomics ([`Counter`], [`Gauge`], [`Histogram`]); a hot path keeps
//! the `Arc` of its series and pays one atomic add per update, with no attribute hashing
//! or lock. Series with labels live in a [`Family`], which caps how many label sets it
//! holds (the rest count under one overflow series), so that a client inventing topic
//! names or group ids cannot grow the broker's memory or a Prometheus server's.
//!
//! A [`Registry`] gathers every family (and the gauges computed at scrape time by its
//! collectors) into [`FamilySnapshot`]s: [`text::render`] writes them in the Prometheus
//! text format; the broker converts the same snapshots to OTLP.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

mod family;
mod instruments;
pub mod poll;
pub mod text;
pub mod trace;

pub use family::{Family, OVERFLOW};
pub use instruments::{Counter, Gauge, Histogram, Metric};

/// Latency buckets in seconds, from 100 µs to 60 s.
pub const LATENCY_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Size buckets in bytes, from 1 KiB to 64 MiB.
pub const SIZE_BYTES: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// How many label sets one family holds unless told otherwise.
pub const DEFAULT_MAX_SERIES: usize = 2000;

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (the name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// The value of one series at a gather.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's total.
    Counter(u64),
    /// A counter's total that is not a whole number (CPU seconds, say).
    CounterFloat(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: counts per bucket (not cumulative; one more than `bounds`, the last
    /// for values above every bound), the sum of what was observed.
    Histogram {
        /// Upper bounds (inclusive) of the buckets.
        bounds: Arc<[f64]>,
        /// Observations per bucket.
        counts: Vec<u64>,
        /// Sum of the observations.
        sum: f64,
    },
}

/// One series: label values (in the order of the family's label names) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label values.
    pub labels: Vec<Arc<str>>,
    /// The value.
    pub value: Value,
}

/// Every series of one metric at a gather.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// The metric's name (counters end in `_total`).
    pub name: &'static str,
    /// What it measures, in a sentence.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names.
    pub label_names: Vec<&'static str>,
    /// The series.
    pub series: Vec<Series>,
}

impl FamilySnapshot {
    /// A snapshot with no series yet, for a collector to fill.
    pub fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        label_names: &[&'static str],
    ) -> Self {
        FamilySnapshot {
            name,
            help,
            kind,
            label_names: label_names.to_vec(),
            series: Vec::new(),
        }
    }

    /// Adds a series.
    pub fn push(&mut self, labels: Vec<Arc<str>>, value: Value) {
        self.series.push(Series { labels, value });
    }
}

/// Something that contributes families to a gather.
pub trait Collect: Send + Sync {
    /// Appends this source's families.
    fn collect(&self, out: &mut Vec<FamilySnapshot>);
}

/// A collector that computes its families at gather time (gauges read from the broker's
/// state: lag, partitions owned, process statistics).
pub struct FnCollector<F>(pub F);

impl<F: Fn(&mut Vec<FamilySnapshot>) + Send + Sync> Collect for FnCollector<F> {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        (self.0)(out)
    }
}

/// Every metric of one broker.
pub struct Registry {
    sources: RwLock<Vec<Arc<dyn Collect>>>,
    started: SystemTime,
    max_series: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            sources: RwLock::new(Vec::new()),
            started: SystemTime::now(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl Registry {
    /// A registry whose families hold at most `n` label sets each.
    pub fn with_max_series(n: usize) -> Self {
        Registry {
            max_series: n.max(1),
            ..Registry::default()
        }
    }

    /// When the registry was made: the start of every cumulative series.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Adds a source of families.
    pub fn register(&self, source: Arc<dyn Collect>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// Adds a collector run at every gather.
    pub fn collector(&self, f: impl Fn(&mut Vec<FamilySnapshot>) + Send + Sync + 'static) {
        self.register(Arc::new(FnCollector(f)));
    }

    /// A family of counters with these label names.
    pub fn counters(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
    ) -> Arc<Family<Counter>> {
        let f = Arc::new(
            Family::new(name, help, labels, Counter::default).with_max_series(self.max_series),
        );
        self.register(f.clone());
        f
    }

    /// A family of gauges with these label names.
    pub fn gauges(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
    ) -> Arc<Family<Gauge>> {
        let f = Arc::new(
            Family::new(name, help, labels, Gauge::default).with_max_series(self.max_series),
        );
        self.register(f.clone());
        f
    }

    /// A family of histograms with these label names and bucket bounds.
    pub fn histograms(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        bounds: &[f64],
    ) -> Arc<Family<Histogram>> {
        let bounds: Arc<[f64]> = Arc::from(bounds);
        let f = Arc::new(
            Family::new(name, help, labels, move || Histogram::new(bounds.clone()))
                .with_max_series(self.max_series),
        );
        self.register(f.clone());
        f
    }

    /// A counter without labels.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Arc<Counter> {
        self.counters(name, help, &[]).get(&[])
    }

    /// A gauge without labels.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Arc<Gauge> {
        self.gauges(name, help, &[]).get(&[])
    }

    /// A histogram without labels.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        bounds: &[f64],
    ) -> Arc<Histogram> {
        self.histograms(name, help, &[], bounds).get(&[])
    }

    /// Every family's series now, sorted by name (families of the same name from several
    /// sources are merged).
    pub fn gather(&self) -> Vec<FamilySnapshot> {
        let sources = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Vec::new();
        for s in &sources {
            s.collect(&mut out);
        }
        out.sort_by(|a, b| a.name.cmp(b.name));
        let mut merged: Vec<FamilySnapshot> = Vec::with_capacity(out.len());
        for f in out {
            match merged.last_mut() {
                Some(last) if last.name == f.name => last.series.extend(f.series),
                _ => merged.push(f),
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_sorts_and_merges_families() {
        let r = Registry::default();
        let b = r.counter("b_total", "b");
        b.add(3);
        let a = r.gauges("a", "a", &["x"]);
        a.get(&["1"]).set(2.0);
        r.collector(|out| {
            let mut f = FamilySnapshot::new("a", "a", Kind::Gauge, &["x"]);
            f.push(vec!["2".into()], Value::Gauge(5.0));
            out.push(f);
        });
        let g = r.gather();
        assert_eq!(
            g.iter().map(|f| f.name).collect::<Vec<_>>(),
            vec!["a", "b_total"]
        );
        assert_eq!(g[0].series.len(), 2);
        assert_eq!(g[1].series[0].value, Value::Counter(3));
    }
}
