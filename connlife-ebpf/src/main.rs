//! connlife's kernel side: tracepoint programs that follow every TCP socket of the traced
//! processes and stream its lifecycle to userspace through one ring buffer.
//!
//! Which hook feeds what (all tracepoints: this kernel family may lack kprobes, and tracepoints
//! are the stable interface):
//! - `sock/inet_sock_set_state`: every TCP state change, often in softirq where the running task
//!   is not the owner; the owner comes from SOCKS, never from `current`.
//! - `syscalls/sys_enter_connect` + the SYN_SENT transition (process context): client owner + fd.
//! - `syscalls/sys_exit_accept{,4}`: server owner + fd (fd table walked to the socket).
//! - `syscalls/sys_enter_close`: the owner closed its fd.
//! - `sock/sock_{send,recv}_length` (6.3+): bytes, last activity and exchanges, counted in SOCKS,
//!   not one event per send.
//! - `sched/sched_process_exit`: the traced process ended (post-mortem).
//! - `syscalls/sys_exit_{socket,accept,accept4,openat}`: EMFILE/ENFILE, the moment fds ran out.
//!
//! Every field offset comes from [`Config`], filled by userspace from tracefs and BTF.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use connlife_common::*;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(MAX_SOCKS, 0);
#[map]
static WANTED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_WANTED, 0);
#[map]
static WANTED_COMMS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_WANTED, 0);
#[map]
static LISTEN_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_LISTEN_PORTS, 0);
#[map]
static PRESEED: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(MAX_PRESEED, 0);
#[map]
static CONNECT_FDS: LruHashMap<u32, i32> = LruHashMap::with_max_entries(MAX_CONNECT_FDS, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
#[map]
static FLOOR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Filled in by userspace at load time (read-only data, so the verifier sees constants).
#[no_mangle]
static CONFIG: Config = Config {
    filter_active: 0,
    comm_filter: 0,
    sock_close_addr: 0,
    st_skaddr: 0,
    st_oldstate: 0,
    st_newstate: 0,
    st_sport: 0,
    st_dport: 0,
    st_family: 0,
    st_protocol: 0,
    st_saddr: 0,
    st_daddr: 0,
    st_saddr_v6: 0,
    st_daddr_v6: 0,
    close_fd: 0,
    dup_newfd: 0,
    connect_fd: 0,
    exit_ret: 0,
    len_sk: 0,
    len_family: 0,
    len_protocol: 0,
    len_ret: 0,
    len_flags: 0,
    exit_pid: 0,
    exit_group_dead: 0,
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
    _pad: 0,
};

macro_rules! cfg {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&CONFIG.$field) }
    };
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        unsafe { *slot += 1 };
    }
}

/// Read a `T` at `base + off` in kernel memory, counting failures.
#[inline(always)]
fn kread<T>(base: u64, off: u32) -> Option<T> {
    match unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count(Counter::ReadFailed);
            None
        }
    }
}

