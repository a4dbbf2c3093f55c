//! The transaction coordinator's rules, as Kafka applies them (KIP-98, KIP-360; transaction
//! version 1, which 4.x clients use unless the broker finalizes `transaction.version` 2):
//! one [`Txn`] per transactional id, and pure transitions from one to the next. Each
//! transition returns the record to store (the coordinator writes it, fenced at its shard
//! epoch, before it answers) or the error the client gets. Nothing here waits, stores or
//! sends; the coordinator serializes the requests of one transactional id, so a transition
//! always starts from the stored record.
//!
//! Phases: Empty → (AddPartitions / AddOffsets) → Ongoing → (EndTxn) → PrepareCommit or
//! PrepareAbort → (every marker written) → CompleteCommit or CompleteAbort → Ongoing again on
//! the next add. EndTxn is answered once Prepare* is stored; the markers follow. An
//! InitProducerId or a timeout that finds a transaction Ongoing fences its producer (a new
//! epoch) and aborts it.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError as Code;

/// No producer id (a record that has never rotated its id).
pub const NO_PRODUCER_ID: i64 = -1;
/// No epoch (a transactional id whose first InitProducerId is under way).
pub const NO_EPOCH: i16 = -1;
/// The highest epoch a producer is given: one below `i16::MAX`, so that a fence can always
/// raise it once more. A producer at this epoch gets a new producer id at its next init.
pub const EPOCH_LIMIT: i16 = i16::MAX - 1;

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions or offsets added; records may be written.
    Ongoing,
    /// Commit decided and stored; its markers are being written.
    PrepareCommit,
    /// Abort decided and stored; its markers are being written.
    PrepareAbort,
    /// Every commit marker written.
    CompleteCommit,
    /// Every abort marker written.
    CompleteAbort,
}

impl Phase {
    /// Every phase, in Kafka's order of state ids.
    pub const ALL: [Phase; 6] = [
        Phase::Empty,
        Phase::Ongoing,
        Phase::PrepareCommit,
        Phase::PrepareAbort,
        Phase::CompleteCommit,
        Phase::CompleteAbort,
    ];

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::Ongoing => "Ongoing",
            Phase::PrepareCommit => "PrepareCommit",
            Phase::PrepareAbort => "PrepareAbort",
            Phase::CompleteCommit => "CompleteCommit",
            Phase::CompleteAbort => "CompleteAbort",
        }
    }

    /// The phase a ListTransactions state filter names.
    pub fn parse(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether markers are being written (the outcome is decided, not yet everywhere).
    pub fn is_prepared(self) -> bool {
        matches!(self, Phase::PrepareCommit | Phase::PrepareAbort)
    }

    /// Whether no transaction is open or being completed.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort
        )
    }
}

/// A partition of a transaction: topic name and index.
pub type TopicPartition = (String, i32);

/// What the coordinator keeps of one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The producer id its producer writes with.
    pub producer_id: i64,
    /// The id before the last rotation (a producer that reached [`EPOCH_LIMIT`] retries with it).
    pub previous_producer_id: i64,
    /// The current producer's epoch (older ones are fenced).
    pub epoch: i16,
    /// The epoch before the last InitProducerId bump, to recognise its retry (KIP-360).
    pub last_epoch: i16,
    /// The producer's transaction.timeout.ms.
    pub timeout_ms: i32,
    /// Where the transaction stands.
    pub phase: Phase,
    /// Partitions the open transaction wrote or will write (markers go to each).
    pub partitions: BTreeSet<TopicPartition>,
    /// Consumer groups whose offsets the open transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the open transaction began (its first add), -1 when none is open.
    pub started_ms: i64,
    /// When the record last changed (transactional.id.expiration.ms counts from it).
    pub updated_ms: i64,
}

