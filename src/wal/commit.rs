//! The committer: finished WAL objects become visible in sequence order, several at once
//! when their writes finished together (one metadata transaction for all of them).

use super::*;

/// Most flushes committed in one transaction (well inside the metadata store's limit).
const MAX_GROUP: usize = 32;

/// The outcome of a flush's object write.
fn written(
    put: std::result::Result<std::result::Result<(), ObjectError>, tokio::task::JoinError>,
) -> Result<()> {
    match put {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => {
            warn!(error = %e, "a WAL object write task stopped");
            Err(Error::not_durable("the WAL object write stopped"))
        }
    }
}

impl Wal {
    pub(super) async fn commit_loop(self: Arc<Self>, mut rx: mpsc::Receiver<(Flush, Put)>) {
        // Partitions to truncate once every flush taken before a failure has failed too.
        let mut failing: Option<Vec<Arc<Partition>>> = None;
        // Flushes received, in sequence order, and one whose write ended while a group
        // was gathered (it goes next).
        let mut queue: VecDeque<(Flush, Put)> = VecDeque::new();
        let mut held: Option<(Flush, Result<()>)> = None;
        loop {
            let (first, outcome) = match held.take() {
                Some(h) => h,
                None => {
                    if queue.is_empty() {
                        match rx.recv().await {
                            Some(x) => queue.push_back(x),
                            None => break,
                        }
                    }
                    let Some((f, put)) = queue.pop_front() else {
                        continue;
                    };
                    (f, written(put.await))
                }
            };
            let put_done = Instant::now();
            let mut group = vec![first];
            let result = match (&failing, outcome) {
                (Some(_), _) => Err(Error::not_durable("an earlier WAL flush failed")),
                (None, Err(e)) => Err(e),
                (None, Ok(())) => {
                    // Later flushes whose writes ended too commit in the same transaction.
                    while let Ok(x) = rx.try_recv() {
                        queue.push_back(x);
                    }
                    // One transaction: its entries together within what the store takes.
                    let mut bytes = group[0].index.len();
                    while group.len() < MAX_GROUP
                        && queue.front().is_some_and(|(f, put)| {
                            put.is_finished() && bytes + f.index.len() <= self.cfg.max_index_bytes
                        })
                    {
                        let Some((f, put)) = queue.pop_front() else {
                            break;
                        };
                        match written(put.await) {
                            Ok(()) => {
                                bytes += f.index.len();
                                group.push(f);
                            }
                            Err(e) => {
                                held = Some((f, Err(e)));
                                break;
                            }
                        }
                    }
                    let span = &group[0].span;
                    span.run(self.commit_group(&group)).await
                }
            };
            // Each flush's span ends before its producers are answered: a request's span
            // then always encloses the flush that made it durable.
            for f in &mut group {
                drop(std::mem::take(&mut f.span));
            }
            match result {
                Ok(()) => {
                    for f in &group {
                        self.metrics.flushed.inc();
                        self.metrics.timed(
                            put_done.saturating_duration_since(f.started),
                            put_done.elapsed(),
                            f.started.elapsed(),
                        );
                        self.finish(f.seq, false);
                    }
                    self.healthy.store(true, Ordering::Relaxed);
                    self.committed.send_modify(|c| *c += 1);
                }
                Err(e) => {
                    for f in &group {
                        self.metrics.failed.inc();
                        if failing.is_none() {
                            warn!(seq = f.seq, error = %e, "wal flush failed; unacknowledged data is dropped and producers retry");
                            self.healthy.store(false, Ordering::Relaxed);
                            self.lock_buffer().poisoned = true;
                            failing = Some(Vec::new());
                        }
                        if let Some(parts) = failing.as_mut() {
                            parts.extend(f.partitions.iter().map(|(p, _)| p.clone()));
                        }
                        self.finish(f.seq, true);
                    }
                }
            }
            let idle = {
                let mut buf = self.lock_buffer();
                buf.in_flight = buf.in_flight.saturating_sub(group.len());
                buf.in_flight == 0
            };
            // The pipeline has room again: the flush loop may be waiting for it.
            self.wake.notify_one();
            if idle {
                if let Some(parts) = failing.take() {
                    self.void_failed().await;
                    self.abandon(parts);
                }
            }
        }
    }

