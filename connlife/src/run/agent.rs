//! `connlife agent`: the fleet-wide, long-lived mode: the driver with the agent's hooks. Traces
//! every process (or a --comm selection) with the same model and detectors as the CLI, logs
//! findings as JSON lines on stdout (named with container and cgroup), serves Prometheus
//! /metrics and /healthz from [`crate::run::endpoint`], reconciles with the kernel's view, and
//! keeps its memory bounded (model cap, per-process state dropped when processes go).
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;

use crate::{
    cli::{parse_comm, parse_positive_count},
    kernel::loader::Filter,
    model::{
        detect::{Thresholds, NS},
        session::{Output, Session, Summary},
    },
    output::{
        metrics::{self, AgentHealth, ProcLabels},
        parse_positive_duration,
    },
    run::{
        driver::{self, monotonic_ns, Mode, Settings, Sink},
        endpoint::{self, EndpointConfig, EndpointCounters, EndpointState},
    },
};

#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// Address of the /metrics and /healthz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Process name to trace (repeatable); default every process.
    #[arg(long = "comm", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// CLOSE_WAIT for longer than this is a finding.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub close_wait_after: Duration,
    /// ESTABLISHED, idle this long after at most one exchange, is a finding.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration)]
    pub idle_after: Duration,
    /// How often to read fds from /proc, refresh metrics and log a summary.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub interval: Duration,
    /// How often to reconcile the model with the kernel's view (sock_diag and /proc), besides
    /// after lost events.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration)]
    pub reconcile_every: Duration,
    /// Label values (process names, remote endpoints) per metric before the rest become "other".
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count)]
    pub top_n: usize,
    /// Most connections in the model; past it the least recently active is dropped (counted).
    #[arg(long, default_value_t = 200_000, value_parser = parse_positive_count)]
    pub max_conns: usize,
    /// Most processes whose fds are read each interval (those with the most connections).
    #[arg(long, default_value_t = 500, value_parser = parse_positive_count)]
    pub max_processes: usize,
}

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

    /// Name the owner's container and cgroup in findings (the JSON log lines).
    fn enrich(&mut self, outputs: &mut [Output]) {
        for o in outputs {
            if let Output::Finding(f) | Output::Resolved(f) = o {
                let Some(pid) = f.pid else { continue };
                let (labels, cgroup) = self.entry(pid, &f.comm);
                f.container = Some(labels.container.clone()).filter(|c| !c.is_empty());
                f.cgroup = Some(cgroup.clone()).filter(|c| !c.is_empty());
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
    eprintln!("connlife agent: metrics on http://{listen}/metrics");
    let own_netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0);
    let mut sink = Sink::new(true, None)?;
    sink.findings_only = true;
    let settings = Settings {
        filter: Filter {
            pids: Vec::new(),
            comms: args.comms.clone(),
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
    };
    let mut agent = Agent {
        args,
        names: ProcNames::default(),
        endpoint: state,
        endpoint_errors: endpoint.counters.clone(),
    };
    driver::run(settings, &mut agent, sink).await?;
    eprintln!("connlife agent: stopped");
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
