//! Arbitrary byte streams and message sequences against the connection's `PeerProtocol` state
//! machine (see `bitcoinsv::p2p::fuzzing::peer_protocol` for what is checked, docs/FUZZING.md
//! for how to run it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bitcoinsv::p2p::fuzzing::peer_protocol(data);
});
