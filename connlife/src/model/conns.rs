//! The connection model: a synchronous, pure state machine that turns kernel events (and the
//! start-up snapshot) into every traced TCP connection with its owner, lifetime and use.
//! `apply(event) -> changes`; no I/O, no clock: time comes from the events and the caller.
//!
//! Identity: a live connection is keyed by its kernel socket address (`sk`); a connection known
//! only from the snapshot is keyed by (netns, local, remote) until the kernel first names its
//! `sk`, so a socket seen by both is counted once. A socket address the kernel reuses for a new
//! connection after TCP_CLOSE starts a new connection.
use std::{collections::VecDeque, net::SocketAddr};

// FxHash: the maps are keyed by kernel pointers and tuples, not by untrusted input, and the
// event path hashes several times per event.
use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::kernel::event::{KernelEvent, Kind, Role, TcpState, Use};

pub type ConnId = u64;

/// Who holds a connection. Recorded only where the owner is the running task (connect,
/// accept, close, first send/recv) or from /proc, never from a softirq's `current`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub tgid: u32,
    pub comm: String,
    pub fd: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conn {
    pub id: ConnId,
    pub sk: Option<u64>,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    pub owner: Option<Owner>,
    /// When it opened, or when connlife first saw it if `age_exact` is false (a lower bound).
    pub opened_ns: u64,
    pub age_exact: bool,
    pub state: TcpState,
    pub state_since_ns: u64,
    /// States passed through, with the time each was entered (bounded).
    pub path: Vec<(TcpState, u64)>,
    /// When the owner closed its fd (close(), or process exit).
    pub fd_closed_ns: Option<u64>,
    pub usage: Use,
    /// Exchanges counted since the connection opened (false: it predates connlife, or this
    /// kernel lacks the send/recv tracepoints).
    pub exchanges_known: bool,
}

impl Conn {
    /// Last sign of life: a state change, a send or a receive.
    pub fn last_activity_ns(&self) -> u64 {
        self.state_since_ns
            .max(self.usage.last_send_ns)
            .max(self.usage.last_recv_ns)
    }
    pub fn tgid(&self) -> Option<u32> {
        self.owner.as_ref().map(|o| o.tgid)
    }
    pub fn fd(&self) -> Option<i32> {
        self.owner.as_ref().and_then(|o| o.fd)
    }
    fn enter(&mut self, state: TcpState, ts: u64) {
        // close() after shutdown() reports FIN_WAIT1 -> FIN_WAIT1: one state in the path.
        if self.state == state && !self.path.is_empty() {
            return;
        }
        if self.path.len() < MAX_PATH {
            self.path.push((state, ts));
        }
        self.state = state;
        self.state_since_ns = ts;
    }
}

/// How a connection ended, read from the states it passed through.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// We sent the first FIN (FIN_WAIT1/2, CLOSING, TIME_WAIT on the way).
    ClosedByUs,
    /// The peer sent the first FIN (CLOSE_WAIT, LAST_ACK on the way).
    ClosedByPeer,
    /// Straight to CLOSE from an open state: a reset, a refused or timed-out connect.
    Reset,
    /// A listener stopped listening.
    Unlistened,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            Self::ClosedByUs => "closed_by_us",
            Self::ClosedByPeer => "closed_by_peer",
            Self::Reset => "reset",
            Self::Unlistened => "unlistened",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClosedConn {
    pub conn: Conn,
    pub ended_ns: u64,
    pub reason: EndReason,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Opened(ConnId),
    Transition {
        id: ConnId,
        from: Option<TcpState>,
        to: TcpState,
        ts_ns: u64,
    },
    FdClosed {
        id: ConnId,
        ts_ns: u64,
    },
    Closed(Box<ClosedConn>),
    ProcessExit {
        tgid: u32,
        comm: String,
        status: i32,
        ts_ns: u64,
    },
    FdExhausted {
        tgid: u32,
        comm: String,
        errno: i32,
        syscall: u32,
        ts_ns: u64,
    },
}

/// A socket found by the start-up snapshot (sock_diag joined with /proc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenSocket {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub role: Role,
    pub owner: Option<Owner>,
    pub usage: Use,
}

