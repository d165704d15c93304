//! `bsvp2p demo`, the README's first command: it runs on a fresh machine with no network and
//! exits 0 with the expected account.

use std::process::Command;

#[test]
fn demo_runs_and_its_summary_shows_the_expected_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let step = |name: &str| {
        lines
            .iter()
            .filter(|l| l["step"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(step("network")[0]["nodes"], 24);
    assert_eq!(step("pool")[0]["connections"], 8);
    let bans = step("ban");
    assert_eq!(bans.len(), 1);
    assert!(bans[0]["reason"].as_str().unwrap().contains("Bitcoin ABC"));
    let crawl = step("crawl").last().cloned().unwrap();
    assert_eq!(crawl["found"], 24);
    assert_eq!(crawl["bsv"], 23);
    assert_eq!(crawl["bch"], 1);
    assert_eq!(step("headers")[0]["headers"], 200);
    assert_eq!(step("block")[0]["transactions"], 21);
    // The fork: two blocks replaced by three on height 198, reported as a reorg of depth 2.
    let reorg = &step("reorg")[0];
    assert_eq!(
        (reorg["fork_height"].clone(), reorg["depth"].clone()),
        (198.into(), 2.into())
    );
    // The broadcast: every peer (8 outbound, the rejecting node inbound) was offered it, the
    // rejecting node rejected it, and at least one other announced it back. Not every peer need
    // ask: the simulated nodes relay among themselves, and one that got it from a neighbour
    // before our `inv` arrived has no reason to.
    let broadcast = &step("broadcast")[0];
    assert_eq!(broadcast["peers"], 9);
    assert!(broadcast["requested"].as_u64().unwrap() >= 2, "{broadcast}");
    assert_eq!(broadcast["rejected"], 1);
    assert!(
        broadcast["relayed_back"].as_u64().unwrap() >= 1,
        "{broadcast}"
    );
    let summary = &step("summary")[0]["summary"];
    assert_eq!(summary["simulated nodes"], "24");
    assert_eq!(
        summary["connections"], "8 outbound, 1 inbound",
        "exactly the target outbound, never more, plus the node that dialled in"
    );
}

#[test]
fn demo_text_output_ends_with_a_summary_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nSummary\n"));
    assert!(text.contains("banned user agent"));
    assert!(text.contains("merkle root verified"));
}

#[test]
fn readme_starts_with_the_demo_and_the_ci_test_command() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run")).unwrap();
    let block: Vec<&str> = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .lines()
        .collect();
    assert!(
        block[0].starts_with("cargo run -p bsvp2p -- demo"),
        "{block:?}"
    );
    let test_cmd = block[1].split('#').next().unwrap().trim();
    assert!(test_cmd.starts_with("cargo test"));
    assert!(
        ci.lines().any(|l| l.trim() == test_cmd),
        "CI runs exactly {test_cmd:?}"
    );
}
