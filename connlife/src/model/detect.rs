//! Detectors over the connection model (pure): connections stuck in CLOSE_WAIT, ESTABLISHED
//! connections that sit idle without reuse (and their per-remote groups), and fd pressure
//! against RLIMIT_NOFILE with the estimated time to exhaustion.
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{
    kernel::event::{Role, TcpState},
    model::{
        origins::{dominant, transport_per_request, Origin, OriginSource, Stacks, HINT_TRANSPORT_PER_REQUEST},
        Conn, ConnId, Model,
    },
};

pub const NS: u64 = 1_000_000_000;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    CloseWaitStuck,
    EstablishedUnreused,
    /// An accepted connection no process ever took from its listener's queue.
    Unaccepted,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::CloseWaitStuck => "close_wait_stuck",
            Self::EstablishedUnreused => "established_unreused",
            Self::Unaccepted => "unaccepted",
        }
    }
    pub const ALL: [FindingKind; 3] = [Self::CloseWaitStuck, Self::EstablishedUnreused, Self::Unaccepted];
    pub fn hint(self) -> &'static str {
        match self {
            Self::CloseWaitStuck => "the peer closed but the application never closed its end: a response body never closed, or a socket not closed after EOF",
            Self::EstablishedUnreused => "one exchange then idle: a new connection pool per request? reuse one client, or disable keep-alives if short connections are wanted",
            Self::Unaccepted => "waiting in the listener's accept queue, never accepted by any process: the accept loop is not keeping up, or the server stopped accepting",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub close_wait_after_ns: u64,
    pub idle_after_ns: u64,
    /// Smallest group of unreused connections (same pid and remote) reported as a group.
    pub group_min: usize,
}

/// One stuck connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    #[serde(skip)]
    pub conn: ConnId,
    pub pid: Option<u32>,
    pub comm: String,
    pub fd: Option<i32>,
    pub laddr: String,
    pub raddr: String,
    pub netns: u32,
    pub state: TcpState,
    pub age_s: f64,
    /// False when the connection predates connlife: `age_s` is then a lower bound.
    pub age_exact: bool,
    pub idle_s: f64,
    /// Exchanges counted; `null` when unknown (predates connlife or no send/recv tracepoints).
    pub exchanges: Option<u32>,
    /// Every process holding it, with its fd (a forked child and its parent may share it);
    /// `pid`/`fd` name the newest. Empty for an unaccepted connection.
    #[serde(default)]
    pub holders: Vec<Holder>,
    /// Unaccepted: the process listening on that port, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_pid: Option<u32>,
    /// Agent only: the owner's container id (12 hex) and cgroup path, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The code that opened it, once its stacks are symbolized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Go: the http.Transport that dialed it (its address), to count Transports per site.
    #[serde(skip)]
    pub transport: Option<u64>,
}

/// A process holding a connection, as findings name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub fd: Option<i32>,
}

/// Many unreused connections from one process to one remote: the pool-per-request signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub pid: u32,
    pub comm: String,
    pub raddr: String,
    pub count: usize,
    pub growth_per_min: f64,
    pub hint: String,
    /// The most common origin of its connections, and how many of them share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_origin: Option<usize>,
}

/// Scan the model for stuck connections now; `stacks` name where each was opened.
pub fn scan(model: &Model, stacks: &Stacks, now_ns: u64, th: &Thresholds) -> Vec<Finding> {
    let listeners: HashMap<(u32, u16), u32> = model
        .conns()
        .filter(|c| c.state == TcpState::Listen)
        .filter_map(|c| Some(((c.netns, c.local().port()), c.tgid()?)))
        .collect();
    let mut out: Vec<Finding> = model
        .conns()
        .filter_map(|c| Some((c, classify(c, now_ns, th, model.use_counting)?)))
        .map(|(c, mut f)| {
            if let Some((pid, birth)) = c.origin() {
                f.origin = stacks.resolve(pid, c.role, &birth);
                f.transport = birth.transport;
            }
            if f.kind == FindingKind::Unaccepted {
                let port = f.laddr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                f.listener_pid = listeners.get(&(f.netns, port)).copied();
            }
            f
        })
        .collect();
    count_transports(&mut out);
    out.sort_by_key(|f| (f.kind, f.pid, f.fd, f.conn));
    out
}

