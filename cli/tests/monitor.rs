//! `bsvp2p monitor` with plain output (stdout is a pipe): it shows peers connecting and events,
//! serves metrics, and SIGINT shuts it down cleanly, leaving a saved peer store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bitcoinsv_simnet::{SimNet, SimNetConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_connected_peers_and_saves_the_store_on_sigint() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .unwrap();
    let addrs = net.addresses();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peers.json");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(["monitor", "--network", "regtest", "--store"])
        .arg(&store)
        .args([
            "--peer",
            &addrs[0].to_string(),
            "--peer",
            &addrs[1].to_string(),
        ])
        .args(["--metrics-addr", &metrics.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut connected = 0;
    while connected < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("monitor output");
        if line.contains(" connected ") {
            connected += 1;
        }
        seen.push(line);
    }
    assert!(
        seen[0].starts_with("# monitoring regtest (fixed mode)"),
        "{seen:?}"
    );
    // Prometheus metrics show both connections.
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    })
    .await
    .unwrap();
    assert!(
        body.contains("bsvp2p_connections{direction=\"outbound\"} 2"),
        "{body}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "monitor exited with {exit:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("# stopped; peer store saved")),
        "{rest:?}"
    );
    let saved = std::fs::read_to_string(&store).unwrap();
    for a in &addrs {
        assert!(
            saved.contains(&format!("\"port\": {}", a.port()))
                || saved.contains(&format!("\"port\":{}", a.port())),
            "{saved}"
        );
    }
    net.shutdown().await;
}
