//! The one definition of every record that crosses the kernel/user boundary: the ring-buffer
//! [`Event`], the per-socket state kept in the kernel ([`SockInfo`]), the start-up [`Config`]
//! (tracepoint field offsets and kernel struct offsets found at run time), and the names of maps
//! and programs. `#![no_std]` so the eBPF crate can use it; the `user` feature adds `aya::Pod`.
#![no_std]

use core::mem::size_of;

/// Map names, shared so that neither side types a string twice.
pub mod maps {
    /// Ring buffer of [`super::Event`].
    pub const EVENTS: &str = "EVENTS";
    /// `u64 sock pointer -> SockInfo`: one entry per traced TCP socket, deleted at TCP_CLOSE. A
    /// plain hash, not an LRU: on 6.18 under CPU load the LRU evicted live entries while far from
    /// full (their CLOSE then went unseen and uncounted); a full table is counted (`SocksFull`).
    pub const SOCKS: &str = "SOCKS";
    /// `u32 tgid -> u8`: processes to trace when `Config::filter_active` is set.
    pub const WANTED_TGIDS: &str = "WANTED_TGIDS";
    /// `u32 tgid % MAYBE_WANTED_SLOTS -> u8`, an array: 0 when no wanted tgid falls in that
    /// slot, so that an untraced process leaves the filter at one array load (inlined by the
    /// verifier) instead of a hash lookup; 1 sends it on to WANTED_TGIDS, which decides. Set
    /// wherever WANTED_TGIDS gains a tgid, never cleared (a stale 1 costs a lookup, not truth).
    pub const MAYBE_WANTED: &str = "MAYBE_WANTED";
    /// `u32 slot -> u32`, an array used only with a filter: how many SOCKS entries have a socket
    /// address that hashes to the slot ([`maybe_socks_slot`]), at least. The kernel adds 1
    /// before each insert and takes 1 after each delete of its own, so a 0 proves the socket is
    /// not in SOCKS: a change of an untraced socket leaves at one array load instead of a hash
    /// lookup. Any miscount errs high (a lookup more, never a socket missed).
    pub const MAYBE_SOCKS: &str = "MAYBE_SOCKS";
    /// `u32 0 -> i64`: sockets put in PRESEED by userspace and not yet adopted, at least (the
    /// kernel takes 1 per adoption). At 0 a socket SOCKS does not know is not read for its cookie.
    /// It reaches 0 only when every seed has been adopted: a process with an idle socket or a
    /// listener at start keeps it above (and each reconciliation seeds again), so this saves the
    /// read mostly where nothing was there at start.
    pub const SEEDS_PENDING: &str = "SEEDS_PENDING";
    /// `[u8; 16] comm -> u8`: process names to trace (a match adds the tgid to WANTED_TGIDS).
    pub const WANTED_COMMS: &str = "WANTED_COMMS";
    /// `u32 port -> u8`, an array of every port: 1 for a listening port of a wanted process, so
    /// its accepted children are traced from SYN_RECV on, before accept() names the owner (an
    /// array load where a hash lookup was: every SYN_RECV on the host is checked).
    pub const LISTEN_PORTS: &str = "LISTEN_PORTS";
    /// `u64 socket cookie -> Seed`: sockets found by the start-up snapshot, with their owner;
    /// moved into SOCKS the first time the kernel sees the socket.
    pub const PRESEED: &str = "PRESEED";
    /// `u32 tid -> ConnectCall` between sys_enter_connect and the SYN_SENT transition.
    pub const CONNECT_FDS: &str = "CONNECT_FDS";
    /// `u32 id -> UserStack`: user stacks walked at a connection's birth (connect, accept) and
    /// at Go's `(*Transport).roundTrip`; [`super::Origin`] holds their ids.
    pub const STACKS: &str = "STACKS";
    /// `u64 goroutine (g) -> GoRequest`, LRU: set at `net/http.(*Transport).roundTrip` on the
    /// goroutine that makes the request.
    pub const GO_REQUESTS: &str = "GO_REQUESTS";
    /// `u64 *wantConn -> GoRequest`, LRU: the request handed to a dial at `queueForDial`.
    pub const GO_WANTS: &str = "GO_WANTS";
    /// `u64 goroutine (g) -> GoRequest`, LRU: the dial goroutine's request, from `dialConnFor`.
    pub const GO_DIALS: &str = "GO_DIALS";
    /// `u32 tid -> GoPendingConnect`, LRU: set at `net.(*netFD).connect`, consumed by the
    /// connect syscall on the same thread.
    pub const GO_PENDING: &str = "GO_PENDING";
    /// Per-CPU `u64` counters indexed by [`super::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// Per-CPU count of `floor_count` runs (the benchmark's separate `connlife-floor` object).
    pub const FLOOR: &str = "FLOOR";
}

