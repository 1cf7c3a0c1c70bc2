//! Prometheus metrics of the agent (pure): a view computed from the session with bounded label
//! cardinality (process name and container, capped to the top N; remote endpoints top N; never
//! a pid or a connection), rendered as OpenMetrics text with the prometheus-client crate.
use std::collections::BTreeMap;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::model::session::Session;

type Labels = Vec<(String, String)>;

/// Labels of one process: its name and container (empty on the host).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcLabels {
    pub comm: String,
    pub container: String,
}

/// Agent health figures that live outside the session.
#[derive(Clone, Debug, Default)]
pub struct AgentHealth {
    /// Reconciliations with the kernel's view (periodic, and after losses).
    pub reconciles: u64,
    /// Internal errors by operation (snapshot, fd reading, endpoint accept...), each retried.
    pub errors: BTreeMap<&'static str, u64>,
    /// Post-mortems written, by reason.
    pub postmortems: BTreeMap<&'static str, u64>,
    pub rss_bytes: u64,
    pub attached_programs: u64,
}

pub const OTHER: &str = "other";

/// Everything /metrics shows, computed once per tick.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub connections: BTreeMap<(String, ProcLabels), i64>,
    pub stuck: BTreeMap<(String, ProcLabels), i64>,
    pub stuck_by_remote: BTreeMap<(String, String), i64>,
    /// Flagged connections by the function of their origin's call site (top N).
    pub stuck_by_origin: BTreeMap<(String, String), i64>,
    pub opened: u64,
    pub closed: BTreeMap<String, u64>,
    pub exchanges: u64,
    pub open_fds: BTreeMap<ProcLabels, i64>,
    pub fd_limit: BTreeMap<ProcLabels, i64>,
    pub fd_eta: BTreeMap<ProcLabels, f64>,
    pub findings: BTreeMap<String, u64>,
    pub model_connections: i64,
    pub evicted: u64,
    pub lost: Vec<(&'static str, u64)>,
    pub origins_missed: Vec<(&'static str, u64)>,
    pub corrections: BTreeMap<&'static str, u64>,
    pub flight_recorder_bytes: i64,
    pub health: AgentHealth,
}

/// Keep the `top_n` label values with the largest totals; the rest become "other".
fn cap<K: Ord + Clone>(totals: &BTreeMap<K, i64>, top_n: usize) -> impl Fn(&K) -> bool {
    let mut ranked: Vec<(&K, &i64)> = totals.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let keep: Vec<K> = ranked.into_iter().take(top_n).map(|(k, _)| k.clone()).collect();
    move |k| keep.contains(k)
}

/// Compute the view. `labels_of(pid)` names a process (comm, container).
pub fn view(session: &Session, labels_of: &dyn Fn(u32) -> ProcLabels, top_n: usize, health: AgentHealth) -> View {
    let mut v = View {
        health,
        ..Default::default()
    };
    let label = |pid: Option<u32>| {
        pid.map(labels_of).unwrap_or(ProcLabels {
            comm: "unknown".into(),
            container: String::new(),
        })
    };
    // Per-process totals decide which processes get their own label.
    let mut per_proc: BTreeMap<ProcLabels, i64> = BTreeMap::new();
    for c in session.model.conns() {
        *per_proc.entry(label(c.tgid())).or_default() += 1;
    }
    let keep = cap(&per_proc, top_n);
    let bucket = |l: ProcLabels| {
        if keep(&l) {
            l
        } else {
            ProcLabels {
                comm: OTHER.into(),
                container: String::new(),
            }
        }
    };
    for c in session.model.conns().filter(|c| c.fd_closed_ns().is_none()) {
        *v.connections
            .entry((c.state.name().to_string(), bucket(label(c.tgid()))))
            .or_default() += 1;
    }
    let mut remotes: BTreeMap<String, i64> = BTreeMap::new();
    for f in session.tracker.active() {
        *v.stuck
            .entry((f.kind.name().to_string(), bucket(label(f.pid))))
            .or_default() += 1;
        *remotes.entry(f.raddr.clone()).or_default() += 1;
    }
    let keep_remote = cap(&remotes, top_n);
    for f in session.tracker.active() {
        let r = if keep_remote(&f.raddr) {
            f.raddr.clone()
        } else {
            OTHER.into()
        };
        *v.stuck_by_remote.entry((f.kind.name().to_string(), r)).or_default() += 1;
    }
    // The function only (no file:line, no address): a bounded label; "unknown" until the
    // stack is symbolized, or with --no-origin.
    let origin_of = |f: &crate::model::detect::Finding| {
        f.origin
            .as_ref()
            .and_then(|o| crate::model::origin::call_site(&o.frames))
            .and_then(|frame| frame.function.clone())
            .unwrap_or_else(|| "unknown".to_string())
    };
    let mut origins: BTreeMap<String, i64> = BTreeMap::new();
    for f in session.tracker.active() {
        *origins.entry(origin_of(f)).or_default() += 1;
    }
    let keep_origin = cap(&origins, top_n);
    for f in session.tracker.active() {
        let o = origin_of(f);
        let o = if keep_origin(&o) { o } else { OTHER.into() };
        *v.stuck_by_origin.entry((f.kind.name().to_string(), o)).or_default() += 1;
    }
    v.opened = session.opened();
    v.closed = session
        .closed_by_reason()
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect();
    v.exchanges = session.exchanges_total();
    for p in session.fd_pressures() {
        let l = bucket(labels_of(p.pid));
        let open = v.open_fds.entry(l.clone()).or_default();
        if p.open_fds as i64 >= *open {
            *open = p.open_fds as i64;
            if let Some(limit) = p.limit {
                v.fd_limit.insert(l.clone(), limit as i64);
            }
        }
        if let Some(eta) = p.eta_s {
            let e = v.fd_eta.entry(l).or_insert(f64::INFINITY);
            *e = e.min(eta);
        }
    }
    v.findings = session
        .tracker
        .raised
        .iter()
        .map(|(k, n)| (k.name().to_string(), *n))
        .collect();
    v.model_connections = session.model.len() as i64;
    v.evicted = session.model.evicted;
    v.lost = session.losses().by_cause().to_vec();
    v.origins_missed = session.losses().origins_missed().to_vec();
    v.corrections = session.corrections();
    v.flight_recorder_bytes = session.flight_recorder_bytes() as i64;
    // Known label values exist at 0, so "none" is not mistaken for "not scraped".
    for kind in crate::model::detect::FindingKind::ALL {
        v.findings.entry(kind.name().to_string()).or_insert(0);
        let none = ProcLabels {
            comm: "none".into(),
            container: String::new(),
        };
        if !v.stuck.keys().any(|(k, _)| k == kind.name()) {
            v.stuck.insert((kind.name().to_string(), none), 0);
        }
    }
    v
}

fn proc_labels(extra: &[(&str, &str)], p: &ProcLabels) -> Labels {
    let mut l: Labels = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.push(("comm".into(), p.comm.clone()));
    l.push(("container".into(), p.container.clone()));
    l
}

/// Render the view as OpenMetrics text.
pub fn render(v: &View) -> String {
    let mut reg = Registry::with_prefix("connlife");
    let gauge_family = |reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, i64)>| {
        let fam = Family::<Labels, Gauge>::default();
        for (l, n) in rows {
            fam.get_or_create(&l).set(n);
        }
        reg.register(name, help, fam);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, n: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        reg.register(name, help, c);
    };
    let gauge = |reg: &mut Registry, name: &str, help: &str, n: i64| {
        let g = Gauge::<i64>::default();
        g.set(n);
        reg.register(name, help, g);
    };
    let counter_family = |reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>| {
        let fam = Family::<Labels, Counter>::default();
        for (l, n) in rows {
            fam.get_or_create(&l).inc_by(n);
        }
        reg.register(name, help, fam);
    };
    gauge_family(
        &mut reg,
        "connections",
        "Open TCP connections (fd still held) by state, process name and container",
        v.connections
            .iter()
            .map(|((s, p), n)| (proc_labels(&[("state", s)], p), *n))
            .collect(),
    );
    gauge_family(
        &mut reg,
        "stuck_connections",
        "Connections currently flagged by a detector (close_wait_stuck, established_unreused)",
        v.stuck
            .iter()
            .map(|((k, p), n)| (proc_labels(&[("kind", k)], p), *n))
            .collect(),
    );
    gauge_family(
        &mut reg,
        "stuck_connections_by_remote",
        "Flagged connections by remote endpoint (top N, the rest as \"other\")",
        v.stuck_by_remote
            .iter()
            .map(|((k, r), n)| (vec![("kind".into(), k.clone()), ("remote".into(), r.clone())], *n))
            .collect(),
    );
    gauge_family(
        &mut reg,
        "stuck_connections_by_origin",
        "Flagged connections by the function that opened them (its call site's function, top N, the rest as \"other\"; \"unknown\" when not symbolized)",
        v.stuck_by_origin
            .iter()
            .map(|((k, o), n)| (vec![("kind".into(), k.clone()), ("origin".into(), o.clone())], *n))
            .collect(),
    );
    counter(
        &mut reg,
        "connections_opened",
        "Connections seen opening (or found at start)",
        v.opened,
    );
    counter_family(
        &mut reg,
        "connections_closed",
        "Connections ended, by how (closed_by_us, closed_by_peer, reset, unlistened)",
        v.closed
            .iter()
            .map(|(r, n)| (vec![("reason".into(), r.clone())], *n))
            .collect(),
    );
    counter(
        &mut reg,
        "exchanges",
        "Request/response exchanges of ended connections",
        v.exchanges,
    );
    gauge_family(
        &mut reg,
        "process_open_fds",
        "Open fds of the busiest process of each name/container",
        v.open_fds.iter().map(|(p, n)| (proc_labels(&[], p), *n)).collect(),
    );
    gauge_family(
        &mut reg,
        "process_fd_limit",
        "RLIMIT_NOFILE (soft) of that process",
        v.fd_limit.iter().map(|(p, n)| (proc_labels(&[], p), *n)).collect(),
    );
    let eta = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (p, s) in &v.fd_eta {
        eta.get_or_create(&proc_labels(&[], p)).set(*s);
    }
    reg.register(
        "fd_exhaustion_eta_seconds",
        "Estimated seconds until open fds reach the limit at the current growth (absent when not growing)",
        eta,
    );
    counter_family(
        &mut reg,
        "findings",
        "Findings raised since start, by kind",
        v.findings
            .iter()
            .map(|(k, n)| (vec![("kind".into(), k.clone())], *n))
            .collect(),
    );
    counter_family(
        &mut reg,
        "lost_events",
        "Events lost, by cause: ring_full (ring buffer full), recursion_miss (the kernel skipped a program while another BPF program ran on the CPU), map_full (socket map full), decode_error (corrupt records)",
        v.lost
            .iter()
            .map(|(cause, n)| (vec![("cause".into(), cause.to_string())], *n))
            .collect(),
    );
    counter_family(
        &mut reg,
        "origins_missed",
        "Connection births whose origin stays unknown, by cause: stack_map (the kernel's stack map was full or collided), symbolizer_queue (the symbolizer was behind)",
        v.origins_missed
            .iter()
            .map(|(cause, n)| (vec![("cause".into(), cause.to_string())], *n))
            .collect(),
    );
    counter_family(
        &mut reg,
        "model_corrections",
        "Corrections of the model to match the kernel's view, by kind (vanished, appeared, state, holders, reborn)",
        v.corrections
            .iter()
            .map(|(k, n)| (vec![("kind".into(), k.to_string())], *n))
            .collect(),
    );
    counter_family(
        &mut reg,
        "errors",
        "Internal errors by operation; each was retried, none stopped the agent",
        ["snapshot", "fd_reading", "map_read", "accept"]
            .iter()
            .map(|op| {
                (
                    vec![("op".into(), op.to_string())],
                    v.health.errors.get(op).copied().unwrap_or(0),
                )
            })
            .collect(),
    );
    gauge(
        &mut reg,
        "model_connections",
        "Connections held in the agent's model",
        v.model_connections,
    );
    counter(
        &mut reg,
        "model_evicted",
        "Connections dropped from the model at its cap",
        v.evicted,
    );
    counter(
        &mut reg,
        "reconciles",
        "Reconciliations of the model with the kernel's view (sock_diag and /proc)",
        v.health.reconciles,
    );
    counter_family(
        &mut reg,
        "postmortems",
        "Post-mortems written, by reason: fd_exhausted, killed_holding (killed by a signal holding many connections), leaked (exited holding stuck or unreused connections)",
        v.health
            .postmortems
            .iter()
            .map(|(r, n)| (vec![("reason".into(), r.to_string())], *n))
            .collect(),
    );
    gauge(
        &mut reg,
        "flight_recorder_bytes",
        "Memory of the per-process history kept for post-mortems (estimate)",
        v.flight_recorder_bytes,
    );
    gauge(
        &mut reg,
        "agent_rss_bytes",
        "Resident memory of the agent",
        v.health.rss_bytes as i64,
    );
    gauge(
        &mut reg,
        "agent_attached_programs",
        "eBPF programs attached",
        v.health.attached_programs as i64,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

/// Container id from a /proc/PID/cgroup text (docker, containerd/CRI, CRI-O, podman).
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split('/').rev().find_map(|seg| {
            let seg = seg.trim_end_matches(".scope");
            let id = seg.rsplit(['-', ':']).next()?;
            (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id[..12].to_string())
        })
    })
}

