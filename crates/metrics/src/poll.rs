//! Poll timing: how long a task holds its runtime thread at a stretch.
//!
//! A task runs on a runtime thread until it awaits something that is not ready. A loop
//! that never does (decoding thousands of index entries, say) keeps the thread for all of
//! it, and every task queued behind it on that thread waits as long: once, a WAL commit
//! and every producer's ack behind it, for 350-600 ms. Each poll of a [`PollTimed`] future
//! goes into a histogram, so such a task shows as polls in the high buckets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::Histogram;

/// Bucket bounds for poll times, in seconds: a well-behaved poll takes microseconds.
pub const POLL_BUCKETS: &[f64] = &[0.001, 0.0025, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// A future whose every poll is timed into `polls`.
pub struct PollTimed<F> {
    inner: Pin<Box<F>>,
    polls: Arc<Histogram>,
}

impl<F> PollTimed<F> {
    /// Times the polls of `inner`.
    pub fn new(inner: F, polls: Arc<Histogram>) -> Self {
        PollTimed {
            inner: Box::pin(inner),
            polls,
        }
    }
}

impl<F: Future> Future for PollTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let r = self.inner.as_mut().poll(cx);
        self.polls.observe_duration(started.elapsed());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A future that is pending once, then busy for `busy` in its second poll.
    struct Busy {
        polls: u32,
        busy: Duration,
    }

    impl Future for Busy {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let until = Instant::now() + self.busy;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            Poll::Ready(self.polls)
        }
    }

    #[test]
    fn each_poll_is_one_observation_and_a_long_one_lands_in_its_bucket() {
        let polls = Arc::new(Histogram::new(POLL_BUCKETS.into()));
        let busy = Busy {
            polls: 0,
            busy: Duration::from_millis(30),
        };
        let out = block_on(PollTimed::new(busy, polls.clone()));
        assert_eq!(out, 2);
        assert_eq!(polls.count(), 2, "two polls");
        let sum = polls.sum();
        assert!((0.03..1.0).contains(&sum), "about 30 ms in all: {sum}");
        let crate::Value::Histogram { counts, .. } = crate::Metric::value(&*polls) else {
            panic!("not a histogram");
        };
        // Per bucket, not cumulative: the busy poll is above 25 ms (buckets 4 and up).
        assert_eq!(counts.len(), POLL_BUCKETS.len() + 1, "{counts:?}");
        assert!(counts[4..].iter().sum::<u64>() >= 1, "{counts:?}");
    }

    /// Drives a future to completion on this thread (the crate has no runtime).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = Box::pin(f);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
