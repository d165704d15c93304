//! # bitcoinsv
//!
//! A library that connects applications to the Bitcoin SV peer-to-peer network.
//!
//! The crate is split in two layers:
//!
//! * [`bitcoin`]: the wire primitives every Bitcoin SV message is built from (hashes,
//!   compact-size integers, block headers, transactions, blocks, network parameters). These are
//!   pure data types with a strict, panic-free decoder and a canonical encoder.
//! * [`p2p`]: the peer-to-peer layer: the message catalogue and its framing codec, peers and
//!   peer stores, one actor per connection, and the [`p2p::Manager`] that keeps a pool of them.
//!
//! Everything an application needs is re-exported from [`p2p`], for example
//! `use bitcoinsv::p2p::{Message, Network};`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bitcoin;
pub mod p2p;

/// The README's and the guide's code, compiled as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[doc = include_str!("../../docs/GUIDE.md")]
pub struct DocumentationExamples;