/// Name of the global holding [`Config`] in the eBPF object.
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Sizes of the kernel maps. The LRU maps (not SOCKS) evict the oldest entry when full (an
/// eviction we cannot see; the agent notices through missing sockets).
pub const MAX_SOCKS: u32 = 262_144;
pub const MAX_WANTED: u32 = 4096;
/// Bytes of x86-64's `struct pt_regs`, read at once by the programs; a kernel whose registers
/// are not that (another architecture) has `Config::regs_size` OFFSET_ABSENT.
pub const REGS_BYTES: u32 = 168;

/// Is the fd of a socket reaching SYN_SENT read from the syscall's saved registers (x86-64
/// with `pt_regs` in BTF), so that sys_enter_connect need not run for every connect on the host?
pub fn connect_from_regs(config: &Config) -> bool {
    config.regs_size != OFFSET_ABSENT
}

/// Slots of [`maps::MAYBE_WANTED`] (a power of two: the slot is `tgid & (SLOTS - 1)`).
pub const MAYBE_WANTED_SLOTS: u32 = 4096;
/// Slots of [`maps::MAYBE_SOCKS`], as a power of two: 65,536 counts (512 KiB of kernel memory:
/// an array map rounds each value up to 8 bytes).
pub const MAYBE_SOCKS_BITS: u32 = 16;
pub const MAYBE_SOCKS_SLOTS: u32 = 1 << MAYBE_SOCKS_BITS;

/// The slot of [`maps::MAYBE_SOCKS`] for a socket's kernel address: the top bits of a
/// multiplicative (Fibonacci) hash, which spreads the slab's evenly spaced addresses.
#[inline(always)]
pub fn maybe_socks_slot(sk: u64) -> u32 {
    (sk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MAYBE_SOCKS_BITS)) as u32
}
/// Entries of [`maps::LISTEN_PORTS`]: one per port (512 KiB of kernel memory: an array map
/// rounds each value up to 8 bytes). Keyed by port only, as before: a wanted listener's close
/// clears the port for another wanted listener on it (SO_REUSEPORT, v4 and v6, another netns).
pub const LISTEN_PORT_SLOTS: u32 = 65_536;
pub const MAX_PRESEED: u32 = 131_072;
pub const MAX_CONNECT_FDS: u32 = 8192;
/// Entries of [`maps::STACKS`]. A stack whose id (31 bits of its hash) is taken by another
/// stack is not stored (an id userspace may still read is never overwritten) and counted as
/// [`Counter::StackMissed`], as is one that finds the map full. Userspace frees ids it is done
/// with.
pub const MAX_STACKS: u32 = 16_384;
/// Frames kept per stack: the instruction pointer, then up to 125 return addresses (the
/// kernel's own walk keeps 127).
pub const STACK_FRAMES: usize = 126;
/// Entries of each Go request-tracking map ([`maps::GO_REQUESTS`] and the others).
pub const MAX_GO_TRACKED: u32 = 16_384;
pub const RING_BYTES: u32 = 4 << 20;
/// The kernel wakes the reader each time the data pending crosses a multiple of this; below
/// it the reader polls every [`RING_POLL_MS`] (so an event waits at most that long).
pub const WAKEUP_BYTES: u32 = 64 << 10;
pub const RING_POLL_MS: u64 = 20;

/// How a program attaches: a classic tracepoint (`category/name`, fields read at offsets from
/// its tracefs `format` file) or a raw tracepoint (`name`, the tracepoint's C arguments).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    TracePoint,
    RawTracePoint,
}

