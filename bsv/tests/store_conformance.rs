//! The peer store conformance suite: one set of behaviours every `PeerStore` must have, run
//! against each implementation through `conformance_suite!`. A new store gets the same checks by
//! adding one macro invocation with a function that builds it.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bitcoinsv::p2p::{
    BanOutcome, BanReason, InMemoryPeerStore, P2pError, Peer, PeerStatus, PeerStatusKind,
    PeerStore, Whitelist,
};
use tempfile::TempDir;

/// A store under test and the folder its files live in (removed when dropped).
struct Fixture {
    store: Arc<dyn PeerStore>,
    _dir: TempDir,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(addr: &str, port: u16, status: PeerStatus, status_timestamp: u64) -> Peer {
    let mut p = Peer::new(ip(addr), port);
    p.status = status;
    p.status_timestamp = status_timestamp;
    p
}

fn banned(until: Option<u64>) -> PeerStatus {
    PeerStatus::Banned {
        reason: BanReason::Manual {
            note: "test".into(),
        },
        until,
    }
}

async fn sorted_ids(store: &dyn PeerStore) -> Vec<uuid::Uuid> {
    let mut ids: Vec<_> = store
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    ids
}

/// The behaviours, each a function of a fresh store factory `make(max_peers)`.
mod checks {
    use super::*;

    pub async fn create_read_update_delete<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let mut p = peer("10.0.0.1", 8333, PeerStatus::Unknown, 1000);
        s.create(p.clone()).await.unwrap();
        assert_eq!(s.read(p.id).await.unwrap(), Some(p.clone()));

        p.set_status_at(PeerStatus::Valid, 2000);
        s.update(p.clone()).await.unwrap();
        assert_eq!(s.read(p.id).await.unwrap(), Some(p.clone()));
        assert_eq!(s.count().await.unwrap(), 1);

        assert!(s.delete(p.id).await.unwrap());
        assert_eq!(s.read(p.id).await.unwrap(), None);
        assert_eq!(s.find_by_ip_port(p.ip, p.port).await.unwrap(), None);
        assert!(
            !s.delete(p.id).await.unwrap(),
            "second delete finds nothing"
        );
        assert_eq!(s.count().await.unwrap(), 0);

        // The address is free again once its peer is deleted.
        s.create(peer("10.0.0.1", 8333, PeerStatus::Unknown, 1000))
            .await
            .unwrap();
    }