    /// Commits flushes whose objects are durable, in order: one transaction for all of
    /// them when every range in them is still owned at its epoch (the common case), else
    /// one by one.
    async fn commit_group(&self, group: &[Flush]) -> Result<()> {
        if let [f] = group {
            return self.commit(f).await;
        }
        let owned = self.fence.get();
        let all_owned = group.iter().all(|f| {
            f.partitions
                .iter()
                .all(|(p, epoch)| owned.epoch(&p.topic_id, p.index) == Some(*epoch))
        });
        if all_owned {
            let keys: Vec<String> = group
                .iter()
                .map(|f| keys::wal_key(self.cfg.node_id, f.seq, self.cfg.incarnation))
                .collect();
            let mut compares = vec![self.fence.compare(&owned)];
            compares.extend(keys.iter().map(|k| Compare::Revision(k.clone(), None)));
            let ops = group
                .iter()
                .zip(&keys)
                .map(|(f, k)| Op::Put(k.clone(), f.index.clone(), None))
                .collect();
            // Not applied, or not known to be: each flush then finds out on its own.
            if let Ok(true) = self.meta.txn_relaxed(compares, ops).await {
                for f in group {
                    self.publish(f, &(0..f.entry.ranges.len()).collect::<Vec<_>>())
                        .await;
                }
                return Ok(());
            }
        }
        for f in group {
            self.commit(f).await?;
        }
        Ok(())
    }

    /// Commits a flush whose object is durable, then makes its data visible: the ranges of
    /// partitions still owned at the epoch they were appended under.
    async fn commit(&self, f: &Flush) -> Result<()> {
        let committed = self.commit_index(f).await?;
        if committed.len() < f.entry.ranges.len() {
            // Ranges were fenced out: the object's footer names data that must never be
            // taken for a commit a crash lost (its offsets are given out again).
            self.void_up_to(f.seq).await;
        }
        if committed.is_empty() {
            // Nothing in it is still ours: the object is garbage.
            if let Err(e) = self.objects.delete(&f.entry.object).await {
                debug!(object = f.entry.object, error = %e, "unused wal object not deleted");
            }
            return Ok(());
        }
        self.publish(f, &committed).await;
        Ok(())
    }

    /// Makes the committed ranges of a flush visible to readers.
    async fn publish(&self, f: &Flush, committed: &[usize]) {
        let key: Arc<str> = Arc::from(f.entry.object.as_str());
        let size = f.body.len() as u64;
        self.cache.insert_object(&key, &f.body).await;
        for i in committed {
            let (r, (p, _)) = (&f.entry.ranges[*i], &f.partitions[*i]);
            p.state().commit(r.end_offset, &key, size, r.pos, r.len);
        }
        debug!(
            seq = f.seq,
            bytes = size,
            partitions = committed.len(),
            "wal flushed"
        );
    }