/// The cgroup path (v2 unified line, else the first).
pub fn cgroup_path(cgroup: &str) -> String {
    let line = cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| cgroup.lines().next())
        .unwrap_or("");
    line.splitn(3, ':').nth(2).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_runtimes() {
        let id = "4f1c2b7d9e0a11223344556677889900aabbccddeeff00112233445566778899";
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")).as_deref(),
            Some("4f1c2b7d9e0a")
        );
        assert_eq!(
            container_id(&format!(
                "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope\n"
            ))
            .as_deref(),
            Some("4f1c2b7d9e0a")
        );
        assert_eq!(container_id("0::/user.slice/user-0.slice/session-1.scope\n"), None);
        assert_eq!(cgroup_path("0::/system.slice/x.service\n"), "/system.slice/x.service");
    }

    #[test]
    fn labels_are_capped_to_top_n() {
        let mut totals = BTreeMap::new();
        for (i, n) in [5, 50, 7, 1].iter().enumerate() {
            totals.insert(format!("p{i}"), *n);
        }
        let keep = cap(&totals, 2);
        assert!(keep(&"p1".to_string()) && keep(&"p2".to_string()));
        assert!(!keep(&"p0".to_string()) && !keep(&"p3".to_string()));
    }

    #[test]
    fn renders_openmetrics_with_bounded_labels() {
        let mut v = View::default();
        let p = ProcLabels {
            comm: "api".into(),
            container: "abc".into(),
        };
        v.connections.insert(("CLOSE_WAIT".into(), p.clone()), 3);
        v.stuck.insert(("close_wait_stuck".into(), p.clone()), 3);
        v.fd_eta.insert(p, 120.0);
        v.lost = vec![("ring_full", 2), ("recursion_miss", 0)];
        let text = render(&v);
        assert!(
            text.contains("connlife_connections{state=\"CLOSE_WAIT\",comm=\"api\",container=\"abc\"} 3"),
            "{text}"
        );
        assert!(text.contains("connlife_stuck_connections{kind=\"close_wait_stuck\",comm=\"api\",container=\"abc\"} 3"));
        assert!(text.contains("connlife_lost_events_total{cause=\"ring_full\"} 2"));
        assert!(text.contains("connlife_lost_events_total{cause=\"recursion_miss\"} 0"));
        assert!(text.contains("connlife_fd_exhaustion_eta_seconds{comm=\"api\",container=\"abc\"} 120.0"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("pid"));
    }
}