    pub async fn banned_peer_round_trips_with_its_reason_and_end<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let reasons = [
            BanReason::NetworkMismatch {
                expected: bitcoinsv::p2p::Network::Mainnet,
                received: "testnet".into(),
            },
            BanReason::BlockchainMismatch {
                received: "f9beb4d9".into(),
            },
            BanReason::BannedUserAgent {
                user_agent: "/Bitcoin ABC:0.22/".into(),
            },
            BanReason::Misbehavior {
                score: 100,
                reason: "oversized-addr".into(),
            },
            BanReason::Manual {
                note: "operator".into(),
            },
        ];
        for (i, reason) in reasons.into_iter().enumerate() {
            let until = (i % 2 == 0).then_some(5_000 + i as u64);
            let p = peer(
                "10.0.0.2",
                8000 + i as u16,
                PeerStatus::Banned { reason, until },
                1234,
            );
            s.create(p.clone()).await.unwrap();
            assert_eq!(s.read(p.id).await.unwrap(), Some(p));
        }
    }

    pub async fn duplicate_address_is_refused<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let first = peer("10.0.0.1", 8333, PeerStatus::Unknown, 1);
        s.create(first.clone()).await.unwrap();
        let again = peer("10.0.0.1", 8333, PeerStatus::Valid, 2);
        let err = s.create(again).await.unwrap_err();
        assert!(
            matches!(err, P2pError::DuplicatePeer { ip, port: 8333 } if ip == first.ip),
            "{err}"
        );
        let mut same_id = peer("10.0.0.9", 8333, PeerStatus::Unknown, 1);
        same_id.id = first.id;
        let err = s.create(same_id).await.unwrap_err();
        assert!(matches!(err, P2pError::DuplicatePeerId { peer_id } if peer_id == first.id));
        assert_eq!(s.list_all().await.unwrap(), vec![first]);
    }

    pub async fn update_of_missing_peer_is_not_found<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let ghost = peer("10.0.0.1", 8333, PeerStatus::Valid, 1);
        let err = s.update(ghost.clone()).await.unwrap_err();
        assert!(matches!(err, P2pError::PeerNotFound { peer_id } if peer_id == ghost.id));
        assert_eq!(
            s.count().await.unwrap(),
            0,
            "a failed update creates nothing"
        );
    }

    pub async fn update_onto_a_taken_address_is_refused_and_onto_a_free_one_moves<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let a = peer("10.0.0.1", 8333, PeerStatus::Unknown, 1);
        let b = peer("10.0.0.2", 8333, PeerStatus::Unknown, 1);
        s.create(a.clone()).await.unwrap();
        s.create(b.clone()).await.unwrap();

        let mut onto_b = a.clone();
        onto_b.ip = b.ip;
        let err = s.update(onto_b).await.unwrap_err();
        assert!(
            matches!(err, P2pError::DuplicatePeer { port: 8333, .. }),
            "{err}"
        );
        assert_eq!(s.read(a.id).await.unwrap(), Some(a.clone()), "unchanged");

        let mut moved = a.clone();
        moved.port = 18333;
        s.update(moved.clone()).await.unwrap();
        assert_eq!(s.find_by_ip_port(a.ip, 18333).await.unwrap(), Some(moved));
        assert_eq!(s.find_by_ip_port(a.ip, 8333).await.unwrap(), None);
        s.create(peer("10.0.0.1", 8333, PeerStatus::Unknown, 1))
            .await
            .unwrap();
    }

    pub async fn queries_by_status_and_counts_follow_status_changes<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let statuses = [
            PeerStatus::Unknown,
            PeerStatus::Unknown,
            PeerStatus::Unknown,
            PeerStatus::Valid,
            PeerStatus::Valid,
            PeerStatus::Inaccessible,
            banned(None),
        ];
        let mut peers = Vec::new();
        for (i, status) in statuses.into_iter().enumerate() {
            let p = peer(&format!("10.0.1.{i}"), 8333, status, 1);
            s.create(p.clone()).await.unwrap();
            peers.push(p);
        }
        let expect = [
            (PeerStatusKind::Unknown, 3),
            (PeerStatusKind::Valid, 2),
            (PeerStatusKind::Inaccessible, 1),
            (PeerStatusKind::Banned, 1),
        ];
        for (kind, n) in expect {
            assert_eq!(s.count_by_status(kind).await.unwrap(), n, "{kind}");
            let found = s.find_by_status(kind).await.unwrap();
            assert_eq!(found.len(), n, "{kind}");
            assert!(found.iter().all(|p| p.status.kind() == kind));
        }
        let mut p = peers[0].clone();
        p.set_status_at(PeerStatus::Valid, 2);
        s.update(p.clone()).await.unwrap();
        assert_eq!(s.count_by_status(PeerStatusKind::Unknown).await.unwrap(), 2);
        assert_eq!(s.count_by_status(PeerStatusKind::Valid).await.unwrap(), 3);
        assert!(s
            .find_by_status(PeerStatusKind::Valid)
            .await
            .unwrap()
            .contains(&p));
        assert_eq!(s.count().await.unwrap(), 7);
    }

    pub async fn find_by_ip_port_matches_the_exact_address<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let p = peer("192.168.1.7", 8333, PeerStatus::Valid, 1);
        s.create(p.clone()).await.unwrap();
        assert_eq!(
            s.find_by_ip_port(ip("192.168.1.7"), 8333).await.unwrap(),
            Some(p)
        );
        assert_eq!(
            s.find_by_ip_port(ip("192.168.1.7"), 8334).await.unwrap(),
            None
        );
        assert_eq!(
            s.find_by_ip_port(ip("192.168.1.8"), 8333).await.unwrap(),
            None
        );
    }

    pub async fn ipv6_peers_are_stored_and_found<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let v6 = peer("2001:db8::1", 8333, PeerStatus::Valid, 1);
        let v4 = peer("10.0.0.1", 8333, PeerStatus::Valid, 1);
        let loopback = peer("::1", 18444, PeerStatus::Unknown, 1);
        for p in [&v6, &v4, &loopback] {
            s.create(p.clone()).await.unwrap();
        }
        // The same address written differently is the same address.
        let err = s
            .create(peer("2001:0db8:0:0::1", 8333, PeerStatus::Unknown, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, P2pError::DuplicatePeer { .. }), "{err}");
        assert_eq!(
            s.find_by_ip_port(ip("2001:db8:0::1"), 8333).await.unwrap(),
            Some(v6.clone())
        );
        assert_eq!(
            s.find_by_ip_port(ip("::1"), 18444).await.unwrap(),
            Some(loopback)
        );
        assert_eq!(s.find_by_ip(ip("2001:db8::1")).await.unwrap(), vec![v6]);
    }

    pub async fn full_store_evicts_oldest_unknown_before_any_inaccessible<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(5).await;
        let s = &*f.store;
        let valid = peer("10.0.0.1", 1, PeerStatus::Valid, 1);
        let ban = peer("10.0.0.2", 1, banned(None), 2);
        let inaccessible = peer("10.0.0.3", 1, PeerStatus::Inaccessible, 3);
        let old_unknown = peer("10.0.0.4", 1, PeerStatus::Unknown, 10);
        let new_unknown = peer("10.0.0.5", 1, PeerStatus::Unknown, 20);
        for p in [&valid, &ban, &inaccessible, &new_unknown, &old_unknown] {
            s.create(p.clone()).await.unwrap();
        }
        let newest = peer("10.0.0.6", 1, PeerStatus::Unknown, 30);
        s.create(newest.clone()).await.unwrap();
        assert_eq!(
            s.read(old_unknown.id).await.unwrap(),
            None,
            "oldest Unknown goes"
        );
        assert_eq!(s.count().await.unwrap(), 5);

        s.create(peer("10.0.0.7", 1, PeerStatus::Valid, 40))
            .await
            .unwrap();
        assert_eq!(s.read(new_unknown.id).await.unwrap(), None);
        assert!(s.read(inaccessible.id).await.unwrap().is_some());
        s.create(peer("10.0.0.8", 1, PeerStatus::Valid, 50))
            .await
            .unwrap();
        assert_eq!(
            s.read(newest.id).await.unwrap(),
            None,
            "even a newer Unknown"
        );
        assert!(s.read(inaccessible.id).await.unwrap().is_some());
        assert_eq!(s.count().await.unwrap(), 5);
    }

    pub async fn full_store_evicts_inaccessible_when_no_unknown_is_left<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(4).await;
        let s = &*f.store;
        let valid = peer("10.0.0.1", 1, PeerStatus::Valid, 1);
        let ban = peer("10.0.0.2", 1, banned(Some(99)), 1);
        let old = peer("10.0.0.3", 1, PeerStatus::Inaccessible, 5);
        let young = peer("10.0.0.4", 1, PeerStatus::Inaccessible, 6);
        for p in [&valid, &ban, &young, &old] {
            s.create(p.clone()).await.unwrap();
        }
        let unknown = peer("10.0.0.5", 1, PeerStatus::Unknown, 100);
        s.create(unknown.clone()).await.unwrap();
        let mut left = vec![valid.id, ban.id, young.id, unknown.id];
        left.sort();
        assert_eq!(
            sorted_ids(s).await,
            left,
            "the older Inaccessible peer went"
        );
    }

    pub async fn full_store_of_valid_and_banned_refuses_new_peers<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(2).await;
        let s = &*f.store;
        s.create(peer("10.0.0.1", 1, PeerStatus::Valid, 1))
            .await
            .unwrap();
        s.create(peer("10.0.0.2", 1, banned(None), 1))
            .await
            .unwrap();
        let before = sorted_ids(s).await;
        let err = s
            .create(peer("10.0.0.3", 1, PeerStatus::Unknown, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, P2pError::StoreFull { capacity: 2 }), "{err}");
        assert_eq!(sorted_ids(s).await, before, "nothing was evicted");
    }

    pub async fn lapsed_bans_return_peers_to_unknown<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let lapsed = peer("10.0.0.1", 8333, banned(Some(1_000)), 500);
        let running = peer("10.0.0.2", 8333, banned(Some(1_001)), 500);
        let permanent = peer("10.0.0.3", 8333, banned(None), 500);
        for p in [&lapsed, &running, &permanent] {
            s.create(p.clone()).await.unwrap();
        }
        let expired = s.expire_bans(1_000).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, lapsed.id);
        let now = s.read(lapsed.id).await.unwrap().unwrap();
        assert_eq!(
            (now.status, now.status_timestamp),
            (PeerStatus::Unknown, 1_000)
        );
        assert_eq!(s.read(running.id).await.unwrap(), Some(running.clone()));
        assert_eq!(s.read(permanent.id).await.unwrap(), Some(permanent));
        assert!(s.is_ip_banned(running.ip, 1_000).await.unwrap());
        assert!(!s.is_ip_banned(running.ip, 1_001).await.unwrap());
        assert!(s.expire_bans(1_000).await.unwrap().is_empty());
    }

    pub async fn ban_covers_every_port_of_the_ip_and_unban_lifts_it<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let a = peer("203.0.113.5", 8333, PeerStatus::Valid, 1);
        let b = peer("203.0.113.5", 18333, PeerStatus::Unknown, 1);
        let other = peer("203.0.113.6", 8333, PeerStatus::Valid, 1);
        for p in [&a, &b, &other] {
            s.create(p.clone()).await.unwrap();
        }
        let reason = BanReason::BannedUserAgent {
            user_agent: "/Bitcoin ABC:0.22/".into(),
        };
        let outcome = s
            .ban_ip(a.ip, reason.clone(), Some(u64::MAX), &Whitelist::new())
            .await
            .unwrap();
        let BanOutcome::Banned(mut peers) = outcome else {
            panic!("not banned: {outcome:?}");
        };
        peers.sort_by_key(|p| p.port);
        assert_eq!(
            peers.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![8333, 18333]
        );
        for p in [&a, &b] {
            let stored = s.read(p.id).await.unwrap().unwrap();
            assert_eq!(
                stored.status,
                PeerStatus::Banned {
                    reason: reason.clone(),
                    until: Some(u64::MAX)
                }
            );
        }
        assert!(s.is_ip_banned(a.ip, 0).await.unwrap());
        assert!(!s.is_ip_banned(other.ip, 0).await.unwrap());
        assert_eq!(s.read(other.id).await.unwrap(), Some(other));

        assert_eq!(s.unban_ip(a.ip).await.unwrap().len(), 2);
        assert!(!s.is_ip_banned(a.ip, 0).await.unwrap());
        assert_eq!(s.count_by_status(PeerStatusKind::Unknown).await.unwrap(), 2);
    }

    pub async fn whitelisted_ip_is_never_banned<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        let f = make(100).await;
        let s = &*f.store;
        let whitelist = Whitelist::parse(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]).unwrap();
        let v4 = peer("10.20.30.40", 8333, PeerStatus::Valid, 1);
        let v6 = peer("2001:db8::99", 8333, PeerStatus::Valid, 1);
        let single = peer("192.0.2.7", 8333, PeerStatus::Unknown, 1);
        for p in [&v4, &v6, &single] {
            s.create(p.clone()).await.unwrap();
            let outcome = s
                .ban_ip(
                    p.ip,
                    BanReason::Misbehavior {
                        score: 100,
                        reason: "test".into(),
                    },
                    None,
                    &whitelist,
                )
                .await
                .unwrap();
            assert_eq!(outcome, BanOutcome::Whitelisted);
            assert_eq!(s.read(p.id).await.unwrap(), Some(p.clone()), "unchanged");
            assert!(!s.is_ip_banned(p.ip, 0).await.unwrap());
        }
        assert_eq!(s.count_by_status(PeerStatusKind::Banned).await.unwrap(), 0);
    }

    pub async fn concurrent_creates_and_updates_keep_the_index_consistent<F, Fut>(make: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Fixture>,
    {
        const TASKS: usize = 64;
        const PER_TASK: usize = 4;
        let f = make(10_000).await;
        let shared = ip("10.255.255.255");
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = Arc::clone(&f.store);
            handles.push(tokio::spawn(async move {
                // Every task races for the same address; exactly one may win it.
                let won_shared = s
                    .create(peer("10.255.255.255", 8333, PeerStatus::Unknown, 1))
                    .await
                    .is_ok();
                let mut mine = Vec::new();
                for i in 0..PER_TASK {
                    let mut p = peer(&format!("10.{t}.{i}.1"), 8333, PeerStatus::Unknown, 1);
                    s.create(p.clone()).await.unwrap();
                    p.set_status_at(PeerStatus::Valid, 2);
                    if i % 2 == 0 {
                        // Move half of them, so the address index changes under contention.
                        p.port = 18333;
                    }
                    s.update(p.clone()).await.unwrap();
                    mine.push(p);
                }
                (won_shared, mine)
            }));
        }
        let mut expected = Vec::new();
        let mut winners = 0;
        for h in handles {
            let (won, mine) = h.await.unwrap();
            winners += usize::from(won);
            expected.extend(mine);
        }
        assert_eq!(winners, 1, "exactly one task stores the shared address");

        let s = &*f.store;
        let all = s.list_all().await.unwrap();
        assert_eq!(all.len(), TASKS * PER_TASK + 1);
        assert_eq!(s.count().await.unwrap(), all.len());
        let mut addrs: Vec<_> = all.iter().map(|p| (p.ip, p.port)).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), all.len(), "addresses are unique");
        for p in &expected {
            assert_eq!(s.read(p.id).await.unwrap().as_ref(), Some(p));
            assert_eq!(
                s.find_by_ip_port(p.ip, p.port).await.unwrap().as_ref(),
                Some(p)
            );
            if p.port == 18333 {
                assert_eq!(s.find_by_ip_port(p.ip, 8333).await.unwrap(), None);
            }
        }
        assert!(s.find_by_ip_port(shared, 8333).await.unwrap().is_some());
        assert_eq!(
            s.count_by_status(PeerStatusKind::Valid).await.unwrap(),
            TASKS * PER_TASK
        );
        assert_eq!(s.count_by_status(PeerStatusKind::Unknown).await.unwrap(), 1);
    }
}

