//! Whole operations: arbitrary bytes as the body of an operation picked by
//! the first byte, run by the handlers over an in-memory state that already
//! holds a cluster, a container instance and a task definition. See
//! `flotilla_fuzz::dispatch_one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flotilla_fuzz::dispatch_one(data));
