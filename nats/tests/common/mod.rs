//! What the NATS tests share: a real `nats-server` of their own (JetStream on, a loopback
//! port, a temporary store directory), a simnet with bridges on it, and the skip/marker rules.
//!
//! Contract with `.ci/run` (docs/FLEET.md, "Tests"): `BSV_TEST_NATS_SERVER` is the path of the
//! `nats-server` binary (Debian package `nats-server`). When it is unset a test prints
//! `SKIPPED: ...` to stderr and passes. When `BSV_TEST_NATS_MARKER_DIR` is set, a test that ran
//! against a server writes `NAME.ran` there, and `.ci/run` fails unless every test did. Each
//! test starts its own server so tests run in parallel without sharing a stream, and the
//! restart test can stop and start its server.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::sink::{Pump, PumpOptions};
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_nats::{NatsSink, NatsSinkConfig};

/// A nats-server child with JetStream, on a loopback port, storing in a temporary directory.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// The server binary, or `None` after printing the skip line.
pub fn nats_server_or_skip(test: &str) -> Option<PathBuf> {
    // RUST_LOG=bitcoinsv=debug shows the bridges' logs when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    match std::env::var_os("BSV_TEST_NATS_SERVER") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!("SKIPPED: {test}: BSV_TEST_NATS_SERVER (path of nats-server) is not set");
            None
        }
    }
}

/// Records that `test` ran against a real server.
pub fn mark_ran(test: &str) {
    if let Some(dir) = std::env::var_os("BSV_TEST_NATS_MARKER_DIR") {
        let path = PathBuf::from(dir).join(format!("{test}.ran"));
        std::fs::write(&path, b"ran\n").expect("marker written");
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("bound").port()
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub async fn start(bin: PathBuf) -> NatsServer {
        let mut s = NatsServer {
            bin,
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        s.spawn().await;
        s
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let store = self.dir.path().join("js");
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        // An external process: poll its port (bounded) until it listens.
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("address");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not listen on {addr} within 5 s");
    }

    /// Kills the server (SIGKILL: no clean shutdown, as a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server cleanly (SIGTERM: it flushes its store) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A manager on `peers` (regtest, no DNS), started.
pub async fn manager(peers: Vec<SocketAddr>) -> Arc<Manager> {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    let m = Manager::with_fixed_peers(c, Arc::new(InMemoryPeerStore::new()), peers.clone());
    m.start().await.expect("manager starts");
    m.wait_for_connections(peers.len(), Duration::from_secs(30))
        .await
        .expect("connected");
    Arc::new(m)
}

/// A bridge: a manager on the simnet and a pump into NATS.
pub struct Bridge {
    pub manager: Arc<Manager>,
    pub pump: Pump,
}

impl Bridge {
    /// Connects to `peers` and starts publishing to `url` as `instance`.
    pub async fn start(
        url: &str,
        instance: &str,
        peers: Vec<SocketAddr>,
        options: PumpOptions,
    ) -> Bridge {
        let manager = manager(peers).await;
        let mut config = NatsSinkConfig::new(Network::Regtest);
        config.instance = instance.to_string();
        let sink = NatsSink::connect(url, config).await.expect("sink set up");
        let pump = Pump::spawn(Arc::clone(&manager), Arc::new(sink), options);
        Bridge { manager, pump }
    }

    /// A crash: publishing stops at once, connections close.
    pub async fn kill(self) {
        self.pump.abort();
        let _ = self.manager.shutdown().await;
    }
}

/// Waits (bounded, polling) until `f` holds.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One message a consumer received.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub msg_id: Option<String>,
    pub headers: async_nats::HeaderMap,
    pub payload: bytes::Bytes,
}

/// A durable pull consumer on the network's stream, acknowledging what it reads (an indexer).
pub struct Consumer {
    consumer: async_nats::jetstream::consumer::PullConsumer,
    pub received: Vec<Received>,
}

impl Consumer {
    /// Creates (or resumes) the durable consumer `name` on `BSV_REGTEST`.
    pub async fn durable(url: &str, name: &str) -> Consumer {
        use async_nats::jetstream::consumer::{pull, AckPolicy};
        let client = async_nats::connect(url).await.expect("consumer connects");
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream("BSV_REGTEST")
            .await
            .expect("the stream exists");
        let consumer = stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.to_string()),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("consumer created");
        Consumer {
            consumer,
            received: Vec::new(),
        }
    }

    /// Fetches one batch (waiting up to `wait` for it); returns how many came.
    pub async fn fetch(&mut self, wait: Duration) -> usize {
        use futures::StreamExt;
        let mut batch = match self
            .consumer
            .fetch()
            .max_messages(1000)
            .expires(wait)
            .messages()
            .await
        {
            Ok(b) => b,
            Err(_) => return 0,
        };
        let mut n = 0;
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { break };
            let headers = m.headers.clone().unwrap_or_default();
            let msg_id = headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_string());
            self.received.push(Received {
                subject: m.subject.to_string(),
                msg_id,
                headers,
                payload: m.payload.clone(),
            });
            m.ack().await.expect("acknowledged");
            n += 1;
        }
        n
    }

    /// Fetches until `done(received)` holds, or panics after `timeout`.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.received) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting: {what} ({} messages so far)",
                self.received.len()
            );
            self.fetch(Duration::from_millis(300)).await;
        }
    }

    /// Fetches until a batch comes back empty: everything stored so far has been read.
    pub async fn drain(&mut self) {
        while self.fetch(Duration::from_millis(500)).await > 0 {}
    }

    /// Ids seen on `subject`, with how many times each was delivered.
    pub fn counts(&self, subject: &str) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for r in self.received.iter().filter(|r| r.subject == subject) {
            *m.entry(r.msg_id.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        m
    }
}
