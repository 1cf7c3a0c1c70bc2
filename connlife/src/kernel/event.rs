//! Decoding of ring-buffer records into typed [`KernelEvent`]s: a pure function that checks
//! length, kind, family and states against the one definition in connlife-common, and returns
//! an error value for anything malformed.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use connlife_common::{Event, Origin, AF_INET, AF_INET6, EVENT_SIZE};
pub use connlife_common::{EventKind as Kind, Role, SockUse as Use, Syscall, TcpState};
use serde::{Deserialize, Serialize};

/// A decoded kernel event. Fields a kind does not carry are `None`/zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelEvent {
    pub kind: Kind,
    pub ts_ns: u64,
    pub sk: u64,
    /// Owner (socket events) or the process concerned; `None` = not known.
    pub tgid: Option<u32>,
    pub fd: Option<i32>,
    pub comm: TaskName,
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
    /// FdFail: which syscall failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<Syscall>,
    /// Fork: the new process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<u32>,
    /// Births (State SYN_SENT, Accept) with origins on: where in the owner's code the
    /// connection came from. `None` when the kernel took nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<BirthOrigin>,
    /// State records: the steps, accept and close the kernel folded into this record
    /// ([`super::unfold`]); never recorded (the driver unfolds before the session sees it).
    #[serde(skip)]
    pub folded: Option<Box<super::unfold::Folded>>,
}

/// Where a connection was born: ids in the kernel's STACKS map, valid for this event's tgid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct BirthOrigin {
    /// User stack at connect()/accept(); None = not taken or missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<u32>,
    /// Go net/http: stack of the goroutine that made the request, at (*Transport).roundTrip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_stack: Option<u32>,
    /// Go net/http: address of the *http.Transport that dialed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<u64>,
}

impl BirthOrigin {
    /// The kernel's record (-1 ids and a 0 transport mean none); `None` when it holds nothing.
    pub fn from_raw(raw: &Origin) -> Option<BirthOrigin> {
        let id = |v: i32| u32::try_from(v).ok();
        let origin = BirthOrigin {
            stack: id(raw.stack),
            request_stack: id(raw.request_stack),
            transport: (raw.transport != 0).then_some(raw.transport),
        };
        (origin != BirthOrigin::default()).then_some(origin)
    }
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
    #[error("invalid role {0}")]
    BadRole(u8),
    #[error("unknown syscall {0}")]
    BadSyscall(u32),
}

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    if bytes.len() != EVENT_SIZE {
        return Err(DecodeError::SizeMismatch(bytes.len()));
    }
    // SAFETY: length checked; Event is repr(C) plain data valid for any bit pattern; the
    // record may be unaligned, hence read_unaligned.
    let raw: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let kind = Kind::try_from(raw.kind).map_err(DecodeError::UnknownKind)?;
    let state = |v: u8| -> Result<Option<TcpState>, DecodeError> {
        match v {
            0 => Ok(None),
            v => TcpState::try_from(v).map(Some).map_err(DecodeError::BadState),
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
    let syscall = match kind {
        Kind::FdFail => Some(Syscall::try_from(raw.aux).map_err(DecodeError::BadSyscall)?),
        _ => None,
    };
    Ok(KernelEvent {
        kind,
        ts_ns: raw.ts_ns,
        sk: raw.sk,
        tgid: (raw.tgid != 0).then_some(raw.tgid),
        fd: (raw.fd >= 0).then_some(raw.fd),
        comm: TaskName::from_kernel(&raw.comm),
        netns: raw.netns,
        role: Role::try_from(raw.role).map_err(DecodeError::BadRole)?,
        old_state: state(raw.old_state)?,
        new_state: state(raw.new_state)?,
        local,
        remote,
        sock_use: raw.sock_use,
        ret: raw.ret,
        syscall,
        child: (kind == Kind::Fork && raw.aux != 0).then_some(raw.aux),
        origin: BirthOrigin::from_raw(&raw.origin),
        folded: match kind {
            Kind::State => super::unfold::Folded::from_raw(&raw.folded)
                .map_err(DecodeError::BadState)?
                .map(Box::new),
            _ => None,
        },
    })
}

fn v4(a: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
}

/// A process name as the kernel keeps it (`comm`, at most 15 bytes), held inline: an event
/// carries its process's name without a heap allocation of its own (one per event and per
/// unfolded step was most of userspace's allocations). Text is the kernel's bytes as UTF-8,
/// lossily, cut to 15 bytes at a character boundary.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TaskName {
    len: u8,
    bytes: [u8; 15],
}

