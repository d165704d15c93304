//! What the connection and manager benchmarks share (not a benchmark itself: Cargo only builds
//! `benches/*.rs` and `benches/*/main.rs`).
//!
//! * [`SimnetProcess`]: a simulated network in a **child process** (the benchmark binary
//!   re-executed with `--simnet-child`), so that its memory is not counted in ours and its
//!   work is scheduled as another process, as a real network's would be.
//! * [`ScriptedPeer`]: a remote peer made only of the codec and a `TcpStream`, which dials,
//!   handshakes as the official node's outbound side does, and then writes pre-encoded frames
//!   as fast as the socket takes them: the cheapest possible sender, so what is measured is our
//!   side.
//! * [`rss_kib`], [`Summary`]: resident memory and simple statistics.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use bitcoinsv::bitcoin::NetAddress;
use bitcoinsv::p2p::messages::{AssociationId, VersionMessage};
use bitcoinsv::p2p::{Message, MessageCodec, Network};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../../tests/common/process.rs"]
mod process;
// Not every benchmark that includes this module measures memory.
#[allow(unused_imports)]
pub use process::{raise_fd_limit, rss_kib};

/// The flag that turns a benchmark binary into a simnet child.
pub const CHILD_FLAG: &str = "--simnet-child";

/// Gives the allocator's free pages back to the system (glibc's `malloc_trim`), so that an RSS
/// reading taken next starts from what is really in use rather than from what an earlier
/// measurement left cached.
pub fn trim_heap() {
    // SAFETY: `malloc_trim` only walks the allocator's own free lists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The kernel's memory for TCP socket buffers, system-wide, in KiB (`mem` of the `TCP:` line of
/// `/proc/net/sockstat`, in pages). Not part of any process's RSS.
pub fn tcp_kernel_kib() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if w == "mem" {
                    return it.next().and_then(|n| n.parse::<u64>().ok());
                }
            }
            None
        })
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

/// Warns when the open-file limit is too low for 1,000 connections (run `ulimit -n 20000`).
pub fn check_fd_limit() {
    if let Ok(s) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(l) = s.lines().find(|l| l.starts_with("Max open files")) {
            let soft: Option<u64> = l.split_whitespace().nth(3).and_then(|n| n.parse().ok());
            if soft.is_some_and(|n| n < 5000) {
                eprintln!("warning: open-file limit is {soft:?}; run `ulimit -n 20000` first");
            }
        }
    }
}

/// Median, percentiles and mean of a set of durations.
#[derive(Debug, Clone)]
pub struct Summary {
    sorted: Vec<Duration>,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Summary { sorted: samples }
    }

    /// The `p`-th percentile (0..=100), nearest rank.
    pub fn pct(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.sorted.len() - 1) as f64).round() as usize;
        self.sorted[rank.min(self.sorted.len() - 1)]
    }

    /// The mean.
    pub fn mean(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }

    /// Smallest and largest.
    pub fn range(&self) -> (Duration, Duration) {
        (
            self.sorted.first().copied().unwrap_or_default(),
            self.sorted.last().copied().unwrap_or_default(),
        )
    }
}

/// A simulated network running in a child process.
pub struct SimnetProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The nodes' listening addresses.
    pub addresses: Vec<SocketAddr>,
}

/// What the child simnet should look like.
#[derive(Debug, Clone, Default)]
pub struct ChildSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Generated blocks.
    pub blocks: u32,
    /// Filler transactions per block.
    pub txs_per_block: u32,
    /// Every node floods `inv`s once a handshake completes.
    pub flood_inv: bool,
}

/// Several simnet children, for more nodes than one process has descriptors for (each node
/// needs one for its listener and one per connection).
pub struct SimnetFleet {
    /// The children.
    pub children: Vec<SimnetProcess>,
    /// Every node's listening address, child by child.
    pub addresses: Vec<SocketAddr>,
}

impl SimnetFleet {
    /// Starts `spec.nodes` nodes in children of at most `per_child` nodes each, all at once.
    pub fn start(spec: &ChildSpec, per_child: usize) -> SimnetFleet {
        let per_child = per_child.max(1);
        let mut left = spec.nodes;
        let mut pending = Vec::new();
        while left > 0 {
            let n = left.min(per_child);
            left -= n;
            pending.push(SimnetProcess::spawn(&ChildSpec {
                nodes: n,
                ..spec.clone()
            }));
        }
        let children: Vec<SimnetProcess> = pending.into_iter().map(|p| p.ready()).collect();
        let addresses = children
            .iter()
            .flat_map(|c| c.addresses.iter().copied())
            .collect();
        SimnetFleet {
            children,
            addresses,
        }
    }
}

impl SimnetProcess {
    /// Starts the child and waits until every node listens.
    pub fn start(spec: &ChildSpec) -> SimnetProcess {
        Self::spawn(spec).ready()
    }

