//! The library against the official node (bitcoin-sv 1.2.2), through the public `Manager` API
//! only, over loopback sockets.
//!
//! What it covers, one test per behaviour: our outbound handshake; the node dialling our
//! listener; `protoconf` both ways; pings answered both ways; header sync to the node's tip; a
//! block download byte-equal to the node's own serialization; a transaction we announce reaching
//! the node's mempool; a newly mined block announced to us as `headers`. After each test the
//! node's log must show no `Misbehaving` or `BAN THRESHOLD` line: whatever we sent, the node found
//! nothing to charge us for.
//!
//! The [`chain`] module (`real_node/chain.rs`) follows the node's chain with `HeaderChain`: its
//! tip, a block mined while we listen, and a reorganisation (`invalidateblock`, two new blocks).
//!
//! The [`rules`] module (`real_node/rules.rs`, tests listed as `rules::NAME`) breaks the rules on
//! purpose: over raw connections it provokes every rule of our misbehaviour catalogue the node
//! can be made to charge and asserts the node charged exactly the catalogue's score and reason,
//! and nothing else.
//!
//! # Environment (set by `.ci/run`; see `shared/bsvnode/README.md`)
//!
//! * `BSV_TEST_NODE=ip:port`: the node's P2P address. Unset: every test is skipped, printing
//!   `REAL-NODE-SKIPPED` on stderr.
//! * `BSV_TEST_NETWORK`: its network (`regtest` for the node `.ci/run` starts; mainnet if unset).
//! * `BSV_TEST_NODE_DIR` and `BSV_REGTEST_SH`: the node's data directory and the absolute path of
//!   `regtest.sh`, to drive the node (`regtest.sh cli DIR …`, `regtest.sh tx DIR K`) and read its
//!   log (`DIR/regtest/bitcoind.log`). Without them only the handshake test runs; the others
//!   skip.
//! * `BSV_TEST_NODE_MARKER_DIR` (optional): every test writes `NAME.ran` there when it runs
//!   against the node and `NAME.skipped` when it skips, so that CI can prove the suite ran (cargo
//!   captures the output of passing tests, so the stderr line alone cannot show it).
//!
//! The tests share one node, so they run one at a time (a static mutex), and each one's log
//! check sees only its own traffic.

/// The name `--list` gives a test of the calling module (`NAME` here, `module::NAME` in a
/// submodule): the marker files `.ci/run` checks must carry it.
macro_rules! listed {
    ($name:literal) => {
        match module_path!().split_once("::") {
            Some((_, module)) => format!("{}::{}", module, $name),
            None => $name.to_string(),
        }
    };
}

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{
    Block, BlockLocator, Decode, Encode, Hash, InvType, InvVect, Transaction,
};
use bitcoinsv::p2p::{
    ConnectionSnapshot, Direction, InMemoryPeerStore, Manager, ManagerConfig, Message, Network,
};
use serde_json::Value;
use tokio::time::Instant;

/// How long any one step may take; a healthy node on loopback answers in milliseconds.
const STEP: Duration = Duration::from_secs(15);
/// The regtest miner address of `regtest.sh` (its key signs `regtest.sh tx`).
const MINER_ADDRESS: &str = "mzZRiDGz619bYUoDLQudTKxaNSLe5DYiYk";
/// The node's protocol version and `protoconf` receive limit.
const NODE_PROTOCOL_VERSION: i32 = 70016;
const NODE_MAX_RECV_PAYLOAD: u64 = 2 * 1024 * 1024;

/// One test at a time: they share the node and read its log.
static NODE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node under test, from the environment.
struct Node {
    addr: SocketAddr,
    network: Network,
    /// `regtest.sh` and the node's directory, when the node can be driven.
    control: Option<(PathBuf, PathBuf)>,
}

/// Writes `NAME.EXT` into `BSV_TEST_NODE_MARKER_DIR`, if set.
fn marker(test: &str, ext: &str) {
    if let Ok(dir) = std::env::var("BSV_TEST_NODE_MARKER_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("creating BSV_TEST_NODE_MARKER_DIR");
        std::fs::write(dir.join(format!("{test}.{ext}")), b"")
            .expect("writing to BSV_TEST_NODE_MARKER_DIR");
    }
}

