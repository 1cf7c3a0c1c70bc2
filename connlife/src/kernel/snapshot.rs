//! Start-up snapshot of the TCP sockets that already exist when connlife attaches.
//!
//! The eBPF probes only see what happens after they are attached, but a process that has been
//! leaking for hours already holds hundreds of sockets. This module lists them once: the
//! kernel's sock_diag netlink interface (INET_DIAG) gives each TCP socket's state, addresses,
//! inode, cookie and `tcp_info`, and the `socket:[inode]` links under /proc/PID/fd tell which
//! process and fd hold it. sock_diag only dumps the network namespace of the calling *thread*,
//! and traced processes may live in other namespaces (containers, tests in their own netns), so
//! the dump runs once per distinct netns, in a dedicated thread that first `setns()`s into it
//! (netns membership is per thread, so the rest of the program is unaffected). The snapshot is
//! racy by nature: the /proc scan and the dumps are not atomic, so a socket opened or closed in
//! between shows up without an owner or not at all, and a pid or fd may be reused meanwhile.
//! Attach the probes first, then take the snapshot, and de-duplicate by socket cookie: the
//! events then cover whatever the snapshot missed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, TCP_LISTEN, TCP_TIME_WAIT};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};
use procfs::process::{FDTarget, LimitValue, Process};
use procfs::ProcError;
use smallvec::SmallVec;

use crate::model::Comm;

#[derive(Debug, Clone, PartialEq)]
pub struct SocketOwner {
    pub tgid: u32,
    pub fd: i32,
    /// One copy per process, shared by all its sockets (and by the model's holders).
    pub comm: Comm,
}

/// A socket's holders: one inline (no allocation per socket for the common case).
pub type SocketOwners = SmallVec<[SocketOwner; 1]>;

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSocket {
    /// netns inode
    pub netns: u32,
    /// 0 for sockets without a file: TIME_WAIT, SYN_RECV requests, not yet accepted children
    pub inode: u64,
    /// socket cookie (idiag_cookie as u64), the same value as bpf_get_socket_cookie()
    pub cookie: u64,
    /// kernel TCP state number (1 ESTABLISHED ... 10 LISTEN, 11 CLOSING); SYN_RECV request
    /// sockets (NEW_SYN_RECV, 12, in the kernel) are reported by sock_diag as 3 (SYN_RECV),
    /// bound but never listening/connected ones as 7 (CLOSE)
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// every (pid, fd) holding it; empty if none found (orphan / other ns)
    pub owners: SocketOwners,
    /// tcp_info bytes_sent (None without tcp_info: TIME_WAIT, SYN_RECV, LISTEN)
    pub bytes_sent: Option<u64>,
    /// tcp_info bytes_received
    pub bytes_received: Option<u64>,
    /// tcpi_last_data_sent
    pub last_send_ago_ms: Option<u32>,
    /// tcpi_last_data_recv
    pub last_recv_ago_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessFds {
    pub tgid: u32,
    pub comm: String,
    pub netns: u32,
    pub open_fds: u32,
    /// RLIMIT_NOFILE soft limit from /proc/PID/limits (None if unlimited or unreadable)
    pub fd_limit: Option<u64>,
    /// (fd, inode)
    pub socket_inodes: Vec<(i32, u64)>,
}

/// Which sockets nobody holds a filtered snapshot keeps besides those of the wanted processes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ownerless {
    /// The not yet accepted children of the wanted listeners (the start-up snapshot: any
    /// other socket without a holder is nobody's business of ours).
    Backlog,
    /// Also the orphans: sockets their holder closed that are still ending (FIN_WAIT1/2,
    /// CLOSING, LAST_ACK). A reconciliation must see them, or a connection the model follows
    /// to its end would be taken for one that vanished.
    BacklogAndOrphans,
}

/// A snapshot and the network namespaces it looked into: a socket of any other netns (one
/// no traced process is in any more, whose orphans may still be ending) was not looked for.
pub struct View {
    pub sockets: Vec<SnapshotSocket>,
    pub netns: Vec<u32>,
}

