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
//!
//! Size: an agent tracks up to 200,000 connections by default, so a connection is a [`Conn`] of
//! 192 bytes stored by value in chunks of slots (conns/store.rs: its id names its slot), with
//! addresses packed (16 bytes for IPv4 ends), one 16-byte holder and two 8-byte states inline
//! and process names interned, found by socket or by tuple through indexes that hold 4-byte
//! slots only (conns/index.rs). `tests/model_memory.rs` measures it.
use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    num::NonZeroU64,
    sync::Arc,
};

// FxHash: the maps are keyed by kernel pointers and tuples, not by untrusted input, and the
// event path hashes several times per event.
use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::kernel::event::{BirthOrigin, KernelEvent, Kind, Role, TcpState, Use};

mod addr;
mod events;
mod holders;
mod index;
mod path;
mod reconcile;
mod store;

/// The most live connections the model can hold (`--max-conns` may not ask for more).
pub use store::MAX_SLOTS as MAX_CONNS;
#[cfg(test)]
mod tests;

use addr::{Ends, PackedAddr};
use holders::{Comms, Holders};
use index::{Conns, Index};
pub use path::StatePath;

pub type ConnId = u64;
/// A connection's holders: one inline, more spill to the heap.
pub type HolderList = SmallVec<[Owner; 1]>;

/// A process holding a socket. Recorded only where it is the running task (connect, accept,
/// close, first send/recv), from a fork of a holder, or from /proc; never from a softirq's
/// `current`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub tgid: u32,
    pub comm: Comm,
    pub fd: MaybeFd,
}

/// An fd, or none known, in 4 bytes (`Option<i32>` takes 8: a holder is 16 bytes instead of
/// 24). No fd is negative, so a negative value stands for none. Written and read as the
/// `Option<i32>` it stands for.
#[derive(Copy, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<i32>", into = "Option<i32>")]
pub struct MaybeFd(i32);

impl MaybeFd {
    pub const NONE: MaybeFd = MaybeFd(-1);
    pub fn get(self) -> Option<i32> {
        (self.0 >= 0).then_some(self.0)
    }
    pub fn is_some(self) -> bool {
        self.0 >= 0
    }
    pub fn is_none(self) -> bool {
        self.0 < 0
    }
}

impl From<Option<i32>> for MaybeFd {
    fn from(fd: Option<i32>) -> Self {
        MaybeFd(fd.filter(|&fd| fd >= 0).unwrap_or(-1))
    }
}

impl From<MaybeFd> for Option<i32> {
    fn from(fd: MaybeFd) -> Self {
        fd.get()
    }
}

impl PartialEq<Option<i32>> for MaybeFd {
    fn eq(&self, other: &Option<i32>) -> bool {
        self.get() == *other
    }
}

impl std::fmt::Debug for MaybeFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// A process name, shared by every connection of the process (one copy each, interned by the
/// model): one pointer in a holder, no string of its own.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Comm(Arc<String>);

