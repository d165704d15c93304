//! Crash safety, tested for real: a child process (this test binary, re-run in child mode) writes
//! to a store and is killed with SIGKILL; after every kill the store must hold a state it
//! acknowledged, never a torn one. The child announces on stdout where it is and the parent kills
//! it on that announcement, so every kill lands where the test means it to, on any machine load.
//!
//! * File: the child saves a store of 5,000 peers (a 640 kB file) with one of two contents, `a`
//!   or `b`; saving is deterministic, so after each kill the file must be byte for byte the save
//!   the test expects, it must load, and temporary files of an interrupted save are the only
//!   debris (which loading removes). The kill points:
//!   - **inside the write of the temporary file**, at a byte offset the parent chooses, from the
//!     first byte to the last: the child lowers its `RLIMIT_FSIZE` to that offset before saving,
//!     so the kernel stops the write there and raises `SIGXFSZ`; the child's handler announces
//!     `cut` and waits, and the parent kills it. The file must still be the previous save, and
//!     the one temporary file exactly as long as the offset: the kill really was mid-write.
//!   - **after a completed save** (the child announces `saved X`, then `done`, and waits): the
//!     file must be `X`.
//!   - **after a completed save, inside the next one**: the file must be the completed save.
//!   - **anywhere in a loop of saves**, killed when it announces its n-th `saving` while it keeps
//!     going: wherever that lands (write, fsync, rename), the file is one of the two saves.
//! * SQLite: the child creates and updates rows and prints each acknowledged id after the call
//!   returns; the parent kills it right after its n-th acknowledgement, while it goes on writing.
//!   After each kill the database must open and hold every acknowledged write.
//!
//! Every kill is checked to be the parent's SIGKILL (not a crash of the child's own). The child
//! entry points are `#[ignore]`d tests that do nothing unless `BSV_CRASH_CHILD` is set; the
//! parent runs them with `--exact <name> --ignored`.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::{InMemoryPeerStore, Peer, PeerStatus, PeerStore};
use uuid::Uuid;

const CHILD_ENV: &str = "BSV_CRASH_CHILD";
/// Peers in the file child's store: a save is a 640 kB file, many times the size of a page.
const FILE_PEERS: usize = 5_000;
/// Offsets inside the temporary file at which a save is cut, spread from the first byte to the
/// last.
const CUT_POINTS: u64 = 16;
/// How long a child may take to reach the point the parent waits for: only a bound for a broken
/// child, never reached by a working one however loaded the machine.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Runs this test binary's child test `name` with `mode` in the environment, reads its stdout
/// line by line until `stop` accepts the lines so far, then kills it with SIGKILL. Returns every
/// complete line it printed. Panics if the child ended any other way.
fn kill_when(name: &str, mode: &str, mut stop: impl FnMut(&[String]) -> bool) -> Vec<String> {
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
    let mut lines = Vec::new();
    let deadline = Instant::now() + CHILD_DEADLINE;
    while !stop(&lines) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("child {mode:?} never reached its kill point ({e}, {status}): {lines:?}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child {mode:?} ended by {status}, not by our kill: {lines:?}"
    );
    lines.extend(rx.iter());
    lines
}

