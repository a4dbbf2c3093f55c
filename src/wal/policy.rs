//! When the WAL writes its buffer: at once when that costs nothing, grouped when it
//! would only queue behind other writes or when a small object would waste a request.
//!
//! A flush starts only while fewer than `max_in_flight` objects are being written
//! (the pipeline has room), and then as soon as one of these holds:
//!
//! - **enough bytes**: `min_bytes` are buffered (`wal.flush.min.bytes`; 0 for a local
//!   directory, so that every write goes at once and several are written side by side);
//! - **idle**: nothing is in flight and the last flush started `interval` ago or more,
//!   so a lone producer waits for one write and one commit, never for a timer, while a
//!   steady trickle still costs at most one object per `interval`;
//! - **lingered**: the oldest buffered byte has waited `interval`;
//! - **quiet**: under load (the flushes of the current and the previous interval took at
//!   least twice `min_bytes`: `min_bytes` per interval or more), at least a quarter of `min_bytes` arrived in a burst (within
//!   `interval / 20`, at least 1 ms) and nothing was appended since for `interval / 50`
//!   (at least 1 ms). Producers then wait for acks before they send more (a Kafka
//!   producer has at most 5 requests in flight), so waiting longer groups nothing and only
//!   adds latency: a default Java producer's window (5 requests of 8 partitions × 16 KiB)
//!   is not a multiple of `min_bytes`, and its remainder used to wait out the whole
//!   interval, which held it to 7 MB/s on MinIO (39 MB/s with this rule). Below
//!   `min_bytes` per interval the rule does not apply: there a producer's burst after its
//!   acks is all it sends, and writing it at once doubled the objects per GB (one for the
//!   burst, one for the trickle after it: 10,100 per GB at 1.7 MB/s against 5,600). The
//!   quarter bounds objects from below (at most 4× the requests per byte of full
//!   objects).
//!
//! - **full**: an append waits because the buffer's index entry has no room for its
//!   range or producer batches (`repo::WAL_ENTRY_BUDGET`: etcd refuses larger requests).
//!
//! While the pipeline is full the buffer keeps growing: the next object takes all of it
//! (group commit), which is what bounds requests per byte under load.

use std::time::{Duration, Instant};

/// The knobs of the policy.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Longest wait of buffered data (`wal.flush.interval.ms`), and the shortest gap
    /// between two flushes of an idle WAL.
    pub interval: Duration,
    /// Buffered bytes worth an object of their own at once (`wal.flush.min.bytes`).
    pub min_bytes: usize,
    /// Objects written at once (`wal.max.in.flight`).
    pub max_in_flight: usize,
}

/// What the WAL's buffer looks like now.
#[derive(Debug, Clone, Copy)]
pub struct BufferView {
    /// Bytes buffered.
    pub bytes: usize,
    /// When the oldest buffered byte arrived; `None` when the buffer is empty.
    pub first_at: Option<Instant>,
    /// When the newest buffered byte arrived.
    pub last_at: Option<Instant>,
    /// Objects being written or committed.
    pub in_flight: usize,
    /// When the last flush started.
    pub last_flush: Option<Instant>,
    /// Bytes the flushes of the last one to two intervals took ([`Recent`]).
    pub recent_bytes: usize,
    /// An append waits for this buffer to be taken (its index entry is full).
    pub full: bool,
}

/// Bytes taken by flushes, in tumbling windows of one interval: what went in the current
/// window and the one before it tells a WAL under load from one with a trickle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recent {
    start: Option<Instant>,
    current: usize,
    previous: usize,
}

