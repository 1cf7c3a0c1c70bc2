//! One tracing session as pure logic: it takes inputs (the snapshot, kernel events, periodic
//! ticks with fd readings, losses) and returns typed outputs (findings, summaries, the
//! post-mortem). The live CLI, the agent and `connlife report FILE` all drive the same session;
//! `--record` writes the inputs, so a replay gives the same post-mortem.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
};

use serde::{Deserialize, Serialize};

use crate::{
    kernel::event::{KernelEvent, Role, TcpState, Use},
    model::detect::{self, FdPressure, FdSample, Finding, Group, Thresholds, Tracker},
    model::{verdict, Change, ClosedConn, Correction, Model, SeenSocket},
};

fn default_group_min() -> usize {
    3
}

/// What a session consumes. Recorded as JSON lines by `--record`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Start {
        pids: Vec<u32>,
        now_ns: u64,
        use_counting: bool,
        close_wait_after_ns: u64,
        idle_after_ns: u64,
        /// connlife's own endpoint (agent): its sockets are never connections of the host's.
        #[serde(default)]
        ignore_local: Vec<(u32, SocketAddr)>,
        /// Smallest group reported (`--group-min`).
        #[serde(default = "default_group_min")]
        group_min: usize,
        /// Model cap (`--max-conns`; 0: none).
        #[serde(default)]
        max_conns: usize,
        /// Agent: write a post-mortem of any process that ends after EMFILE/ENFILE, or killed
        /// by a signal or exiting while holding at least this many (stuck) connections.
        #[serde(default)]
        postmortem_min_conns: Option<u32>,
    },
    /// A process matched by --comm, reported on from now (fd readings, post-mortem).
    Track {
        pid: u32,
        now_ns: u64,
    },
    /// A process that inherited a traced process's sockets when connlife started (a child
    /// that already existed): traced and reported on like a forked one.
    Follow {
        pid: u32,
        parent: u32,
        now_ns: u64,
    },
    /// The start-up snapshot, taken from `started_ns` to `now_ns`, applied after the events
    /// queued meanwhile.
    Snapshot {
        #[serde(default)]
        started_ns: u64,
        now_ns: u64,
        sockets: Vec<SeenSocket>,
    },
    /// The kernel's view again, later: what drifted is corrected and counted.
    Reconcile {
        started_ns: u64,
        now_ns: u64,
        sockets: Vec<SeenSocket>,
    },
    /// Forget the fd history of processes not read for `max_age_ns` (the agent's bound).
    Prune {
        now_ns: u64,
        max_age_ns: u64,
    },
    /// Use counters read from the kernel map for idle connections (sk, counters).
    UseRefresh {
        now_ns: u64,
        usage: Vec<(u64, Use)>,
    },
    Event {
        event: KernelEvent,
    },
    Tick {
        now_ns: u64,
        fds: Vec<FdSample>,
    },
    Lost {
        now_ns: u64,
        #[serde(flatten)]
        losses: Lost,
    },
    /// A traced process is gone without its exit being seen: it ended before tracing began
    /// (`before_start`), or its exit was missed.
    Gone {
        pid: u32,
        now_ns: u64,
        before_start: bool,
    },
    End {
        now_ns: u64,
    },
}

