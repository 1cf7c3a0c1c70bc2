//! Loading and attaching the kernel programs with aya, and the userspace ends of their maps:
//! the ring buffer read with tokio's AsyncFd, the wanted-process filter, the snapshot preseed,
//! per-socket use counters, the user stacks of connection births (STACKS) and the Go uprobes
//! that find a net/http request's caller ([`crate::kernel::go_probes`]), and every count of what the kernel
//! lost: failed ring-buffer reserves, map inserts and stacks (the programs' own per-CPU
//! counters) and each program's `recursion_misses` (runs the kernel skipped, read from the
//! program's fdinfo).
use std::{os::fd::AsFd, os::fd::AsRawFd, path::Path};

use anyhow::{bail, Context as _};
use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use connlife_common::{
    connect_from_regs, maps, Counter, Hook, Seed, SockInfo, UserStack, CONFIG_GLOBAL, CONNECT_PROGRAM, COUNTER_SLOTS,
    MAYBE_WANTED_SLOTS, PROGRAMS, STACK_FRAMES, STATE_PROGRAM, STATE_PROGRAM_NESTED,
};

pub use crate::kernel::go_probes::GoAttach;
use tokio::io::unix::AsyncFd;

use crate::kernel::{
    event::{decode, DecodeError, KernelEvent},
    go_probes::GoProbes,
    probes::{self, Features},
    tracefs,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlife"));
/// The benchmark's floor program, in its own object so the product never carries it.
static FLOOR_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlife-floor"));

/// Which processes to trace. `all` traces every process (the agent's default).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    /// Take each connection's origin at its birth: the owner's user stack at connect() and
    /// accept(), and Go net/http's request stack and Transport once [`Tracer::attach_go`]
    /// attached its uprobes. Off: the stack maps shrink to one entry.
    pub origin: bool,
    /// Fold each socket's quiet steps (SYN_SENT, SYN_RECV, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
    /// accept, the owner's last close) into its kernel entry and send them with its next
    /// record ([`connlife_common::Folded`]); off, every state change is a record of its own
    /// (`--transitions`, which prints them as they happen).
    pub fold: bool,
}

impl Filter {
    pub fn is_all(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty()
    }
}

pub use crate::kernel::event::comm_bytes;

/// Kernel-side loss counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub socks_full: u64,
    pub read_failed: u64,
    pub wanted_full: u64,
    /// Sockets born where a stale SOCKS entry was (its end had been missed).
    pub stale_entries: u64,
    /// Events lost because the kernel skipped one of connlife's programs (`recursion_misses`),
    /// not counting the main state program's misses that the nested one handled; None before
    /// 5.12, which does not count them.
    pub recursion_misses: Option<u64>,
    /// State changes the nested program handled for the main one (not lost).
    pub rescued: u64,
    /// Births whose user stack was not stored (STACKS bucket taken by another stack, or the
    /// stack unreadable): their origin has no stack.
    pub stack_missed: u64,
}

/// Events lost to recursion misses: every program's misses, except the main state program's
/// that the nested one rescued, and the nested one's own. The nested program is only running
/// where the main one is not (its own pass right after the main one's, which a softirq may
/// interrupt: the main program handles that event) or inside a softirq that interrupted the
/// main one (where no other state change can nest), so an event it is skipped for was handled.
pub fn recursion_losses(misses: &[(String, u64)], rescued: u64) -> u64 {
    let of = |name: &str| misses.iter().find(|(p, _)| p == name).map(|(_, n)| *n).unwrap_or(0);
    let others: u64 = misses
        .iter()
        .filter(|(p, _)| p != STATE_PROGRAM && p != STATE_PROGRAM_NESTED)
        .map(|(_, n)| n)
        .sum();
    others + of(STATE_PROGRAM).saturating_sub(rescued)
}

