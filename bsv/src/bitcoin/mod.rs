//! Wire primitives of Bitcoin SV: hashes, compact-size integers, block headers, transactions,
//! blocks, inventory vectors, network addresses, block locators, TSC merkle proofs, and the
//! parameters of each network.
//!
//! Every type implements [`Encode`] and [`Decode`]: encoding is canonical and infallible;
//! decoding is strict (canonical var ints, no value over 0xFFFFFFFF), bounds-checked, and returns
//! a [`DecodeError`] with the offset of the problem instead of panicking.

mod block;
mod encode;
mod hash;
mod header;
mod inventory;
mod locator;
mod merkle_proof;
mod netaddr;
mod network;
pub mod serde_hex;
mod transaction;

pub use block::{merkle_root, Block, BlockError, MerkleAccumulator};
pub use encode::{
    list_len, var_bytes_len, write_list, write_var_bytes, write_var_int, Decode, DecodeError,
    Encode, Reader, VarInt, MAX_VAR_INT,
};
pub use hash::{sha256d, sha256d_64, sha256d_pair, Hash, ParseHashError};
pub use header::{BlockHeader, HEADER_SIZE};
pub use inventory::{InvType, InvVect, INV_VECT_SIZE};
pub use locator::BlockLocator;
pub use merkle_proof::{MerkleProof, MerkleProofTarget, MerkleProofTx};
pub use netaddr::{
    NetAddress, TimestampedNetAddress, NET_ADDRESS_SIZE, TIMESTAMPED_NET_ADDRESS_SIZE,
};
pub use network::{Magic, Network, UnknownNetwork};
pub use transaction::{OutPoint, Transaction, TxIn, TxOut};