/// Runs every check against the store built by `$make` (an `async fn(max_peers) -> Fixture`).
/// With `if ready = $ready`, each test first calls `$ready(test_name)` (a `fn(&str) -> bool`)
/// and returns at once when it says no (a store whose server is not available).
macro_rules! conformance_suite {
    ($suite:ident, $make:path) => {
        conformance_suite!($suite, $make, if ready = always_ready);
    };
    ($suite:ident, $make:path, if ready = $ready:path) => {
        mod $suite {
            use super::*;
            conformance_suite!(@tests $suite, $make, $ready;
                create_read_update_delete,
                banned_peer_round_trips_with_its_reason_and_end,
                duplicate_address_is_refused,
                update_of_missing_peer_is_not_found,
                update_onto_a_taken_address_is_refused_and_onto_a_free_one_moves,
                queries_by_status_and_counts_follow_status_changes,
                find_by_ip_port_matches_the_exact_address,
                ipv6_peers_are_stored_and_found,
                full_store_evicts_oldest_unknown_before_any_inaccessible,
                full_store_evicts_inaccessible_when_no_unknown_is_left,
                full_store_of_valid_and_banned_refuses_new_peers,
                lapsed_bans_return_peers_to_unknown,
                ban_covers_every_port_of_the_ip_and_unban_lifts_it,
                whitelisted_ip_is_never_banned,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_creates_and_updates_keep_the_index_consistent() {
                if !$ready(concat!(stringify!($suite), "::concurrent_creates_and_updates_keep_the_index_consistent")) {
                    return;
                }
                checks::concurrent_creates_and_updates_keep_the_index_consistent($make).await;
            }
        }
    };
    (@tests $suite:ident, $make:path, $ready:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if !$ready(concat!(stringify!($suite), "::", stringify!($check))) {
                    return;
                }
                checks::$check($make).await;
            }
        )*
    };
}