/// `BPF_MAP_UPDATE_BATCH` (aya 0.14 has no batch operations): `keys[i] -> values[i]`, all or
/// an error. The attribute is the `batch` member of `union bpf_attr`; the kernel zero-fills
/// the rest of the union from the size given.
fn update_batch<K: Copy, V: Copy>(map_fd: std::os::fd::RawFd, keys: &[K], values: &[V]) -> std::io::Result<()> {
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: map_fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the attribute points at `count` keys and values that live for the call; the
        // kernel reads them and writes back only `count` (how many it processed).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Processed all, or (interrupted) a part: go on from there.
        done += (attr.count as usize).max(1);
    }
    Ok(())
}

/// The kernel's own ENOTSUPP (524), which a map without batch operations returns.
const ENOTSUPP_KERNEL: i32 = 524;

/// The loaded programs and their maps.
pub struct Tracer {
    ebpf: Ebpf,
    ring: Option<RingBuf<MapData>>,
    pub features: Features,
    pub attached: Vec<String>,
    go: GoProbes,
}

/// Privileges connlife needs, and how to tell which is missing. Root has them all, except
/// where a container or sandbox takes them away.
const NEEDED_CAPS: &[(u32, &str)] = &[
    (21, "CAP_SYS_ADMIN"),      // setns into other network namespaces, /proc of other users
    (38, "CAP_PERFMON"),        // tracepoint programs, kernel pointers
    (39, "CAP_BPF"),            // BPF maps and programs
    (19, "CAP_SYS_PTRACE"),     // /proc/PID/fd of other users' processes
    (2, "CAP_DAC_READ_SEARCH"), // /proc/PID/fd links of other users' processes
    (34, "CAP_SYSLOG"),         // real addresses in /proc/kallsyms (`sock_close`)
];

