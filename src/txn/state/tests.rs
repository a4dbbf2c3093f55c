use super::*;
use proptest::prelude::*;

const MAX_TIMEOUT: i32 = 900_000;

fn ids(start: i64) -> impl FnMut() -> Result<i64, Code> {
    let mut next = start;
    move || {
        next += 1;
        Ok(next - 1)
    }
}

fn req(timeout_ms: i32, expected: Option<(i64, i16)>) -> InitRequest {
    InitRequest {
        timeout_ms,
        expected,
    }
}

/// The record a fresh id gets from its first InitProducerId.
fn fresh() -> Txn {
    match init(None, req(60_000, None), 1, MAX_TIMEOUT, ids(100)) {
        Ok(Init::Ready(t)) => t,
        other => panic!("first init: {other:?}"),
    }
}

fn ready(r: Result<Init, Code>) -> Txn {
    match r {
        Ok(Init::Ready(t)) => t,
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    (topic.to_string(), p)
}

/// `t` with a transaction open on `t-0`.
fn ongoing(t: &Txn, now: i64) -> Txn {
    match add(Some(t), t.producer_id, t.epoch, &[tp("t", 0)], &[], now) {
        Ok(Some(n)) => n,
        other => panic!("add: {other:?}"),
    }
}

fn completed(t: &Txn) -> Txn {
    match t.completed(11) {
        Some(n) => n,
        None => panic!("not prepared: {t:?}"),
    }
}

fn prepared(t: &Txn, commit: bool) -> Txn {
    match end(Some(t), t.producer_id, t.epoch, commit, 9) {
        Ok(End::Prepare(n)) => n,
        other => panic!("end: {other:?}"),
    }
}

#[test]
fn a_new_transactional_id_gets_a_producer_id_at_epoch_0() {
    let t = fresh();
    assert_eq!((t.producer_id, t.epoch, t.phase), (100, 0, Phase::Empty));
    assert_eq!(t.last_epoch, NO_EPOCH);
    assert!(t.partitions.is_empty() && t.started_ms == -1);
}

#[test]
fn a_timeout_outside_the_brokers_bounds_is_refused() {
    for bad in [0, -5, MAX_TIMEOUT + 1] {
        assert_eq!(
            init(None, req(bad, None), 1, MAX_TIMEOUT, ids(1)),
            Err(Code::InvalidTransactionTimeout)
        );
    }
}

#[test]
fn a_new_producer_instance_fences_the_old_one() {
    let t = fresh();
    let again = ready(init(Some(&t), req(30_000, None), 2, MAX_TIMEOUT, ids(500)));
    assert_eq!((again.producer_id, again.epoch), (t.producer_id, 1));
    assert_eq!(again.timeout_ms, 30_000);
    // The old instance's transactional requests are fenced.
    assert_eq!(
        add(Some(&again), t.producer_id, t.epoch, &[tp("t", 0)], &[], 3),
        Err(Code::ProducerFenced)
    );
    assert_eq!(
        end(Some(&again), t.producer_id, t.epoch, true, 3),
        Err(Code::ProducerFenced)
    );
}

#[test]
fn a_kip_360_bump_is_done_once_and_its_retry_gets_the_same_answer() {
    let t = fresh();
    let expected = Some((t.producer_id, t.epoch));
    let bumped = ready(init(
        Some(&t),
        req(60_000, expected),
        2,
        MAX_TIMEOUT,
        ids(500),
    ));
    assert_eq!((bumped.epoch, bumped.last_epoch), (1, 0));
    // The response was lost; the client retries with the epoch it still holds.
    let retried = ready(init(
        Some(&bumped),
        req(60_000, expected),
        3,
        MAX_TIMEOUT,
        ids(500),
    ));
    assert_eq!(
        (retried.producer_id, retried.epoch, retried.last_epoch),
        (bumped.producer_id, 1, 0)
    );
    // An epoch that is neither current nor the last is fenced; so is an unknown id.
    let stale = Some((t.producer_id, 7));
    assert_eq!(
        init(Some(&bumped), req(60_000, stale), 4, MAX_TIMEOUT, ids(500)),
        Err(Code::ProducerFenced)
    );
    let other = Some((999, 1));
    assert_eq!(
        init(Some(&bumped), req(60_000, other), 4, MAX_TIMEOUT, ids(500)),
        Err(Code::ProducerFenced)
    );
}

#[test]
fn an_init_that_finds_a_transaction_open_fences_and_aborts_it() {
    let t = ongoing(&fresh(), 5);
    let fenced = match init(Some(&t), req(60_000, None), 6, MAX_TIMEOUT, ids(500)) {
        Ok(Init::FenceOpen(f)) => f,
        other => panic!("expected FenceOpen, got {other:?}"),
    };
    assert_eq!(fenced.phase, Phase::PrepareAbort);
    assert_eq!(fenced.epoch, t.epoch + 1);
    assert_eq!(
        fenced.partitions, t.partitions,
        "the markers go where the data went"
    );
    assert_eq!(fenced.marker(), Some((false, t.producer_id, t.epoch + 1)));
    // The old producer's commit comes too late.
    assert_eq!(
        end(Some(&fenced), t.producer_id, t.epoch, true, 7),
        Err(Code::ProducerFenced)
    );
    // The new instance retries while the markers are written, then gets its own epoch.
    assert_eq!(
        init(Some(&fenced), req(60_000, None), 7, MAX_TIMEOUT, ids(500)),
        Err(Code::ConcurrentTransactions)
    );
    let done = completed(&fenced);
    assert_eq!(done.phase, Phase::CompleteAbort);
    assert!(done.partitions.is_empty() && done.started_ms == -1);
    let next = ready(init(
        Some(&done),
        req(60_000, None),
        9,
        MAX_TIMEOUT,
        ids(500),
    ));
    assert_eq!((next.epoch, next.phase), (t.epoch + 2, Phase::Empty));
}

#[test]
fn an_exhausted_epoch_gets_a_new_producer_id_and_its_retry_is_recognised() {
    let t = Txn {
        epoch: EPOCH_LIMIT,
        ..fresh()
    };
    let expected = Some((t.producer_id, EPOCH_LIMIT));
    let rotated = ready(init(
        Some(&t),
        req(60_000, expected),
        2,
        MAX_TIMEOUT,
        ids(700),
    ));
    assert_eq!((rotated.producer_id, rotated.epoch), (700, 0));
    assert_eq!(rotated.previous_producer_id, t.producer_id);
    let retried = ready(init(
        Some(&rotated),
        req(60_000, expected),
        3,
        MAX_TIMEOUT,
        ids(800),
    ));
    assert_eq!(
        (retried.producer_id, retried.epoch),
        (rotated.producer_id, 0),
        "the retry must not rotate again"
    );
    // Without an expected epoch (a new instance) the id rotates too.
    let fresh_instance = ready(init(Some(&t), req(60_000, None), 2, MAX_TIMEOUT, ids(900)));
    assert_eq!((fresh_instance.producer_id, fresh_instance.epoch), (900, 0));
}

#[test]
fn adding_partitions_opens_the_transaction_once_and_repeats_write_nothing() {
    let t = fresh();
    let (pid, e) = (t.producer_id, t.epoch);
    assert_eq!(
        add(None, pid, e, &[tp("t", 0)], &[], 5),
        Err(Code::InvalidProducerIdMapping)
    );
    assert_eq!(
        add(Some(&t), pid + 1, e, &[tp("t", 0)], &[], 5),
        Err(Code::InvalidProducerIdMapping)
    );
    let open = ongoing(&t, 5);
    assert_eq!((open.phase, open.started_ms), (Phase::Ongoing, 5));
    assert_eq!(add(Some(&open), pid, e, &[tp("t", 0)], &[], 6), Ok(None));
    let more = match add(Some(&open), pid, e, &[tp("u", 3)], &["g".into()], 7) {
        Ok(Some(n)) => n,
        other => panic!("add: {other:?}"),
    };
    assert_eq!(more.started_ms, 5, "the transaction began at its first add");
    assert_eq!(more.partitions.len(), 2);
    assert!(more.groups.contains("g"));
    let committing = prepared(&more, true);
    assert_eq!(
        add(Some(&committing), pid, e, &[tp("v", 0)], &[], 8),
        Err(Code::ConcurrentTransactions)
    );
    // After completion the next transaction starts afresh.
    let next = ongoing(&completed(&committing), 10);
    assert_eq!(next.started_ms, 10);
    assert_eq!(next.partitions, [tp("t", 0)].into_iter().collect());
    assert!(next.groups.is_empty());
}

#[test]
fn end_txn_follows_kafkas_table() {
    let open = ongoing(&fresh(), 5);
    let (pid, e) = (open.producer_id, open.epoch);
    let committing = prepared(&open, true);
    assert_eq!(committing.phase, Phase::PrepareCommit);
    assert_eq!(committing.marker(), Some((true, pid, e)));
    assert_eq!(prepared(&open, false).phase, Phase::PrepareAbort);
    // A retry while the markers are written; the opposite outcome is refused.
    assert_eq!(
        end(Some(&committing), pid, e, true, 10),
        Err(Code::ConcurrentTransactions)
    );
    assert_eq!(
        end(Some(&committing), pid, e, false, 10),
        Err(Code::InvalidTxnState)
    );
    let committed = completed(&committing);
    assert_eq!(end(Some(&committed), pid, e, true, 12), Ok(End::Done));
    assert_eq!(
        end(Some(&committed), pid, e, false, 12),
        Err(Code::InvalidTxnState)
    );
    let aborted = completed(&prepared(&open, false));
    assert_eq!(end(Some(&aborted), pid, e, false, 12), Ok(End::Done));
    assert_eq!(
        end(Some(&aborted), pid, e, true, 12),
        Err(Code::InvalidTxnState)
    );
    let empty = fresh();
    assert_eq!(
        end(Some(&empty), empty.producer_id, empty.epoch, true, 12),
        Err(Code::InvalidTxnState)
    );
    assert_eq!(
        end(None, pid, e, true, 12),
        Err(Code::InvalidProducerIdMapping)
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_at_a_new_epoch() {
    let open = ongoing(&fresh(), 1_000);
    assert_eq!(open.timed_out(1_000 + 60_000), None, "not yet past");
    let aborted = open.timed_out(1_000 + 60_001);
    let Some(aborted) = aborted else {
        panic!("not timed out")
    };
    assert_eq!(aborted.phase, Phase::PrepareAbort);
    assert_eq!(aborted.epoch, open.epoch + 1);
    assert_eq!(fresh().timed_out(i64::MAX), None, "nothing open");
    assert_eq!(prepared(&open, true).timed_out(i64::MAX), None, "decided");
}

#[test]
fn only_idle_ids_expire() {
    let t = fresh();
    assert!(!t.expired(t.updated_ms + 99, 100));
    assert!(t.expired(t.updated_ms + 100, 100));
    assert!(!ongoing(&t, 5).expired(i64::MAX, 100));
    assert!(!prepared(&ongoing(&t, 5), true).expired(i64::MAX, 100));
}

#[test]
fn phase_names_round_trip() {
    for p in Phase::ALL {
        assert_eq!(Phase::parse(p.name()), Some(p));
    }
    assert_eq!(Phase::parse("Dead"), None);
}

/// What a client or the coordinator may do next.
#[derive(Clone, Debug)]
enum Op {
    /// InitProducerId by a new instance, or (KIP-360) with the epoch some instance held.
    Init {
        expected: Option<usize>,
    },
    Add {
        who: usize,
        partition: i32,
    },
    End {
        who: usize,
        commit: bool,
    },
    /// Every marker written.
    Complete,
    /// The clock passes the transaction's timeout.
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::option::of(0..4usize).prop_map(|expected| Op::Init { expected }),
        (0..4usize, 0..3i32).prop_map(|(who, partition)| Op::Add { who, partition }),
        (0..4usize, any::<bool>()).prop_map(|(who, commit)| Op::End { who, commit }),
        Just(Op::Complete),
        Just(Op::Timeout),
    ]
}

proptest! {
    /// Model check: whatever the clients and the coordinator do, only the newest producer
    /// instance gets anything done, epochs only rise, and a decided transaction is never
    /// reopened before its markers are written.
    #[test]
    fn only_the_newest_producer_gets_anything_done(ops in proptest::collection::vec(op(), 1..60)) {
        let mut now = 10;
        let mut stored = fresh();
        // (producer id, epoch) each instance was given, in order.
        let mut handed: Vec<(i64, i16)> = vec![(stored.producer_id, stored.epoch)];
        for op in ops {
            now += 1;
            let before = stored.clone();
            match op {
                Op::Init { expected } => {
                    let exp = expected.and_then(|i| handed.get(i).copied());
                    match init(Some(&stored), req(1_000, exp), now, MAX_TIMEOUT, ids(10_000 + now)) {
                        Ok(Init::Ready(t)) => {
                            prop_assert!(before.phase.is_idle());
                            prop_assert!(t.phase == Phase::Empty && t.partitions.is_empty());
                            let newest = handed.last().copied();
                            if Some((t.producer_id, t.epoch)) != newest {
                                handed.push((t.producer_id, t.epoch));
                            }
                            stored = t;
                        }
                        Ok(Init::FenceOpen(t)) => {
                            prop_assert_eq!(before.phase, Phase::Ongoing);
                            prop_assert!(t.epoch > before.epoch);
                            prop_assert_eq!(t.phase, Phase::PrepareAbort);
                            stored = t;
                        }
                        Err(_) => {}
                    }
                }
                Op::Add { who, partition } => {
                    let Some(&(pid, e)) = handed.get(who) else { continue };
                    let r = add(Some(&stored), pid, e, &[tp("t", partition)], &[], now);
                    if let Ok(next) = r {
                        prop_assert_eq!((pid, e), (stored.producer_id, stored.epoch));
                        prop_assert!(!before.phase.is_prepared());
                        if let Some(n) = next {
                            prop_assert!(n.started_ms >= 0);
                            stored = n;
                        }
                    }
                }
                Op::End { who, commit } => {
                    let Some(&(pid, e)) = handed.get(who) else { continue };
                    match end(Some(&stored), pid, e, commit, now) {
                        Ok(End::Prepare(t)) => {
                            prop_assert_eq!(before.phase, Phase::Ongoing);
                            prop_assert_eq!((pid, e), (stored.producer_id, stored.epoch));
                            prop_assert_eq!(t.marker(), Some((commit, pid, e)));
                            stored = t;
                        }
                        Ok(End::Done) => {
                            let want = if commit { Phase::CompleteCommit } else { Phase::CompleteAbort };
                            prop_assert_eq!(before.phase, want);
                        }
                        Err(_) => {}
                    }
                }
                Op::Complete => match stored.completed(now) {
                    Some(t) => {
                        prop_assert!(before.phase.is_prepared());
                        prop_assert!(t.phase.is_idle() && t.partitions.is_empty());
                        stored = t;
                    }
                    None => prop_assert!(!before.phase.is_prepared()),
                },
                Op::Timeout => {
                    now += i64::from(stored.timeout_ms) + 1;
                    if let Some(t) = stored.timed_out(now) {
                        prop_assert_eq!(before.phase, Phase::Ongoing);
                        prop_assert!(t.epoch > before.epoch);
                        stored = t;
                    }
                }
            }
            // Epochs of one producer id only rise; a decided transaction keeps its partitions.
            if stored.producer_id == before.producer_id {
                prop_assert!(stored.epoch >= before.epoch);
            }
            if before.phase.is_prepared() && stored.phase.is_prepared() {
                prop_assert_eq!(&stored.partitions, &before.partitions);
            }
            if stored.phase == Phase::Ongoing {
                prop_assert!(!stored.partitions.is_empty() && stored.started_ms >= 0);
            }
        }
    }
}
