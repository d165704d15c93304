//! Network parameters: wire magic, default port, DNS seeds and genesis hash of every Bitcoin SV
//! network, as `src/chainparams.cpp` of the node defines them (docs/PROTOCOL.md §4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Hash;

/// One of the Bitcoin SV networks a peer can belong to.
///
/// The wire magic of a frame tells which network it belongs to; see [`Network::from_magic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The production network.
    #[default]
    Mainnet,
    /// The public test network.
    Testnet,
    /// A private regression-test network (no DNS seeds, trivial proof of work).
    Regtest,
    /// The Scaling Test Network.
    Stn,
}

/// Magic bytes that start every frame on a network, in wire order.
pub type Magic = [u8; 4];

impl Network {
    /// Every network, in a fixed order.
    pub const ALL: [Network; 4] = [
        Network::Mainnet,
        Network::Testnet,
        Network::Regtest,
        Network::Stn,
    ];

    /// The four bytes that start every frame of this network ("message start").
    ///
    /// Mainnet's wire magic `e3e1f3e8` is shared with BCH; BTC's `f9beb4d9` is BSV's *disk*
    /// magic and never appears on the BSV wire.
    pub const fn magic(self) -> Magic {
        match self {
            Network::Mainnet => [0xe3, 0xe1, 0xf3, 0xe8],
            Network::Testnet => [0xf4, 0xe5, 0xf3, 0xf4],
            Network::Regtest => [0xda, 0xb5, 0xbf, 0xfa],
            Network::Stn => [0xfb, 0xce, 0xc4, 0xf9],
        }
    }

    /// The network whose wire magic is `magic`, or `None` for a magic no BSV network uses
    /// (for example BTC's `f9beb4d9`).
    pub fn from_magic(magic: Magic) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.magic() == magic)
    }

    /// The TCP port nodes of this network listen on by default.
    pub const fn default_port(self) -> u16 {
        match self {
            Network::Mainnet => 8333,
            Network::Testnet => 18333,
            Network::Regtest => 18444,
            Network::Stn => 9333,
        }
    }

    /// Host names whose DNS A/AAAA records list reachable nodes of this network.
    pub fn dns_seeds(self) -> &'static [&'static str] {
        match self {
            Network::Mainnet => &[
                "seed.bitcoinsv.io",
                "seed.satoshisvision.network",
                "seed.bitcoinseed.directory",
            ],
            Network::Testnet => &[
                "testnet-seed.bitcoinsv.io",
                "testnet-seed.bitcoincloud.net",
                "testnet-seed.bitcoinseed.directory",
            ],
            Network::Regtest => &[],
            Network::Stn => &["stn-seed.bitcoinsv.io", "stn-seed.bitcoinseed.directory"],
        }
    }

    /// The hash of the network's first block.
    pub fn genesis_hash(self) -> Hash {
        let hex = match self {
            Network::Mainnet => "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
            Network::Testnet | Network::Stn => {
                "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"
            }
            Network::Regtest => "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
        };
        // The literals above are well-formed; a failure here is a typo caught by the unit test.
        hex.parse().unwrap_or(Hash::ZERO)
    }

    /// The network's first block header (`CreateGenesisBlock` in `src/chainparams.cpp`): the
    /// same coinbase, hence merkle root, everywhere; time, bits and nonce differ. Testnet and
    /// STN share it.
    pub fn genesis_header(self) -> super::BlockHeader {
        // The merkle root of the genesis coinbase, in internal byte order.
        const MERKLE_ROOT: [u8; 32] = [
            0x3b, 0xa3, 0xed, 0xfd, 0x7a, 0x7b, 0x12, 0xb2, 0x7a, 0xc7, 0x2c, 0x3e, 0x67, 0x76,
            0x8f, 0x61, 0x7f, 0xc8, 0x1b, 0xc3, 0x88, 0x8a, 0x51, 0x32, 0x3a, 0x9f, 0xb8, 0xaa,
            0x4b, 0x1e, 0x5e, 0x4a,
        ];
        let (time, bits, nonce) = match self {
            Network::Mainnet => (1_231_006_505, 0x1d00_ffff, 2_083_236_893),
            Network::Testnet | Network::Stn => (1_296_688_602, 0x1d00_ffff, 414_098_458),
            Network::Regtest => (1_296_688_602, 0x207f_ffff, 2),
        };
        super::BlockHeader {
            version: 1,
            prev_hash: Hash::ZERO,
            merkle_root: Hash(MERKLE_ROOT),
            time,
            bits,
            nonce,
        }
    }

    /// The name used on the command line and in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Regtest => "regtest",
            Network::Stn => "stn",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error returned when a network name is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected mainnet, testnet, regtest or stn")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mainnet" | "main" => Ok(Network::Mainnet),
            "testnet" | "test" => Ok(Network::Testnet),
            "regtest" => Ok(Network::Regtest),
            "stn" => Ok(Network::Stn),
            _ => Err(UnknownNetwork(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_identifies_each_network_and_nothing_else() {
        for n in Network::ALL {
            assert_eq!(Network::from_magic(n.magic()), Some(n));
        }
        assert_eq!(Network::from_magic([0xf9, 0xbe, 0xb4, 0xd9]), None);
    }

    #[test]
    fn genesis_hashes_parse() {
        for n in Network::ALL {
            assert_ne!(n.genesis_hash(), Hash::ZERO, "{n}");
        }
        assert_eq!(Network::Stn.genesis_hash(), Network::Testnet.genesis_hash());
    }

    #[test]
    fn genesis_headers_hash_to_the_genesis_hashes() {
        for n in Network::ALL {
            let g = n.genesis_header();
            assert_eq!(g.hash(), n.genesis_hash(), "{n}");
            assert!(g.check_proof_of_work(), "{n}");
        }
    }

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.to_string().parse::<Network>(), Ok(n));
        }
        assert!("bch".parse::<Network>().is_err());
    }
}
