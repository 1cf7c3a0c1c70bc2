//! Socket addresses packed for the connection table: 20 bytes instead of `SocketAddr`'s 32
//! (an IPv4 address in the first 4 of 16 bytes, the port, the family). Connections keep them
//! packed and hand out `SocketAddr`s; flow info and scope id are not kept (the kernel's views
//! of a TCP socket carry neither: decoding and sock_diag leave them 0).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct PackedAddr {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl PackedAddr {
    pub fn get(self) -> SocketAddr {
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            let [a, b, c, d, ..] = self.ip;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        };
        SocketAddr::new(ip, self.port)
    }
    pub fn port(self) -> u16 {
        self.port
    }
}

impl From<SocketAddr> for PackedAddr {
    fn from(addr: SocketAddr) -> Self {
        let mut ip = [0; 16];
        let v6 = match addr.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        PackedAddr {
            ip,
            port: addr.port(),
            v6,
        }
    }
}

impl PartialEq<SocketAddr> for PackedAddr {
    fn eq(&self, other: &SocketAddr) -> bool {
        *self == PackedAddr::from(*other)
    }
}

impl std::fmt::Debug for PackedAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Written and read as the `SocketAddr` it is.
impl Serialize for PackedAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PackedAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SocketAddr::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_addresses_round_trip() {
        for s in [
            "10.0.0.1:80",
            "0.0.0.0:0",
            "[::1]:443",
            "[::ffff:10.0.0.1]:80",
            "[2001:db8::7]:65535",
        ] {
            let addr: SocketAddr = s.parse().unwrap();
            let packed = PackedAddr::from(addr);
            assert_eq!(packed.get(), addr);
            assert_eq!(packed, addr);
            assert_eq!(
                serde_json::to_string(&packed).unwrap(),
                serde_json::to_string(&addr).unwrap()
            );
        }
        // An IPv4 address and its IPv6-mapped form stay two addresses, as SocketAddrs are.
        assert_ne!(
            PackedAddr::from("10.0.0.1:80".parse::<SocketAddr>().unwrap()),
            PackedAddr::from("[::ffff:10.0.0.1]:80".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(std::mem::size_of::<PackedAddr>(), 20);
    }
}
