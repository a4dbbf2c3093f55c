//! The write budget of background work on a local directory (seals, WAL compaction), so
//! that it never stalls the foreground's fsyncs.
//!
//! A background writer syncs its object a slice at a time (`paced.rs`), but written
//! as fast as the disk takes it, a 32 MiB segment still filled the device's queue for a
//! few hundred milliseconds, and every WAL fsync issued meanwhile waited behind it: produce
//! p99 at 50 MiB/s was 9–10 ms with seals running and 6 ms without. Here background
//! slices are spaced in time instead, at [`FACTOR`] times the rate the foreground writes
//! (an exponentially weighted mean over about [`WINDOW`]), and never below [`FLOOR`]:
//! seals keep up with any ingest, and in a quiet moment (no foreground write for a while)
//! they run unpaced. Three alternating pairs of runs at 50 MiB/s into 8 partitions
//! (2026-12-05): p95 8/8/9 ms paced against 10/9/10 unpaced, p99 13/13/13 against
//! 14/15/15; without seals or compaction the same runs gave 4 and 7 ms, so most of the
//! background's cost to the tail is still there (see docs/design.md).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Background bytes per second allowed per foreground byte per second.
pub const FACTOR: f64 = 1.5;
/// The least background rate, in bytes per second, however little the foreground writes.
pub const FLOOR: f64 = 64.0 * 1024.0 * 1024.0;
/// Time constant of the foreground's measured rate.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Below this foreground rate (bytes per second), background writes are not paced.
const QUIET: f64 = 1024.0 * 1024.0;

/// The budget one local store's writers share.
#[derive(Debug)]
pub struct IoBudget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The foreground's rate (bytes per second) as of `at`.
    rate: f64,
    at: Instant,
    /// When the background's next bytes may start.
    next: Instant,
}

impl Default for IoBudget {
    fn default() -> Self {
        let now = Instant::now();
        IoBudget {
            state: Mutex::new(State {
                rate: 0.0,
                at: now,
                next: now,
            }),
        }
    }
}

impl State {
    fn rate_at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate * (-dt / WINDOW.as_secs_f64()).exp()
    }
}

impl IoBudget {
    /// Counts `bytes` the foreground wrote (a WAL object) at `now`.
    pub fn foreground(&self, bytes: u64, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.rate = s.rate_at(now) + bytes as f64 / WINDOW.as_secs_f64();
        s.at = now;
    }

    /// How long a background writer waits, from `now`, before it writes `bytes`; the
    /// bytes are counted as written then.
    pub fn background(&self, bytes: u64, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fg = s.rate_at(now);
        if fg < QUIET {
            s.next = now;
            return Duration::ZERO;
        }
        let rate = (fg * FACTOR).max(FLOOR);
        let start = s.next.max(now);
        s.next = start + Duration::from_secs_f64(bytes as f64 / rate);
        start - now
    }

    /// [`IoBudget::background`], then sleeps that long. Blocking: for blocking threads.
    pub fn wait_blocking(&self, bytes: u64) {
        let wait = self.background(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_quiet_foreground_leaves_background_writes_unpaced() {
        let b = IoBudget::default();
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(b.background(MIB, t), Duration::ZERO);
        }
        // A write long ago has decayed away.
        b.foreground(100 * MIB, t);
        let later = t + WINDOW * 20;
        assert_eq!(b.background(MIB, later), Duration::ZERO);
        assert_eq!(b.background(MIB, later), Duration::ZERO);
    }

    #[test]
    fn background_writes_are_spaced_at_a_multiple_of_the_foreground_rate() {
        let b = IoBudget::default();
        let t0 = Instant::now();
        // 200 MiB/s of foreground writes for two seconds, 1 MiB every 5 ms.
        let mut t = t0;
        for _ in 0..400 {
            b.foreground(MIB, t);
            t += Duration::from_millis(5);
        }
        // The measured rate is near 200 MiB/s (1 - e^-2 of it after two windows).
        let fg = b.state.lock().unwrap().rate_at(t) / MIB as f64;
        assert!((160.0..=200.0).contains(&fg), "{fg}");
        // Background slices back to back: the first goes at once, then each waits for the
        // one before at FACTOR x fg.
        assert_eq!(b.background(MIB, t), Duration::ZERO);
        let second = b.background(MIB, t);
        let want = 1.0 / (FACTOR * fg);
        assert!(
            (second.as_secs_f64() - want).abs() < want * 0.01,
            "{second:?} vs {want}"
        );
        // Ten more slices are spread over ten slots.
        let mut last = second;
        for _ in 0..10 {
            last = b.background(MIB, t);
        }
        assert!((last.as_secs_f64() - 11.0 * want).abs() < want * 0.1);
        // A writer that comes back later than its slot does not bank the idle time.
        let much_later = t + Duration::from_millis(500);
        b.foreground(MIB, much_later);
        assert_eq!(b.background(MIB, much_later), Duration::ZERO);
        assert!(b.background(MIB, much_later) > Duration::ZERO);
    }

    #[test]
    fn a_slow_foreground_still_lets_background_run_at_the_floor() {
        let b = IoBudget::default();
        let t = Instant::now();
        b.foreground(2 * MIB, t);
        assert_eq!(b.background(MIB, t), Duration::ZERO);
        let wait = b.background(MIB, t).as_secs_f64();
        let want = MIB as f64 / FLOOR;
        assert!((wait - want).abs() < want * 0.01, "{wait} vs {want}");
    }
}
