//! `bsvp2p simnet` as a user runs it: it prints every node's address, the nodes accept
//! connections, and Ctrl-C (SIGINT) stops it cleanly.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn simnet_prints_node_addresses_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(["simnet", "--nodes", "3", "--blocks", "10", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bsvp2p starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(started["event"], "started");
    assert_eq!(started["height"], 10);
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["event"], "node");
        addrs.push(
            v["address"]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap(),
        );
    }
    for a in &addrs {
        assert!(a.ip().is_loopback());
        TcpStream::connect_timeout(a, Duration::from_secs(5)).expect("node accepts");
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopped: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(stopped["event"], "stopped");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "bsvp2p simnet did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