impl Recent {
    /// Counts `bytes` taken at `now`.
    pub fn add(&mut self, bytes: usize, now: Instant, interval: Duration) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= interval * 2 {
            *self = Recent {
                start: Some(now),
                current: 0,
                previous: 0,
            };
        } else if elapsed >= interval {
            self.previous = self.current;
            self.current = 0;
            self.start = Some(start + interval);
        }
        self.current += bytes;
    }

    /// Bytes taken in the window holding `now` and the one before it.
    pub fn bytes(&self, now: Instant, interval: Duration) -> usize {
        let Some(start) = self.start else { return 0 };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < interval {
            self.current + self.previous
        } else if elapsed < interval * 2 {
            self.current
        } else {
            0
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write the buffer now.
    Flush,
    /// Wait for more data or until then, whichever comes first.
    WaitUntil(Instant),
    /// Wait for more data or for a flush in flight to finish (the pipeline is full, or
    /// the buffer is empty).
    Wait,
}

impl FlushPolicy {
    /// How long no append means producers are waiting for acks.
    fn quiet(&self) -> Duration {
        (self.interval / 50).max(Duration::from_millis(1))
    }

    /// The longest a buffer may have taken to fill for the quiet rule to apply.
    fn burst(&self) -> Duration {
        (self.interval / 20).max(Duration::from_millis(1))
    }

    /// The decision at `now`.
    pub fn next(&self, b: BufferView, now: Instant) -> Next {
        let Some(first) = b.first_at else {
            return Next::Wait;
        };
        if b.in_flight >= self.max_in_flight.max(1) {
            return Next::Wait;
        }
        if b.full || b.bytes >= self.min_bytes.max(1) {
            return Next::Flush;
        }
        let lingered = first + self.interval;
        let idle_at = match b.last_flush {
            Some(last) if b.in_flight == 0 => last + self.interval,
            None if b.in_flight == 0 => now,
            _ => lingered,
        };
        let quiet_at = match b.last_at {
            Some(last)
                if b.bytes >= self.min_bytes / 4
                    && b.recent_bytes >= 2 * self.min_bytes
                    && last.saturating_duration_since(first) <= self.burst() =>
            {
                last + self.quiet()
            }
            _ => lingered,
        };
        let at = lingered.min(idle_at).min(quiet_at);
        if now >= at {
            Next::Flush
        } else {
            Next::WaitUntil(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn s3() -> FlushPolicy {
        FlushPolicy {
            interval: 100 * MS,
            min_bytes: 256 << 10,
            max_in_flight: 4,
        }
    }

    fn view(
        bytes: usize,
        waited: u64,
        in_flight: usize,
        last: Option<u64>,
        now: Instant,
    ) -> BufferView {
        BufferView {
            bytes,
            first_at: Some(now - Duration::from_millis(waited)),
            last_at: Some(now - Duration::from_millis(waited)),
            in_flight,
            last_flush: last.map(|l| now - Duration::from_millis(l)),
            recent_bytes: 1 << 20,
            full: false,
        }
    }

    #[test]
    fn a_buffer_whose_index_entry_is_full_goes_once_the_pipeline_has_room() {
        let now = Instant::now() + Duration::from_secs(10);
        // Small, young, and a flush started 1 ms ago: it would wait for the interval...
        let mut v = view(100, 0, 1, Some(1), now);
        assert!(matches!(s3().next(v, now), Next::WaitUntil(_)));
        // ...but an append waits for it to be taken.
        v.full = true;
        assert_eq!(s3().next(v, now), Next::Flush);
        v.in_flight = s3().max_in_flight;
        assert_eq!(s3().next(v, now), Next::Wait);
    }

    #[test]
    fn an_idle_wal_writes_a_lone_record_at_once() {
        let now = Instant::now() + Duration::from_secs(10);
        assert_eq!(s3().next(view(100, 0, 0, None, now), now), Next::Flush);
        assert_eq!(s3().next(view(100, 0, 0, Some(500), now), now), Next::Flush);
    }

    #[test]
    fn a_steady_trickle_costs_at_most_one_object_per_interval() {
        let now = Instant::now() + Duration::from_secs(10);
        // The last flush started 30 ms ago: the next waits until 100 ms after it.
        assert_eq!(
            s3().next(view(100, 5, 0, Some(30), now), now),
            Next::WaitUntil(now + 70 * MS)
        );
        // A flush in flight: data waits at most the interval from its arrival.
        assert_eq!(
            s3().next(view(100, 40, 1, Some(45), now), now),
            Next::WaitUntil(now + 60 * MS)
        );
        assert_eq!(
            s3().next(view(100, 100, 1, Some(45), now), now),
            Next::Flush
        );
    }

    #[test]
    fn a_remainder_goes_once_producers_stop_sending() {
        let now = Instant::now() + Duration::from_secs(10);
        // 128 KiB (the rest of a producer's window) arrived 1 ms ago while two flushes are
        // in flight: wait until 2 ms after the last append, not the 100 ms linger.
        let mut v = view(128 << 10, 3, 2, Some(3), now);
        v.last_at = Some(now - MS);
        assert_eq!(s3().next(v, now), Next::WaitUntil(now + MS));
        v.last_at = Some(now - 2 * MS);
        assert_eq!(s3().next(v, now), Next::Flush);
        // The same with nothing in flight, 30 ms after the last flush.
        let mut idle = view(128 << 10, 3, 0, Some(30), now);
        idle.last_at = Some(now - 2 * MS);
        assert_eq!(s3().next(idle, now), Next::Flush);
        // Less than a quarter of min_bytes waits for the linger, or for the interval after
        // the last flush when nothing is in flight (or for more data).
        let mut small = view((64 << 10) - 1, 3, 2, Some(3), now);
        small.last_at = Some(now - 50 * MS);
        assert_eq!(s3().next(small, now), Next::WaitUntil(now + 97 * MS));
        let mut trickle = view(10 << 10, 3, 0, Some(30), now);
        trickle.last_at = Some(now - 3 * MS);
        assert_eq!(s3().next(trickle, now), Next::WaitUntil(now + 70 * MS));
    }

    #[test]
    fn steady_traffic_that_pauses_waits_for_min_bytes_or_the_interval() {
        let now = Instant::now() + Duration::from_secs(10);
        // 128 KiB that took 40 ms to arrive (3 MB/s), quiet for 10 ms: no burst, so it
        // waits for the linger (100 ms after its first byte), not the quiet rule.
        let mut slow = view(128 << 10, 50, 2, Some(50), now);
        slow.last_at = Some(now - 10 * MS);
        assert_eq!(s3().next(slow, now), Next::WaitUntil(now + 50 * MS));
        // The same bytes in a 4 ms burst go 2 ms after it.
        let mut burst = view(128 << 10, 14, 2, Some(50), now);
        burst.last_at = Some(now - 10 * MS);
        assert_eq!(s3().next(burst, now), Next::Flush);
    }

    #[test]
    fn a_burst_below_min_bytes_per_interval_waits_for_the_interval() {
        let now = Instant::now() + Duration::from_secs(10);
        // 160 KiB in a 1 ms burst, quiet for 3 ms, nothing in flight, the last flush 10 ms
        // ago; but the last two intervals wrote less than twice min_bytes: not a load.
        let mut v = view(160 << 10, 4, 0, Some(10), now);
        v.last_at = Some(now - 3 * MS);
        v.recent_bytes = 40 << 10;
        assert_eq!(s3().next(v, now), Next::WaitUntil(now + 90 * MS));
        v.recent_bytes = 400 << 10;
        assert_eq!(s3().next(v, now), Next::WaitUntil(now + 90 * MS));
        v.recent_bytes = 600 << 10;
        assert_eq!(s3().next(v, now), Next::Flush);
    }

    #[test]
    fn recent_bytes_cover_the_current_and_the_previous_interval() {
        let t0 = Instant::now();
        let mut r = Recent::default();
        r.add(100, t0, 100 * MS);
        r.add(50, t0 + 60 * MS, 100 * MS);
        assert_eq!(r.bytes(t0 + 90 * MS, 100 * MS), 150);
        // A new window: the old one still counts, then drops out.
        r.add(10, t0 + 120 * MS, 100 * MS);
        assert_eq!(r.bytes(t0 + 150 * MS, 100 * MS), 160);
        assert_eq!(r.bytes(t0 + 210 * MS, 100 * MS), 10);
        assert_eq!(r.bytes(t0 + 310 * MS, 100 * MS), 0);
        // After a long pause everything starts over.
        r.add(7, t0 + 900 * MS, 100 * MS);
        assert_eq!(r.bytes(t0 + 910 * MS, 100 * MS), 7);
    }

    #[test]
    fn enough_bytes_go_at_once_while_the_pipeline_has_room() {
        let now = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            s3().next(view(256 << 10, 0, 3, Some(1), now), now),
            Next::Flush
        );
        assert_eq!(
            s3().next(view(8 << 20, 500, 4, Some(1), now), now),
            Next::Wait
        );
    }

    #[test]
    fn a_local_directory_writes_every_buffer_at_once_up_to_the_pipeline() {
        let local = FlushPolicy {
            interval: 2 * MS,
            min_bytes: 0,
            max_in_flight: 4,
        };
        let now = Instant::now() + Duration::from_secs(10);
        assert_eq!(local.next(view(1, 0, 3, Some(0), now), now), Next::Flush);
        assert_eq!(local.next(view(1, 0, 4, Some(0), now), now), Next::Wait);
        let empty = BufferView {
            bytes: 0,
            first_at: None,
            last_at: None,
            in_flight: 0,
            last_flush: None,
            recent_bytes: 0,
            full: false,
        };
        assert_eq!(local.next(empty, now), Next::Wait);
    }
}
