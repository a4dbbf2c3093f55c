//! The index part of a segment read back from the object store: parsed or refused, and
//! every lookup in a parsed index lands on a position the index names (or 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_log::segment;

fuzz_target!(|data: &[u8]| {
    let tail = bytes::Bytes::copy_from_slice(data);
    let Some(index) = segment::parse_index(&tail) else {
        return;
    };
    for probe in [i64::MIN, -1, 0, 1, 1_000, i64::MAX] {
        for pos in [
            segment::position_of_offset(&index, probe),
            segment::position_of_timestamp(&index, probe),
        ] {
            assert!(pos == 0 || index.iter().any(|e| e.pos == pos));
        }
    }
});
