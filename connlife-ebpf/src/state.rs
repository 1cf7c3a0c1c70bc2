//! `sock/inet_sock_set_state` as a raw tracepoint: every TCP state change of a traced socket
//! becomes one `State` record. It often fires in softirq, where the running task is whoever
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
    helpers::{
        adopt_preseeded, conf, count, current_tgid, current_tid, emit, fill_owner, fill_tuple_from_sock, insert_sock,
        kread, new_event, new_info, sock_netns, user_stack, wanted_or_comm_match,
    },
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
    // sockets only); with a filter, any other change of an untraced socket leaves after that
    // one lookup and at most a read of its cookie, before any other kernel read.
    let known = if birth { None } else { SOCKS.get_ptr_mut(&sk) };
    let first_sight = known.is_none();
    let mut ev = match known {
        Some(info) => {
            let mut ev = new_event(EventKind::State, 0);
            // SAFETY: a pointer into the map value, valid for this program run.
            fill_owner(&mut ev, unsafe { &*info });
            ev
        }
        // Not a birth and not followed: only a socket the start-up snapshot found is ours.
        None if !birth && conf!(filter_active) != 0 => {
            let info = adopt_preseeded(sk)?;
            let mut ev = new_event(EventKind::State, 0);
            fill_owner(&mut ev, &info);
            ev
        }
        None => {
            let protocol: u16 = kread(sk, conf!(sk_protocol))?;
            if protocol != IPPROTO_TCP {
                return None;
            }
            let stale = birth && SOCKS.get_ptr(&sk).is_some();
            if stale {
                count(Counter::StaleEntry);
            }
            // A birth we do not trace: the stale entry (if any) goes, nothing else is kept.
            let untraced = || {
                if stale {
                    let _ = SOCKS.remove(&sk);
                }
            };
            let mut ev = new_event(EventKind::State, 0);
            let info = match new {
                // connect(): process context, the running task owns the socket.
                TCP_SYN_SENT if birth => {
                    let tgid = current_tgid();
                    if !wanted_or_comm_match(tgid) {
                        untraced();
                        return None;
                    }
                    let tid = current_tid();
                    // SAFETY: copied out of the map value.
                    let call = unsafe { CONNECT_FDS.get(&tid) }.copied();
                    let _ = CONNECT_FDS.remove(&tid);
                    if conf!(origin) != 0 {
                        // Still in the owner's connect() (or TFO sendto()): its user stack.
                        ev.origin.stack = user_stack(ctx);
                        if let Some(call) = call {
                            ev.origin.request_stack = call.request_stack;
                            ev.origin.transport = call.transport;
                        }
                    }
                    new_info(tgid, call.map_or(-1, |c| c.fd), Role::Client, sock_netns(sk))
                }
                // listen(): process context too.
                TCP_LISTEN if birth => {
                    let tgid = current_tgid();
                    if !wanted_or_comm_match(tgid) {
                        untraced();
                        return None;
                    }
                    if conf!(filter_active) != 0 {
                        let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
                        let _ = LISTEN_PORTS.insert(&sport, &1, 0);
                    }
                    new_info(tgid, -1, Role::Listener, sock_netns(sk))
                }
                // A child of a listener, in softirq: the owner is named later by accept().
                TCP_SYN_RECV if birth => {
                    if conf!(filter_active) != 0 {
                        let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
                        // SAFETY: presence check only.
                        if unsafe { LISTEN_PORTS.get(&sport) }.is_none() {
                            untraced();
                            return None;
                        }
                    }
                    new_info(0, -1, Role::Server, sock_netns(sk))
                }
                // No filter: a socket that existed before we attached is traced from here.
                _ => adopt_preseeded(sk).unwrap_or_else(|| new_info(0, -1, Role::Unknown, sock_netns(sk))),
            };
            insert_sock(sk, &info);
            fill_owner(&mut ev, &info);
            ev
        }
    };

    ev.sk = sk;
    ev.old_state = old;
    ev.new_state = new;
    // The tuple (five kernel reads) only where userspace learns or completes it: a birth or
    // the first sight of a socket, and ESTABLISHED, where a connect's local port and an
    // accepted socket's remote are final. Later changes of a followed socket are found by its
    // address alone.
    if first_sight || new == TCP_ESTABLISHED {
        fill_tuple_from_sock(&mut ev, sk);
    }
    emit(&ev);

    if new == TCP_CLOSE {
        let _ = SOCKS.remove(&sk);
        if ev.role == Role::Listener as u8 {
            let sport: u16 = kread(sk, conf!(skc_num)).unwrap_or(0);
            let _ = LISTEN_PORTS.remove(&sport);
        }
    }
    Some(())
}