#[inline(always)]
fn field<T>(ctx: &TracePointContext, off: u32) -> Option<T> {
    unsafe { ctx.read_at::<T>(off as usize) }.ok()
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Is the running process one we trace?
#[inline(always)]
fn wanted(tgid: u32) -> bool {
    if cfg!(filter_active) == 0 || unsafe { WANTED_TGIDS.get(&tgid) }.is_some() {
        return true;
    }
    if cfg!(comm_filter) != 0 {
        if let Ok(comm) = bpf_get_current_comm() {
            if unsafe { WANTED_COMMS.get(&comm) }.is_some() {
                if WANTED_TGIDS.insert(&tgid, &1, 0).is_err() {
                    count(Counter::WantedFull);
                }
                return true;
            }
        }
    }
    false
}

#[inline(always)]
fn blank_event(kind: EventKind, tgid: u32) -> Event {
    Event {
        kind: kind as u32,
        tgid,
        ts_ns: unsafe { bpf_ktime_get_ns() },
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
        sock_use: SockUse {
            bytes_sent: 0,
            bytes_received: 0,
            last_send_ns: 0,
            last_recv_ns: 0,
            exchanges: 0,
            last_dir: 0,
        },
    }
}

/// Wake the reader only once WAKEUP_BYTES are pending: at high rates a wakeup per record costs
/// more than the record (userspace also drains every RING_POLL_MS).
#[inline(always)]
fn emit(ev: &Event) {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<Event>(ev, flags).is_err() {
        count(Counter::RingbufFull);
    }
}

#[inline(always)]
fn fill_owner(ev: &mut Event, info: &SockInfo) {
    ev.tgid = info.tgid;
    ev.fd = info.fd;
    ev.comm = info.comm;
    ev.netns = info.netns;
    ev.role = info.role;
    ev.sock_use = info.sock_use;
}

#[inline(always)]
fn new_info(tgid: u32, fd: i32, role: u8, netns: u32) -> SockInfo {
    SockInfo {
        tgid,
        fd,
        comm: if tgid != 0 {
            bpf_get_current_comm().unwrap_or([0; 16])
        } else {
            [0; 16]
        },
        netns,
        role,
        _pad: [0; 3],
        sock_use: SockUse::default(),
    }
}

#[inline(always)]
fn insert_sock(sk: u64, info: &SockInfo) {
    if SOCKS.insert(&sk, info, 0).is_err() {
        count(Counter::SocksFull);
    }
}

/// Network namespace inode of a socket: sk->__sk_common.skc_net->ns.inum.
#[inline(always)]
fn sock_netns(sk: u64) -> u32 {
    kread::<u64>(sk, cfg!(skc_net))
        .and_then(|net| kread::<u32>(net, cfg!(net_ns_inum)))
        .unwrap_or(0)
}

/// Tuple, state and netns read from the socket itself (for events not fed by the state
/// tracepoint, which carries its own tuple).
#[inline(always)]
fn fill_tuple_from_sock(ev: &mut Event, sk: u64) {
    let family: u16 = kread(sk, cfg!(skc_family)).unwrap_or(0);
    ev.family = family as u8;
    ev.sport = kread(sk, cfg!(skc_num)).unwrap_or(0);
    ev.dport = u16::from_be(kread(sk, cfg!(skc_dport)).unwrap_or(0));
    ev.new_state = kread(sk, cfg!(skc_state)).unwrap_or(0);
    if family == AF_INET {
        let s: [u8; 4] = kread(sk, cfg!(skc_rcv_saddr)).unwrap_or([0; 4]);
        let d: [u8; 4] = kread(sk, cfg!(skc_daddr)).unwrap_or([0; 4]);
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    } else {
        ev.saddr = kread(sk, cfg!(skc_v6_rcv_saddr)).unwrap_or([0; 16]);
        ev.daddr = kread(sk, cfg!(skc_v6_daddr)).unwrap_or([0; 16]);
    }
    if ev.netns == 0 {
        ev.netns = sock_netns(sk);
    }
}

/// The TCP socket behind `fd` of the running task: task->files->fdt->fd[fd]->private_data->sk,
/// trusted only when the file's `release` is `sock_close` and the socket is SOCK_STREAM inet.
#[inline(always)]
fn fd_to_tcp_sock(fd: u32) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kread(task, cfg!(task_files))?;
    let fdt: u64 = kread(files, cfg!(files_fdt))?;
    let max_fds: u32 = kread(fdt, cfg!(fdt_max_fds))?;
    if fd >= max_fds {
        return None;
    }
    let fd_array: u64 = kread(fdt, cfg!(fdt_fd))?;
    let file: u64 = kread(fd_array, fd.wrapping_mul(8))?;
    if file == 0 {
        return None;
    }
    let f_op: u64 = kread(file, cfg!(file_f_op))?;
    let release: u64 = kread(f_op, cfg!(fop_release))?;
    if release != cfg!(sock_close_addr) {
        return None;
    }
    let socket: u64 = kread(file, cfg!(file_private_data))?;
    let sock_type: u16 = kread(socket, cfg!(socket_type))?;
    let sk: u64 = kread(socket, cfg!(socket_sk))?;
    if sock_type != SOCK_STREAM || sk == 0 {
        return None;
    }
    let family: u16 = kread(sk, cfg!(skc_family))?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    Some(sk)
}

/// Move a snapshot-found socket (keyed by cookie) into SOCKS the first time the kernel sees it.
#[inline(always)]
fn adopt_preseeded(sk: u64) -> Option<SockInfo> {
    let cookie: u64 = kread(sk, cfg!(skc_cookie))?;
    if cookie == 0 {
        return None;
    }
    let info = unsafe { *PRESEED.get(&cookie)? };
    let _ = PRESEED.remove(&cookie);
    insert_sock(sk, &info);
    Some(info)
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = on_state(&ctx);
    0
}

