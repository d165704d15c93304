//! Helpers for process-level tests: run the built `bsvp2p`, check its one-line errors, and a
//! minimal codec-only peer that watches what a simulated node announces.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, NetAddress, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::messages::AssociationId;
use bitcoinsv::p2p::{Message, MessageCodec, Network, VersionMessage};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `bsvp2p` with `args` and returns its output.
pub async fn bsvp2p(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_bsvp2p"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("bsvp2p finished within 60 s")
        .expect("run bsvp2p")
}

/// Stdout of a successful run.
pub fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

/// Asserts a failed run printed exactly one `error:` line mentioning `mentions`, and no panic.
pub fn assert_one_line_error(out: &Output, mentions: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

/// An address on which nothing listens: connections are refused at once.
pub fn refusing_address() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A well-formed transaction, distinct for each `n`.
pub fn sample_tx(n: u8) -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash([n; 32]),
                vout: 0,
            },
            script_sig: Bytes::from(vec![0x51, n]),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value: 1_000,
            script_pubkey: Bytes::from_static(&[0x51]),
        }],
        0,
    )
}

/// A peer speaking regtest through the codec alone.
pub struct Watcher {
    stream: TcpStream,
    codec: MessageCodec,
    buf: BytesMut,
}

impl Watcher {
    /// Connects to `addr` and completes the handshake.
    pub async fn connect(addr: SocketAddr) -> Watcher {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut w = Watcher {
            stream,
            codec: MessageCodec::new(Network::Regtest),
            buf: BytesMut::new(),
        };
        w.send(&Message::Version(VersionMessage {
            version: 70016,
            services: 0,
            timestamp: 1_700_000_000,
            receiver: NetAddress::UNSPECIFIED,
            sender: NetAddress::UNSPECIFIED,
            nonce: 0x5eed,
            user_agent: "/cli-test:0.1/".into(),
            start_height: 0,
            relay: true,
            association_id: Some(AssociationId::Empty),
        }))
        .await;
        while !matches!(w.recv().await, Some(Message::Verack)) {}
        w.send(&Message::Verack).await;
        // The node's first ping follows its answer to our verack: the handshake is complete.
        while !matches!(w.recv().await, Some(Message::Ping(_))) {}
        w
    }

    async fn send(&mut self, m: &Message) {
        let mut out = BytesMut::new();
        self.codec.encode(m, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next message within [`WAIT`], or `None`.
    pub async fn recv(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(m) = self.codec.decode(&mut self.buf).expect("valid frames") {
                return Some(m);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }
}
