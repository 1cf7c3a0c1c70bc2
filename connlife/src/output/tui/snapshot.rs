//! What the screen shows, rebuilt from the session at each refresh (and kept while paused):
//! the connections grouped by (process, remote endpoint, state, role), each group's growth
//! over the last minute, each group's most common origin, and each traced process's fds and
//! TCP states.
use std::collections::{BTreeMap, HashMap, HashSet};

use super::{ConnView, GroupKey, GroupView, LiveView, ProcView, Snapshot};
use crate::{
    kernel::event::{Role, TcpState},
    model::{
        detect::{FdPressure, FindingKind, NS},
        origins::{dominant, Origin},
        session::Session,
        ConnId,
    },
};

/// What an origin is resolved from: the pid the stacks belong to, accepted or not, and the
/// stack ids (see `Stacks::resolve`).
type BirthKey = (u32, bool, Option<u32>, Option<u32>);

/// Growth of a group is measured over this window (and shown after `GROWTH_MIN_NS` of it).
const GROWTH_WINDOW_NS: u64 = 60 * NS;
const GROWTH_MIN_NS: u64 = 5 * NS;

impl LiveView {
    /// Rebuild what the screen shows from the session.
    pub(super) fn snapshot(&mut self, session: &Session, now_ns: u64) -> Snapshot {
        let secs = |ns: u64| ns as f64 / 1e9;
        let active: HashMap<ConnId, FindingKind> = session.tracker.active().map(|f| (f.conn, f.kind)).collect();
        let mut groups: HashMap<GroupKey, GroupView> = HashMap::new();
        let mut comms: HashMap<u32, String> = HashMap::new();
        let mut tcp: HashMap<u32, BTreeMap<TcpState, usize>> = HashMap::new();
        let mut by_state = BTreeMap::new();
        // Connections born at one place share their stacks: resolve each (pid, role, stacks)
        // once per refresh, not once per connection (the Transport does not change it).
        let mut origins: Vec<Origin> = Vec::new();
        let mut origin_ids: HashMap<BirthKey, Option<usize>> = HashMap::new();
        for c in session
            .model
            .conns()
            .filter(|c| c.fd_closed_ns().is_none() && c.state != TcpState::Listen && c.role != Role::Listener)
        {
            let pid = c.tgid();
            if let Some(pid) = pid {
                comms.entry(pid).or_insert_with(|| c.comm().to_string());
                *tcp.entry(pid).or_default().entry(c.state).or_default() += 1;
            }
            *by_state.entry(c.state).or_default() += 1;
            let origin = c.origin().and_then(|(born_in, birth)| {
                let id = (born_in, c.role == Role::Server, birth.stack, birth.request_stack);
                *origin_ids.entry(id).or_insert_with(|| {
                    origins.push(session.stacks.resolve(born_in, c.role, &birth)?);
                    Some(origins.len() - 1)
                })
            });
            let key = GroupKey {
                pid,
                remote: c.remote(),
                state: c.state,
                role: c.role,
            };
            let conn = ConnView {
                fd: c.fd(),
                local_port: c.local().port(),
                age_s: secs(now_ns.saturating_sub(c.opened_ns)),
                age_exact: c.age_exact,
                idle_s: secs(now_ns.saturating_sub(c.last_activity_ns())),
                bytes_sent: c.usage.bytes_sent,
                bytes_received: c.usage.bytes_received,
                exchanges: c.exchanges_known.then_some(c.usage.exchanges),
                finding: active.get(&c.id).copied(),
                origin,
                transport: c.origin().and_then(|(_, b)| b.transport),
            };
            let g = groups.entry(key.clone()).or_insert_with(|| GroupView {
                key,
                count: 0,
                oldest_s: 0.0,
                oldest_exact: true,
                newest_s: f64::MAX,
                max_idle_s: 0.0,
                exchanges_avg: None,
                growth_per_min: None,
                finding: None,
                origin: None,
                conns: Vec::new(),
            });
            g.count += 1;
            if conn.age_s >= g.oldest_s {
                g.oldest_s = conn.age_s;
                g.oldest_exact = conn.age_exact;
            }
            g.newest_s = g.newest_s.min(conn.age_s);
            g.max_idle_s = g.max_idle_s.max(conn.idle_s);
            g.conns.push(conn);
        }
        let mut groups: Vec<GroupView> = groups.into_values().collect();
        for g in &mut groups {
            let known: Vec<u32> = g.conns.iter().filter_map(|c| c.exchanges).collect();
            if !known.is_empty() {
                g.exchanges_avg = Some(known.iter().map(|&e| e as f64).sum::<f64>() / known.len() as f64);
            }
            // The group's finding: the kind most of its connections have.
            let mut kinds: BTreeMap<FindingKind, usize> = BTreeMap::new();
            for k in g.conns.iter().filter_map(|c| c.finding) {
                *kinds.entry(k).or_default() += 1;
            }
            g.finding = kinds.into_iter().max_by_key(|&(_, n)| n).map(|(k, _)| k);
            g.origin = dominant(g.conns.iter().filter_map(|c| Some((&origins[c.origin?], c.transport))));
            g.conns.sort_by_key(|c| (c.fd.is_none(), c.fd, c.local_port));
        }
        // Growth over the window, from the counts seen at each refresh.
        let present: HashSet<&GroupKey> = groups.iter().map(|g| &g.key).collect();
        self.growth.retain(|k, _| present.contains(k));
        for g in &mut groups {
            let h = self.growth.entry(g.key.clone()).or_default();
            if h.back().is_none_or(|&(t, _)| t < now_ns) {
                h.push_back((now_ns, g.count));
            }
            while h.len() > 1
                && h.front()
                    .is_some_and(|&(t, _)| now_ns.saturating_sub(t) > GROWTH_WINDOW_NS)
            {
                h.pop_front();
            }
            let (t0, c0) = *h.front().expect("just pushed");
            let span = now_ns.saturating_sub(t0);
            if span >= GROWTH_MIN_NS {
                g.growth_per_min = Some((g.count as f64 - c0 as f64) / (span as f64 / 60e9));
            }
        }
        let mut findings = BTreeMap::new();
        for f in session.tracker.active() {
            *findings.entry(f.kind).or_default() += 1;
        }
        let summary = session.summary(now_ns);
        // Event times count from the session's start, as the summaries' do.
        self.start_ns = now_ns.saturating_sub((summary.at_s * 1e9) as u64);
        let pressures: HashMap<u32, FdPressure> = summary.fds.into_iter().map(|p| (p.pid, p)).collect();
        let mut pids: Vec<u32> = session.pids().iter().chain(&session.traced_pids()).copied().collect();
        pids.sort_unstable();
        pids.dedup();
        let procs = pids
            .into_iter()
            .map(|pid| ProcView {
                pid,
                comm: comms.get(&pid).cloned().unwrap_or_default(),
                ended: session.exited.contains(&pid),
                fds: pressures.get(&pid).cloned(),
                history: session.fd_history(pid).iter().map(|s| s.open_fds).collect(),
                tcp: tcp.remove(&pid).unwrap_or_default(),
            })
            .collect();
        Snapshot {
            at_s: summary.at_s,
            procs,
            groups,
            origins,
            all_processes: session.pids().is_empty(),
            by_state,
            findings,
            opened: summary.opened,
            lost: summary.lost_events,
        }
    }
}
