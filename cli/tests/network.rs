//! `bsvp2p crawl`, `headers`, `getblock` and `broadcast` as a user runs them, against simnets
//! started by each test on loopback: the built binary is run as a child process and its output
//! checked against what the simnet holds.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bitcoinsv::bitcoin::{Block, Decode, InvVect, Reader};
use bitcoinsv::p2p::Message;
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig, BCH_USER_AGENT};
use common::*;
use serde_json::Value;

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bsvp2p-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn crawl_from_one_seed_finds_all_sixty_nodes_and_reports_the_bch_agent_node_as_bch() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(60)
            .blocks(3)
            .with_misbehaviour(41, Misbehaviour::BchUserAgent),
    )
    .await
    .unwrap();
    let seed = net.node(0).address().to_string();
    let out = bsvp2p(&[
        "crawl",
        "--seed",
        &seed,
        "--network",
        "regtest",
        "--format",
        "json",
        "--addr-wait",
        "5",
    ])
    .await;
    let report: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    let nodes = report["nodes"].as_array().unwrap();
    let got: HashSet<String> = nodes
        .iter()
        .map(|n| n["address"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = net.addresses().iter().map(|a| a.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(report["found"], 60);
    assert_eq!(report["deadline_reached"], false);
    let bch = net.node(41).address().to_string();
    for n in nodes {
        assert_eq!(n["reachable"], true, "{n}");
        assert_eq!(n["start_height"], 3);
        if n["address"] == bch.as_str() {
            assert_eq!(n["chain"], "bch");
            assert_eq!(n["user_agent"], BCH_USER_AGENT);
        } else {
            assert_eq!(n["chain"], "bsv", "{n}");
        }
    }
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.starts_with("60 reachable of 60 tried, 60 found in "),
        "{summary}"
    );
    assert!(summary.contains("(1 bch, 59 bsv)"), "{summary}");
    net.shutdown().await;
}

#[tokio::test]
async fn crawl_writes_a_table_to_stdout_and_csv_to_a_file() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(2)
            .include_unreachable_addrs(1),
    )
    .await
    .unwrap();
    let seed = net.node(0).address().to_string();
    let table = stdout_of(&bsvp2p(&["crawl", "--seed", &seed, "--network", "regtest"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ADDRESS"), "{table}");
    assert_eq!(lines.len(), 1 + 3, "reachable nodes only: {table}");
    assert!(lines[1..]
        .iter()
        .all(|l| l.contains(" bsv ") && l.contains("/Bitcoin SV:1.2.2/")));
    let csv = temp_file("crawl.csv");
    let out = bsvp2p(&[
        "crawl",
        "--seed",
        &seed,
        "--network",
        "regtest",
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ])
    .await;
    assert!(stdout_of(&out).is_empty());
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "address,reachable,chain,user_agent,version,services,start_height,rtt_ms,addresses,error"
    );
    assert_eq!(rows.len(), 1 + 4, "every node tried: {text}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.contains(",false,unknown,"))
            .count(),
        1
    );
    net.shutdown().await;
}

#[tokio::test]
async fn headers_returns_the_simnet_chains_hashes_across_full_batches() {
    // 4100 blocks: two full batches of 2000, then 100.
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(4100))
        .await
        .unwrap();
    let addr = net.node(0).address().to_string();
    let out = bsvp2p(&["headers", &addr, "--network", "regtest"]).await;
    let got: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    let want: Vec<String> = (1..=4100)
        .map(|h| net.chain().hash_at(h).unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.starts_with(&format!(
            "4100 headers from {}, last {} (height 4100) in ",
            net.chain().hash_at(0).unwrap(),
            net.chain().tip_hash()
        )),
        "{summary}"
    );
    assert!(summary.contains("headers/s)"));
    assert_eq!(net.node(0).stats().received("getheaders"), 3);
    net.shutdown().await;
}

#[tokio::test]
async fn headers_from_a_hash_with_a_count_prints_json_lines() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(20))
        .await
        .unwrap();
    let addr = net.node(0).address().to_string();
    let from = net.chain().hash_at(10).unwrap().to_string();
    let out = bsvp2p(&[
        "headers",
        &addr,
        "--network",
        "regtest",
        "--from",
        &from,
        "--count",
        "3",
        "--json",
    ])
    .await;
    let lines: Vec<Value> = stdout_of(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, v) in lines.iter().enumerate() {
        let h = net.chain().header_at(11 + i as u32).unwrap();
        assert_eq!(v["hash"], h.hash().to_string());
        assert_eq!(v["prev_hash"], h.prev_hash.to_string());
        assert_eq!(v["bits"], h.bits);
        assert!(v.get("height").is_none(), "height unknown from a hash");
    }
    net.shutdown().await;
}

#[tokio::test]
async fn getblock_writes_a_block_whose_hash_matches() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(10).txs_per_block(3))
        .await
        .unwrap();
    let addr = net.node(0).address().to_string();
    let hash = net.chain().hash_at(7).unwrap();
    let file = temp_file("block7.bin");
    let out = bsvp2p(&[
        "getblock",
        &addr,
        &hash.to_string(),
        "--network",
        "regtest",
        "--out",
        file.to_str().unwrap(),
    ])
    .await;
    let text = stdout_of(&out);
    let raw = std::fs::read(&file).unwrap();
    let block = Block::decode(&mut Reader::new(&raw)).unwrap();
    assert_eq!(block.hash(), hash);
    assert_eq!(*net.chain().block_at(7).unwrap(), block);
    assert!(text.contains(&format!("hash          {hash}")), "{text}");
    assert!(text.contains("height        7"), "{text}");
    assert!(text.contains("transactions  4"), "{text}");
    assert!(text.contains(&format!("size          {} bytes", raw.len())));
    assert!(text.contains("(verified)"));
    let json: Value = serde_json::from_str(&stdout_of(
        &bsvp2p(&[
            "getblock",
            &addr,
            &hash.to_string(),
            "--network",
            "regtest",
            "--json",
        ])
        .await,
    ))
    .unwrap();
    assert_eq!(json["hash"], hash.to_string());
    assert_eq!(json["height"], 7);
    assert_eq!(json["merkle_root_valid"], true);
    net.shutdown().await;
}