/// What a session produces; each is one `--json` line with its `type`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    Finding(Finding),
    Resolved(Finding),
    Group(Group),
    Summary(Summary),
    Closed(ClosedRecord),
    Transition(TransitionRecord),
    FdExhausted(FdExhausted),
    Lost(Lost),
    Postmortem(Postmortem),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub at_s: f64,
    /// Live connections (not listeners) by state.
    pub by_state: BTreeMap<String, u32>,
    pub listening: u32,
    pub findings: BTreeMap<String, u32>,
    pub fds: Vec<FdPressure>,
    /// Groups of unreused connections (same pid and remote) at this moment.
    pub groups: Vec<Group>,
    pub opened: u64,
    pub closed: u64,
    /// Every event lost, whatever the cause (the sum of `lost`).
    pub lost_events: u64,
    pub lost: Lost,
    /// Corrections the model needed to match the kernel, by kind (0 on a healthy run).
    pub corrections: BTreeMap<&'static str, u64>,
    /// Connections dropped from the model at --max-conns.
    pub evicted: u64,
    /// Kernel events received since start.
    pub events: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClosedRecord {
    pub pid: Option<u32>,
    pub comm: String,
    pub fd: Option<i32>,
    pub laddr: String,
    pub raddr: String,
    pub role: crate::kernel::event::Role,
    pub reason: crate::model::EndReason,
    pub lifetime_s: f64,
    pub lifetime_exact: bool,
    pub path: Vec<(TcpState, f64)>,
    pub fd_closed: bool,
    /// Counted in the kernel; `null` on kernels without the send/recv tracepoints.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub exchanges: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TransitionRecord {
    pub pid: Option<u32>,
    pub comm: String,
    pub fd: Option<i32>,
    pub laddr: String,
    pub raddr: String,
    pub from: Option<TcpState>,
    pub to: TcpState,
    pub at_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FdExhausted {
    pub pid: u32,
    pub comm: String,
    pub errno: String,
    pub syscall: String,
    pub at_s: f64,
    pub open_fds: Option<u32>,
    pub tcp_by_state: BTreeMap<String, u32>,
}

/// Events lost since start, by cause. Each is a count the kernel or the reader keeps; none is
/// inferred.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// The ring buffer was full: the record was dropped (the `kernel` of older records).
    #[serde(alias = "kernel")]
    pub ring_full: u64,
    /// The kernel skipped one of connlife's programs because another BPF program was running
    /// on that CPU (`recursion_misses` of each program, 5.12+).
    #[serde(default)]
    pub recursion_misses: u64,
    /// A socket could not be added to the kernel's SOCKS map (full): traced without owner.
    #[serde(default)]
    pub map_full: u64,
    /// Records that failed to decode.
    pub decode_errors: u64,
    /// Not lost: state changes the kernel skipped the main state program for (nested on its
    /// CPU) that the second state program handled. Shown so the rescue is visible.
    #[serde(default)]
    pub rescued: u64,
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.ring_full + self.recursion_misses + self.map_full + self.decode_errors
    }
    /// (cause, count) with the label values of `connlife_lost_events_total{cause}`.
    pub fn by_cause(&self) -> [(&'static str, u64); 4] {
        [
            ("ring_full", self.ring_full),
            ("recursion_miss", self.recursion_misses),
            ("map_full", self.map_full),
            ("decode_error", self.decode_errors),
        ]
    }
}

