//! `connlife agent`: the fleet-wide, long-lived mode: the driver with the agent's hooks. Traces
//! every process (or a --comm selection) with the same model and detectors as the CLI, logs
//! findings as JSON lines on stdout (named with container and cgroup), serves Prometheus
//! /metrics and /healthz from [`crate::run::endpoint`], reconciles with the kernel's view, and
//! keeps its memory bounded (model cap, per-process state dropped when processes go).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    cli::AgentArgs,
    kernel::loader::Filter,
    model::{
        detect::{Thresholds, NS},
        session::{Output, Session, Summary},
    },
    output::metrics::{self, AgentHealth, ProcLabels},
    run::{
        driver::{self, monotonic_ns, Mode, Settings},
        endpoint::{self, EndpointConfig, EndpointCounters, EndpointState},
        sink::Sink,
    },
};

/// Reasons a post-mortem is written, exported at 0 before the first.
pub const POSTMORTEM_REASONS: [&str; 3] = ["fd_exhausted", "killed_holding", "leaked"];

/// Labels of processes, read once from /proc (comm, container id, cgroup path).
#[derive(Default)]
struct ProcNames {
    cache: HashMap<u32, (ProcLabels, String)>,
}

impl ProcNames {
    fn entry(&mut self, pid: u32, comm_hint: &str) -> &(ProcLabels, String) {
        self.cache.entry(pid).or_insert_with(|| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| comm_hint.to_string());
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let labels = ProcLabels {
                comm,
                container: metrics::container_id(&cgroup).unwrap_or_default(),
            };
            (labels, metrics::cgroup_path(&cgroup))
        })
    }

    fn get(&mut self, pid: u32, comm_hint: &str) -> ProcLabels {
        self.entry(pid, comm_hint).0.clone()
    }

    /// Name the owner's container and cgroup in findings and post-mortems (the JSON log
    /// lines); remember those of processes that ran out of fds while they can still be read.
    fn enrich(&mut self, outputs: &mut [Output]) {
        for o in outputs {
            match o {
                Output::Finding(f) | Output::Resolved(f) => {
                    let Some(pid) = f.pid else { continue };
                    let (labels, cgroup) = self.entry(pid, &f.comm);
                    f.container = Some(labels.container.clone()).filter(|c| !c.is_empty());
                    f.cgroup = Some(cgroup.clone()).filter(|c| !c.is_empty());
                }
                Output::FdExhausted(e) => {
                    self.entry(e.pid, &e.comm);
                }
                Output::Postmortem(p) => {
                    let (labels, cgroup) = self.entry(p.pid, &p.comm);
                    if p.comm.is_empty() {
                        p.comm = labels.comm.clone();
                    }
                    p.container = Some(labels.container.clone()).filter(|c| !c.is_empty());
                    p.pod_uid = pod_uid(cgroup);
                    p.cgroup = Some(cgroup.clone()).filter(|c| !c.is_empty());
                }
                _ => {}
            }
        }
    }

    fn retain(&mut self, live: &HashSet<u32>) {
        self.cache.retain(|pid, _| live.contains(pid));
    }
}

/// The agent's hooks on the driver.
struct Agent {
    args: AgentArgs,
    names: ProcNames,
    postmortems: BTreeMap<&'static str, u64>,
    endpoint: Arc<Mutex<EndpointState>>,
    endpoint_errors: Arc<EndpointCounters>,
}

impl Mode for Agent {
    fn fd_pids(&mut self, session: &Session, interval_due: bool) -> Vec<u32> {
        if interval_due {
            busiest(session, self.args.max_processes)
        } else {
            Vec::new()
        }
    }

    fn enrich(&mut self, outputs: &mut [Output]) {
        self.names.enrich(outputs);
        for o in outputs.iter() {
            let Output::Postmortem(p) = o else { continue };
            let reason = POSTMORTEM_REASONS
                .iter()
                .find(|r| p.reason.as_deref() == Some(**r))
                .copied()
                .unwrap_or("other");
            *self.postmortems.entry(reason).or_default() += 1;
            if let Some(dir) = &self.args.postmortem_dir {
                if let Err(e) = write_postmortem(dir, p, self.args.postmortem_keep, self.args.postmortem_max_size) {
                    crate::say!("connlife agent: writing a post-mortem into {}: {e:#}", dir.display());
                }
            }
        }
    }

    fn summary(&self, mut summary: Summary) -> Summary {
        summary.fds.sort_by_key(|f| std::cmp::Reverse(f.open_fds));
        summary.fds.truncate(10);
        summary
    }

    fn on_interval(&mut self, session: &Session, health: &AgentHealth, _now_ns: u64) {
        let live: HashSet<u32> = session.model.conns().filter_map(|c| c.tgid()).collect();
        self.names.retain(&live);
        let mut labels: HashMap<u32, ProcLabels> = HashMap::new();
        for c in session.model.conns() {
            if let Some(o) = c.owner() {
                labels.entry(o.tgid).or_insert_with(|| self.names.get(o.tgid, &o.comm));
            }
        }
        for p in session.fd_pressures() {
            labels.entry(p.pid).or_insert_with(|| self.names.get(p.pid, ""));
        }
        let mut health = health.clone();
        for r in POSTMORTEM_REASONS {
            health
                .postmortems
                .insert(r, self.postmortems.get(r).copied().unwrap_or(0));
        }
        let accept_errors = self
            .endpoint_errors
            .accept_errors
            .load(std::sync::atomic::Ordering::Relaxed);
        health.errors.insert("accept", accept_errors);
        let view = metrics::view(
            session,
            &|pid| labels.get(&pid).cloned().unwrap_or_default(),
            self.args.top_n,
            health,
        );
        let text = metrics::render(&view);
        if let Ok(mut s) = self.endpoint.lock() {
            s.metrics = text;
        }
    }