impl Txn {
    /// The markers a prepared transaction still needs: (commit?, producer id, epoch).
    pub fn marker(&self) -> Option<(bool, i64, i16)> {
        match self.phase {
            Phase::PrepareCommit => Some((true, self.producer_id, self.epoch)),
            Phase::PrepareAbort => Some((false, self.producer_id, self.epoch)),
            _ => None,
        }
    }

    /// Whether the id may be forgotten: nothing open and untouched for `expiration_ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.phase.is_idle() && self.updated_ms.saturating_add(expiration_ms) <= now_ms
    }

    /// An open transaction past its timeout: its producer is fenced and it is aborted.
    pub fn timed_out(&self, now_ms: i64) -> Option<Txn> {
        let late = self.started_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms;
        (self.phase == Phase::Ongoing && late).then(|| self.fenced_abort(now_ms))
    }

    /// The open transaction aborted at a new epoch, which fences its producer.
    fn fenced_abort(&self, now_ms: i64) -> Txn {
        Txn {
            epoch: self.epoch.saturating_add(1),
            last_epoch: NO_EPOCH,
            phase: Phase::PrepareAbort,
            updated_ms: now_ms,
            ..self.clone()
        }
    }

    /// Every marker of a prepared transaction written: it completes and forgets its
    /// partitions. None unless it is prepared.
    pub fn completed(&self, now_ms: i64) -> Option<Txn> {
        let phase = match self.phase {
            Phase::PrepareCommit => Phase::CompleteCommit,
            Phase::PrepareAbort => Phase::CompleteAbort,
            _ => return None,
        };
        Some(Txn {
            phase,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            started_ms: -1,
            updated_ms: now_ms,
            ..self.clone()
        })
    }

    /// The request's producer must be this id's current one.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), Code> {
        if producer_id != self.producer_id {
            return Err(Code::InvalidProducerIdMapping);
        }
        if epoch != self.epoch {
            return Err(Code::ProducerFenced);
        }
        Ok(())
    }
}

/// An InitProducerId with a transactional id.
#[derive(Clone, Copy, Debug)]
pub struct InitRequest {
    /// The producer's transaction.timeout.ms.
    pub timeout_ms: i32,
    /// The producer id and epoch the client holds (KIP-360, InitProducerId v3+), if any.
    pub expected: Option<(i64, i16)>,
}

/// What an InitProducerId leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// Store this record, then answer with its producer id and epoch.
    Ready(Txn),
    /// The id had a transaction open: store this record (the transaction aborting at a new
    /// epoch, which fences the producer that opened it), write its markers, and answer
    /// CONCURRENT_TRANSACTIONS; the client retries and gets a bump once the abort is done.
    FenceOpen(Txn),
}

