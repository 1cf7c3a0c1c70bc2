//! One tracing session as pure logic: it takes inputs (the snapshot, kernel events, periodic
//! ticks with fd readings, losses) and returns typed outputs (findings, summaries, the
//! post-mortem). The live CLI, the agent and `connlife report FILE` all drive the same session;
//! `--record` writes the inputs, so a replay gives the same post-mortem.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
};

mod postmortem;
mod records;

pub use records::*;

use crate::{
    kernel::event::{KernelEvent, Role, TcpState},
    model::detect::{self, FdPressure, FdSample, Finding, Group, Thresholds, Tracker},
    model::{origins::Stacks, verdict, Change, ClosedConn, Correction, Model, SeenSocket},
};

#[derive(Default)]
struct ProcTrack {
    samples: Vec<FdSample>,
    exhausted: Vec<FdExhausted>,
    /// Last reading or EMFILE (the agent forgets processes quiet for long).
    last_seen_ns: u64,
    exited: Option<(i32, String)>,
    /// Gone without its exit seen; true when it ended before tracing began.
    gone: Option<bool>,
    first_ns: u64,
}

pub struct Session {
    pub model: Model,
    /// Symbolized stacks: where connections were opened.
    pub stacks: Stacks,
    pub tracker: Tracker,
    pub thresholds: Thresholds,
    pub transitions: bool,
    /// Build a `closed` output per ended connection (the agent only counts them).
    pub closed_records: bool,
    pids: Vec<u32>,
    /// Processes traced because they inherited sockets of a traced one (fork).
    followed: HashSet<u32>,
    ignore_local: Vec<(u32, SocketAddr)>,
    corrections: BTreeMap<Correction, u64>,
    /// Agent: a post-mortem for any process whose end is worth one (see `postmortem_reason`),
    /// holding at least this many connections.
    flight: Option<u32>,
    start_ns: u64,
    procs: HashMap<u32, ProcTrack>,
    last_groups: Vec<Group>,
    opened: u64,
    closed: u64,
    closed_by_reason: BTreeMap<&'static str, u64>,
    exchanges_total: u64,
    events: u64,
    lost: Lost,
    /// Traced pids that have exited, in order.
    pub exited: Vec<u32>,
    /// The model's changes for one event (kept between events: no allocation per event).
    changes: Vec<Change>,
}

const TIMELINE_MAX: usize = 4096;
/// Agent (every process): fd readings kept per process, and processes kept at most.
const FLIGHT_SAMPLES_MAX: usize = 256;
const FLIGHT_PROCS_MAX: usize = 10_000;
const FD_WINDOW_NS: u64 = 5 * 60 * detect::NS;

