//! Decoding of ring-buffer records into typed [`KernelEvent`]s: a pure function that checks
//! length, kind, family and states, and returns an error value for anything malformed.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use connlife_common::{Event, EventKind, SockUse, AF_INET, AF_INET6, EVENT_SIZE};
use serde::{Deserialize, Serialize};

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established = 1,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
        Self::NewSynRecv,
    ];

    pub fn from_kernel(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).checked_sub(1)?).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl std::fmt::Display for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Unknown,
    Client,
    Server,
    Listener,
}

impl Role {
    fn from_kernel(v: u8) -> Self {
        match v {
            connlife_common::ROLE_CLIENT => Self::Client,
            connlife_common::ROLE_SERVER => Self::Server,
            connlife_common::ROLE_LISTENER => Self::Listener,
            _ => Self::Unknown,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    State,
    Accept,
    FdClose,
    Exit,
    FdFail,
    Claim,
    Use,
}

/// Use counters as the kernel reports them (times in CLOCK_MONOTONIC ns, 0 = never).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub last_send_ns: u64,
    pub last_recv_ns: u64,
    pub exchanges: u32,
}

impl From<SockUse> for Use {
    fn from(u: SockUse) -> Self {
        Use {
            bytes_sent: u.bytes_sent,
            bytes_received: u.bytes_received,
            last_send_ns: u.last_send_ns,
            last_recv_ns: u.last_recv_ns,
            exchanges: u.exchanges,
        }
    }
}

/// A decoded kernel event. Fields a kind does not carry are `None`/zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelEvent {
    pub kind: Kind,
    pub ts_ns: u64,
    pub sk: u64,
    /// Owner (socket events) or the process concerned; `None` = not known.
    pub tgid: Option<u32>,
    pub fd: Option<i32>,
    pub comm: String,
    pub netns: u32,
    pub role: Role,
    pub old_state: Option<TcpState>,
    pub new_state: Option<TcpState>,
    /// Local and remote address when the event carries a tuple.
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    #[serde(rename = "use")]
    pub sock_use: Use,
    /// Exit: wait status; FdFail: -errno.
    pub ret: i32,
    /// FdFail: which syscall (1 socket, 2 accept, 3 accept4, 4 openat).
    pub syscall: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {EVENT_SIZE}")]
    SizeMismatch(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown address family {0}")]
    BadFamily(u8),
    #[error("invalid TCP state {0}")]
    BadState(u8),
}

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    if bytes.len() != EVENT_SIZE {
        return Err(DecodeError::SizeMismatch(bytes.len()));
    }
    // SAFETY: length checked; Event is repr(C) plain data valid for any bit pattern; the
    // record may be unaligned, hence read_unaligned.
    let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let kind = match EventKind::from_u32(raw.kind).ok_or(DecodeError::UnknownKind(raw.kind))? {
        EventKind::State => Kind::State,
        EventKind::Accept => Kind::Accept,
        EventKind::FdClose => Kind::FdClose,
        EventKind::Exit => Kind::Exit,
        EventKind::FdFail => Kind::FdFail,
        EventKind::Claim => Kind::Claim,
        EventKind::Use => Kind::Use,
    };
    let state = |v: u8| -> Result<Option<TcpState>, DecodeError> {
        match v {
            0 => Ok(None),
            v => TcpState::from_kernel(v).map(Some).ok_or(DecodeError::BadState(v)),
        }
    };
    let (local, remote) = match raw.family as u16 {
        0 => (None, None),
        AF_INET => (
            Some(SocketAddr::new(v4(&raw.saddr), raw.sport)),
            Some(SocketAddr::new(v4(&raw.daddr), raw.dport)),
        ),
        AF_INET6 => (
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(raw.saddr)), raw.sport)),
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(raw.daddr)), raw.dport)),
        ),
        other => return Err(DecodeError::BadFamily(other as u8)),
    };
    Ok(KernelEvent {
        kind,
        ts_ns: raw.ts_ns,
        sk: raw.sk,
        tgid: (raw.tgid != 0).then_some(raw.tgid),
        fd: (raw.fd >= 0).then_some(raw.fd),
        comm: comm_str(&raw.comm),
        netns: raw.netns,
        role: Role::from_kernel(raw.role),
        old_state: state(raw.old_state)?,
        new_state: state(raw.new_state)?,
        local,
        remote,
        sock_use: raw.sock_use.into(),
        ret: raw.ret,
        syscall: raw.aux,
    })
}

fn v4(a: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
}

pub fn comm_str(c: &[u8]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn raw_state(sk: u64, old: u8, new: u8) -> Event {
        let mut e: Event = unsafe { std::mem::zeroed() };
        e.kind = EventKind::State as u32;
        e.ts_ns = 1_000;
        e.sk = sk;
        e.tgid = 42;
        e.fd = 7;
        e.comm[..4].copy_from_slice(b"curl");
        e.family = AF_INET as u8;
        e.sport = 40000;
        e.dport = 80;
        e.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        e.old_state = old;
        e.new_state = new;
        e
    }

    pub fn bytes_of(e: &Event) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    #[test]
    fn decodes_a_state_change() {
        let ev = decode(&bytes_of(&raw_state(0xffff1, 7, 2))).unwrap();
        assert_eq!(ev.kind, Kind::State);
        assert_eq!(ev.tgid, Some(42));
        assert_eq!(ev.fd, Some(7));
        assert_eq!(ev.comm, "curl");
        assert_eq!(ev.old_state, Some(TcpState::Close));
        assert_eq!(ev.new_state, Some(TcpState::SynSent));
        assert_eq!(ev.local.unwrap().to_string(), "127.0.0.1:40000");
        assert_eq!(ev.remote.unwrap().to_string(), "10.0.0.2:80");
    }

    #[test]
    fn decodes_ipv6_and_unknown_owner() {
        let mut e = raw_state(1, 1, 8);
        e.family = AF_INET6 as u8;
        e.saddr = Ipv6Addr::LOCALHOST.octets();
        e.tgid = 0;
        e.fd = -1;
        let ev = decode(&bytes_of(&e)).unwrap();
        assert_eq!(ev.local.unwrap().to_string(), "[::1]:40000");
        assert_eq!((ev.tgid, ev.fd), (None, None));
    }

    #[test]
    fn rejects_malformed_records() {
        let good = bytes_of(&raw_state(1, 7, 2));
        assert_eq!(decode(&good[..10]), Err(DecodeError::SizeMismatch(10)));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(DecodeError::SizeMismatch(EVENT_SIZE + 1)));
        let mut e = raw_state(1, 7, 2);
        e.kind = 99;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::UnknownKind(99)));
        let mut e = raw_state(1, 7, 13);
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::BadState(13)));
        e = raw_state(1, 7, 2);
        e.family = 3;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::BadFamily(3)));
    }

    #[test]
    fn any_bytes_decode_or_error_without_panic() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let len = (seed % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
