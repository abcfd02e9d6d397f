//! The AWS protocol codecs (Query forms, RPC v2 CBOR bodies) on arbitrary
//! bytes, with their round trip checked. See `flotilla_fuzz::protocol_one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::protocol_one(data));