/// InitProducerId for a transactional id whose stored record is `current` (None: never
/// seen). `new_id` allocates a producer id (for a new id, or when the epoch runs out).
pub fn init(
    current: Option<&Txn>,
    req: InitRequest,
    now_ms: i64,
    max_timeout_ms: i32,
    mut new_id: impl FnMut() -> Result<i64, Code>,
) -> Result<Init, Code> {
    if req.timeout_ms <= 0 || req.timeout_ms > max_timeout_ms {
        return Err(Code::InvalidTransactionTimeout);
    }
    let cur = match current {
        Some(t) => t.clone(),
        None => Txn {
            producer_id: new_id()?,
            previous_producer_id: NO_PRODUCER_ID,
            epoch: NO_EPOCH,
            last_epoch: NO_EPOCH,
            timeout_ms: req.timeout_ms,
            phase: Phase::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            started_ms: -1,
            updated_ms: now_ms,
        },
    };
    if let Some((pid, epoch)) = req.expected {
        let known = cur.epoch == NO_EPOCH
            || pid == cur.producer_id
            || (pid == cur.previous_producer_id && epoch >= EPOCH_LIMIT);
        if !known {
            return Err(Code::ProducerFenced);
        }
    }
    match cur.phase {
        Phase::PrepareCommit | Phase::PrepareAbort => Err(Code::ConcurrentTransactions),
        Phase::Ongoing => Ok(Init::FenceOpen(cur.fenced_abort(now_ms))),
        Phase::Empty | Phase::CompleteCommit | Phase::CompleteAbort => {
            let ready = |t: Txn| Txn {
                phase: Phase::Empty,
                timeout_ms: req.timeout_ms,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                started_ms: -1,
                updated_ms: now_ms,
                ..t
            };
            let expected_epoch = req.expected.map(|(_, e)| e);
            if cur.epoch >= EPOCH_LIMIT && expected_epoch.is_none_or(|e| e == cur.epoch) {
                // The epoch ran out: a new producer id at epoch 0.
                return Ok(Init::Ready(ready(Txn {
                    producer_id: new_id()?,
                    previous_producer_id: cur.producer_id,
                    epoch: 0,
                    last_epoch: expected_epoch.unwrap_or(NO_EPOCH),
                    ..cur
                })));
            }
            match expected_epoch {
                // A new producer instance: it fences every older one.
                None => Ok(Init::Ready(ready(Txn {
                    epoch: cur.epoch + 1,
                    last_epoch: NO_EPOCH,
                    ..cur
                }))),
                // The current producer asks for a bump (KIP-360).
                Some(e) if e == cur.epoch || cur.epoch == NO_EPOCH => Ok(Init::Ready(ready(Txn {
                    epoch: cur.epoch + 1,
                    last_epoch: cur.epoch,
                    ..cur
                }))),
                // A retry of a bump already done: the same epoch again.
                Some(e) if e == cur.last_epoch => Ok(Init::Ready(ready(cur))),
                Some(_) => Err(Code::ProducerFenced),
            }
        }
    }
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with `groups`): the record to store, or None
/// when the transaction already holds them all (nothing to write).
pub fn add(
    current: Option<&Txn>,
    producer_id: i64,
    epoch: i16,
    partitions: &[TopicPartition],
    groups: &[String],
    now_ms: i64,
) -> Result<Option<Txn>, Code> {
    let cur = current.ok_or(Code::InvalidProducerIdMapping)?;
    cur.check_producer(producer_id, epoch)?;
    if cur.phase.is_prepared() {
        return Err(Code::ConcurrentTransactions);
    }
    let has_all = partitions.iter().all(|p| cur.partitions.contains(p))
        && groups.iter().all(|g| cur.groups.contains(g));
    if cur.phase == Phase::Ongoing && has_all {
        return Ok(None);
    }
    let mut next = cur.clone();
    next.partitions.extend(partitions.iter().cloned());
    next.groups.extend(groups.iter().cloned());
    if cur.phase != Phase::Ongoing {
        next.started_ms = now_ms;
    }
    next.phase = Phase::Ongoing;
    next.updated_ms = now_ms;
    Ok(Some(next))
}

/// What an EndTxn leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Store this record (PrepareCommit or PrepareAbort), answer, then write the markers.
    Prepare(Txn),
    /// A retry of an EndTxn already completed: answer success, store nothing.
    Done,
}

/// EndTxn: commit (`commit`) or abort the open transaction.
pub fn end(
    current: Option<&Txn>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<End, Code> {
    let cur = current.ok_or(Code::InvalidProducerIdMapping)?;
    cur.check_producer(producer_id, epoch)?;
    match (cur.phase, commit) {
        (Phase::Ongoing, _) => Ok(End::Prepare(Txn {
            phase: if commit {
                Phase::PrepareCommit
            } else {
                Phase::PrepareAbort
            },
            updated_ms: now_ms,
            ..cur.clone()
        })),
        (Phase::CompleteCommit, true) | (Phase::CompleteAbort, false) => Ok(End::Done),
        (Phase::PrepareCommit, true) | (Phase::PrepareAbort, false) => {
            Err(Code::ConcurrentTransactions)
        }
        _ => Err(Code::InvalidTxnState),
    }
}

#[cfg(test)]
mod tests;
