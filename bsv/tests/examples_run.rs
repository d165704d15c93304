//! Runs every example with no arguments (so against its in-process simnet) and checks that it
//! exits 0 and prints the line that shows it did its job.
//!
//! The binaries are run straight from `target/<profile>/examples/`, with no `cargo run` per
//! example. `cargo test` builds them along with the tests; when they are missing or older than
//! their sources (e.g. with `cargo test --test examples_run`), they are built once per test
//! process with a nested `cargo build --examples -p bitcoinsv --offline` in this test's
//! profile, features and target folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest an example may take against the simnet.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>`: this test binary lives in its `deps/` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// Builds the examples once; returns the folder holding them.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile_dir = profile_dir();
        let dir = profile_dir.join("examples");
        if fresh(&dir) {
            eprintln!("examples already built by this `cargo test`");
            return dir;
        }
        let target_dir = profile_dir.parent().expect("target folder").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile folder name")
            .to_string();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "-p", "bitcoinsv", "--offline"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .arg("--profile")
            // The `dev` profile builds into `debug/`.
            .arg(if profile == "debug" { "dev" } else { &profile });
        if cfg!(feature = "sqlite") {
            cmd.args(["--features", "sqlite"]);
        }
        let t = Instant::now();
        let status = cmd.status().expect("running cargo");
        assert!(status.success(), "building the examples failed");
        eprintln!("examples built in {:?}", t.elapsed());
        dir
    })
}

/// The examples every test here runs.
const EXAMPLES: [&str; 6] = [
    "simple_client",
    "fixed_peers",
    "event_monitor",
    "crawler",
    "broadcaster",
    "block_listener",
];

/// Whether every example binary in `dir` is newer than every source it is built from (the
/// library, the simnet, the examples and their manifests): then `cargo test` has just built
/// them, and a nested `cargo build` (whose package and feature selection may differ from the
/// outer command's) would only build them again.
fn fresh(dir: &Path) -> bool {
    fn newest(path: &Path) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| newest(&e.path()))
            .max()
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = [
        root.join("src"),
        root.join("examples/common"),
        root.join("Cargo.toml"),
        root.join("../simnet/src"),
        root.join("../simnet/Cargo.toml"),
        root.join("../Cargo.lock"),
    ];
    let Some(newest_shared) = shared.iter().filter_map(|p| newest(p)).max() else {
        return false;
    };
    EXAMPLES.iter().all(|name| {
        let source = newest(&root.join(format!("examples/{name}.rs")));
        let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
        matches!((built, source), (Some(b), Some(s)) if b >= s && b >= newest_shared)
    })
}

/// Runs example `name` with no arguments; returns its stdout after checking it exited 0 in
/// time.
fn run(name: &str) -> String {
    let bin = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let t = Instant::now();
    let mut child = Command::new(&bin)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    // Read the pipes on threads so a chatty example cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).map(|_| s)
    });
    // Bounded wait: poll the exit status (a blocking `wait` could hang the suite forever).
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the example") {
            break s;
        }
        if t.elapsed() > EXAMPLE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} still running after {EXAMPLE_TIMEOUT:?}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    let stdout = out.join().expect("stdout thread").expect("stdout utf-8");
    let stderr = err.join().expect("stderr thread").expect("stderr utf-8");
    assert!(
        status.success(),
        "{name} exited with {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    eprintln!("{name} ran in {:?}", t.elapsed());
    stdout
}

/// The first line of `out` that starts with `prefix` (ignoring log lines).
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[test]
fn simple_client_pings_bans_and_shuts_down() {
    let out = run("simple_client");
    line(&out, "connected to ");
    line(&out, "pong from ");
    line(&out, "banned ");
    line(&out, "simple_client: done");
}

#[test]
fn fixed_peers_keeps_to_its_list_and_reconnects() {
    let out = run("fixed_peers");
    line(&out, "connected to 3 of 3 fixed peer(s)");
    assert!(line(&out, "node 3 (").ends_with("saw 0 connection(s)"));
    assert!(line(&out, "node 0 (").contains("stopped"));
    assert!(out
        .lines()
        .any(|l| l.starts_with("node 0 (") && l.contains("reconnected after")));
    line(&out, "fixed_peers: done");
}

#[test]
fn event_monitor_sees_connections_messages_and_a_lost_peer() {
    let out = run("event_monitor");
    let last = line(&out, "event_monitor: ");
    assert!(last.contains(" events, "), "{last}");
    assert!(out.contains("ConnectionEstablished"));
    assert!(out.contains("ConnectionLost"));
    // The mined block (headers, after our sendheaders) and the injected transaction (inv).
    // The block is announced by `headers` once the node has read our `sendheaders`, by `inv`
    // if it is mined a moment before (docs/PROTOCOL.md §3.6): either shows the announcement arrived.
    assert!(out
        .lines()
        .any(|l| l.contains("message headers: ") || l.contains("message inv of ")));
    assert!(out.lines().any(|l| l.contains("message inv of ")));
}

#[test]
fn broadcaster_prints_the_per_peer_report_with_a_reject_and_a_relay_back() {
    let out = run("broadcaster");
    assert!(
        out.contains("rejected 0x10 bad-txns-inputs-missingorspent"),
        "{out}"
    );
    let last = line(&out, "broadcaster: ");
    assert!(last.contains(" 1 rejected, "), "{last}");
    assert!(!last.ends_with(" 0 relayed back"), "{last}");
}

#[test]
fn block_listener_prints_new_tips_and_the_simnet_reorg() {
    let out = run("block_listener");
    assert!(out.contains("synced: tip 50 "), "{out}");
    // Two mined blocks (51, 52), then three blocks on 50 replace them: depth 2.
    assert!(out.lines().any(|l| l.starts_with("new tip 51 ")), "{out}");
    // Each new tip's block is fetched and verified (the simnet's blocks carry a coinbase).
    assert!(
        out.lines()
            .any(|l| l.starts_with("block 51 ") && l.ends_with("merkle root verified")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("reorg at 50, depth 2: ")),
        "{out}"
    );
    let last = line(&out, "block_listener: ");
    assert!(last.contains(" 1 reorgs, tip 53 "), "{last}");
}

#[test]
fn crawler_finds_every_simnet_node_from_one() {
    let out = run("crawler");
    assert_eq!(
        line(&out, "crawler: "),
        "crawler: visited 12, reachable 8, unreachable 4, addresses known 12"
    );
}
