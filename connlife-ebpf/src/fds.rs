//! The syscalls that give a TCP socket to a process or take it away, all in process context so
//! the running task is the one concerned:
//! - `sys_enter_connect`: remembers the fd until the SYN_SENT transition names the socket,
//!   with the Go net/http request this connect dials for, if the `go` uprobes left one for
//!   this thread and this fd.
//! - `sys_exit_accept4`, `sys_exit_accept`: the fd table is walked from the returned fd to the
//!   socket, which gets its owner (`Accept` record) and, with `Config::origin`, the user stack
//!   of the accept.
//! - `sys_enter_close`, `sys_enter_dup2`, `sys_enter_dup3`: the holder lets go of an fd
//!   (`FdClose`); dup2/dup3 close `newfd` if it was open.
//! - `sys_exit_{socket,accept,accept4,openat}` failing with EMFILE/ENFILE: the moment the
//!   process (or the system) ran out of fds (`FdFail`).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext, EbpfContext};
use connlife_common::*;

use crate::{
    go::connect_call,
    helpers::{
        conf, current_comm, current_tgid, current_tid, emit, fd_to_stream_sock, fill_owner, fill_tuple_and_state,
        fill_tuple_from_sock, insert_sock, is_inet, last_reference, new_event, new_info, now_ns, reported_at,
        sock_netns, wanted_or_comm_match,
    },
    stack::{syscall_regs, syscall_user_stack},
    CONNECT_FDS, SOCKS,
};

/// A syscall tracepoint's 8-byte slot at `AT` (an argument or the return value, at the
/// offsets userspace checked against the `format` files): a plain load of the record.
#[inline(always)]
fn slot<const AT: u32>(ctx: &TracePointContext) -> u64 {
    // SAFETY: inside the tracepoint's record; a constant offset the verifier checks.
    unsafe { *(ctx.as_ptr().add(AT as usize) as *const u64) }
}

/// Only where the user registers are not known ([`connect_from_regs`]): elsewhere the SYN_SENT
/// birth reads the fd from the registers of the syscall it happens in, and this program is not
/// attached (it would run for every connect on the host). The user stack is not taken here
/// but at the SYN_SENT birth (state.rs), in the same syscall: only TCP connects get one (not
/// UDP or unix-socket connects, not a retried non-blocking connect), and a TCP Fast Open
/// sendto() gets one too.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    // Only the uprobes of wanted processes leave Go requests: every other connect on the
    // host leaves at the filter, before any lookup.
    if wanted_or_comm_match(current_tgid()) {
        let tid = current_tid();
        let call = connect_call(tid, slot::<SYSCALL_ARG0_AT>(&ctx) as i32);
        let _ = CONNECT_FDS.insert(&tid, &call, 0);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    on_accept(&ctx, Syscall::Accept4);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    on_accept(&ctx, Syscall::Accept);
    0
}

#[inline(always)]
fn on_accept(ctx: &TracePointContext, syscall: Syscall) -> Option<()> {
    let ret = slot::<SYSCALL_RET_AT>(ctx) as i64;
    let tgid = current_tgid();
    if ret < 0 {
        return on_fd_fail(tgid, ret, syscall);
    }
    if !wanted_or_comm_match(tgid) {
        return None;
    }
    let fd = ret as i32;
    let (sk, _) = fd_to_stream_sock(fd as u32)?;
    let comm = current_comm();
    if let Some(info) = SOCKS.get_ptr_mut(&sk) {
        // SAFETY: a pointer into the map value, valid for this program run.
        let info = unsafe { &mut *info };
        info.tgid = tgid;
        info.fd = fd;
        info.comm = comm;
        info.role = Role::Server as u8;
        if conf!(fold) != 0 && info.reported != 0 {
            // Userspace knows the socket (its ESTABLISHED record): the owner waits in the
            // entry for the next record or poll.
            info.folded.accept_ns = now_ns();
            info.folded.accept_fd = fd;
            if conf!(origin) != 0 {
                info.origin.stack = syscall_user_stack(&syscall_regs());
            }
            return Some(());
        }
    } else {
        if !is_inet(sk) {
            return None;
        }
        insert_sock(sk, &new_info(tgid, fd, Role::Server, sock_netns(sk)));
    }
    let mut ev = new_event(EventKind::Accept, tgid, now_ns());
    ev.sk = sk;
    fill_tuple_and_state(&mut ev, sk);
    if let Some(info) = SOCKS.get_ptr_mut(&sk) {
        // SAFETY: as above.
        let info = unsafe { &mut *info };
        fill_owner(&mut ev, info);
        reported_at(info, ev.new_state, ev.ts_ns);
    } else {
        ev.fd = fd;
        ev.comm = comm;
        ev.role = Role::Server as u8;
    }
    if conf!(origin) != 0 {
        ev.origin.stack = syscall_user_stack(&syscall_regs());
    }
    emit(&ev);
    Some(())
}

