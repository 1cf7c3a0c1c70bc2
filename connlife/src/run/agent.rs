//! `connlife agent`: the fleet-wide, long-lived mode. Traces every process (or a --comm
//! selection) with the same model and detectors as the CLI, logs findings as JSON lines on
//! stdout, serves Prometheus /metrics (OpenMetrics) and /healthz, re-snapshots after lost
//! events instead of drifting, and keeps its memory bounded (model cap, per-process state
//! dropped when processes go).
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    signal::unix::{signal, SignalKind},
};

use crate::{
    kernel::loader::{Filter, Tracer},
    model::detect::{Thresholds, NS},
    model::session::{Input, Output, Session},
    output::metrics::{self, AgentHealth, ProcLabels},
    output::parse_duration,
    run::live::{fd_samples_of, feed, monotonic_ns, poll_use, snapshot_into, Sink},
};

#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// Address of the /metrics and /healthz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Process name to trace (repeatable); default every process.
    #[arg(long = "comm")]
    pub comms: Vec<String>,
    /// CLOSE_WAIT for longer than this is a finding.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub close_wait_after: Duration,
    /// ESTABLISHED, idle this long after at most one exchange, is a finding.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_after: Duration,
    /// How often to read fds from /proc, refresh metrics and log a summary.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Label values (process names, remote endpoints) per metric before the rest become "other".
    #[arg(long, default_value_t = 20)]
    pub top_n: usize,
    /// Most connections in the model; past it the least recently active is dropped (counted).
    #[arg(long, default_value_t = 200_000)]
    pub max_conns: usize,
    /// Most processes whose fds are read each interval (those with the most connections).
    #[arg(long, default_value_t = 500)]
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

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

const RESNAPSHOT_EVERY_NS: u64 = 30 * NS;

