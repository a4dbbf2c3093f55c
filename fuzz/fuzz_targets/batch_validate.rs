//! Record batches from a producer: validation accepts or refuses them without panicking,
//! and what it accepts can be stamped with offsets and still validates the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_log::batch;

fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    let Ok(batches) = batch::validate(&records) else {
        return;
    };
    for b in &batches {
        let stamped = batch::stamp(b, 1_000, 7, Some(42));
        let again = batch::validate(&stamped).expect("a stamped batch validates");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].base_offset, 1_000);
        assert_eq!(again[0].last_sequence(), b.last_sequence());
    }
    let stored: Vec<_> = batch::stored(&records).collect();
    assert!(stored.len() >= batches.len());
});
