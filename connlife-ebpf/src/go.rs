//! Uprobes on Go's net/http and net (amd64, Go 1.17+ register ABI) that carry a request's
//! origin to the connection dialed for it. net/http dials on a goroutine of the Transport, so
//! the stack at connect() holds only net/http frames; the request's own goroutine is where the
//! caller's code is. The request is followed hand to hand:
//!
//! 1. `(*Transport).roundTrip(t, req)`, request goroutine: GO_REQUESTS[g] = the Transport and
//!    the goroutine's user stack (the caller's frames).
//! 2. `(*Transport).queueForDial(t, w *wantConn)`, request goroutine: GO_WANTS[w] = GO_REQUESTS[g].
//! 3. `(*Transport).dialConnFor(t, w)`, the dial goroutine (`go t.dialConnFor(w)`):
//!    GO_DIALS[g] = GO_WANTS[w], which is removed.
//! 4. `net.(*netFD).connect(fd, ...)`, the dial goroutine right before connect(2) on the same
//!    thread: GO_PENDING[tid] = GO_DIALS[g] (removed) with `fd.pfd.Sysfd`; the connect takes
//!    it when the fd matches ([`connect_call`], at the SYN_SENT birth or sys_enter_connect).
//!
//! Go's register ABI: the goroutine pointer g is in r14, the receiver and arguments in rax,
//! rbx, rcx, rdi, rsi, r8... At function entry (where a uprobe fires) they are still there.
//! The programs are attached per binary for every process (the kernel filter decides here).
use aya_ebpf::{helpers::bpf_probe_read_user, macros::uprobe, programs::ProbeContext};
use connlife_common::*;

use crate::{
    helpers::{conf, current_tgid, current_tid, wanted_or_comm_match},
    stack::walk_user_stack,
    GO_DIALS, GO_PENDING, GO_REQUESTS, GO_WANTS,
};

/// The registers of Go's ABIInternal that these functions use.
struct GoRegs {
    /// The running goroutine (`g`).
    g: u64,
    /// Receiver or first argument.
    arg0: u64,
    /// Second argument.
    arg1: u64,
}

/// The registers at the probed function's entry, when the process is one we trace and
/// origins are wanted.
#[inline(always)]
fn go_regs(ctx: &ProbeContext) -> Option<GoRegs> {
    if conf!(origin) == 0 || !wanted_or_comm_match(current_tgid()) {
        return None;
    }
    // SAFETY: ctx.regs points at the probed task's saved pt_regs, readable for this program
    // run (direct context access, checked by the verifier).
    let regs = unsafe { &*ctx.regs };
    Some(GoRegs {
        g: regs.r14,
        arg0: regs.rax,
        arg1: regs.rbx,
    })
}

/// What the connect of thread `tid` on `fd` dials for: the Go request `net.(*netFD).connect`
/// left for this thread, if it is for this fd. Taken whatever happens, so it never applies to
/// a later connect.
#[inline(always)]
pub fn connect_call(tid: u32, fd: i32) -> ConnectCall {
    let mut call = ConnectCall {
        fd,
        request_stack: -1,
        transport: 0,
    };
    if conf!(origin) == 0 {
        return call;
    }
    // Plain scalars set on every path: 5.10's verifier rejects reading an Option whose payload
    // one path never wrote ("invalid read from stack").
    let (mut pending_fd, mut pending_stack, mut pending_transport) = (-1i64, -1i32, 0u64);
    // SAFETY: read out of the map value before it is removed.
    if let Some(p) = unsafe { GO_PENDING.get(&tid) } {
        (pending_fd, pending_stack, pending_transport) = (p.fd, p.request.request_stack, p.request.transport);
        let _ = GO_PENDING.remove(&tid);
    }
    // The request is this connect's only if it is for the same fd (the goroutine could have
    // moved to another thread between the uprobe and the syscall).
    if pending_fd >= 0 && pending_fd == fd as i64 {
        call.request_stack = pending_stack;
        call.transport = pending_transport;
    }
    call
}

/// `net/http.(*Transport).roundTrip(t *Transport, req *Request)`.
#[uprobe]
pub fn go_transport_round_trip(ctx: ProbeContext) -> u32 {
    if let Some(r) = go_regs(&ctx) {
        // SAFETY: as in go_regs.
        let regs = unsafe { &*ctx.regs };
        let request = GoRequest {
            transport: r.arg0,
            request_stack: walk_user_stack(regs.rip, regs.rsp, regs.rbp),
            _pad: 0,
        };
        let _ = GO_REQUESTS.insert(&r.g, &request, 0);
    }
    0
}

/// `net/http.(*Transport).queueForDial(t *Transport, w *wantConn)`: this request needs a new
/// connection.
#[uprobe]
pub fn go_transport_queue_for_dial(ctx: ProbeContext) -> u32 {
    if let Some(r) = go_regs(&ctx) {
        // SAFETY: copied out of the map value.
        if let Some(request) = unsafe { GO_REQUESTS.get(&r.g) }.copied() {
            let _ = GO_WANTS.insert(&r.arg1, &request, 0);
        }
    }
    0
}

/// `net/http.(*Transport).dialConnFor(t *Transport, w *wantConn)`: the first function of the
/// dial goroutine.
#[uprobe]
pub fn go_transport_dial_conn_for(ctx: ProbeContext) -> u32 {
    if let Some(r) = go_regs(&ctx) {
        // SAFETY: copied out of the map value before it is removed.
        if let Some(request) = unsafe { GO_WANTS.get(&r.arg1) }.copied() {
            let _ = GO_WANTS.remove(&r.arg1);
            let _ = GO_DIALS.insert(&r.g, &request, 0);
        }
    }
    0
}

/// `net.(*netFD).connect(fd *netFD, ctx, la, ra)`: connect(2) on `fd.pfd.Sysfd` follows on
/// this thread (`connectFunc(fd.pfd.Sysfd, ra)` is its first statement).
#[uprobe]
pub fn go_netfd_connect(ctx: ProbeContext) -> u32 {
    if let Some(r) = go_regs(&ctx) {
        // SAFETY: copied out of the map value before it is removed.
        if let Some(request) = unsafe { GO_DIALS.get(&r.g) }.copied() {
            let _ = GO_DIALS.remove(&r.g);
            // SAFETY: bpf_probe_read_user copies with fault handling; any address is safe to try.
            if let Ok(fd) = unsafe { bpf_probe_read_user((r.arg0 + GO_NETFD_SYSFD_OFFSET) as *const i64) } {
                let _ = GO_PENDING.insert(&current_tid(), &GoPendingConnect { request, fd }, 0);
            }
        }
    }
    0
}
