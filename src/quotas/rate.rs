//! A rate over a sliding window of samples, measured the way Kafka measures quota rates
//! (its `Rate` over a `SampledStat`), so that a client throttled here sees the throttle
//! times a Kafka broker would give it.
//!
//! The window is `samples` samples of `window_ms` each. The rate is the sum of the live
//! samples over the time they span, never less than `samples - 1` whole windows: a new
//! client cannot burst past its quota just because its history is short.

/// A windowed rate (per second).
#[derive(Debug, Clone)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
    window_ms: i64,
    max_samples: usize,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: i64,
    value: f64,
}

impl Rate {
    /// A rate over `samples` windows of `window_ms`.
    pub fn new(samples: usize, window_ms: i64) -> Self {
        Rate {
            samples: Vec::with_capacity(samples.max(1)),
            current: 0,
            window_ms: window_ms.max(1),
            max_samples: samples.max(1),
        }
    }

    /// Adds `value` (negative to take a recorded value back) at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: i64) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start_ms: now_ms,
                value: 0.0,
            });
            self.current = 0;
        }
        if now_ms - self.samples[self.current].start_ms >= self.window_ms {
            self.current = (self.current + 1) % self.max_samples;
            let fresh = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// The rate per second at `now_ms`.
    pub fn measure(&mut self, now_ms: i64) -> f64 {
        self.purge(now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (self.window_size_ms(now_ms) as f64 / 1000.0)
    }

    /// The span (ms) the rate is measured over at `now_ms`.
    pub fn window_size_ms(&mut self, now_ms: i64) -> i64 {
        self.purge(now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms - oldest;
        let full = elapsed / self.window_ms;
        let min_full = self.max_samples as i64 - 1;
        if full < min_full {
            elapsed += (min_full - full) * self.window_ms;
        }
        elapsed.max(1)
    }

    /// Resets samples too old to be part of the window.
    fn purge(&mut self, now_ms: i64) {
        let expire = self.max_samples as i64 * self.window_ms;
        for s in &mut self.samples {
            if now_ms - s.start_ms >= expire {
                *s = Sample {
                    start_ms: now_ms,
                    value: 0.0,
                };
            }
        }
    }

    /// Whether nothing has been recorded in the window at `now_ms`.
    pub fn idle(&mut self, now_ms: i64) -> bool {
        self.purge(now_ms);
        self.samples.iter().all(|s| s.value == 0.0)
    }
}

/// Kafka's throttle time: the delay that brings an observed rate `rate` back to `bound`
/// if nothing more is recorded, over a window of `window_ms` (X in O·W/(W+X) = T).
pub fn throttle_ms(rate: f64, bound: f64, window_ms: i64) -> u64 {
    if rate <= bound || bound <= 0.0 {
        return 0;
    }
    ((rate - bound) / bound * window_ms as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_history_counts_as_the_whole_window() {
        let mut r = Rate::new(11, 1000);
        r.record(1000.0, 0);
        // One sample of history, measured over ten windows.
        assert_eq!(r.window_size_ms(0), 10_000);
        assert!((r.measure(0) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_follows_a_steady_stream() {
        let mut r = Rate::new(11, 1000);
        for t in 0..30_000 {
            if t % 10 == 0 {
                r.record(10.0, t);
            }
        }
        let rate = r.measure(30_000);
        assert!((rate - 1000.0).abs() / 1000.0 < 0.1, "{rate}");
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut r = Rate::new(3, 1000);
        r.record(500.0, 0);
        assert!(!r.idle(2999));
        assert!(r.idle(3000));
        assert_eq!(r.measure(3000), 0.0);
    }

    #[test]
    fn a_value_taken_back_leaves_the_rate_as_it_was() {
        let mut r = Rate::new(11, 1000);
        r.record(100.0, 0);
        let before = r.measure(500);
        r.record(400.0, 500);
        r.record(-400.0, 500);
        assert_eq!(r.measure(500), before);
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_bound() {
        // 2000/s against 1000/s over 10 s: wait another 10 s.
        assert_eq!(throttle_ms(2000.0, 1000.0, 10_000), 10_000);
        assert_eq!(throttle_ms(900.0, 1000.0, 10_000), 0);
        let t = throttle_ms(1500.0, 1000.0, 10_000);
        // O·W/(W+X) = T
        let back = 1500.0 * 10_000.0 / (10_000.0 + t as f64);
        assert!((back - 1000.0).abs() < 1.0, "{back}");
    }
}
