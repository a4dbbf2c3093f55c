//! Critical tasks: the background loops a broker cannot serve without (the WAL, upkeep, the
//! group coordinator, the cluster tasks, the listeners).
//!
//! A critical task that panics, or returns before the broker was told to stop, is a
//! broker that would keep accepting connections and never ack. So it is never left at
//! that: the supervisor logs which task stopped and why, and [`Supervisor::failed`]
//! resolves, which makes [`crate::serve`] return an error and the process exit non-zero
//! (Kubernetes restarts a process that exits, not one that hangs). The `stratus` binary
//! also aborts on any panic (see `main.rs`); the supervisor is what catches the same
//! faults when the broker runs inside another process (tests, embedding).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use stratus_metrics::poll::{PollTimed, POLL_BUCKETS};
use stratus_metrics::{Family, Histogram};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Why the broker stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task that stopped.
    pub task: &'static str,
    /// What happened to it.
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "critical task '{}' stopped: {}", self.task, self.reason)
    }
}

/// Watches the critical tasks of one broker, and times their polls
/// (`stratus_task_poll_seconds`): how long each held its runtime thread at a stretch.
pub struct Supervisor {
    failed: CancellationToken,
    first: Mutex<Option<Failure>>,
    polls: Arc<Family<Histogram>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        let bounds: Arc<[f64]> = POLL_BUCKETS.into();
        Supervisor {
            failed: CancellationToken::new(),
            first: Mutex::new(None),
            polls: Arc::new(Family::new(
                "stratus_task_poll_seconds",
                "How long each poll of a critical background task held its runtime thread.",
                &["task"],
                move || Histogram::new(bounds.clone()),
            )),
        }
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Spawns `task`, which must run until `until` is cancelled. If it panics, or returns
    /// while `until` is not cancelled, the broker fails.
    pub fn spawn<F>(
        self: &Arc<Self>,
        name: &'static str,
        until: CancellationToken,
        task: F,
    ) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let supervisor = self.clone();
        let task = PollTimed::new(task, self.polls.get(&[name]));
        tokio::spawn(async move {
            match AssertUnwindSafe(task).catch_unwind().await {
                Ok(()) if until.is_cancelled() => {}
                Ok(()) => supervisor.fail(name, "it returned before shutdown".into()),
                Err(panic) => {
                    supervisor.fail(name, format!("it panicked: {}", panic_message(&*panic)))
                }
            }
        })
    }

    /// Spawns `task`, which runs until its owner drops its input (a channel's only
    /// sender): returning is fine, panicking fails the broker.
    pub fn spawn_owned<F>(self: &Arc<Self>, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let done = CancellationToken::new();
        done.cancel();
        self.spawn(name, done, task)
    }

    /// Records that `task` stopped for `reason` (the first failure is kept) and makes the
    /// broker stop.
    pub fn fail(&self, task: &'static str, reason: String) {
        error!(task, %reason, "critical task stopped; stopping the broker");
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(Failure { task, reason });
        }
        self.failed.cancel();
    }

    /// The poll times of the tasks, by task (for the metrics registry).
    pub fn polls(&self) -> Arc<Family<Histogram>> {
        self.polls.clone()
    }

    /// The first failure, if any task failed.
    pub fn failure(&self) -> Option<Failure> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves with the first failure.
    pub async fn failed(&self) -> Failure {
        self.failed.cancelled().await;
        self.failure().unwrap_or(Failure {
            task: "unknown",
            reason: "no reason recorded".into(),
        })
    }
}

/// The message of a panic payload (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_that_panics_fails_the_broker_with_its_name() {
        let s = Arc::new(Supervisor::default());
        let until = CancellationToken::new();
        s.spawn("wal", until.clone(), async { panic!("boom") });
        let f = tokio::time::timeout(Duration::from_secs(5), s.failed())
            .await
            .expect("the supervisor reports the panic");
        assert_eq!(f.task, "wal");
        assert!(f.reason.contains("boom"), "{f}");
    }

    #[tokio::test]
    async fn a_task_that_returns_early_fails_the_broker() {
        let s = Arc::new(Supervisor::default());
        s.spawn("upkeep", CancellationToken::new(), async {});
        let f = tokio::time::timeout(Duration::from_secs(5), s.failed())
            .await
            .expect("the supervisor reports the early return");
        assert_eq!(f.task, "upkeep");
        assert!(f.reason.contains("before shutdown"), "{f}");
    }

    #[tokio::test]
    async fn a_task_that_returns_after_shutdown_is_fine() {
        let s = Arc::new(Supervisor::default());
        let until = CancellationToken::new();
        let stop = until.clone();
        let h = s.spawn("coordinator", until.clone(), async move {
            stop.cancelled().await;
        });
        until.cancel();
        h.await.expect("the wrapper itself never panics");
        assert_eq!(s.failure(), None);
    }

    #[tokio::test]
    async fn the_first_failure_is_kept() {
        let s = Arc::new(Supervisor::default());
        s.fail("a", "first".into());
        s.fail("b", "second".into());
        assert_eq!(s.failed().await.task, "a");
    }
}