/// Every program of the product object: (program symbol, hook, tracepoint category, name).
/// The state and fork hooks are raw tracepoints: a classic tracepoint program is skipped (and
/// only counted in `recursion_misses`) whenever any other BPF program runs on that CPU, which is
/// common for `inet_sock_set_state` firing in softirq on top of a syscall program; a raw
/// tracepoint program is guarded per program instead (kernel/trace/bpf_trace.c,
/// `__bpf_trace_run`), and the second state program handles what that guard skips.
pub const PROGRAMS: &[(&str, Hook, &str, &str)] = &[
    (STATE_PROGRAM, Hook::RawTracePoint, "sock", "inet_sock_set_state"),
    // Attached after the main one, so it runs after it (see connlife-ebpf/src/state.rs).
    (STATE_PROGRAM_NESTED, Hook::RawTracePoint, "sock", "inet_sock_set_state"),
    ("sched_process_fork", Hook::RawTracePoint, "sched", "sched_process_fork"),
    (CONNECT_PROGRAM, Hook::TracePoint, "syscalls", "sys_enter_connect"),
    ("sys_enter_close", Hook::TracePoint, "syscalls", "sys_enter_close"),
    ("sys_enter_dup2", Hook::TracePoint, "syscalls", "sys_enter_dup2"),
    ("sys_enter_dup3", Hook::TracePoint, "syscalls", "sys_enter_dup3"),
    ("sys_exit_accept4", Hook::TracePoint, "syscalls", "sys_exit_accept4"),
    ("sys_exit_accept", Hook::TracePoint, "syscalls", "sys_exit_accept"),
    ("sys_exit_socket", Hook::TracePoint, "syscalls", "sys_exit_socket"),
    ("sys_exit_openat", Hook::TracePoint, "syscalls", "sys_exit_openat"),
    ("sched_process_exit", Hook::TracePoint, "sched", "sched_process_exit"),
    ("sched_process_exec", Hook::TracePoint, "sched", "sched_process_exec"),
    // Raw: they fire for every send and receive on the host, and a raw tracepoint reads its
    // arguments directly where a classic one first copies a record for every call.
    ("sock_send_length", Hook::RawTracePoint, "sock", "sock_send_length"),
    ("sock_recv_length", Hook::RawTracePoint, "sock", "sock_recv_length"),
];

/// The uprobes that carry a Go net/http request's origin to the dial that serves it, as
/// (program symbol, Go function). Go dials on a goroutine of the Transport, so the stack at
/// connect() shows only net/http; these follow the request from the caller's goroutine to the
/// connect syscall. All read Go's register ABI on amd64 (Go 1.17+): g in r14, then the
/// receiver and arguments in rax, rbx, rcx, rdi, rsi, r8...
pub const GO_PROGRAMS: &[(&str, &str)] = &[
    // The request goroutine: remember the Transport and the caller's stack per goroutine.
    ("go_transport_round_trip", "net/http.(*Transport).roundTrip"),
    // The request goroutine hands a *wantConn to a dial.
    ("go_transport_queue_for_dial", "net/http.(*Transport).queueForDial"),
    // The dial goroutine picks up the *wantConn.
    ("go_transport_dial_conn_for", "net/http.(*Transport).dialConnFor"),
    // The dial goroutine, right before connect(2) on the same thread.
    ("go_netfd_connect", "net.(*netFD).connect"),
];
/// Offset of `Sysfd` in Go's `net.netFD` (its first field `pfd poll.FD` starts with
/// `fdmu fdMutex{state uint64; rsema, wsema uint32}`, then `Sysfd int`), checked against the
/// DWARF of a Go 1.19 binary; unchanged since Go 1.9.
pub const GO_NETFD_SYSFD_OFFSET: u64 = 16;

/// sys_enter_connect: attached only where the fd of a connect is not read from its registers
/// ([`connect_from_regs`]).
pub const CONNECT_PROGRAM: &str = "sys_enter_connect";
/// The main state program, whose recursion misses the nested one rescues.
pub const STATE_PROGRAM: &str = "inet_sock_set_state";
/// The program that handles what [`STATE_PROGRAM`] is skipped for.
pub const STATE_PROGRAM_NESTED: &str = "inet_sock_set_state_nested";