impl Session {
    pub fn new(thresholds: Thresholds, transitions: bool, max_conns: usize) -> Self {
        Session {
            model: Model::new(max_conns, true),
            stacks: Stacks::default(),
            tracker: Tracker::default(),
            thresholds,
            transitions,
            closed_records: true,
            pids: Vec::new(),
            followed: HashSet::new(),
            ignore_local: Vec::new(),
            corrections: BTreeMap::new(),
            flight: None,
            start_ns: 0,
            procs: HashMap::new(),
            last_groups: Vec::new(),
            opened: 0,
            closed: 0,
            closed_by_reason: BTreeMap::new(),
            exchanges_total: 0,
            events: 0,
            lost: Lost::default(),
            exited: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }
    /// Every process whose fds are read: the named ones and those that inherited their
    /// sockets, while they run.
    pub fn traced_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.pids.iter().chain(self.followed.iter()).copied().collect();
        v.sort_unstable();
        v.dedup();
        v.retain(|p| !self.exited.contains(p));
        v
    }
    /// Every named process and every process that inherited their sockets has ended.
    pub fn all_ended(&self) -> bool {
        !self.pids.is_empty() && self.traced_pids().is_empty()
    }
    /// Corrections so far, every kind listed (0 when none).
    pub fn corrections(&self) -> BTreeMap<&'static str, u64> {
        Correction::ALL
            .iter()
            .map(|k| (k.name(), self.corrections.get(k).copied().unwrap_or(0)))
            .collect()
    }
    pub fn losses(&self) -> &Lost {
        &self.lost
    }
    pub fn events(&self) -> u64 {
        self.events
    }
    pub fn opened(&self) -> u64 {
        self.opened
    }
    pub fn closed_by_reason(&self) -> &BTreeMap<&'static str, u64> {
        &self.closed_by_reason
    }
    pub fn exchanges_total(&self) -> u64 {
        self.exchanges_total
    }
    /// Fd pressure of every sampled process that is still running.
    pub fn fd_pressures(&self) -> Vec<FdPressure> {
        self.procs
            .values()
            .filter(|p| p.exited.is_none())
            .filter_map(|p| detect::fd_pressure(&p.samples, FD_WINDOW_NS))
            .collect()
    }
    /// The fd readings of `pid` kept so far (oldest first, thinned past a bound).
    pub fn fd_history(&self, pid: u32) -> &[FdSample] {
        self.procs.get(&pid).map(|p| p.samples.as_slice()).unwrap_or_default()
    }
    /// Drop fd history of processes not sampled for `max_age_ns` (agent: they are gone).
    fn forget_stale_processes(&mut self, now_ns: u64, max_age_ns: u64) {
        let (pids, model) = (&self.pids, &self.model);
        let keep = |pid: &u32, p: &ProcTrack| {
            pids.contains(pid) || model.holds_any(*pid) || now_ns.saturating_sub(p.last_seen_ns) <= max_age_ns
        };
        self.procs.retain(|pid, p| keep(pid, p));
        if self.procs.len() > FLIGHT_PROCS_MAX {
            let mut by_age: Vec<(u64, u32)> = self.procs.iter().map(|(pid, p)| (p.last_seen_ns, *pid)).collect();
            by_age.sort_unstable();
            for (_, pid) in by_age.into_iter().take(self.procs.len() - FLIGHT_PROCS_MAX) {
                if !self.pids.contains(&pid) {
                    self.procs.remove(&pid);
                }
            }
        }
    }

    /// Memory the per-process history takes (the agent's flight recorder), estimated.
    pub fn flight_recorder_bytes(&self) -> u64 {
        let sample = std::mem::size_of::<FdSample>() + 64;
        let exhausted = std::mem::size_of::<FdExhausted>() + 64;
        self.procs
            .values()
            .map(|p| std::mem::size_of::<ProcTrack>() + 32 + p.samples.len() * sample + p.exhausted.len() * exhausted)
            .sum::<usize>() as u64
    }

    fn rel(&self, ts: u64) -> f64 {
        detect::secs(ts.saturating_sub(self.start_ns))
    }

    pub fn apply(&mut self, input: &Input) -> Vec<Output> {
        match input {
            Input::Start {
                pids,
                now_ns,
                use_counting,
                close_wait_after_ns,
                idle_after_ns,
                ignore_local,
                group_min,
                max_conns,
                postmortem_min_conns,
            } => {
                self.flight = *postmortem_min_conns;
                self.pids = pids.clone();
                self.thresholds.group_min = *group_min;
                self.model.max_conns = *max_conns;
                self.ignore_local = ignore_local.clone();
                self.start_ns = *now_ns;
                self.model.use_counting = *use_counting;
                self.thresholds.close_wait_after_ns = *close_wait_after_ns;
                self.thresholds.idle_after_ns = *idle_after_ns;
                for &pid in pids {
                    self.procs.entry(pid).or_default().first_ns = *now_ns;
                }
                Vec::new()
            }
            Input::Snapshot {
                started_ns,
                now_ns,
                sockets,
            } => {
                let sockets = self.without_ignored(sockets);
                let changes = self.model.apply_snapshot(&sockets, *started_ns, *now_ns);
                self.on_changes(changes)
            }
            Input::Reconcile {
                started_ns,
                now_ns,
                sockets,
                netns,
            } => {
                let sockets = self.without_ignored(sockets);
                let changes = self.model.reconcile(&sockets, netns.as_deref(), *started_ns, *now_ns);
                self.on_changes(changes)
            }
            Input::Prune { now_ns, max_age_ns } => {
                self.forget_stale_processes(*now_ns, *max_age_ns);
                // Stacks name addresses of the process that opened a connection: kept while it
                // is reported on or any connection it opened lives.
                let mut keep: HashSet<u32> = self.procs.keys().copied().collect();
                keep.extend(self.model.conns().filter_map(|c| c.origin().map(|(pid, _)| pid)));
                self.stacks.retain_pids(|pid| keep.contains(&pid));
                Vec::new()
            }
            Input::Stack { pid, stack_id, frames } => {
                self.stacks.insert(*pid, *stack_id, frames);
                Vec::new()
            }
            Input::UseRefresh { usage, .. } => {
                for (sk, u) in usage {
                    self.model.update_use(*sk, *u);
                }
                Vec::new()
            }
            Input::Follow { pid, now_ns, .. } => {
                self.follow(*pid, *now_ns);
                Vec::new()
            }
            Input::Gone {
                pid,
                now_ns,
                before_start,
            } => {
                let p = self.procs.entry(*pid).or_default();
                if p.exited.is_some() || self.exited.contains(pid) {
                    return Vec::new();
                }
                p.gone = Some(*before_start);
                self.exited.push(*pid);
                if self.pids.contains(pid) || self.child_worth_a_postmortem(*pid) {
                    vec![Output::Postmortem(self.postmortem(*pid, *now_ns))]
                } else {
                    Vec::new()
                }
            }
            Input::Track { pid, now_ns } => {
                if !self.pids.contains(pid) {
                    self.pids.push(*pid);
                    self.procs.entry(*pid).or_default().first_ns = *now_ns;
                }
                Vec::new()
            }
            Input::Event { event } => {
                self.events += 1;
                self.on_event(event)
            }
            Input::Tick { now_ns, fds } => self.on_tick(*now_ns, fds),
            Input::Lost { losses, .. } => {
                // A `lost` line when something more was lost (a rescue alone is not a loss).
                let grew = losses.total() != self.lost.total();
                self.lost = losses.clone();
                if grew {
                    return vec![Output::Lost(self.lost.clone())];
                }
                Vec::new()
            }
            Input::End { now_ns } => {
                let running: Vec<u32> = self.pids.iter().filter(|p| !self.exited.contains(p)).copied().collect();
                running
                    .into_iter()
                    .map(|pid| Output::Postmortem(self.postmortem(pid, *now_ns)))
                    .collect()
            }
        }
    }

    /// The view without connlife's own endpoint: references, not copies (a view can hold
    /// 200,000 sockets, and the start-up peak counts).
    fn without_ignored<'a>(&self, sockets: &'a [SeenSocket]) -> Vec<&'a SeenSocket> {
        sockets.iter().filter(|s| !self.ignored(s.netns, s.local)).collect()
    }

    /// connlife's own endpoint, in its own netns (an address of 0.0.0.0 covers every one).
    fn ignored(&self, netns: u32, local: SocketAddr) -> bool {
        self.ignore_local.iter().any(|&(ns, a)| {
            ns == netns && a.port() == local.port() && (a.ip().is_unspecified() || a.ip() == local.ip())
        })
    }

    fn follow(&mut self, pid: u32, now_ns: u64) {
        if !self.pids.contains(&pid) && self.followed.insert(pid) {
            self.procs.entry(pid).or_default().first_ns = now_ns;
        }
    }

    fn on_event(&mut self, ev: &KernelEvent) -> Vec<Output> {
        if ev.local.is_some_and(|l| self.ignored(ev.netns, l)) {
            return Vec::new();
        }
        let mut changes = std::mem::take(&mut self.changes);
        self.model.apply_into(ev, &mut changes);
        let out = self.on_changes(changes.drain(..));
        self.changes = changes;
        out
    }

    fn on_changes(&mut self, changes: impl IntoIterator<Item = Change>) -> Vec<Output> {
        let mut out = Vec::new();
        for change in changes {
            match change {
                Change::Opened(_) => self.opened += 1,
                Change::Transition { id, from, to, ts_ns } if self.transitions => {
                    if let Some(c) = self.model.get(id) {
                        out.push(Output::Transition(TransitionRecord {
                            pid: c.tgid(),
                            comm: c.comm().to_string(),
                            fd: c.fd(),
                            laddr: c.local().to_string(),
                            raddr: c.remote().to_string(),
                            from,
                            to,
                            at_s: self.rel(ts_ns),
                        }));
                    } else if let Some(c) = self.model.closed.back().filter(|c| c.conn.id == id) {
                        out.push(Output::Transition(TransitionRecord {
                            pid: c.conn.tgid(),
                            comm: c.conn.comm().to_string(),
                            fd: c.conn.fd(),
                            laddr: c.conn.local().to_string(),
                            raddr: c.conn.remote().to_string(),
                            from,
                            to,
                            at_s: self.rel(ts_ns),
                        }));
                    }
                }
                Change::Transition { .. } | Change::FdClosed { .. } | Change::Evicted => {}
                Change::Corrected(kind) => *self.corrections.entry(kind).or_default() += 1,
                Change::Forked { parent, child, .. } => {
                    // --pid/--comm: a child of a traced process is traced (the kernel already
                    // follows it); the agent traces everything anyway.
                    if !self.pids.is_empty() && (self.pids.contains(&parent) || self.followed.contains(&parent)) {
                        let at = self.procs.get(&parent).map(|p| p.first_ns).unwrap_or(self.start_ns);
                        self.follow(child, at.max(self.start_ns));
                    }
                }
                Change::Closed(id) => {
                    self.closed += 1;
                    let Some(c) = self.model.closed.iter().rev().find(|c| c.conn.id == id) else {
                        continue;
                    };
                    *self.closed_by_reason.entry(c.reason.name()).or_default() += 1;
                    self.exchanges_total += u64::from(c.conn.usage.exchanges);
                    if self.closed_records {
                        out.push(Output::Closed(closed_record(c, self.model.use_counting)));
                    }
                }
                Change::ProcessExit {
                    tgid,
                    comm,
                    status,
                    ts_ns,
                    held,
                } => {
                    let p = self.procs.entry(tgid).or_default();
                    p.exited = Some((status, comm));
                    let traced = self.pids.contains(&tgid) || self.followed.contains(&tgid);
                    if traced && !self.exited.contains(&tgid) {
                        self.exited.push(tgid);
                        if self.pids.contains(&tgid) || self.child_worth_a_postmortem(tgid) {
                            out.push(Output::Postmortem(self.postmortem(tgid, ts_ns)));
                        }
                    } else if let Some(min) = self.flight.filter(|_| self.pids.is_empty()) {
                        // The agent's flight recorder: the end of a process worth explaining.
                        if let Some(reason) = self.postmortem_reason(tgid, status, held, min) {
                            let mut pm = self.postmortem(tgid, ts_ns);
                            pm.reason = Some(reason.to_string());
                            out.push(Output::Postmortem(pm));
                        }
                        self.procs.remove(&tgid);
                    }
                }
                Change::FdExhausted {
                    tgid,
                    comm,
                    errno,
                    syscall,
                    ts_ns,
                } => {
                    let tcp_by_state = detect::tcp_by_state(&self.model, Some(tgid));
                    let p = self.procs.entry(tgid).or_default();
                    let rec = FdExhausted {
                        pid: tgid,
                        comm,
                        errno: if errno == connlife_common::ENFILE {
                            "ENFILE"
                        } else {
                            "EMFILE"
                        }
                        .to_string(),
                        syscall: syscall.to_string(),
                        at_s: detect::secs(ts_ns.saturating_sub(self.start_ns)),
                        // EMFILE: no fd below the limit was free, so at least the limit was
                        // open (a reading from before may be far lower); never fewer than the
                        // TCP sockets it held.
                        open_fds: {
                            let tcp: u32 = tcp_by_state.values().sum();
                            let limit = p.samples.iter().rev().find_map(|s| s.limit);
                            let at_limit = (errno == connlife_common::EMFILE).then_some(limit).flatten();
                            [
                                p.samples.last().map(|s| s.open_fds),
                                Some(tcp),
                                at_limit.map(|l| l as u32),
                            ]
                            .into_iter()
                            .flatten()
                            .max()
                        },
                        tcp_by_state,
                    };
                    // Report the first failure of a burst (a process retries in a loop).
                    p.last_seen_ns = ts_ns;
                    if p.exhausted.last().is_none_or(|l| rec.at_s - l.at_s > 1.0) {
                        p.exhausted.push(rec.clone());
                        out.push(Output::FdExhausted(rec));
                    }
                }
            }
        }
        out
    }

    fn on_tick(&mut self, now_ns: u64, fds: &[FdSample]) -> Vec<Output> {
        for s in fds {
            let p = self.procs.entry(s.pid).or_default();
            p.last_seen_ns = s.ts_ns;
            let max = if self.flight.is_some() && self.pids.is_empty() {
                FLIGHT_SAMPLES_MAX
            } else {
                TIMELINE_MAX
            };
            if p.samples.len() >= max {
                // Keep the curve's shape: drop every other old point.
                let kept: Vec<_> = p.samples.iter().step_by(2).cloned().collect();
                p.samples = kept;
            }
            p.samples.push(s.clone());
        }
        let found = detect::scan(&self.model, &self.stacks, now_ns, &self.thresholds);
        let r = self.tracker.update(now_ns, found, &self.thresholds);
        let mut out: Vec<Output> = r.appeared.into_iter().map(Output::Finding).collect();
        out.extend(r.resolved.into_iter().map(Output::Resolved));
        for g in &r.groups {
            let prev = self.last_groups.iter().find(|p| p.pid == g.pid && p.raddr == g.raddr);
            if prev.is_none_or(|p| p.count != g.count) {
                out.push(Output::Group(g.clone()));
            }
        }
        self.last_groups = r.groups;
        out
    }

    /// The periodic summary (also the start-up view and the Ctrl-C report's head).
    pub fn summary(&self, now_ns: u64) -> Summary {
        let mut by_state = BTreeMap::new();
        let mut listening = 0;
        for c in self.model.conns().filter(|c| c.fd_closed_ns().is_none()) {
            if c.state == TcpState::Listen {
                listening += 1;
            } else {
                *by_state.entry(c.state.name().to_string()).or_default() += 1;
            }
        }
        let mut findings = BTreeMap::new();
        for f in self.tracker.active() {
            *findings.entry(f.kind.name().to_string()).or_default() += 1;
        }
        let fds = self.fd_pressures();
        Summary {
            at_s: self.rel(now_ns),
            by_state,
            listening,
            findings,
            fds,
            groups: self.last_groups.clone(),
            opened: self.opened,
            closed: self.closed,
            lost_events: self.lost.total(),
            lost: self.lost.clone(),
            corrections: self.corrections(),
            evicted: self.model.evicted,
            events: self.events,
            records: None,
        }
    }
}

fn closed_record(c: &ClosedConn, use_counting: bool) -> ClosedRecord {
    let conn = &c.conn;
    ClosedRecord {
        pid: conn.tgid(),
        comm: conn.owner().map(|o| o.comm.clone()).unwrap_or_default(),
        fd: conn.fd(),
        laddr: conn.local(),
        raddr: conn.remote(),
        role: conn.role,
        reason: c.reason,
        lifetime_s: detect::secs(c.ended_ns.saturating_sub(conn.opened_ns)),
        lifetime_exact: conn.age_exact,
        path: conn
            .path
            .iter()
            .map(|(s, t)| (s, detect::secs(t.saturating_sub(conn.opened_ns))))
            .collect(),
        fd_closed: conn.fd_closed_ns().is_some(),
        bytes_sent: use_counting.then_some(conn.usage.bytes_sent),
        bytes_received: use_counting.then_some(conn.usage.bytes_received),
        exchanges: (use_counting && conn.exchanges_known).then_some(conn.usage.exchanges),
    }
}
