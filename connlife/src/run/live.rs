//! The live run (I/O): attach, snapshot what already exists, then feed the session from the
//! ring buffer and periodic /proc readings, and write its outputs to the terminal or as JSON.
use std::{
    collections::HashSet,
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    path::Path,
    time::Duration,
};

use crate::kernel::loader::comm_bytes;
use anyhow::Context as _;
use connlife_common::{SockInfo, ROLE_CLIENT, ROLE_LISTENER, ROLE_SERVER};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    cli::TraceArgs,
    kernel::event::{Role, TcpState, Use},
    kernel::loader::{Filter, Tracer},
    kernel::snapshot,
    model::detect::{self, FdSample, Thresholds},
    model::session::{Input, Output, Session},
    model::{Owner, SeenSocket},
    output::{self, Style},
};

/// Processes whose comm is one of `comms` (the kernel's 15-character name).
fn pids_with_comm(comms: &[String]) -> Vec<u32> {
    if comms.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comms.iter().any(|c| c.get(..15).unwrap_or(c) == comm.trim_end())
        })
        .collect()
}

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Where outputs go: human text or JSON lines on stdout, and the recording of inputs.
pub struct Sink {
    json: bool,
    /// Agent: only findings, groups, fd exhaustion, losses and summaries (for log shippers).
    pub findings_only: bool,
    style: Style,
    /// Buffered: flushed once per batch of events and per tick, not per line.
    out: BufWriter<std::io::Stdout>,
    record: Option<BufWriter<File>>,
}

impl Sink {
    pub fn new(json: bool, record: Option<&Path>) -> anyhow::Result<Sink> {
        let record = match record {
            Some(p) => Some(BufWriter::new(
                File::create(p).with_context(|| format!("creating record file {}", p.display()))?,
            )),
            None => None,
        };
        let out = std::io::stdout();
        Ok(Sink {
            json,
            findings_only: false,
            style: Style {
                color: !json && out.is_terminal(),
                hinted: Default::default(),
            },
            out: BufWriter::with_capacity(64 << 10, out),
            record,
        })
    }

    pub fn emit(&mut self, outputs: &[Output]) {
        let w = &mut self.out;
        for o in outputs {
            if self.findings_only && matches!(o, Output::Closed(_) | Output::Transition(_) | Output::Postmortem(_)) {
                continue;
            }
            let _ = if self.json {
                output::write_json(w, o)
            } else {
                output::write_human(w, o, &self.style)
            };
        }
    }