/// The benchmark's floor program (in the separate `connlife-floor` object): counts
/// `sock/inet_sock_set_state` and nothing else.
pub const FLOOR_PROGRAM: &str = "floor_count";
/// The hook floor (`connlife floor --hooks`): the state hook's program (it counts), the one on
/// every other raw tracepoint and the one on every classic tracepoint (both empty).
pub const FLOOR_HOOKS_STATE: &str = "floor_hooks_state";
pub const FLOOR_HOOKS_RAW: &str = "floor_hooks_raw";
pub const FLOOR_HOOKS_CLASSIC: &str = "floor_hooks_classic";

/// Decodes a `#[repr]` enum from its wire value: `TryFrom<$repr>` returning the bad value.
macro_rules! wire_enum {
    ($name:ident: $repr:ty { $($variant:ident = $value:literal),+ $(,)? }) => {
        impl TryFrom<$repr> for $name {
            type Error = $repr;
            fn try_from(v: $repr) -> Result<Self, $repr> {
                match v {
                    $($value => Ok(Self::$variant),)+
                    other => Err(other),
                }
            }
        }
    };
}

/// What an [`Event`] reports.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum EventKind {
    /// `inet_sock_set_state`: old_state -> new_state; carries the owner known so far and,
    /// when new_state is TCP_CLOSE, the final use counters.
    State = 1,
    /// accept()/accept4() returned `fd` for `sk`: owner learned. Tuple and state read from sk.
    Accept = 2,
    /// close(fd) by `tgid` on a TCP socket.
    FdClose = 3,
    /// The traced process's last thread exited; `ret` = exit code as in wait(2).
    Exit = 4,
    /// A syscall that allocates an fd failed with EMFILE/ENFILE; `ret` = -errno, `aux` = [`Syscall`].
    FdFail = 5,
    /// A socket unknown to the kernel maps was first used by a wanted process (send/recv):
    /// owner learned, tuple and state read from sk.
    Claim = 6,
    /// The socket's exchange count reached 1 or 2 (`sock_use.exchanges`), with
    /// [`Config::fold`] off only: folding, userspace reads the counts from the socket's entry
    /// when it polls the connections it knows, and the last record carries them.
    Use = 7,
    /// A wanted process forked a new process (not a thread): `tgid` = parent, `aux` = child.
    /// The child holds copies of every fd of the parent.
    Fork = 8,
    /// A wanted process (or one whose new name matches --comm) ran a new program (execve):
    /// its sockets stay, its binary changed (Go's uprobes are placed per binary). Only with
    /// origins on.
    Exec = 9,
}
wire_enum!(EventKind: u32 { State = 1, Accept = 2, FdClose = 3, Exit = 4, FdFail = 5, Claim = 6, Use = 7, Fork = 8, Exec = 9 });

/// Which syscall failed in an [`EventKind::FdFail`] event.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Syscall {
    Socket = 1,
    Accept = 2,
    Accept4 = 3,
    Openat = 4,
}
wire_enum!(Syscall: u32 { Socket = 1, Accept = 2, Accept4 = 3, Openat = 4 });

impl Syscall {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Accept => "accept",
            Self::Accept4 => "accept4",
            Self::Openat => "openat",
        }
    }
}

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}
wire_enum!(TcpState: u8 {
    Established = 1, SynSent = 2, SynRecv = 3, FinWait1 = 4, FinWait2 = 5, TimeWait = 6,
    Close = 7, CloseWait = 8, LastAck = 9, Listen = 10, Closing = 11, NewSynRecv = 12,
});

impl TcpState {
    pub const fn name(self) -> &'static str {
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

/// Role of a socket, as learned from the syscall that made it.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Role {
    #[default]
    Unknown = 0,
    Client = 1,
    Server = 2,
    Listener = 3,
}
wire_enum!(Role: u8 { Unknown = 0, Client = 1, Server = 2, Listener = 3 });