const MAX_PATH: usize = 16;
const MAX_CLOSED: usize = 4096;

type TupleKey = (u32, SocketAddr, SocketAddr);

#[derive(Default)]
pub struct Model {
    conns: HashMap<ConnId, Conn>,
    by_sk: HashMap<u64, ConnId>,
    by_tuple: HashMap<TupleKey, ConnId>,
    /// Recently closed connections, oldest first (bounded).
    pub closed: VecDeque<ClosedConn>,
    next_id: ConnId,
    /// Cap on live connections; past it the least recently active one is dropped and counted.
    pub max_conns: usize,
    pub evicted: u64,
    /// Events that could not be matched to anything and carried no tuple.
    pub unmatched: u64,
    /// False on kernels without sock_send_length/sock_recv_length.
    pub use_counting: bool,
}

impl Model {
    pub fn new(max_conns: usize, use_counting: bool) -> Self {
        Model {
            max_conns,
            use_counting,
            next_id: 1,
            ..Default::default()
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }
    pub fn by_sk(&self, sk: u64) -> Option<&Conn> {
        self.by_sk.get(&sk).and_then(|id| self.conns.get(id))
    }
    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values()
    }
    pub fn len(&self) -> usize {
        self.conns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Approximate heap cost of one live connection, for the README and the bench.
    pub fn bytes_per_conn() -> usize {
        let entry_overhead = 16; // hashbrown control bytes and load factor, rounded up
        std::mem::size_of::<Conn>()
            + std::mem::size_of::<(ConnId, Conn)>()
            + entry_overhead
            + 2 * (std::mem::size_of::<(u64, ConnId)>() + entry_overhead)
            + std::mem::size_of::<(TupleKey, ConnId)>()
            + entry_overhead
            + 4 * std::mem::size_of::<(TcpState, u64)>()
            + 16 // comm string
    }

    /// Apply the start-up snapshot. A socket the events already know (same tuple) is merged,
    /// not added twice.
    pub fn apply_snapshot(&mut self, sockets: &[SeenSocket], now_ns: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for s in sockets {
            let key = (s.netns, s.local, s.remote);
            if let Some(conn) = self.by_tuple.get(&key).and_then(|id| self.conns.get_mut(id)) {
                merge_owner(&mut conn.owner, s.owner.as_ref());
                continue;
            }
            let id = self.insert(Conn {
                id: 0,
                sk: None,
                netns: s.netns,
                local: s.local,
                remote: s.remote,
                role: s.role,
                owner: s.owner.clone(),
                opened_ns: now_ns,
                age_exact: false,
                state: s.state,
                state_since_ns: now_ns,
                path: vec![(s.state, now_ns)],
                fd_closed_ns: None,
                usage: s.usage,
                exchanges_known: false,
            });
            changes.push(Change::Opened(id));
        }
        changes
    }

    /// After a re-snapshot (events were lost): drop live connections the kernel no longer has,
    /// since their end was among the lost events. Returns how many were dropped.
    pub fn reconcile(&mut self, seen: &[SeenSocket], snapshot_ns: u64) -> usize {
        let present: std::collections::HashSet<TupleKey> = seen.iter().map(|s| (s.netns, s.local, s.remote)).collect();
        let stale: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| c.state_since_ns < snapshot_ns && !present.contains(&(c.netns, c.local, c.remote)))
            .map(|c| c.id)
            .collect();
        for &id in &stale {
            self.remove(id);
        }
        stale.len()
    }