#[inline(always)]
fn on_fd_fail(tgid: u32, ret: i64, syscall: Syscall) -> Option<()> {
    let errno = -ret as i32;
    if (errno != EMFILE && errno != ENFILE) || !wanted_or_comm_match(tgid) {
        return None;
    }
    let mut ev = new_event(EventKind::FdFail, tgid, now_ns());
    ev.ret = ret as i32;
    ev.aux = syscall as u32;
    ev.comm = current_comm();
    emit(&ev);
    Some(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_socket")]
pub fn sys_exit_socket(ctx: TracePointContext) -> u32 {
    let ret = slot::<SYSCALL_RET_AT>(&ctx) as i64;
    if ret < 0 {
        on_fd_fail(current_tgid(), ret, Syscall::Socket);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    let ret = slot::<SYSCALL_RET_AT>(&ctx) as i64;
    if ret < 0 {
        on_fd_fail(current_tgid(), ret, Syscall::Openat);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let _ = on_close(slot::<SYSCALL_ARG0_AT>(&ctx));
    0
}

/// dup2(old, new) and dup3 close `new` if it was open: a close too.
#[tracepoint(category = "syscalls", name = "sys_enter_dup2")]
pub fn sys_enter_dup2(ctx: TracePointContext) -> u32 {
    let _ = on_close(slot::<SYSCALL_ARG1_AT>(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_dup3")]
pub fn sys_enter_dup3(ctx: TracePointContext) -> u32 {
    let _ = on_close(slot::<SYSCALL_ARG1_AT>(&ctx));
    0
}

/// The running process lets go of `fd`. Other processes may still hold the socket (fork):
/// the record names this holder; userspace keeps the others.
fn on_close(fd: u64) -> Option<()> {
    let tgid = current_tgid();
    if !wanted_or_comm_match(tgid) {
        return None;
    }
    let (sk, file) = fd_to_stream_sock(fd as u32)?;
    let info = SOCKS.get_ptr_mut(&sk);
    if info.is_none() && !is_inet(sk) {
        return None;
    }
    if let Some(info) = info {
        // SAFETY: a pointer into the map value, valid for this program run.
        let info = unsafe { &mut *info };
        // The owner lets go of the last reference: the socket's own close follows in this
        // task (FIN_WAIT1, LAST_ACK or CLOSE), so the close waits in the entry for the
        // record or poll that carries that (no record built). A close that leaves the socket
        // open (a dup, a forked child, a thread mid-call on it) is sent now: the model must
        // know at once which holder let go.
        if conf!(fold) != 0
            && info.reported != 0
            && info.tgid == tgid
            && info.fd == fd as i32
            && info.folded.fd_closed_ns == 0
            && last_reference(file)
        {
            info.folded.fd_closed_ns = now_ns();
            info.folded.closed_fd = fd as i32;
            info.fd = -1;
            return Some(());
        }
    }
    let mut ev = new_event(EventKind::FdClose, tgid, now_ns());
    ev.sk = sk;
    ev.fd = fd as i32;
    ev.comm = current_comm();
    match info {
        Some(info) => {
            // SAFETY: as above.
            let info = unsafe { &mut *info };
            if info.tgid == 0 {
                info.tgid = tgid;
                info.comm = ev.comm;
            }
            if info.tgid == tgid && info.fd == fd as i32 {
                info.fd = -1;
            }
            ev.role = info.role;
            ev.netns = info.netns;
            ev.sock_use = info.sock_use;
        }
        // Unknown to us (closed by the peer already, or opened before we attached): say it
        // with the tuple so userspace can match it.
        None => fill_tuple_from_sock(&mut ev, sk),
    }
    emit(&ev);
    Some(())
}