/// Indexes of the per-CPU counters in [`maps::COUNTERS`].
#[repr(u32)]
#[derive(Copy, Clone, Debug)]
pub enum Counter {
    /// Ring buffer full: the event was lost.
    RingbufFull = 0,
    /// SOCKS insert failed: the socket is traced without owner/use state.
    SocksFull = 1,
    /// A kernel read (bpf_probe_read_kernel) failed.
    ReadFailed = 2,
    /// WANTED_TGIDS insert failed on a --comm match or a fork.
    WantedFull = 3,
    /// A socket was born at a kernel address whose SOCKS entry was still there: its end was
    /// missed, the entry is replaced (never inherited by the new socket).
    StaleEntry = 4,
    /// State changes the main state program was skipped for (nested on its CPU) and the
    /// second program handled: not lost.
    Rescued = 5,
    /// A user stack could not be stored in STACKS (its id taken by another stack, the map
    /// full, or the task's user registers not found): that birth carries no stack.
    StackMissed = 6,
}
pub const COUNTER_SLOTS: u32 = 7;

/// Direction of the last data transfer, for exchange counting.
pub const DIR_NONE: u32 = 0;
pub const DIR_SEND: u32 = 1;
pub const DIR_RECV: u32 = 2;

/// Use of one socket, counted in the kernel on `sock_send_length`/`sock_recv_length`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct SockUse {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC) of the last send / receive; 0 = never.
    pub last_send_ns: u64,
    pub last_recv_ns: u64,
    /// Turns of direction: send then receive for a client, receive then send for a server.
    pub exchanges: u32,
    /// DIR_* of the last transfer.
    #[cfg_attr(feature = "user", serde(default, skip_serializing))]
    pub last_dir: u32,
}
const _: () = assert!(size_of::<SockUse>() == 40);

/// What the kernel keeps for each traced socket (value of [`maps::SOCKS`]).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SockInfo {
    /// Owner tgid; 0 = not known yet (a softirq transition never sets it).
    pub tgid: u32,
    /// Owner's fd; -1 = not known.
    pub fd: i32,
    pub comm: [u8; 16],
    pub netns: u32,
    /// [`Role`] as u8.
    pub role: u8,
    /// 1: userspace has had a record of this socket (it knows the socket by its address and
    /// reads this entry for what was folded since); 0: nothing sent yet.
    pub reported: u8,
    pub _pad: [u8; 2],
    pub sock_use: SockUse,
    /// Kept from the birth until a record carries it (connect's stack for a client,
    /// accept's for a server).
    pub origin: Origin,
    /// What happened to the socket since its last record ([`Config::fold`]).
    pub folded: Folded,
}
const _: () = assert!(size_of::<SockInfo>() == 72 + 16 + size_of::<Folded>());

/// A socket's owner as the start-up snapshot found it (value of [`maps::PRESEED`]), moved into
/// a [`SockInfo`] the first time the kernel sees the socket. Only the owner: the rest of an
/// entry starts empty, and 131,072 of these stay small.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub tgid: u32,
    pub fd: i32,
    pub comm: [u8; 16],
    pub netns: u32,
    /// [`Role`] as u8.
    pub role: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<Seed>() == 32);

/// State changes kept in a socket's entry between two records; one more sends a record.
pub const FOLDED_STEPS: usize = 6;

/// A socket's life as the kernel keeps it between records, so that a record is sent only for
/// what userspace cannot learn later (a client's ESTABLISHED, a server's ESTABLISHED, a
/// listener, the end) and the rest (SYN_SENT, SYN_RECV, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK,
/// accept, the owner's last close) travels inside the next record or is read from the entry
/// by userspace's poll of the connections it knows. Userspace unfolds it into the events it
/// replaces (`kernel::unfold`), skipping what an earlier poll already gave it.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// Time of the socket's first step in this entry: with the address, the socket's identity
    /// across records and polls (a new socket at the same address has another).
    pub born_ns: u64,
    /// accept() named the owner (tgid, fd, comm of the entry) at this time; 0 = not folded.
    pub accept_ns: u64,
    /// The owner closed its fd `closed_fd`, the last reference to the socket, at this time;
    /// 0 = not folded.
    pub fd_closed_ns: u64,
    /// Time of each step, `len` of them.
    pub step_ns: [u64; FOLDED_STEPS],
    /// Steps sent in earlier records (the number of the first step here).
    pub seq: u32,
    pub closed_fd: i32,
    /// The fd accept() returned (the entry's own fd may be gone by the time it is read).
    pub accept_fd: i32,
    pub _pad: u32,
    /// The state each step entered ([`TcpState`] as u8).
    pub step_state: [u8; FOLDED_STEPS],
    /// The state before the first step.
    pub from_state: u8,
    pub len: u8,
}
const _: () = assert!(size_of::<Folded>() == 96);

