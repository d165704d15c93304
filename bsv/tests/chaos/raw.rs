//! Raw-socket attackers: sockets bound to their own loopback address (127.2.x.y, so each looks
//! like its own host to the listener's per-IP cap and bans), speaking bytes the library's
//! connection would never send.
//!
//! Shared by the chaos suite (`chaos/main.rs`) and the rules suite (`chaos_rules.rs`); each uses
//! part of it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bitcoinsv::bitcoin::{sha256d, Hash, InvType, InvVect, NetAddress, TimestampedNetAddress};
use bitcoinsv::p2p::codec::FrameHeader;
use bitcoinsv::p2p::{Message, MessageCodec, Network, VersionMessage};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// The attacker's own loopback address, number `n`.
pub fn attacker_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 2, (n / 250) as u8, (n % 250 + 1) as u8))
}

/// Connects from `attacker_ip(n)`.
pub async fn connect(n: u32, to: SocketAddr) -> std::io::Result<TcpStream> {
    connect_from(attacker_ip(n), to).await
}

/// Connects from the loopback address `ip` (any 127.x.y.z can be bound on Linux).
pub async fn connect_from(ip: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

fn codec() -> MessageCodec {
    MessageCodec::new(Network::Regtest)
}

/// The bytes of `message`, framed for regtest, whatever its size (an attacker ignores the
/// limits its peer announced).
pub fn frame(message: &Message) -> Vec<u8> {
    let mut codec = codec();
    codec.set_peer_max_recv(u64::MAX);
    codec.encode_to_bytes(message).expect("encodable").to_vec()
}

/// A plausible `version`.
pub fn version(nonce: u64) -> Message {
    Message::Version(VersionMessage {
        version: 70016,
        services: 0,
        timestamp: 0,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce,
        user_agent: "/chaos:0.1/".into(),
        start_height: 0,
        relay: true,
        association_id: None,
    })
}

/// A header declaring `length` bytes of `command`, basic or `extmsg`.
pub fn header(command: &str, length: u64, extended: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameHeader {
        magic: Network::Regtest.magic(),
        command: command.into(),
        length,
        checksum: [0; 4],
        extended,
    }
    .encode(&mut out);
    out.to_vec()
}

/// A regtest frame of `command` around `payload`, with its real checksum: for payloads the
/// codec would never encode (an over-long var int, a truncated message).
pub fn raw_frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let digest = sha256d(payload);
    let mut checksum = [0u8; 4];
    checksum.copy_from_slice(&digest.0[..4]);
    let mut out = BytesMut::new();
    FrameHeader {
        magic: Network::Regtest.magic(),
        command: command.into(),
        length: payload.len() as u64,
        checksum,
        extended: false,
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// A `ping` frame whose checksum is wrong (the first four bytes of the payload's double
/// SHA-256, plus one).
pub fn bad_checksum_frame() -> Vec<u8> {
    let mut f = raw_frame("ping", &[0u8; 8]);
    // The checksum is bytes 20..24 of the header.
    f[20] = f[20].wrapping_add(1);
    f
}

/// An `inv` of `n` transaction hashes.
pub fn inv(n: usize, salt: u8) -> Message {
    Message::Inv(
        (0..n)
            .map(|i| {
                let mut h = [salt; 32];
                h[..8].copy_from_slice(&(i as u64).to_le_bytes());
                InvVect {
                    inv_type: InvType::Tx,
                    hash: Hash(h),
                }
            })
            .collect(),
    )
}

/// An `addr` of `n` routable-looking addresses, seen now.
pub fn addr(n: usize, salt: u8) -> Message {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    Message::Addr(
        (0..n)
            .map(|i| TimestampedNetAddress {
                time: now,
                addr: NetAddress {
                    services: 1,
                    ip: IpAddr::V4(Ipv4Addr::new(
                        127,
                        3 + salt,
                        (i / 250) as u8,
                        (i % 250) as u8,
                    )),
                    port: 18444,
                },
            })
            .collect(),
    )
}

/// Sends `version`, waits for the listener's `verack` and answers with ours: a completed
/// handshake on a raw socket. Other messages of the handshake are read and ignored.
pub async fn handshake(stream: &mut TcpStream, nonce: u64) -> std::io::Result<()> {
    stream.write_all(&frame(&version(nonce))).await?;
    let mut codec = codec();
    let mut buf = BytesMut::new();
    let mut got_verack = false;
    let mut got_version = false;
    timeout(Duration::from_secs(10), async {
        while !(got_verack && got_version) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(m) = codec.decode(&mut buf).map_err(std::io::Error::other)? {
                match m {
                    Message::Verack => got_verack = true,
                    Message::Version(_) => got_version = true,
                    _ => {}
                }
            }
        }
        stream.write_all(&frame(&Message::Verack)).await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Reads and discards until the listener closes the socket or `within` passes; `true` when it
/// was closed (EOF or reset).
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    timeout(within, async {
        let mut chunk = [0u8; 65536];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}
