//! Socket addresses packed for the connection table: 20 bytes instead of `SocketAddr`'s 32
//! (an IPv4 address in the first 4 of 16 bytes, the port, the family). Connections keep them
//! packed and hand out `SocketAddr`s; flow info and scope id are not kept (the kernel's views
//! of a TCP socket carry neither: decoding and sock_diag leave them 0). A connection keeps its
//! two ends in 16 bytes when both are IPv4 ([`Ends`]).
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

/// A connection's two ends, packed: 16 bytes where both are IPv4 or IPv4-mapped IPv6 (what a
/// dual-stack listener on `[::]` reports for IPv4 clients): the addresses, the ports and which
/// end is mapped inline; else a pointer to the pair (40 bytes of the heap). Only [`Ends::new`]
/// builds one (inline whenever both ends fit), so equal pairs compare equal. Written and read as
/// the `local` and `remote` fields of the connection, as before it was packed.
#[derive(Clone, PartialEq)]
pub struct Ends(Packed);

#[derive(Clone, PartialEq)]
enum Packed {
    /// `mapped`: bit 0 the local end, bit 1 the remote one, is `::ffff:a.b.c.d`.
    V4 {
        ips: [[u8; 4]; 2],
        ports: [u16; 2],
        mapped: u8,
    },
    Wide(Box<[PackedAddr; 2]>),
}

const MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Ends {
    pub fn new(local: PackedAddr, remote: PackedAddr) -> Ends {
        // (the IPv4 address, mapped) of an end that fits inline.
        let v4 = |a: PackedAddr| {
            let ip = [a.ip[12], a.ip[13], a.ip[14], a.ip[15]];
            match a.v6 {
                false => Some(([a.ip[0], a.ip[1], a.ip[2], a.ip[3]], false)),
                true if a.ip[..12] == MAPPED_PREFIX => Some((ip, true)),
                true => None,
            }
        };
        match (v4(local), v4(remote)) {
            (Some((l, l_mapped)), Some((r, r_mapped))) => Ends(Packed::V4 {
                ips: [l, r],
                ports: [local.port, remote.port],
                mapped: u8::from(l_mapped) | u8::from(r_mapped) << 1,
            }),
            _ => Ends(Packed::Wide(Box::new([local, remote]))),
        }
    }
    fn end(&self, i: usize) -> PackedAddr {
        match &self.0 {
            Packed::V4 { ips, ports, mapped } => {
                let mut ip = [0; 16];
                let v6 = mapped >> i & 1 == 1;
                if v6 {
                    ip[..12].copy_from_slice(&MAPPED_PREFIX);
                    ip[12..].copy_from_slice(&ips[i]);
                } else {
                    ip[..4].copy_from_slice(&ips[i]);
                }
                PackedAddr { ip, port: ports[i], v6 }
            }
            Packed::Wide(pair) => pair[i],
        }
    }
    /// Both ends inline (no allocation of their own).
    #[cfg(test)]
    fn inline(&self) -> bool {
        matches!(self.0, Packed::V4 { .. })
    }
    pub fn local(&self) -> PackedAddr {
        self.end(0)
    }
    pub fn remote(&self) -> PackedAddr {
        self.end(1)
    }
    pub fn set_local(&mut self, local: PackedAddr) {
        *self = Ends::new(local, self.remote());
    }
    pub fn set_remote(&mut self, remote: PackedAddr) {
        *self = Ends::new(self.local(), remote);
    }
}

impl std::fmt::Debug for Ends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} -> {:?}", self.local(), self.remote())
    }
}

/// [`Ends`] as it is written: two fields, flattened into the connection.
#[derive(Serialize, Deserialize)]
struct EndFields {
    local: PackedAddr,
    remote: PackedAddr,
}

impl Serialize for Ends {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EndFields {
            local: self.local(),
            remote: self.remote(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EndFields::deserialize(d).map(|f| Ends::new(f.local, f.remote))
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

    #[test]
    fn ends_read_back_inline_for_ipv4_and_boxed_otherwise() {
        let addr = |s: &str| PackedAddr::from(s.parse::<SocketAddr>().unwrap());
        for (l, r, inline) in [
            ("10.0.0.1:80", "10.0.0.2:5000", true),
            ("0.0.0.0:0", "0.0.0.0:0", true),
            ("[::1]:443", "[::1]:5000", false),
            ("10.0.0.1:80", "[::ffff:10.0.0.1]:80", true),
            ("[::ffff:10.0.0.2]:5000", "[::ffff:10.0.0.1]:80", true),
            ("[::ffff:10.0.0.2]:5000", "[::1]:80", false),
            ("[::fffe:a00:2]:5000", "10.0.0.1:80", false),
        ] {
            let mut ends = Ends::new(addr(l), addr(r));
            assert_eq!(ends.inline(), inline, "{l} {r}");
            assert_eq!((ends.local(), ends.remote()), (addr(l), addr(r)));
            let json = serde_json::to_string(&ends).unwrap();
            assert_eq!(json, format!(r#"{{"local":"{l}","remote":"{r}"}}"#));
            assert_eq!(serde_json::from_str::<Ends>(&json).unwrap(), ends);
            ends.set_local(addr("[2001:db8::7]:1"));
            assert_eq!((ends.local(), ends.remote()), (addr("[2001:db8::7]:1"), addr(r)));
            ends.set_local(addr(l));
            assert_eq!(
                ends,
                Ends::new(addr(l), addr(r)),
                "back inline when both are IPv4 again"
            );
        }
        assert_eq!(std::mem::size_of::<Ends>(), 16);
    }
}
