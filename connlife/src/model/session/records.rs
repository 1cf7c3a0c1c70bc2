//! What a session consumes ([`Input`], recorded as JSON lines by `--record`) and produces
//! ([`Output`], each a `--json` line with its `type`): the one definition of each record.
use std::{collections::BTreeMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

use crate::{
    kernel::event::{KernelEvent, TcpState, Use},
    model::detect::{FdPressure, FdSample, Finding, Group},
    model::{origin::Frame, SeenSocket},
};

pub use crate::model::verdict::{OpenGroup, Pattern};

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
        /// Model cap (`--max-conns`; 0: none but the model's own, `MAX_CONNS`).
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
        /// The network namespaces the view looked into; a connection of another one is left
        /// alone. `None` (recordings before it was kept): every one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<Vec<u32>>,
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
    /// A stack of a traced process, symbolized off the event loop after a connection was
    /// born with it: the origin of that connection's findings, groups and post-mortem.
    Stack {
        pid: u32,
        stack_id: u32,
        frames: Vec<Frame>,
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
    /// Kernel events applied since start (a record the kernel folded several changes into
    /// counts each of them).
    pub events: u64,
    /// Records read from the kernel's ring buffer since start (live runs only: a replay
    /// has the events, not the records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// One per connection that ended, under `--pid` and `--comm`: built without an allocation of
/// its own (the process name shared, the addresses written as they are serialized).
#[derive(Clone, Debug, Serialize)]
pub struct ClosedRecord {
    pub pid: Option<u32>,
    pub comm: crate::model::Comm,
    pub fd: Option<i32>,
    pub laddr: std::net::SocketAddr,
    pub raddr: std::net::SocketAddr,
    pub role: crate::kernel::event::Role,
    pub reason: crate::model::EndReason,
    pub lifetime_s: f64,
    pub lifetime_exact: bool,
    /// Inline for a whole lifetime (SYN_SENT to CLOSE is 6 states).
    pub path: smallvec::SmallVec<[(TcpState, f64); 6]>,
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
    /// Not events: connection births whose user stack the kernel could not keep (its stack
    /// map full, or a hash collision): their origin is unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stacks_missed: u64,
    /// Not events: stacks left unsymbolized because the symbolizer's queue was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stacks_unsymbolized: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Lost {
    /// Origins that will stay unknown, by cause (`connlife_origins_missed_total{cause}`).
    pub fn origins_missed(&self) -> [(&'static str, u64); 2] {
        [
            ("stack_map", self.stacks_missed),
            ("symbolizer_queue", self.stacks_unsymbolized),
        ]
    }
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