    /// Apply one kernel event.
    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<Change> {
        let mut changes = Vec::new();
        match ev.kind {
            Kind::Exit => changes.extend(self.on_exit(ev)),
            Kind::FdFail => changes.push(Change::FdExhausted {
                tgid: ev.tgid.unwrap_or(0),
                comm: ev.comm.clone(),
                errno: -ev.ret,
                syscall: ev.syscall,
                ts_ns: ev.ts_ns,
            }),
            Kind::Use => {
                if let Some(conn) = self.by_sk.get(&ev.sk).and_then(|id| self.conns.get_mut(id)) {
                    absorb_use(conn, ev.sock_use);
                    merge_owner(&mut conn.owner, event_owner(ev).as_ref());
                } else {
                    self.unmatched += 1;
                }
            }
            Kind::State => self.on_state(ev, &mut changes),
            Kind::Accept | Kind::Claim => {
                if let Some((id, _)) = self.find_or_open(ev, &mut changes) {
                    let conn = self.conns.get_mut(&id).expect("found");
                    if ev.kind == Kind::Accept {
                        conn.role = Role::Server;
                        conn.owner = event_owner(ev);
                    } else {
                        merge_owner(&mut conn.owner, event_owner(ev).as_ref());
                    }
                }
            }
            Kind::FdClose => {
                let id = self
                    .by_sk
                    .get(&ev.sk)
                    .copied()
                    .or_else(|| self.tuple_of(ev).and_then(|k| self.by_tuple.get(&k).copied()));
                match id.and_then(|id| self.conns.get_mut(&id)) {
                    Some(conn) => {
                        if conn.owner.is_none() {
                            conn.owner = Some(Owner {
                                tgid: ev.tgid.unwrap_or(0),
                                comm: ev.comm.clone(),
                                fd: ev.fd,
                            });
                        }
                        if conn.fd_closed_ns.is_none() {
                            conn.fd_closed_ns = Some(ev.ts_ns);
                            changes.push(Change::FdClosed {
                                id: conn.id,
                                ts_ns: ev.ts_ns,
                            });
                        }
                    }
                    // A socket that already ended (reset by the peer) or that we never saw.
                    None => self.mark_closed_fd(ev),
                }
            }
        }
        changes
    }

    /// Refresh use counters read from the kernel map (polling, for idle time).
    pub fn update_use(&mut self, sk: u64, usage: Use) {
        if let Some(conn) = self.by_sk.get(&sk).and_then(|id| self.conns.get_mut(id)) {
            absorb_use(conn, usage);
        }
    }

    fn on_state(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let (Some(new), old) = (ev.new_state, ev.old_state) else {
            self.unmatched += 1;
            return;
        };
        let known = self.by_sk.get(&ev.sk).copied();
        let id = match known {
            // A new socket at an address we track as ended or live in another life: a connect
            // or listen from CLOSE always starts a new connection.
            Some(id) if old == Some(TcpState::Close) && matches!(new, TcpState::SynSent | TcpState::Listen) => {
                self.finish(id, ev.ts_ns, changes);
                None
            }
            other => other,
        };
        let id = match id {
            Some(id) => id,
            None => match self.find_or_open(ev, changes) {
                // A fresh connection already entered `new`.
                Some((id, true)) => {
                    changes.push(Change::Transition {
                        id,
                        from: old,
                        to: new,
                        ts_ns: ev.ts_ns,
                    });
                    if new == TcpState::Close {
                        self.finish(id, ev.ts_ns, changes);
                    }
                    return;
                }
                Some((id, false)) => id,
                None => return,
            },
        };
        self.learn_tuple(id, ev);
        let conn = self.conns.get_mut(&id).expect("indexed");
        merge_owner(&mut conn.owner, event_owner(ev).as_ref());
        absorb_use(conn, ev.sock_use);
        if conn.role == Role::Unknown {
            conn.role = ev.role;
        }
        if ev.ts_ns < conn.state_since_ns && new != TcpState::Close {
            // Arrived late (another CPU): keep it in the path at its place, do not go back.
            let at = conn
                .path
                .iter()
                .position(|&(_, t)| t > ev.ts_ns)
                .unwrap_or(conn.path.len());
            if conn.path.len() < MAX_PATH {
                conn.path.insert(at, (new, ev.ts_ns));
            }
        } else {
            conn.enter(new, ev.ts_ns.max(conn.state_since_ns));
        }
        changes.push(Change::Transition {
            id,
            from: old,
            to: new,
            ts_ns: ev.ts_ns,
        });
        if new == TcpState::Close {
            self.finish(id, ev.ts_ns, changes);
        }
    }

