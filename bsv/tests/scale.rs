//! Scale (issue 12): one manager holding 2,000 simultaneous connections to simnet nodes on
//! loopback, with its resident memory per idle connection under the 16 KiB goal.
//!
//! The simnet nodes run in a **child process** (this test binary re-executed, running only
//! [`simnet_child`] with `SCALE_SIMNET_CHILD` set), so that the process measured holds the
//! manager alone: its RSS (`VmRSS` of `/proc/self/status`) is read before `start()` and once
//! every connection is established, after a first, unmeasured round (same manager settings,
//! same nodes) has primed the allocator's arenas and tokio's workers as in a process that has
//! run for a while. Peer learning is off: the nodes' `addr` replies to `getaddr` are not what an
//! idle connection holds (docs/BENCHMARKS.md, "10,000 connections").
//!
//! Descriptors: the test raises its soft `RLIMIT_NOFILE` to the hard limit (the child inherits
//! it) and fails with a clear message if the hard limit is below what the child needs (a
//! listener and a connection per node, 4,000 and a margin); `ulimit -n 20000` before the tests
//! gives room.

#[path = "common/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Network, Peer, PeerStore};
use bitcoinsv_simnet::{SimNet, SimNetConfig};

/// Connections held at once.
const CONNECTIONS: usize = 2_000;
/// The goal of issue 12, per idle connection.
const GOAL_KIB: f64 = 16.0;
/// Descriptors the child needs (a listener and an accepted socket per node) with a margin for
/// the runtime, the pipes and the test harness.
const NEEDED_FDS: u64 = 2 * CONNECTIONS as u64 + 256;
/// Set in the child's environment to the number of nodes to run.
const CHILD_ENV: &str = "SCALE_SIMNET_CHILD";

/// The child's side: when `SCALE_SIMNET_CHILD` is set, runs that many simnet nodes, prints
/// their addresses and `READY`, and keeps them until its stdin closes. A no-op otherwise.
#[test]
fn simnet_child() {
    let Some(nodes) = std::env::var(CHILD_ENV)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("child runtime");
    rt.block_on(async move {
        let net = SimNet::start(SimNetConfig::default().nodes(nodes).blocks(1))
            .await
            .expect("starting the simnet");
        {
            let mut out = std::io::stdout().lock();
            for a in net.addresses() {
                let _ = writeln!(out, "ADDR {a}");
            }
            let _ = writeln!(out, "READY");
            let _ = out.flush();
        }
        // Until the parent closes our stdin (or exits).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .await;
        net.shutdown().await;
    });
}

/// The simnet child process, killed when dropped.
struct Child {
    child: std::process::Child,
    addresses: Vec<SocketAddr>,
}

impl Child {
    fn start(nodes: usize) -> Child {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["simnet_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, nodes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the simnet child");
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut addresses = Vec::with_capacity(nodes);
        for line in stdout.lines() {
            let line = line.expect("reading the child");
            if line.trim() == "READY" {
                break;
            }
            // The harness may print "test simnet_child ... " on the same line first.
            if let Some((_, a)) = line.trim().split_once("ADDR ") {
                addresses.push(a.parse().expect("child address"));
            }
        }
        assert_eq!(addresses.len(), nodes, "the simnet child did not start");
        Child { child, addresses }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Closing stdin ends the child; kill it too in case it hangs.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds every node of `addresses` at once; returns the RSS before `start()`, once all are
/// established, and how long that took.
async fn round(addresses: &[SocketAddr]) -> (u64, u64, Duration) {
    let store = Arc::new(InMemoryPeerStore::new());
    for a in addresses {
        store
            .create(Peer::new(a.ip(), a.port()))
            .await
            .expect("store");
    }
    let mut config = ManagerConfig::new(Network::Regtest);
    config.target_connections = addresses.len();
    config.max_connections = addresses.len();
    config.addresses.learn = false;
    config.connection.connect_timeout = Duration::from_secs(20);
    let manager = Manager::new(config, store);
    process::trim_allocator();
    let before = process::rss_kib();
    let t0 = Instant::now();
    manager.start().await.expect("start");
    let n = manager
        .wait_for_connections(addresses.len(), Duration::from_secs(40))
        .await
        .expect("every connection established");
    let took = t0.elapsed();
    assert_eq!(n, addresses.len());
    // The handshakes' aftermath: every connection's first ping has had its pong (the last
    // exchange an idle connection makes). The snapshots this takes are freed before the
    // reading, and the allocator trimmed, as before `start()`.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !manager.connected_peers().iter().all(|p| p.rtt.is_some()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every connection's first ping answered");
    process::trim_allocator();
    let after = process::rss_kib();
    manager.shutdown().await.expect("shutdown");
    (before, after, took)
}

#[test]
fn two_thousand_simultaneous_connections_cost_under_16_kib_each() {
    let fds = process::raise_fd_limit();
    assert!(
        fds >= NEEDED_FDS,
        "open-file limit {fds} is below the {NEEDED_FDS} this test needs: run `ulimit -n 20000` \
         (or at least {NEEDED_FDS}) before the tests"
    );
    let child = Child::start(CONNECTIONS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (_, _, warm_up) = round(&child.addresses).await;
        let (before, after, took) = round(&child.addresses).await;
        let per = after.saturating_sub(before) as f64 / CONNECTIONS as f64;
        eprintln!(
            "{CONNECTIONS} connections up in {took:?} (warm-up round {warm_up:?}); RSS {before} KiB -> \
             {after} KiB: {per:.1} KiB per connection (goal {GOAL_KIB} KiB)"
        );
        assert!(
            per < GOAL_KIB,
            "{per:.1} KiB per idle connection, over the {GOAL_KIB} KiB goal (RSS {before} KiB -> {after} KiB)"
        );
    });
    drop(child);
}
