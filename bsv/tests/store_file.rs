//! The in-memory store's file: saving and loading keep every peer, and a missing, corrupt or
//! truncated file never stops the store from starting (the bad file is kept aside).

use std::fs;
use std::path::{Path, PathBuf};

use bitcoinsv::p2p::{
    BanReason, InMemoryPeerStore, Network, P2pError, Peer, PeerStatus, PeerStatusKind, PeerStore,
};
use rand::{Rng, SeedableRng};

fn sample_peers(n: usize) -> Vec<Peer> {
    (0..n)
        .map(|i| {
            let ip = if i % 3 == 0 {
                format!("2001:db8::{:x}", i + 1)
            } else {
                format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
            };
            let mut p = Peer::new(ip.parse().unwrap(), 8333 + (i % 7) as u16);
            p.status_timestamp = 1_700_000_000 + i as u64;
            p.status = match i % 5 {
                0 => PeerStatus::Unknown,
                1 => PeerStatus::Valid,
                2 => PeerStatus::Inaccessible,
                3 => PeerStatus::Banned {
                    reason: BanReason::NetworkMismatch {
                        expected: Network::Mainnet,
                        received: "f4e5f3f4".into(),
                    },
                    until: Some(1_800_000_000),
                },
                _ => PeerStatus::Banned {
                    reason: BanReason::Manual {
                        note: format!("note with \"quotes\", a newline\nand ünïcode {i}"),
                    },
                    until: None,
                },
            };
            p
        })
        .collect()
}

async fn filled_store(path: &Path, peers: &[Peer]) -> InMemoryPeerStore {
    let store = InMemoryPeerStore::with_file(path);
    for p in peers {
        store.create(p.clone()).await.unwrap();
    }
    store
}

async fn sorted(store: &InMemoryPeerStore) -> Vec<Peer> {
    let mut peers = store.list_all().await.unwrap();
    peers.sort_by_key(|p| p.id);
    peers
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn save_then_load_restores_every_peer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let mut peers = sample_peers(1000);
    filled_store(&path, &peers)
        .await
        .save_to_file()
        .await
        .unwrap();

    let loaded = InMemoryPeerStore::with_file(&path);
    assert_eq!(loaded.load_from_file().await.unwrap(), 1000);
    peers.sort_by_key(|p| p.id);
    assert_eq!(sorted(&loaded).await, peers);
    let p = &peers[17];
    assert_eq!(
        loaded.find_by_ip_port(p.ip, p.port).await.unwrap().as_ref(),
        Some(p)
    );
    assert_eq!(
        loaded
            .count_by_status(PeerStatusKind::Banned)
            .await
            .unwrap(),
        400
    );
}

