//! Crash safety, tested for real: a child process (this test binary, re-run in child mode) writes
//! to a store in a loop and is killed with SIGKILL at random moments; after every kill the store
//! must hold a state it acknowledged, never a torn one.
//!
//! * File: the child saves a store of 5,000 peers (a 640 kB file), alternating between two
//!   contents. After each kill the file must be byte for byte one of the two saves (saving is
//!   deterministic), and it must load; temporary files of interrupted saves are the only debris.
//! * SQLite: the child creates and updates rows and prints each acknowledged id after the call
//!   returns. After each kill the database must open and hold every acknowledged write.
//!
//! The child entry points are `#[ignore]`d tests that do nothing unless `BSV_CRASH_CHILD` is
//! set; the parent runs them with `--exact <name> --ignored`.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::{InMemoryPeerStore, Peer, PeerStatus, PeerStore};
use rand::Rng;
use uuid::Uuid;

const CHILD_ENV: &str = "BSV_CRASH_CHILD";
const KILLS: usize = 200;
/// Peers in the file child's store. Big enough that a save is many writes and a few tens of
/// milliseconds in a debug build (so kills land inside saves), small enough that 200 children
/// start, save and are checked within seconds.
const FILE_PEERS: usize = 5_000;

/// Starts this test binary running only the child test `name`, with `mode` in the environment.
fn spawn_child(name: &str, mode: &str) -> (Child, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: a line cut by the kill was never acknowledged.
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') && tx.send(line.trim_end().to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    (child, rx)
}

/// Waits for the child to print `ready`, then kills it after a random delay of up to
/// `max_delay`, and returns every complete line it printed.
fn kill_at_random(
    mut child: Child,
    rx: mpsc::Receiver<String>,
    max_delay: Duration,
) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("child never became ready");
        let ready = line == "ready";
        lines.push(line);
        if ready {
            break;
        }
    }
    let delay = rand::thread_rng().gen_range(Duration::ZERO..=max_delay);
    thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    lines.extend(rx.iter());
    lines
}

fn print_flushed(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// One of the two contents the file child alternates between: the same addresses with
/// all peers `Unknown` (a) or all `Valid` (b).
fn file_content(which: char) -> Vec<Peer> {
    (0..FILE_PEERS)
        .map(|i| {
            let (status, stamp) = match which {
                'a' => (PeerStatus::Unknown, 1_000),
                _ => (PeerStatus::Valid, 2_000),
            };
            Peer {
                id: Uuid::from_u128(i as u128 + 1),
                ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)),
                port: 8333,
                status,
                status_timestamp: stamp,
            }
        })
        .collect()
}

async fn store_with(path: impl Into<std::path::PathBuf>, peers: Vec<Peer>) -> InMemoryPeerStore {
    let store = InMemoryPeerStore::with_file(path).with_max_peers(FILE_PEERS);
    for p in peers {
        store.create(p).await.unwrap();
    }
    store
}

#[test]
#[ignore = "child process of file_store_survives_sigkill_during_saves"]
fn crash_child_file_saver() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    // "<first content to save>:<path>": the parent names the content not on disk, so every
    // completed save changes the file.
    let (first, path) = mode.split_once(':').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let path = Path::new(path);
        // Built side by side: start-up time is most of a child's life in a debug build.
        let (a, b) = tokio::join!(
            tokio::spawn(store_with(path.to_path_buf(), file_content('a'))),
            tokio::spawn(store_with(path.to_path_buf(), file_content('b')))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let order = if first == "a" {
            [("a", &a), ("b", &b)]
        } else {
            [("b", &b), ("a", &a)]
        };
        // libtest has printed "test <name> ... " without a newline; start a fresh line.
        print_flushed("\nready");
        loop {
            for (name, store) in order {
                print_flushed(&format!("saving {name}"));
                store.save_to_file().await.unwrap();
                print_flushed(&format!("saved {name}"));
            }
        }
    });
}

/// The bytes of a save of `which`, made by the library in a folder of its own.
fn saved_bytes(rt: &tokio::runtime::Runtime, which: char) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    rt.block_on(async {
        store_with(path.clone(), file_content(which))
            .await
            .save_to_file()
            .await
            .unwrap()
    });
    std::fs::read(path).unwrap()
}

/// What one lane of kills observed.
#[derive(Default)]
struct FileKillStats {
    /// Kills whose child had started a save and not finished it.
    mid_save: usize,
    /// Kills that left a temporary file behind (a write was interrupted).
    debris: usize,
    /// Kills after which the file held the other content (a save completed).
    changes: usize,
}