/// Check the things that make loading fail with an obscure error, and say it in one line.
pub fn preflight() -> anyhow::Result<std::path::PathBuf> {
    let missing = missing_caps(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    if !missing.is_empty() {
        bail!(
            "missing capabilities {} (connlife needs {}); run it with sudo, or grant them (see deploy/systemd)",
            missing.join(", "),
            NEEDED_CAPS.iter().map(|c| c.1).collect::<Vec<_>>().join(", ")
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "kernel BTF (/sys/kernel/btf/vmlinux) is absent: connlife needs a kernel built with CONFIG_DEBUG_INFO_BTF"
        );
    }
    tracefs::ensure_mounted()
}

/// The needed capabilities missing from the effective set (`CapEff:` of /proc/self/status).
pub fn missing_caps(status: &str) -> Vec<&'static str> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    NEEDED_CAPS
        .iter()
        .filter(|(bit, _)| eff & (1u64 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

impl Tracer {
    /// Discover the kernel, load the programs with its offsets, fill the filter and attach.
    pub fn load(filter: &Filter) -> anyhow::Result<Tracer> {
        let tracefs_root = preflight()?;
        let (mut config, features) = probes::discover(&tracefs_root)?;
        config.filter_active = u32::from(!filter.is_all());
        config.comm_filter = u32::from(!filter.comms.is_empty());
        config.self_tgid = std::process::id();
        config.origin = u32::from(filter.origin);
        config.fold = u32::from(filter.fold);
        raise_memlock();
        let mut loader = EbpfLoader::new();
        loader.override_global(CONFIG_GLOBAL, &config, true);
        if !filter.origin {
            // Unused: no need for their memory (STACKS alone is ~17 MB at full size).
            for map in [
                maps::STACKS,
                maps::GO_REQUESTS,
                maps::GO_WANTS,
                maps::GO_DIALS,
                maps::GO_PENDING,
            ] {
                loader.map_max_entries(map, 1);
            }
        }
        if connect_from_regs(&config) {
            // sys_enter_connect is not attached: the SYN_SENT birth reads the registers.
            loader.map_max_entries(maps::CONNECT_FDS, 1);
        }
        let ebpf = loader.load(OBJECT).context("loading the eBPF object")?;
        let mut tracer = Tracer {
            ebpf,
            ring: None,
            features,
            attached: Vec::new(),
            go: GoProbes::default(),
        };
        tracer.set_filter(filter)?;
        for &(program, hook, category, name) in PROGRAMS {
            if !tracer.features.has(program) {
                log::info!("tracepoint {category}/{name} absent: {program} not attached");
                continue;
            }
            if program == CONNECT_PROGRAM && connect_from_regs(&config) {
                log::info!("{program} not attached: a connect's fd is read from its registers");
                continue;
            }
            let prog = tracer
                .ebpf
                .program_mut(program)
                .with_context(|| format!("program {program} missing from the object"))?;
            match hook {
                Hook::TracePoint => {
                    let prog: &mut TracePoint = prog.try_into()?;
                    prog.load()
                        .with_context(|| format!("loading program {program} (verifier)"))?;
                    prog.attach(category, name)
                        .with_context(|| format!("attaching to tracepoint {category}/{name}"))?;
                }
                Hook::RawTracePoint => {
                    let prog: &mut RawTracePoint = prog.try_into()?;
                    prog.load()
                        .with_context(|| format!("loading program {program} (verifier)"))?;
                    prog.attach(name)
                        .with_context(|| format!("attaching to raw tracepoint {name}"))?;
                }
            }
            tracer.attached.push(program.to_string());
        }
        let ring = RingBuf::try_from(tracer.ebpf.take_map(maps::EVENTS).context("map EVENTS")?)?;
        tracer.ring = Some(ring);
        Ok(tracer)
    }

    fn set_filter(&mut self, filter: &Filter) -> anyhow::Result<()> {
        for &pid in &filter.pids {
            self.add_pid(pid)?;
        }
        let mut comms: BpfHashMap<_, [u8; 16], u8> =
            BpfHashMap::try_from(self.ebpf.map_mut(maps::WANTED_COMMS).context("map WANTED_COMMS")?)?;
        for comm in &filter.comms {
            comms.insert(comm_bytes(comm), 1, 0).context("WANTED_COMMS insert")?;
        }
        Ok(())
    }

    pub fn add_pid(&mut self, pid: u32) -> anyhow::Result<()> {
        let mut wanted: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.ebpf.map_mut(maps::WANTED_TGIDS).context("map WANTED_TGIDS")?)?;
        wanted.insert(pid, 1, 0).context("WANTED_TGIDS insert")?;
        // After WANTED_TGIDS: the kernel's filter reads the slot first.
        let mut maybe: Array<_, u8> =
            Array::try_from(self.ebpf.map_mut(maps::MAYBE_WANTED).context("map MAYBE_WANTED")?)?;
        maybe
            .set(pid & (MAYBE_WANTED_SLOTS - 1), 1, 0)
            .context("MAYBE_WANTED set")
    }

    /// Sockets found by a snapshot, by cookie, with their owners: one BPF_MAP_UPDATE_BATCH
    /// (5.6+) per call, or one update per socket where the kernel refuses batches. SEEDS_PENDING
    /// grows by their number first (a read and a write: an adoption between the two leaves the
    /// count high, which costs the kernel a cookie read, never a socket).
    pub fn preseed(&mut self, entries: &[(u64, Seed)]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // Counted before they go in, so that the kernel never sees a seed with the count at 0.
        let mut pending: Array<_, i64> =
            Array::try_from(self.ebpf.map_mut(maps::SEEDS_PENDING).context("map SEEDS_PENDING")?)?;
        let before = pending.get(&0, 0).context("SEEDS_PENDING read")?;
        pending
            .set(0, before.max(0) + entries.len() as i64, 0)
            .context("SEEDS_PENDING set")?;
        let Some(aya::maps::Map::LruHashMap(data)) = self.ebpf.map(maps::PRESEED) else {
            bail!("map PRESEED is not an LRU hash map");
        };
        let keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let values: Vec<Seed> = entries.iter().map(|e| e.1).collect();
        match update_batch(data.fd().as_fd().as_raw_fd(), &keys, &values) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP_KERNEL)
                ) =>
            {
                let mut map: BpfHashMap<_, u64, Seed> =
                    BpfHashMap::try_from(self.ebpf.map_mut(maps::PRESEED).context("map PRESEED")?)?;
                for (cookie, info) in entries {
                    map.insert(cookie, info, 0).context("PRESEED insert")?;
                }
                Ok(())
            }
            Err(e) => Err(e).context("PRESEED batch update"),
        }
    }

    /// Listening port of a wanted process found by the snapshot: trace its accepted children.
    pub fn add_listen_port(&mut self, port: u16) -> anyhow::Result<()> {
        let mut map: Array<_, u8> =
            Array::try_from(self.ebpf.map_mut(maps::LISTEN_PORTS).context("map LISTEN_PORTS")?)?;
        map.set(u32::from(port), 1, 0).context("LISTEN_PORTS set")
    }

    /// Each attached program's `recursion_misses` (runs the kernel skipped because another BPF
    /// program was running on that CPU), from /proc/self/fdinfo of the program; None on
    /// kernels that do not count them (before 5.12).
    pub fn recursion_misses(&self) -> Option<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for name in &self.attached {
            let prog = self.ebpf.program(name)?;
            let fd = prog.fd().ok()?.as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            out.push((name.clone(), parse_fdinfo(&info, "recursion_misses")?));
        }
        Some(out)
    }

    /// The frames (instruction addresses, innermost first) of a STACKS id from a
    /// [`crate::kernel::event::BirthOrigin`]; None when the id is unknown (freed, or never).
    pub fn stack(&self, id: u32) -> Option<Vec<u64>> {
        let map = BpfHashMap::<_, u32, UserStack>::try_from(self.ebpf.map(maps::STACKS)?).ok()?;
        let stack = map.get(&id, 0).ok()?;
        let len = (stack.len as usize).clamp(1, STACK_FRAMES);
        Some(stack.frames[..len].to_vec())
    }

    /// Free a STACKS id once no connection needs its frames. Identical stacks share an id, so
    /// only free it when every event that named it is done with. Without this the map fills
    /// and later births count as `stack_missed`.
    pub fn forget_stack(&mut self, id: u32) {
        let map = self
            .ebpf
            .map_mut(maps::STACKS)
            .map(BpfHashMap::<_, u32, UserStack>::try_from);
        if let Some(Ok(mut map)) = map {
            let _ = map.remove(&id);
        }
    }

    /// Put the Go net/http uprobes on the executable of `pid`, once per binary (see
    /// [`crate::kernel::go_probes`]). Never fails: the answer says what happened, in one line when printed.
    pub fn attach_go(&mut self, pid: u32) -> GoAttach {
        let outcome = self.go.attach(&mut self.ebpf, pid);
        if matches!(outcome, GoAttach::Attached { .. }) {
            for &(program, _) in connlife_common::GO_PROGRAMS {
                if !self.attached.iter().any(|a| a == program) {
                    self.attached.push(program.to_string());
                }
            }
        }
        outcome
    }

    /// Remove the SOCKS entries `stale` says are stale (its argument: the socket's address and
    /// when the kernel first saw it); how many went. For a full table only: one syscall per entry.
    pub fn sweep_socks(&mut self, stale: impl Fn(u64, u64) -> bool) -> anyhow::Result<usize> {
        let mut map: BpfHashMap<_, u64, SockInfo> =
            BpfHashMap::try_from(self.ebpf.map_mut(maps::SOCKS).context("map SOCKS")?)?;
        let old: Vec<u64> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|(sk, info)| stale(*sk, info.folded.born_ns))
            .map(|(sk, _)| sk)
            .collect();
        let mut removed = 0;
        for sk in old {
            removed += usize::from(map.remove(&sk).is_ok());
        }
        Ok(removed)
    }

    /// Current kernel view of one socket (use counters, owner); None once it is gone.
    pub fn sock_info(&self, sk: u64) -> Option<SockInfo> {
        let map: BpfHashMap<_, u64, SockInfo> = BpfHashMap::try_from(self.ebpf.map(maps::SOCKS)?).ok()?;
        map.get(&sk, 0).ok()
    }

    pub fn counters(&self) -> anyhow::Result<KernelCounters> {
        // The programs' misses first, the rescues after: a miss is counted before the nested
        // program rescues it, so read in this order a rescued miss never looks like a loss.
        let misses = self.recursion_misses();
        let map: PerCpuArray<_, u64> = PerCpuArray::try_from(self.ebpf.map(maps::COUNTERS).context("map COUNTERS")?)?;
        let mut sums = [0u64; COUNTER_SLOTS as usize];
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum = map.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(KernelCounters {
            ringbuf_full: sums[Counter::RingbufFull as usize],
            socks_full: sums[Counter::SocksFull as usize],
            read_failed: sums[Counter::ReadFailed as usize],
            wanted_full: sums[Counter::WantedFull as usize],
            stale_entries: sums[Counter::StaleEntry as usize],
            recursion_misses: misses.map(|v| recursion_losses(&v, sums[Counter::Rescued as usize])),
            rescued: sums[Counter::Rescued as usize],
            stack_missed: sums[Counter::StackMissed as usize],
        })
    }

    /// The ring buffer, for the event loop (see [`EventStream`]).
    pub fn take_events(&mut self) -> anyhow::Result<EventStream> {
        let ring = self.ring.take().context("event stream already taken")?;
        // aya's documented shape: the AsyncFd owns the ring buffer, so the fd is deregistered
        // before the map is closed.
        // SAFETY: the ring buffer owns its map fd, which stays open and the same for as long
        // as the AsyncFd owns the ring buffer (it is only closed when the AsyncFd drops it).
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
        Ok(EventStream { ring })
    }
}