/// Take the snapshot. `pids`: Some(list) = only those processes (and only their sockets are
/// returned: sockets owned by one of them, plus the ownerless ones `ownerless` says); None =
/// every process.
pub fn take(pids: Option<&[u32]>, ownerless: Ownerless) -> Result<View> {
    let mut tgids: Vec<u32> = match pids {
        Some(list) => list.to_vec(),
        None => procfs::process::all_processes()
            .context("listing /proc")?
            .flatten()
            .map(|p| p.pid() as u32)
            .collect(),
    };
    tgids.sort_unstable();
    tgids.dedup();
    let mut procs = Vec::with_capacity(tgids.len());
    for scanned in scan_processes(&tgids) {
        match scanned {
            Ok(p) => procs.extend(p),
            // Whole-system mode: a process that may not be inspected (a non-dumpable one whose
            // ns links are restricted, pid 1 of a sandbox) must not sink the snapshot.
            Err(e) if pids.is_none() => log::debug!("snapshot: skipping: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    let mut by_netns: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in &procs {
        by_netns.entry(p.netns).or_default().push(p.tgid);
    }
    let own_netns = std::fs::metadata("/proc/thread-self/ns/net")
        .context("stat /proc/thread-self/ns/net")?
        .ino() as u32;
    let dumps = std::thread::scope(|s| {
        let jobs: Vec<_> = by_netns
            .iter()
            .map(|(&ns, pids)| (ns, s.spawn(move || dump_netns(ns, pids, own_netns))))
            .collect();
        jobs.into_iter()
            .map(|(ns, j)| Ok((ns, j.join().map_err(|_| anyhow!("sock_diag thread panicked"))??)))
            .collect::<Result<Vec<_>>>()
    })?;
    // Only the netns actually entered were looked into.
    let netns = dumps.iter().filter(|(_, d)| d.is_some()).map(|&(ns, _)| ns).collect();
    let sockets = moved_together(dumps.into_iter().filter_map(|(_, d)| d).collect());
    Ok(View {
        sockets: join(sockets, &procs, pids, ownerless),
        netns,
    })
}

/// Just the /proc side for one process (also used periodically for fd pressure): open fd
/// count, limit, socket inodes.
pub fn process_fds(tgid: u32) -> Result<ProcessFds> {
    read_process(tgid)?.ok_or_else(|| anyhow!("process {tgid} not found"))
}

/// [`process_fds`], with a process that is gone (or a zombie) as `Ok(None)`: only real
/// failures (permissions, fds short) are errors.
pub fn read_process(tgid: u32) -> Result<Option<ProcessFds>> {
    scan_process(tgid)
}

/// Pure join, unit-tested without root: attach owners from the /proc side to the sock_diag
/// records by inode, filter to the wanted pids.
pub fn join(
    diag: Vec<SnapshotSocket>,
    procs: &[ProcessFds],
    wanted: Option<&[u32]>,
    ownerless: Ownerless,
) -> Vec<SnapshotSocket> {
    let mut owners: HashMap<u64, SocketOwners> = HashMap::new();
    for p in procs.iter().filter(|p| wanted.is_none_or(|w| w.contains(&p.tgid))) {
        let comm = Comm::from(p.comm.as_str());
        for &(fd, inode) in &p.socket_inodes {
            let (tgid, comm) = (p.tgid, comm.clone());
            owners.entry(inode).or_default().push(SocketOwner { tgid, fd, comm });
        }
    }
    let mut out: Vec<SnapshotSocket> = diag
        .into_iter()
        .map(|mut s| {
            // Taken, not cloned (a socket is dumped once): at 200,000 sockets a second copy
            // of every owner was a good part of the snapshot's peak.
            if let Some(o) = (s.inode != 0).then(|| owners.remove(&s.inode)).flatten() {
                s.owners = o;
                s.owners.sort_by_key(|o| (o.tgid, o.fd));
            }
            s
        })
        .collect();
    if wanted.is_some() {
        // Connections waiting in the accept queue of a wanted listener have no file (inode 0)
        // yet, so no owner: keep them, they are the listener's backlog.
        let listeners: HashSet<(u32, SocketAddr)> = out
            .iter()
            .filter(|s| s.state == TCP_LISTEN && !s.owners.is_empty())
            .map(|s| (s.netns, s.local))
            .collect();
        let any = |a: &SocketAddr| match a {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), a.port()),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), a.port()),
        };
        // An orphan has no file either (inode 0); TIME_WAIT is past the end the model follows.
        let orphans = ownerless == Ownerless::BacklogAndOrphans;
        out.retain(|s| {
            !s.owners.is_empty()
                || (s.inode == 0
                    && s.state != TCP_TIME_WAIT
                    && (orphans
                        || listeners.contains(&(s.netns, s.local))
                        || listeners.contains(&(s.netns, any(&s.local)))))
        });
    }
    out
}