impl Folded {
    pub const EMPTY: Folded = Folded {
        born_ns: 0,
        accept_ns: 0,
        fd_closed_ns: 0,
        step_ns: [0; FOLDED_STEPS],
        seq: 0,
        closed_fd: -1,
        accept_fd: -1,
        _pad: 0,
        step_state: [0; FOLDED_STEPS],
        from_state: 0,
        len: 0,
    };
}

/// Where a connection came from in its owner's code, taken once at its birth (connect's
/// SYN_SENT, accept) when [`Config::origin`] is set.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Id in [`maps::STACKS`] of the user stack at connect()/accept(); -1 = none (not taken
    /// or missed).
    pub stack: i32,
    /// Go net/http: id of the stack of the goroutine that made the request, taken at
    /// `(*Transport).roundTrip`; -1 = none.
    pub request_stack: i32,
    /// Go net/http: address of the `*http.Transport` that dialed; 0 = none.
    pub transport: u64,
}
const _: () = assert!(size_of::<Origin>() == 16);

impl Origin {
    pub const NONE: Origin = Origin {
        stack: -1,
        request_stack: -1,
        transport: 0,
    };
}

/// A user stack as the programs walk it by its frame pointers (value of [`maps::STACKS`]).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UserStack {
    /// 64-bit hash of the frames: the stack's identity. Its id is 31 bits of it, so a lookup
    /// that finds another hash under the id is a different stack.
    pub hash: u64,
    /// Frames used, at least 1 (the instruction pointer).
    pub len: u32,
    pub _pad: u32,
    /// Innermost first; only the first `len` are this stack's.
    pub frames: [u64; STACK_FRAMES],
}
const _: () = assert!(size_of::<UserStack>() == 1024);

impl UserStack {
    /// The id of a stack whose frames hash to `hash`: non-negative as an i32 (-1 is "none").
    pub const fn id_of(hash: u64) -> u32 {
        ((hash ^ (hash >> 32)) as u32) & 0x7fff_ffff
    }
}

/// Value of [`maps::CONNECT_FDS`]: what sys_enter_connect learned, for the SYN_SENT birth
/// (only where the user registers are not known; see [`connect_from_regs`]).
/// The user stack itself is taken at the birth (same syscall), so only TCP connects pay it.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConnectCall {
    pub fd: i32,
    /// [`Origin::request_stack`] of the Go request this connect dials for.
    pub request_stack: i32,
    /// [`Origin::transport`].
    pub transport: u64,
}
const _: () = assert!(size_of::<ConnectCall>() == 16);

/// A Go net/http request on its way to a dial (values of GO_REQUESTS, GO_WANTS, GO_DIALS).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GoRequest {
    /// The `*http.Transport`.
    pub transport: u64,
    /// STACKS id of the request goroutine's stack at roundTrip; -1 = missed.
    pub request_stack: i32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<GoRequest>() == 16);

/// Value of [`maps::GO_PENDING`]: a Go dial about to call connect(2) on `fd`.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GoPendingConnect {
    pub request: GoRequest,
    /// `netFD.pfd.Sysfd`: the fd connect(2) must be called with for the request to apply.
    pub fd: i64,
}
const _: () = assert!(size_of::<GoPendingConnect>() == 24);