    fn on_tick(&mut self, now_ns: u64) {
        if let Ok(mut s) = self.endpoint.lock() {
            s.last_tick_ns = now_ns;
        }
    }

    fn stop_when_traced_exit(&self) -> bool {
        false
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding the metrics endpoint {}", args.listen))?;
    let listen = listener.local_addr().unwrap_or(args.listen);
    let state = Arc::new(Mutex::new(EndpointState {
        metrics: String::new(),
        last_tick_ns: monotonic_ns(),
    }));
    let stall_after = Duration::from_nanos((3 * args.interval.as_nanos() as u64).max(3 * NS));
    let endpoint = endpoint::spawn(listener, state.clone(), EndpointConfig::new(stall_after), monotonic_ns)
        .context("starting the metrics endpoint")?;
    crate::say!("connlife agent: metrics on http://{listen}/metrics");
    let own_netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0);
    let mut sink = Sink::new(true, None)?;
    sink.findings_only = true;
    let settings = Settings {
        filter: Filter {
            pids: Vec::new(),
            comms: args.comms.clone(),
            origin: !args.no_origin,
            fold: true,
        },
        thresholds: Thresholds {
            close_wait_after_ns: args.close_wait_after.as_nanos() as u64,
            idle_after_ns: args.idle_after.as_nanos() as u64,
            group_min: 3,
        },
        transitions: false,
        max_conns: args.max_conns,
        closed_records: false,
        interval: args.interval,
        duration: None,
        reconcile_every: args.reconcile_every,
        ignore_local: vec![(own_netns, listen)],
        postmortem_min_conns: Some(args.postmortem_min_conns as u32),
    };
    if let Some(dir) = &args.postmortem_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating --postmortem-dir {}", dir.display()))?;
    }
    let mut agent = Agent {
        args,
        names: ProcNames::default(),
        postmortems: BTreeMap::new(),
        endpoint: state,
        endpoint_errors: endpoint.counters.clone(),
    };
    driver::run(settings, &mut agent, sink).await?;
    crate::say!("connlife agent: stopped");
    Ok(())
}

/// The processes with the most connections (fd pressure is read for these).
fn busiest(session: &Session, max: usize) -> Vec<u32> {
    let mut per: HashMap<u32, usize> = HashMap::new();
    for c in session.model.conns() {
        if let Some(t) = c.tgid() {
            *per.entry(t).or_default() += 1;
        }
    }
    let mut v: Vec<(u32, usize)> = per.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(max).map(|(p, _)| p).collect()
}

/// The Kubernetes pod UID in a cgroup path (`.../pod<uid>/...` with cgroupfs,
/// `...-pod<uid with _>.slice` with systemd), when there is one.
pub fn pod_uid(cgroup: &str) -> Option<String> {
    cgroup.split('/').find_map(|seg| {
        let seg = seg.trim_end_matches(".slice");
        let at = seg.rfind("pod")?;
        let uid = seg[at + 3..].replace('_', "-");
        let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        ok.then_some(uid)
    })
}

/// Write one post-mortem as `postmortem-<unix secs>-<nanoseconds>-<pid>.json` (the JSON line's object,
/// rendered by `connlife report FILE`), then remove the oldest while more than `keep` files or
/// `max_bytes` in all are there.
fn write_postmortem(
    dir: &Path,
    p: &crate::model::session::Postmortem,
    keep: usize,
    max_bytes: u64,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Names sort by time: seconds, then nanoseconds (several may end within one second).
    let path = dir.join(format!(
        "postmortem-{:012}-{:09}-{}.json",
        now.as_secs(),
        now.subsec_nanos(),
        p.pid
    ));
    let line = serde_json::to_string(&Output::Postmortem(p.clone()))? + "\n";
    // Room first, then the file: whoever lists the directory never sees more than `keep`.
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("postmortem-") && name.ends_with(".json")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + line.len() as u64;
    let mut count = files.len() + 1;
    for (old, size) in files {
        if count <= keep.max(1) && total <= max_bytes {
            break;
        }
        let _ = std::fs::remove_file(&old);
        count -= 1;
        total -= size;
    }
    std::fs::write(&path, line).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_uid_from_cgroupfs_and_systemd_paths() {
        assert_eq!(
            pod_uid("/kubepods/burstable/pod6b3c1d2e-1111-2222-3333-444455556666/abcdef").as_deref(),
            Some("6b3c1d2e-1111-2222-3333-444455556666")
        );
        assert_eq!(
            pod_uid("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6b3c1d2e_1111_2222_3333_444455556666.slice/cri-containerd-abc.scope").as_deref(),
            Some("6b3c1d2e-1111-2222-3333-444455556666")
        );
        assert_eq!(pod_uid("/user.slice/user-0.slice/session-1.scope"), None);
    }
}
