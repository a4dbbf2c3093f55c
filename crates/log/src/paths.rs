//! Every object name Stratus writes, built and parsed here and nowhere else.
//!
//! - WAL objects: `wal/<node>/<incarnation:016x>-<seq:020>.wal`: one per flush; the
//!   incarnation (unique per process start) keeps two processes from ever writing the
//!   same name, and the zero-padded sequence keeps a broker's objects in write order.
//! - Compacted WAL objects: `wal/<node>/<incarnation:016x>-c<n:019>.wal`: several WAL
//!   objects' live ranges written again as one.
//! - Segments: `topics/<topic-id>/<partition>/<base-offset:020>-<owner-epoch:010>.seg`: one
//!   per seal. The owner epoch keeps a fenced-out ex-owner, sealing late from its stale
//!   state, from ever writing over the segment the new owner sealed at the same base
//!   offset (its record write is fenced; its object lands under its own name, an orphan).
//!   Names without the epoch (`<base-offset:020>.seg`) were written before it was added and
//!   are still read and parsed.

/// Prefix of every WAL object.
pub const WAL: &str = "wal/";
/// Prefix of every segment.
pub const TOPICS: &str = "topics/";

/// A WAL object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalObject {
    /// The broker that wrote it.
    pub node: i32,
    /// The writing process's incarnation.
    pub incarnation: u64,
    /// The flush sequence within that incarnation.
    pub seq: u64,
}

impl WalObject {
    /// The object name.
    pub fn name(&self) -> String {
        format!(
            "{WAL}{}/{:016x}-{:020}.wal",
            self.node, self.incarnation, self.seq
        )
    }

    /// Parses a name built by [`WalObject::name`]; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(WAL)?;
        let (node, file) = rest.split_once('/')?;
        let (inc, seq) = file.strip_suffix(".wal")?.split_once('-')?;
        if inc.len() != 16 || seq.len() != 20 {
            return None;
        }
        Some(Self {
            node: parse_decimal(node)?,
            incarnation: u64::from_str_radix(inc, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A compacted WAL object's name: `wal/<node>/<incarnation:016x>-c<n:019>.wal`, the data
/// of several WAL objects written again as one by WAL compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactedObject {
    /// The broker that wrote it.
    pub node: i32,
    /// The writing process's incarnation.
    pub incarnation: u64,
    /// The compaction's number within that incarnation.
    pub n: u64,
}

impl CompactedObject {
    /// The object name.
    pub fn name(&self) -> String {
        format!(
            "{WAL}{}/{:016x}-c{:019}.wal",
            self.node, self.incarnation, self.n
        )
    }

    /// Parses a name built by [`CompactedObject::name`]; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(WAL)?;
        let (node, file) = rest.split_once('/')?;
        let (inc, n) = file.strip_suffix(".wal")?.split_once("-c")?;
        if inc.len() != 16 || n.len() != 19 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            node: parse_decimal(node)?,
            incarnation: u64::from_str_radix(inc, 16).ok()?,
            n: n.parse().ok()?,
        })
    }
}

/// The broker and incarnation that wrote a WAL object, flushed or compacted.
pub fn wal_writer(name: &str) -> Option<(i32, u64)> {
    WalObject::parse(name)
        .map(|w| (w.node, w.incarnation))
        .or_else(|| CompactedObject::parse(name).map(|c| (c.node, c.incarnation)))
}

/// A segment's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentObject<'a> {
    /// The topic's id.
    pub topic_id: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset of its first record.
    pub base_offset: i64,
    /// The epoch at which the sealing broker owned the partition (`None`: a name written
    /// before the epoch was part of it).
    pub epoch: Option<i32>,
    /// How many merges made it (0: sealed from the WAL): a merge of segments starting at
    /// the same offset under the same epoch is the first one's successor, never its name.
    /// Written only with an epoch.
    pub merges: u32,
}

impl<'a> SegmentObject<'a> {
    /// The object name.
    pub fn name(&self) -> String {
        match self.epoch {
            Some(epoch) if self.merges > 0 => format!(
                "{TOPICS}{}/{}/{:020}-{:010}-m{}.seg",
                self.topic_id,
                self.partition,
                self.base_offset,
                epoch.max(0),
                self.merges
            ),
            Some(epoch) => format!(
                "{TOPICS}{}/{}/{:020}-{:010}.seg",
                self.topic_id,
                self.partition,
                self.base_offset,
                epoch.max(0)
            ),
            None => format!(
                "{TOPICS}{}/{}/{:020}.seg",
                self.topic_id, self.partition, self.base_offset
            ),
        }
    }

