//! Network addresses: 26 bytes inside `version` (no time), 30 bytes inside `addr` (with time).
//! IPv4 addresses travel as IPv4-mapped IPv6 (`::ffff:a.b.c.d`); the port is big-endian.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bytes::BufMut;
use serde::Serialize;

use super::{Decode, DecodeError, Encode, Reader};

/// Size of a network address without time.
pub const NET_ADDRESS_SIZE: usize = 26;
/// Size of a network address with time (inside `addr`).
pub const TIMESTAMPED_NET_ADDRESS_SIZE: usize = 30;

/// A network address as carried in `version` (services, IP, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct NetAddress {
    /// Service bits the address is believed to offer.
    pub services: u64,
    /// The IP address; IPv4-mapped addresses are shown as IPv4.
    pub ip: IpAddr,
    /// The TCP port.
    pub port: u16,
}

impl NetAddress {
    /// The all-zero address (`[::]:0`) the node sends as `addr_from`.
    pub const UNSPECIFIED: NetAddress = NetAddress {
        services: 0,
        ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        port: 0,
    };

    /// An address for a socket address with the given services.
    pub fn new(addr: SocketAddr, services: u64) -> Self {
        NetAddress {
            services,
            ip: addr.ip(),
            port: addr.port(),
        }
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    fn ipv6_bytes(&self) -> [u8; 16] {
        match self.ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

impl Encode for NetAddress {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u64_le(self.services);
        out.put_slice(&self.ipv6_bytes());
        out.put_u16(self.port);
    }
    fn encoded_len(&self) -> usize {
        NET_ADDRESS_SIZE
    }
}

impl Decode for NetAddress {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let services = r.read_u64_le()?;
        let v6 = Ipv6Addr::from(r.read_array::<16>()?);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        let port = r.read_u16_be()?;
        Ok(NetAddress { services, ip, port })
    }
}

/// A network address with the time it was last seen, as carried in `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TimestampedNetAddress {
    /// Unix seconds when the address was last seen.
    pub time: u32,
    /// The address.
    #[serde(flatten)]
    pub addr: NetAddress,
}

impl Encode for TimestampedNetAddress {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.time);
        self.addr.encode(out);
    }
    fn encoded_len(&self) -> usize {
        TIMESTAMPED_NET_ADDRESS_SIZE
    }
}

impl Decode for TimestampedNetAddress {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TimestampedNetAddress {
            time: r.read_u32_le()?,
            addr: r.read()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_mapped_into_ipv6_and_port_is_big_endian() {
        let a = NetAddress::new("127.0.0.1:8333".parse().unwrap(), 1);
        let b = a.to_vec();
        assert_eq!(b.len(), NET_ADDRESS_SIZE);
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
        );
        assert_eq!(&b[24..], &[0x20, 0x8d]);
        assert_eq!(NetAddress::decode_exact(&b), Ok(a));
    }

    #[test]
    fn ipv6_round_trips() {
        let a = NetAddress::new("[2001:db8::1]:18333".parse().unwrap(), 0x21);
        assert_eq!(NetAddress::decode_exact(&a.to_vec()), Ok(a));
    }
}
