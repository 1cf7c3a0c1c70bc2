//! The connection model: a synchronous, pure state machine that turns kernel events, the
//! start-up snapshot and later views of the kernel (reconciliation) into every traced TCP
//! connection with its holders, lifetime and use. `apply(event) -> changes`; no I/O, no
//! clock: time comes from the inputs.
//!
//! Identity: a live connection is keyed by its kernel socket address (`sk`); a connection known
//! only from a snapshot is keyed by (netns, local, remote) until the kernel first names its
//! `sk`, so a socket seen by both is counted once. A birth at a known address (connect, listen,
//! a listener's child) always starts a new connection: if the old one's end was never seen,
//! that is a counted correction, never a merged history.
//!
//! Holders: the processes that have the socket open, each with its fd. connect/accept name the
//! first; a fork gives the child a copy of every socket its parent holds; close and exit take
//! one holder away, and the socket's fd is closed only when the last one lets go. Findings
//! name the holders, never a task that merely ran when a softirq fired.
//!
//! Truth over time: [`Model::reconcile`] compares the model with the kernel's own view
//! (sock_diag joined with /proc fds) and corrects what drifted: connections whose end was
//! missed, sockets never seen, states and holders that differ. Every correction is a
//! [`Change::Corrected`] so the session counts it.
use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
};

// FxHash: the maps are keyed by kernel pointers and tuples, not by untrusted input, and the
// event path hashes several times per event.
use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::kernel::event::{KernelEvent, Kind, Role, TcpState, Use};

pub type ConnId = u64;

/// A process holding a socket. Recorded only where it is the running task (connect, accept,
/// close, first send/recv), from a fork of a holder, or from /proc; never from a softirq's
/// `current`.
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
    /// Processes that have it open now, oldest first (bounded).
    pub holders: Vec<Owner>,
    /// The last holder that let go, when none is left (closed records, post-mortems).
    pub former: Option<Owner>,
    /// When it opened, or when connlife first saw it if `age_exact` is false (a lower bound).
    pub opened_ns: u64,
    pub age_exact: bool,
    pub state: TcpState,
    pub state_since_ns: u64,
    /// States passed through, with the time each was entered (bounded).
    pub path: Vec<(TcpState, u64)>,
    /// When the last holder closed its fd (close(), or process exit).
    pub fd_closed_ns: Option<u64>,
    pub usage: Use,
    /// Exchanges counted since the connection opened (false: it predates connlife, or this
    /// kernel lacks the send/recv tracepoints).
    pub exchanges_known: bool,
    /// Last input that touched it (event, fork, exit): reconciliation leaves alone what
    /// changed while the kernel's view was being taken.
    pub touched_ns: u64,
}