    /// Parses a name built by [`SegmentObject::name`]; `None` for anything else.
    pub fn parse(name: &'a str) -> Option<Self> {
        let rest = name.strip_prefix(TOPICS)?;
        let (topic_id, rest) = rest.split_once('/')?;
        let (partition, file) = rest.split_once('/')?;
        let stem = file.strip_suffix(".seg")?;
        let (stem, merges) = match stem.rsplit_once("-m") {
            Some((stem, m)) => (stem, Some(m)),
            None => (stem, None),
        };
        let (base, epoch) = match stem.split_once('-') {
            Some((base, epoch)) => (base, Some(epoch)),
            None => (stem, None),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if topic_id.is_empty() || topic_id.contains('/') || !digits(base, 20) {
            return None;
        }
        let epoch = match epoch {
            Some(e) if digits(e, 10) => Some(e.parse().ok()?),
            Some(_) => return None,
            None => None,
        };
        let merges = match merges {
            Some(m) if epoch.is_some() => parse_decimal(m).filter(|m| *m > 0)?,
            Some(_) => return None,
            None => 0,
        };
        Some(Self {
            topic_id,
            partition: parse_decimal(partition)?,
            base_offset: base.parse().ok()?,
            epoch,
            merges,
        })
    }
}

/// The prefix of every segment of one topic.
pub fn topic_segments(topic_id: &str) -> String {
    format!("{TOPICS}{topic_id}/")
}

/// A non-negative decimal with no sign and no leading zero (so that parse ∘ name = id).
fn parse_decimal<T: std::str::FromStr + Default + PartialOrd>(s: &str) -> Option<T> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let v: T = s.parse().ok().filter(|_| canonical)?;
    (v >= T::default()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_the_ones_stored_objects_already_have() {
        let w = WalObject {
            node: 3,
            incarnation: 0xabc,
            seq: 42,
        };
        assert_eq!(w.name(), "wal/3/0000000000000abc-00000000000000000042.wal");
        let s = SegmentObject {
            topic_id: "9f1c",
            partition: 7,
            base_offset: 100,
            epoch: None,
            merges: 0,
        };
        assert_eq!(s.name(), "topics/9f1c/7/00000000000000000100.seg");
        let s = SegmentObject {
            epoch: Some(12),
            ..s
        };
        assert_eq!(
            s.name(),
            "topics/9f1c/7/00000000000000000100-0000000012.seg"
        );
        let s = SegmentObject { merges: 3, ..s };
        assert_eq!(
            s.name(),
            "topics/9f1c/7/00000000000000000100-0000000012-m3.seg"
        );
        assert_eq!(topic_segments("9f1c"), "topics/9f1c/");
    }

    #[test]
    fn other_names_are_not_parsed() {
        for bad in [
            "wal/3/abc-1.wal",
            "wal/-1/0000000000000abc-00000000000000000042.wal",
            "wal/03/0000000000000abc-00000000000000000042.wal",
            "wal/3/0000000000000abc-00000000000000000042",
            "wal/3/x/0000000000000abc-00000000000000000042.wal",
            "topics/t/0/00000000000000000100.wal",
            "wal/3/0000000000000abc-00000000000000000042.wal.tmp",
        ] {
            assert_eq!(WalObject::parse(bad), None, "{bad}");
        }
        for bad in [
            "topics//0/00000000000000000100.seg",
            "topics/t/+1/00000000000000000100.seg",
            "topics/t/0/100.seg",
            "topics/t/0/00000000000000000100-12.seg",
            "topics/t/0/00000000000000000100-.seg",
            "topics/t/0/00000000000000000100-00000000012.seg",
            "topics/t/0/0000000000000000010a-0000000012.seg",
            "topics/t/0/00000000000000000100-000000001x.seg",
            "topics/t/0/00000000000000000100-m1.seg",
            "topics/t/0/00000000000000000100-0000000012-m0.seg",
            "topics/t/0/00000000000000000100-0000000012-m01.seg",
            "topics/t/0/00000000000000000100-0000000012-m.seg",
            "topics/t/0/00000000000000000100-0000000012-mx.seg",
            "wal/1/x.seg",
        ] {
            assert_eq!(SegmentObject::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn wal_names_round_trip(node in 0i32.., incarnation: u64, seq: u64) {
            let w = WalObject { node, incarnation, seq };
            prop_assert_eq!(WalObject::parse(&w.name()), Some(w));
            prop_assert_eq!(CompactedObject::parse(&w.name()), None);
            prop_assert_eq!(wal_writer(&w.name()), Some((node, incarnation)));
            let c = CompactedObject { node, incarnation, n: seq % 10_000_000_000_000_000_000 };
            prop_assert_eq!(CompactedObject::parse(&c.name()), Some(c));
            prop_assert_eq!(WalObject::parse(&c.name()), None);
            prop_assert_eq!(wal_writer(&c.name()), Some((node, incarnation)));
        }

        #[test]
        fn segment_names_round_trip(topic_id in "[0-9a-f-]{1,36}", partition in 0i32.., base_offset in 0i64.., epoch in proptest::option::of(0i32..), merges: u32) {
            let merges = if epoch.is_some() { merges } else { 0 };
            let s = SegmentObject { topic_id: &topic_id, partition, base_offset, epoch, merges };
            let name = s.name();
            prop_assert_eq!(SegmentObject::parse(&name), Some(s));
        }

        #[test]
        fn wal_and_segment_names_never_collide(node in 0i32.., incarnation: u64, seq: u64) {
            let name = WalObject { node, incarnation, seq }.name();
            prop_assert_eq!(SegmentObject::parse(&name), None);
        }
    }
}
