//! Small messages per second from a loopback socket to a lossless subscriber, against a raw read
//! loop over the same bytes (issue 12, docs/BENCHMARKS.md "Small messages and codec goals").
//!
//! One scripted writer (codec + `TcpStream`, `support::ScriptedPeer`) sends N pre-encoded frames,
//! back to back, into each of four readers, in the same process and run:
//!
//! * **raw framing** (the limit the issue names): a read loop over the accepted `TcpStream` that
//!   reads into a buffer kept at the connection's read room, parses each 24-byte header (magic
//!   and length), skips the payload and counts frames;
//! * **raw framing + checksum**: the same loop also computing each payload's sha256d and
//!   comparing it with the header, which we must do for every frame; the fairer limit;
//! * **raw + hand-off**: the checksumming loop in a spawned task handing each payload through a
//!   bounded channel to the counting task: what one task-to-task hand-off per message costs
//!   (and a row handing over everything framed from one read as one item: per read instead);
//! * **`Manager`**: the frames arrive on an inbound connection through the manager's listener,
//!   after a handshake, and one `subscribe_messages_lossless` subscriber counts them until it
//!   has all N;
//!   (a second row: the subscriber takes what is queued with `recv_many` instead of `recv`);
//! * **`PeerClient`**: the same into a `PeerClient::accept`ed connection, counted by
//!   `PeerClient::recv` (lossless).
//!
//! Each round runs the four readers one after the other with the same frames; rounds repeat so
//! that each ratio is taken between runs seconds apart (the machine is shared), and the table
//! gives the median over rounds of each rate and of each per-round ratio. Two message kinds: a
//! one-entry `inv` (61-byte frames) and a typical one-input two-output `tx` (250-byte frames).
//!
//! ```text
//! nice -n -10 cargo bench -p bitcoinsv --bench small_messages [-- ROUNDS]
//! ```

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{sha256d, Hash, InvVect, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::limits::{HEADER_LEN, READ_ROOM};
use bitcoinsv::p2p::{
    InMemoryPeerStore, Manager, ManagerConfig, Message, Network, PeerClient, PeerClientOptions,
};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::ScriptedPeer;

/// A typical one-input, two-output P2PKH transaction (226 bytes), as in the connections bench.
fn typical_tx() -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash([3; 32]),
                vout: 0,
            },
            script_sig: Bytes::from(vec![0x48u8; 107]),
            sequence: u32::MAX,
        }],
        vec![
            TxOut {
                value: 5_000,
                script_pubkey: Bytes::from(vec![0x76; 25]),
            },
            TxOut {
                value: 12_345,
                script_pubkey: Bytes::from(vec![0x76; 25]),
            },
        ],
        0,
    )
}

/// Writes `bytes` into a fresh loopback connection as fast as the socket takes them, and
/// returns the accepted (reading) end once the writer is connected.
async fn raw_pair(bytes: Bytes) -> (TcpStream, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let writer = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
    });
    let (stream, _) = listener.accept().await.expect("accept");
    (stream, writer)
}