    /// One transaction: the entry is new, and this broker's assignment is the one the
    /// ranges were filtered against. Returns the indexes of the committed ranges.
    ///
    /// A compare that fails means the assignment changed: it is re-read, and the ranges
    /// of partitions lost meanwhile are left out. An error from the store leaves the
    /// outcome unknown, so this retries (with backoff) until the answer is definite:
    /// guessing "not committed" could reuse offsets that a commit did take. Meanwhile
    /// producers time out and retry, and the bounded buffer holds the rest back.
    async fn commit_index(&self, f: &Flush) -> Result<Vec<usize>> {
        let key = keys::wal_key(self.cfg.node_id, f.seq, self.cfg.incarnation);
        let mut owned = self.fence.get();
        // Whether `owned` was read from the store during this commit.
        let mut fresh = false;
        let mut delay = Duration::from_millis(20);
        let mut warned = false;
        'retry: loop {
            let keep: Vec<usize> = (0..f.entry.ranges.len())
                .filter(|i| {
                    let (p, epoch) = &f.partitions[*i];
                    owned.epoch(&p.topic_id, p.index) == Some(*epoch)
                })
                .collect();
            let err = 'attempt: {
                if keep.len() < f.entry.ranges.len() && !fresh {
                    // The assignment cached here may be older than the epoch a range was
                    // appended under (a partition that came back): read it before leaving
                    // anything out. Once, a flush of such ranges only was dropped unseen.
                    match self.fence.refresh(self.meta.as_ref()).await {
                        Ok(o) => {
                            owned = o;
                            fresh = true;
                            continue 'retry;
                        }
                        Err(e) => break 'attempt e,
                    }
                }
                if keep.len() < f.entry.ranges.len() {
                    // A zombie's or a moved partition's data: never acknowledged, never seen.
                    info!(
                        seq = f.seq,
                        fenced = f.entry.ranges.len() - keep.len(),
                        "wal ranges fenced out: their partitions moved to another owner or epoch"
                    );
                }
                if keep.is_empty() {
                    return Ok(keep);
                }
                let value = if keep.len() == f.entry.ranges.len() {
                    f.index.clone()
                } else {
                    repo::encode(&WalEntry {
                        object: f.entry.object.clone(),
                        ranges: keep.iter().map(|i| f.entry.ranges[*i].clone()).collect(),
                    })
                };
                let res = self
                    .meta
                    .txn_relaxed(
                        vec![
                            self.fence.compare(&owned),
                            Compare::Revision(key.clone(), None),
                        ],
                        vec![Op::Put(key.clone(), value, None)],
                    )
                    .await;
                match res {
                    Ok(true) => return Ok(keep),
                    Ok(false) => match self.meta.get(&key).await {
                        // Applied by an earlier attempt whose answer was lost (the key is
                        // unique to this process): what it holds is what was committed.
                        Ok(Some(v)) => {
                            let done: WalEntry = repo::decode_struct(&key, &v.value)?;
                            return Ok((0..f.entry.ranges.len())
                                .filter(|i| done.ranges.contains(&f.entry.ranges[*i]))
                                .collect());
                        }
                        Ok(None) => match self.fence.refresh(self.meta.as_ref()).await {
                            Ok(o) => {
                                owned = o;
                                fresh = true;
                                continue 'retry;
                            }
                            Err(e) => e,
                        },
                        Err(e) => e,
                    },
                    // Refused for its size, so not applied: trying again cannot help. (Flushes
                    // are kept within the limit; a store with a lower one fails them.)
                    // The flush's failure is logged once, with this error, by the committer.
                    Err(e @ stratus_meta::MetaError::TooLarge(_)) => return Err(e.into()),
                    Err(e) => e,
                }
            };
            if !warned {
                warn!(seq = f.seq, error = %err, "wal commit failed; retrying until the metadata store answers");
                warned = true;
            }
            self.healthy.store(false, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Before the offsets of failed flushes are given out again: on a store whose WAL
    /// commits may be lost in a crash, records durably that no flush up to the open one
    /// will ever commit, so that the rebuild after a crash ([`super::recover`]) never
    /// takes a failed flush's object (which may be whole) for a lost commit. Retries until
    /// the store answers; the buffer stays poisoned (appends refused) meanwhile.
    async fn void_failed(&self) {
        let open = self.lock_buffer().seq;
        self.void_up_to(open).await;
    }

    /// Raises the void floor to `seq` (durably), on a store whose WAL commits may be lost:
    /// every flush up to `seq` is committed as it stands in the index, or never will be.
    /// Retries until the store answers.
    async fn void_up_to(&self, seq: u64) {
        if !self.meta.relaxed_may_be_lost() {
            return;
        }
        let mut delay = Duration::from_millis(20);
        while let Err(e) =
            super::recover::raise_void(self.meta.as_ref(), self.cfg.node_id, seq).await
        {
            warn!(error = %e, "recording void WAL flushes failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Flushes failed and nothing taken before is still in flight: forget their data and
    /// everything appended after it, so offsets stay contiguous, and fail every waiting
    /// producer with a retriable error. The buffer stays poisoned (appends refused) until
    /// the partitions are truncated.
    pub(super) fn abandon(&self, mut affected: Vec<Arc<Partition>>) {
        let open = {
            let mut buf = self.lock_buffer();
            affected.extend(buf.entries.iter().map(|e| e.partition.clone()));
            let open = buf.seq;
            buf.entries.clear();
            buf.bytes = 0;
            buf.first_at = None;
            buf.ranges.clear();
            buf.producer_batches = 0;
            buf.full = false;
            buf.seq += 1;
            open
        };
        self.taken.notify_waiters();
        let mut seen = HashSet::new();
        for p in affected {
            if seen.insert(Arc::as_ptr(&p)) {
                p.state().truncate_to_committed();
            }
        }
        self.finish(open, true);
        self.lock_buffer().poisoned = false;
    }
}