/// Kills `kills` file children saving into `dir`, checking the file after each kill.
fn file_kill_lane(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    kills: usize,
    bytes_a: &[u8],
    bytes_b: &[u8],
) -> FileKillStats {
    let path = dir.join("peers.json");
    std::fs::write(&path, bytes_a).unwrap();
    let mut on_disk = 'a';
    let mut stats = FileKillStats::default();
    for kill in 0..kills {
        let next = if on_disk == 'a' { 'b' } else { 'a' };
        let mode = format!("{next}:{}", path.display());
        let (child, rx) = spawn_child("crash_child_file_saver", &mode);
        let lines = kill_at_random(child, rx, Duration::from_millis(120));
        if lines.last().is_some_and(|l| l.starts_with("saving")) {
            stats.mid_save += 1;
        }

        let bytes = std::fs::read(&path).expect("the file is never missing");
        let now = if bytes == bytes_a {
            'a'
        } else if bytes == bytes_b {
            'b'
        } else {
            panic!("kill {kill}: the file is torn ({} bytes)", bytes.len());
        };
        stats.changes += usize::from(now != on_disk);
        on_disk = now;

        // Only temporary files of the interrupted save may be left.
        let mut debris = false;
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name != "peers.json" {
                assert!(name.starts_with(".peers.json.tmp-"), "kill {kill}: {name}");
                debris = true;
            }
        }
        stats.debris += usize::from(debris);
        // Loading costs more than the byte comparison, so every tenth kill (and the last) goes
        // through the loader, which must read the file and clear the debris.
        if kill % 10 == 9 || kill + 1 == kills {
            let store = InMemoryPeerStore::with_file(&path).with_max_peers(FILE_PEERS);
            assert_eq!(rt.block_on(store.load_from_file()).unwrap(), FILE_PEERS);
            assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "kill {kill}");
        }
    }
    stats
}

#[test]
fn file_store_survives_sigkill_during_saves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bytes_a = saved_bytes(&rt, 'a');
    let bytes_b = saved_bytes(&rt, 'b');
    assert_ne!(bytes_a, bytes_b);

    // Two lanes in their own folders run side by side: a child starting up in one overlaps
    // with a child saving in the other.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let lanes: Vec<FileKillStats> = thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|d| {
                let (rt, a, b) = (&rt, &bytes_a, &bytes_b);
                scope.spawn(move || file_kill_lane(rt, d.path(), KILLS / 2, a, b))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = |f: fn(&FileKillStats) -> usize| lanes.iter().map(f).sum::<usize>();
    let (mid_save, debris, changes) = (
        total(|s| s.mid_save),
        total(|s| s.debris),
        total(|s| s.changes),
    );
    eprintln!(
        "{KILLS} kills: {mid_save} during a save, {debris} left a temporary file, \
         {changes} after a completed save"
    );
    // The kills must really have hit saves in progress, and saves must have completed too.
    assert!(mid_save >= KILLS / 2, "only {mid_save} kills during a save");
    assert!(debris > 0, "no kill interrupted a write");
    assert!(
        changes >= KILLS / 5,
        "only {changes} kills after a completed save"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use bitcoinsv::p2p::{PeerStatusKind, SqlitePeerStore};
    use std::collections::HashSet;

    #[test]
    #[ignore = "child process of sqlite_store_keeps_every_acknowledged_write_after_sigkill"]
    fn crash_child_sqlite_writer() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (run, path) = mode.split_once(':').unwrap();
        let run: u32 = run.parse().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = SqlitePeerStore::open(path)
                .unwrap()
                .with_max_peers(1_000_000);
            print_flushed("\nready");
            for i in 0u32.. {
                let ip = format!("2001:db8::{:x}:{:x}", run, i).parse().unwrap();
                let mut peer = Peer::new(ip, 8333);
                store.create(peer.clone()).await.unwrap();
                print_flushed(&format!("created {}", peer.id));
                peer.set_status(PeerStatus::Valid);
                store.update(peer.clone()).await.unwrap();
                print_flushed(&format!("updated {}", peer.id));
            }
        });
    }

    #[test]
    fn sqlite_store_keeps_every_acknowledged_write_after_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.db");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut created = HashSet::new();
        let mut updated = HashSet::new();
        for kill in 0..KILLS {
            let mode = format!("{kill}:{}", path.display());
            let (child, rx) = spawn_child("sqlite::crash_child_sqlite_writer", &mode);
            for line in kill_at_random(child, rx, Duration::from_millis(40)) {
                if let Some(id) = line.strip_prefix("created ") {
                    created.insert(id.parse::<Uuid>().unwrap());
                } else if let Some(id) = line.strip_prefix("updated ") {
                    updated.insert(id.parse::<Uuid>().unwrap());
                }
            }

            let store = SqlitePeerStore::open(&path).unwrap();
            let stored = rt.block_on(store.list_all()).unwrap();
            let ids: HashSet<Uuid> = stored.iter().map(|p| p.id).collect();
            let lost: Vec<_> = created.difference(&ids).collect();
            assert!(
                lost.is_empty(),
                "kill {kill}: acknowledged creates lost: {lost:?}"
            );
            for p in &stored {
                if updated.contains(&p.id) {
                    assert_eq!(p.status, PeerStatus::Valid, "kill {kill}: update lost");
                }
            }
            let valid = rt
                .block_on(store.count_by_status(PeerStatusKind::Valid))
                .unwrap();
            assert!(valid >= updated.len(), "kill {kill}");
        }
        assert!(
            created.len() > KILLS,
            "the child wrote too little to test anything: {}",
            created.len()
        );
    }
}