/// Map a procfs result: `Ok(None)` when the process is gone (vanished mid-scan, or a zombie
/// without fds or netns), an error with a one-line context otherwise.
fn alive<T, E: Into<ProcError>>(r: Result<T, E>, tgid: u32, what: &str) -> Result<Option<T>> {
    match r.map_err(Into::into) {
        Ok(v) => Ok(Some(v)),
        Err(ProcError::NotFound(_)) => Ok(None),
        Err(ProcError::PermissionDenied(_)) => {
            bail!("reading /proc/{tgid}/{what}: permission denied (connlife needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for other users' processes)")
        }
        Err(e) => bail!("reading /proc/{tgid}/{what}: {e}"),
    }
}

#[cfg(test)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// [`scan_process`] of each of `tgids`, in their order, on up to [`SCAN_THREADS`] threads: a
/// process's fds are one readlink each, 200,000 of them take seconds on one core.
fn scan_processes(tgids: &[u32]) -> Vec<Result<Option<ProcessFds>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(SCAN_THREADS);
    if threads == 1 || tgids.len() < 2 {
        return tgids.iter().map(|&t| scan_process(t)).collect();
    }
    // Interleaved, not in runs: the processes holding most sockets are often neighbours.
    std::thread::scope(|s| {
        let jobs: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || {
                    (k..tgids.len())
                        .step_by(threads)
                        .map(|i| (i, scan_process(tgids[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out: Vec<(usize, Result<Option<ProcessFds>>)> = Vec::with_capacity(tgids.len());
        for job in jobs {
            match job.join() {
                Ok(part) => out.extend(part),
                Err(_) => out.push((usize::MAX, Err(anyhow!("/proc scan thread panicked")))),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    })
}

/// Threads reading /proc at most.
const SCAN_THREADS: usize = 4;

fn scan_process(tgid: u32) -> Result<Option<ProcessFds>> {
    let Ok(pid) = i32::try_from(tgid) else {
        return Ok(None);
    };
    let Some(proc) = alive(Process::new(pid), tgid, "")? else {
        return Ok(None);
    };
    let Some(fds) = alive(proc.fd(), tgid, "fd")? else {
        return Ok(None);
    };
    let (mut open_fds, mut socket_inodes) = (0, Vec::new());
    for fd in fds.flatten() {
        open_fds += 1;
        if let FDTarget::Socket(inode) = fd.target {
            socket_inodes.push((fd.fd, inode));
        }
    }
    let netns = std::fs::metadata(format!("/proc/{tgid}/ns/net"));
    let Some(netns) = alive(netns, tgid, "ns/net")? else {
        return Ok(None);
    };
    let Some(stat) = alive(proc.stat(), tgid, "stat")? else {
        return Ok(None);
    };
    let fd_limit = match proc.limits().map(|l| l.max_open_files.soft_limit) {
        Ok(LimitValue::Value(v)) => Some(v),
        _ => None,
    };
    Ok(Some(ProcessFds {
        tgid,
        comm: stat.comm,
        netns: netns.ino() as u32,
        open_fds,
        fd_limit,
        socket_inodes,
    }))
}

/// Runs on its own thread: every TCP socket of `netns`, entered through one of `pids`; `None`
/// when every one of them is gone (the netns was not looked into).
fn dump_netns(netns: u32, pids: &[u32], own_netns: u32) -> Result<Option<Vec<SnapshotSocket>>> {
    if netns != own_netns && !enter_netns(netns, pids)? {
        return Ok(None);
    }
    let mut families = Vec::with_capacity(2);
    for family in [AF_INET, AF_INET6] {
        // Kernels older than 5.4 send a tcp_info shorter than the crate's struct, which fails
        // the decoding: retry without it rather than lose the sockets.
        let mut dumped =
            dump(family, ExtensionFlags::INFO).or_else(|e| dump(family, ExtensionFlags::empty()).map_err(|_| e))?;
        dumped.iter_mut().for_each(|s| s.netns = netns);
        families.push(dumped);
    }
    Ok(Some(moved_together(families)))
}

/// The dumps as one vector, the largest taken as it is and the others moved onto its end, each
/// freed once moved: a copy into a new vector held every socket twice (33 MiB more at the
/// snapshot's peak with 200,000 sockets).
fn moved_together(mut dumps: Vec<Vec<SnapshotSocket>>) -> Vec<SnapshotSocket> {
    dumps.sort_by_key(|d| std::cmp::Reverse(d.len()));
    let mut dumps = dumps.into_iter();
    let mut all = dumps.next().unwrap_or_default();
    for mut more in dumps {
        all.append(&mut more);
    }
    all
}

fn enter_netns(netns: u32, pids: &[u32]) -> Result<bool> {
    for pid in pids {
        let path = format!("/proc/{pid}/ns/net");
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // The pid may have been reused by a process of another netns since the scan.
        if file.metadata().map(|m| m.ino() as u32).ok() != Some(netns) {
            continue;
        }
        // SAFETY: plain syscall on an fd we own; only this thread changes netns.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let err = std::io::Error::last_os_error();
            bail!("setns({path}): {err} (needs CAP_SYS_ADMIN: run as root)");
        }
        return Ok(true);
    }
    Ok(false)
}

/// One sock_diag dump of all TCP sockets of `family` in the current thread's netns.
fn dump(family: u8, extensions: ExtensionFlags) -> Result<Vec<SnapshotSocket>> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG).context("opening sock_diag socket")?;
    sock.bind_auto().context("binding sock_diag socket")?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))
        .context("connecting sock_diag socket")?;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions,
        states: StateFlags::from_bits_retain(u32::MAX), // every state, NEW_SYN_RECV included
        socket_id,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut msg = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0).context("sending sock_diag request")?;

    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        match sock.recv(&mut buf, 0) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r.context("receiving sock_diag reply")?,
        };
        let mut offset = 0;
        while offset < buf.len() {
            let msg =
                NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..]).context("decoding sock_diag reply")?;
            offset += (msg.header.length as usize + 3) & !3;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => out.push(from_response(*r)),
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(e.to_io()).context("sock_diag dump"),
                _ => {}
            }
        }
    }
}

