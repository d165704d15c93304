//! A real DNS server on loopback (`hickory-server` in process, UDP and TCP on one port),
//! authoritative for `test.`, serving the A/AAAA records a test gives it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

/// A running server; it stops when dropped.
pub struct Dns {
    /// Where it answers.
    pub addr: SocketAddr,
    _server: Server<Catalog>,
}

/// Starts a server answering `records` (`name.test.` → addresses); other names are NXDOMAIN.
pub async fn start(records: &[(&str, Vec<IpAddr>)]) -> Dns {
    let origin = Name::from_ascii("test.").unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_ascii("ns.test.").unwrap(),
        Name::from_ascii("hostmaster.test.").unwrap(),
        1,
        3600,
        600,
        86_400,
        60,
    );
    assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1));
    for (name, ips) in records {
        let name = Name::from_ascii(name).unwrap();
        for ip in ips {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::from(*v4),
                IpAddr::V6(v6) => RData::from(*v6),
            };
            assert!(zone.upsert_mut(Record::from_rdata(name.clone(), 60, rdata), 1));
        }
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    let mut server = Server::new(catalog);
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 16);
            return Dns {
                addr,
                _server: server,
            };
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}