fn skip(test: &str, why: &str) {
    eprintln!("REAL-NODE-SKIPPED {test}: {why}");
    marker(test, "skipped");
}

/// The node, or `None` (after saying so) when the environment does not give one. `driven`: the
/// test needs `regtest.sh` and the node's directory too.
fn node(test: &str, driven: bool) -> Option<Node> {
    let Ok(addr) = std::env::var("BSV_TEST_NODE") else {
        skip(
            test,
            "BSV_TEST_NODE is not set (ip:port of a bitcoin-sv node; .ci/run starts one)",
        );
        return None;
    };
    let addr: SocketAddr = addr.parse().expect("BSV_TEST_NODE must be ip:port");
    let network: Network = std::env::var("BSV_TEST_NETWORK")
        .unwrap_or_else(|_| "mainnet".into())
        .parse()
        .expect("BSV_TEST_NETWORK must name a network");
    let control = match (
        std::env::var("BSV_REGTEST_SH"),
        std::env::var("BSV_TEST_NODE_DIR"),
    ) {
        (Ok(sh), Ok(dir)) => Some((PathBuf::from(sh), PathBuf::from(dir))),
        _ => None,
    };
    if driven && control.is_none() {
        skip(
            test,
            "BSV_REGTEST_SH and BSV_TEST_NODE_DIR are not set: this test drives the node",
        );
        return None;
    }
    marker(test, "ran");
    Some(Node {
        addr,
        network,
        control,
    })
}

impl Node {
    fn control(&self) -> (&PathBuf, &PathBuf) {
        let (sh, dir) = self.control.as_ref().expect("a driven node");
        (sh, dir)
    }

