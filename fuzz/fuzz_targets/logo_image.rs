//! A tenant's reference logo upload (PNG, JPEG or SVG) on attacker bytes: decoding and feature
//! extraction never panic, and what is taken is a reference of bounded size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logos::image::{MAX_LOGO_BYTES, REFERENCE_MARGIN, REFERENCE_SIDE};

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LOGO_BYTES {
        return;
    }
    if let Ok(reference) = logos::decode_logo(data) {
        let most = REFERENCE_SIDE + 2 * REFERENCE_MARGIN;
        assert!(reference.width <= most && reference.height <= most);
        let _ = logos::LogoIndex::new().add("fuzz", &reference);
    }
});
