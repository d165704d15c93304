//! The relay cache: transactions we broadcast, kept to answer peers' `getdata` for 15 minutes
//! (the node's relay memory, `SendTxnInventory` in `src/net/net_processing.cpp`) and bounded in
//! bytes (oldest evicted first), so broadcasting many transactions cannot grow memory without
//! bound.

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

use crate::bitcoin::{Hash, Transaction};
use crate::p2p::limits::TX_RELAY_MEMORY;

/// Broadcast transactions, by txid, with their expiry.
#[derive(Debug)]
pub(crate) struct RelayCache {
    entries: HashMap<Hash, (Transaction, Instant)>,
    order: VecDeque<Hash>,
    bytes: usize,
    max_bytes: usize,
}

impl RelayCache {
    /// An empty cache holding at most `max_bytes` of transactions.
    pub(crate) fn new(max_bytes: usize) -> Self {
        RelayCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Keeps `tx` until [`TX_RELAY_MEMORY`] after `now`, evicting the oldest entries to make
    /// room. A transaction larger than the whole cache is not kept (then it can only be pushed).
    pub(crate) fn insert(&mut self, tx: Transaction, now: Instant) -> bool {
        let txid = tx.txid();
        let size = tx.size();
        if size > self.max_bytes {
            return false;
        }
        self.remove(&txid);
        while self.bytes + size > self.max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.remove(&old);
        }
        self.bytes += size;
        self.order.push_back(txid);
        self.entries.insert(txid, (tx, now + TX_RELAY_MEMORY));
        true
    }

    /// The transaction `txid`, if kept and not expired.
    pub(crate) fn get(&self, txid: &Hash, now: Instant) -> Option<&Transaction> {
        self.entries
            .get(txid)
            .filter(|(_, expires)| *expires > now)
            .map(|(tx, _)| tx)
    }

    /// Drops expired entries.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(first) = self.order.front().copied() {
            match self.entries.get(&first) {
                Some((_, expires)) if *expires > now => break,
                _ => {
                    self.order.pop_front();
                    self.remove(&first);
                }
            }
        }
    }

    fn remove(&mut self, txid: &Hash) {
        if let Some((tx, _)) = self.entries.remove(txid) {
            self.bytes = self.bytes.saturating_sub(tx.size());
            self.order.retain(|h| h != txid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::{OutPoint, TxIn, TxOut};

    fn tx(n: u32) -> Transaction {
        Transaction::new(
            1,
            vec![TxIn {
                prevout: OutPoint {
                    txid: Hash::default(),
                    vout: n,
                },
                script_sig: vec![0; 10].into(),
                sequence: 0xffff_ffff,
            }],
            vec![TxOut {
                value: 1,
                script_pubkey: vec![0x51].into(),
            }],
            0,
        )
    }

    #[test]
    fn the_oldest_transactions_are_evicted_to_stay_within_the_byte_bound() {
        let size = tx(0).size();
        let now = Instant::now();
        let mut c = RelayCache::new(size * 2);
        for n in 0..3 {
            assert!(c.insert(tx(n), now));
        }
        assert!(c.get(&tx(0).txid(), now).is_none());
        assert!(c.get(&tx(1).txid(), now).is_some());
        assert!(c.get(&tx(2).txid(), now).is_some());
    }

    #[test]
    fn entries_expire_after_the_relay_memory() {
        let now = Instant::now();
        let mut c = RelayCache::new(1 << 20);
        c.insert(tx(0), now);
        assert!(c.get(&tx(0).txid(), now + TX_RELAY_MEMORY).is_none());
        c.expire(now + TX_RELAY_MEMORY);
        assert_eq!(c.bytes, 0);
    }
}
