//! `bsvp2p config --print-default`, `--config FILE`, and bad input to every network subcommand:
//! each mistake exits non-zero with one line that says what to fix, never a backtrace.

mod common;

use bitcoinsv::p2p::{ManagerConfig, Network};
use common::*;

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("bsvp2p-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn config_print_default_parses_back_as_the_default_configuration() {
    for (arg, network) in [
        (None, Network::Mainnet),
        (Some("testnet"), Network::Testnet),
    ] {
        let mut args = vec!["config", "--print-default"];
        if let Some(n) = arg {
            args.extend(["--network", n]);
        }
        let text = stdout_of(&bsvp2p(&args).await);
        let back: ManagerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, ManagerConfig::new(network));
        back.validate().unwrap();
        // A comment precedes every setting.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.is_empty() && !l.starts_with('#') && !l.starts_with('[') {
                assert!(lines[i - 1].starts_with("# "), "no comment above {l:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_printed_default_file_is_accepted_by_config() {
    let text = stdout_of(&bsvp2p(&["config", "--print-default", "--network", "regtest"]).await);
    let file = temp_file("regtest.toml", &text);
    let again = stdout_of(&bsvp2p(&["config", "--print-default", "--config", &file]).await);
    assert_eq!(again, text);
    // A conflicting --network is refused rather than guessed.
    let out = bsvp2p(&[
        "config",
        "--print-default",
        "--config",
        &file,
        "--network",
        "mainnet",
    ])
    .await;
    assert_one_line_error(&out, "conflicts with --network mainnet");
}

#[tokio::test]
async fn bad_configuration_files_name_the_file_line_and_setting() {
    let typo = temp_file("typo.toml", "target_connections = 3\nmax_conections = 4\n");
    let out = bsvp2p(&["config", "--print-default", "--config", &typo]).await;
    assert_one_line_error(&out, "typo.toml:2:1: unknown field `max_conections`");
    let invalid = temp_file("invalid.toml", "[connection]\nbackoff_multiplier = 0.5\n");
    let out = bsvp2p(&["headers", "127.0.0.1:1", "--config", &invalid]).await;
    assert_one_line_error(&out, "backoff_multiplier is 0.5");
    let out = bsvp2p(&[
        "crawl",
        "--seed",
        "127.0.0.1:1",
        "--config",
        "/no/such/file.toml",
    ])
    .await;
    assert_one_line_error(&out, "/no/such/file.toml: No such file or directory");
}

#[tokio::test]
async fn bad_input_to_each_subcommand_exits_non_zero_with_one_line_that_says_what_to_fix() {
    let hash = "00000000000000000000000000000000000000000000000000000000000000ab";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["crawl", "--seed", "nope"],
            "expected ip:port or host:port",
        ),
        (vec!["crawl", "--network", "bch"], "unknown network \"bch\""),
        (
            vec!["crawl", "--network", "regtest"],
            "regtest has no DNS seeds: pass --seed ADDR",
        ),
        (
            vec!["crawl", "--seed", "127.0.0.1:1", "--concurrency", "0"],
            "concurrency must be at least 1",
        ),
        (
            vec!["crawl", "--seed", "127.0.0.1:1", "--timeout", "0"],
            "is not a positive number of seconds",
        ),
        (
            vec!["crawl", "--format", "xml"],
            "invalid value 'xml' for '--format",
        ),
        (
            vec!["headers", "nope"],
            "\"nope\" is not an address: expected ip:port",
        ),
        (
            vec!["headers"],
            "required arguments were not provided: <ADDRESS>",
        ),
        (
            vec!["headers", "127.0.0.1:1", "--from", "zz"],
            "invalid value 'zz' for '--from",
        ),
        (
            vec!["headers", "127.0.0.1:1", "--network", "bsv"],
            "unknown network \"bsv\"",
        ),
        (
            vec!["getblock", "127.0.0.1:1", "not-a-hash"],
            "is not a block hash: expected 64 hexadecimal digits",
        ),
        (vec!["getblock", "1.2.3", hash], "is not an address"),
        (
            vec!["broadcast", "zz", "--peer", "127.0.0.1:1"],
            "neither an existing file nor valid hex",
        ),
        (
            vec!["broadcast", "/no/such/tx.hex", "--peer", "127.0.0.1:1"],
            "neither an existing file nor valid hex",
        ),
        (
            vec!["broadcast", "0100", "--peer", "127.0.0.1:1"],
            "is not a valid transaction",
        ),
        (
            vec!["broadcast", "00", "--peer", "x"],
            "\"x\" is not an address",
        ),
        (
            vec!["broadcast", "00", "--peer", "127.0.0.1:1", "--wait", "soon"],
            "\"soon\" is not a positive number of seconds",
        ),
        (vec!["config"], "--print-default"),
    ];
    for (args, mentions) in cases {
        let out = bsvp2p(&args).await;
        assert_one_line_error(&out, mentions);
    }
    // The hint names the subcommand's own help.
    let out = bsvp2p(&["getblock", "nope", "x"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("(see bsvp2p getblock --help)"));
}

#[tokio::test]
async fn a_transaction_file_in_hex_or_raw_bytes_is_read() {
    let tx = sample_tx(3);
    let refusing = refusing_address().to_string();
    let hex_file = temp_file("tx.hex", &format!("{}\n", hex::encode(tx.raw())));
    let raw_file = std::env::temp_dir()
        .join(format!("bsvp2p-usage-{}", std::process::id()))
        .join("tx.bin");
    std::fs::write(&raw_file, tx.raw()).unwrap();
    for f in [hex_file.as_str(), raw_file.to_str().unwrap()] {
        // The file parses; only the (refusing) peer makes the command fail.
        let out = bsvp2p(&["broadcast", f, "--peer", &refusing]).await;
        assert_one_line_error(&out, &format!("transaction {} not broadcast", tx.txid()));
    }
}