/// The limit: frames `count` frames off a raw socket (magic, length, payload skipped), with or
/// without each payload's checksum. Returns the time from the first byte written to the last
/// frame counted.
async fn raw_loop(bytes: Bytes, count: usize, checksum: bool) -> Duration {
    let magic = Network::Regtest.magic();
    let t0 = Instant::now();
    let (mut stream, writer) = raw_pair(bytes).await;
    let mut buf = BytesMut::with_capacity(READ_ROOM);
    let mut frames = 0usize;
    let mut bad = 0usize;
    while frames < count {
        if buf.capacity() - buf.len() < READ_ROOM {
            buf.reserve(READ_ROOM);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut at = 0;
        while let Some(header) = buf.get(at..at + HEADER_LEN) {
            let length = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
            let end = at + HEADER_LEN + length as usize;
            let Some(payload) = buf.get(at + HEADER_LEN..end) else {
                break;
            };
            if header[..4] != magic {
                bad += 1;
            }
            if checksum && sha256d(payload).0[..4] != header[20..24] {
                bad += 1;
            }
            frames += 1;
            at = end;
        }
        buf.advance(at);
    }
    let elapsed = t0.elapsed();
    assert_eq!((frames, bad), (count, 0), "the raw loop framed every frame");
    let _ = writer.await;
    elapsed
}

/// The raw loop with framing and checksum run in a spawned task (as a connection's actor is)
/// that hands each payload to this task through a bounded channel (1,024, as the manager's
/// lossless subscriber has), one `send` per frame: the cost of one task-to-task hand-off per
/// message, with nothing else of our path.
///
/// `batched`: instead, everything framed from one read goes as one channel item (a `Vec`), the
/// hand-off a connection could make per read rather than per message.
async fn raw_loop_handoff(bytes: Bytes, count: usize, batched: bool) -> Duration {
    let magic = Network::Regtest.magic();
    let t0 = Instant::now();
    let (mut stream, writer) = raw_pair(bytes).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(1024);
    let reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_ROOM);
        let mut batch = Vec::new();
        loop {
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(READ_ROOM);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while let Some(header) = buf.get(..HEADER_LEN) {
                let length = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
                let end = HEADER_LEN + length as usize;
                let Some(payload) = buf.get(HEADER_LEN..end) else {
                    break;
                };
                let good = header[..4] == magic && sha256d(payload).0[..4] == header[20..24];
                let mut frame = buf.split_to(end);
                if good {
                    batch.push(frame.split_off(HEADER_LEN).freeze());
                }
                if !batched
                    && !batch.is_empty()
                    && tx.send(std::mem::take(&mut batch)).await.is_err()
                {
                    return;
                }
            }
            if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
                return;
            }
        }
    });
    let mut frames = 0;
    while frames < count {
        match rx.recv().await {
            Some(b) => frames += b.len(),
            None => break,
        }
    }
    let elapsed = t0.elapsed();
    assert_eq!(frames, count, "every frame was handed over");
    drop(rx);
    let _ = reader.await;
    let _ = writer.await;
    elapsed
}

/// A regtest manager listening on a free loopback port, dialling nobody.
fn manager_config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.target_connections = 0;
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().expect("ip");
    c.listener_port = 0;
    c
}

/// Our path through the manager: a scripted peer handshakes into the listener, then writes the
/// frames; one lossless subscriber counts `count` messages, one `recv` at a time or, `batched`,
/// taking whatever is queued (up to 1,024) with each `recv_many`.
async fn through_manager(bytes: Bytes, count: usize, batched: bool) -> Duration {
    let manager = Manager::new(manager_config(), Arc::new(InMemoryPeerStore::new()));
    let mut rx = manager.subscribe_messages_lossless(1024);
    manager.start().await.expect("start");
    let listen = manager.listener_address().expect("listening");
    let remote = ScriptedPeer::dial_and_handshake(listen, Network::Regtest).await;
    manager
        .wait_for_connections(1, Duration::from_secs(30))
        .await
        .expect("connection");
    let t0 = Instant::now();
    let blast = tokio::spawn(remote.blast(bytes));
    let mut got = 0;
    if batched {
        let mut batch = Vec::with_capacity(1024);
        while got < count {
            let n = rx.recv_many(&mut batch, 1024).await;
            assert!(n > 0, "stream ended");
            got += n;
            batch.clear();
        }
    } else {
        while got < count {
            rx.recv().await.expect("stream");
            got += 1;
        }
    }
    let elapsed = t0.elapsed();
    drop(rx);
    manager.shutdown().await.expect("shutdown");
    let _ = blast.await;
    elapsed
}

