//! # bitcoinsv
//!
//! A library that connects applications to the Bitcoin SV peer-to-peer network.
//!
//! The crate is split in two layers:
//!
//! * [`bitcoin`]: the wire primitives every Bitcoin SV message is built from (hashes,
//!   compact-size integers, block headers, transactions, blocks, network parameters). These are
//!   pure data types with a strict, panic-free decoder and a canonical encoder.
//! * [`p2p`]: the peer-to-peer layer: the message catalogue and its framing codec, and (in later
//!   modules) peers, the peer store, connections and the connection manager.
//!
//! Everything an application needs is re-exported from [`p2p`], for example
//! `use bitcoinsv::p2p::{Message, Network};`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bitcoin;
pub mod p2p;