    /// Runs `regtest.sh COMMAND DIR ARGS…` and returns its trimmed stdout; panics on failure.
    async fn regtest_sh(&self, command: &str, args: &[&str]) -> String {
        let (sh, dir) = self.control();
        let mut cmd = std::process::Command::new(sh);
        cmd.arg(command).arg(dir).args(args);
        let what = format!("regtest.sh {command} {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("running {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `bitcoin-cli` against the node.
    async fn cli(&self, args: &[&str]) -> String {
        self.regtest_sh("cli", args).await
    }

    async fn cli_json(&self, args: &[&str]) -> Value {
        let text = self.cli(args).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} gave {text:?}: {e}"))
    }

    async fn block_count(&self) -> u64 {
        self.cli(&["getblockcount"]).await.parse().unwrap()
    }

    async fn best_block_hash(&self) -> Hash {
        self.cli(&["getbestblockhash"]).await.parse().unwrap()
    }

    /// The node's `getpeerinfo` entry for the connection whose user agent is `user_agent`,
    /// waiting for it to appear (and for `ready` to hold).
    async fn peer_info(&self, user_agent: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let peers = self.cli_json(&["getpeerinfo"]).await;
            let found = peers
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["subver"] == user_agent)
                .cloned();
            match found {
                Some(p) if ready(&p) => return p,
                other => assert!(
                    Instant::now() < deadline,
                    "the node never showed a peer {user_agent:?} in the expected state; last \
                     seen: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.control().1.join("regtest/bitcoind.log")
    }

    /// The node's log from byte `from` on.
    fn log_since(&self, from: u64) -> String {
        let path = self.log_path();
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let from = (from as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    fn log_len(&self) -> u64 {
        let path = self.log_path();
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .len()
    }

    /// Waits until the log, from byte `from`, holds a line containing every one of `parts`.
    async fn wait_for_log_line(&self, from: u64, parts: &[&str]) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(line) = self
                .log_since(from)
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the node's log never showed a line with {parts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a test holds while it talks to the node: the lock, and where the node's log stood when
/// it began.
struct Guard<'a> {
    node: &'a Node,
    log_start: u64,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl<'a> Guard<'a> {
    async fn new(node: &'a Node) -> Guard<'a> {
        let lock = NODE_LOCK.lock().await;
        let log_start = if node.control.is_some() {
            node.log_len()
        } else {
            0
        };
        Guard {
            node,
            log_start,
            _lock: lock,
        }
    }

    /// The node's verdicts against peers (`Misbehaving`, `BAN THRESHOLD EXCEEDED`) logged since
    /// this test began. Only this test talks to the node meanwhile, so they are all about us.
    fn charges(&self) -> Vec<String> {
        self.node
            .log_since(self.log_start)
            .lines()
            .filter(|l| l.contains("Misbehaving") || l.contains("BAN THRESHOLD"))
            .map(str::to_string)
            .collect()
    }

    /// The node charged us nothing while this test ran. Call it after [`Session::round_trip`]:
    /// then the node has processed everything we sent.
    fn assert_no_misbehaviour(&self) {
        if self.node.control.is_none() {
            return;
        }
        let charged = self.charges();
        assert!(
            charged.is_empty(),
            "the node charged us misbehaviour:\n{}",
            charged.join("\n")
        );
    }
}

/// A user agent no other connection has, to find ours in `getpeerinfo`.
fn unique_user_agent() -> String {
    // Digits only: random hex once produced "abc", a default ban pattern, and the manager
    // refused its own configuration.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "/bitcoinsv-rs:{}/realnode-{}-{}/",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A configuration for talking to the node under test: no DNS, no listener, our own user agent.
fn config(node: &Node, user_agent: &str) -> ManagerConfig {
    let mut c = ManagerConfig::new(node.network);
    c.dns_seeds.clear();
    c.enable_listener = false;
    c.user_agent = user_agent.to_string();
    c
}

/// A manager connected to the node, with the lossless message stream.
struct Session {
    manager: Manager,
    messages: bitcoinsv::p2p::MessageReceiver,
    peer: ConnectionSnapshot,
    user_agent: String,
}

impl Session {
    /// Connects to the node (outbound, Fixed Peer List mode) and waits for the handshake.
    async fn outbound(node: &Node) -> Session {
        let user_agent = unique_user_agent();
        let manager = Manager::with_fixed_peers(
            config(node, &user_agent),
            Arc::new(InMemoryPeerStore::new()),
            vec![node.addr],
        );
        let messages = manager.subscribe_messages_lossless(10_000);
        manager.start().await.unwrap();
        manager
            .wait_for_connections(1, STEP)
            .await
            .unwrap_or_else(|e| panic!("no handshake with {}: {e}", node.addr));
        let peer = manager.connected_peers().remove(0);
        Session {
            manager,
            messages,
            peer,
            user_agent,
        }
    }

    /// Our connection's statistics once `ready` holds for them.
    async fn snapshot_when(
        &self,
        ready: impl Fn(&ConnectionSnapshot) -> bool,
    ) -> ConnectionSnapshot {
        let deadline = Instant::now() + STEP;
        loop {
            let snap = self
                .manager
                .connected_peers()
                .into_iter()
                .find(|s| s.peer_id == self.peer.peer_id)
                .expect("the connection is still up");
            if ready(&snap) {
                return snap;
            }
            assert!(
                Instant::now() < deadline,
                "the connection never reached the expected state: {snap:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(&self, message: Message) {
        self.manager
            .send_message(self.peer.peer_id, message)
            .await
            .unwrap();
    }

    /// The first message from the node for which `pick` returns something; a `reject` from the
    /// node fails the test.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Message) -> Option<T>) -> T {
        let deadline = Instant::now() + STEP;
        loop {
            let event = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} from the node within {STEP:?}"))
                .expect("the message stream is open");
            if let Message::Reject(r) = &event.message {
                panic!("the node rejected something while we waited for {what}: {r:?}");
            }
            if let Some(v) = pick(&event.message) {
                return v;
            }
        }
    }

    /// A ping of our own answered by the node: every message we sent before it has been
    /// processed (the node handles a peer's messages in order), so its verdicts are in its log.
    async fn round_trip(&mut self) {
        let nonce = rand::random::<u64>() | 1;
        self.send(Message::Ping(nonce)).await;
        self.expect("the pong to our ping", |m| {
            (*m == Message::Pong(nonce)).then_some(())
        })
        .await;
    }

    async fn shutdown(self) {
        self.manager.shutdown().await.unwrap();
    }
}

/// Headers from the node from `locator`'s fork point to its tip, requesting again while full
/// batches of 2000 arrive.
async fn sync_headers(session: &mut Session, from: Hash) -> Vec<bitcoinsv::bitcoin::BlockHeader> {
    let mut all = Vec::new();
    let mut last = from;
    loop {
        session
            .send(Message::GetHeaders(BlockLocator {
                version: NODE_PROTOCOL_VERSION as u32,
                hashes: vec![last],
                stop_hash: Hash::ZERO,
            }))
            .await;
        let batch = session
            .expect("headers", |m| match m {
                Message::Headers(h) => Some(h.clone()),
                _ => None,
            })
            .await;
        let full = batch.len() == 2000;
        if let Some(h) = batch.last() {
            last = h.hash();
        }
        all.extend(batch);
        if !full {
            return all;
        }
    }
}

#[tokio::test]
async fn our_outbound_handshake_completes_with_the_node_s_version_and_user_agent() {
    let test = "our_outbound_handshake_completes_with_the_node_s_version_and_user_agent";
    let Some(node) = node(test, false) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;

    assert_eq!(s.peer.direction, Direction::Outbound);
    let d = s.peer.details.clone().expect("details after the handshake");
    assert_eq!(d.version, NODE_PROTOCOL_VERSION, "{d:?}");
    assert!(d.user_agent.starts_with("/Bitcoin SV:"), "{d:?}");
    if node.control.is_some() {
        assert_eq!(d.user_agent, "/Bitcoin SV:1.2.2/");
        assert_eq!(d.start_height as u64, node.block_count().await);
        // The node sees our side of it: an inbound peer with our version and user agent.
        let info = node.peer_info(&s.user_agent, |_| true).await;
        assert_eq!(info["inbound"], true);
        assert_eq!(info["version"], NODE_PROTOCOL_VERSION);
    }
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn the_node_dials_our_listener_and_the_inbound_handshake_completes() {
    let test = "the_node_dials_our_listener_and_the_inbound_handshake_completes";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let user_agent = unique_user_agent();
    let mut c = config(&node, &user_agent);
    c.enable_listener = true;
    c.listener_address = Ipv4Addr::LOCALHOST.into();
    c.listener_port = 0;
    let manager = Manager::with_fixed_peers(c, Arc::new(InMemoryPeerStore::new()), Vec::new());
    let mut messages = manager.subscribe_messages_lossless(10_000);
    manager.start().await.unwrap();
    let listener = manager.listener_address().expect("the listener is bound");

    node.cli(&["addnode", &listener.to_string(), "onetry"])
        .await;
    manager
        .wait_for_connections(1, STEP)
        .await
        .expect("the node's connection to our listener completes its handshake");
    let peer = manager.connected_peers().remove(0);
    assert_eq!(peer.direction, Direction::Inbound);
    let d = peer.details.clone().unwrap();
    assert_eq!(d.version, NODE_PROTOCOL_VERSION);
    assert_eq!(d.user_agent, "/Bitcoin SV:1.2.2/");
    // The node sees an outbound connection to us, fully handshaken (it has our pong).
    let info = node
        .peer_info(&user_agent, |p| p["pingtime"].as_f64().is_some())
        .await;
    assert_eq!(info["inbound"], false);
    assert_eq!(info["addr"], listener.to_string());

    // The node's first words on its outbound connections include `getaddr` (PROTOCOL.md §2.6);
    // a ping of ours is answered on this connection too.
    let nonce = rand::random::<u64>() | 1;
    manager
        .send_message(peer.peer_id, Message::Ping(nonce))
        .await
        .unwrap();
    let mut got_getaddr = false;
    let deadline = Instant::now() + STEP;
    loop {
        let e = tokio::time::timeout_at(deadline, messages.recv())
            .await
            .expect("our pong came back in time")
            .unwrap();
        match e.message {
            Message::GetAddr => got_getaddr = true,
            Message::Pong(n) if n == nonce => break,
            Message::Reject(r) => panic!("the node rejected something: {r:?}"),
            _ => {}
        }
    }
    assert!(
        got_getaddr,
        "the node asks its outbound peers for addresses"
    );
    guard.assert_no_misbehaviour();
    manager.shutdown().await.unwrap();
}

#[tokio::test]
async fn protoconf_is_exchanged_both_ways() {
    let test = "protoconf_is_exchanged_both_ways";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;

    // Theirs: the connection records the node's receive limit.
    let snap = s
        .snapshot_when(|s| s.details.as_ref().unwrap().max_recv_payload.is_some())
        .await;
    assert_eq!(
        snap.details.unwrap().max_recv_payload,
        Some(NODE_MAX_RECV_PAYLOAD)
    );

    // Ours: the node received it, counted it, and took our limit and stream policy.
    s.round_trip().await;
    let info = node.peer_info(&s.user_agent, |_| true).await;
    assert!(
        info["bytesrecv_per_msg"]["protoconf"].as_u64().unwrap_or(0) > 0,
        "{info}"
    );
    let id = info["id"].as_u64().unwrap();
    let line = node
        .wait_for_log_line(
            guard.log_start,
            &[
                "Protoconf received",
                &format!("from peer={id};"),
                "peer's proposed max message size: 2097152",
            ],
        )
        .await;
    assert!(line.contains("common stream policies: Default"), "{line}");
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered_both_ways() {
    let test = "pings_are_answered_both_ways";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;

    // Ours: the connection's first keepalive ping is answered and its round trip measured.
    let snap = s.snapshot_when(|s| s.rtt.is_some()).await;
    assert!(snap.rtt.unwrap() < STEP);
    // An application ping is answered with its own nonce.
    s.round_trip().await;

    // Theirs: the node pinged us at once and measured a round trip from our pong.
    let info = node
        .peer_info(&s.user_agent, |p| p["pingtime"].as_f64().is_some())
        .await;
    assert!(info["pingtime"].as_f64().unwrap() >= 0.0, "{info}");
    let id = info["id"].as_u64().unwrap();
    node.wait_for_log_line(
        guard.log_start,
        &[&format!("received: pong (8 bytes) peer={id}")],
    )
    .await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn headers_sync_from_genesis_to_the_node_s_tip() {
    let test = "headers_sync_from_genesis_to_the_node_s_tip";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;
    let height = node.block_count().await;
    let best = node.best_block_hash().await;

    let genesis = node.network.genesis_hash();
    let headers = sync_headers(&mut s, genesis).await;
    assert_eq!(
        headers.len() as u64,
        height,
        "one header per block above genesis"
    );
    assert_eq!(headers[0].prev_hash, genesis);
    for pair in headers.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash(), "the headers chain");
    }
    assert!(headers.iter().all(|h| h.check_proof_of_work()));
    assert_eq!(headers.last().unwrap().hash(), best);
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn a_downloaded_block_is_byte_equal_to_the_node_s_serialization() {
    let test = "a_downloaded_block_is_byte_equal_to_the_node_s_serialization";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;
    let hash = node.best_block_hash().await;
    let expected = node.cli(&["getblock", &hash.to_string(), "0"]).await;

    s.send(Message::GetData(vec![InvVect::block(hash)])).await;
    let block: Block = s
        .expect("the block", |m| match m {
            Message::Block(b) if b.hash() == hash => Some(b.clone()),
            _ => None,
        })
        .await;
    assert_eq!(block.check_merkle_root(), Ok(()));
    assert!(block.header.check_proof_of_work());
    assert_eq!(hex::encode(block.to_vec()), expected);
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

/// The height of a block whose coinbase can be spent now by `regtest.sh tx` (mature, unspent,
/// and of the 50 BSV subsidy `regtest.sh tx` assumes, so below height 150); mines one block when
/// none is mature yet.
async fn spendable_coinbase_height(node: &Node) -> u64 {
    for _ in 0..2 {
        let height = node.block_count().await;
        // Coinbase maturity: 100 confirmations for a spend in block height + 1.
        let mature = (height + 1).saturating_sub(100).min(149);
        for k in 1..=mature {
            let hash = node.cli(&["getblockhash", &k.to_string()]).await;
            let block = node.cli_json(&["getblock", &hash]).await;
            let coinbase = block["tx"][0].as_str().unwrap().to_string();
            // `gettxout` counts the mempool: a coinbase spent there prints nothing.
            if !node.cli(&["gettxout", &coinbase, "0"]).await.is_empty() {
                return k;
            }
        }
        node.cli(&["generatetoaddress", "1", MINER_ADDRESS]).await;
    }
    panic!("no unspent 50 BSV coinbase below height 150 on the node: start a fresh one");
}

#[tokio::test]
async fn a_transaction_we_announce_is_fetched_by_the_node_and_enters_its_mempool() {
    let test = "a_transaction_we_announce_is_fetched_by_the_node_and_enters_its_mempool";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let k = spendable_coinbase_height(&node).await;
    let raw = hex::decode(node.regtest_sh("tx", &[&k.to_string()]).await).unwrap();
    let tx = Transaction::decode_exact(&raw).unwrap();
    let txid = tx.txid();
    let mut s = Session::outbound(&node).await;

    s.send(Message::Inv(vec![InvVect::tx(txid)])).await;
    let requested = s
        .expect("the node's getdata for our transaction", |m| match m {
            Message::GetData(items) => Some(items.clone()),
            _ => None,
        })
        .await;
    assert_eq!(requested, vec![InvVect::tx(txid)]);
    assert_eq!(requested[0].inv_type, InvType::Tx);
    s.send(Message::Tx(tx)).await;

    let deadline = Instant::now() + STEP;
    loop {
        let mempool = node.cli_json(&["getrawmempool"]).await;
        if mempool
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &txid.to_string())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{txid} never reached the node's mempool: {mempool}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn a_block_the_node_mines_is_announced_to_us_as_headers() {
    let test = "a_block_the_node_mines_is_announced_to_us_as_headers";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;
    // The node announces with `headers` only what connects to a header it knows we have
    // (PROTOCOL.md §3.6): sync first, so that it has sent us its tip. We sent `sendheaders`
    // right after the handshake.
    let old_tip = node.best_block_hash().await;
    let headers = sync_headers(&mut s, node.network.genesis_hash()).await;
    assert_eq!(headers.last().unwrap().hash(), old_tip);

    let mined = node
        .cli_json(&["generatetoaddress", "1", MINER_ADDRESS])
        .await;
    let new_tip: Hash = mined[0].as_str().unwrap().parse().unwrap();
    let announced = s
        .expect("a headers announcement of the new block", |m| match m {
            Message::Headers(h) if !h.is_empty() => Some(h.clone()),
            Message::Inv(items) if items.iter().any(|i| i.inv_type == InvType::Block) => {
                panic!("the node announced the block by inv, not headers: {items:?}")
            }
            _ => None,
        })
        .await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].hash(), new_tip);
    assert_eq!(announced[0].prev_hash, old_tip);
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

/// The check every test ends with is not vacuous: a rule we break on purpose (a second
/// `sendheaders`, +1 at the node, PROTOCOL.md §3.1) shows up in the node's log as a
/// `Misbehaving` line for our peer, which [`Guard::charges`] finds.
#[tokio::test]
async fn the_misbehaviour_check_sees_a_charge_the_node_logs_for_us() {
    let test = "the_misbehaviour_check_sees_a_charge_the_node_logs_for_us";
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;
    let id = node.peer_info(&s.user_agent, |_| true).await["id"]
        .as_u64()
        .unwrap();
    assert!(guard.charges().is_empty(), "{:?}", guard.charges());

    // The connection sent `sendheaders` after the handshake; this one is a repeat.
    s.send(Message::SendHeaders).await;
    s.round_trip().await;
    let charges = guard.charges();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert!(charges[0].contains(&format!("peer={id}")), "{charges:?}");
    s.shutdown().await;
}

/// The header chain against the node: its tip, a mined block, a reorganisation.
#[path = "real_node/chain.rs"]
mod chain;
/// The misbehaviour catalogue against the node, one raw connection per rule.
#[path = "real_node/rules.rs"]
mod rules;
/// The transfer services (block fetching, transaction broadcast) against the node.
#[path = "real_node/transfer.rs"]
mod transfer;