/// A `key:\tvalue` line of a /proc fdinfo file.
pub fn parse_fdinfo(info: &str, key: &str) -> Option<u64> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `connlife floor`: attach only the counting program (the benchmark's floor), or with
/// `hooks` an empty program on every hook connlife attaches on this kernel, the way it
/// attaches it (the state one counting), the syscall tracepoints left out with `no_syscalls`;
/// wait for SIGINT/SIGTERM, return how many times the state tracepoint fired.
pub async fn run_floor(hooks: bool, no_syscalls: bool) -> anyhow::Result<u64> {
    use connlife_common::{FLOOR_HOOKS_CLASSIC, FLOOR_HOOKS_RAW, FLOOR_HOOKS_STATE, FLOOR_PROGRAM};
    use tokio::signal::unix::{signal, SignalKind};
    let root = preflight()?;
    let (_, features) = probes::discover(&root)?;
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .load(FLOOR_OBJECT)
        .context("loading the floor object")?;
    if !hooks {
        let prog: &mut TracePoint = ebpf.program_mut(FLOOR_PROGRAM).context("floor program")?.try_into()?;
        prog.load()?;
        prog.attach("sock", "inet_sock_set_state")?;
    } else {
        for name in [FLOOR_HOOKS_STATE, FLOOR_HOOKS_RAW] {
            let prog: &mut RawTracePoint = ebpf.program_mut(name).context("floor program")?.try_into()?;
            prog.load()?;
        }
        let prog: &mut TracePoint = ebpf
            .program_mut(FLOOR_HOOKS_CLASSIC)
            .context("floor program")?
            .try_into()?;
        prog.load()?;
        let wanted = |category: &str| !(no_syscalls && category == "syscalls");
        for &(program, hook, category, name) in PROGRAMS
            .iter()
            .filter(|(p, _, category, _)| features.has(p) && wanted(category))
        {
            let context = || format!("attaching the floor to {category}/{name}");
            match hook {
                Hook::RawTracePoint => {
                    let floor = if program == STATE_PROGRAM {
                        FLOOR_HOOKS_STATE
                    } else {
                        FLOOR_HOOKS_RAW
                    };
                    let prog: &mut RawTracePoint = ebpf.program_mut(floor).context("floor program")?.try_into()?;
                    prog.attach(name).with_context(context)?;
                }
                Hook::TracePoint => {
                    let prog: &mut TracePoint = ebpf
                        .program_mut(FLOOR_HOOKS_CLASSIC)
                        .context("floor program")?
                        .try_into()?;
                    prog.attach(category, name).with_context(context)?;
                }
            }
        }
    }
    crate::say!("ready");
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    let map: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map(maps::FLOOR).context("map FLOOR")?)?;
    Ok(map.get(&0, 0)?.iter().sum())
}

