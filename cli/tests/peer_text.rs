//! Text a peer chose never reaches the terminal raw, and `--timeout` bounds `bsvp2p connect`
//! against a peer that never answers. A simulated node advertises a user agent carrying an OSC
//! title sequence (`ESC ] 0 ; pwned BEL`) and a CSI colour (`ESC [ 31 m`); `connect` and
//! `monitor` (plain output) must print it escaped, without a single ESC byte.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use common::*;

const HOSTILE_AGENT: &str = "/evil\u{1b}]0;pwned\u{7}\u{1b}[31m:1.0/";
const ESCAPED_AGENT: &str = "/evil\\u{1b}]0;pwned\\u{7}\\u{1b}[31m:1.0/";

async fn hostile_node() -> SimNet {
    SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .user_agent(HOSTILE_AGENT),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_prints_a_hostile_user_agent_escaped() {
    let net = hostile_node().await;
    let addr = net.node(0).address().to_string();
    let out = bsvp2p(&["connect", &addr, "--network", "regtest", "--duration", "1"]).await;
    let text = stdout_of(&out);
    assert!(text.contains(ESCAPED_AGENT), "{text}");
    assert!(!out.stdout.contains(&0x1b), "raw ESC in {text:?}");
    assert!(!out.stderr.contains(&0x1b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_plain_lines_print_a_hostile_user_agent_escaped() {
    let net = hostile_node().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(["monitor", "--network", "regtest", "--plain", "--store"])
        .arg(dir.path().join("peers.json"))
        .args(["--peer", &net.node(0).address().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Raw bytes, not lossy text: an ESC must be seen if it is there.
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while r
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    let connected = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("a connected line from monitor");
        assert!(!line.contains(&0x1b), "raw ESC in {line:?}");
        let text = String::from_utf8(line).unwrap();
        if text.contains(" connected ") {
            break text;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected.contains(ESCAPED_AGENT), "{connected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_the_handshake_with_a_silent_peer() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::NeverAnswerVersion),
    )
    .await
    .unwrap();
    let addr = net.node(0).address().to_string();
    let started = Instant::now();
    let out = bsvp2p(&["connect", &addr, "--network", "regtest", "--timeout", "2"]).await;
    let took = started.elapsed();
    // The node's 60 s handshake timeout would otherwise hold the command.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(took >= Duration::from_secs(2), "took {took:?}");
    assert_one_line_error(&out, "no handshake");
}