#[tokio::test]
async fn saved_file_is_versioned_json_with_one_peer_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    filled_store(&path, &sample_peers(3))
        .await
        .save_to_file()
        .await
        .unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"format":"bitcoinsv-peer-store","version":1,"peers":["#
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[1..4].iter().all(|l| l.starts_with(r#"{"id":""#)));
    assert_eq!(lines[4], "]}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["peers"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn missing_file_loads_as_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryPeerStore::with_file(dir.path().join("absent.json"));
    assert_eq!(store.load_from_file().await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[tokio::test]
async fn load_replaces_what_the_store_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let saved = sample_peers(2);
    filled_store(&path, &saved)
        .await
        .save_to_file()
        .await
        .unwrap();
    let store = filled_store(&path, &sample_peers(10)[5..]).await;
    assert_eq!(store.load_from_file().await.unwrap(), 2);
    let mut saved = saved;
    saved.sort_by_key(|p| p.id);
    assert_eq!(sorted(&store).await, saved);
}

/// Writes `bytes` as the store file, loads it, and checks the store starts empty with the bytes
/// kept aside in a `.corrupt-<time>` file.
async fn assert_loads_empty_and_kept_aside(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    fs::write(&path, bytes).unwrap();
    let store = InMemoryPeerStore::with_file(&path);
    assert_eq!(store.load_from_file().await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(!path.exists(), "the bad file is moved, not left in place");
    let aside = corrupt_files(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    let name = aside[0].file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.strip_prefix("peers.json.corrupt-").unwrap();
    assert!(stamp.parse::<u64>().unwrap() > 1_700_000_000, "{name}");
    assert_eq!(fs::read(&aside[0]).unwrap(), bytes, "old bytes kept");

    // The store works and saves normally afterwards.
    store.create(sample_peers(1).remove(0)).await.unwrap();
    store.save_to_file().await.unwrap();
    let again = InMemoryPeerStore::with_file(&path);
    assert_eq!(again.load_from_file().await.unwrap(), 1);
}

async fn real_save_bytes(n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    filled_store(&path, &sample_peers(n))
        .await
        .save_to_file()
        .await
        .unwrap();
    fs::read(path).unwrap()
}

#[tokio::test]
async fn first_half_of_a_real_save_loads_empty_and_is_kept_aside() {
    let bytes = real_save_bytes(200).await;
    assert_loads_empty_and_kept_aside(&bytes[..bytes.len() / 2]).await;
}

#[tokio::test]
async fn real_save_cut_anywhere_loads_empty_and_is_kept_aside() {
    let bytes = real_save_bytes(20).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for _ in 0..20 {
        let cut = rng.gen_range(1..bytes.len() - 1);
        assert_loads_empty_and_kept_aside(&bytes[..cut]).await;
    }
}

#[tokio::test]
async fn random_bytes_load_empty_and_are_kept_aside() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.gen()).collect();
    assert_loads_empty_and_kept_aside(&bytes).await;
}

#[tokio::test]
async fn empty_file_loads_empty_and_is_kept_aside() {
    assert_loads_empty_and_kept_aside(b"").await;
}

#[tokio::test]
async fn other_json_and_newer_versions_load_empty_and_are_kept_aside() {
    assert_loads_empty_and_kept_aside(b"[]").await;
    assert_loads_empty_and_kept_aside(br#"{"format":"other","version":1,"peers":[]}"#).await;
    assert_loads_empty_and_kept_aside(
        br#"{"format":"bitcoinsv-peer-store","version":2,"peers":[]}"#,
    )
    .await;
    // A peer with a field of the wrong type.
    assert_loads_empty_and_kept_aside(
        br#"{"format":"bitcoinsv-peer-store","version":1,"peers":[{"id":"x","ip":"10.0.0.1","port":1,"status":{"kind":"valid"},"status_timestamp":1}]}"#,
    )
    .await;
}

#[tokio::test]
async fn duplicates_in_a_hand_edited_file_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let a = "00000000-0000-4000-8000-000000000001";
    let b = "00000000-0000-4000-8000-000000000002";
    let text = format!(
        "{{\"format\":\"bitcoinsv-peer-store\",\"version\":1,\"peers\":[\n\
         {{\"id\":\"{a}\",\"ip\":\"10.0.0.1\",\"port\":1,\"status\":{{\"kind\":\"valid\"}},\"status_timestamp\":1}},\n\
         {{\"id\":\"{b}\",\"ip\":\"10.0.0.1\",\"port\":1,\"status\":{{\"kind\":\"valid\"}},\"status_timestamp\":1}},\n\
         {{\"id\":\"{a}\",\"ip\":\"10.0.0.2\",\"port\":1,\"status\":{{\"kind\":\"valid\"}},\"status_timestamp\":1}}\n]}}\n"
    );
    fs::write(&path, text).unwrap();
    let store = InMemoryPeerStore::with_file(&path);
    assert_eq!(store.load_from_file().await.unwrap(), 1);
    let only = store.list_all().await.unwrap();
    assert_eq!(only[0].id.to_string(), a);
    assert!(corrupt_files(dir.path()).is_empty());
}

#[tokio::test]
async fn load_evicts_down_to_the_bound_in_eviction_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let peers = sample_peers(50);
    filled_store(&path, &peers)
        .await
        .save_to_file()
        .await
        .unwrap();
    // 10 Unknown, 10 Inaccessible, 30 Valid or Banned: a bound of 35 keeps the 5 newest
    // Inaccessible peers and no Unknown one.
    let store = InMemoryPeerStore::with_file(&path).with_max_peers(35);
    assert_eq!(store.load_from_file().await.unwrap(), 35);
    assert_eq!(
        store
            .count_by_status(PeerStatusKind::Unknown)
            .await
            .unwrap(),
        0
    );
    let mut kept: Vec<u64> = store
        .find_by_status(PeerStatusKind::Inaccessible)
        .await
        .unwrap()
        .iter()
        .map(|p| p.status_timestamp)
        .collect();
    kept.sort();
    let mut newest: Vec<u64> = peers
        .iter()
        .filter(|p| p.status == PeerStatus::Inaccessible)
        .map(|p| p.status_timestamp)
        .collect();
    newest.sort();
    assert_eq!(kept, newest[5..]);
}

#[tokio::test]
async fn load_removes_temporary_files_of_an_interrupted_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    fs::write(dir.path().join(".peers.json.tmp-999-3"), b"{\"format\":").unwrap();
    let store = InMemoryPeerStore::with_file(&path);
    assert_eq!(store.load_from_file().await.unwrap(), 0);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn saving_without_a_file_is_an_error_and_flush_is_a_no_op() {
    let store = InMemoryPeerStore::new();
    let err = store.save_to_file().await.unwrap_err();
    assert!(matches!(err, P2pError::InvalidConfiguration(_)), "{err}");
    assert!(err.to_string().contains("with_file"), "{err}");
    store.flush().await.unwrap();
}

#[tokio::test]
async fn flush_saves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let store: Box<dyn PeerStore> = Box::new(filled_store(&path, &sample_peers(4)).await);
    store.flush().await.unwrap();
    let loaded = InMemoryPeerStore::with_file(&path);
    assert_eq!(loaded.load_from_file().await.unwrap(), 4);
}

#[tokio::test]
async fn saving_into_a_missing_folder_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-folder").join("peers.json");
    let err = InMemoryPeerStore::with_file(&path)
        .save_to_file()
        .await
        .unwrap_err();
    match err {
        P2pError::Persistence { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Persistence, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_and_writes_leave_a_loadable_file_with_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let store = std::sync::Arc::new(InMemoryPeerStore::with_file(&path));
    let peers = sample_peers(400);
    let mut tasks = Vec::new();
    for chunk in peers.chunks(50) {
        let store = std::sync::Arc::clone(&store);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for p in chunk {
                store.create(p).await.unwrap();
            }
            store.save_to_file().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.save_to_file().await.unwrap();
    let loaded = InMemoryPeerStore::with_file(&path);
    assert_eq!(loaded.load_from_file().await.unwrap(), 400);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files"
    );
}