/// Go: each finding's origin says how many distinct http.Transports dialed the findings of
/// the same process, kind and call site.
fn count_transports(findings: &mut [Finding]) {
    let mut by_site: HashMap<(Option<u32>, FindingKind, String), Vec<u64>> = HashMap::new();
    for f in findings.iter() {
        if let (Some(o), Some(t)) = (&f.origin, f.transport) {
            if o.source == OriginSource::GoRequest {
                by_site.entry((f.pid, f.kind, o.site.clone())).or_default().push(t);
            }
        }
    }
    for v in by_site.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    for f in findings.iter_mut() {
        let Some(o) = f.origin.as_mut().filter(|o| o.source == OriginSource::GoRequest) else {
            continue;
        };
        o.transports = by_site.get(&(f.pid, f.kind, o.site.clone())).map(|v| v.len() as u32);
    }
}

fn classify(c: &Conn, now: u64, th: &Thresholds, use_counting: bool) -> Option<Finding> {
    if c.fd_closed_ns().is_some() || c.role == Role::Listener {
        return None;
    }
    let idle = now.saturating_sub(c.last_activity_ns());
    let kind = match c.state {
        // Nobody holds it to close it: not a leak of any process, a queue nobody drains.
        TcpState::Established | TcpState::CloseWait
            if c.role == Role::Server
                && c.never_held()
                && now.saturating_sub(c.opened_ns) >= th.close_wait_after_ns =>
        {
            FindingKind::Unaccepted
        }
        TcpState::CloseWait if now.saturating_sub(c.state_since_ns) >= th.close_wait_after_ns => {
            FindingKind::CloseWaitStuck
        }
        // Reuse is the client's choice: an accepted connection idling is the client's leak,
        // reported on the client's side.
        // Only where the exchanges were counted from the connection's start: a connection that
        // predates connlife may have been reused before it attached (true or silent).
        TcpState::Established
            if idle >= th.idle_after_ns
                && c.usage.exchanges <= 1
                && use_counting
                && c.exchanges_known
                && c.role != Role::Server =>
        {
            FindingKind::EstablishedUnreused
        }
        _ => return None,
    };
    let owner = c.owner();
    Some(Finding {
        kind,
        conn: c.id,
        pid: owner.map(|o| o.tgid),
        comm: owner.map(|o| o.comm.to_string()).unwrap_or_default(),
        fd: c.fd(),
        laddr: c.local().to_string(),
        raddr: c.remote().to_string(),
        netns: c.netns,
        state: c.state,
        age_s: secs(now.saturating_sub(c.opened_ns)),
        age_exact: c.age_exact,
        idle_s: secs(idle),
        exchanges: c.exchanges_known.then_some(c.usage.exchanges),
        holders: c
            .holders
            .iter()
            .map(|h| Holder {
                pid: h.tgid,
                comm: h.comm.to_string(),
                fd: h.fd.get(),
            })
            .collect(),
        listener_pid: None,
        container: None,
        cgroup: None,
        origin: None,
        transport: None,
    })
}

pub fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e9 * 10.0).round() / 10.0
}

/// Turns successive scans into appear/resolve edges and keeps group history for growth.
#[derive(Default)]
pub struct Tracker {
    active: BTreeMap<(ConnId, FindingKind), Finding>,
    group_history: HashMap<(u32, String), VecDeque<(u64, usize)>>,
    /// Every finding ever raised, by kind (for the post-mortem).
    pub raised: BTreeMap<FindingKind, u64>,
}

pub struct ScanResult {
    pub appeared: Vec<Finding>,
    pub resolved: Vec<Finding>,
    pub groups: Vec<Group>,
}

const GROUP_WINDOW_NS: u64 = 5 * 60 * NS;

