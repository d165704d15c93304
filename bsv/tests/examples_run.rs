//! Runs every example with no arguments (so against its in-process simnet) and checks that it
//! exits 0 and prints the line that shows it did its job.
//!
//! The example binaries are built once per test process with a nested
//! `cargo build --examples -p bitcoinsv --offline` in the same profile, features and target
//! folder as this test (a no-op when `cargo test` has already built them, which it does
//! unless a single test target is selected), then run straight from
//! `target/<profile>/examples/`: no `cargo run` per example.

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
        eprintln!("examples built (or found fresh) in {:?}", t.elapsed());
        profile_dir.join("examples")
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
    assert!(out.lines().any(|l| l.contains("message headers: ")));
    assert!(out.lines().any(|l| l.contains("message inv of ")));
}

#[test]
fn crawler_finds_every_simnet_node_from_one() {
    let out = run("crawler");
    assert_eq!(
        line(&out, "crawler: "),
        "crawler: visited 12, reachable 8, unreachable 4, addresses known 12"
    );
}
