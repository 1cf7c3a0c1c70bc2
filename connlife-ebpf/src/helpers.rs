//! What the hook families share: reading the run-time [`Config`], kernel reads that count
//! their failures, the process filter, the fd-table walk from an fd to its socket, and emitting
//! a record into the ring buffer.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::Array,
};
use connlife_common::*;

use crate::{COUNTERS, EVENTS, MAYBE_SOCKS, MAYBE_WANTED, PRESEED, SEEDS_PENDING, SOCKS, WANTED_COMMS, WANTED_TGIDS};

/// One field of [`crate::CONFIG`]. A volatile read, so the compiler does not fold the zeroed
/// initial value: the real one is written by the loader into the object's read-only data.
macro_rules! conf {
    ($field:ident) => {
        // SAFETY: CONFIG is an immutable static; the volatile read only stops constant folding.
        unsafe { core::ptr::read_volatile(&$crate::CONFIG.$field) }
    };
}
pub(crate) use conf;

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot; programs on one CPU do not run concurrently with each other.
        unsafe { *slot += 1 };
    }
}

/// Read a `T` at `base + off` in kernel memory, counting failures.
#[inline(always)]
pub fn kread<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel copies with fault handling; any address is safe to try.
    match unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count(Counter::ReadFailed);
            None
        }
    }
}

#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
pub fn current_comm() -> [u8; 16] {
    bpf_get_current_comm().unwrap_or([0; 16])
}

/// Is `tgid` (the running process) one we trace? connlife itself never is. Pure: a --comm
/// match is remembered by [`remember_comm_match`], not here.
#[inline(always)]
pub fn is_wanted(tgid: u32) -> bool {
    if tgid == conf!(self_tgid) {
        return false;
    }
    if conf!(filter_active) == 0 {
        return true;
    }
    // SAFETY: map lookups return a copy-able reference valid for this program run.
    maybe_wanted(tgid) && unsafe { WANTED_TGIDS.get(&tgid) }.is_some()
}

/// False when no wanted tgid shares `tgid`'s slot of MAYBE_WANTED: most processes of a host
/// leave the filter here, at one array load.
#[inline(always)]
fn maybe_wanted(tgid: u32) -> bool {
    MAYBE_WANTED
        .get(tgid & (MAYBE_WANTED_SLOTS - 1))
        .is_none_or(|&slot| slot != 0)
}

/// [`is_wanted`], or the running process's name is one of `--comm`'s: then it is added to
/// WANTED_TGIDS so its later events (softirq ones included) are traced.
#[inline(always)]
pub fn wanted_or_comm_match(tgid: u32) -> bool {
    if is_wanted(tgid) {
        return true;
    }
    if tgid == conf!(self_tgid) || conf!(comm_filter) == 0 {
        return false;
    }
    let comm = current_comm();
    // SAFETY: as above.
    if unsafe { WANTED_COMMS.get(&comm) }.is_none() {
        return false;
    }
    remember_wanted(tgid);
    true
}

#[inline(always)]
pub fn remember_wanted(tgid: u32) {
    if WANTED_TGIDS.insert(&tgid, &1, 0).is_err() {
        count(Counter::WantedFull);
    }
    if let Some(slot) = MAYBE_WANTED.get_ptr_mut(tgid & (MAYBE_WANTED_SLOTS - 1)) {
        // SAFETY: a byte of the array; a plain store of 1 (it is never cleared).
        unsafe { *slot = 1 };
    }
}