/// One ring-buffer record. One layout for every kind; fields a kind does not use are zero.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    /// Owner tgid for socket events (0 = unknown); the exiting/failing tgid otherwise.
    pub tgid: u32,
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Kernel socket address: the identity of a connection while it lives.
    pub sk: u64,
    pub netns: u32,
    /// Owner fd, -1 = unknown.
    pub fd: i32,
    /// Syscall return value or exit code, per kind.
    pub ret: i32,
    /// Kind-specific: [`Syscall`] for FdFail, the child's tgid for Fork.
    pub aux: u32,
    pub old_state: u8,
    pub new_state: u8,
    /// AF_INET (2) or AF_INET6 (10); 0 when the event carries no tuple.
    pub family: u8,
    /// [`Role`] as u8.
    pub role: u8,
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    /// IPv4 addresses sit in the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
    pub sock_use: SockUse,
    /// Births (State SYN_SENT, Accept) only; [`Origin::NONE`] otherwise.
    pub origin: Origin,
    /// State records: the steps (this one last), accept and close folded since the previous
    /// record; `len` 0 in every other record (and with folding off, one step: this one).
    pub folded: Folded,
}
pub const EVENT_SIZE: usize = size_of::<Event>();

impl Event {
    /// Every field zero (fd -1: unknown): the start of every record the programs build.
    pub const ZEROED: Event = Event {
        kind: 0,
        tgid: 0,
        ts_ns: 0,
        sk: 0,
        netns: 0,
        fd: -1,
        ret: 0,
        aux: 0,
        old_state: 0,
        new_state: 0,
        family: 0,
        role: 0,
        sport: 0,
        dport: 0,
        saddr: [0; 16],
        daddr: [0; 16],
        comm: [0; 16],
        sock_use: SockUse::ZEROED,
        origin: Origin::NONE,
        folded: Folded::EMPTY,
    };
}

impl SockUse {
    pub const ZEROED: SockUse = SockUse {
        bytes_sent: 0,
        bytes_received: 0,
        last_send_ns: 0,
        last_recv_ns: 0,
        exchanges: 0,
        last_dir: 0,
    };
}
const _: () = assert!(EVENT_SIZE == 248);

/// Offsets the programs read at run time. Filled in by userspace from the tracefs `format` files
/// and /sys/kernel/btf/vmlinux, so a kernel that moves a field does not break the programs.
/// `OFFSET_ABSENT` marks a field this kernel does not have.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// 1: trace only wanted tgids/comms (and sockets they own); 0: every process.
    pub filter_active: u32,
    /// 1: WANTED_COMMS holds names to match.
    pub comm_filter: u32,
    /// Address of the kernel's `sock_close` (the `release` of socket files), from kallsyms.
    pub sock_close_addr: u64,
    /// connlife's own tgid: never traced (its endpoint's sockets and failed accepts would
    /// otherwise feed back into its own event stream).
    pub self_tgid: u32,

    // sched/sched_process_exit (the syscalls' fields are at SYSCALL_ARG0_AT and the like)
    pub exit_pid: u32,
    /// `group_dead` (6.16+); OFFSET_ABSENT: fall back to pid == tgid.
    pub exit_group_dead: u32,

    // kernel structs (BTF)
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_files: u32,
    pub task_exit_code: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub file_f_op: u32,
    pub file_private_data: u32,
    pub fop_release: u32,
    pub socket_sk: u32,
    pub socket_type: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_net: u32,
    pub skc_cookie: u32,
    pub net_ns_inum: u32,
    pub sk_protocol: u32,
    /// 1: take a user stack at each connection's birth and follow Go net/http requests to
    /// their dials ([`Origin`]); 0: births carry [`Origin::NONE`].
    pub origin: u32,
    /// 1: fold state changes, accept and the owner's last close into the socket's entry
    /// ([`Folded`]); 0: one record per state change (`--transitions`).
    pub fold: u32,
    /// `file.f_ref` (6.13+) or `file.f_count`: the file's reference count.
    pub file_count: u32,
    /// The value of that count when one reference is left: 0 for `file_ref_t` (6.13+), 1 for
    /// the `atomic_long_t f_count` before.
    pub file_count_one: u64,
    /// `task_struct.stack`: the task's kernel stack, whose top holds the user registers saved
    /// at syscall entry (where a program in a syscall finds them for the user stack walk).
    pub task_stack: u32,
    /// `sizeof(struct pt_regs)` and its fields (x86-64 names); OFFSET_ABSENT: this kernel's
    /// registers are not known, no user stack is walked ([`Origin`] stacks stay -1).
    pub regs_size: u32,
    pub regs_ip: u32,
    pub regs_sp: u32,
    pub regs_bp: u32,
    /// The code and stack segments: what proves a guess of where the registers sit.
    pub regs_cs: u32,
    pub regs_ss: u32,
    /// The syscall's number and first argument (`orig_ax`, `di`): the fd of the connect(),
    /// sendto() or sendmsg() in which a socket reaches SYN_SENT.
    pub regs_orig_ax: u32,
    pub regs_di: u32,
    pub _pad_regs: u32,
}
const _: () = assert!(size_of::<Config>() == 184);