/// Records handled per wake-up of the event loop.
pub const BATCH: usize = 4096;

/// Async reader of the ring buffer. Kept apart from [`Tracer`] so the event loop can await it
/// while still using the tracer's maps.
pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl EventStream {
    /// Wait until records are ready, then drain them into `out`.
    /// At most [`BATCH`] records per call, so timers, signals and the metrics endpoint get
    /// their turn during a flood; readiness is cleared only once the ring is empty.
    pub async fn next_batch(&mut self, out: &mut Vec<Result<KernelEvent, DecodeError>>) -> anyhow::Result<()> {
        // A wakeup (forced by the kernel at each WAKEUP_BYTES pending) or the poll period, whichever first.
        let ready = tokio::select! {
            g = self.ring.readable_mut() => Some(g.context("waiting on the ring buffer")?),
            _ = tokio::time::sleep(std::time::Duration::from_millis(connlife_common::RING_POLL_MS)) => None,
        };
        match ready {
            Some(mut guard) => {
                let ring = guard.get_inner_mut();
                let empty = drain_into(ring, out, BATCH);
                if empty {
                    guard.clear_ready();
                }
            }
            None => {
                drain_into(self.ring.get_mut(), out, BATCH);
            }
        }
        Ok(())
    }

    /// Drain what is there without waiting.
    pub fn drain(&mut self, out: &mut Vec<Result<KernelEvent, DecodeError>>) {
        drain_into(self.ring.get_mut(), out, usize::MAX);
    }
}

