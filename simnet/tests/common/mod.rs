//! A minimal peer built only from `bitcoinsv`'s codec and a `TcpStream`, used by the simnet's
//! integration tests to talk to simulated nodes exactly as a library would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bitcoinsv::bitcoin::{NetAddress, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::codec::MessageCodec;
use bitcoinsv::p2p::messages::AssociationId;
use bitcoinsv::p2p::{CodecError, Message, Network, VersionMessage};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something the node should do at once.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for something the node must not do. On tokio's paused clock (which
/// moves only when node and client both wait on timers) the window ends only once the node has
/// nothing left to do.
pub const QUIET: Duration = Duration::from_millis(300);
/// The bound on a wait in a test on tokio's paused clock, in virtual time: longer than any
/// timer a test waits for, it fires only when nothing else is left to happen.
pub const PAUSED_WAIT: Duration = Duration::from_secs(2 * 3600);

/// Asserts that `took` is `expected` to the resolution of tokio's timers (a deadline is rounded
/// up to the next millisecond).
#[track_caller]
pub fn assert_at(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took <= expected + Duration::from_millis(1),
        "took {took:?}, expected {expected:?}"
    );
}

/// What one read attempt produced.
#[derive(Debug)]
pub enum Recv {
    Msg(Message),
    Closed,
    Timeout,
    Error(CodecError),
}

/// A test peer.
pub struct Client {
    pub stream: TcpStream,
    pub codec: MessageCodec,
    pub buf: BytesMut,
}

/// The `version` a simple client sends.
pub fn client_version() -> VersionMessage {
    VersionMessage {
        version: 70016,
        services: 0,
        timestamp: 1_700_000_000,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce: 0x1234_5678,
        user_agent: "/simnet-test:0.1/".into(),
        start_height: 0,
        relay: true,
        association_id: Some(AssociationId::Empty),
    }
}

/// A distinct, well-formed transaction.
pub fn sample_tx(n: u8) -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: bitcoinsv::bitcoin::Hash([n; 32]),
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

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_with(addr, Network::Regtest).await
    }

    pub async fn connect_with(addr: SocketAddr, network: Network) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Client::from_stream(stream, network)
    }

    pub fn from_stream(stream: TcpStream, network: Network) -> Client {
        // As the node and the library do. With Nagle's algorithm a small write could wait for the
        // acknowledgement of the previous one, which the kernel delays on a real-time timer: a
        // test on tokio's paused clock would look idle meanwhile and jump to its next timer.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Client {
            stream,
            codec: MessageCodec::new(network),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, msg: &Message) {
        let mut out = BytesMut::new();
        self.codec.encode(msg, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads the next message, waiting at most `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Recv {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(m)) => return Recv::Msg(m),
                Ok(None) => {}
                Err(e) => return Recv::Error(e),
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Recv::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Recv::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads the next message or panics.
    pub async fn recv(&mut self) -> Message {
        match self.recv_timeout(WAIT).await {
            Recv::Msg(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads messages until one with `command` arrives; returns all of them (that one last).
    pub async fn recv_until(&mut self, command: &str) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.command() == command;
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Reads raw bytes until `n` have arrived or `timeout` passes.
    pub async fn read_raw(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = std::mem::take(&mut self.buf).to_vec();
        while out.len() < n {
            let mut chunk = vec![0u8; n - out.len()];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(k)) => out.extend_from_slice(&chunk[..k]),
            }
        }
        out
    }

    /// Whether the node closes the connection within `timeout` (any bytes before are
    /// discarded).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Runs the inbound handshake: sends `version`, reads until the node's `verack`...
    /// `protoconf`, sends `verack`, reads until the node's first `ping`. Returns every message
    /// the node sent, in order.
    pub async fn handshake(&mut self) -> Vec<Message> {
        self.send(&Message::Version(client_version())).await;
        let mut seen = self.recv_until("protoconf").await;
        self.send(&Message::Verack).await;
        seen.extend(self.recv_until("ping").await);
        seen
    }

    /// Sends a `ping` and reads until its `pong`: everything the node sent before it proves it
    /// had nothing else queued. Returns the messages before the pong.
    pub async fn sync(&mut self, nonce: u64) -> Vec<Message> {
        self.send(&Message::Ping(nonce)).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Message::Pong(n) if n == nonce => return seen,
                m => seen.push(m),
            }
        }
    }
}

/// Commands of a list of messages.
pub fn commands(msgs: &[Message]) -> Vec<String> {
    msgs.iter().map(|m| m.command().to_string()).collect()
}
