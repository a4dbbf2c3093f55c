//! Labelled families of one instrument, with a bound on how many label sets they hold.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use crate::{Collect, FamilySnapshot, Metric, Series, DEFAULT_MAX_SERIES};

/// The label value of the series that counts for every label set beyond the cap.
pub const OVERFLOW: &str = "__overflow__";

type Entry<M> = (Box<[Arc<str>]>, Arc<M>);

/// The series of one metric, one per label set.
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    labels: Vec<&'static str>,
    make: Box<dyn Fn() -> M + Send + Sync>,
    max_series: usize,
    // Buckets by hash of the label values: a lookup borrows the caller's `&[&str]` and
    // allocates nothing.
    series: RwLock<HashMap<u64, Vec<Entry<M>>>>,
}

impl<M: Metric> Family<M> {
    /// A family; `make` builds the instrument of a new label set.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        debug_assert!(valid_name(name), "metric name {name}");
        debug_assert!(labels.iter().all(|l| valid_name(l)), "labels of {name}");
        Family {
            name,
            help,
            labels: labels.to_vec(),
            make: Box::new(make),
            max_series: DEFAULT_MAX_SERIES,
            series: RwLock::new(HashMap::new()),
        }
    }

    /// The same family holding at most `n` label sets (at least 1).
    pub fn with_max_series(mut self, n: usize) -> Self {
        self.max_series = n.max(1);
        self
    }

    /// The metric's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The series of these label values (one per label name, in order), made on first
    /// use. Once the family holds its maximum of label sets, a new one gets the overflow
    /// series (every label `__overflow__`).
    pub fn get(&self, values: &[&str]) -> Arc<M> {
        debug_assert_eq!(values.len(), self.labels.len(), "labels of {}", self.name);
        let h = hash(values);
        if let Some(m) = self.find(h, values) {
            return m;
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, m)) = map
            .get(&h)
            .and_then(|b| b.iter().find(|(k, _)| same(k, values)))
        {
            return m.clone();
        }
        let held: usize = map.values().map(Vec::len).sum();
        let (h, key): (u64, Box<[Arc<str>]>) = if held >= self.max_series {
            let over: Vec<&str> = vec![OVERFLOW; values.len()];
            let h = hash(&over);
            if let Some((_, m)) = map
                .get(&h)
                .and_then(|b| b.iter().find(|(k, _)| same(k, &over)))
            {
                return m.clone();
            }
            (h, over.iter().map(|v| Arc::from(*v)).collect())
        } else {
            (h, values.iter().map(|v| Arc::from(*v)).collect())
        };
        let m = Arc::new((self.make)());
        map.entry(h).or_default().push((key, m.clone()));
        m
    }

    fn find(&self, h: u64, values: &[&str]) -> Option<Arc<M>> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.get(&h)?
            .iter()
            .find(|(k, _)| same(k, values))
            .map(|(_, m)| m.clone())
    }

    /// Drops the series whose label values `keep` refuses (a deleted topic's, say).
    pub fn retain(&self, keep: impl Fn(&[Arc<str>]) -> bool) {
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        for bucket in map.values_mut() {
            bucket.retain(|(k, _)| keep(k));
        }
        map.retain(|_, b| !b.is_empty());
    }

    /// How many label sets the family holds.
    pub fn len(&self) -> usize {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(Vec::len).sum()
    }

    /// Whether the family holds no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<M: Metric> Collect for Family<M> {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut series: Vec<Series> = map
            .values()
            .flatten()
            .map(|(k, m)| Series {
                labels: k.to_vec(),
                value: m.value(),
            })
            .collect();
        drop(map);
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        out.push(FamilySnapshot {
            name: self.name,
            help: self.help,
            kind: M::KIND,
            label_names: self.labels.clone(),
            series,
        });
    }
}

fn hash(values: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

fn same(key: &[Arc<str>], values: &[&str]) -> bool {
    key.len() == values.len() && key.iter().zip(values).all(|(k, v)| &**k == *v)
}

/// A Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counter, Value};

    #[test]
    fn same_labels_same_series() {
        let f = Family::new("x_total", "x", &["topic"], Counter::default);
        f.get(&["a"]).inc();
        f.get(&["a"]).add(2);
        f.get(&["b"]).inc();
        assert_eq!(f.get(&["a"]).get(), 3);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn beyond_the_cap_everything_counts_under_overflow() {
        let f = Family::new("x_total", "x", &["topic", "p"], Counter::default).with_max_series(2);
        for t in ["a", "b", "c", "d"] {
            f.get(&[t, "0"]).inc();
        }
        assert_eq!(f.len(), 3);
        let mut out = Vec::new();
        f.collect(&mut out);
        let over = out[0]
            .series
            .iter()
            .find(|s| &*s.labels[0] == OVERFLOW)
            .unwrap();
        assert_eq!(over.value, Value::Counter(2));
        assert_eq!(&*over.labels[1], OVERFLOW);
    }

    #[test]
    fn retain_drops_series() {
        let f = Family::new("x_total", "x", &["topic"], Counter::default);
        f.get(&["a"]).inc();
        f.get(&["b"]).inc();
        f.retain(|k| &*k[0] != "a");
        assert_eq!(f.len(), 1);
        assert_eq!(f.get(&["a"]).get(), 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("stratus_bytes_in_total"));
        assert!(!valid_name("9x"));
        assert!(!valid_name("a-b"));
    }
}