impl Conn {
    /// Last sign of life: a state change, a send or a receive.
    pub fn last_activity_ns(&self) -> u64 {
        self.state_since_ns
            .max(self.usage.last_send_ns)
            .max(self.usage.last_recv_ns)
    }
    /// The holder findings name first: the newest one (a forked child that serves the
    /// connection, or the process that accepted it), else the last that let go.
    pub fn owner(&self) -> Option<&Owner> {
        self.holders.last().or(self.former.as_ref())
    }
    pub fn tgid(&self) -> Option<u32> {
        self.owner().map(|o| o.tgid)
    }
    pub fn fd(&self) -> Option<i32> {
        self.owner().and_then(|o| o.fd)
    }
    pub fn comm(&self) -> &str {
        self.owner().map(|o| o.comm.as_str()).unwrap_or("")
    }
    pub fn held_by(&self, tgid: u32) -> bool {
        self.holders.iter().any(|h| h.tgid == tgid)
    }
    /// Never held by any process: an accepted connection still in its listener's queue.
    pub fn never_held(&self) -> bool {
        self.holders.is_empty() && self.former.is_none()
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

/// What a reconciliation (or a birth at a known address) had to correct.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// The kernel no longer has it: its end was missed. Dropped.
    Vanished,
    /// The kernel has a socket of a traced process that the model did not. Added.
    Appeared,
    /// The kernel's state differs from the model's (a missed transition). Set.
    State,
    /// The processes holding it differ (a missed fork, exit or close, an fd passed over a
    /// unix socket). Set to the kernel's.
    Holders,
    /// A new socket was born at the address of one whose end was missed.
    Reborn,
}

impl Correction {
    pub const ALL: [Correction; 5] = [Self::Vanished, Self::Appeared, Self::State, Self::Holders, Self::Reborn];
    pub fn name(self) -> &'static str {
        match self {
            Self::Vanished => "vanished",
            Self::Appeared => "appeared",
            Self::State => "state",
            Self::Holders => "holders",
            Self::Reborn => "reborn",
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
    /// A traced process made a new process, which holds copies of its sockets.
    Forked {
        parent: u32,
        child: u32,
        comm: String,
        ts_ns: u64,
    },
    FdExhausted {
        tgid: u32,
        comm: String,
        errno: i32,
        syscall: &'static str,
        ts_ns: u64,
    },
    Corrected(Correction),
    Evicted,
}

/// A socket as the kernel reports it (sock_diag joined with /proc fds): at start-up and at
/// each reconciliation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenSocket {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub role: Role,
    /// Every traced process holding it, with its fd (empty: in an accept queue, or orphaned).
    pub owners: Vec<Owner>,
    pub usage: Use,
}

const MAX_PATH: usize = 16;
const MAX_CLOSED: usize = 4096;
const MAX_HOLDERS: usize = 16;
/// A connect or handshake still unfinished after this long is not "in flux" any more.
const IN_FLUX_NS: u64 = 300_000_000_000;

type TupleKey = (u32, SocketAddr, SocketAddr);

#[derive(Default)]
pub struct Model {
    conns: HashMap<ConnId, Conn>,
    by_sk: HashMap<u64, ConnId>,
    by_tuple: HashMap<TupleKey, ConnId>,
    /// How many live connections each process holds (fork and exit skip the scan at 0).
    held: HashMap<u32, u32>,
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

/// Holder bookkeeping, apart from the maps so it can run on a borrowed connection.
struct Holders<'a>(&'a mut HashMap<u32, u32>);

impl Holders<'_> {
    /// `tgid` holds `conn` (with `fd` when known). Fills a missing fd or comm of a known
    /// holder; returns whether a new holder was added.
    fn add(&mut self, conn: &mut Conn, who: Owner) -> bool {
        if let Some(h) = conn
            .holders
            .iter_mut()
            .find(|h| h.tgid == who.tgid && (h.fd == who.fd || h.fd.is_none() || who.fd.is_none()))
        {
            if h.fd.is_none() {
                h.fd = who.fd;
            }
            if h.comm.is_empty() {
                h.comm = who.comm;
            }
            return false;
        }
        if conn.holders.len() >= MAX_HOLDERS {
            return false;
        }
        if !conn.held_by(who.tgid) {
            *self.0.entry(who.tgid).or_default() += 1;
        }
        conn.holders.push(who);
        true
    }

    /// `tgid` let go of `fd` (any fd of it when `None`). Returns the holder removed.
    fn remove(&mut self, conn: &mut Conn, tgid: u32, fd: Option<i32>) -> Option<Owner> {
        let at = conn
            .holders
            .iter()
            .position(|h| h.tgid == tgid && (fd.is_none() || h.fd.is_none() || h.fd == fd))?;
        let gone = conn.holders.remove(at);
        if !conn.held_by(tgid) {
            self.release(tgid);
        }
        Some(gone)
    }

