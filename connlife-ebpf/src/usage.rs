//! `sock/sock_send_length` and `sock/sock_recv_length` (6.3+): bytes, last activity and
//! exchanges counted in the socket's SOCKS entry, not one record per send. They fire for every
//! send and receive of every socket family on the host, so they are raw tracepoints (the
//! arguments `TP_PROTO(struct sock *sk, int ret, int flags)` read directly, checked in BTF by
//! userspace) and return at the first check that fails; a record is sent only when a socket is
//! first claimed by a traced process and when its exchange count reaches 1 or 2 (what the
//! unreused detector needs at once).
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use connlife_common::*;

use crate::{
    helpers::{
        adopt_preseeded, conf, current_tgid, emit, fill_owner, fill_tuple_and_state, insert_sock, kread, new_event,
        new_info, now_ns, reported_at, sock_entry, sock_netns, wanted_or_comm_match,
    },
    SOCKS,
};

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    let _ = on_transfer(&ctx, DIR_SEND);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let _ = on_transfer(&ctx, DIR_RECV);
    0
}

fn on_transfer(ctx: &RawTracePointContext, dir: u32) -> Option<()> {
    // Each argument sits in a u64 slot; an int is the slot's low half.
    let ret = ctx.arg::<u64>(1) as i32;
    if ret <= 0 {
        return None;
    }
    // The hot path: a socket we follow is found by its address alone (SOCKS holds TCP sockets
    // only); any other socket's transfer by an untraced process leaves after that lookup and
    // the filter's, before reading anything else.
    let sk: u64 = ctx.arg(0);
    let peek = || dir == DIR_RECV && ctx.arg::<u64>(2) as i32 & MSG_PEEK != 0;
    let info = match sock_entry(sk) {
        Some(info) => {
            if peek() {
                return None;
            }
            // SAFETY: a pointer into the map value, valid for this program run.
            unsafe { &mut *info }
        }
        None => {
            // First sight of a socket opened before we attached: the sender is its owner, so
            // an unwanted sender ends it here.
            let tgid = current_tgid();
            if !wanted_or_comm_match(tgid) {
                return None;
            }
            let protocol: u16 = kread(sk, conf!(sk_protocol))?;
            let family: u16 = kread(sk, conf!(skc_family))?;
            if protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6) || peek() {
                return None;
            }
            let info = match adopt_preseeded(sk) {
                Some(info) => info,
                None => {
                    if !insert_sock(sk, &new_info(tgid, -1, Role::Unknown, sock_netns(sk))) {
                        return None;
                    }
                    SOCKS.get_ptr_mut(&sk)?
                }
            };
            // SAFETY: a pointer into the map value, valid for this program run.
            let info = unsafe { &mut *info };
            let mut ev = new_event(EventKind::Claim, tgid, now_ns());
            fill_owner(&mut ev, info);
            ev.sk = sk;
            fill_tuple_and_state(&mut ev, sk);
            emit(&ev);
            reported_at(info, ev.new_state, ev.ts_ns);
            info
        }
    };
    let now = now_ns();
    if dir == DIR_SEND {
        info.sock_use.bytes_sent += ret as u64;
        info.sock_use.last_send_ns = now;
    } else {
        info.sock_use.bytes_received += ret as u64;
        info.sock_use.last_recv_ns = now;
    }
    // A turn of direction from request to response completes one exchange.
    let (request, response) = if info.role == Role::Server as u8 {
        (DIR_RECV, DIR_SEND)
    } else {
        (DIR_SEND, DIR_RECV)
    };
    if info.sock_use.last_dir == request && dir == response {
        info.sock_use.exchanges += 1;
        // Folding: userspace reads the count from the entry when it polls the connections
        // a detector could flag, and the socket's last record carries it.
        if info.sock_use.exchanges <= 2 && conf!(fold) == 0 {
            let mut ev = new_event(EventKind::Use, info.tgid, now);
            fill_owner(&mut ev, info);
            ev.sk = sk;
            emit(&ev);
        }
    }
    info.sock_use.last_dir = dir;
    Some(())
}
