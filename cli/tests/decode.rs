//! `bsvp2p decode` as a user runs it: real captures in, JSON out; bad input gives a one-line
//! error and a non-zero exit, never a backtrace.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bsvp2p(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run bsvp2p")
}

/// A file under `testdata/` at the root of the checkout.
fn testdata(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn assert_one_line_error(out: &Output, mentions: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn readme_example_frame_decodes_to_our_version_message() {
    let v = json(&bsvp2p(&["decode", "docs/examples/version.hex"]));
    assert_eq!(v["network"], "mainnet");
    assert_eq!(v["message"]["command"], "version");
    assert_eq!(
        v["message"]["payload"]["user_agent"],
        "/bitcoinsv-rs:0.1.0/"
    );
    assert_eq!(v["message"]["payload"]["version"], 70016);
}

#[test]
fn real_node_capture_decodes_with_its_network_detected() {
    let v = json(&bsvp2p(&[
        "decode",
        &testdata("vectors/bsvtest_version_frame_bitcoin-sv-1.2.2_capture.hex"),
    ]));
    assert_eq!(v["network"], "testnet");
    assert_eq!(v["message"]["payload"]["user_agent"], "/Bitcoin SV:1.2.2/");
    assert_eq!(v["message"]["payload"]["association_id"], "empty");
}

#[test]
fn hex_on_the_command_line_decodes() {
    let verack = "e3e1f3e876657261636b000000000000000000005df6e0e2";
    let v = json(&bsvp2p(&["decode", verack]));
    assert_eq!(v["message"]["command"], "verack");
}

#[test]
fn bare_payload_decodes_with_hashes_in_display_order() {
    let v = json(&bsvp2p(&[
        "decode",
        "--payload",
        "headers",
        &testdata("vectors/jcl_bsvmain_headers_payload_real.hex"),
    ]));
    let first = v["message"]["payload"][0].clone();
    assert!(first["prev_hash"]
        .as_str()
        .unwrap()
        .starts_with("0000000000"));
}

#[test]
fn raw_binary_block_file_decodes_as_a_payload() {
    let path =
        testdata("data/0000000000000000000988036522057056727ae85ad7cea92b2198418c9bb8f7.bin");
    let v = json(&bsvp2p(&["decode", "--payload", "block", &path]));
    assert_eq!(
        v["message"]["payload"]["transactions"]
            .as_array()
            .unwrap()
            .len(),
        222
    );
}

#[test]
fn a_block_shows_its_hash_transaction_count_and_whether_its_merkle_root_matches() {
    let name = "0000000000000000000988036522057056727ae85ad7cea92b2198418c9bb8f7";
    let path = testdata(&format!("data/{name}.bin"));
    let v = json(&bsvp2p(&["decode", "--payload", "block", &path]));
    assert_eq!(v["block"]["hash"], name);
    assert_eq!(v["block"]["transactions"], 222);
    assert_eq!(v["block"]["merkle_root_matches"], true);

    // The same block with one byte of its header's merkle root changed (bytes 36..68).
    let mut raw = std::fs::read(&path).unwrap();
    raw[40] ^= 0x01;
    let dir = std::env::temp_dir().join(format!("bsvp2p-decode-block-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad-merkle.bin");
    std::fs::write(&bad, &raw).unwrap();
    let v = json(&bsvp2p(&[
        "decode",
        "--payload",
        "block",
        bad.to_str().unwrap(),
    ]));
    assert_eq!(v["block"]["transactions"], 222);
    assert_eq!(v["block"]["merkle_root_matches"], false);
    assert_ne!(v["block"]["hash"], name);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stream_of_frames_prints_one_json_line_per_message() {
    let dir = std::env::temp_dir().join(format!("bsvp2p-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut stream = Vec::new();
    for v in [
        "jcl_bsvmain_version_frame_synthetic.hex",
        "jcl_bsvmain_verack_frame.hex",
        "jcl_bsvmain_ping_frame.hex",
    ] {
        let text = std::fs::read_to_string(testdata(&format!("vectors/{v}"))).unwrap();
        stream.extend(hex::decode(text.trim()).unwrap());
    }
    let file = dir.join("stream.bin");
    std::fs::write(&file, &stream).unwrap();
    let out = bsvp2p(&["decode", "--all", file.to_str().unwrap()]);
    assert!(out.status.success());
    let commands: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]["command"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(commands, ["version", "verack", "ping"]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn btc_magic_is_refused_with_a_hint_and_accepted_with_explicit_magic() {
    let f = testdata("vectors/btcmain_verack_frame.hex");
    assert_one_line_error(&bsvp2p(&["decode", &f]), "--magic f9beb4d9");
    let v = json(&bsvp2p(&["decode", "--magic", "f9beb4d9", &f]));
    assert_eq!(v["message"]["command"], "verack");
}

#[test]
fn bad_input_exits_non_zero_with_one_line_that_says_what_to_fix() {
    assert_one_line_error(
        &bsvp2p(&["decode", "not-hex-and-not-a-file"]),
        "neither an existing file nor valid hex",
    );
    assert_one_line_error(&bsvp2p(&["decode", "e3e1f3e876657261"]), "truncated frame");
    assert_one_line_error(&bsvp2p(&["decode", "--magic", "xyz", "00"]), "--magic");
    // A checksum that does not match.
    assert_one_line_error(
        &bsvp2p(&["decode", "e3e1f3e876657261636b000000000000000000005df6e0e3"]),
        "bad checksum",
    );
    let out = bsvp2p(&["decode", "--network", "bch", "00"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown network"));
}