/// Our path through the one-peer API: an accepted `PeerClient`, read losslessly.
async fn through_client(bytes: Bytes, count: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move { listener.accept().await.expect("accept") });
    let remote = tokio::spawn(ScriptedPeer::dial_and_handshake(addr, Network::Regtest));
    let (stream, _) = accept.await.expect("accept task");
    let options = PeerClientOptions {
        capacity: 4096,
        ..PeerClientOptions::default()
    };
    let mut client =
        PeerClient::accept(&ManagerConfig::new(Network::Regtest), stream, options).expect("client");
    let remote = remote.await.expect("scripted peer");
    let t0 = Instant::now();
    let blast = tokio::spawn(remote.blast(bytes));
    let mut got = 0;
    while got < count {
        client.recv().await.expect("message");
        got += 1;
    }
    let elapsed = t0.elapsed();
    client.close().await;
    let _ = blast.await;
    elapsed
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The four readers over `count` copies of `msg`, `rounds` times; prints the table rows.
async fn compare(label: &str, msg: &Message, count: usize, rounds: usize, only: Option<&str>) {
    let mut codec = bitcoinsv::p2p::MessageCodec::new(Network::Regtest);
    codec.set_peer_max_recv(2 * 1024 * 1024);
    let frame = codec.encode_to_bytes(msg).expect("encodes");
    let bytes = support::repeat(&frame, count);
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    // Warm-up: the first connection of a process pays for the runtime and the allocator.
    let _ = through_manager(bytes.slice(..frame.len() * (count / 10)), count / 10, false).await;
    let mut rates: [Vec<f64>; 7] = Default::default();
    for _ in 0..rounds {
        rates[0].push(rate(raw_loop(bytes.clone(), count, false).await));
        rates[1].push(rate(raw_loop(bytes.clone(), count, true).await));
        rates[5].push(rate(raw_loop_handoff(bytes.clone(), count, false).await));
        rates[6].push(rate(raw_loop_handoff(bytes.clone(), count, true).await));
        if only.is_none_or(|o| o == "manager") {
            rates[2].push(rate(through_manager(bytes.clone(), count, false).await));
            rates[4].push(rate(through_manager(bytes.clone(), count, true).await));
        }
        if only.is_none_or(|o| o == "client") {
            rates[3].push(rate(through_client(bytes.clone(), count).await));
        }
    }
    let ratio = |a: usize, b: usize| {
        let r: Vec<f64> = rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect();
        median(&r)
    };
    let names = [
        "raw read loop, framing only (limit)",
        "raw read loop, framing + sha256d checksum (limit)",
        "`Manager` inbound → `subscribe_messages_lossless`",
        "`PeerClient::accept` → `recv` (lossless)",
        "`Manager` inbound → `subscribe_messages_lossless`, subscriber draining with `recv_many`",
        "raw read loop, framing + checksum in a task, one channel `send` per frame to the reader",
        "raw read loop, framing + checksum in a task, one channel `send` per read (a batch)",
    ];
    // The limits first, then the hand-off alone, then our paths.
    for i in [0, 1, 5, 6, 2, 4, 3] {
        let name = names[i];
        if rates[i].is_empty() {
            continue;
        }
        let (lo, hi) = rates[i]
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let vs = if i < 2 {
            String::new()
        } else {
            format!(
                "; **{:.2}** of framing only, **{:.2}** of framing + checksum",
                ratio(i, 0),
                ratio(i, 1)
            )
        };
        println!(
            "| {label} ({} B frames) | {name} | {count} msgs × {rounds} rounds | **{:.2} M msgs/s** ({:.2}–{:.2}){vs} |",
            frame.len(),
            median(&rates[i]) / 1e6,
            lo / 1e6,
            hi / 1e6,
        );
    }
}

fn main() {
    // Arguments: a number of rounds (default 5); `inv` or `tx` for one kind of message only;
    // `manager` or `client` for one of our two paths only (beside the limits), e.g. to profile.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    let has = |w: &str| args.iter().any(|a| a == w);
    let only = ["manager", "client"].into_iter().find(|w| has(w));
    let kinds = ["inv", "tx"];
    let kind_wanted = |k: &str| has(k) || !kinds.iter().any(|k| has(k));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!("| messages | reader | work | rate (median; range), ratio to the limit |");
        println!("|---|---|---|---|");
        if kind_wanted("inv") {
            let inv = Message::Inv(vec![InvVect::tx(Hash([5; 32]))]);
            compare("one-entry `inv`", &inv, 1_000_000, rounds, only).await;
        }
        if kind_wanted("tx") {
            let tx = Message::Tx(typical_tx());
            compare("`tx` (226 B)", &tx, 400_000, rounds, only).await;
        }
    });
}