#[tokio::test]
async fn getblock_of_a_block_the_peer_lacks_times_out_with_a_clear_message() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(2))
        .await
        .unwrap();
    let addr = net.node(0).address().to_string();
    let missing = "00000000000000000000000000000000000000000000000000000000000000ab";
    let out = bsvp2p(&[
        "getblock",
        &addr,
        missing,
        "--network",
        "regtest",
        "--timeout",
        "0.5",
    ])
    .await;
    assert_one_line_error(&out, "a node sends nothing for a block it does not have");
    net.shutdown().await;
}

#[tokio::test]
async fn broadcast_is_requested_and_relayed_to_a_client_of_another_node() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .unwrap();
    let mut watcher = Watcher::connect(net.node(1).address()).await;
    let tx = sample_tx(7);
    let txid = tx.txid();
    let peer = net.node(0).address().to_string();
    let out = bsvp2p(&[
        "broadcast",
        &hex::encode(tx.raw()),
        "--peer",
        &peer,
        "--network",
        "regtest",
        "--wait",
        "0.5",
        "--json",
    ])
    .await;
    let report: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(report["txid"], txid.to_string());
    let p = &report["peers"][0];
    assert_eq!(p["peer"], peer);
    assert_eq!(p["requested"], true);
    assert_eq!(p["delivery"], "announced (inv)");
    assert_eq!(p["reject"], Value::Null);
    assert!(net.mempool_contains(&txid));
    // The simnet relays by inv: a client of the other node hears of it.
    loop {
        match watcher.recv().await {
            Some(Message::Inv(items)) if items.contains(&InvVect::tx(txid)) => break,
            Some(_) => {}
            None => panic!("no inv for {txid} on node 1"),
        }
    }
    net.shutdown().await;
}

#[tokio::test]
async fn broadcast_reports_the_reject_of_every_peer_and_fails() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::RejectAllTx),
    )
    .await
    .unwrap();
    let tx = sample_tx(8);
    let peer = net.node(0).address().to_string();
    let out = bsvp2p(&[
        "broadcast",
        &hex::encode(tx.raw()),
        "--peer",
        &peer,
        "--network",
        "regtest",
        "--wait",
        "2",
    ])
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!(
            "{peer}: announced (inv), requested, rejected 0x10 bad-txns-inputs-missingorspent"
        )),
        "{report}"
    );
    assert_one_line_error(
        &out,
        &format!(
            "no peer took transaction {}: {peer}: announced (inv), requested, rejected 0x10",
            tx.txid()
        ),
    );
    assert!(!net.mempool_contains(&tx.txid()));
    net.shutdown().await;
}

#[tokio::test]
async fn getblock_timeout_bounds_the_handshake_with_a_silent_peer() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(2)
            .with_misbehaviour(0, Misbehaviour::NeverAnswerVersion),
    )
    .await
    .unwrap();
    let addr = net.node(0).address().to_string();
    let hash = net.chain().hash_at(1).unwrap().to_string();
    let started = std::time::Instant::now();
    let out = bsvp2p(&[
        "getblock",
        &addr,
        &hash,
        "--network",
        "regtest",
        "--timeout",
        "2",
    ])
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_one_line_error(&out, "no handshake completed before the timeout");
    net.shutdown().await;
}

#[tokio::test]
async fn getblock_from_a_peer_serving_a_corrupt_block_says_so() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(2)
            .with_misbehaviour(0, Misbehaviour::CorruptBlocks),
    )
    .await
    .unwrap();
    let addr = net.node(0).address().to_string();
    let hash = net.chain().hash_at(1).unwrap().to_string();
    let out = bsvp2p(&[
        "getblock",
        &addr,
        &hash,
        "--network",
        "regtest",
        "--timeout",
        "5",
    ])
    .await;
    assert_one_line_error(&out, "sent a corrupt block");
    net.shutdown().await;
}

#[tokio::test]
async fn peers_that_refuse_the_connection_give_a_one_line_error() {
    let refusing = refusing_address().to_string();
    let hash = "00000000000000000000000000000000000000000000000000000000000000ab";
    let tx = hex::encode(sample_tx(9).raw());
    for args in [
        vec!["headers", refusing.as_str(), "--network", "regtest"],
        vec!["getblock", refusing.as_str(), hash, "--network", "regtest"],
        vec!["broadcast", tx.as_str(), "--peer", refusing.as_str()],
    ] {
        let out = bsvp2p(&args).await;
        assert_one_line_error(&out, &format!("cannot connect to {refusing}"));
    }
}

#[tokio::test]
async fn connect_takes_the_shared_network_option_and_prints_the_handshake() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let addr = net.node(0).address().to_string();
    let out = bsvp2p(&[
        "connect",
        &addr,
        "--network",
        "regtest",
        "--duration",
        "0.3",
        "--json",
    ])
    .await;
    let commands: Vec<String> = stdout_of(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["message"]["command"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(commands[..3], ["version", "verack", "protoconf"]);
    net.shutdown().await;
}