/// Stores that need nothing outside the process always run.
fn always_ready(_test: &str) -> bool {
    true
}

async fn in_memory(max_peers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        InMemoryPeerStore::with_file(dir.path().join("peers.json")).with_max_peers(max_peers);
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

conformance_suite!(in_memory_store, in_memory);

#[cfg(feature = "sqlite")]
async fn sqlite(max_peers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = bitcoinsv::p2p::SqlitePeerStore::open(dir.path().join("peers.db"))
        .unwrap()
        .with_max_peers(max_peers);
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite_store, sqlite);

#[cfg(feature = "postgres")]
mod common;

/// Whether the PostgreSQL server is there (else the test prints `SKIPPED` and passes).
#[cfg(feature = "postgres")]
fn postgres_ready(test: &str) -> bool {
    common::postgres::url_or_skip("store_conformance", test).is_some()
}

/// A store in a fresh schema of its own on the test server (`BSV_TEST_POSTGRES_URL`).
#[cfg(feature = "postgres")]
async fn postgres(max_peers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("BSV_TEST_POSTGRES_URL").expect("checked by postgres_ready");
    let schema = common::postgres::fresh_schema();
    let store = common::postgres::store(&url, &schema, max_peers).await;
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

#[cfg(feature = "postgres")]
conformance_suite!(postgres_store, postgres, if ready = postgres_ready);
