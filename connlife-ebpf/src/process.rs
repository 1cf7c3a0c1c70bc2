//! Processes: `sched/sched_process_fork` and `sched/sched_process_exit`.
//!
//! Fork is a raw tracepoint (`TP_PROTO(struct task_struct *parent, struct task_struct
//! *child)`) because the classic one carries only thread ids, and a new thread must be told
//! from a new process by the child's tgid. A child of a traced process is traced from its
//! first instruction (WANTED_TGIDS) and one `Fork` record tells userspace that it holds copies
//! of its parent's sockets: pre-fork servers (postgres, gunicorn, sshd) serve connections from
//! children, and a parent that closes its copy after fork has not closed the socket.
//!
//! Exit: the last thread of a traced process ended; `ret` carries the wait(2) status.
//!
//! Exec (`sched/sched_process_exec`, with origins on): a wanted process, or one whose new
//! name matches --comm, runs a new binary; userspace puts Go's uprobes on it before its first
//! connection.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use connlife_common::*;

use crate::{
    helpers::{conf, current_comm, emit, is_wanted, kread, new_event, now_ns, remember_wanted, wanted_or_comm_match},
    WANTED_TGIDS,
};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = on_fork(&ctx);
    0
}

fn on_fork(ctx: &RawTracePointContext) -> Option<()> {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_wanted(parent_tgid) {
        return None;
    }
    let child: u64 = ctx.arg(1);
    let child_pid: i32 = kread(child, conf!(task_pid))?;
    let child_tgid: i32 = kread(child, conf!(task_tgid))?;
    if child_pid != child_tgid {
        return None; // a new thread: same process, same fds
    }
    if conf!(filter_active) != 0 {
        remember_wanted(child_tgid as u32);
    }
    let mut ev = new_event(EventKind::Fork, parent_tgid, now_ns());
    ev.aux = child_tgid as u32;
    ev.comm = current_comm();
    emit(&ev);
    Some(())
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = on_exit(&ctx);
    0
}

fn on_exit(ctx: &TracePointContext) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let group_dead_off = conf!(exit_group_dead);
    let last = if group_dead_off != OFFSET_ABSENT {
        // SAFETY: bpf_probe_read of the tracepoint record at an offset checked by userspace.
        unsafe { ctx.read_at::<u8>(group_dead_off as usize) }.ok()? != 0
    } else {
        pid_tgid as u32 == tgid
    };
    if !last || !is_wanted(tgid) {
        return None;
    }
    let mut ev = new_event(EventKind::Exit, tgid, now_ns());
    // SAFETY: the running task's address, only read through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    ev.ret = kread(task, conf!(task_exit_code)).unwrap_or(0);
    ev.comm = current_comm();
    emit(&ev);
    if conf!(filter_active) != 0 {
        let _ = WANTED_TGIDS.remove(&tgid);
    }
    Some(())
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if conf!(origin) != 0 && wanted_or_comm_match(tgid) {
        let mut ev = new_event(EventKind::Exec, tgid, now_ns());
        ev.comm = current_comm();
        emit(&ev);
    }
    0
}