    fn release(&mut self, tgid: u32) {
        if let Some(n) = self.0.get_mut(&tgid) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&tgid);
            }
        }
    }

    /// Forget every holder of a connection leaving the model.
    fn drop_all(&mut self, conn: &Conn) {
        let mut seen = Vec::with_capacity(conn.holders.len());
        for h in &conn.holders {
            if !seen.contains(&h.tgid) {
                seen.push(h.tgid);
                self.release(h.tgid);
            }
        }
    }

    /// Make `conn`'s holders exactly `owners` (reconciliation). Returns whether anything
    /// but a missing fd or comm changed.
    fn set(&mut self, conn: &mut Conn, owners: &[Owner]) -> bool {
        let key = |hs: &[Owner]| {
            let mut v: Vec<u32> = hs.iter().map(|h| h.tgid).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let changed = key(&conn.holders) != key(owners)
            || conn
                .holders
                .iter()
                .any(|h| h.fd.is_some() && !owners.iter().any(|o| o.tgid == h.tgid && o.fd == h.fd));
        self.drop_all(conn);
        conn.holders.clear();
        for o in owners {
            self.add(conn, o.clone());
        }
        changed
    }
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
    /// Does `tgid` hold any live connection?
    pub fn holds_any(&self, tgid: u32) -> bool {
        self.held.contains_key(&tgid)
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
            + std::mem::size_of::<Owner>()
            + 16 // comm string
    }

    /// The start-up snapshot, applied after the events that were already queued: a socket
    /// the events already know (same tuple, or the same holder's connect still at local port
    /// 0) is merged, not added twice, and a socket whose close was among those events is not
    /// brought back.
    pub fn apply_snapshot(&mut self, sockets: &[SeenSocket], started_ns: u64, now_ns: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let closed_since = self.closed_since(started_ns);
        for s in sockets {
            if let Some(id) = self.match_seen(s) {
                let conn = self.conns.get_mut(&id).expect("indexed");
                let mut holders = Holders(&mut self.held);
                for o in &s.owners {
                    holders.add(conn, o.clone());
                }
                self.learn_tuple_of(id, s.local, s.remote);
                continue;
            }
            if !modelled(s.state) || closed_since.contains(&(s.netns, s.local, s.remote)) {
                continue;
            }
            self.add_seen(s, now_ns, &mut changes);
        }
        changes
    }

    /// Compare the model with the kernel's view taken between `started_ns` and `now_ns` (the
    /// queued events up to `now_ns` already applied) and correct what drifted. Connections
    /// touched since `started_ns` are left alone: the view may predate their change.
    pub fn reconcile(&mut self, seen: &[SeenSocket], started_ns: u64, now_ns: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut kernel: HashMap<TupleKey, &SeenSocket> = HashMap::default();
        for s in seen {
            kernel.insert((s.netns, s.local, s.remote), s);
        }
        let mut matched: HashSet<TupleKey> = HashSet::new();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let conn = &self.conns[&id];
            let key = (conn.netns, conn.local, conn.remote);
            if kernel.contains_key(&key) {
                matched.insert(key);
            }
            if conn.touched_ns >= started_ns {
                continue;
            }
            let in_flux =
                !tuple_complete(&key, conn.state) || matches!(conn.state, TcpState::SynSent | TcpState::SynRecv);
            if in_flux && now_ns.saturating_sub(conn.state_since_ns) < IN_FLUX_NS {
                continue;
            }
            let Some(s) = kernel.get(&key).copied() else {
                self.remove(id);
                changes.push(Change::Corrected(Correction::Vanished));
                continue;
            };
            if !modelled(s.state) {
                // TIME_WAIT or CLOSE in the kernel: the end was missed.
                self.finish(id, now_ns, &mut changes);
                changes.push(Change::Corrected(Correction::State));
                continue;
            }
            let conn = self.conns.get_mut(&id).expect("listed");
            if conn.state != s.state && conn.state != TcpState::Listen {
                conn.enter(s.state, now_ns);
                conn.touched_ns = now_ns;
                changes.push(Change::Corrected(Correction::State));
            }
            if conn.state != TcpState::Listen && Holders(&mut self.held).set(conn, &s.owners) {
                if conn.holders.is_empty() && conn.fd_closed_ns.is_none() && !conn.never_held() {
                    conn.fd_closed_ns = Some(now_ns);
                }
                conn.touched_ns = now_ns;
                changes.push(Change::Corrected(Correction::Holders));
            }
        }
        let closed_since = self.closed_since(started_ns);
        for s in seen {
            let key = (s.netns, s.local, s.remote);
            if matched.contains(&key)
                || !modelled(s.state)
                || matches!(s.state, TcpState::SynSent | TcpState::SynRecv)
                || closed_since.contains(&key)
                || (s.owners.is_empty() && s.role != Role::Server)
            {
                continue;
            }
            if let Some(id) = self.match_seen(s) {
                // The connect we know at local port 0, now with its port.
                self.learn_tuple_of(id, s.local, s.remote);
                continue;
            }
            self.add_seen(s, now_ns, &mut changes);
            changes.push(Change::Corrected(Correction::Appeared));
        }
        changes
    }

    /// Tuples of connections that ended at or after `ts`: a view taken before their end still
    /// lists them.
    fn closed_since(&self, ts: u64) -> HashSet<TupleKey> {
        self.closed
            .iter()
            .rev()
            .take_while(|c| c.ended_ns >= ts)
            .map(|c| (c.conn.netns, c.conn.local, c.conn.remote))
            .collect()
    }

    /// The live connection a kernel-reported socket is: same tuple, or the same holder's
    /// connect that has not learned its local port yet.
    fn match_seen(&self, s: &SeenSocket) -> Option<ConnId> {
        if let Some(&id) = self.by_tuple.get(&(s.netns, s.local, s.remote)) {
            return Some(id);
        }
        if s.state == TcpState::Listen {
            return None;
        }
        self.conns
            .values()
            .find(|c| {
                c.local.port() == 0
                    && c.netns == s.netns
                    && c.remote == s.remote
                    && c.holders
                        .iter()
                        .any(|h| s.owners.iter().any(|o| o.tgid == h.tgid && o.fd == h.fd))
            })
            .map(|c| c.id)
    }

    fn add_seen(&mut self, s: &SeenSocket, now_ns: u64, changes: &mut Vec<Change>) {
        let id = self.insert(
            Conn {
                id: 0,
                sk: None,
                netns: s.netns,
                local: s.local,
                remote: s.remote,
                role: s.role,
                holders: Vec::new(),
                former: None,
                opened_ns: now_ns,
                age_exact: false,
                state: s.state,
                state_since_ns: now_ns,
                path: vec![(s.state, now_ns)],
                fd_closed_ns: None,
                usage: s.usage,
                exchanges_known: false,
                touched_ns: now_ns,
            },
            changes,
        );
        let conn = self.conns.get_mut(&id).expect("inserted");
        let mut holders = Holders(&mut self.held);
        for o in &s.owners {
            holders.add(conn, o.clone());
        }
        changes.push(Change::Opened(id));
    }

    /// Apply one kernel event.
    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<Change> {
        let mut changes = Vec::new();
        match ev.kind {
            Kind::Exit => self.on_exit(ev, &mut changes),
            Kind::Fork => self.on_fork(ev, &mut changes),
            Kind::FdFail => changes.push(Change::FdExhausted {
                tgid: ev.tgid.unwrap_or(0),
                comm: ev.comm.clone(),
                errno: -ev.ret,
                syscall: ev.syscall.map(|s| s.name()).unwrap_or("unknown"),
                ts_ns: ev.ts_ns,
            }),
            Kind::Use => {
                if let Some(conn) = self.by_sk.get(&ev.sk).and_then(|id| self.conns.get_mut(id)) {
                    absorb_use(conn, ev.sock_use);
                    conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                    if conn.never_held() {
                        if let Some(o) = event_owner(ev) {
                            Holders(&mut self.held).add(conn, o);
                        }
                    }
                } else {
                    self.unmatched += 1;
                }
            }
            Kind::State => self.on_state(ev, &mut changes),
            Kind::Accept | Kind::Claim => {
                if let Some((id, _)) = self.find_or_open(ev, &mut changes) {
                    let conn = self.conns.get_mut(&id).expect("found");
                    conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                    if ev.kind == Kind::Accept {
                        conn.role = Role::Server;
                    }
                    if let Some(o) = event_owner(ev) {
                        if ev.kind == Kind::Accept || conn.never_held() {
                            Holders(&mut self.held).add(conn, o);
                        }
                    }
                }
            }
            Kind::FdClose => self.on_fd_close(ev, &mut changes),
        }
        changes
    }

    /// Refresh use counters read from the kernel map (polling, for idle time).
    pub fn update_use(&mut self, sk: u64, usage: Use) {
        if let Some(conn) = self.by_sk.get(&sk).and_then(|id| self.conns.get_mut(id)) {
            absorb_use(conn, usage);
        }
    }

    fn on_fd_close(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let id = self
            .by_sk
            .get(&ev.sk)
            .copied()
            .or_else(|| self.tuple_of(ev).and_then(|k| self.by_tuple.get(&k).copied()));
        let Some(conn) = id.and_then(|id| self.conns.get_mut(&id)) else {
            // A socket that already ended (reset by the peer) or that we never saw.
            return self.mark_closed_fd(ev);
        };
        conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
        let closer = ev.tgid.unwrap_or(0);
        let mut holders = Holders(&mut self.held);
        let gone = match holders.remove(conn, closer, ev.fd) {
            Some(gone) => gone,
            // Nobody was known to hold it: the closer did.
            None if conn.holders.is_empty() => Owner {
                tgid: closer,
                comm: ev.comm.clone(),
                fd: ev.fd,
            },
            // A process we did not know held it let go: the known holders still have it.
            None => return,
        };
        if conn.holders.is_empty() && conn.fd_closed_ns.is_none() {
            conn.former = Some(gone);
            conn.fd_closed_ns = Some(ev.ts_ns);
            changes.push(Change::FdClosed {
                id: conn.id,
                ts_ns: ev.ts_ns,
            });
        }
    }

    fn on_state(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let (Some(new), old) = (ev.new_state, ev.old_state) else {
            self.unmatched += 1;
            return;
        };
        let id = match self.by_sk.get(&ev.sk).copied() {
            // A birth at an address we still track: a new socket. The old one's end was
            // never seen (it would have left the model at CLOSE).
            Some(id) if is_birth(old, new) => {
                self.finish(id, ev.ts_ns, changes);
                changes.push(Change::Corrected(Correction::Reborn));
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
        conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
        if conn.never_held() {
            if let Some(o) = event_owner(ev) {
                Holders(&mut self.held).add(conn, o);
            }
        } else if let Some(o) = event_owner(ev).filter(|o| o.fd.is_some()) {
            // The kernel learned the fd later (connect's fd, accept): fill, never replace.
            if let Some(h) = conn.holders.iter_mut().find(|h| h.tgid == o.tgid && h.fd.is_none()) {
                h.fd = o.fd;
            }
        }
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
        if let (Some(local), Some(remote)) = (ev.local, ev.remote) {
            self.learn_tuple_of(id, local, remote);
        }
    }

    fn learn_tuple_of(&mut self, id: ConnId, local: SocketAddr, remote: SocketAddr) {
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
            && matches!((ev.old_state, ev.new_state), (Some(o), Some(n)) if is_birth(Some(o), n));
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
        let id = self.insert(
            Conn {
                id: 0,
                sk: Some(ev.sk),
                netns: ev.netns,
                local: key.1,
                remote: key.2,
                role: ev.role,
                holders: Vec::new(),
                former: None,
                opened_ns: ev.ts_ns,
                age_exact: born_here && ev.kind == Kind::State,
                state,
                state_since_ns: ev.ts_ns,
                path: vec![(state, ev.ts_ns)],
                fd_closed_ns: None,
                usage: ev.sock_use,
                // The kernel starts counting at accept() too, before any data.
                exchanges_known: self.use_counting && (born_here && ev.kind == Kind::State || ev.kind == Kind::Accept),
                touched_ns: ev.ts_ns,
            },
            changes,
        );
        if let Some(o) = event_owner(ev) {
            let conn = self.conns.get_mut(&id).expect("inserted");
            Holders(&mut self.held).add(conn, o);
        }
        changes.push(Change::Opened(id));
        Some((id, true))
    }

    fn insert(&mut self, mut conn: Conn, changes: &mut Vec<Change>) -> ConnId {
        if self.max_conns > 0 && self.conns.len() >= self.max_conns {
            self.evict_one(changes);
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

    fn evict_one(&mut self, changes: &mut Vec<Change>) {
        let victim = self.conns.values().min_by_key(|c| c.last_activity_ns()).map(|c| c.id);
        if let Some(id) = victim {
            self.remove(id);
            self.evicted += 1;
            changes.push(Change::Evicted);
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
        Holders(&mut self.held).drop_all(&conn);
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

    /// A traced process forked: the child holds a copy of every socket the parent holds, at
    /// the same fds.
    fn on_fork(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let (Some(parent), Some(child)) = (ev.tgid, ev.child) else {
            self.unmatched += 1;
            return;
        };
        if self.holds_any(parent) {
            let mut holders = Holders(&mut self.held);
            for conn in self.conns.values_mut().filter(|c| c.held_by(parent)) {
                let copies: Vec<Owner> = conn
                    .holders
                    .iter()
                    .filter(|h| h.tgid == parent)
                    .map(|h| Owner {
                        tgid: child,
                        ..h.clone()
                    })
                    .collect();
                for copy in copies {
                    holders.add(conn, copy);
                }
                conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
            }
        }
        changes.push(Change::Forked {
            parent,
            child,
            comm: ev.comm.clone(),
            ts_ns: ev.ts_ns,
        });
    }

    /// Process exit closes every fd it held; a socket another process still holds lives on.
    fn on_exit(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let Some(tgid) = ev.tgid else {
            return;
        };
        if self.holds_any(tgid) {
            let mut holders = Holders(&mut self.held);
            for conn in self.conns.values_mut().filter(|c| c.held_by(tgid)) {
                let mut gone = None;
                while let Some(g) = holders.remove(conn, tgid, None) {
                    gone = Some(g);
                }
                conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                if conn.holders.is_empty() && conn.fd_closed_ns.is_none() {
                    conn.former = gone;
                    conn.fd_closed_ns = Some(ev.ts_ns);
                    changes.push(Change::FdClosed {
                        id: conn.id,
                        ts_ns: ev.ts_ns,
                    });
                }
            }
        }
        changes.push(Change::ProcessExit {
            tgid,
            comm: ev.comm.clone(),
            status: ev.ret,
            ts_ns: ev.ts_ns,
        });
    }
}

/// connect, listen, or a listener's child: a new socket at this kernel address.
fn is_birth(old: Option<TcpState>, new: TcpState) -> bool {
    matches!(
        (old, new),
        (Some(TcpState::Close), TcpState::SynSent | TcpState::Listen) | (Some(TcpState::Listen), TcpState::SynRecv)
    )
}

/// States the model keeps: TIME_WAIT sockets are not full sockets (the kernel reports no
/// transition when they expire) and CLOSE ones are not connections (bound, or reset and not
/// yet closed by their holder).
fn modelled(state: TcpState) -> bool {
    !matches!(state, TcpState::TimeWait | TcpState::Close | TcpState::NewSynRecv)
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
            syscall: None,
            child: None,
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
            c.conn.owner().unwrap().tgid,
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
        assert_eq!(m.by_sk(7).unwrap().owner(), None);
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
            owners: vec![Owner {
                tgid: 300,
                comm: "leaky".into(),
                fd: Some(9),
            }],
            usage: Use::default(),
        };
        assert_eq!(m.apply_snapshot(std::slice::from_ref(&seen), 1000, 1000).len(), 1);
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
        m.apply_snapshot(&[seen], 3000, 3000);
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
            owners: vec![Owner {
                tgid: 100,
                comm: "app".into(),
                fd: Some(5),
            }],
            usage: Use::default(),
        };
        let ch = m.reconcile(&[still], 100, 100);
        assert_eq!(ch, vec![Change::Corrected(Correction::Vanished)]);
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
            owners: vec![Owner {
                tgid: 7,
                comm: "srv".into(),
                fd: Some(3),
            }],
            usage: Use::default(),
        };
        m.apply_snapshot(&[listener], 0, 0);
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

    fn proc_event(kind: Kind, ts: u64, tgid: u32) -> KernelEvent {
        let mut e = state(ts, 0, Some(tgid), Close, Close, "0.0.0.0:0", "0.0.0.0:0");
        e.kind = kind;
        e.local = None;
        e.remote = None;
        e.old_state = None;
        e.new_state = None;
        e.fd = None;
        e
    }

    fn fork(ts: u64, parent: u32, child: u32) -> KernelEvent {
        let mut e = proc_event(Kind::Fork, ts, parent);
        e.child = Some(child);
        e
    }

    fn close_fd(ts: u64, sk: u64, tgid: u32, fd: i32) -> KernelEvent {
        let mut e = proc_event(Kind::FdClose, ts, tgid);
        e.sk = sk;
        e.fd = Some(fd);
        e
    }

    fn server_conn(m: &mut Model, sk: u64, tgid: u32, fd: i32, l: &str, r: &str) {
        m.apply(&state(10, sk, None, Listen, SynRecv, l, r));
        let mut acc = state(11, sk, Some(tgid), SynRecv, Established, l, r);
        acc.kind = Kind::Accept;
        acc.role = Role::Server;
        acc.fd = Some(fd);
        m.apply(&acc);
    }

    /// ForkingTCPServer: the parent accepts, forks, closes its copy; the child holds it.
    #[test]
    fn fork_per_connection_server_leaves_the_socket_on_the_child() {
        let mut m = Model::new(0, true);
        server_conn(&mut m, 7, 100, 4, "10.0.0.1:80", "10.0.0.2:5000");
        m.apply(&fork(20, 100, 101));
        let ch = m.apply(&close_fd(21, 7, 100, 4));
        assert!(ch.is_empty(), "the child still holds it: {ch:?}");
        let c = m.by_sk(7).unwrap();
        assert_eq!((c.tgid(), c.fd(), c.fd_closed_ns), (Some(101), Some(4), None));
        assert!(!c.held_by(100));
        // The peer closes: the finding would name the child.
        m.apply(&state(
            30,
            7,
            Some(100),
            Established,
            CloseWait,
            "10.0.0.1:80",
            "10.0.0.2:5000",
        ));
        assert_eq!(m.by_sk(7).unwrap().tgid(), Some(101));
        // The child exits: now the fd is closed, and the child is the one that let go.
        let ch = m.apply(&proc_event(Kind::Exit, 40, 101));
        assert!(ch.iter().any(|c| matches!(c, Change::FdClosed { .. })));
        let c = m.by_sk(7).unwrap();
        assert_eq!((c.tgid(), c.fd_closed_ns), (Some(101), Some(40)));
        assert!(!m.holds_any(100) && !m.holds_any(101));
    }

    #[test]
    fn a_fork_of_a_process_without_sockets_changes_nothing() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        m.apply(&fork(20, 555, 556));
        assert_eq!(m.by_sk(1).unwrap().holders.len(), 1);
    }

    /// A kernel address reused for a new connection whose predecessor's close was missed.
    #[test]
    fn birth_at_a_known_address_is_a_new_connection_and_a_counted_correction() {
        let mut m = Model::new(0, true);
        server_conn(&mut m, 9, 100, 4, "10.0.0.1:80", "10.0.0.2:5000");
        let ch = client_path(&mut m, 9, "10.0.0.1:6000");
        assert!(ch.contains(&Change::Corrected(Correction::Reborn)), "{ch:?}");
        let c = m.by_sk(9).unwrap();
        assert_eq!(
            c.path.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![SynSent, Established],
            "histories never merge"
        );
        assert_eq!((c.tgid(), c.role), (Some(100), Role::Client));
        assert_eq!(m.closed.len(), 1);
    }

    fn seen(l: &str, r: &str, st: TcpState, owners: &[(u32, i32)]) -> SeenSocket {
        SeenSocket {
            netns: 1,
            local: addr(l),
            remote: addr(r),
            state: st,
            role: Role::Client,
            owners: owners
                .iter()
                .map(|&(tgid, fd)| Owner {
                    tgid,
                    comm: "app".into(),
                    fd: Some(fd),
                })
                .collect(),
            usage: Use::default(),
        }
    }

    #[test]
    fn reconcile_corrects_state_holders_and_adds_what_was_missed() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        client_path(&mut m, 2, "10.0.0.2:5001");
        let view = [
            seen("10.0.0.2:5000", "10.0.0.1:80", CloseWait, &[(100, 5)]),
            seen("10.0.0.2:5001", "10.0.0.1:80", Established, &[(100, 5), (101, 5)]),
            seen("10.0.0.2:5002", "10.0.0.1:80", Established, &[(100, 8)]),
            seen("10.0.0.2:5003", "10.0.0.1:80", TimeWait, &[]),
        ];
        let mut got: Vec<Change> = m.reconcile(&view, 100, 110);
        got.retain(|c| matches!(c, Change::Corrected(_)));
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![
                Change::Corrected(Correction::Appeared),
                Change::Corrected(Correction::Holders),
                Change::Corrected(Correction::State),
            ]
        );
        assert_eq!(m.by_sk(1).unwrap().state, CloseWait);
        assert_eq!(m.by_sk(2).unwrap().tgid(), Some(101));
        assert_eq!(m.len(), 3);
        // The same view again: nothing left to correct.
        let again: Vec<_> = m
            .reconcile(&view, 200, 210)
            .into_iter()
            .filter(|c| matches!(c, Change::Corrected(_)))
            .collect();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn reconcile_leaves_alone_what_changed_while_the_view_was_taken() {
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        // Closed at 60, after the view began at 50: the view still lists it.
        m.apply(&state(60, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
        // Opened at 55: the view (from 50) may not list it.
        m.apply(&state(55, 3, Some(100), Close, SynSent, "10.0.0.2:0", "10.0.0.1:80"));
        m.apply(&state(
            56,
            3,
            Some(100),
            SynSent,
            Established,
            "10.0.0.2:5009",
            "10.0.0.1:80",
        ));
        let view = [seen("10.0.0.2:5000", "10.0.0.1:80", Established, &[(100, 5)])];
        let ch = m.reconcile(&view, 50, 70);
        assert!(ch.is_empty(), "{ch:?}");
        assert_eq!(m.len(), 1);
    }

    /// A connection opened while connlife attached: its events and the snapshot name it once.
    #[test]
    fn attach_race_connection_counted_once() {
        let mut m = Model::new(0, true);
        // Still connecting when the events were drained (local port unknown).
        m.apply(&state(10, 1, Some(100), Close, SynSent, "10.0.0.2:0", "10.0.0.1:80"));
        let view = [seen("10.0.0.2:5000", "10.0.0.1:80", Established, &[(100, 5)])];
        m.apply_snapshot(&view, 5, 20);
        assert_eq!(m.len(), 1);
        m.apply(&state(
            21,
            1,
            Some(100),
            SynSent,
            Established,
            "10.0.0.2:5000",
            "10.0.0.1:80",
        ));
        assert_eq!(m.len(), 1);
        assert!(m.by_sk(1).unwrap().age_exact);
        // And a connection closed among the drained events is not brought back.
        let mut m = Model::new(0, true);
        client_path(&mut m, 1, "10.0.0.2:5000");
        m.apply(&state(30, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
        m.apply_snapshot(&view, 25, 40);
        assert!(m.is_empty());
    }

    #[test]
    fn unaccepted_connection_is_held_by_nobody() {
        let mut m = Model::new(0, true);
        m.apply(&state(10, 7, None, Listen, SynRecv, "10.0.0.1:80", "10.0.0.2:5000"));
        m.apply(&state(
            11,
            7,
            None,
            SynRecv,
            Established,
            "10.0.0.1:80",
            "10.0.0.2:5000",
        ));
        m.apply(&state(
            12,
            7,
            None,
            Established,
            CloseWait,
            "10.0.0.1:80",
            "10.0.0.2:5000",
        ));
        let c = m.by_sk(7).unwrap();
        assert!(c.never_held());
        assert_eq!(c.tgid(), None);
    }
}