fn on_state(ctx: &TracePointContext) -> Option<()> {
    let protocol: u16 = field(ctx, cfg!(st_protocol))?;
    if protocol != IPPROTO_TCP {
        return None;
    }
    let sk: u64 = field(ctx, cfg!(st_skaddr))?;
    let old: i32 = field(ctx, cfg!(st_oldstate))?;
    let new: i32 = field(ctx, cfg!(st_newstate))?;
    let sport: u16 = field(ctx, cfg!(st_sport))?;
    let new_state = new as u8;

    let mut ev = blank_event(EventKind::State, 0);
    match SOCKS.get_ptr_mut(&sk) {
        Some(info) => fill_owner(&mut ev, unsafe { &*info }),
        None => {
            let info = match new_state {
                // connect(): process context, the running task owns the socket.
                TCP_SYN_SENT => {
                    let tgid = current_tgid();
                    if !wanted(tgid) {
                        return None;
                    }
                    let tid = bpf_get_current_pid_tgid() as u32;
                    let fd = unsafe { CONNECT_FDS.get(&tid) }.copied().unwrap_or(-1);
                    let _ = CONNECT_FDS.remove(&tid);
                    new_info(tgid, fd, ROLE_CLIENT, sock_netns(sk))
                }
                // listen(): process context too.
                TCP_LISTEN => {
                    let tgid = current_tgid();
                    if !wanted(tgid) {
                        return None;
                    }
                    if cfg!(filter_active) != 0 {
                        let _ = LISTEN_PORTS.insert(&sport, &1, 0);
                    }
                    new_info(tgid, -1, ROLE_LISTENER, sock_netns(sk))
                }
                // A child of a listener, in softirq: the owner is named later by accept().
                TCP_SYN_RECV => {
                    if cfg!(filter_active) != 0 && unsafe { LISTEN_PORTS.get(&sport) }.is_none() {
                        return None;
                    }
                    new_info(0, -1, ROLE_SERVER, sock_netns(sk))
                }
                // A socket that existed before we attached.
                _ => match adopt_preseeded(sk) {
                    Some(info) => info,
                    None if cfg!(filter_active) == 0 => new_info(0, -1, ROLE_UNKNOWN, sock_netns(sk)),
                    None => return None,
                },
            };
            insert_sock(sk, &info);
            fill_owner(&mut ev, &info);
        }
    }

    ev.sk = sk;
    ev.old_state = old as u8;
    ev.new_state = new_state;
    ev.family = field::<u16>(ctx, cfg!(st_family))? as u8;
    ev.sport = sport;
    ev.dport = field(ctx, cfg!(st_dport))?;
    if ev.family as u16 == AF_INET {
        let s: [u8; 4] = field(ctx, cfg!(st_saddr))?;
        let d: [u8; 4] = field(ctx, cfg!(st_daddr))?;
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    } else {
        ev.saddr = field(ctx, cfg!(st_saddr_v6))?;
        ev.daddr = field(ctx, cfg!(st_daddr_v6))?;
    }
    emit(&ev);

    if new_state == TCP_CLOSE {
        let _ = SOCKS.remove(&sk);
        if ev.role == ROLE_LISTENER {
            let _ = LISTEN_PORTS.remove(&sport);
        }
    }
    Some(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if wanted(current_tgid()) {
        if let Some(fd) = field::<u64>(&ctx, cfg!(connect_fd)) {
            let tid = bpf_get_current_pid_tgid() as u32;
            let _ = CONNECT_FDS.insert(&tid, &(fd as i32), 0);
        }
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
    let ret: i64 = field(ctx, cfg!(exit_ret))?;
    let tgid = current_tgid();
    if ret < 0 {
        return on_fd_fail(tgid, ret, syscall);
    }
    if !wanted(tgid) {
        return None;
    }
    let fd = ret as i32;
    let sk = fd_to_tcp_sock(fd as u32)?;
    let mut ev = blank_event(EventKind::Accept, tgid);
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    match SOCKS.get_ptr_mut(&sk) {
        Some(info) => {
            let info = unsafe { &mut *info };
            info.tgid = tgid;
            info.fd = fd;
            info.comm = comm;
            info.role = ROLE_SERVER;
            fill_owner(&mut ev, info);
        }
        None => {
            let info = new_info(tgid, fd, ROLE_SERVER, sock_netns(sk));
            insert_sock(sk, &info);
            fill_owner(&mut ev, &info);
        }
    }
    ev.sk = sk;
    fill_tuple_from_sock(&mut ev, sk);
    emit(&ev);
    Some(())
}

#[inline(always)]
fn on_fd_fail(tgid: u32, ret: i64, syscall: Syscall) -> Option<()> {
    let errno = -ret as i32;
    if (errno != EMFILE && errno != ENFILE) || !wanted(tgid) {
        return None;
    }
    let mut ev = blank_event(EventKind::FdFail, tgid);
    ev.ret = ret as i32;
    ev.aux = syscall as u32;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    emit(&ev);
    Some(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_socket")]
pub fn sys_exit_socket(ctx: TracePointContext) -> u32 {
    if let Some(ret) = field::<i64>(&ctx, cfg!(exit_ret)) {
        if ret < 0 {
            on_fd_fail(current_tgid(), ret, Syscall::Socket);
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    if let Some(ret) = field::<i64>(&ctx, cfg!(exit_ret)) {
        if ret < 0 {
            on_fd_fail(current_tgid(), ret, Syscall::Openat);
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let _ = on_close(&ctx, cfg!(close_fd));
    0
}

/// dup2(old, new) and dup3 close `new` if it was open: a close too.
#[tracepoint(category = "syscalls", name = "sys_enter_dup2")]
pub fn sys_enter_dup2(ctx: TracePointContext) -> u32 {
    let _ = on_close(&ctx, cfg!(dup_newfd));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_dup3")]
pub fn sys_enter_dup3(ctx: TracePointContext) -> u32 {
    let _ = on_close(&ctx, cfg!(dup_newfd));
    0
}

fn on_close(ctx: &TracePointContext, fd_offset: u32) -> Option<()> {
    let tgid = current_tgid();
    if !wanted(tgid) {
        return None;
    }
    let fd: u64 = field(ctx, fd_offset)?;
    let sk = fd_to_tcp_sock(fd as u32)?;
    let mut ev = blank_event(EventKind::FdClose, tgid);
    ev.sk = sk;
    ev.fd = fd as i32;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    match SOCKS.get_ptr_mut(&sk) {
        Some(info) => {
            let info = unsafe { &mut *info };
            if info.tgid == 0 {
                info.tgid = tgid;
                info.comm = ev.comm;
            }
            info.fd = -1;
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

#[tracepoint(category = "sock", name = "sock_send_length")]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    let _ = on_transfer(&ctx, DIR_SEND);
    0
}

#[tracepoint(category = "sock", name = "sock_recv_length")]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    let _ = on_transfer(&ctx, DIR_RECV);
    0
}

/// Count bytes, last activity and exchanges in SOCKS. Runs for every socket family on every
/// send/recv, so it returns as early as it can.
fn on_transfer(ctx: &TracePointContext, dir: u32) -> Option<()> {
    let ret: i32 = field(ctx, cfg!(len_ret))?;
    if ret <= 0 {
        return None;
    }
    let protocol: u16 = field(ctx, cfg!(len_protocol))?;
    let family: u16 = field(ctx, cfg!(len_family))?;
    if protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6) {
        return None;
    }
    if dir == DIR_RECV && field::<i32>(ctx, cfg!(len_flags))? & MSG_PEEK != 0 {
        return None;
    }
    let sk: u64 = field(ctx, cfg!(len_sk))?;
    let now = unsafe { bpf_ktime_get_ns() };
    let info = match SOCKS.get_ptr_mut(&sk) {
        Some(info) => info,
        None => {
            // First sight of a socket opened before we attached: the sender is its owner, so
            // an unwanted sender ends it here, before any kernel read (this is the hot path).
            let tgid = current_tgid();
            if !wanted(tgid) {
                return None;
            }
            let info = adopt_preseeded(sk).unwrap_or_else(|| new_info(tgid, -1, ROLE_UNKNOWN, sock_netns(sk)));
            insert_sock(sk, &info);
            let mut ev = blank_event(EventKind::Claim, tgid);
            fill_owner(&mut ev, &info);
            ev.sk = sk;
            fill_tuple_from_sock(&mut ev, sk);
            emit(&ev);
            SOCKS.get_ptr_mut(&sk)?
        }
    };
    let info = unsafe { &mut *info };
    if dir == DIR_SEND {
        info.sock_use.bytes_sent += ret as u64;
        info.sock_use.last_send_ns = now;
    } else {
        info.sock_use.bytes_received += ret as u64;
        info.sock_use.last_recv_ns = now;
    }
    // A turn of direction from request to response completes one exchange.
    let (request, response) = if info.role == ROLE_SERVER {
        (DIR_RECV, DIR_SEND)
    } else {
        (DIR_SEND, DIR_RECV)
    };
    if info.sock_use.last_dir == request && dir == response {
        info.sock_use.exchanges += 1;
        if info.sock_use.exchanges <= 2 {
            let mut ev = blank_event(EventKind::Use, info.tgid);
            fill_owner(&mut ev, info);
            ev.sk = sk;
            emit(&ev);
        }
    }
    info.sock_use.last_dir = dir;
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
    let group_dead_off = cfg!(exit_group_dead);
    let last = if group_dead_off != OFFSET_ABSENT {
        field::<u8>(ctx, group_dead_off)? != 0
    } else {
        pid_tgid as u32 == tgid
    };
    if !last || cfg!(filter_active) != 0 && unsafe { WANTED_TGIDS.get(&tgid) }.is_none() {
        return None;
    }
    let mut ev = blank_event(EventKind::Exit, tgid);
    let task = unsafe { bpf_get_current_task() };
    ev.ret = kread(task, cfg!(task_exit_code)).unwrap_or(0);
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    debug!(ctx, "traced process {} exited, wait status {}", tgid, ev.ret);
    emit(&ev);
    Some(())
}

/// The benchmark's floor: only counts the state tracepoint, the least any tracer of it pays.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn floor_count(_ctx: TracePointContext) -> u32 {
    if let Some(slot) = FLOOR.get_ptr_mut(0) {
        unsafe { *slot += 1 };
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
