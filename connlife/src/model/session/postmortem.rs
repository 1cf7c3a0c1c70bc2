//! The post-mortem of a process: how it ended, what it held (grouped, with the facts the
//! verdict is made of), the climb of its fds, and when the agent's flight recorder writes one.
use super::*;
use crate::model::origins::OriginSource;

impl Session {
    /// The post-mortem of one traced process: how it ended, what it held, and the climb.
    pub fn postmortem(&self, pid: u32, now_ns: u64) -> Postmortem {
        let p = self.procs.get(&pid);
        let (ending, exit_code, signal, comm) = match p.and_then(|p| p.exited.clone()) {
            Some((status, comm)) => {
                let sig = status & 0x7f;
                if sig != 0 {
                    (format!("killed by signal {sig}"), None, Some(sig), comm)
                } else {
                    let code = (status >> 8) & 0xff;
                    (format!("exited with status {code}"), Some(code), None, comm)
                }
            }
            None => (
                match p.and_then(|p| p.gone) {
                    Some(true) => "ended before tracing began".to_string(),
                    Some(false) => "ended (its exit was not seen)".to_string(),
                    None => "still running (report at detach)".to_string(),
                },
                None,
                None,
                String::new(),
            ),
        };
        let mut comm = comm;
        if comm.is_empty() {
            // Any connection it holds, among several holders too (a forking server's listener).
            comm = self
                .model
                .conns()
                .find_map(|c| {
                    c.holders
                        .iter()
                        .chain(c.former.as_deref())
                        .find(|h| h.tgid == pid && !h.comm.is_empty())
                })
                .map(|h| h.comm.to_string())
                .unwrap_or_default();
        }
        let open_at_end = self.open_groups(pid, now_ns);
        let samples = p.map(|p| p.samples.as_slice()).unwrap_or_default();
        let timeline: Vec<TimelinePoint> = samples
            .iter()
            .filter(|s| s.pid == pid)
            .map(|s| TimelinePoint {
                at_s: self.rel(s.ts_ns),
                open_fds: s.open_fds,
                tcp_by_state: s.tcp_by_state.clone(),
            })
            .collect();
        let findings_at_end: Vec<Finding> = self.tracker.active().filter(|f| f.pid == Some(pid)).cloned().collect();
        let groups: Vec<Group> = self.last_groups.iter().filter(|g| g.pid == pid).cloned().collect();
        let fd_limit = samples.iter().rev().find_map(|s| s.limit);
        let peak_fds = samples
            .iter()
            .map(|s| s.open_fds)
            .chain(p.iter().flat_map(|p| p.exhausted.iter().filter_map(|e| e.open_fds)))
            .max()
            .unwrap_or(0);
        let fd_exhausted = p.map(|p| p.exhausted.clone()).unwrap_or_default();
        let last = samples.last();
        let tcp: u32 = open_at_end.iter().map(|g| g.count).sum();
        let patterns = verdict::patterns(
            &open_at_end,
            last.map(|s| s.open_fds),
            tcp,
            fd_limit,
            self.thresholds.group_min as u32,
        );
        let near_limit = fd_limit
            .filter(|&l| peak_fds as u64 * 10 >= l * 9)
            .map(|l| (peak_fds, l));
        let verdict = verdict::verdict(
            &patterns,
            fd_exhausted.first().map(|e| (e.errno.as_str(), e.at_s)),
            near_limit,
        );
        Postmortem {
            pid,
            comm,
            ending,
            exit_code,
            signal,
            lifetime_s: detect::secs(now_ns.saturating_sub(self.first_seen(pid))),
            fd_limit,
            peak_fds,
            fd_exhausted,
            open_at_end,
            findings_raised: self
                .tracker
                .raised
                .iter()
                .map(|(k, v)| (k.name().to_string(), *v))
                .collect(),
            findings_at_end,
            groups,
            timeline,
            patterns,
            verdict,
            reason: None,
            container: None,
            cgroup: None,
            pod_uid: None,
        }
    }

    /// When connlife first knew `pid`: when tracing it began, else its oldest connection or
    /// reading (the agent meets processes on the way).
    pub(super) fn first_seen(&self, pid: u32) -> u64 {
        let p = self.procs.get(&pid);
        if let Some(first) = p.map(|p| p.first_ns).filter(|&t| t > 0) {
            return first;
        }
        let oldest_conn = self
            .model
            .conns()
            .filter(|c| c.tgid() == Some(pid))
            .map(|c| c.opened_ns)
            .min();
        let first_sample = p.and_then(|p| p.samples.first()).map(|s| s.ts_ns);
        // Its own first sign (its oldest connection or reading), not connlife's start.
        [oldest_conn, first_sample]
            .into_iter()
            .flatten()
            .filter(|&t| t >= self.start_ns)
            .min()
            .unwrap_or(self.start_ns)
    }