impl Tracker {
    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.active.values()
    }

    pub fn update(&mut self, now_ns: u64, current: Vec<Finding>, th: &Thresholds) -> ScanResult {
        let mut next = BTreeMap::new();
        let mut appeared = Vec::new();
        for f in current {
            let key = (f.conn, f.kind);
            if !self.active.contains_key(&key) {
                *self.raised.entry(f.kind).or_default() += 1;
                appeared.push(f.clone());
            }
            next.insert(key, f);
        }
        let resolved = self
            .active
            .iter()
            .filter(|(k, _)| !next.contains_key(*k))
            .map(|(_, f)| f.clone())
            .collect();
        self.active = next;
        let groups = self.groups(now_ns, th);
        ScanResult {
            appeared,
            resolved,
            groups,
        }
    }

    fn groups(&mut self, now_ns: u64, th: &Thresholds) -> Vec<Group> {
        let mut members: BTreeMap<(u32, String), Vec<&Finding>> = BTreeMap::new();
        for f in self
            .active
            .values()
            .filter(|f| f.kind == FindingKind::EstablishedUnreused)
        {
            let Some(pid) = f.pid else { continue };
            members.entry((pid, f.raddr.clone())).or_default().push(f);
        }
        self.group_history.retain(|k, _| members.contains_key(k));
        let mut groups = Vec::new();
        for ((pid, raddr), fs) in members {
            let count = fs.len();
            let hist = self.group_history.entry((pid, raddr.clone())).or_default();
            hist.push_back((now_ns, count));
            while hist
                .front()
                .is_some_and(|&(t, _)| now_ns.saturating_sub(t) > GROUP_WINDOW_NS)
            {
                hist.pop_front();
            }
            let (t0, c0) = *hist.front().expect("just pushed");
            let minutes = now_ns.saturating_sub(t0) as f64 / 60e9;
            let growth = if minutes > 0.0 {
                (count as f64 - c0 as f64) / minutes
            } else {
                0.0
            };
            if count >= th.group_min {
                // Flat since first seen: a pool kept for reuse, not a pool per request.
                let flat = hist.iter().all(|&(_, c)| c == count) && now_ns.saturating_sub(t0) > 0;
                let origin = dominant(fs.iter().filter_map(|f| Some((f.origin.as_ref()?, f.transport))));
                let hint = match &origin {
                    _ if flat && growth <= 0.0 => crate::model::verdict::HINT_IDLE_POOL,
                    Some((o, n)) if transport_per_request(o, *n) => HINT_TRANSPORT_PER_REQUEST,
                    _ => FindingKind::EstablishedUnreused.hint(),
                };
                groups.push(Group {
                    pid,
                    comm: fs[0].comm.clone(),
                    raddr,
                    count,
                    growth_per_min: (growth * 10.0).round() / 10.0,
                    hint: hint.to_string(),
                    from_origin: origin.as_ref().map(|(_, n)| *n),
                    origin: origin.map(|(o, _)| o),
                });
            }
        }
        groups
    }
}

/// One reading of a process's fds (from /proc), with its TCP connections by state (model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdSample {
    pub ts_ns: u64,
    pub pid: u32,
    pub open_fds: u32,
    pub limit: Option<u64>,
    pub tcp_by_state: BTreeMap<String, u32>,
}

/// Fd pressure of one process: where it stands and when it runs out at the current rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdPressure {
    pub pid: u32,
    pub open_fds: u32,
    pub limit: Option<u64>,
    pub tcp_sockets: u32,
    pub growth_per_min: f64,
    /// Seconds until open fds reach the limit at the current growth; None when not growing.
    pub eta_s: Option<f64>,
}

/// Fewer new fds than this over the window is noise, not a climb.
const MIN_CLIMB_FDS: u32 = 3;

