//! Starting and stopping large simnets leaves nothing behind: no task, no socket. These tests
//! count the process's open file descriptors, so they live alone in this test binary (tests in
//! one binary run in parallel threads and would open sockets of their own meanwhile) and run
//! one after the other behind a lock, each on its own runtime created and dropped while holding
//! it (so no other test's runtime is starting or winding down while descriptors are counted).
//!
//! Each runtime is current-thread, with tokio's clock paused: every task runs on the test's
//! thread, so when the test sees the last socket closed, every task that was stopped or aborted
//! has run to its end, and the counts are checked at once instead of polled.

mod common;

use std::time::Duration;

use bitcoinsv_simnet::{SimNet, SimNetConfig};
use common::*;
use std::future::Future;
use std::sync::Mutex;

/// Serializes the tests of this binary: each counts every descriptor of the process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` on a fresh current-thread runtime with the clock paused, holding [`SERIAL`].
fn serial<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(test());
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[test]
fn starting_and_shutting_down_100_nodes_leaves_no_task_or_socket() {
    serial(|| async {
        let fds_before = open_fds();
        let tasks_before = alive_tasks();
        let started = std::time::Instant::now();
        let net = SimNet::start(SimNetConfig::default().nodes(100))
            .await
            .unwrap();
        assert_eq!(net.len(), 100);
        assert!(open_fds() >= fds_before + 100, "one listener per node");
        // Give a tenth of the nodes a live, handshaken connection so connection tasks exist too.
        let mut clients = Vec::new();
        for i in (0..100).step_by(10) {
            let mut c = Client::connect(net.node(i).address()).await;
            c.handshake().await;
            clients.push(c);
        }
        assert!(alive_tasks() >= tasks_before + 110);
        net.shutdown().await;
        // A bound on a hang, not a measure of speed: this takes well under a second.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "100 nodes took {:?}",
            started.elapsed()
        );
        // Every node closed its side: each client sees EOF.
        for c in &mut clients {
            assert!(c.closed_within(WAIT).await);
        }
        drop(clients);
        assert_eq!(open_fds(), fds_before, "no socket left");
        assert_eq!(alive_tasks(), tasks_before, "no task left");
    });
}

#[test]
fn dropping_a_simnet_aborts_its_tasks_and_closes_its_sockets() {
    serial(|| async {
        let fds_before = open_fds();
        let tasks_before = alive_tasks();
        let net = SimNet::start(SimNetConfig::default().nodes(20))
            .await
            .unwrap();
        let mut c = Client::connect(net.node(3).address()).await;
        c.handshake().await;
        drop(net);
        assert!(c.closed_within(WAIT).await);
        drop(c);
        assert_eq!(open_fds(), fds_before, "no socket left");
        assert_eq!(alive_tasks(), tasks_before, "no task left");
    });
}

#[test]
fn stopping_and_restarting_a_node_leaks_nothing() {
    serial(|| async {
        let fds_before = open_fds();
        let tasks_before = alive_tasks();
        let net = SimNet::start(SimNetConfig::default().nodes(3))
            .await
            .unwrap();
        for _ in 0..5 {
            let mut c = Client::connect(net.node(2).address()).await;
            c.handshake().await;
            net.restart_node(2).await.unwrap();
            assert!(c.closed_within(WAIT).await);
        }
        net.shutdown().await;
        // Sockets are closed and tasks ended when `shutdown` returns.
        assert_eq!(open_fds(), fds_before);
        assert_eq!(alive_tasks(), tasks_before);
    });
}