    /// Starts the child without waiting for it ([`SimnetProcess::ready`] waits).
    pub fn spawn(spec: &ChildSpec) -> SimnetProcess {
        let exe = std::env::current_exe().expect("benchmark binary path");
        let mut cmd = Command::new(exe);
        cmd.arg(CHILD_FLAG)
            .arg(spec.nodes.to_string())
            .arg(spec.blocks.max(1).to_string())
            .arg(spec.txs_per_block.to_string())
            .arg(if spec.flood_inv { "flood-inv" } else { "none" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("starting the simnet child");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        SimnetProcess {
            child,
            stdin,
            stdout,
            addresses: Vec::new(),
        }
    }

    /// Waits until the child's nodes all listen and reads their addresses.
    pub fn ready(mut self) -> SimnetProcess {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("reading the child") == 0 {
                panic!("the simnet child exited before it was ready");
            }
            let line = line.trim();
            if line == "READY" {
                break;
            }
            if let Some(a) = line.strip_prefix("ADDR ") {
                self.addresses.push(a.parse().expect("child address"));
            }
        }
        self
    }

    /// Makes every node dial `addr` at once; returns (connected, failed) once every TCP
    /// connect has finished (handshakes then run in the background).
    pub fn dial_all(&mut self, addr: SocketAddr) -> (usize, usize) {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "dial {addr}").expect("writing to the child");
        stdin.flush().expect("flushing to the child");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading the child");
        let mut parts = line.split_whitespace().skip(1);
        let ok = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let failed = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (ok, failed)
    }
}

impl Drop for SimnetProcess {
    fn drop(&mut self) {
        // Closing stdin tells the child to shut its simnet down and exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child's side: start the simnet, print the addresses, obey commands until stdin closes.
pub fn child_main(args: &[String]) {
    let nodes: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1);
    let blocks: u32 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    let txs: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    let flood = args.get(3).is_some_and(|m| m == "flood-inv");
    let rt = tokio::runtime::Runtime::new().expect("child runtime");
    rt.block_on(async move {
        let mut config = SimNetConfig::default()
            .nodes(nodes)
            .blocks(blocks)
            .txs_per_block(txs);
        if flood {
            for i in 0..nodes {
                config = config.with_misbehaviour(i, Misbehaviour::FloodInv);
            }
        }
        let net = SimNet::start(config).await.expect("starting the simnet");
        {
            let mut out = std::io::stdout().lock();
            for a in net.addresses() {
                let _ = writeln!(out, "ADDR {a}");
            }
            let _ = writeln!(out, "READY");
            let _ = out.flush();
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(cmd) = rx.recv().await {
            if let Some(addr) = cmd.strip_prefix("dial ") {
                let addr: SocketAddr = addr.trim().parse().expect("dial address");
                let dials: Vec<_> = net.nodes().iter().map(|n| n.dial(addr)).collect();
                let results = futures::future::join_all(dials).await;
                let ok = results.iter().filter(|r| r.is_ok()).count();
                println!("DIALED {ok} {}", results.len() - ok);
            }
        }
        net.shutdown().await;
    });
}

/// A scripted remote peer on one socket.
pub struct ScriptedPeer {
    stream: TcpStream,
    codec: MessageCodec,
    buf: BytesMut,
}

/// The `version` the scripted peer sends: the official node's.
fn node_version() -> VersionMessage {
    VersionMessage {
        version: 70016,
        services: 0x21,
        timestamp: 1_700_000_000,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce: rand::random::<u64>() | 1,
        user_agent: "/Bitcoin SV:1.2.2/".into(),
        start_height: 0,
        relay: true,
        association_id: Some(AssociationId::Empty),
    }
}

impl ScriptedPeer {
    /// Dials `addr` (an inbound connection for whoever listens there) and completes the
    /// handshake as the node's outbound side does: `version`, wait for the other side's
    /// `version` and `verack`, `verack`.
    pub async fn dial_and_handshake(addr: SocketAddr, network: Network) -> ScriptedPeer {
        let stream = TcpStream::connect(addr).await.expect("dialling");
        stream.set_nodelay(true).expect("nodelay");
        Self::handshake(stream, network).await
    }

    /// Handshakes on an already-connected socket, as the side that dialled.
    pub async fn handshake(stream: TcpStream, network: Network) -> ScriptedPeer {
        let mut codec = MessageCodec::new(network);
        codec.set_peer_max_recv(2 * 1024 * 1024);
        let mut p = ScriptedPeer {
            stream,
            codec,
            buf: BytesMut::new(),
        };
        p.send(&Message::Version(node_version())).await;
        let (mut version, mut verack) = (false, false);
        while !(version && verack) {
            match p.recv().await {
                Some(Message::Version(_)) => version = true,
                Some(Message::Verack) => verack = true,
                Some(_) => {}
                None => panic!("the other side closed during the handshake"),
            }
        }
        p.send(&Message::Verack).await;
        p
    }

    /// Encodes one message.
    pub fn encode(&self, m: &Message) -> Bytes {
        self.codec.encode_to_bytes(m).expect("encoding")
    }

    async fn send(&mut self, m: &Message) {
        let b = self.encode(m);
        self.stream.write_all(&b).await.expect("writing");
    }

    async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.codec.decode(&mut self.buf).expect("decoding") {
                return Some(m);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Writes `bytes` (pre-encoded frames) while draining whatever the other side sends, so
    /// that neither side ever blocks on the other; returns the socket's write half finished.
    pub async fn blast(self, bytes: Bytes) {
        let (mut rd, mut wr) = self.stream.into_split();
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        let _ = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        // Keep the connection open until the other side closes it.
        let _ = drain.await;
    }
}

/// `count` copies of `frame`, back to back.
pub fn repeat(frame: &Bytes, count: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(frame.len() * count);
    for _ in 0..count {
        b.extend_from_slice(frame);
    }
    b.freeze()
}
