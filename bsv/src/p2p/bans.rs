//! Ban rules that do not depend on a connection: user-agent patterns that mark peers of other
//! chains, and the whitelist of addresses that are never banned.
//!
//! BCH nodes share BSV mainnet's wire magic, so the node recognises them by user agent: any
//! `-banclientua` pattern contained, case-insensitively, in the peer's user agent bans it
//! (docs/PROTOCOL.md §6, default `abc`, `cash`, `bch`). We match the same way and also accept `*`
//! wildcard patterns (`Bitcoin ABC*`, `*abc*`), which are matched against the whole user agent.
//! The whitelist mirrors the node's `-whitelist`: IPs and CIDR ranges, IPv4 and IPv6, exempt from
//! every ban.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{P2pError, Result};

/// The node's default user-agent ban patterns (`DEFAULT_CLIENTUA_BAN_PATTERNS`, docs/PROTOCOL.md §6).
pub const DEFAULT_BANNED_USER_AGENTS: [&str; 3] = ["abc", "cash", "bch"];

/// The longest user agent the node reads (`MAX_SUBVERSION_LENGTH`); a longer pattern could never
/// match, and a longer user agent of ours would be refused.
pub const MAX_USER_AGENT_LENGTH: usize = crate::p2p::limits::MAX_SUBVERSION_LENGTH;

/// One user-agent ban pattern.
///
/// Without `*` it matches any user agent that contains it; with `*` it matches a whole user agent
/// where each `*` stands for any run of characters. Both are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentPattern {
    source: String,
    lowered: String,
}

