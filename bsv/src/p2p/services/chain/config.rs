//! The header chain's settings (`[header_chain]` in a configuration file) and the trusted
//! checkpoint it may start from.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bitcoin::{BlockHeader, Decode, Encode, Reader, HEADER_SIZE};
use crate::p2p::limits::DEFAULT_HEADER_SYNC_TIMEOUT;

/// Settings of the header chain (`[header_chain]` in a configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderChainConfig {
    /// Follow the chain from the manager's start. Off by default: the chain then starts
    /// following when `Manager::header_chain` is first called (until then it ignores `headers`
    /// and block `inv`s, so peers are not scored against a chain that has not synced).
    pub enabled: bool,
    /// How long the sync peer may take to answer a `getheaders` before another peer is asked.
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
    /// Where to keep the headers between runs (an append-only file of 80-byte headers); none
    /// by default (every run downloads the chain again).
    pub store_path: Option<PathBuf>,
    /// Start from this trusted header instead of genesis (headers before it are never
    /// fetched; cumulative work counts from it).
    pub checkpoint: Option<Checkpoint>,
}

impl Default for HeaderChainConfig {
    fn default() -> Self {
        HeaderChainConfig {
            enabled: false,
            sync_timeout: DEFAULT_HEADER_SYNC_TIMEOUT,
            store_path: None,
            checkpoint: None,
        }
    }
}

impl HeaderChainConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.sync_timeout.is_zero() {
            return Err("header_chain.sync_timeout must be above zero".into());
        }
        if let Some(c) = &self.checkpoint {
            if c.header.target().is_none() {
                return Err("header_chain.checkpoint.header has invalid bits".into());
            }
        }
        Ok(())
    }
}

/// A header trusted without checking its ancestors: the chain starts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Its height.
    pub height: u32,
    /// The header (160 hex digits of its 80 serialized bytes in a configuration file).
    #[serde(serialize_with = "header_hex", deserialize_with = "header_from_hex")]
    pub header: BlockHeader,
}

fn header_hex<S: Serializer>(h: &BlockHeader, s: S) -> std::result::Result<S::Ok, S::Error> {
    let mut b = [0u8; HEADER_SIZE];
    h.encode(&mut &mut b[..]);
    s.serialize_str(&hex::encode(b))
}

fn header_from_hex<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<BlockHeader, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = hex::decode(text.trim()).map_err(serde::de::Error::custom)?;
    if bytes.len() != HEADER_SIZE {
        return Err(serde::de::Error::custom(format!(
            "a header is {HEADER_SIZE} bytes, not {}",
            bytes.len()
        )));
    }
    BlockHeader::decode(&mut Reader::new(&bytes)).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::Network;

    #[test]
    fn checkpoint_header_round_trips_as_hex() {
        let c = HeaderChainConfig {
            checkpoint: Some(Checkpoint {
                height: 0,
                header: Network::Mainnet.genesis_header(),
            }),
            ..HeaderChainConfig::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("header = \"0100000000000000"), "{text}");
        let back: HeaderChainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert!(
            toml::from_str::<HeaderChainConfig>("[checkpoint]\nheight = 1\nheader = \"00\"")
                .is_err()
        );
    }

    #[test]
    fn zero_sync_timeout_is_refused() {
        let c = HeaderChainConfig {
            sync_timeout: Duration::ZERO,
            ..HeaderChainConfig::default()
        };
        assert!(c.check().is_err());
    }
}
