//! `sock/inet_sock_set_state` as a raw tracepoint: every TCP state change of a traced socket
//! is kept in its SOCKS entry ([`Folded`]) and sent in a `State` record when userspace needs
//! it at once (a socket it has not heard of reaching ESTABLISHED, a listener, the end), or
//! one record per change with `Config::fold` off. It often fires in softirq, where the running task is whoever
//! the interrupt landed on, so the owner is taken from SOCKS and only ever set here where the
//! owner is running (connect's SYN_SENT, listen's LISTEN). A SYN_SENT birth, in the owner's
//! connect(), also carries the connection's [`Origin`] when `Config::origin` is set.
//!
//! Raw, not classic: a classic tracepoint program is skipped whenever another BPF program is
//! already running on the CPU (the kernel's per-CPU `bpf_prog_active`), which is exactly the
//! case of a state change in softirq on top of one of our syscall programs; those skips were
//! over a thousand per 2,000 killed connections. A raw tracepoint program is only guarded
//! against itself. The arguments are `TP_PROTO(const struct sock *sk, int oldstate, int
//! newstate)`, so protocol, family and tuple are read from the socket (BTF offsets), exactly
//! what the classic tracepoint's `TP_fast_assign` reads.
use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};
use connlife_common::*;

use crate::{
    go::connect_call,
    helpers::{
        adopt_preseeded, conf, count, current_tgid, current_tid, emit_with, fill_owner, fill_tuple_from_sock,
        fold_step, folded_sent, insert_birth, insert_sock, kread, new_info, now_ns, remove_sock, sock_entry,
        sock_netns, wanted_or_comm_match,
    },
    stack::{syscall_regs, syscall_user_stack},
    CONNECT_FDS, LISTEN_PORTS, SOCKS,
};

/// Which state change the main program is in the middle of on this CPU (per-CPU).
#[repr(C)]
#[derive(Copy, Clone)]
pub struct Guard {
    sk: u64,
    new_state: u64,
    /// Main-program runs in progress on this CPU (more than 1 only where raw tracepoints are
    /// not guarded against recursion, before 6.x).
    depth: u64,
}

#[map]
static STATE_GUARD: PerCpuArray<Guard> = PerCpuArray::with_max_entries(1, 0);

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let guard = STATE_GUARD.get_ptr_mut(0);
    if let Some(g) = guard {
        // SAFETY: this CPU's slot; only programs on this CPU touch it, one at a time (a nested
        // run completes before the interrupted one resumes).
        unsafe {
            (*g).depth += 1;
            (*g).sk = ctx.arg(0);
            (*g).new_state = ctx.arg(2);
        }
    }
    let _ = on_state(&ctx);
    if let Some(g) = guard {
        // SAFETY: as above.
        unsafe { (*g).depth -= 1 };
    }
    0
}

/// The same tracepoint again, for the state changes the main program is not run for: the
/// kernel skips a raw tracepoint program that is already running on the CPU (a state change
/// in a softirq that interrupted it, common on loopback and under load) and only counts it in
/// `recursion_misses`. This second program runs right after the main one; it handles the
/// event only when the main program is mid-run on this CPU and did not enter for this event,
/// so each event is handled once, and what it rescues is counted (`Counter::Rescued`).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested(ctx: RawTracePointContext) -> i32 {
    let Some(g) = STATE_GUARD.get_ptr(0) else {
        return 0;
    };
    // SAFETY: a copy of this CPU's slot.
    let g = unsafe { *g };
    let (sk, new_state): (u64, u64) = (ctx.arg(0), ctx.arg(2));
    if g.depth == 0 || (g.sk == sk && g.new_state == new_state) {
        return 0;
    }
    count(Counter::Rescued);
    let _ = on_state(&ctx);
    0
}

fn on_state(ctx: &RawTracePointContext) -> Option<()> {
    let sk: u64 = ctx.arg(0);
    let old = ctx.arg::<i32>(1) as u8;
    let new = ctx.arg::<i32>(2) as u8;
    // A new socket (connect, listen, or a listener's child): never inherits an entry left at
    // the same kernel address by a socket whose end we did not see.
    let birth =
        (old == TCP_CLOSE && (new == TCP_SYN_SENT || new == TCP_LISTEN)) || (old == TCP_LISTEN && new == TCP_SYN_RECV);

    // The hot path first. A socket we follow is found by its address alone (SOCKS holds TCP
    // sockets only); with a filter, any other change of an untraced socket leaves at its slot
    // of MAYBE_SOCKS (one array load) or after one lookup, and reads its cookie only while
    // snapshot-found sockets wait for adoption, before any other kernel read.
    let known = if birth { None } else { sock_entry(sk) };
    let first_sight = known.is_none();
    let info: *mut SockInfo = match known {
        Some(info) => info,
        // Not a birth and not followed: only a socket the start-up snapshot found is ours.
        None if !birth && conf!(filter_active) != 0 => adopt_preseeded(sk)?,
        None => new_entry(sk, new, birth)?,
    };
    // SAFETY: a pointer into the map value, valid for this program run.
    let info = unsafe { &mut *info };
    // The clock only once the socket is known to be ours.
    let now = now_ns();
    if first_sight {
        info.folded.born_ns = now;
        info.folded.from_state = old;
        info.folded.len = 0;
    }
    let full = fold_step(info, new, now);
    // A record now for what userspace needs at once: a socket it has not heard of yet
    // reaching ESTABLISHED (a client's connect done, a server's connection waiting for
    // accept), a listener, a socket first seen mid-life, the end, and a full entry. The rest
    // stays folded in the entry, read by userspace's poll of the connections it knows or
    // carried by the next record.
    let folded_birth = first_sight && (new == TCP_SYN_SENT || new == TCP_SYN_RECV) && birth;
    let send = conf!(fold) == 0
        || full
        || new == TCP_CLOSE
        || new == TCP_LISTEN
        || (first_sight && !folded_birth)
        || (new == TCP_ESTABLISHED && info.reported == 0);
    if send {
        // The tuple (five kernel reads) only where userspace learns or completes it: the
        // first record of a socket, and ESTABLISHED, where a connect's local port and an
        // accepted socket's remote are final. Later records are matched by the address alone.
        let tuple = info.reported == 0 || new == TCP_ESTABLISHED;
        emit_with(EventKind::State, 0, now, |ev| {
            fill_owner(ev, info);
            ev.sk = sk;
            ev.old_state = old;
            ev.new_state = new;
            ev.origin = info.origin;
            ev.folded = info.folded;
            if tuple {
                fill_tuple_from_sock(ev, sk);
            }
        });
        folded_sent(info, new);
    }

    if new == TCP_CLOSE {
        let listener = info.role == Role::Listener as u8;
        remove_sock(sk);
        if listener {
            let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
            set_listen_port(sport, 0);
        }
    }
    Some(())
}