/// Wake the reader only when the data pending crosses a multiple of WAKEUP_BYTES: at high
/// rates a wakeup per record costs more than the record (userspace also drains every
/// RING_POLL_MS). Only the record that crosses it wakes: waking on every record past the mark
/// (until the reader, which may wait for a CPU on a busy host, has drained) made each of them
/// raise an irq_work, a self-IPI, which perf showed as the costliest part of a record.
#[inline(always)]
fn wake_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    /// A record's room in the ring: its 8-byte header and the event, 8-byte aligned.
    const RECORD: u64 = (EVENT_SIZE as u64 + 8 + 7) & !7;
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA);
    if pending % WAKEUP_BYTES as u64 >= WAKEUP_BYTES as u64 - RECORD {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Send `ev` (copied into the ring).
#[inline(always)]
pub fn emit(ev: &Event) {
    if EVENTS.output::<Event>(ev, wake_flags()).is_err() {
        count(Counter::RingbufFull);
    }
}

/// Send a record of `kind` by `tgid` at `ts_ns` built in place in the ring: zeroed as
/// [`new_event`] makes it, then filled by `fill`. The hot path's way (no copy of the record on
/// the program's stack and again into the ring); `fill` must not take long, the reader cannot
/// pass a record not yet submitted.
#[inline(always)]
pub fn emit_with(kind: EventKind, tgid: u32, ts_ns: u64, fill: impl FnOnce(&mut Event)) {
    let flags = wake_flags();
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    fill(entry.write(new_event(kind, tgid, ts_ns)));
    entry.submit(flags);
}

/// A record of `kind` by `tgid` at `ts_ns` (the caller's clock read: a program reads the
/// clock once), every other field zero.
#[inline(always)]
pub fn new_event(kind: EventKind, tgid: u32, ts_ns: u64) -> Event {
    Event {
        kind: kind as u32,
        tgid,
        ts_ns,
        ..Event::ZEROED
    }
}

#[inline(always)]
pub fn fill_owner(ev: &mut Event, info: &SockInfo) {
    ev.tgid = info.tgid;
    ev.fd = info.fd;
    ev.comm = info.comm;
    ev.netns = info.netns;
    ev.role = info.role;
    ev.sock_use = info.sock_use;
}

/// Kernel state of a socket whose owner is `tgid` (0: not known; a softirq never names one).
#[inline(always)]
pub fn new_info(tgid: u32, fd: i32, role: Role, netns: u32) -> SockInfo {
    SockInfo {
        tgid,
        fd,
        comm: if tgid != 0 { current_comm() } else { [0; 16] },
        netns,
        role: role as u8,
        reported: 0,
        _pad: [0; 2],
        sock_use: SockUse::ZEROED,
        origin: Origin::NONE,
        folded: Folded::EMPTY,
    }
}

/// A socket's first entry in SOCKS at its birth. An entry already at that address is stale (a
/// socket whose end we did not see, whose memory the new one reuses): counted and replaced.
/// One map operation in the common case, instead of a lookup before the insert.
#[inline(always)]
pub fn insert_birth(sk: u64, info: &SockInfo) {
    const BPF_NOEXIST: u64 = 1;
    const EEXIST: i64 = 17;
    count_in_socks(sk, 1);
    match SOCKS.insert(&sk, info, BPF_NOEXIST) {
        Ok(()) => {}
        Err(e) if e as i64 == -EEXIST => {
            // Replaced through insert_sock, which counts it again: one entry with two counts. On
            // purpose: replacing without a count could meet another CPU's delete of the stale
            // entry and leave the new one in a slot at 0.
            count_in_socks(sk, u32::MAX);
            count(Counter::StaleEntry);
            insert_sock(sk, info);
        }
        Err(_) => {
            count_in_socks(sk, u32::MAX);
            count(Counter::SocksFull);
        }
    }
}

/// Put a new socket's entry in SOCKS; false (counted as `SocksFull`) when the map refused it.
#[inline(always)]
pub fn insert_sock(sk: u64, info: &SockInfo) -> bool {
    // Counted before the insert, so that no CPU finds the slot at 0 while the entry is there.
    count_in_socks(sk, 1);
    if SOCKS.insert(&sk, info, 0).is_err() {
        count_in_socks(sk, u32::MAX);
        count(Counter::SocksFull);
        return false;
    }
    true
}

/// Delete a socket's SOCKS entry, and its count in MAYBE_SOCKS when there was one; true when
/// there was.
#[inline(always)]
pub fn remove_sock(sk: u64) -> bool {
    if SOCKS.remove(&sk).is_err() {
        return false;
    }
    count_in_socks(sk, u32::MAX);
    true
}

/// Add `delta` (`u32::MAX` takes 1) to `sk`'s slot of MAYBE_SOCKS, atomically: a plain
/// read-modify-write could lose another CPU's count and let a slot read 0 while an entry is
/// there. Kept only with a filter, the one case that reads it.
#[inline(always)]
fn count_in_socks(sk: u64, delta: u32) {
    if conf!(filter_active) == 0 {
        return;
    }
    if let Some(n) = MAYBE_SOCKS.get_ptr_mut(maybe_socks_slot(sk)) {
        // SAFETY: a u32 of the array's value, aligned; only ever changed atomically. The result
        // is unused, so this is BPF's plain atomic add (any kernel).
        unsafe { atomic_add(n, delta) };
    }
}

/// `*dst += delta` as one atomic instruction whose result is unused: BPF's `lock xadd`, which
/// every kernel takes (a fetching add needs 5.12).
///
/// # Safety
/// `dst` points into a map value, aligned for `T`.
#[inline(always)]
unsafe fn atomic_add<T: Copy>(dst: *mut T, delta: T) {
    // SAFETY: as the caller promises.
    let _ = unsafe { core::intrinsics::atomic_xadd::<T, T, { core::intrinsics::AtomicOrdering::Relaxed }>(dst, delta) };
}

/// False only when SOCKS cannot hold `sk` (no entry's address falls in its slot): with a filter
/// most of the host's sockets leave here, at one array load, instead of a hash lookup. True
/// without a filter, where every socket is traced anyway.
#[inline(always)]
pub fn maybe_in_socks(sk: u64) -> bool {
    if conf!(filter_active) == 0 {
        return true;
    }
    MAYBE_SOCKS.get(maybe_socks_slot(sk)).is_none_or(|&n| n != 0)
}

/// `sk`'s SOCKS entry, after the cheap check of [`maybe_in_socks`].
#[inline(always)]
pub fn sock_entry(sk: u64) -> Option<*mut SockInfo> {
    if !maybe_in_socks(sk) {
        return None;
    }
    SOCKS.get_ptr_mut(&sk)
}

/// Keep a state change in the socket's entry (its time and the state it entered); true when
/// the entry's steps are full, so a record must carry them now.
#[inline(always)]
pub fn fold_step(info: &mut SockInfo, state: u8, ts: u64) -> bool {
    let f = &mut info.folded;
    let i = f.len as usize;
    if i < FOLDED_STEPS {
        f.step_ns[i] = ts;
        f.step_state[i] = state;
        // Last, and not moved before the step by the compiler: a reader that sees the new
        // count sees the step (userspace also reads twice before taking a change).
        // SAFETY: a field of the map value we hold a reference to.
        unsafe { core::ptr::write_volatile(&mut f.len, i as u8 + 1) };
    }
    f.len as usize >= FOLDED_STEPS
}

/// A record took what the entry had folded (its steps, the last into `state`, accept, close,
/// origin) to userspace: the next steps start after them.
#[inline(always)]
pub fn folded_sent(info: &mut SockInfo, state: u8) {
    let f = &mut info.folded;
    let sent = f.len as u32;
    // The count first: a reader sees the old steps with their old numbers, or none.
    // SAFETY: a field of the map value we hold a reference to.
    unsafe { core::ptr::write_volatile(&mut f.len, 0) };
    f.from_state = state;
    f.seq += sent;
    f.accept_ns = 0;
    f.fd_closed_ns = 0;
    f.closed_fd = -1;
    f.accept_fd = -1;
    info.origin = Origin::NONE;
    info.reported = 1;
}

/// A socket userspace has just been told of in a record other than a state change (a claim,
/// an accept): its steps count from `state` on.
#[inline(always)]
pub fn reported_at(info: &mut SockInfo, state: u8, ts: u64) {
    if info.folded.born_ns == 0 {
        info.folded.born_ns = ts;
    }
    info.folded.len = 0;
    info.folded.from_state = state;
    info.reported = 1;
}

/// Network namespace inode of a socket: sk->__sk_common.skc_net->ns.inum.
#[inline(always)]
pub fn sock_netns(sk: u64) -> u32 {
    kread::<u64>(sk, conf!(skc_net))
        .and_then(|net| kread::<u32>(net, conf!(net_ns_inum)))
        .unwrap_or(0)
}

/// Words of a socket read at once for its tuple: `sock_common`'s head, where the kernel keeps
/// the IPv4 addresses, the ports, the family and the state side by side.
const SOCK_HEAD_WORDS: usize = 3;

/// The `size`-byte field at `off` of a block of words read from `base`: taken from the block
/// when it lies inside one of its words (the offsets are the loader's constants, so the
/// verifier sees which), else read on its own. Words, not bytes: the program loads them whole.
#[inline(always)]
pub fn block_field<const N: usize>(block: &[u64; N], base: u64, off: u32, size: u32) -> Option<u64> {
    let (word, shift) = ((off / 8) as usize, (off % 8) * 8);
    if word < N && off % 8 + size <= 8 {
        let v = block[word] >> shift;
        return Some(if size >= 8 { v } else { v & ((1u64 << (size * 8)) - 1) });
    }
    match size {
        1 => kread::<u8>(base, off).map(u64::from),
        2 => kread::<u16>(base, off).map(u64::from),
        4 => kread::<u32>(base, off).map(u64::from),
        _ => kread::<u64>(base, off),
    }
}

/// Family, tuple and netns read from the socket itself: one read for the head of
/// `sock_common` (and one for both IPv6 addresses) instead of one per field.
#[inline(always)]
pub fn fill_tuple_from_sock(ev: &mut Event, sk: u64) {
    let head: [u64; SOCK_HEAD_WORDS] = kread(sk, 0).unwrap_or([0; SOCK_HEAD_WORDS]);
    fill_tuple_from_head(ev, sk, &head);
}

#[inline(always)]
fn fill_tuple_from_head(ev: &mut Event, sk: u64, head: &[u64; SOCK_HEAD_WORDS]) {
    let field = |off, size| block_field(head, sk, off, size).unwrap_or(0);
    let family = field(conf!(skc_family), 2) as u16;
    ev.family = family as u8;
    ev.sport = field(conf!(skc_num), 2) as u16;
    ev.dport = u16::from_be(field(conf!(skc_dport), 2) as u16);
    if family == AF_INET {
        let s = (field(conf!(skc_rcv_saddr), 4) as u32).to_ne_bytes();
        let d = (field(conf!(skc_daddr), 4) as u32).to_ne_bytes();
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    } else if conf!(skc_v6_rcv_saddr) == conf!(skc_v6_daddr) + 16 {
        let [d, s]: [[u8; 16]; 2] = kread(sk, conf!(skc_v6_daddr)).unwrap_or([[0; 16]; 2]);
        (ev.daddr, ev.saddr) = (d, s);
    } else {
        ev.saddr = kread(sk, conf!(skc_v6_rcv_saddr)).unwrap_or([0; 16]);
        ev.daddr = kread(sk, conf!(skc_v6_daddr)).unwrap_or([0; 16]);
    }
    if ev.netns == 0 {
        ev.netns = sock_netns(sk);
    }
}

/// [`fill_tuple_from_sock`] plus the socket's current state (from the same read).
#[inline(always)]
pub fn fill_tuple_and_state(ev: &mut Event, sk: u64) {
    let head: [u64; SOCK_HEAD_WORDS] = kread(sk, 0).unwrap_or([0; SOCK_HEAD_WORDS]);
    fill_tuple_from_head(ev, sk, &head);
    ev.new_state = block_field(&head, sk, conf!(skc_state), 1).unwrap_or(0) as u8;
}

/// The `file_operations` of socket files once a program has seen them (0: not yet), so that
/// a file is known for a socket's by its `f_op` alone, without reading `f_op->release`.
#[map]
static SOCKET_FOPS: Array<u64> = Array::with_max_entries(1, 0);

/// Words of a `struct file` read at once for its `f_op` and `private_data` (side by side at
/// its head since 6.x; elsewhere each is read on its own).
const FILE_HEAD_WORDS: usize = 4;

/// The stream socket behind `fd` of the running task: task->files->fdt->fd[fd]->private_data->sk,
/// trusted only when the file's `release` is `sock_close` and the socket is SOCK_STREAM.
/// Returns the socket and its file. Its family is the caller's to check ([`is_inet`]) where
/// SOCKS does not know it already (SOCKS holds TCP sockets only).
#[inline(always)]
pub fn fd_to_stream_sock(fd: u32) -> Option<(u64, u64)> {
    // SAFETY: returns the running task's address; only read through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kread(task, conf!(task_files))?;
    let fdt: u64 = kread(files, conf!(files_fdt))?;
    // max_fds and the fd array side by side (as on every kernel so far): one read.
    let (max_fds, fd_array) = if conf!(fdt_fd) == conf!(fdt_max_fds) + 8 {
        let [max, array]: [u64; 2] = kread(fdt, conf!(fdt_max_fds))?;
        (max as u32, array)
    } else {
        (
            kread::<u32>(fdt, conf!(fdt_max_fds))?,
            kread::<u64>(fdt, conf!(fdt_fd))?,
        )
    };
    if fd >= max_fds {
        return None;
    }
    let file: u64 = kread(fd_array, fd.wrapping_mul(8))?;
    if file == 0 {
        return None;
    }
    let (f_op_at, private_at) = (conf!(file_f_op), conf!(file_private_data));
    let (f_op, socket) = if (f_op_at.max(private_at) as usize) < FILE_HEAD_WORDS * 8 {
        let head: [u64; FILE_HEAD_WORDS] = kread(file, 0)?;
        (
            block_field(&head, file, f_op_at, 8)?,
            block_field(&head, file, private_at, 8)?,
        )
    } else {
        (kread::<u64>(file, f_op_at)?, kread::<u64>(file, private_at)?)
    };
    let known = SOCKET_FOPS.get_ptr_mut(0)?;
    // SAFETY: the array's one slot; every writer stores the same value.
    if f_op == 0 || f_op != unsafe { *known } {
        let release: u64 = kread(f_op, conf!(fop_release))?;
        if release != conf!(sock_close_addr) {
            return None;
        }
        // SAFETY: as above.
        unsafe { *known = f_op };
    }
    // struct socket's type and sk in one read of its head.
    let head: [u64; 4] = kread(socket, 0)?;
    let sock_type = block_field(&head, socket, conf!(socket_type), 2)? as u16;
    let sk = block_field(&head, socket, conf!(socket_sk), 8)?;
    if sock_type != SOCK_STREAM || sk == 0 {
        return None;
    }
    Some((sk, file))
}

/// Is `sk` an IPv4 or IPv6 socket?
#[inline(always)]
pub fn is_inet(sk: u64) -> bool {
    kread::<u16>(sk, conf!(skc_family)).is_some_and(|family| family == AF_INET || family == AF_INET6)
}

/// Is the fd table's reference the only one left on `file` (so closing it releases the
/// socket)? False when the kernel's count is unknown, or another holder (a dup, a forked
/// child, another thread mid-syscall on it) keeps a reference.
#[inline(always)]
pub fn last_reference(file: u64) -> bool {
    let at = conf!(file_count);
    at != OFFSET_ABSENT && kread::<u64>(file, at) == Some(conf!(file_count_one))
}

/// Move a snapshot-found socket (keyed by cookie) into SOCKS the first time the kernel sees
/// it; its entry there.
#[inline(always)]
pub fn adopt_preseeded(sk: u64) -> Option<*mut SockInfo> {
    // Nothing to adopt (the usual case once the snapshot's sockets have been seen, or with
    // none): no read of the cookie.
    let pending = SEEDS_PENDING.get_ptr_mut(0)?;
    // SAFETY: an aligned i64 of the array's value, read once.
    if unsafe { core::ptr::read_volatile(pending) } <= 0 {
        return None;
    }
    let cookie: u64 = kread(sk, conf!(skc_cookie))?;
    if cookie == 0 {
        return None;
    }
    // SAFETY: copied out of the map value before the entry is removed.
    let seed = unsafe { *PRESEED.get_ptr(&cookie)? };
    if PRESEED.remove(&cookie).is_ok() {
        // SAFETY: as above; atomic, like every kernel-side change of it.
        unsafe { atomic_add(pending, -1i64) };
    }
    let mut info = new_info(0, seed.fd, Role::Unknown, seed.netns);
    info.tgid = seed.tgid;
    info.comm = seed.comm;
    info.role = seed.role;
    if !insert_sock(sk, &info) {
        return None;
    }
    SOCKS.get_ptr_mut(&sk)
}