    /// Complete a connection's tuple from a later event: at SYN_SENT the kernel has not picked
    /// the local port yet (it shows :0), and before 6.x the first event of an accepted socket
    /// (LISTEN -> SYN_RECV) still carries the listener's addresses (remote 0.0.0.0:0).
    fn learn_tuple(&mut self, id: ConnId, ev: &KernelEvent) {
        let (Some(local), Some(remote)) = (ev.local, ev.remote) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let old = (conn.netns, conn.local, conn.remote);
        if conn.local.port() == 0 && local.port() != 0 {
            conn.local = local;
        }
        if conn.remote.port() == 0 && remote.port() != 0 && conn.state != TcpState::Listen {
            conn.remote = remote;
        }
        let new = (conn.netns, conn.local, conn.remote);
        if new != old {
            if self.by_tuple.get(&old) == Some(&id) {
                self.by_tuple.remove(&old);
            }
            if tuple_complete(&new, conn.state) {
                self.by_tuple.insert(new, id);
            }
        }
    }

    fn tuple_of(&self, ev: &KernelEvent) -> Option<TupleKey> {
        Some((ev.netns, ev.local?, ev.remote?))
    }

    /// The connection an event names by sk, or by tuple (snapshot-found), or a new one
    /// (`true` when it was opened here).
    fn find_or_open(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) -> Option<(ConnId, bool)> {
        if let Some(&id) = self.by_sk.get(&ev.sk) {
            return Some((id, false));
        }
        let Some(key) = self.tuple_of(ev) else {
            self.unmatched += 1;
            return None;
        };
        // A birth is a new socket: never the snapshot's (nor a listener sharing its tuple).
        let birth = ev.kind == Kind::State
            && matches!(
                (ev.old_state, ev.new_state),
                (Some(TcpState::Close), Some(TcpState::SynSent | TcpState::Listen))
                    | (Some(TcpState::Listen), Some(TcpState::SynRecv))
            );
        if let Some(&id) = self.by_tuple.get(&key).filter(|_| !birth) {
            let conn = self.conns.get_mut(&id).expect("indexed");
            if conn.sk.is_none() {
                conn.sk = Some(ev.sk);
                self.by_sk.insert(ev.sk, id);
                return Some((id, false));
            }
            // Same tuple, different socket: the old one is gone (TIME_WAIT reuse).
            self.finish(id, ev.ts_ns, changes);
        }
        let state = ev.new_state.unwrap_or(TcpState::Established);
        // Opened now if we saw it from CLOSE or LISTEN (its birth); otherwise it predates us.
        let born_here = matches!(ev.old_state, Some(TcpState::Close) | Some(TcpState::Listen))
            || matches!(
                ev.new_state,
                Some(TcpState::SynSent | TcpState::SynRecv | TcpState::Listen)
            );
        let id = self.insert(Conn {
            id: 0,
            sk: Some(ev.sk),
            netns: ev.netns,
            local: key.1,
            remote: key.2,
            role: ev.role,
            owner: event_owner(ev),
            opened_ns: ev.ts_ns,
            age_exact: born_here && ev.kind == Kind::State,
            state,
            state_since_ns: ev.ts_ns,
            path: vec![(state, ev.ts_ns)],
            fd_closed_ns: None,
            usage: ev.sock_use,
            // The kernel starts counting at accept() too, before any data.
            exchanges_known: self.use_counting && (born_here && ev.kind == Kind::State || ev.kind == Kind::Accept),
        });
        changes.push(Change::Opened(id));
        Some((id, true))
    }

    fn insert(&mut self, mut conn: Conn) -> ConnId {
        if self.max_conns > 0 && self.conns.len() >= self.max_conns {
            self.evict_one();
        }
        let id = self.next_id;
        self.next_id += 1;
        conn.id = id;
        if let Some(sk) = conn.sk {
            self.by_sk.insert(sk, id);
        }
        let key = (conn.netns, conn.local, conn.remote);
        if tuple_complete(&key, conn.state) {
            self.by_tuple.insert(key, id);
        }
        self.conns.insert(id, conn);
        id
    }