/// The entry of a socket seen for the first time (a birth, or any change with no filter),
/// when it is one to trace; `None` for the others (their stale entry, if any, goes).
#[inline(always)]
fn new_entry(sk: u64, new: u8, birth: bool) -> Option<*mut SockInfo> {
    let protocol: u16 = kread(sk, conf!(sk_protocol))?;
    if protocol != IPPROTO_TCP {
        return None;
    }
    // A birth we do not trace: an entry left at this address by a socket whose end we did not
    // see (stale) goes, counted, and nothing else is kept. A traced birth replaces it
    // (`insert_birth`).
    let untraced = || {
        // Looked up first: a lookup takes no lock, a delete does, and a stale entry is rare.
        // SAFETY: presence check only.
        if birth && sock_entry(sk).is_some() && remove_sock(sk) {
            count(Counter::StaleEntry);
        }
        None
    };
    match new {
        // connect(): process context, the running task owns the socket.
        TCP_SYN_SENT if birth => {
            let tgid = current_tgid();
            if !wanted_or_comm_match(tgid) {
                return untraced();
            }
            let tid = current_tid();
            // Still in the owner's connect() (or TCP Fast Open sendto()/sendmsg()).
            let regs = syscall_regs();
            let mut call = ConnectCall {
                fd: -1,
                request_stack: -1,
                transport: 0,
            };
            if conf!(regs_size) != OFFSET_ABSENT {
                // The fd is the syscall's first argument (x86-64 numbers).
                const CONNECT: u64 = 42;
                const SENDTO: u64 = 44;
                const SENDMSG: u64 = 46;
                if regs.found && matches!(regs.nr, CONNECT | SENDTO | SENDMSG) {
                    call = connect_call(tid, regs.arg0 as i32);
                }
            } else {
                // SAFETY: copied out of the map value.
                if let Some(c) = unsafe { CONNECT_FDS.get(&tid) } {
                    call = *c;
                    let _ = CONNECT_FDS.remove(&tid);
                }
            }
            let mut info = new_info(tgid, call.fd, Role::Client, sock_netns(sk));
            if conf!(origin) != 0 {
                // The owner's user stack.
                info.origin.stack = syscall_user_stack(&regs);
                info.origin.request_stack = call.request_stack;
                info.origin.transport = call.transport;
            }
            insert_birth(sk, &info);
        }
        // listen(): process context too.
        TCP_LISTEN if birth => {
            let tgid = current_tgid();
            if !wanted_or_comm_match(tgid) {
                return untraced();
            }
            if conf!(filter_active) != 0 {
                let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
                set_listen_port(sport, 1);
            }
            insert_birth(sk, &new_info(tgid, -1, Role::Listener, sock_netns(sk)));
        }
        // A child of a listener, in softirq: the owner is named later by accept().
        TCP_SYN_RECV if birth => {
            if conf!(filter_active) != 0 {
                let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
                if LISTEN_PORTS.get(u32::from(sport)).is_none_or(|&on| on == 0) {
                    return untraced();
                }
            }
            insert_birth(sk, &new_info(0, -1, Role::Server, sock_netns(sk)));
        }
        // No filter: a socket that existed before we attached is traced from here.
        _ => {
            if let Some(info) = adopt_preseeded(sk) {
                return Some(info);
            }
            insert_sock(sk, &new_info(0, -1, Role::Unknown, sock_netns(sk)));
        }
    }
    // None when the map refused it (counted as SocksFull).
    SOCKS.get_ptr_mut(&sk)
}

/// Mark `port` as a wanted listener's (1) or not (0) in LISTEN_PORTS.
#[inline(always)]
fn set_listen_port(port: u16, on: u8) {
    if let Some(slot) = LISTEN_PORTS.get_ptr_mut(u32::from(port)) {
        // SAFETY: a byte of the array's value; a plain store.
        unsafe { *slot = on };
    }
}