fn from_response(r: InetResponse) -> SnapshotSocket {
    let (h, id) = (&r.header, &r.header.socket_id);
    // A listener's tcp_info is all zeroes but for the backlog: report nothing for it.
    let info = r.nlas.iter().find_map(|n| match n {
        Nla::TcpInfo(i) if h.state != TCP_LISTEN => Some(i),
        _ => None,
    });
    // idiag_cookie is two host-endian u32, low word first (sock_diag_save_cookie).
    let c = id.cookie;
    let word = |i: usize| u64::from(u32::from_ne_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]));
    SnapshotSocket {
        netns: 0,
        inode: h.inode.into(),
        cookie: word(0) | word(4) << 32,
        state: h.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        owners: SocketOwners::new(),
        bytes_sent: info.map(|i| i.bytes_sent),
        bytes_received: info.map(|i| i.bytes_received),
        last_send_ago_ms: info.map(|i| i.last_data_sent),
        last_recv_ago_ms: info.map(|i| i.last_data_recv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    fn sock(inode: u64, state: u8, local: &str, remote: &str) -> SnapshotSocket {
        let (local, remote) = (local.parse().unwrap(), remote.parse().unwrap());
        let (bytes_sent, bytes_received, last_send_ago_ms, last_recv_ago_ms) = (None, None, None, None);
        let (netns, cookie, owners) = (7, inode + 1000, SocketOwners::new());
        SnapshotSocket {
            netns,
            inode,
            cookie,
            state,
            local,
            remote,
            owners,
            bytes_sent,
            bytes_received,
            last_send_ago_ms,
            last_recv_ago_ms,
        }
    }

    fn made_up() -> (Vec<SnapshotSocket>, Vec<ProcessFds>) {
        let diag = vec![
            sock(11, 10, "0.0.0.0:80", "0.0.0.0:0"),
            sock(12, 1, "10.0.0.1:80", "10.0.0.2:5000"),
            sock(13, 1, "[::1]:9", "[::1]:10"),
            sock(14, 1, "10.0.0.2:5000", "10.0.0.1:80"),
            sock(0, 1, "10.0.0.1:80", "10.0.0.3:6000"), // accept queue of 11
            sock(0, 3, "10.0.0.1:80", "10.0.0.4:6000"), // SYN_RECV request of 11
            sock(0, 6, "10.0.0.1:80", "10.0.0.5:6000"), // TIME_WAIT
            sock(0, 1, "10.0.0.1:81", "10.0.0.5:6000"), // nobody's backlog
            sock(99, 1, "10.0.0.9:1", "10.0.0.8:2"),    // someone else's
        ];
        let p = |tgid, comm: &str, socket_inodes| {
            let (comm, netns, open_fds, fd_limit) = (comm.into(), 7, 10, Some(1024));
            ProcessFds {
                tgid,
                comm,
                netns,
                open_fds,
                fd_limit,
                socket_inodes,
            }
        };
        (
            diag,
            vec![
                p(100, "server", vec![(3, 11), (5, 12), (4, 13)]),
                p(200, "client", vec![(6, 14), (9, 13)]),
            ],
        )
    }

    fn owners(s: &SnapshotSocket) -> Vec<(u32, i32)> {
        s.owners.iter().map(|o| (o.tgid, o.fd)).collect()
    }

    #[test]
    fn join_all_keeps_everything_and_attaches_owners() {
        let (diag, procs) = made_up();
        let out = join(diag, &procs, None, Ownerless::Backlog);
        assert_eq!(out.len(), 9);
        assert_eq!((owners(&out[0]), &*out[0].owners[0].comm), (vec![(100, 3)], "server"));
        assert_eq!(owners(&out[2]), [(100, 4), (200, 9)]); // shared, sorted
        assert_eq!(owners(&out[3]), [(200, 6)]);
        assert!(out[4..].iter().all(|s| s.owners.is_empty()));
        assert!(join(Vec::new(), &procs, None, Ownerless::Backlog).is_empty());
    }

    #[test]
    fn join_filters_to_wanted_pids() {
        let (diag, procs) = made_up();
        let out = join(diag.clone(), &procs, Some(&[100]), Ownerless::Backlog);
        let got: Vec<_> = out.iter().map(|s| (s.inode, s.state, owners(s))).collect();
        let backlog = vec![(0, 1, vec![]), (0, 3, vec![])]; // the wanted listener's, no owner
        let owned = vec![
            (11, 10, vec![(100, 3)]),
            (12, 1, vec![(100, 5)]),
            (13, 1, vec![(100, 4)]),
        ];
        assert_eq!(got, [owned, backlog].concat()); // 13's other owner is not wanted
        let client = join(diag.clone(), &procs, Some(&[200, 4242]), Ownerless::Backlog);
        assert_eq!(client.iter().map(|s| s.inode).collect::<Vec<_>>(), [13, 14]);
        assert!(join(diag.clone(), &procs, Some(&[]), Ownerless::Backlog).is_empty());
        let mut other_ns = diag;
        other_ns[4].netns = 8; // same addresses, other netns: not that listener's backlog
        assert_eq!(join(other_ns, &procs, Some(&[100]), Ownerless::Backlog).len(), 4);
    }

    /// A client connection its holder closed is still ending in the kernel (FIN_WAIT2, no
    /// file): a reconciliation's view keeps it, the start-up view does not.
    #[test]
    fn join_keeps_orphans_only_when_asked() {
        let (mut diag, procs) = made_up();
        diag.push(sock(0, 5, "10.0.0.2:5001", "10.0.0.1:80")); // FIN_WAIT2, holder gone
        let orphan = |out: &[SnapshotSocket]| out.iter().any(|s| s.state == 5);
        assert!(!orphan(&join(diag.clone(), &procs, Some(&[200]), Ownerless::Backlog)));
        let out = join(diag.clone(), &procs, Some(&[200]), Ownerless::BacklogAndOrphans);
        assert!(orphan(&out));
        // Never TIME_WAIT (state 6): the model's connection ended with its CLOSE.
        assert!(out.iter().all(|s| s.state != 6), "{out:?}");
    }

    #[test]
    fn process_fds_of_self_and_of_nobody() {
        // Other tests of this binary open and close fds meanwhile: no count before and after.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let after = process_fds(std::process::id()).unwrap();
        assert!(after.open_fds as usize >= after.socket_inodes.len() && after.fd_limit.is_some());
        assert!(after.socket_inodes.iter().any(|&(fd, _)| fd == l.as_raw_fd()));
        let err = process_fds(999_999_999).unwrap_err().to_string();
        assert!(err.contains("not found"), "{err}");
    }

    fn root() -> bool {
        if !is_root() {
            println!("skipped: not root (sock_diag in other netns and setns need root)");
        }
        is_root()
    }

    fn find(snap: &[SnapshotSocket], local: SocketAddr, remote: SocketAddr) -> &SnapshotSocket {
        let mut hits = snap.iter().filter(|s| s.local == local && s.remote == remote);
        let s = hits.next().unwrap_or_else(|| panic!("{local} -> {remote} missing"));
        assert!(hits.next().is_none(), "{local} -> {remote} twice");
        s
    }

    fn so_cookie(s: &impl AsRawFd) -> u64 {
        let (mut v, mut len) = (0u64, 8);
        // SAFETY: valid fd and an out-buffer of the advertised length.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&raw mut v).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    fn netns_of_self() -> u32 {
        std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32
    }

    #[test]
    fn own_process_listener_and_connections() {
        if !root() {
            return;
        }
        let pid = std::process::id();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let accepted: Vec<TcpStream> = (0..5).map(|_| l.accept().unwrap().0).collect();
        let pending = TcpStream::connect(addr).unwrap(); // stays in the accept queue
        let l6 = TcpListener::bind("[::1]:0").ok(); // lo without IPv6 is not our failure
        let c6 = l6
            .as_ref()
            .map(|l| TcpStream::connect(l.local_addr().unwrap()).unwrap());
        (&clients[0]).write_all(b"hello").unwrap();
        let peer0 = clients[0].local_addr().unwrap();
        let server0 = accepted.iter().find(|a| a.peer_addr().unwrap() == peer0).unwrap();
        (&*server0).read_exact(&mut [0; 5]).unwrap();

        let snap = take(Some(&[pid]), Ownerless::Backlog).unwrap().sockets;
        let d = find(&snap, addr, "0.0.0.0:0".parse().unwrap());
        assert_eq!((d.state, owners(d)), (10, vec![(pid, l.as_raw_fd())]));
        assert_eq!((d.netns, d.bytes_sent), (netns_of_self(), None));
        for s in clients.iter().chain(&accepted) {
            let d = find(&snap, s.local_addr().unwrap(), s.peer_addr().unwrap());
            assert_eq!(
                (d.state, owners(d), d.cookie),
                (1, vec![(pid, s.as_raw_fd())], so_cookie(s))
            );
            assert!(d.inode != 0 && d.bytes_sent.is_some() && d.last_recv_ago_ms.is_some());
        }
        let (c0, s0) = (find(&snap, peer0, addr), find(&snap, addr, peer0));
        assert_eq!((c0.bytes_sent, s0.bytes_received), (Some(5), Some(5)));
        let backlog = find(&snap, addr, pending.local_addr().unwrap());
        assert_eq!((backlog.state, backlog.inode, backlog.owners.len()), (1, 0, 0));
        if let (Some(l6), Some(c6)) = (&l6, &c6) {
            let d = find(&snap, l6.local_addr().unwrap(), "[::]:0".parse().unwrap());
            assert_eq!((d.state, owners(d)), (10, vec![(pid, l6.as_raw_fd())]));
            let d = find(&snap, c6.local_addr().unwrap(), l6.local_addr().unwrap());
            assert_eq!((d.state, owners(d)), (1, vec![(pid, c6.as_raw_fd())]));
        }
        println!("own process: {} sockets, e.g. {c0:?}", snap.len());
    }

    const CHILD_ENV: &str = "CONNLIFE_SNAPSHOT_NETNS_CHILD";

    /// Not a test on its own: the body of the child process that `other_netns_via_setns`
    /// starts in a fresh netns (it returns at once otherwise).
    #[test]
    fn netns_child_helper() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let run = || -> std::io::Result<()> {
            // SAFETY: ioctl on a socket we own, with a zeroed ifreq naming "lo".
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                let mut ifr: libc::ifreq = std::mem::zeroed();
                (ifr.ifr_name[0], ifr.ifr_name[1]) = (b'l' as _, b'o' as _);
                ifr.ifr_ifru.ifru_flags = libc::IFF_UP as _;
                if fd < 0 || libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) < 0 {
                    return Err(std::io::Error::last_os_error()); // (test child: fd leak is moot)
                }
                libc::close(fd);
            }
            let l = TcpListener::bind("127.0.0.1:0")?;
            let c = TcpStream::connect(l.local_addr()?)?;
            let a = l.accept()?.0;
            let (la, ca) = (l.local_addr()?, c.local_addr()?);
            println!("READY {la} {ca} {} {} {}", l.as_raw_fd(), c.as_raw_fd(), a.as_raw_fd());
            std::io::stdin().read_to_end(&mut Vec::new()).map(drop) // until the parent is done
        };
        if let Err(e) = run() {
            println!("FAILED {e}");
        }
    }

    #[test]
    fn other_netns_via_setns() {
        if !root() {
            return;
        }
        let name = concat!(module_path!(), "::netns_child_helper");
        let name = name.split_once("::").map_or(name, |(_, rest)| rest); // libtest drops the crate
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        // SAFETY: unshare is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| match libc::unshare(libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            })
        };
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // libtest prints "test <name> ... " before the test's own output, on the same line.
        let marker = |l: String| Some(l[l.find("READY").or(l.find("FAILED"))?..].to_string());
        let line = lines.by_ref().map_while(|l| l.ok()).find_map(marker);
        let (snap, everything) = (
            take(Some(&[child.id()]), Ownerless::Backlog).map(|v| v.sockets),
            take(None, Ownerless::Backlog).map(|v| v.sockets),
        );
        drop(child.stdin.take());
        lines.for_each(drop); // let the child's harness finish writing
        assert!(child.wait().unwrap().success());

        let line = line.expect("child printed nothing");
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], "READY", "{line}");
        let (la, ca): (SocketAddr, SocketAddr) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let fds: Vec<i32> = f[3..].iter().map(|s| s.parse().unwrap()).collect();
        let (snap, pid) = (snap.unwrap(), child.id());
        assert_eq!(snap.len(), 3, "{snap:#?}");
        let d = find(&snap, la, "0.0.0.0:0".parse().unwrap());
        assert_eq!((d.state, owners(d)), (10, vec![(pid, fds[0])]));
        assert_ne!(d.netns, netns_of_self());
        let (c, a) = (find(&snap, ca, la), find(&snap, la, ca));
        assert_eq!((c.state, owners(c)), (1, vec![(pid, fds[1])]));
        assert_eq!((a.state, owners(a)), (1, vec![(pid, fds[2])]));
        let everything = everything.unwrap();
        assert!(everything.iter().any(|s| s.cookie == c.cookie && s.owners == c.owners));
    }

    #[test]
    fn timing_take_with_1000_connections() {
        if !root() {
            return;
        }
        let timed = |what: &str, pids: Option<&[u32]>| {
            let t = Instant::now();
            let snap = take(pids, Ownerless::Backlog).unwrap().sockets;
            println!("{what}: {} sockets in {:?}", snap.len(), t.elapsed());
            snap
        };
        timed("take(None), this machine as is", None);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain getrlimit/setrlimit on a valid struct; raising soft up to hard.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_cur.max(lim.rlim_max.min(8192));
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _held: Vec<(TcpStream, TcpStream)> = (0..1000)
            .map(|_| (TcpStream::connect(addr).unwrap(), l.accept().unwrap().0))
            .collect();
        let pid = std::process::id();
        let t = Instant::now();
        let fds = process_fds(pid).unwrap();
        println!("process_fds(self) with {} fds: {:?}", fds.open_fds, t.elapsed());
        assert!(timed("take(Some(self)) with 1000 connections", Some(&[pid])).len() > 2000);
        let all = timed("take(None) with 1000 connections", None);
        let mut states = std::collections::BTreeMap::new();
        all.iter().for_each(|s| *states.entry(s.state).or_insert(0) += 1);
        println!("states (number: count): {states:?}");
    }
}