impl std::ops::Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Comm {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Comm {
    fn from(name: &str) -> Self {
        Comm(Arc::new(name.to_string()))
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conn {
    pub id: ConnId,
    /// The kernel's socket address (never 0), once known: read it with [`Conn::sk`].
    sk: Option<NonZeroU64>,
    pub netns: u32,
    /// Packed, 16 bytes for IPv4: read them with [`Conn::local`] and [`Conn::remote`].
    #[serde(flatten)]
    ends: Ends,
    pub role: Role,
    /// Processes that have it open now, oldest first (bounded). Inline for the common single
    /// holder: no allocation per connection.
    pub holders: HolderList,
    /// The last holder that let go, when none is left (closed records, post-mortems); boxed:
    /// most live connections have none, and 8 bytes for those instead of 24.
    pub former: Option<Box<Owner>>,
    /// When it opened, or when connlife first saw it if `age_exact` is false (a lower bound).
    pub opened_ns: u64,
    pub age_exact: bool,
    pub state: TcpState,
    pub state_since_ns: u64,
    /// States passed through, with the time each was entered (bounded). Inline for the two
    /// states of an open connection (SYN_SENT or SYN_RECV, then ESTABLISHED).
    pub path: StatePath,
    /// When the last holder closed its fd (close(), or process exit): read it with
    /// [`Conn::fd_closed_ns`] (8 bytes, not `Option<u64>`'s 16).
    #[serde(rename = "fd_closed_ns")]
    fd_closed: Option<NonZeroU64>,
    pub usage: Use,
    /// Exchanges counted since the connection opened (false: it predates connlife, or this
    /// kernel lacks the send/recv tracepoints).
    pub exchanges_known: bool,
    /// Last input that touched it (event, fork, exit): reconciliation leaves alone what
    /// changed while the kernel's view was being taken.
    pub touched_ns: u64,
    /// Where it was born: read it with [`Conn::origin`].
    #[serde(default, skip_serializing_if = "BornAt::is_unknown")]
    origin: BornAt,
}

/// Where a connection was born, in 24 bytes instead of `Option<(u32, BirthOrigin)>`'s 40: the
/// process, the stack ids (`NO_STACK`: none; the kernel's ids fit in an i32) and the transport
/// (0: none, as in the kernel's record). Written and read as the `Option` it stands for.
#[derive(Copy, Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "Option<(u32, BirthOrigin)>", into = "Option<(u32, BirthOrigin)>")]
struct BornAt {
    known: bool,
    pid: u32,
    stack: u32,
    request_stack: u32,
    transport: u64,
}

const NO_STACK: u32 = u32::MAX;

impl BornAt {
    fn is_unknown(&self) -> bool {
        !self.known
    }
}

impl From<Option<(u32, BirthOrigin)>> for BornAt {
    fn from(origin: Option<(u32, BirthOrigin)>) -> Self {
        match origin {
            None => BornAt::default(),
            Some((pid, o)) => BornAt {
                known: true,
                pid,
                stack: o.stack.unwrap_or(NO_STACK),
                request_stack: o.request_stack.unwrap_or(NO_STACK),
                transport: o.transport.unwrap_or(0),
            },
        }
    }
}

impl From<BornAt> for Option<(u32, BirthOrigin)> {
    fn from(b: BornAt) -> Self {
        let id = |v: u32| (v != NO_STACK).then_some(v);
        b.known.then_some((
            b.pid,
            BirthOrigin {
                stack: id(b.stack),
                request_stack: id(b.request_stack),
                transport: (b.transport != 0).then_some(b.transport),
            },
        ))
    }
}

impl Conn {
    pub fn sk(&self) -> Option<u64> {
        self.sk.map(NonZeroU64::get)
    }
    pub fn local(&self) -> SocketAddr {
        self.ends.local().get()
    }
    pub fn remote(&self) -> SocketAddr {
        self.ends.remote().get()
    }
    /// Where it was born: the process that opened it and the stack ids taken then (resolved
    /// by [`crate::model::origins::Stacks`]); `None` when it predates connlife or origins are off.
    pub fn origin(&self) -> Option<(u32, BirthOrigin)> {
        self.origin.into()
    }
    fn key(&self) -> TupleKey {
        (self.netns, self.ends.local(), self.ends.remote())
    }
    /// Last sign of life: a state change, a send or a receive.
    pub fn last_activity_ns(&self) -> u64 {
        self.state_since_ns
            .max(self.usage.last_send_ns)
            .max(self.usage.last_recv_ns)
    }
    /// The holder findings name first: the newest one (a forked child that serves the
    /// connection, or the process that accepted it), else the last that let go.
    pub fn owner(&self) -> Option<&Owner> {
        self.holders.last().or(self.former.as_deref())
    }
    pub fn tgid(&self) -> Option<u32> {
        self.owner().map(|o| o.tgid)
    }
    pub fn fd(&self) -> Option<i32> {
        self.owner().and_then(|o| o.fd.get())
    }
    pub fn comm(&self) -> &str {
        self.owner().map(|o| &*o.comm).unwrap_or("")
    }
    pub fn held_by(&self, tgid: u32) -> bool {
        self.holders.iter().any(|h| h.tgid == tgid)
    }
    /// Never held by any process: an accepted connection still in its listener's queue.
    /// When the last holder closed its fd, if it has.
    pub fn fd_closed_ns(&self) -> Option<u64> {
        self.fd_closed.map(NonZeroU64::get)
    }
    fn set_fd_closed(&mut self, ts_ns: u64) {
        self.fd_closed = NonZeroU64::new(ts_ns.max(1));
    }
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
    /// A connection ended: it is the newest of [`Model::closed`] with this id (looked up there
    /// rather than copied into the change).
    Closed(ConnId),
    ProcessExit {
        tgid: u32,
        comm: String,
        status: i32,
        ts_ns: u64,
        /// Live connections it held when it ended.
        held: u32,
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
    /// Inline for one: no allocation of its own per socket of a view.
    pub owners: HolderList,
    pub usage: Use,
}

const MAX_PATH: usize = 16;
const MAX_CLOSED: usize = 4096;
const MAX_HOLDERS: usize = 16;
/// A connect or handshake still unfinished after this long is not "in flux" any more.
const IN_FLUX_NS: u64 = 300_000_000_000;

/// (netns, local, remote), packed: 44 bytes instead of 72.
type TupleKey = (u32, PackedAddr, PackedAddr);

fn tuple_key(netns: u32, local: SocketAddr, remote: SocketAddr) -> TupleKey {
    (netns, local.into(), remote.into())
}

#[derive(Default)]
pub struct Model {
    /// By value in chunks of slots, an id naming its slot (see `store`).
    conns: Conns,
    by_sk: Index<u64>,
    by_tuple: Index<TupleKey>,
    /// How many live connections each process holds (fork and exit skip the scan at 0).
    held: HashMap<u32, u32>,
    /// Process names, one copy each, shared by their holders.
    comms: Comms,
    /// Recently closed connections, oldest first (bounded).
    pub closed: VecDeque<ClosedConn>,
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

/// The owner an event names, its process name interned (no copy of its own).
fn event_owner(ev: &KernelEvent, comms: &mut Comms) -> Option<Owner> {
    ev.tgid.map(|tgid| Owner {
        tgid,
        comm: comms.intern(&ev.comm),
        fd: ev.fd.into(),
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

pub fn end_reason(path: &StatePath) -> EndReason {
    use TcpState::*;
    let states = || path.iter().map(|(s, _)| s);
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

impl Model {
    pub fn new(max_conns: usize, use_counting: bool) -> Self {
        Model {
            max_conns,
            use_counting,
            ..Default::default()
        }
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }
    pub fn by_sk(&self, sk: u64) -> Option<&Conn> {
        self.by_sk.get(&sk, &self.conns).and_then(|id| self.conns.get(&id))
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

    /// Approximate heap cost of one live connection, for the README and the bench (measured:
    /// `tests/model_memory.rs`).
    pub fn bytes_per_conn() -> usize {
        // An index's slot: its entry and one control byte, and free slots (an eighth to a half
        // of the table, by when it last grew) about half as many again.
        let slot = |entry: usize| (entry + 1) * 3 / 2;
        // The connection in its store's slot, and its entries in the socket and tuple indexes.
        std::mem::size_of::<Option<Conn>>() + 2 * slot(std::mem::size_of::<u32>())
    }

    /// Apply one kernel event.
    pub fn apply(&mut self, ev: &KernelEvent) -> Vec<Change> {
        let mut changes = Vec::new();
        self.apply_into(ev, &mut changes);
        changes
    }

    /// [`Model::apply`] appending to `changes` (a buffer the caller keeps: no allocation per
    /// event).
    pub fn apply_into(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        match ev.kind {
            Kind::Exit => self.on_exit(ev, changes),
            Kind::Fork => self.on_fork(ev, changes),
            // A new binary in the same process: its sockets stay (the driver places Go's
            // uprobes on the new binary).
            Kind::Exec => {}
            Kind::FdFail => changes.push(Change::FdExhausted {
                tgid: ev.tgid.unwrap_or(0),
                comm: ev.comm.to_string(),
                errno: -ev.ret,
                syscall: ev.syscall.map(|s| s.name()).unwrap_or("unknown"),
                ts_ns: ev.ts_ns,
            }),
            Kind::Use => {
                if let Some(conn) = self
                    .by_sk
                    .get(&ev.sk, &self.conns)
                    .and_then(|id| self.conns.get_mut(&id))
                {
                    absorb_use(conn, ev.sock_use);
                    conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                    if conn.never_held() {
                        if let Some(o) = event_owner(ev, &mut self.comms) {
                            Holders {
                                held: &mut self.held,
                                comms: &mut self.comms,
                            }
                            .add(conn, o);
                        }
                    }
                } else {
                    self.unmatched += 1;
                }
            }
            Kind::State => self.on_state(ev, changes),
            Kind::Accept | Kind::Claim => {
                if let Some((id, _)) = self.find_or_open(ev, changes) {
                    let conn = self.conns.get_mut(&id).expect("found");
                    conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                    if ev.kind == Kind::Accept {
                        conn.role = Role::Server;
                        // accept() names the server's code: the connection was born in softirq.
                        if let (Some(origin), Some(pid)) = (ev.origin, ev.tgid) {
                            conn.origin = Some((pid, origin)).into();
                        }
                    }
                    if let Some(o) = event_owner(ev, &mut self.comms) {
                        if ev.kind == Kind::Accept || conn.never_held() {
                            Holders {
                                held: &mut self.held,
                                comms: &mut self.comms,
                            }
                            .add(conn, o);
                        }
                    }
                }
            }
            Kind::FdClose => self.on_fd_close(ev, changes),
        }
    }

    /// Refresh use counters read from the kernel map (polling, for idle time).
    pub fn update_use(&mut self, sk: u64, usage: Use) {
        if let Some(conn) = self.by_sk.get(&sk, &self.conns).and_then(|id| self.conns.get_mut(&id)) {
            absorb_use(conn, usage);
        }
    }

    fn insert(&mut self, conn: Conn, changes: &mut Vec<Change>) -> ConnId {
        let full = self.max_conns > 0 && self.conns.len() >= self.max_conns;
        if full || self.conns.len() >= store::MAX_SLOTS {
            self.evict_one(changes);
        }
        let (sk, key, state) = (conn.sk(), conn.key(), conn.state);
        let id = self.conns.insert(conn);
        if let Some(sk) = sk {
            self.by_sk.insert(sk, id, &self.conns);
        }
        if tuple_complete(&key, state) {
            self.by_tuple.insert(key, id, &self.conns);
        }
        id
    }

    fn evict_one(&mut self, changes: &mut Vec<Change>) {
        // The least recently active; the oldest among equals (ids sort by age).
        let victim = self
            .conns
            .values()
            .min_by_key(|c| (c.last_activity_ns(), c.id))
            .map(|c| c.id);
        if let Some(id) = victim {
            self.remove(id);
            self.evicted += 1;
            changes.push(Change::Evicted);
        }
    }

    fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(sk) = conn.sk() {
            self.by_sk.remove(&sk, id);
        }
        let key = conn.key();
        self.by_tuple.remove(&key, id);
        Holders {
            held: &mut self.held,
            comms: &mut self.comms,
        }
        .drop_all(&conn);
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
        let id = closed.conn.id;
        self.closed.push_back(closed);
        changes.push(Change::Closed(id));
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