impl Config {
    /// Every offset zero: the eBPF object's initial value, overridden at load time.
    pub const ZEROED: Config = Config {
        filter_active: 0,
        comm_filter: 0,
        sock_close_addr: 0,
        self_tgid: 0,
        exit_pid: 0,
        exit_group_dead: 0,
        task_pid: 0,
        task_tgid: 0,
        task_files: 0,
        task_exit_code: 0,
        files_fdt: 0,
        fdt_fd: 0,
        fdt_max_fds: 0,
        file_f_op: 0,
        file_private_data: 0,
        fop_release: 0,
        socket_sk: 0,
        socket_type: 0,
        skc_daddr: 0,
        skc_rcv_saddr: 0,
        skc_dport: 0,
        skc_num: 0,
        skc_family: 0,
        skc_state: 0,
        skc_v6_daddr: 0,
        skc_v6_rcv_saddr: 0,
        skc_net: 0,
        skc_cookie: 0,
        net_ns_inum: 0,
        sk_protocol: 0,
        origin: 0,
        fold: 0,
        file_count: 0,
        file_count_one: 0,
        task_stack: 0,
        regs_size: 0,
        regs_ip: 0,
        regs_sp: 0,
        regs_bp: 0,
        regs_cs: 0,
        regs_ss: 0,
        regs_orig_ax: 0,
        regs_di: 0,
        _pad_regs: 0,
    };
}
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Where every kernel's syscall tracepoints keep what the programs read: after the common
/// fields and `int __syscall_nr`, `sys_enter_*` has one 8-byte slot per argument and
/// `sys_exit_*` has `long ret`. Constants, not [`Config`] fields: a program reads the record
/// at a constant offset with a plain load, where an offset known only at load time takes a
/// helper call (about 40 ns per run, on syscalls that run for every process on the host).
/// Userspace checks each format file against them before loading.
pub const SYSCALL_ARG0_AT: u32 = 16;
pub const SYSCALL_ARG1_AT: u32 = 24;
pub const SYSCALL_RET_AT: u32 = 16;

// Kernel constants used on both sides.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const SOCK_STREAM: u16 = 1;
pub const MSG_PEEK: i32 = 2;
pub const EMFILE: i32 = 24;
pub const ENFILE: i32 = 23;
/// include/net/tcp_states.h, for the kernel side's matches ([`TcpState`] as u8).
pub const TCP_ESTABLISHED: u8 = TcpState::Established as u8;
pub const TCP_SYN_SENT: u8 = TcpState::SynSent as u8;
pub const TCP_SYN_RECV: u8 = TcpState::SynRecv as u8;
pub const TCP_CLOSE: u8 = TcpState::Close as u8;
pub const TCP_LISTEN: u8 = TcpState::Listen as u8;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), no padding holes left uninitialised (explicit _pad fields).
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SockInfo {}
    unsafe impl aya::Pod for super::SockUse {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Origin {}
    unsafe impl aya::Pod for super::Folded {}
    unsafe impl aya::Pod for super::Seed {}
    unsafe impl aya::Pod for super::ConnectCall {}
    unsafe impl aya::Pod for super::GoRequest {}
    unsafe impl aya::Pod for super::GoPendingConnect {}
    unsafe impl aya::Pod for super::UserStack {}
}
