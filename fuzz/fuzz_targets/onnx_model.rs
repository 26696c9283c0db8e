//! The bounded ONNX walk of a tenant's model upload, on attacker bytes: never panics, and what
//! it takes holds no tensor with external data.
#![no_main]

use inference::{OnnxRefusal, check_onnx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match check_onnx(data) {
        Ok(summary) => assert!(summary.ir_version > 0),
        Err(OnnxRefusal::TooComplex(_)) => assert!(data.len() > 16),
        Err(_) => {}
    }
});