fn print_flushed(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// One of the two contents the file child saves: the same addresses with all peers `Unknown`
/// (a) or all `Valid` (b).
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

/// The child's `SIGXFSZ` handler: the kernel stopped a write at the file size limit, so the child
/// is inside a save. Announce it (only async-signal-safe calls) and wait for the parent's kill.
extern "C" fn announce_cut_and_wait(_signal: libc::c_int) {
    const LINE: &[u8] = b"\ncut\n";
    // SAFETY: write(2) and pause(2) are async-signal-safe; LINE outlives the call.
    unsafe {
        libc::write(libc::STDOUT_FILENO, LINE.as_ptr().cast(), LINE.len());
        loop {
            libc::pause();
        }
    }
}

/// Makes every write past `bytes` in any file stop there and raise `SIGXFSZ`, handled by
/// [`announce_cut_and_wait`].
fn cut_writes_at(bytes: u64) {
    // SAFETY: plain libc calls with valid, initialised arguments; the handler only makes
    // async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = announce_cut_and_wait as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGXFSZ, &action, std::ptr::null_mut()),
            0
        );
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

/// One step of the file child's plan.
enum Step {
    /// Save this content; announce `saving X` before and `saved X` after.
    Save(char),
    /// Save this content with writes cut at this many bytes (announces `cut` when cut).
    Cut(char, u64),
    /// Save the two contents in turn, this one first, forever.
    Loop(char),
}

fn parse_plan(plan: &str) -> Vec<Step> {
    plan.split(',')
        .map(|step| {
            let parts: Vec<&str> = step.split(':').collect();
            let which = parts[1].chars().next().unwrap();
            match parts[0] {
                "save" => Step::Save(which),
                "cut" => Step::Cut(which, parts[2].parse().unwrap()),
                "loop" => Step::Loop(which),
                other => panic!("unknown step {other}"),
            }
        })
        .collect()
}

#[test]
#[ignore = "child process of file_store_survives_sigkill_inside_and_between_saves"]
fn crash_child_file_saver() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    // "<plan> <path>", the plan being steps separated by commas (see `Step`).
    let (plan, path) = mode.split_once(' ').unwrap();
    let steps = parse_plan(plan);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let path = Path::new(path);
        // Built side by side: start-up time is most of a child's life in a debug build.
        let (a, b) = tokio::join!(
            tokio::spawn(store_with(path.to_path_buf(), file_content('a'))),
            tokio::spawn(store_with(path.to_path_buf(), file_content('b')))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let store = |which: char| if which == 'a' { &a } else { &b };
        // libtest has printed "test <name> ... " without a newline; start a fresh line.
        print_flushed("\nready");
        for step in steps {
            let (which, cut) = match step {
                Step::Save(which) => (which, None),
                Step::Cut(which, bytes) => (which, Some(bytes)),
                Step::Loop(first) => {
                    let second = if first == 'a' { 'b' } else { 'a' };
                    loop {
                        for which in [first, second] {
                            print_flushed(&format!("saving {which}"));
                            store(which).save_to_file().await.unwrap();
                            print_flushed(&format!("saved {which}"));
                        }
                    }
                }
            };
            if let Some(bytes) = cut {
                cut_writes_at(bytes);
            }
            print_flushed(&format!("saving {which}"));
            store(which).save_to_file().await.unwrap();
            print_flushed(&format!("saved {which}"));
        }
        print_flushed("done");
        loop {
            std::thread::park();
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

fn other(which: char) -> char {
    if which == 'a' {
        'b'
    } else {
        'a'
    }
}

/// The file child's folder after kills, and the two saves it may hold.
struct FileLane<'a> {
    rt: &'a tokio::runtime::Runtime,
    dir: &'a Path,
    bytes_a: Vec<u8>,
    bytes_b: Vec<u8>,
}

impl FileLane<'_> {
    fn path(&self) -> std::path::PathBuf {
        self.dir.join("peers.json")
    }

    fn bytes(&self, which: char) -> &[u8] {
        if which == 'a' {
            &self.bytes_a
        } else {
            &self.bytes_b
        }
    }

    /// Runs a file child with `plan` and kills it when `stop` accepts its lines.
    fn kill(&self, plan: &str, stop: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let mode = format!("{plan} {}", self.path().display());
        kill_when("crash_child_file_saver", &mode, stop)
    }

    /// Which save the file holds; panics if it is neither (torn).
    fn on_disk(&self, what: &str) -> char {
        let bytes = std::fs::read(self.path()).expect("the file is never missing");
        if bytes == self.bytes_a {
            'a'
        } else if bytes == self.bytes_b {
            'b'
        } else {
            panic!("{what}: the file is torn ({} bytes)", bytes.len());
        }
    }

    /// The temporary files left in the folder, with their lengths; anything else fails.
    fn debris(&self, what: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "peers.json" {
                assert!(name.starts_with(".peers.json.tmp-"), "{what}: {name}");
                out.push(entry.metadata().unwrap().len());
            }
        }
        out
    }

    /// The file loads, all of it, and loading clears the debris.
    fn loads(&self, what: &str) {
        let store = InMemoryPeerStore::with_file(self.path()).with_max_peers(FILE_PEERS);
        assert_eq!(
            self.rt.block_on(store.load_from_file()).unwrap(),
            FILE_PEERS,
            "{what}"
        );
        assert_eq!(std::fs::read_dir(self.dir).unwrap().count(), 1, "{what}");
    }

    /// After a kill: the file is `expected`, the debris is one temporary file of `cut` bytes (or
    /// none), and it loads.
    fn check(&self, what: &str, expected: char, cut: Option<u64>) {
        assert_eq!(self.on_disk(what), expected, "{what}");
        let debris = self.debris(what);
        match cut {
            Some(bytes) => assert_eq!(debris, [bytes], "{what}: the save was cut mid-write"),
            None => assert!(debris.is_empty(), "{what}: {debris:?}"),
        }
        self.loads(what);
    }
}