/// Decode up to `max` records; true when the ring is empty.
fn drain_into(ring: &mut RingBuf<MapData>, out: &mut Vec<Result<KernelEvent, DecodeError>>, max: usize) -> bool {
    let mut n = 0;
    while n < max {
        match ring.next() {
            Some(item) => out.push(decode(&item)),
            None => return true,
        }
        n += 1;
    }
    false
}

fn raise_memlock() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (https://lwn.net/Articles/837122/).
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we own; failure is reported, not undefined.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recursion_misses_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t1234\nverified_insns:\t200\n";
        assert_eq!(parse_fdinfo(info, "recursion_misses"), Some(1234));
        assert_eq!(parse_fdinfo("pos:\t0\n", "recursion_misses"), None);
    }

    #[test]
    fn rescued_state_changes_are_not_losses() {
        let m = |a: u64, b: u64, other: u64| {
            vec![
                (STATE_PROGRAM.to_string(), a),
                (STATE_PROGRAM_NESTED.to_string(), b),
                ("sys_enter_close".to_string(), other),
            ]
        };
        assert_eq!(recursion_losses(&m(500, 0, 0), 500), 0);
        // One skip of the main program that nothing rescued: lost once.
        assert_eq!(recursion_losses(&m(501, 1, 0), 500), 1);
        assert_eq!(recursion_losses(&m(10, 0, 3), 4), 9);
        // The nested program skipped in its own pass (seen beside tcpstates): the main one
        // handled those events.
        assert_eq!(recursion_losses(&m(24, 8, 0), 24), 0);
    }

    #[test]
    fn names_the_missing_capabilities() {
        // CapEff of root: all bits.
        assert!(missing_caps("CapEff:\t000001ffffffffff\n").is_empty());
        // CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_SYSLOG.
        let granted = (1u64 << 39) | (1 << 38) | (1 << 21) | (1 << 19) | (1 << 2) | (1 << 34);
        assert!(missing_caps(&format!("CapEff:\t{granted:016x}\n")).is_empty());
        let no_bpf = granted & !(1u64 << 39);
        assert_eq!(missing_caps(&format!("CapEff:\t{no_bpf:016x}\n")), vec!["CAP_BPF"]);
        assert_eq!(missing_caps("CapEff:\t0000000000000000\n").len(), NEEDED_CAPS.len());
    }
}
