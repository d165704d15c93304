//! The peer-to-peer layer.
//!
//! * [`messages`]: every command of the bitcoin-sv 1.2.2 node as a typed [`Message`].
//! * [`codec`]: framing with the node's limits, usable with or without tokio.
//! * [`limits`]: every protocol constant, with the node constant it mirrors.

pub mod codec;
pub mod connection;
pub mod limits;
pub mod messages;

pub use crate::bitcoin::Network;
pub use codec::{CodecError, MessageCodec, RawFrame, RecvLimits};
pub use messages::{Message, Reject, RejectCode, VersionMessage};
