//! A request frame from a client: decoding it gives a request or an error, never a panic
//! or an allocation larger than the frame allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = stratus::handlers::decode_request(bytes::Bytes::copy_from_slice(frame));
});