fn line_is(expected: &'static str) -> impl FnMut(&[String]) -> bool {
    move |lines| lines.last().is_some_and(|l| l == expected)
}

#[test]
fn file_store_survives_sigkill_inside_and_between_saves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lane = FileLane {
        rt: &rt,
        dir: dir.path(),
        bytes_a: saved_bytes(&rt, 'a'),
        bytes_b: saved_bytes(&rt, 'b'),
    };
    assert_ne!(lane.bytes_a, lane.bytes_b);
    std::fs::write(lane.path(), &lane.bytes_a).unwrap();
    let mut on_disk = 'a';

    // Killed inside the write of the temporary file, from its first byte to its last.
    for i in 0..CUT_POINTS {
        let next = other(on_disk);
        let size = lane.bytes(next).len() as u64;
        let cut = i * (size - 1) / (CUT_POINTS - 1);
        let what = format!("killed {cut} bytes into saving {next} over {on_disk}");
        let lines = lane.kill(&format!("cut:{next}:{cut}"), line_is("cut"));
        assert!(!lines.iter().any(|l| l.starts_with("saved")), "{what}");
        lane.check(&what, on_disk, Some(cut));
    }

    // Killed after a completed save, waiting: the save is what the file holds.
    for _ in 0..4 {
        let next = other(on_disk);
        let what = format!("killed after saving {next}");
        lane.kill(&format!("save:{next}"), line_is("done"));
        on_disk = next;
        lane.check(&what, on_disk, None);
    }

    // Killed inside the save that follows a completed one: the completed save stands.
    for i in 1..=4u64 {
        let (next, then) = (other(on_disk), on_disk);
        let cut = i * lane.bytes(then).len() as u64 / 5;
        let what = format!("killed {cut} bytes into saving {then} after saving {next}");
        lane.kill(&format!("save:{next},cut:{then}:{cut}"), line_is("cut"));
        on_disk = next;
        lane.check(&what, on_disk, Some(cut));
    }

    // Killed while it saves in a loop, when it announces its n-th save: wherever the kill lands
    // (write, fsync, rename, between saves), the file is one of the two saves.
    for n in 1..=6 {
        let what = format!("killed at save {n} of a loop");
        lane.kill(&format!("loop:{}", other(on_disk)), move |lines| {
            lines.iter().filter(|l| l.starts_with("saving")).count() >= n
        });
        on_disk = lane.on_disk(&what);
        lane.debris(&what);
        lane.loads(&what);
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use bitcoinsv::p2p::{PeerStatusKind, SqlitePeerStore};
    use std::collections::HashSet;

    /// Children started and killed.
    const KILLS: usize = 200;

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
            // Killed right after its n-th acknowledged write, while it goes on writing.
            let acks = 1 + kill % 5;
            let lines = kill_when("sqlite::crash_child_sqlite_writer", &mode, |lines| {
                lines
                    .iter()
                    .filter(|l| l.starts_with("created ") || l.starts_with("updated "))
                    .count()
                    >= acks
            });
            for line in lines {
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
