//! The tail of a WAL object read back from the object store: its footer is found or
//! refused, and a footer decodes to an index entry or a corrupt-record error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_log::wal_format;
use stratus_meta::repo::{decode_bytes, WalEntry};

fuzz_target!(|data: &[u8]| {
    let tail = bytes::Bytes::copy_from_slice(data);
    if let Ok(footer) = wal_format::footer(&tail) {
        assert!(footer.len() + wal_format::TRAILER_LEN <= tail.len());
        if let Ok(entry) = decode_bytes::<WalEntry>("wal/fuzz", &footer) {
            let _ = entry.data_end();
        }
    }
});
