//! Simnet benchmark: how cheap is a simulated node?
//!
//! Starts a simnet (1,000 nodes by default), reports the time to start it and the memory per
//! node (resident set size from `/proc/self/status` before and after), then runs a client loop
//! of full handshakes against the nodes (connect, `version`, wait for `version`/`verack`/
//! `protoconf`, `verack`, wait for the node's first `ping`, close), first one at a time and then
//! with several loops in parallel, and reports handshakes per second. Finally it times the
//! shutdown.
//!
//! ```text
//! cargo run --release -p bitcoinsv-simnet --example simnet_bench [-- NODES [SECONDS]]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::NetAddress;
use bitcoinsv::p2p::codec::MessageCodec;
use bitcoinsv::p2p::messages::AssociationId;
use bitcoinsv::p2p::{Message, Network, VersionMessage};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn version() -> Message {
    Message::Version(VersionMessage {
        version: 70016,
        services: 0,
        timestamp: 0,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce: 1,
        user_agent: "/simnet-bench:0.1/".into(),
        start_height: 0,
        relay: true,
        association_id: Some(AssociationId::Empty),
    })
}

/// Reads until a message with `command` arrives.
async fn read_until(
    stream: &mut TcpStream,
    codec: &mut MessageCodec,
    buf: &mut BytesMut,
    command: &str,
) -> Result<(), String> {
    loop {
        while let Some(m) = codec.decode(buf).map_err(|e| e.to_string())? {
            if m.command() == command {
                return Ok(());
            }
        }
        buf.reserve(8 * 1024);
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("node closed the connection".into());
        }
    }
}

/// One full client handshake.
async fn handshake(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut codec = MessageCodec::new(Network::Regtest);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    codec
        .encode(&version(), &mut out)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    read_until(&mut stream, &mut codec, &mut buf, "protoconf").await?;
    out.clear();
    codec
        .encode(&Message::Verack, &mut out)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    read_until(&mut stream, &mut codec, &mut buf, "ping").await
}

/// Runs handshakes round-robin over `addrs` for `duration` with `parallel` loops; returns the
/// number completed.
async fn handshake_loop(addrs: &[SocketAddr], duration: Duration, parallel: usize) -> u64 {
    let deadline = Instant::now() + duration;
    let mut loops = Vec::new();
    for p in 0..parallel {
        let addrs = addrs.to_vec();
        loops.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = p;
            while Instant::now() < deadline {
                let addr = addrs[i % addrs.len()];
                if let Err(e) = handshake(addr).await {
                    eprintln!("handshake with {addr} failed: {e}");
                }
                done += 1;
                i += parallel;
            }
            done
        }));
    }
    let mut total = 0;
    for l in loops {
        total += l.await.unwrap_or(0);
    }
    total
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let duration = Duration::from_secs_f64(seconds);

    let rss_before = rss_kib();
    let fds_before = open_fds();
    let t = Instant::now();
    let simnet = SimNet::start(SimNetConfig::default().nodes(nodes))
        .await
        .expect("simnet starts");
    let start_time = t.elapsed();
    let rss_after = rss_kib();
    println!("nodes:                {nodes}");
    println!(
        "chain:                {} blocks generated and shared",
        simnet.chain().tip_height()
    );
    println!(
        "start time:           {:.1} ms",
        start_time.as_secs_f64() * 1e3
    );
    println!(
        "RSS:                  {:.1} MiB before, {:.1} MiB after",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "memory per node:      {:.1} KiB (RSS delta / nodes, chain included)",
        rss_after.saturating_sub(rss_before) as f64 / nodes as f64
    );
    println!(
        "open fds:             {} (+{})",
        open_fds(),
        open_fds() - fds_before
    );

    let addrs = simnet.addresses();
    for parallel in [1usize, 8] {
        let t = Instant::now();
        let n = handshake_loop(&addrs, duration, parallel).await;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "handshakes/s ({parallel:>2} loop{}): {rate:.0}  ({n} in {:.1} s)",
            if parallel == 1 { " " } else { "s" },
            t.elapsed().as_secs_f64()
        );
    }
    println!("RSS after handshakes: {:.1} MiB", rss_kib() as f64 / 1024.0);

    let t = Instant::now();
    simnet.shutdown().await;
    println!(
        "shutdown time:        {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "open fds after:       {} (before start: {fds_before})",
        open_fds()
    );
}