    fn evict_one(&mut self) {
        let victim = self.conns.values().min_by_key(|c| c.last_activity_ns()).map(|c| c.id);
        if let Some(id) = victim {
            self.remove(id);
            self.evicted += 1;
        }
    }

    fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(sk) = conn.sk {
            if self.by_sk.get(&sk) == Some(&id) {
                self.by_sk.remove(&sk);
            }
        }
        let key = (conn.netns, conn.local, conn.remote);
        if self.by_tuple.get(&key) == Some(&id) {
            self.by_tuple.remove(&key);
        }
        Some(conn)
    }

    fn finish(&mut self, id: ConnId, ts: u64, changes: &mut Vec<Change>) {
        let Some(mut conn) = self.remove(id) else {
            return;
        };
        if conn.state != TcpState::Close {
            conn.enter(TcpState::Close, ts.max(conn.state_since_ns));
        }
        let reason = end_reason(&conn.path);
        let closed = ClosedConn {
            conn,
            ended_ns: ts,
            reason,
        };
        if self.closed.len() >= MAX_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(closed.clone());
        changes.push(Change::Closed(Box::new(closed)));
    }

    /// close() on a socket that already ended: record it on the closed entry if we have it.
    fn mark_closed_fd(&mut self, ev: &KernelEvent) {
        match self
            .closed
            .iter_mut()
            .rev()
            .find(|c| c.conn.sk == Some(ev.sk) && c.conn.fd_closed_ns.is_none())
        {
            Some(c) => c.conn.fd_closed_ns = Some(ev.ts_ns),
            None => self.unmatched += 1,
        }
    }

    fn on_exit(&mut self, ev: &KernelEvent) -> Vec<Change> {
        let Some(tgid) = ev.tgid else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        // Process exit closes every fd it held.
        for conn in self.conns.values_mut() {
            if conn.tgid() == Some(tgid) && conn.fd_closed_ns.is_none() {
                conn.fd_closed_ns = Some(ev.ts_ns);
                changes.push(Change::FdClosed {
                    id: conn.id,
                    ts_ns: ev.ts_ns,
                });
            }
        }
        changes.push(Change::ProcessExit {
            tgid,
            comm: ev.comm.clone(),
            status: ev.ret,
            ts_ns: ev.ts_ns,
        });
        changes
    }
}

/// Only complete tuples identify a connection: a connecting socket shows local port 0 and an
/// accepted one may briefly show the listener's remote 0.0.0.0:0.
fn tuple_complete(key: &TupleKey, state: TcpState) -> bool {
    key.1.port() != 0 && (key.2.port() != 0 || state == TcpState::Listen)
}

fn event_owner(ev: &KernelEvent) -> Option<Owner> {
    ev.tgid.map(|tgid| Owner {
        tgid,
        comm: ev.comm.clone(),
        fd: ev.fd,
    })
}

/// Fill what we did not know; never replace a known owner with another (a softirq task is
/// never passed here, but a later event may lack the fd).
fn merge_owner(have: &mut Option<Owner>, seen: Option<&Owner>) {
    let Some(seen) = seen else { return };
    match have {
        None => *have = Some(seen.clone()),
        Some(h) if h.tgid == seen.tgid => {
            if h.fd.is_none() {
                h.fd = seen.fd;
            }
            if h.comm.is_empty() {
                h.comm = seen.comm.clone();
            }
        }
        Some(_) => {}
    }
}

/// Counters only grow; a kernel entry re-created after LRU eviction restarts at zero.
fn absorb_use(conn: &mut Conn, u: Use) {
    let c = &mut conn.usage;
    c.bytes_sent = c.bytes_sent.max(u.bytes_sent);
    c.bytes_received = c.bytes_received.max(u.bytes_received);
    c.last_send_ns = c.last_send_ns.max(u.last_send_ns);
    c.last_recv_ns = c.last_recv_ns.max(u.last_recv_ns);
    c.exchanges = c.exchanges.max(u.exchanges);
}

