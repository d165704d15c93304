//! The peer store's file: its format, and writing it so that a crash never leaves a torn file.
//!
//! The file is JSON, one peer per line, under a header that names the format and its version so
//! a later release can read old files (or refuse newer ones) knowingly:
//!
//! ```text
//! {"format":"bitcoinsv-peer-store","version":1,"peers":[
//! {"id":"…","ip":"10.0.0.1","port":8333,"status":{"kind":"valid"},"status_timestamp":1700000000},
//! …
//! ]}
//! ```
//!
//! Saving writes a temporary file in the same folder, fsyncs it, renames it over the old file and
//! fsyncs the folder. Rename within a folder is atomic, so a reader (or the next start after a
//! crash) sees the complete old file or the complete new one; the fsyncs make the same hold after
//! a power loss. A file that does not parse is moved aside rather than deleted, so an operator can
//! still inspect it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::p2p::peer::{unix_now, Peer};

/// The `format` field of every peer store file.
pub(crate) const FORMAT: &str = "bitcoinsv-peer-store";
/// The file format version this release writes and reads.
pub(crate) const VERSION: u32 = 1;

#[derive(Deserialize)]
struct Contents {
    format: String,
    version: u32,
    peers: Vec<Peer>,
}

/// The file's bytes for `peers`.
pub(crate) fn encode(peers: &[Peer]) -> io::Result<Vec<u8>> {
    // About 130 bytes per peer; reserving avoids regrowing a multi-megabyte buffer.
    let mut out = Vec::with_capacity(64 + peers.len() * 140);
    write!(
        out,
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"peers\":["
    )?;
    for (i, peer) in peers.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, peer)?;
    }
    out.extend_from_slice(b"\n]}\n");
    Ok(out)
}

/// The peers in a file's bytes, or why the bytes are not a peer store file this release reads.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Peer>, String> {
    let contents: Contents = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if contents.format != FORMAT {
        return Err(format!(
            "format is {:?}, expected {FORMAT:?}",
            contents.format
        ));
    }
    if contents.version != VERSION {
        return Err(format!(
            "format version {} is not supported (this release reads version {VERSION})",
            contents.version
        ));
    }
    Ok(contents.peers)
}

/// The file's bytes, or `None` if it does not exist.
pub(crate) fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the file at `path` with `bytes` atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = folder_of(path);
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temporary file is garbage either way, and the original error matters.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_folder(&dir)
}

/// Moves a bad file aside to `<name>.corrupt-<unix time>` (with a counter if that exists) and
/// returns the new path.
pub(crate) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let name = file_name(path);
    let stamp = unix_now();
    let dir = folder_of(path);
    let mut target = dir.join(format!("{name}.corrupt-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.corrupt-{stamp}-{n}"));
        n += 1;
    }
    fs::rename(path, &target)?;
    sync_folder(&dir)?;
    Ok(target)
}

/// Removes temporary files left by saves that were interrupted by a crash.
pub(crate) fn remove_stale_temp_files(path: &Path) -> io::Result<usize> {
    let prefix = temp_prefix(path);
    let mut removed = 0;
    let entries = match fs::read_dir(folder_of(path)) {
        Ok(entries) => entries,
        // No folder yet: nothing was ever saved there, so nothing is left over.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "peers".to_string())
}

fn temp_prefix(path: &Path) -> String {
    format!(".{}.tmp-", file_name(path))
}

/// A temporary name unique to this process and save, so concurrent saves (or a second process
/// pointed at the same file by mistake) never write into each other's temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    folder_of(path).join(format!("{}{}-{n}", temp_prefix(path), std::process::id()))
}

/// Makes a rename in `dir` durable. Only Unix can open and fsync a folder.
fn sync_folder(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::peer::{BanReason, PeerStatus};

    fn peers() -> Vec<Peer> {
        let mut a = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        a.status = PeerStatus::Valid;
        let mut b = Peer::new("2001:db8::1".parse().unwrap(), 8333);
        b.status = PeerStatus::Banned {
            reason: BanReason::Manual {
                note: "a \"quoted\"\nnote".into(),
            },
            until: None,
        };
        vec![a, b]
    }

    #[test]
    fn encoded_file_is_one_peer_per_line_and_decodes_back() {
        let peers = peers();
        let bytes = encode(&peers).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"format":"bitcoinsv-peer-store","version":1,"peers":["#));
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_eq!(decode(&bytes).unwrap(), peers);
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn other_formats_and_versions_are_refused() {
        let other = br#"{"format":"something-else","version":1,"peers":[]}"#;
        assert!(decode(other).unwrap_err().contains("something-else"));
        let newer = br#"{"format":"bitcoinsv-peer-store","version":2,"peers":[]}"#;
        assert!(decode(newer).unwrap_err().contains("version 2"));
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporary_files_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        fs::write(dir.path().join(".peers.json.tmp-1-0"), b"x").unwrap();
        fs::write(dir.path().join("other.json"), b"x").unwrap();
        assert_eq!(remove_stale_temp_files(&path).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn set_aside_never_overwrites_an_earlier_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        fs::write(&path, b"first").unwrap();
        let a = set_aside(&path).unwrap();
        fs::write(&path, b"second").unwrap();
        let b = set_aside(&path).unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read(a).unwrap(), b"first");
        assert_eq!(fs::read(b).unwrap(), b"second");
        assert!(!path.exists());
    }
}
