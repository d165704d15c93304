//! Helpers for the integration tests: locating `testdata/` at the repository root (real vectors,
//! the real block and the seed's example program; `testdata/README.md` says where each came from).
#![allow(dead_code)]

pub mod dns;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::path::PathBuf;

/// `testdata/` at the root of the checkout: everything the tests and benchmarks read, so a fresh
/// clone needs nothing beside it.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Reads a hex vector file (one line of hex).
pub fn vector(name: &str) -> Vec<u8> {
    let path = testdata_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("hex in {}: {e}", path.display()))
}

/// Reads a data file.
pub fn data(name: &str) -> Vec<u8> {
    let path = testdata_dir().join("data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.hex` vector name under `vectors/` and `vectors/derived/`.
pub fn all_vectors() -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["", "derived"] {
        let dir = testdata_dir().join("vectors").join(sub);
        for e in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "hex") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                out.push(if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                });
            }
        }
    }
    out.sort();
    out
}

/// The hash of the real mainnet block in `data/` (also its file name).
pub const REAL_BLOCK_HASH: &str =
    "0000000000000000000988036522057056727ae85ad7cea92b2198418c9bb8f7";