pub fn end_reason(path: &[(TcpState, u64)]) -> EndReason {
    use TcpState::*;
    let states = || path.iter().map(|&(s, _)| s);
    if states().any(|s| s == Listen) && !states().any(|s| s == Established) {
        return EndReason::Unlistened;
    }
    for s in states() {
        match s {
            FinWait1 | FinWait2 | Closing | TimeWait => return EndReason::ClosedByUs,
            CloseWait | LastAck => return EndReason::ClosedByPeer,
            _ => {}
        }
    }
    EndReason::Reset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::event::Kind;
    use TcpState::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn state(ts: u64, sk: u64, tgid: Option<u32>, old: TcpState, new: TcpState, l: &str, r: &str) -> KernelEvent {
        KernelEvent {
            kind: Kind::State,
            ts_ns: ts,
            sk,
            tgid,
            fd: tgid.map(|_| 5),
            comm: tgid.map(|_| "app".to_string()).unwrap_or_default(),
            netns: 1,
            role: Role::Client,
            old_state: Some(old),
            new_state: Some(new),
            local: Some(addr(l)),
            remote: Some(addr(r)),
            sock_use: Use::default(),
            ret: 0,
            syscall: 0,
        }
    }

    fn client_path(m: &mut Model, sk: u64, l: &str) -> Vec<Change> {
        let r = "10.0.0.1:80";
        let mut all = Vec::new();
        all.extend(m.apply(&state(10, sk, Some(100), Close, SynSent, l, r)));
        all.extend(m.apply(&state(20, sk, Some(100), SynSent, Established, l, r)));
        all
    }

    #[test]
    fn client_lifetime_closed_by_us() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        let c = m.by_sk(1).unwrap();
        assert_eq!(
            (c.state, c.tgid(), c.fd(), c.age_exact),
            (Established, Some(100), Some(5), true)
        );
        let mut close = state(30, 1, None, Established, FinWait1, "10.0.0.2:5000", "10.0.0.1:80");
        m.apply(&close);
        close = state(40, 1, None, FinWait1, FinWait2, "10.0.0.2:5000", "10.0.0.1:80");
        m.apply(&close);
        let ch = m.apply(&state(50, 1, None, FinWait2, Close, "10.0.0.2:5000", "10.0.0.1:80"));
        let Some(Change::Closed(c)) = ch.last() else {
            panic!("{ch:?}")
        };
        assert_eq!(c.reason, EndReason::ClosedByUs);
        assert_eq!(
            c.conn.owner.as_ref().unwrap().tgid,
            100,
            "softirq events must not change the owner"
        );
        assert_eq!(
            c.conn.path.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![SynSent, Established, FinWait1, FinWait2, Close]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn softirq_task_never_becomes_owner() {
        let mut m = Model::new(0, true);
        // Server child: first seen in softirq with no owner, then accept names it.
        m.apply(&state(10, 7, None, Listen, SynRecv, "10.0.0.1:80", "10.0.0.2:5000"));
        assert_eq!(m.by_sk(7).unwrap().owner, None);
        let mut acc = state(15, 7, Some(200), SynRecv, Established, "10.0.0.1:80", "10.0.0.2:5000");
        acc.kind = Kind::Accept;
        acc.role = Role::Server;
        m.apply(&acc);
        // Peer closes: softirq event carries the SOCKS owner (200), never current.
        m.apply(&state(
            20,
            7,
            Some(200),
            Established,
            CloseWait,
            "10.0.0.1:80",
            "10.0.0.2:5000",
        ));
        let c = m.by_sk(7).unwrap();
        assert_eq!((c.tgid(), c.role, c.state), (Some(200), Role::Server, CloseWait));
    }

    #[test]
    fn out_of_order_event_does_not_regress_state() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        m.apply(&state(
            40,
            1,
            Some(100),
            Established,
            CloseWait,
            "10.0.0.2:5000",
            "10.0.0.1:80",
        ));
        // An older event delivered late.
        m.apply(&state(
            30,
            1,
            Some(100),
            SynSent,
            Established,
            "10.0.0.2:5000",
            "10.0.0.1:80",
        ));
        assert_eq!(m.by_sk(1).unwrap().state, CloseWait);
    }

    #[test]
    fn socket_address_reused_by_new_connection() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        m.apply(&state(30, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
        client_path(&mut m, 1, "10.0.0.2:5001");
        assert_eq!(m.len(), 1);
        assert_eq!(m.closed.len(), 1);
        assert_eq!(m.by_sk(1).unwrap().local, addr("10.0.0.2:5001"));
        assert_eq!(m.closed[0].reason, EndReason::Reset);
    }

    #[test]
    fn snapshot_socket_adopted_by_first_event_and_not_counted_twice() {
        let mut m = Model::new(0, true);
        let seen = SeenSocket {
            netns: 1,
            local: addr("10.0.0.2:6000"),
            remote: addr("10.0.0.1:80"),
            state: Established,
            role: Role::Client,
            owner: Some(Owner {
                tgid: 300,
                comm: "leaky".into(),
                fd: Some(9),
            }),
            usage: Use::default(),
        };
        assert_eq!(m.apply_snapshot(std::slice::from_ref(&seen), 1000).len(), 1);
        assert!(!m.conns().next().unwrap().age_exact);
        // The peer closes: softirq event, owner unknown to the event.
        m.apply(&state(
            2000,
            55,
            None,
            Established,
            CloseWait,
            "10.0.0.2:6000",
            "10.0.0.1:80",
        ));
        assert_eq!(m.len(), 1);
        let c = m.by_sk(55).unwrap();
        assert_eq!((c.state, c.tgid(), c.fd()), (CloseWait, Some(300), Some(9)));
        // Snapshot taken again (after a loss burst): merged, not duplicated.
        m.apply_snapshot(&[seen], 3000);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn close_with_no_prior_event_is_counted_not_invented() {
        let mut m = Model::new(0, true);
        let mut ev = state(10, 9, Some(1), Established, Established, "1.1.1.1:1", "2.2.2.2:2");
        ev.kind = Kind::FdClose;
        ev.local = None;
        ev.remote = None;
        assert!(m.apply(&ev).is_empty());
        assert_eq!((m.len(), m.unmatched), (0, 1));
    }

    #[test]
    fn fd_close_after_peer_reset_is_recorded_on_closed_conn() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        m.apply(&state(
            30,
            1,
            Some(100),
            Established,
            Close,
            "10.0.0.2:5000",
            "10.0.0.1:80",
        ));
        let mut ev = state(40, 1, Some(100), Close, Close, "10.0.0.2:5000", "10.0.0.1:80");
        ev.kind = Kind::FdClose;
        m.apply(&ev);
        assert_eq!(m.closed[0].conn.fd_closed_ns, Some(40));
    }

    #[test]
    fn pid_reuse_keeps_connections_apart() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        let mut exit = state(30, 0, Some(100), Close, Close, "1.1.1.1:1", "2.2.2.2:2");
        exit.kind = Kind::Exit;
        let ch = m.apply(&exit);
        assert!(ch.iter().any(|c| matches!(c, Change::FdClosed { .. })));
        // A new process with the same pid opens a connection: new entry, old one keeps its close.
        client_path(&mut m, 2, "10.0.0.2:5002");
        assert_eq!(m.by_sk(1).unwrap().fd_closed_ns, Some(30));
        assert_eq!(m.by_sk(2).unwrap().fd_closed_ns, None);
    }

    #[test]
    fn reconcile_drops_connections_whose_end_was_lost() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        client_path(&mut m, 2, "10.0.0.2:5001");
        let still = SeenSocket {
            netns: 1,
            local: addr("10.0.0.2:5001"),
            remote: addr("10.0.0.1:80"),
            state: Established,
            role: Role::Client,
            owner: None,
            usage: Use::default(),
        };
        assert_eq!(m.reconcile(&[still], 100), 1);
        assert!(m.by_sk(1).is_none() && m.by_sk(2).is_some());
    }

    #[test]
    fn concurrent_connects_with_unassigned_local_port_stay_apart() {
        let mut m = Model::new(0, true);
        let r = "10.0.0.1:80";
        m.apply(&state(10, 1, Some(100), Close, SynSent, "10.0.0.2:0", r));
        m.apply(&state(11, 2, Some(100), Close, SynSent, "10.0.0.2:0", r));
        assert_eq!((m.len(), m.closed.len()), (2, 0));
        m.apply(&state(12, 1, Some(100), SynSent, Established, "10.0.0.2:5000", r));
        m.apply(&state(13, 2, Some(100), SynSent, Established, "10.0.0.2:5001", r));
        assert_eq!(m.by_sk(1).unwrap().local, addr("10.0.0.2:5000"));
        assert_eq!(m.by_sk(2).unwrap().local, addr("10.0.0.2:5001"));
    }

    /// Before 6.x the first event of an accepted socket carries the listener's tuple.
    #[test]
    fn accepted_child_with_listener_tuple_does_not_take_over_the_listener() {
        let mut m = Model::new(0, true);
        let listener = SeenSocket {
            netns: 1,
            local: addr("10.0.0.1:80"),
            remote: addr("0.0.0.0:0"),
            state: Listen,
            role: Role::Listener,
            owner: Some(Owner {
                tgid: 7,
                comm: "srv".into(),
                fd: Some(3),
            }),
            usage: Use::default(),
        };
        m.apply_snapshot(&[listener], 0);
        m.apply(&state(10, 9, None, Listen, SynRecv, "10.0.0.1:80", "0.0.0.0:0"));
        m.apply(&state(
            11,
            9,
            None,
            SynRecv,
            Established,
            "10.0.0.1:80",
            "10.0.0.2:5000",
        ));
        assert_eq!(m.len(), 2, "listener and child");
        let child = m.by_sk(9).unwrap();
        assert_eq!((child.remote, child.path.len()), (addr("10.0.0.2:5000"), 2));
        assert!(m.conns().any(|c| c.state == Listen && c.sk.is_none()));
    }

    #[test]
    fn end_reason_names_match_the_json_schema() {
        for r in [
            EndReason::ClosedByUs,
            EndReason::ClosedByPeer,
            EndReason::Reset,
            EndReason::Unlistened,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.name());
        }
    }

    #[test]
    fn a_connection_costs_a_known_bounded_size() {
        let bytes = Model::bytes_per_conn();
        eprintln!("model: about {bytes} bytes per live connection");
        assert!(bytes < 1024, "{bytes}");
    }

    #[test]
    fn eviction_is_counted_and_bounded() {
        let mut m = Model::new(3, true);
        for i in 0..10u64 {
            client_path(&mut m, 100 + i, &format!("10.0.0.2:{}", 5000 + i));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted, 7);
    }

    /// Property: whatever the interleaving of several sockets' events (each socket's own
    /// events in order), every socket ends closed exactly once and the model ends empty.
    #[test]
    fn property_random_interleavings_close_every_socket_once() {
        let mut seed = 7u64;
        let mut rnd = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let paths: [&[TcpState]; 3] = [
            &[SynSent, Established, FinWait1, FinWait2, Close],
            &[SynSent, Established, CloseWait, LastAck, Close],
            &[SynSent, Close],
        ];
        for round in 0..300 {
            let mut m = Model::new(0, true);
            let n = 1 + rnd(6);
            let mut queues: Vec<Vec<KernelEvent>> = (0..n)
                .map(|i| {
                    let path = paths[rnd(3)];
                    let mut prev = Close;
                    let l = format!("10.0.0.2:{}", 4000 + i);
                    path.iter()
                        .map(|&s| {
                            let e = state(0, 1 + i as u64, Some(9), prev, s, &l, "10.0.0.1:80");
                            prev = s;
                            e
                        })
                        .rev()
                        .collect()
                })
                .collect();
            let mut ts = 0;
            while queues.iter().any(|q| !q.is_empty()) {
                let q = rnd(n);
                if let Some(mut e) = queues[q].pop() {
                    ts += 1;
                    e.ts_ns = ts;
                    m.apply(&e);
                }
            }
            assert!(m.is_empty(), "round {round}: {:?}", m.conns().collect::<Vec<_>>());
            assert_eq!(m.closed.len(), n, "round {round}");
        }
    }
}
