//! Header sequences against the header chain's index (see
//! `bitcoinsv::p2p::fuzzing::header_chain` for what is checked, docs/FUZZING.md for how to run
//! it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitcoinsv::p2p::fuzzing::header_chain(data);
});