impl UserAgentPattern {
    /// Parses a pattern, refusing ones that are empty, would match every user agent, or are
    /// longer than any user agent can be.
    pub fn parse(pattern: &str) -> Result<Self> {
        let invalid = |why: &str| {
            P2pError::InvalidConfiguration(format!("banned_user_agents: pattern {pattern:?} {why}"))
        };
        if pattern.trim().is_empty() {
            return Err(invalid("is empty and would ban every peer"));
        }
        if pattern.chars().all(|c| c == '*') {
            return Err(invalid("matches every user agent"));
        }
        if pattern.replace('*', "").len() > MAX_USER_AGENT_LENGTH {
            return Err(invalid(&format!(
                "is longer than {MAX_USER_AGENT_LENGTH} bytes, the longest user agent, and can \
                 never match"
            )));
        }
        Ok(UserAgentPattern {
            source: pattern.to_string(),
            lowered: pattern.to_lowercase(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `user_agent` matches this pattern.
    pub fn matches(&self, user_agent: &str) -> bool {
        self.matches_lowered(&user_agent.to_lowercase())
    }

    fn matches_lowered(&self, ua: &str) -> bool {
        if !self.lowered.contains('*') {
            return ua.contains(self.lowered.as_str());
        }
        // Split at the stars: the first piece anchors the start, the last the end, and the middle
        // pieces must appear in order in between. Taking the leftmost occurrence of each middle
        // piece leaves the most room for the rest, so this never misses a match.
        let pieces: Vec<&str> = self.lowered.split('*').collect();
        let (first, last) = match (pieces.first(), pieces.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => return false,
        };
        let Some(mut rest) = ua.strip_prefix(first) else {
            return false;
        };
        let middle = pieces.get(1..pieces.len().saturating_sub(1)).unwrap_or(&[]);
        for piece in middle {
            match rest.find(piece).and_then(|i| rest.get(i + piece.len()..)) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

impl fmt::Display for UserAgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A set of user-agent ban patterns; a user agent matching any of them is banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentBanList {
    patterns: Vec<UserAgentPattern>,
}

impl UserAgentBanList {
    /// Parses every pattern, failing on the first invalid one.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let patterns = patterns
            .iter()
            .map(|p| UserAgentPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(UserAgentBanList { patterns })
    }

    /// The first pattern `user_agent` matches, if any.
    pub fn matching_pattern(&self, user_agent: &str) -> Option<&UserAgentPattern> {
        let ua = user_agent.to_lowercase();
        self.patterns.iter().find(|p| p.matches_lowered(&ua))
    }

    /// Whether `user_agent` matches any pattern.
    pub fn is_banned(&self, user_agent: &str) -> bool {
        self.matching_pattern(user_agent).is_some()
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[UserAgentPattern] {
        &self.patterns
    }
}

impl Default for UserAgentBanList {
    /// The node's defaults: `abc`, `cash`, `bch`.
    fn default() -> Self {
        UserAgentBanList {
            patterns: DEFAULT_BANNED_USER_AGENTS
                .iter()
                .map(|p| UserAgentPattern {
                    source: p.to_string(),
                    lowered: p.to_string(),
                })
                .collect(),
        }
    }
}

/// Addresses that are never banned: single IPs and CIDR ranges, IPv4 and IPv6.
///
/// In configuration files it is a list of strings such as `["10.0.0.5", "192.168.0.0/16",
/// "2001:db8::/32"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whitelist {
    entries: Vec<IpNet>,
}

impl Whitelist {
    /// An empty whitelist.
    pub fn new() -> Self {
        Whitelist::default()
    }

    /// Parses a list of IPs and CIDR ranges, failing with the first entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let mut list = Whitelist::new();
        for entry in entries {
            list.add(entry.as_ref())?;
        }
        Ok(list)
    }

    /// Adds one IP (`10.0.0.5`, `::1`) or CIDR range (`10.0.0.0/8`, `2001:db8::/32`).
    pub fn add(&mut self, entry: &str) -> Result<()> {
        self.entries.push(parse_entry(entry)?);
        Ok(())
    }

    /// Whether `ip` is whitelisted. An IPv4-mapped IPv6 address matches its IPv4 entries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.entries.iter().any(|net| net.contains(&ip))
    }

    /// Whether the whitelist is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, single IPs as host ranges (`/32`, `/128`).
    pub fn entries(&self) -> &[IpNet] {
        &self.entries
    }
}

fn parse_entry(entry: &str) -> Result<IpNet> {
    let entry = entry.trim();
    let parsed = if entry.contains('/') {
        IpNet::from_str(entry).ok()
    } else {
        IpAddr::from_str(entry).ok().map(IpNet::from)
    };
    parsed.ok_or_else(|| {
        P2pError::InvalidConfiguration(format!(
            "whitelist: entry {entry:?} is neither an IP address nor a CIDR range"
        ))
    })
}

fn entry_to_string(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

impl Serialize for Whitelist {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries.iter().map(entry_to_string))
    }
}

impl<'de> Deserialize<'de> for Whitelist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Whitelist::parse(&entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> UserAgentPattern {
        UserAgentPattern::parse(p).unwrap()
    }

    #[test]
    fn default_list_bans_bch_clients_case_insensitively() {
        let list = UserAgentBanList::default();
        assert!(list.is_banned("/Bitcoin ABC:0.22.0(EB32.0)/"));
        assert!(list.is_banned("/Bitcoin Cash Node:24.0.0(EB32.0)/"));
        assert!(list.is_banned("/BCHD:0.19.0/"));
        assert!(list.is_banned("/cashier:1.0/"), "substring, as the node");
        assert!(!list.is_banned("/Bitcoin SV:1.2.0/"));
        assert!(!list.is_banned("/bitcoinsv-rs:0.1.0/"));
        assert_eq!(
            list.matching_pattern("/Bitcoin Cash Node/")
                .map(|p| p.as_str()),
            Some("cash")
        );
    }

    #[test]
    fn wildcard_patterns_match_the_whole_user_agent() {
        assert!(pattern("*abc*").matches("/Bitcoin ABC:0.22/"));
        assert!(pattern("Bitcoin ABC*").matches("bitcoin abc:0.22"));
        assert!(!pattern("Bitcoin ABC*").matches("/Bitcoin ABC:0.22/"));
        assert!(pattern("/*:0.1*/").matches("/Foo:0.1.3/"));
        assert!(!pattern("/*:0.1*/").matches("/Foo:0.2.3/"));
        assert!(pattern("*sv").matches("/bitcoin SV"));
        assert!(!pattern("a*a").matches("a"), "pieces may not overlap");
        assert!(pattern("a*a").matches("aa"));
        assert!(pattern("**x**").matches("..X.."));
        assert!(pattern("*ä*").matches("/Ä/"));
    }

    #[test]
    fn unparseable_patterns_are_refused_with_the_reason() {
        for (p, why) in [
            ("", "is empty"),
            ("   ", "is empty"),
            ("*", "matches every user agent"),
            ("***", "matches every user agent"),
        ] {
            let err = UserAgentPattern::parse(p).unwrap_err().to_string();
            assert!(err.contains(why), "{p:?}: {err}");
        }
        let long = "x".repeat(MAX_USER_AGENT_LENGTH + 1);
        assert!(UserAgentPattern::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("can never match"));
        assert!(UserAgentBanList::parse(&["abc", ""]).is_err());
    }

    #[test]
    fn whitelist_matches_ips_and_cidr_ranges_of_both_families() {
        let list =
            Whitelist::parse(&["10.0.0.5", "192.168.0.0/16", "2001:db8::/32", "::1"]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(list.contains(ip("10.0.0.5")));
        assert!(!list.contains(ip("10.0.0.6")));
        assert!(list.contains(ip("192.168.255.1")));
        assert!(!list.contains(ip("192.169.0.1")));
        assert!(list.contains(ip("2001:db8:1::7")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("::ffff:192.168.1.1")), "IPv4-mapped");
        assert!(!Whitelist::new().contains(ip("10.0.0.5")));
    }

    #[test]
    fn whitelist_refuses_bad_entries() {
        for bad in ["10.0.0", "10.0.0.0/33", "example.com", "", "::1/129"] {
            let err = Whitelist::parse(&[bad]).unwrap_err().to_string();
            assert!(
                err.contains("neither an IP address nor a CIDR range"),
                "{err}"
            );
        }
    }

    #[test]
    fn whitelist_serializes_as_strings() {
        let list = Whitelist::parse(&["10.0.0.5", "10.1.0.0/16", "2001:db8::/32"]).unwrap();
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"["10.0.0.5","10.1.0.0/16","2001:db8::/32"]"#);
        assert_eq!(serde_json::from_str::<Whitelist>(&json).unwrap(), list);
        assert!(serde_json::from_str::<Whitelist>(r#"["nope"]"#).is_err());
    }
}