/// Growth over the samples of the last `window_ns` (first to last), and time to the limit.
pub fn fd_pressure(samples: &[FdSample], window_ns: u64) -> Option<FdPressure> {
    let last = samples.last()?;
    let first = samples
        .iter()
        .find(|s| last.ts_ns.saturating_sub(s.ts_ns) <= window_ns)
        .unwrap_or(last);
    let dt = last.ts_ns.saturating_sub(first.ts_ns) as f64 / 1e9;
    let per_s = if dt > 0.0 {
        (last.open_fds as f64 - first.open_fds as f64) / dt
    } else {
        0.0
    };
    // Flat (within a few fds of noise over the window): no time to the limit.
    let climbing = last.open_fds >= first.open_fds + MIN_CLIMB_FDS;
    let eta_s = match last.limit {
        Some(limit) if per_s > 0.0 && climbing => {
            Some(((limit as f64 - last.open_fds as f64).max(0.0) / per_s).round())
        }
        _ => None,
    };
    Some(FdPressure {
        pid: last.pid,
        open_fds: last.open_fds,
        limit: last.limit,
        tcp_sockets: last.tcp_by_state.values().sum(),
        growth_per_min: (per_s * 60.0 * 10.0).round() / 10.0,
        eta_s,
    })
}

/// Connections of `pid` by state, from the model (for fd samples and summaries).
pub fn tcp_by_state(model: &Model, pid: Option<u32>) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    // Every holder counts its copy (a pre-fork server's listener is held by each worker).
    for c in model.conns().filter(|c| pid.is_none_or(|p| c.held_by(p))) {
        if c.fd_closed_ns().is_none() {
            *m.entry(c.state.name().to_string()).or_default() += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::event::{KernelEvent, Kind, Use},
        model::Model,
    };

    const TH: Thresholds = Thresholds {
        close_wait_after_ns: 30 * NS,
        idle_after_ns: 60 * NS,
        group_min: 3,
    };

    fn ev(ts: u64, sk: u64, old: TcpState, new: TcpState, port: u16, exchanges: u32) -> KernelEvent {
        KernelEvent {
            kind: Kind::State,
            ts_ns: ts,
            sk,
            tgid: Some(10),
            fd: Some(sk as i32),
            comm: "leaky".into(),
            netns: 1,
            role: Role::Client,
            old_state: Some(old),
            new_state: Some(new),
            local: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            remote: Some("127.0.0.1:8080".parse().unwrap()),
            sock_use: Use {
                exchanges,
                last_recv_ns: ts,
                ..Default::default()
            },
            ret: 0,
            syscall: None,
            child: None,
            origin: None,
            folded: None,
        }
    }

    fn open(m: &mut Model, ts: u64, sk: u64, exchanges: u32) {
        m.apply(&ev(ts, sk, TcpState::Close, TcpState::SynSent, 0, 0));
        m.apply(&ev(
            ts,
            sk,
            TcpState::SynSent,
            TcpState::Established,
            40000 + sk as u16,
            exchanges,
        ));
    }

    #[test]
    fn close_wait_after_threshold_then_resolved_by_close() {
        let mut m = Model::new(0, true);
        open(&mut m, 0, 1, 1);
        m.apply(&ev(NS, 1, TcpState::Established, TcpState::CloseWait, 40001, 1));
        assert!(scan(&m, &Stacks::default(), 20 * NS, &TH).is_empty(), "not yet");
        let f = scan(&m, &Stacks::default(), 32 * NS, &TH);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].kind, f[0].pid, f[0].fd, f[0].age_s),
            (FindingKind::CloseWaitStuck, Some(10), Some(1), 32.0)
        );
        let mut t = Tracker::default();
        assert_eq!(t.update(32 * NS, f, &TH).appeared.len(), 1);
        m.apply(&ev(40 * NS, 1, TcpState::CloseWait, TcpState::LastAck, 40001, 1));
        let r = t.update(41 * NS, scan(&m, &Stacks::default(), 41 * NS, &TH), &TH);
        assert_eq!(r.resolved.len(), 1);
    }

    #[test]
    fn reused_connection_is_not_unreused() {
        let mut m = Model::new(0, true);
        open(&mut m, 0, 1, 5);
        open(&mut m, 0, 2, 1);
        let f = scan(&m, &Stacks::default(), 120 * NS, &TH);
        assert_eq!(f.iter().map(|f| f.fd).collect::<Vec<_>>(), vec![Some(2)]);
    }

    #[test]
    fn group_grows_per_minute() {
        let mut m = Model::new(0, true);
        let mut t = Tracker::default();
        for i in 0..3 {
            open(&mut m, 0, 1 + i, 1);
        }
        let g = t
            .update(100 * NS, scan(&m, &Stacks::default(), 100 * NS, &TH), &TH)
            .groups;
        assert_eq!((g.len(), g[0].count, g[0].growth_per_min), (1, 3, 0.0));
        for i in 3..9 {
            open(&mut m, 50 * NS, 1 + i, 1);
        }
        let g = t
            .update(160 * NS, scan(&m, &Stacks::default(), 160 * NS, &TH), &TH)
            .groups;
        assert_eq!((g[0].count, g[0].growth_per_min), (9, 6.0));
    }

    /// Go's most common leak, end to end through the detectors: a Transport per request,
    /// each connection dialed by net/http for a request made in `main.leakyPost`.
    #[test]
    fn a_group_names_its_origin_and_a_transport_per_request() {
        use crate::{kernel::event::BirthOrigin, model::origin::Frame};
        let frame = |name: &str| Frame {
            addr: 0x1000,
            function: Some(name.to_string()),
            file: Some("/src/client/main.go".into()),
            line: Some(23),
            module: Some("/bin/client".into()),
            offset: None,
        };
        let mut stacks = Stacks::default();
        stacks.insert(
            10,
            1,
            &[frame("syscall.connect"), frame("net/http.(*Transport).dialConn")],
        );
        stacks.insert(
            10,
            2,
            &[
                frame("net/http.(*Client).do"),
                frame("main.leakyPost"),
                frame("main.main"),
            ],
        );
        let mut m = Model::new(0, true);
        for i in 0..4u64 {
            let mut birth = ev(0, 1 + i, TcpState::Close, TcpState::SynSent, 0, 0);
            // Three transports made per request; the fourth connection reuses one.
            birth.origin = Some(BirthOrigin {
                stack: Some(1),
                request_stack: Some(2),
                transport: Some(0xc000 + i.min(2)),
            });
            m.apply(&birth);
            m.apply(&ev(
                0,
                1 + i,
                TcpState::SynSent,
                TcpState::Established,
                40001 + i as u16,
                1,
            ));
        }
        let mut t = Tracker::default();
        let found = scan(&m, &stacks, 100 * NS, &TH);
        let o = found[0].origin.as_ref().expect("origin");
        assert!(o.site.starts_with("main.leakyPost (main.go:23)"), "{}", o.site);
        assert_eq!(o.transports, Some(3));
        let g = t.update(100 * NS, found, &TH).groups;
        assert_eq!((g[0].count, g[0].from_origin), (4, Some(4)));
        assert_eq!(g[0].origin.as_ref().and_then(|o| o.transports), Some(3));
        assert_ne!(g[0].hint, HINT_TRANSPORT_PER_REQUEST, "4 connections, 3 transports");
        // Unknown stacks: no origin, never a guess.
        let none = scan(&m, &Stacks::default(), 100 * NS, &TH);
        assert!(none.iter().all(|f| f.origin.is_none()));
    }

    #[test]
    fn fd_eta_from_growth() {
        let s = |t: u64, n: u32| FdSample {
            ts_ns: t * NS,
            pid: 1,
            open_fds: n,
            limit: Some(1024),
            tcp_by_state: BTreeMap::new(),
        };
        let p = fd_pressure(&[s(0, 100), s(60, 160)], 300 * NS).unwrap();
        assert_eq!((p.growth_per_min, p.eta_s), (60.0, Some(864.0)));
        let flat = fd_pressure(&[s(0, 100), s(60, 100)], 300 * NS).unwrap();
        assert_eq!(flat.eta_s, None);
    }
}