struct Shared {
    metrics: String,
    last_tick_ns: u64,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    // Handlers first: SIGTERM during start-up still stops gracefully.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let filter = Filter {
        pids: Vec::new(),
        comms: args.comms.clone(),
    };
    let mut tracer = Tracer::load(&filter)?;
    let mut events = tracer.take_events()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {}", args.listen))?;
    let mut sink = Sink::new(true, None)?;
    sink.findings_only = true;
    let th = Thresholds {
        close_wait_after_ns: args.close_wait_after.as_nanos() as u64,
        idle_after_ns: args.idle_after.as_nanos() as u64,
        group_min: 3,
    };
    let mut session = Session::new(th, false, args.max_conns);
    session.closed_records = false;
    let start = monotonic_ns();
    feed(
        &mut session,
        &mut sink,
        Input::Start {
            pids: Vec::new(),
            now_ns: start,
            use_counting: tracer.features.use_counting,
            close_wait_after_ns: th.close_wait_after_ns,
            idle_after_ns: th.idle_after_ns,
        },
    )?;
    let sockets = snapshot_into(&mut tracer, None, start)?;
    let snapshot_ms = (monotonic_ns() - start) / 1_000_000;
    feed(&mut session, &mut sink, Input::Snapshot { now_ns: start, sockets })?;
    eprintln!(
        "connlife agent: {} connections found at start (snapshot {snapshot_ms} ms); metrics on http://{}/metrics",
        session.model.len(),
        args.listen
    );

    let shared = Arc::new(Mutex::new(Shared {
        metrics: String::new(),
        last_tick_ns: start,
    }));
    // The endpoint has a thread of its own, so it answers while the event loop works a flood.
    let (endpoint_shared, interval) = (shared.clone(), args.interval);
    let listener = listener.into_std().context("metrics listener")?;
    std::thread::Builder::new()
        .name("connlife-metrics".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match rt {
                Ok(rt) => rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => serve(l, endpoint_shared, interval).await,
                        Err(e) => eprintln!("connlife agent: metrics endpoint: {e}"),
                    }
                }),
                Err(e) => eprintln!("connlife agent: metrics endpoint runtime: {e}"),
            }
        })?;

    let mut names = ProcNames::default();
    let mut health = AgentHealth {
        attached_programs: tracer.attached.len() as u64,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_interval = 0u64;
    let (mut resnapshot_pending, mut last_resnapshot) = (false, 0u64);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            r = events.next_batch(&mut batch) => {
                r?;
                for item in batch.drain(..) {
                    match item {
                        Ok(event) => apply(&mut session, &mut sink, &mut names, Input::Event { event }),
                        Err(e) => {
                            health.decode_errors += 1;
                            log::warn!("corrupt ring-buffer record: {e}");
                        }
                    }
                }
                sink.flush()?;
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                poll_use(&mut session, &tracer);
                let kernel = tracer.counters().map(|c| c.ringbuf_full).unwrap_or(0);
                if kernel > health.kernel_lost {
                    health.kernel_lost = kernel;
                    resnapshot_pending = true;
                }
                // Lost events: the model may have missed ends. Re-snapshot and reconcile, at
                // most every RESNAPSHOT_EVERY so that a flood is not made worse by snapshots.
                if resnapshot_pending && now.saturating_sub(last_resnapshot) >= RESNAPSHOT_EVERY_NS {
                    resnapshot_pending = false;
                    last_resnapshot = now;
                    health.resnapshots += 1;
                    let seen = snapshot_into(&mut tracer, None, now)?;
                    let dropped = session.model.reconcile(&seen, now);
                    feed(&mut session, &mut sink, Input::Snapshot { now_ns: now, sockets: seen })?;
                    eprintln!("connlife agent: {kernel} events lost so far; re-snapshot dropped {dropped} stale connections");
                }
                feed(&mut session, &mut sink, Input::Lost { now_ns: now, kernel, decode_errors: health.decode_errors })?;
                let interval_due = now - last_interval >= args.interval.as_nanos() as u64;
                let fds = if interval_due { fd_samples_of(&session, &busiest(&session, args.max_processes), now) } else { Vec::new() };
                apply(&mut session, &mut sink, &mut names, Input::Tick { now_ns: now, fds });
                if interval_due {
                    last_interval = now;
                    session.forget_stale_processes(now, 3 * args.interval.as_nanos() as u64);
                    let live: HashSet<u32> = session.model.conns().filter_map(|c| c.tgid()).collect();
                    names.retain(&live);
                    health.rss_bytes = rss_bytes();
                    let mut summary = session.summary(now);
                    summary.fds.sort_by_key(|f| std::cmp::Reverse(f.open_fds));
                    summary.fds.truncate(10);
                    sink.emit(&[Output::Summary(summary)]);
                }
                if interval_due {
                    let mut labels: HashMap<u32, ProcLabels> = HashMap::new();
                    for o in session.model.conns().filter_map(|c| c.owner.as_ref()) {
                        labels.entry(o.tgid).or_insert_with(|| names.get(o.tgid, &o.comm));
                    }
                    for p in session.fd_pressures() {
                        labels.entry(p.pid).or_insert_with(|| names.get(p.pid, ""));
                    }
                    let view = metrics::view(
                        &session,
                        &|pid| labels.get(&pid).cloned().unwrap_or_default(),
                        args.top_n,
                        health.clone(),
                    );
                    shared.lock().expect("metrics lock").metrics = metrics::render(&view);
                }
                sink.flush()?;
                shared.lock().expect("metrics lock").last_tick_ns = now;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Graceful stop: drain, log the last summary; dropping the tracer detaches the programs.
    events.drain(&mut batch);
    for event in batch.drain(..).flatten() {
        feed(&mut session, &mut sink, Input::Event { event })?;
    }
    sink.emit(&[Output::Summary(session.summary(monotonic_ns()))]);
    sink.flush()?;
    eprintln!("connlife agent: stopped");
    Ok(())
}

/// Feed the session and log its outputs, findings named with container and cgroup.
fn apply(session: &mut Session, sink: &mut Sink, names: &mut ProcNames, input: Input) {
    let mut out = session.apply(&input);
    names.enrich(&mut out);
    sink.emit(&out);
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

/// A deliberately small HTTP/1.1 server: GET /metrics and GET /healthz, one request per
/// connection. /healthz is 503 when the event loop has not ticked for 3 intervals.
async fn serve(listener: TcpListener, shared: Arc<Mutex<Shared>>, interval: Duration) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body) = match path {
                "/metrics" => {
                    let s = shared.lock().expect("metrics lock");
                    (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        s.metrics.clone(),
                    )
                }
                "/healthz" => {
                    let age = monotonic_ns().saturating_sub(shared.lock().expect("lock").last_tick_ns);
                    if age < 3 * interval.as_nanos().max(NS as u128) as u64 {
                        ("200 OK", "text/plain", "ok\n".to_string())
                    } else {
                        (
                            "503 Service Unavailable",
                            "text/plain",
                            "event loop stalled\n".to_string(),
                        )
                    }
                }
                _ => ("404 Not Found", "text/plain", "try /metrics or /healthz\n".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}