    pub(crate) fn record(&mut self, input: &Input) -> anyhow::Result<()> {
        if let Some(w) = &mut self.record {
            serde_json::to_writer(&mut *w, input)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Flushed after every batch and tick, so output is timely and a killed connlife leaves a
    /// readable record.
    pub(crate) fn flush(&mut self) -> anyhow::Result<()> {
        let _ = self.out.flush(); // a closed stdout (pipe reader gone) is not our failure
        if let Some(w) = &mut self.record {
            w.flush().context("writing the record file")?;
        }
        Ok(())
    }
}

/// Feed one input to the session, recording it first, and print what it produced.
pub(crate) fn feed(session: &mut Session, sink: &mut Sink, input: Input) -> anyhow::Result<()> {
    sink.record(&input)?;
    let out = session.apply(&input);
    sink.emit(&out);
    Ok(())
}

/// Sockets from the snapshot, as the model wants them (owner = a wanted process when any),
/// each with its socket cookie (how the kernel side recognises it).
pub fn seen_sockets(sockets: &[snapshot::SnapshotSocket], now_ns: u64) -> Vec<(u64, SeenSocket)> {
    let listening: HashSet<(u32, u16)> = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen as u8)
        .map(|s| (s.netns, s.local.port()))
        .collect();
    sockets
        .iter()
        .filter_map(|s| {
            let state = TcpState::from_kernel(s.state)?;
            // TIME_WAIT sockets are not full sockets: the kernel reports no transition when
            // they expire, so the model would keep them forever.
            if state == TcpState::TimeWait {
                return None;
            }
            let owner = s.owners.first().map(|o| Owner {
                tgid: o.tgid,
                comm: o.comm.clone(),
                fd: Some(o.fd),
            });
            let role = if state == TcpState::Listen {
                Role::Listener
            } else if listening.contains(&(s.netns, s.local.port())) {
                Role::Server
            } else {
                Role::Client
            };
            let ago = |ms: Option<u32>| ms.map(|ms| now_ns.saturating_sub(ms as u64 * 1_000_000)).unwrap_or(0);
            let seen = SeenSocket {
                netns: s.netns,
                local: s.local,
                remote: s.remote,
                state,
                role,
                owner,
                usage: Use {
                    bytes_sent: s.bytes_sent.unwrap_or(0),
                    bytes_received: s.bytes_received.unwrap_or(0),
                    last_send_ns: ago(s.last_send_ago_ms),
                    last_recv_ns: ago(s.last_recv_ago_ms),
                    exchanges: 0,
                },
            };
            Some((s.cookie, seen))
        })
        .collect()
}

/// Snapshot existing sockets, give their owners to the kernel (by cookie) and the model.
pub(crate) fn snapshot_into(tracer: &mut Tracer, pids: Option<&[u32]>, now_ns: u64) -> anyhow::Result<Vec<SeenSocket>> {
    let sockets = snapshot::take(pids).context("snapshot of existing sockets (sock_diag)")?;
    let seen = seen_sockets(&sockets, now_ns);
    for (cookie, s) in &seen {
        let Some(o) = &s.owner else { continue };
        if *cookie != 0 {
            let role = match s.role {
                Role::Listener => ROLE_LISTENER,
                Role::Server => ROLE_SERVER,
                _ => ROLE_CLIENT,
            };
            let info = SockInfo {
                tgid: o.tgid,
                fd: o.fd.unwrap_or(-1),
                comm: comm_bytes(&o.comm),
                netns: s.netns,
                role,
                _pad: [0; 3],
                sock_use: Default::default(),
            };
            tracer.preseed(*cookie, &info)?;
        }
        if s.role == Role::Listener && pids.is_some() {
            tracer.add_listen_port(s.local.port())?;
        }
    }
    Ok(seen.into_iter().map(|(_, s)| s).collect())
}

fn fd_samples(session: &Session, now_ns: u64) -> Vec<FdSample> {
    fd_samples_of(session, session.pids(), now_ns)
}

/// Read /proc for each pid (those gone are skipped) with its TCP connections by state.
pub(crate) fn fd_samples_of(session: &Session, pids: &[u32], now_ns: u64) -> Vec<FdSample> {
    pids.iter()
        .filter(|pid| !session.exited.contains(pid))
        .filter_map(|&pid| {
            let p = snapshot::process_fds(pid).ok()?;
            Some(FdSample {
                ts_ns: now_ns,
                pid,
                open_fds: p.open_fds,
                limit: p.fd_limit,
                tcp_by_state: detect::tcp_by_state(&session.model, Some(pid)),
            })
        })
        .collect()
}

/// Refresh use counters of the connections a detector could flag (idle ESTABLISHED).
pub(crate) fn poll_use(session: &mut Session, tracer: &Tracer) {
    let candidates: Vec<u64> = session
        .model
        .conns()
        .filter(|c| c.state == TcpState::Established && c.fd_closed_ns.is_none() && c.usage.exchanges <= 1)
        .filter_map(|c| c.sk)
        .take(20_000)
        .collect();
    for sk in candidates {
        if let Some(info) = tracer.sock_info(sk) {
            session.model.update_use(sk, info.sock_use.into());
        }
    }
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let filter = Filter {
        pids: args.pids.clone(),
        comms: args.comms.clone(),
    };
    // Handlers first: a Ctrl-C right after the start-up view must give the report, not kill us.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tracer = Tracer::load(&filter)?;
    let mut events = tracer.take_events()?;
    let mut sink = Sink::new(args.json, args.record.as_deref())?;
    let th = Thresholds {
        close_wait_after_ns: args.close_wait_after.as_nanos() as u64,
        idle_after_ns: args.idle_after.as_nanos() as u64,
        group_min: args.group_min,
    };
    let mut session = Session::new(th, args.transitions, args.max_conns);
    let start = monotonic_ns();
    feed(
        &mut session,
        &mut sink,
        Input::Start {
            pids: args.pids.clone(),
            now_ns: start,
            use_counting: tracer.features.use_counting,
            close_wait_after_ns: th.close_wait_after_ns,
            idle_after_ns: th.idle_after_ns,
        },
    )?;
    if !tracer.features.use_counting {
        eprintln!("connlife: this kernel has no sock_send_length/sock_recv_length tracepoints (6.3+): exchanges are unknown, established_unreused is off");
    }
    // --comm: the processes running now under those names are traced from their snapshot on.
    let mut wanted = filter.pids.clone();
    for pid in pids_with_comm(&filter.comms) {
        if !wanted.contains(&pid) {
            tracer.add_pid(pid)?;
            feed(&mut session, &mut sink, Input::Track { pid, now_ns: start })?;
            wanted.push(pid);
        }
    }
    let pids = (!filter.is_all()).then_some(wanted.as_slice());
    let sockets = snapshot_into(&mut tracer, pids, start)?;
    feed(&mut session, &mut sink, Input::Snapshot { now_ns: start, sockets })?;
    let fds = fd_samples(&session, start);
    feed(&mut session, &mut sink, Input::Tick { now_ns: start, fds })?;
    sink.emit(&[Output::Summary(session.summary(start))]);
    sink.flush()?;
    eprintln!(
        "connlife: tracing {} ({} connections already open); Ctrl-C for the report",
        if filter.is_all() {
            "all processes".to_string()
        } else {
            format!("pids {:?} comms {:?}", filter.pids, filter.comms)
        },
        session.model.len()
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_summary = start;
    let deadline = args.duration.map(|d| start + d.as_nanos() as u64);
    let mut batch = Vec::new();
    let mut decode_errors = 0u64;
    loop {
        tokio::select! {
            r = events.next_batch(&mut batch) => {
                r?;
                for item in batch.drain(..) {
                    match item {
                        Ok(event) => {
                            // --comm: a matching process becomes one we report on.
                            if let Some(pid) = event.tgid.filter(|p| !session.pids().contains(p)) {
                                if args.comms.iter().any(|c| c.get(..15).unwrap_or(c) == event.comm) {
                                    feed(&mut session, &mut sink, Input::Track { pid, now_ns: event.ts_ns })?;
                                }
                            }
                            feed(&mut session, &mut sink, Input::Event { event })?
                        }
                        Err(e) => {
                            decode_errors += 1;
                            log::warn!("corrupt ring-buffer record: {e}");
                        }
                    }
                }
                sink.flush()?;
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                poll_use(&mut session, &tracer);
                let fds = fd_samples(&session, now);
                feed(&mut session, &mut sink, Input::Tick { now_ns: now, fds })?;
                let kernel = tracer.counters().map(|c| c.ringbuf_full).unwrap_or(0);
                feed(&mut session, &mut sink, Input::Lost { now_ns: now, kernel, decode_errors })?;
                if now - last_summary >= args.interval.as_nanos() as u64 {
                    last_summary = now;
                    sink.emit(&[Output::Summary(session.summary(now))]);
                }
                sink.flush()?;
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if !args.pids.is_empty() && args.pids.iter().all(|p| session.exited.contains(p)) {
            // Every traced process is gone: its post-mortem is out; drain what is left and stop.
            events.drain(&mut batch);
            for event in batch.drain(..).flatten() {
                feed(&mut session, &mut sink, Input::Event { event })?;
            }
            sink.flush()?;
            return Ok(());
        }
    }
    let now = monotonic_ns();
    events.drain(&mut batch);
    for event in batch.drain(..).flatten() {
        feed(&mut session, &mut sink, Input::Event { event })?;
    }
    sink.emit(&[Output::Summary(session.summary(now))]);
    feed(&mut session, &mut sink, Input::End { now_ns: now })?;
    sink.flush()?;
    Ok(())
}

/// `connlife report FILE`: replay a recording through the same session and print the
/// post-mortems (and the findings on the way).
pub fn report(path: &Path, json: bool) -> anyhow::Result<()> {
    use std::io::BufRead;
    let file = File::open(path).with_context(|| format!("cannot read record file {}", path.display()))?;
    let mut sink = Sink::new(json, None)?;
    let th = Thresholds {
        close_wait_after_ns: 0,
        idle_after_ns: 0,
        group_min: 3,
    };
    let mut session = Session::new(th, false, 0);
    let mut last_ns = 0;
    let mut ended = false;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a connlife record line", path.display(), n + 1))?;
        match &input {
            Input::Tick { now_ns, .. } | Input::Lost { now_ns, .. } | Input::Snapshot { now_ns, .. } => {
                last_ns = *now_ns
            }
            Input::Event { event } => last_ns = last_ns.max(event.ts_ns),
            Input::End { .. } => ended = true,
            Input::Start { .. } | Input::Track { .. } => {}
        }
        let out: Vec<Output> = session
            .apply(&input)
            .into_iter()
            .filter(|o| !matches!(o, Output::Closed(_)))
            .collect();
        sink.emit(&out);
    }
    if session.pids().is_empty() {
        anyhow::bail!("{}: no session start found (not a connlife record?)", path.display());
    }
    // A recording cut short (connlife killed): report the processes still running at the end.
    if !ended {
        let pending: Vec<Output> = session
            .pids()
            .iter()
            .filter(|p| !session.exited.contains(p))
            .map(|&p| Output::Postmortem(session.postmortem(p, last_ns)))
            .collect();
        sink.emit(&pending);
    }
    sink.flush()
}
