//! Request decoding and validation: arbitrary bytes as the body of an
//! operation picked by the first byte. See `flotilla_fuzz::decode_one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::decode_one(data));
