//! AMF0 decoding of attacker bytes: never panics, stays within its limits, and what decodes
//! re-encodes to something that decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmp::amf0::{Amf0Limits, decode_all, encode};

fuzz_target!(|data: &[u8]| {
    let limits = Amf0Limits::default();
    let Ok(values) = decode_all(data, limits) else {
        return;
    };
    let mut bytes = Vec::new();
    for v in &values {
        encode(v, &mut bytes);
    }
    let again = decode_all(&bytes, limits).expect("our own encoding decodes");
    // NaN != NaN: compare the encodings instead of the values.
    let mut bytes_again = Vec::new();
    for v in &again {
        encode(v, &mut bytes_again);
    }
    assert_eq!(bytes, bytes_again);
});