impl TaskName {
    /// A kernel `comm` (NUL-padded).
    pub fn from_kernel(c: &[u8]) -> TaskName {
        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
        match std::str::from_utf8(&c[..end]) {
            Ok(s) => TaskName::new(s),
            Err(_) => TaskName::new(&String::from_utf8_lossy(&c[..end])),
        }
    }

    pub fn new(s: &str) -> TaskName {
        let mut n = s.len().min(15);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        let mut bytes = [0; 15];
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        TaskName { len: n as u8, bytes }
    }

    pub fn as_str(&self) -> &str {
        // Always valid: `new` copies whole characters of a str.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl std::ops::Deref for TaskName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for TaskName {
    fn from(s: &str) -> TaskName {
        TaskName::new(s)
    }
}

impl From<String> for TaskName {
    fn from(s: String) -> TaskName {
        TaskName::new(&s)
    }
}

impl PartialEq<str> for TaskName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TaskName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for TaskName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TaskName, D::Error> {
        String::deserialize(d).map(TaskName::from)
    }
}

/// A process name as the kernel stores it: at most 15 bytes (TASK_COMM_LEN - 1), NUL-padded.
/// The one place the 15-byte rule is written.
pub fn comm_bytes(comm: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = comm.len().min(15);
    out[..n].copy_from_slice(&comm.as_bytes()[..n]);
    out
}

/// Does a kernel comm (already at most 15 bytes) match a name given by the user?
pub fn comm_matches(kernel_comm: &str, wanted: &str) -> bool {
    comm_bytes(kernel_comm) == comm_bytes(wanted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn raw_state(sk: u64, old: u8, new: u8) -> Event {
        let mut e = Event::ZEROED;
        e.kind = Kind::State as u32;
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
        // SAFETY: Event is repr(C) plain data of EVENT_SIZE bytes.
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
    fn decodes_a_fork_with_its_child() {
        let mut e = Event::ZEROED;
        e.kind = Kind::Fork as u32;
        e.tgid = 10;
        e.aux = 11;
        let ev = decode(&bytes_of(&e)).unwrap();
        assert_eq!((ev.kind, ev.tgid, ev.child), (Kind::Fork, Some(10), Some(11)));
    }

    #[test]
    fn a_record_without_origin_decodes_to_none() {
        let ev = decode(&bytes_of(&raw_state(1, 7, 2))).unwrap();
        assert_eq!(ev.origin, None);
        let json = serde_json::to_string(&ev).unwrap();
        assert!(!json.contains("origin"), "{json}");
    }

    #[test]
    fn decodes_a_birth_origin() {
        let mut e = raw_state(1, 7, 2);
        e.origin = Origin {
            stack: 12,
            request_stack: 0,
            transport: 0xc000_1234_5000,
        };
        let ev = decode(&bytes_of(&e)).unwrap();
        let want = BirthOrigin {
            stack: Some(12),
            request_stack: Some(0),
            transport: Some(0xc000_1234_5000),
        };
        assert_eq!(ev.origin, Some(want));
        let back: KernelEvent = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn a_missed_stack_is_none_and_a_lone_field_still_counts() {
        let mut e = raw_state(1, 7, 2);
        e.origin.stack = -14; // -EFAULT from bpf_get_stackid, as the kernel could send it
        assert_eq!(decode(&bytes_of(&e)).unwrap().origin, None);
        e.origin.request_stack = 3;
        let o = decode(&bytes_of(&e)).unwrap().origin.unwrap();
        assert_eq!((o.stack, o.request_stack, o.transport), (None, Some(3), None));
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"request_stack":3}"#);
    }

    #[test]
    fn events_recorded_before_origins_read_back() {
        let ev = decode(&bytes_of(&raw_state(1, 7, 2))).unwrap();
        let json = serde_json::to_string(&ev).unwrap();
        let back: KernelEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.origin, None);
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
        e = raw_state(1, 7, 2);
        e.role = 9;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::BadRole(9)));
        e = raw_state(1, 7, 2);
        e.kind = Kind::FdFail as u32;
        e.aux = 77;
        assert_eq!(decode(&bytes_of(&e)), Err(DecodeError::BadSyscall(77)));
    }

    #[test]
    fn comm_rule_is_fifteen_bytes() {
        assert_eq!(&comm_bytes("connlife-workload")[..15], b"connlife-worklo");
        assert!(comm_matches("connlife-worklo", "connlife-workload"));
        assert!(!comm_matches("curl", "cur"));
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