    /// What `pid` held (not listening), by state, role, remote and origin, with the facts the
    /// verdict is made of.
    pub(super) fn open_groups(&self, pid: u32, now_ns: u64) -> Vec<OpenGroup> {
        struct Acc {
            g: OpenGroup,
            exchanges: u64,
            counted: u32,
            transports: Vec<u64>,
        }
        let mut groups: BTreeMap<(TcpState, String, String, String), Acc> = BTreeMap::new();
        for c in self
            .model
            .conns()
            .filter(|c| c.tgid() == Some(pid) && c.state != TcpState::Listen)
        {
            let age = detect::secs(now_ns.saturating_sub(c.opened_ns));
            let origin = c
                .origin()
                .and_then(|(opener, birth)| self.stacks.resolve(opener, c.role, &birth));
            let site = origin.as_ref().map(|o| o.site.clone()).unwrap_or_default();
            let acc = groups
                .entry((c.state, format!("{:?}", c.role), c.remote().to_string(), site))
                .or_insert(Acc {
                    g: OpenGroup {
                        state: c.state,
                        role: c.role,
                        raddr: c.remote().to_string(),
                        count: 0,
                        oldest_s: age,
                        newest_s: age,
                        fds: Vec::new(),
                        exchanges_per_conn: None,
                        unreused: 0,
                        counted: 0,
                        growth_per_min: 0.0,
                        origin,
                    },
                    exchanges: 0,
                    counted: 0,
                    transports: Vec::new(),
                });
            acc.transports.extend(c.origin().and_then(|(_, b)| b.transport));
            let g = &mut acc.g;
            g.count += 1;
            g.oldest_s = g.oldest_s.max(age);
            g.newest_s = g.newest_s.min(age);
            if let Some(fd) = c.fd() {
                g.fds.push(fd);
            }
            if c.exchanges_known {
                acc.exchanges += u64::from(c.usage.exchanges);
                acc.counted += 1;
                if c.usage.exchanges <= 1 {
                    g.unreused += 1;
                }
            }
        }
        let mut out: Vec<OpenGroup> = groups
            .into_values()
            .map(|mut a| {
                a.g.fds.sort_unstable();
                a.g.counted = a.counted;
                a.g.exchanges_per_conn =
                    (a.counted > 0).then(|| (a.exchanges as f64 / a.counted as f64 * 10.0).round() / 10.0);
                a.g.growth_per_min = verdict::growth_from_ages(a.g.count, a.g.oldest_s, a.g.newest_s);
                if let Some(o) = a.g.origin.as_mut().filter(|o| o.source == OriginSource::GoRequest) {
                    a.transports.sort_unstable();
                    a.transports.dedup();
                    o.transports = Some(a.transports.len() as u32);
                }
                a.g
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.count));
        out
    }

    /// Why the agent writes a post-mortem of `pid` at its end, if it does.
    /// `held`: the connections it held when it ended (most processes: none, and no scan).
    pub(super) fn postmortem_reason(&self, pid: u32, status: i32, held: u32, min: u32) -> Option<&'static str> {
        if self.procs.get(&pid).is_some_and(|p| !p.exhausted.is_empty()) {
            return Some("fd_exhausted");
        }
        if held < min {
            return None;
        }
        let held = || {
            self.model
                .conns()
                .filter(move |c| c.tgid() == Some(pid) && c.state != TcpState::Listen)
        };
        let stuck = held()
            .filter(|c| {
                c.state == TcpState::CloseWait
                    || (c.state == TcpState::Established && c.role != Role::Server && c.usage.exchanges <= 1)
            })
            .count() as u32;
        if status & 0x7f != 0 && held().count() as u32 >= min {
            return Some("killed_holding");
        }
        (stuck >= min).then_some("leaked")
    }

    /// A followed child gets a post-mortem only when there is something to say: it held
    /// connections at its end, ran out of fds, or had findings.
    pub(super) fn child_worth_a_postmortem(&self, pid: u32) -> bool {
        self.followed.contains(&pid)
            && (self.procs.get(&pid).is_some_and(|p| !p.exhausted.is_empty())
                || self
                    .model
                    .conns()
                    .any(|c| c.tgid() == Some(pid) && c.state != TcpState::Listen)
                || self.tracker.active().any(|f| f.pid == Some(pid)))
    }
}
