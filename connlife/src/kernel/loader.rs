//! Loading and attaching the kernel programs with aya, and the userspace ends of their maps:
//! the ring buffer read with tokio's AsyncFd, the wanted-process filter, the snapshot preseed,
//! per-socket use counters and the kernel's loss counters.
use std::{
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use anyhow::{bail, Context as _};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use connlife_common::{maps, Counter, SockInfo, CONFIG_GLOBAL, COUNTER_SLOTS, PROGRAMS};

use crate::kernel::{
    event::{decode, DecodeError, KernelEvent},
    probes::{self, Features},
    tracefs,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connlife"));

/// Which processes to trace. `all` traces every process (the agent's default).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
}

impl Filter {
    pub fn is_all(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty()
    }
}

/// A process name as the kernel stores it: at most 15 bytes, NUL-padded.
pub fn comm_bytes(comm: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = comm.len().min(15);
    out[..n].copy_from_slice(&comm.as_bytes()[..n]);
    out
}

/// Kernel-side loss counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub socks_full: u64,
    pub read_failed: u64,
    pub wanted_full: u64,
}

/// The loaded programs and their maps.
pub struct Tracer {
    ebpf: Ebpf,
    ring: Option<RingBuf<MapData>>,
    pub features: Features,
    pub attached: Vec<String>,
}

/// Check the things that make loading fail with an obscure error, and say it in one line.
pub fn preflight() -> anyhow::Result<std::path::PathBuf> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN to load tracepoint programs); run it with sudo");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "kernel BTF (/sys/kernel/btf/vmlinux) is absent: connlife needs a kernel built with CONFIG_DEBUG_INFO_BTF"
        );
    }
    tracefs::ensure_mounted()
}

impl Tracer {
    /// Discover the kernel, load the programs with its offsets, fill the filter and attach.
    pub fn load(filter: &Filter) -> anyhow::Result<Tracer> {
        let tracefs_root = preflight()?;
        let (mut config, features) = probes::discover(&tracefs_root)?;
        config.filter_active = u32::from(!filter.is_all());
        config.comm_filter = u32::from(!filter.comms.is_empty());
        raise_memlock();
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .load(OBJECT)
            .context("loading the eBPF object")?;
        if let Err(e) = aya_log::EbpfLogger::init(&mut ebpf).map(forward_logs) {
            log::debug!("eBPF logger not available: {e}");
        }
        let mut tracer = Tracer {
            ebpf,
            ring: None,
            features,
            attached: Vec::new(),
        };
        tracer.set_filter(filter)?;
        for (program, category, name) in PROGRAMS {
            if !tracer.features.has(program) {
                log::info!("tracepoint {category}/{name} absent: {program} not attached");
                continue;
            }
            let prog: &mut TracePoint = tracer
                .ebpf
                .program_mut(program)
                .with_context(|| format!("program {program} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading program {program} (verifier)"))?;
            prog.attach(category, name)
                .with_context(|| format!("attaching to tracepoint {category}/{name}"))?;
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
        wanted.insert(pid, 1, 0).context("WANTED_TGIDS insert")
    }

    /// Tell the kernel about a socket found by the snapshot, by cookie, with its owner.
    pub fn preseed(&mut self, cookie: u64, info: &SockInfo) -> anyhow::Result<()> {
        let mut map: BpfHashMap<_, u64, SockInfo> =
            BpfHashMap::try_from(self.ebpf.map_mut(maps::PRESEED).context("map PRESEED")?)?;
        map.insert(cookie, *info, 0).context("PRESEED insert")
    }

    /// Listening port of a wanted process found by the snapshot: trace its accepted children.
    pub fn add_listen_port(&mut self, port: u16) -> anyhow::Result<()> {
        let mut map: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(self.ebpf.map_mut(maps::LISTEN_PORTS).context("map LISTEN_PORTS")?)?;
        map.insert(port, 1, 0).context("LISTEN_PORTS insert")
    }

    /// Current kernel view of one socket (use counters, owner); None once it is gone.
    pub fn sock_info(&self, sk: u64) -> Option<SockInfo> {
        let map: BpfHashMap<_, u64, SockInfo> = BpfHashMap::try_from(self.ebpf.map(maps::SOCKS)?).ok()?;
        map.get(&sk, 0).ok()
    }

    pub fn counters(&self) -> anyhow::Result<KernelCounters> {
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
        })
    }

    /// The ring buffer, for the event loop (see [`EventStream`]).
    pub fn take_events(&mut self) -> anyhow::Result<EventStream> {
        let ring = self.ring.take().context("event stream already taken")?;
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(RingFd(ring.as_raw_fd()), tokio::io::Interest::READABLE)
        }
        .context("registering the ring buffer with tokio")?;
        Ok(EventStream { ring, fd })
    }
}

/// `connlife floor`: attach only the counting program (the benchmark's floor), wait for
/// SIGINT/SIGTERM, return how many times the state tracepoint fired.
pub async fn run_floor() -> anyhow::Result<u64> {
    use connlife_common::FLOOR_PROGRAM;
    use tokio::signal::unix::{signal, SignalKind};
    let root = preflight()?;
    let (config, _) = probes::discover(&root)?;
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        .load(OBJECT)
        .context("loading the eBPF object")?;
    let prog: &mut TracePoint = ebpf.program_mut(FLOOR_PROGRAM).context("floor program")?.try_into()?;
    prog.load()?;
    prog.attach("sock", "inet_sock_set_state")?;
    eprintln!("ready");
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    let map: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map(maps::FLOOR).context("map FLOOR")?)?;
    Ok(map.get(&0, 0)?.iter().sum())
}

/// Records handled per wake-up of the event loop.
pub const BATCH: usize = 4096;

struct RingFd(RawFd);
impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Async reader of the ring buffer. Kept apart from [`Tracer`] so the event loop can await it
/// while still using the tracer's maps.
pub struct EventStream {
    ring: RingBuf<MapData>,
    fd: tokio::io::unix::AsyncFd<RingFd>,
}

impl EventStream {
    /// Wait until records are ready, then drain them all into `out`.
    /// At most [`BATCH`] records per call, so timers, signals and the metrics endpoint get
    /// their turn during a flood; readiness is cleared only once the ring is empty.
    pub async fn next_batch(&mut self, out: &mut Vec<Result<KernelEvent, DecodeError>>) -> anyhow::Result<()> {
        // A wakeup (forced by the kernel past WAKEUP_BYTES) or the poll period, whichever first.
        let mut guard = tokio::select! {
            g = self.fd.readable() => Some(g.context("waiting on the ring buffer")?),
            _ = tokio::time::sleep(std::time::Duration::from_millis(connlife_common::RING_POLL_MS)) => None,
        };
        while out.len() < BATCH {
            match self.ring.next() {
                Some(item) => out.push(decode(&item)),
                None => {
                    if let Some(g) = guard.as_mut() {
                        g.clear_ready();
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Drain what is there without waiting.
    pub fn drain(&mut self, out: &mut Vec<Result<KernelEvent, DecodeError>>) {
        while let Some(item) = self.ring.next() {
            out.push(decode(&item));
        }
    }
}

fn raise_memlock() {
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (https://lwn.net/Articles/837122/).
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK");
    }
}

/// Forward aya-log records from the kernel programs to the `log` crate (shown with RUST_LOG).
/// They travel in their own ring buffer, so they are not ordered with the events.
fn forward_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let fd = match unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => return log::debug!("eBPF logger not registered: {e}"),
    };
    let mut fd = fd;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
