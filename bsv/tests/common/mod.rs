//! Helpers shared by integration tests: locating `../shared` (real vectors and data).
#![allow(dead_code)]

use std::path::PathBuf;

/// The `shared` folder beside the checkout (`BSV_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("BSV_SHARED_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Reads a hex vector file (one line of hex).
pub fn vector(name: &str) -> Vec<u8> {
    let path = shared_dir().join("vectors").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("hex in {}: {e}", path.display()))
}

/// Reads a data file.
pub fn data(name: &str) -> Vec<u8> {
    let path = shared_dir().join("data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.hex` vector name under `vectors/` and `vectors/derived/`.
pub fn all_vectors() -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["", "derived"] {
        let dir = shared_dir().join("vectors").join(sub);
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