pub use crate::model::verdict::{OpenGroup, Pattern};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at_s: f64,
    pub open_fds: u32,
    pub tcp_by_state: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Postmortem {
    pub pid: u32,
    pub comm: String,
    /// "exited with status N", "killed by signal N", "ended before tracing began", or
    /// "still running" (Ctrl-C report).
    pub ending: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub lifetime_s: f64,
    pub fd_limit: Option<u64>,
    pub peak_fds: u32,
    pub fd_exhausted: Vec<FdExhausted>,
    pub open_at_end: Vec<OpenGroup>,
    pub findings_raised: BTreeMap<String, u64>,
    pub findings_at_end: Vec<Finding>,
    pub groups: Vec<Group>,
    pub timeline: Vec<TimelinePoint>,
    /// Leak patterns named from what was held at the end.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
    pub verdict: String,
    /// Agent: why it wrote this post-mortem (`fd_exhausted`, `killed_holding`, `leaked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Agent: container id, cgroup path and Kubernetes pod UID of the process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

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

    /// Why the agent writes a post-mortem of `pid` at its end, if it does.
    fn postmortem_reason(&self, pid: u32, status: i32, min: u32) -> Option<&'static str> {
        if self.procs.get(&pid).is_some_and(|p| !p.exhausted.is_empty()) {
            return Some("fd_exhausted");
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
            } => {
                let sockets = self.without_ignored(sockets);
                let changes = self.model.reconcile(&sockets, *started_ns, *now_ns);
                self.on_changes(changes)
            }
            Input::Prune { now_ns, max_age_ns } => {
                self.forget_stale_processes(*now_ns, *max_age_ns);
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

    fn without_ignored(&self, sockets: &[SeenSocket]) -> Vec<SeenSocket> {
        sockets
            .iter()
            .filter(|s| !self.ignored(s.netns, s.local))
            .cloned()
            .collect()
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

    /// A followed child gets a post-mortem only when there is something to say: it held
    /// connections at its end, ran out of fds, or had findings.
    fn child_worth_a_postmortem(&self, pid: u32) -> bool {
        self.followed.contains(&pid)
            && (self.procs.get(&pid).is_some_and(|p| !p.exhausted.is_empty())
                || self
                    .model
                    .conns()
                    .any(|c| c.tgid() == Some(pid) && c.state != TcpState::Listen)
                || self.tracker.active().any(|f| f.pid == Some(pid)))
    }

    fn on_event(&mut self, ev: &KernelEvent) -> Vec<Output> {
        if ev.local.is_some_and(|l| self.ignored(ev.netns, l)) {
            return Vec::new();
        }
        let changes = self.model.apply(ev);
        self.on_changes(changes)
    }

    fn on_changes(&mut self, changes: Vec<Change>) -> Vec<Output> {
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
                            laddr: c.local.to_string(),
                            raddr: c.remote.to_string(),
                            from,
                            to,
                            at_s: self.rel(ts_ns),
                        }));
                    } else if let Some(c) = self.model.closed.back().filter(|c| c.conn.id == id) {
                        out.push(Output::Transition(TransitionRecord {
                            pid: c.conn.tgid(),
                            comm: c.conn.comm().to_string(),
                            fd: c.conn.fd(),
                            laddr: c.conn.local.to_string(),
                            raddr: c.conn.remote.to_string(),
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
                Change::Closed(c) => {
                    self.closed += 1;
                    *self.closed_by_reason.entry(c.reason.name()).or_default() += 1;
                    self.exchanges_total += u64::from(c.conn.usage.exchanges);
                    if self.closed_records {
                        out.push(Output::Closed(closed_record(&c, self.model.use_counting)));
                    }
                }
                Change::ProcessExit {
                    tgid,
                    comm,
                    status,
                    ts_ns,
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
                        if let Some(reason) = self.postmortem_reason(tgid, status, min) {
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
                        open_fds: p.samples.last().map(|s| s.open_fds),
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
        let found = detect::scan(&self.model, now_ns, &self.thresholds);
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
        for c in self.model.conns().filter(|c| c.fd_closed_ns.is_none()) {
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
        }
    }

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
            comm = self
                .model
                .conns()
                .find(|c| c.tgid() == Some(pid))
                .map(|c| c.comm().to_string())
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
        let peak_fds = samples.iter().map(|s| s.open_fds).max().unwrap_or(0);
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
    fn first_seen(&self, pid: u32) -> u64 {
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
        [oldest_conn, first_sample, Some(self.start_ns)]
            .into_iter()
            .flatten()
            .filter(|&t| t >= self.start_ns)
            .min()
            .unwrap_or(self.start_ns)
    }

    /// What `pid` held (not listening), by state, role and remote, with the facts the verdict
    /// is made of.
    fn open_groups(&self, pid: u32, now_ns: u64) -> Vec<OpenGroup> {
        struct Acc {
            g: OpenGroup,
            exchanges: u64,
            counted: u32,
        }
        let mut groups: BTreeMap<(TcpState, String, String), Acc> = BTreeMap::new();
        for c in self
            .model
            .conns()
            .filter(|c| c.tgid() == Some(pid) && c.state != TcpState::Listen)
        {
            let age = detect::secs(now_ns.saturating_sub(c.opened_ns));
            let acc = groups
                .entry((c.state, format!("{:?}", c.role), c.remote.to_string()))
                .or_insert(Acc {
                    g: OpenGroup {
                        state: c.state,
                        role: c.role,
                        raddr: c.remote.to_string(),
                        count: 0,
                        oldest_s: age,
                        newest_s: age,
                        fds: Vec::new(),
                        exchanges_per_conn: None,
                        unreused: 0,
                        growth_per_min: 0.0,
                    },
                    exchanges: 0,
                    counted: 0,
                });
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
                a.g.exchanges_per_conn =
                    (a.counted > 0).then(|| (a.exchanges as f64 / a.counted as f64 * 10.0).round() / 10.0);
                a.g.growth_per_min = verdict::growth_from_ages(a.g.count, a.g.oldest_s, a.g.newest_s);
                a.g
            })
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse(g.count));
        out
    }
}

fn closed_record(c: &ClosedConn, use_counting: bool) -> ClosedRecord {
    let conn = &c.conn;
    ClosedRecord {
        pid: conn.tgid(),
        comm: conn.comm().to_string(),
        fd: conn.fd(),
        laddr: conn.local.to_string(),
        raddr: conn.remote.to_string(),
        role: conn.role,
        reason: c.reason,
        lifetime_s: detect::secs(c.ended_ns.saturating_sub(conn.opened_ns)),
        lifetime_exact: conn.age_exact,
        path: conn
            .path
            .iter()
            .map(|&(s, t)| (s, detect::secs(t.saturating_sub(conn.opened_ns))))
            .collect(),
        fd_closed: conn.fd_closed_ns.is_some(),
        bytes_sent: use_counting.then_some(conn.usage.bytes_sent),
        bytes_received: use_counting.then_some(conn.usage.bytes_received),
        exchanges: (use_counting && conn.exchanges_known).then_some(conn.usage.exchanges),
    }
}
