//! What the driver reads from /proc and sock_diag about processes and sockets, turned into
//! session inputs: the kernel's view of sockets as the model wants it, fd readings, which
//! processes are alive, named by --comm, or children of traced ones.
use std::collections::{HashMap, HashSet};

use crate::{
    kernel::{
        event::{comm_matches, Role, TcpState, Use},
        snapshot,
    },
    model::{
        detect::{self, FdSample},
        session::Session,
        Owner, SeenSocket,
    },
};

/// Sockets from a snapshot, as the model wants them, each with its socket cookie (how the
/// kernel side recognises it), in the snapshot's order. The snapshot is consumed a chunk at a
/// time and its memory handed back as it goes: both whole at once were the start-up's peak.
pub fn seen_sockets(mut sockets: Vec<snapshot::SnapshotSocket>, now_ns: u64) -> Vec<(u64, SeenSocket)> {
    const CHUNK: usize = 16_384;
    let listening: HashSet<(u32, u16)> = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen as u8)
        .map(|s| (s.netns, s.local.port()))
        .collect();
    let mut seen = Vec::with_capacity(sockets.len());
    // Reversed, so that each chunk split off the end is the next one in order.
    sockets.reverse();
    while !sockets.is_empty() {
        let chunk = sockets.split_off(sockets.len().saturating_sub(CHUNK));
        sockets.shrink_to_fit();
        for s in chunk.into_iter().rev() {
            let Ok(state) = TcpState::try_from(s.state) else {
                continue;
            };
            let owners = s
                .owners
                .iter()
                .map(|o| Owner {
                    tgid: o.tgid,
                    comm: o.comm.clone(),
                    fd: Some(o.fd).into(),
                })
                .collect();
            let role = if state == TcpState::Listen {
                Role::Listener
            } else if listening.contains(&(s.netns, s.local.port())) {
                Role::Server
            } else {
                Role::Client
            };
            let ago = |ms: Option<u32>| ms.map(|ms| now_ns.saturating_sub(ms as u64 * 1_000_000)).unwrap_or(0);
            let socket = SeenSocket {
                netns: s.netns,
                local: s.local,
                remote: s.remote,
                state,
                role,
                owners,
                usage: Use {
                    bytes_sent: s.bytes_sent.unwrap_or(0),
                    bytes_received: s.bytes_received.unwrap_or(0),
                    last_send_ns: ago(s.last_send_ago_ms),
                    last_recv_ns: ago(s.last_recv_ago_ms),
                    ..Default::default()
                },
            };
            seen.push((s.cookie, socket));
        }
    }
    seen
}

/// Read /proc for each pid (those gone are skipped) with its TCP connections by state; how
/// many readings failed otherwise (fds short, permissions).
pub(super) fn fd_samples(session: &Session, pids: &[u32], now_ns: u64) -> (Vec<FdSample>, u64) {
    let mut failed = 0;
    let samples = pids
        .iter()
        .filter(|pid| !session.exited.contains(pid))
        .filter_map(|&pid| {
            let p = match snapshot::read_process(pid) {
                Ok(p) => p?,
                Err(e) => {
                    log::debug!("reading the fds of {pid}: {e:#}");
                    failed += 1;
                    return None;
                }
            };
            Some(FdSample {
                ts_ns: now_ns,
                pid,
                open_fds: p.open_fds,
                limit: p.fd_limit,
                tcp_by_state: detect::tcp_by_state(&session.model, Some(pid)),
            })
        })
        .collect();
    (samples, failed)
}

/// Running, not a zombie: /proc/PID/stat exists and its state is not Z or X.
pub(super) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Processes whose comm is one of `comms` (the kernel's 15-byte name).
pub(super) fn pids_with_comm(comms: &[String]) -> Vec<u32> {
    if comms.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comms.iter().any(|c| comm_matches(comm.trim_end(), c))
        })
        .collect()
}

/// Every live descendant of `roots` with its parent (from /proc/PID/stat's ppid), parents
/// before children.
pub(super) fn descendants(roots: &[u32]) -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ppid) = parse_ppid(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue: Vec<u32> = roots.to_vec();
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if seen.insert(c) && alive(c) {
                out.push((c, p));
                queue.push(c);
            }
        }
    }
    out
}

/// Field 4 of /proc/PID/stat (after the parenthesised comm, which may hold spaces).
pub(super) fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Raise the soft fd limit to the hard one: connlife's own work (snapshots, /proc readings,
/// the endpoint) must not run short where the host's processes do.
pub(super) fn keep_fds_in_reserve() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_after_a_comm_with_spaces_and_parens() {
        assert_eq!(parse_ppid("1234 (my (odd) app) S 77 1234 1234 0 -1"), Some(77));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
