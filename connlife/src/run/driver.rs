//! The one driver shared by every mode: it owns the tracer, the session, the sink and the
//! timers, and is the only place where the outside world (the ring buffer, /proc, sock_diag,
//! the clock) becomes session [`Input`]s. Every change to the model enters as an input (kernel
//! events, use-counter refreshes, snapshots, reconciliations, processes found gone), so
//! `--record` holds everything and `connlife report` replays exactly what was printed live.
//!
//! The modes differ only by a few named hooks ([`Mode`]): which processes' fds to read, how
//! outputs are decorated, what happens once per interval (the agent renders its metrics).
use std::{collections::HashSet, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use connlife_common::{Seed, SockInfo};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    kernel::{
        event::{comm_bytes, comm_matches, KernelEvent, Kind, Role, Use},
        go_probes::GoAttach,
        loader::{EventStream, Filter, Tracer},
        snapshot::{self, Ownerless},
        symbolize::{SymbolizeRequest, Symbolized, SymbolizerThread},
        unfold::Unfolder,
    },
    model::{
        detect::{Thresholds, NS},
        session::{Input, Lost, Output, Session, Summary},
        SeenSocket,
    },
    output::metrics::AgentHealth,
    run::{
        procs::{alive, descendants, fd_samples, keep_fds_in_reserve, pids_with_comm, rss_bytes, seen_sockets},
        sink::Sink,
    },
};

/// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Feed one input to the session, recording it first, and print what it produced.
pub fn feed(session: &mut Session, sink: &mut Sink, mode: &mut dyn Mode, input: Input) {
    sink.record(&input);
    let mut out = session.apply(&input);
    mode.enrich(&mut out);
    sink.emit(&out);
}

/// What differs between `connlife --pid` and `connlife agent`.
pub trait Mode {
    /// The processes whose fds are read now (`interval_due`: a summary interval has passed).
    fn fd_pids(&mut self, session: &Session, interval_due: bool) -> Vec<u32>;
    /// Decorate outputs before they are printed (the agent names containers).
    fn enrich(&mut self, _outputs: &mut [Output]) {}
    /// Shape the periodic summary (the agent keeps the busiest processes).
    fn summary(&self, summary: Summary) -> Summary {
        summary
    }
    /// Once per interval, after the summary (the agent renders its metrics).
    fn on_interval(&mut self, _session: &Session, _health: &AgentHealth, _now_ns: u64) {}
    /// Every tick (the agent's heartbeat for /healthz).
    fn on_tick(&mut self, _now_ns: u64) {}
    /// Stop once every named process (and every child that inherited its sockets) ended.
    fn stop_when_traced_exit(&self) -> bool;
}

/// How the driver runs, whatever the mode.
pub struct Settings {
    pub filter: Filter,
    pub thresholds: Thresholds,
    pub transitions: bool,
    pub max_conns: usize,
    /// Build a `closed` output per ended connection (the agent only counts them).
    pub closed_records: bool,
    /// Summary (and agent metrics) interval.
    pub interval: Duration,
    pub duration: Option<Duration>,
    /// Reconcile with the kernel's view this often (and sooner after losses).
    pub reconcile_every: Duration,
    /// connlife's own endpoint: (netns, address), never a connection of the host's.
    pub ignore_local: Vec<(u32, SocketAddr)>,
    /// Agent: post-mortems of any process (see `Input::Start`).
    pub postmortem_min_conns: Option<u32>,
}

/// Entries of known connections read per tick: at 200,000 connections each is read every 10 s,
/// well within the detectors' thresholds (30 s and more); a churn's few live ones every tick.
const POLL_PER_TICK: usize = 20_000;
/// Snapshot sockets given to the kernel per syscall.
const PRESEED_BATCH: usize = 4096;
/// A SOCKS entry the model has not heard of for this long is swept out of a full table.
const SWEEP_AFTER_NS: u64 = 300 * NS;

/// After losses, reconcile at most this often: a flood is not made worse by snapshots.
const RECONCILE_AFTER_LOSS_NS: u64 = 30 * NS;
/// A transient error (fds or memory short, a process gone mid-read) is retried after this
/// long, doubling up to 5 minutes.
const RETRY_NS: u64 = 5 * NS;

/// The running driver's state besides the session.
struct Driver<'a> {
    tracer: Tracer,
    events: EventStream,
    session: Session,
    sink: Sink,
    mode: &'a mut dyn Mode,
    settings: Settings,
    health: AgentHealth,
    decode_errors: u64,
    /// Traced processes that looked gone at the last tick (gone twice in a row: `Gone`).
    suspects: HashSet<u32>,
    last_reconcile_ns: u64,
    reconcile_pending: bool,
    /// Transient-error backoff: no new attempt before this time.
    retry_at_ns: u64,
    retry_wait_ns: u64,
    last_lost: Lost,
    batch: Vec<Result<KernelEvent, crate::kernel::event::DecodeError>>,
    /// The events one record or polled entry unfolds into (kept between uses, like `batch`).
    unfolded: Vec<KernelEvent>,
    /// Processes that just failed with EMFILE/ENFILE: their fds are read at once (the moment
    /// is the post-mortem's centre, and the process may be gone by the next interval).
    exhausted_now: Vec<u32>,
    last_exhausted_reading_ns: u64,
    origins: Origins,
    unfolder: Unfolder,
    /// Ring-buffer records read (each may unfold into several events).
    records: u64,
    /// Where the next tick's poll of the kernel's entries starts (round robin over the model).
    poll_cursor: usize,
}

/// Where connections are opened: birth stacks go to the symbolizer thread once per (pid,
/// stack id), Go binaries get their net/http uprobes once per process.
struct Origins {
    /// `None` with `--no-origin`.
    symbolizer: Option<SymbolizerThread>,
    symbolized: tokio::sync::mpsc::UnboundedReceiver<Symbolized>,
    requested: HashSet<(u32, u32)>,
    go_checked: HashSet<u32>,
}

/// Stacks asked for, remembered at most (then forgotten: a stack asked twice is only
/// symbolized twice).
const STACKS_REQUESTED_MAX: usize = 65_536;

/// Attach, take the kernel's view, and feed the session until a signal, the duration, or the
/// end of every traced process.
pub async fn run(settings: Settings, mode: &mut dyn Mode, sink: Sink) -> anyhow::Result<()> {
    // Handlers first: a Ctrl-C right after the start-up view must give the report.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    keep_fds_in_reserve();
    let mut tracer = Tracer::load(&settings.filter)?;
    let settings_origin = settings.filter.origin;
    let events = tracer.take_events()?;
    let mut session = Session::new(settings.thresholds, settings.transitions, settings.max_conns);
    session.closed_records = settings.closed_records;
    let mut d = Driver {
        health: AgentHealth {
            attached_programs: tracer.attached.len() as u64,
            ..Default::default()
        },
        tracer,
        events,
        session,
        sink,
        mode,
        settings,
        decode_errors: 0,
        suspects: HashSet::new(),
        last_reconcile_ns: 0,
        reconcile_pending: false,
        retry_at_ns: 0,
        retry_wait_ns: RETRY_NS,
        last_lost: Lost::default(),
        batch: Vec::new(),
        unfolded: Vec::new(),
        exhausted_now: Vec::new(),
        last_exhausted_reading_ns: 0,
        unfolder: Unfolder::default(),
        records: 0,
        poll_cursor: 0,
        origins: {
            let (results, symbolized) = tokio::sync::mpsc::unbounded_channel();
            Origins {
                symbolizer: settings_origin.then(|| SymbolizerThread::spawn(results)),
                symbolized,
                requested: HashSet::new(),
                go_checked: HashSet::new(),
            }
        },
    };
    let start = d.start()?;
    if let Some(l) = &mut d.sink.live {
        let _ = l.screen.clear();
    }
    d.sink.draw(&d.session, start);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_summary = start;
    let deadline = d.settings.duration.map(|t| start + t.as_nanos() as u64);
    loop {
        tokio::select! {
            r = d.events.next_batch(&mut d.batch) => {
                r?;
                d.feed_batch();
                d.sink.flush();
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                let interval_due = now - last_summary >= d.settings.interval.as_nanos() as u64;
                d.on_tick(now, interval_due);
                if interval_due {
                    last_summary = now;
                    if d.settings.filter.is_all() {
                        // Every process is traced: forget those not read for 3 intervals.
                        let max_age_ns = 3 * d.settings.interval.as_nanos() as u64;
                        d.feed(Input::Prune { now_ns: now, max_age_ns });
                    }
                    let summary = d.summary(now);
                    d.sink.emit(&[Output::Summary(summary)]);
                    d.health.rss_bytes = rss_bytes();
                    d.mode.on_interval(&d.session, &d.health, now);
                }
                d.mode.on_tick(now);
                d.sink.draw(&d.session, now);
                d.sink.flush();
                if deadline.is_some_and(|t| now >= t) {
                    break;
                }
            }
            key = async {
                match &mut d.sink.live {
                    Some(l) => l.keys.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Some(ev), Some(l)) = (key, &mut d.sink.live) {
                    match ev {
                        crossterm::event::Event::Key(k) => {
                            if l.view.on_key(k) == crate::output::tui::Action::Quit {
                                break;
                            }
                        }
                        _ => { let _ = l.screen.clear(); }
                    }
                }
                d.sink.draw(&d.session, monotonic_ns());
            }
            Some(s) = d.origins.symbolized.recv() => {
                d.feed(Input::Stack { pid: s.pid, stack_id: s.stack_id, frames: s.frames });
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if d.mode.stop_when_traced_exit() && d.session.all_ended() {
            // Every traced process is gone: its post-mortem is out; drain what is left.
            d.drain();
            d.sink.leave_live();
            d.sink.flush();
            return Ok(());
        }
    }
    let now = monotonic_ns();
    d.drain();
    // The report at detach has what the kernel folded since the last poll.
    d.poll_entries(now, usize::MAX);
    d.sink.leave_live();
    let summary = d.summary(now);
    d.sink.emit(&[Output::Summary(summary)]);
    d.feed(Input::End { now_ns: now });
    d.sink.flush();
    Ok(())
}

/// Sockets of the start-up view applied to the model at a time.
const SNAPSHOT_CHUNK: usize = 16_384;

/// Records whose room the batch buffer keeps after a burst (about 1 MiB).
const BATCH_KEPT: usize = 4096;

impl Driver<'_> {
    /// The periodic summary, shaped by the mode, with the records read so far.
    fn summary(&self, now: u64) -> Summary {
        let mut summary = self.mode.summary(self.session.summary(now));
        summary.records = Some(self.records);
        summary
    }

    fn feed(&mut self, input: Input) {
        feed(&mut self.session, &mut self.sink, self.mode, input);
    }

    /// Start: the named processes and what they share sockets with, the kernel's view, the
    /// first reading. Returns the start time.
    fn start(&mut self) -> anyhow::Result<u64> {
        return_large_blocks_when_freed();
        let start = monotonic_ns();
        let th = self.settings.thresholds;
        let filter = self.settings.filter.clone();
        self.feed(Input::Start {
            pids: filter.pids.clone(),
            now_ns: start,
            use_counting: self.tracer.features.use_counting,
            close_wait_after_ns: th.close_wait_after_ns,
            idle_after_ns: th.idle_after_ns,
            ignore_local: self.settings.ignore_local.clone(),
            group_min: th.group_min,
            max_conns: self.settings.max_conns,
            postmortem_min_conns: self.settings.postmortem_min_conns,
        });
        if !self.tracer.features.use_counting {
            crate::say!("connlife: this kernel has no sock_send_length/sock_recv_length tracepoints (6.3+): exchanges are unknown, established_unreused is off");
        }
        for &pid in &filter.pids {
            if !alive(pid) {
                self.feed(Input::Gone {
                    pid,
                    now_ns: start,
                    before_start: true,
                });
            }
        }
        // --comm: the processes running now under those names are traced from their snapshot on.
        for pid in pids_with_comm(&filter.comms) {
            if !self.session.pids().contains(&pid) {
                self.tracer.add_pid(pid)?;
                self.feed(Input::Track { pid, now_ns: start });
            }
        }
        // Children that already inherited a traced process's sockets (pre-fork servers).
        if !filter.is_all() {
            for (pid, parent) in descendants(self.session.pids()) {
                self.tracer.add_pid(pid)?;
                self.feed(Input::Follow {
                    pid,
                    parent,
                    now_ns: start,
                });
            }
        }
        for pid in self.session.traced_pids() {
            self.attach_go(pid);
        }
        let started = monotonic_ns();
        let (seen, _) = self
            .kernel_view(Ownerless::Backlog)
            .context("snapshot of existing sockets (sock_diag)")?;
        // Processes that already hold sockets get Go's uprobes before their next dial.
        let owners: HashSet<u32> = seen.iter().flat_map(|s| s.owners.iter().map(|o| o.tgid)).collect();
        for pid in owners {
            self.attach_go(pid);
        }
        // Events queued while the view was taken go first: the model then merges, instead of
        // counting twice, a connection born meanwhile.
        self.drain();
        let viewed = monotonic_ns();
        // In chunks, the view's memory given back as the model grows, so that the start-up
        // peak is not the whole view and the whole model at once (each socket is matched
        // and added on its own: chunks add up to the whole).
        let mut rest = seen;
        rest.reverse();
        let now_ns = monotonic_ns();
        loop {
            let mut sockets = rest.split_off(rest.len().saturating_sub(SNAPSHOT_CHUNK));
            sockets.reverse();
            rest.shrink_to_fit();
            self.feed(Input::Snapshot {
                started_ns: started,
                now_ns,
                sockets,
            });
            if rest.is_empty() {
                break;
            }
        }
        crate::give_back_freed_memory();
        self.last_reconcile_ns = started;
        let modelled = monotonic_ns();
        let (fds, failed) = fd_samples(&self.session, &self.session.traced_pids(), start);
        self.count_errors("fd_reading", failed);
        self.feed(Input::Tick { now_ns: start, fds });
        let ms = |from: u64, to: u64| to.saturating_sub(from) / 1_000_000;
        log::info!(
            "start-up: attach {} ms, kernel view {} ms, model {} ms, fd reading {} ms",
            ms(start, started),
            ms(started, viewed),
            ms(viewed, modelled),
            ms(modelled, monotonic_ns())
        );
        let summary = self.summary(start);
        self.sink.emit(&[Output::Summary(summary)]);
        self.sink.flush();
        crate::say!(
            "connlife: tracing {} ({} connections already open); Ctrl-C for the report",
            if filter.is_all() {
                "all processes".to_string()
            } else {
                format!("pids {:?} comms {:?}", self.session.traced_pids(), filter.comms)
            },
            self.session.model.len()
        );
        Ok(start)
    }

    fn feed_batch(&mut self) {
        // The batch's and the unfolding's buffers are kept from one batch to the next (a
        // fresh one each time was a large allocation and free per batch), within a bound.
        let mut batch = std::mem::take(&mut self.batch);
        self.records += batch.len() as u64;
        for item in batch.drain(..) {
            match item {
                Ok(event) if event.folded.is_some() => {
                    let mut unfolded = std::mem::take(&mut self.unfolded);
                    self.unfolder.record(event, &mut unfolded);
                    for event in unfolded.drain(..) {
                        self.feed_unfolded(event);
                    }
                    self.unfolded = unfolded;
                }
                Ok(event) => {
                    if event.kind == Kind::FdClose {
                        // A close the kernel sent at once (not the last reference): what was
                        // folded before it (the accept that named this holder) goes first.
                        if let Some(c) = self.session.model.by_sk(event.sk) {
                            let conn = [(event.sk, c.usage)];
                            self.poll(&conn, monotonic_ns(), event.ts_ns);
                        }
                    }
                    self.feed_event(event)
                }
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("corrupt ring-buffer record: {e}");
                }
            }
        }
        batch.shrink_to(BATCH_KEPT);
        self.batch = batch;
        let now = monotonic_ns();
        if !self.exhausted_now.is_empty() && now.saturating_sub(self.last_exhausted_reading_ns) >= NS {
            self.last_exhausted_reading_ns = now;
            let pids = std::mem::take(&mut self.exhausted_now);
            let (fds, failed) = fd_samples(&self.session, &pids, now);
            self.count_errors("fd_reading", failed);
            if !fds.is_empty() {
                self.feed(Input::Tick { now_ns: now, fds });
            }
        }
    }

    /// A step unfolded from a record or a polled entry. An accept only names the owner of a
    /// connection nobody holds yet: once the model has holders for it (an earlier poll gave
    /// the accept, a fork copied it, a close took one away), the accept that the entry keeps
    /// and the last record carries again adds nothing, and must not bring back a holder that
    /// let go.
    fn feed_unfolded(&mut self, event: KernelEvent) {
        let known = || self.session.model.by_sk(event.sk).is_some_and(|c| !c.never_held());
        if event.kind == Kind::Accept && known() {
            return;
        }
        self.feed_event(event);
    }

    /// One kernel event (a record, or a step unfolded from one) into the session, with what it
    /// asks of the driver first: --comm tracking, Go's uprobes, symbolizing its origin.
    fn feed_event(&mut self, event: KernelEvent) {
        // --comm: a matching process becomes one we report on.
        if let Some(pid) = event.tgid.filter(|p| !self.session.pids().contains(p)) {
            if self.settings.filter.comms.iter().any(|c| comm_matches(&event.comm, c)) {
                self.feed(Input::Track {
                    pid,
                    now_ns: event.ts_ns,
                });
            }
        }
        if let (Kind::Exec, Some(pid)) = (event.kind, event.tgid) {
            // A new binary: checked again (a wrapper that execs a Go program).
            self.origins.go_checked.remove(&pid);
            self.attach_go(pid);
        }
        if let (Some(origin), Some(pid)) = (event.origin, event.tgid) {
            self.attach_go(pid);
            for id in [origin.stack, origin.request_stack].into_iter().flatten() {
                self.symbolize(pid, id);
            }
        }
        if matches!(event.kind, Kind::FdFail | Kind::Exit | Kind::Fork) {
            if let Some(pid) = event.tgid {
                // What the process held at that moment, folded changes included: the
                // post-mortem's view, and the sockets a forked child inherits (an accept the
                // kernel folded names the parent only in the entry).
                self.poll_held_by(pid, event.ts_ns);
            }
        }
        if event.kind == Kind::FdFail {
            if let Some(pid) = event.tgid.filter(|p| !self.exhausted_now.contains(p)) {
                self.exhausted_now.push(pid);
            }
        }
        self.feed(Input::Event { event });
    }

    /// A process's Go binary gets the net/http uprobes (once per process; the tracer attaches
    /// once per binary). What happened is said in one line, except for non-Go programs.
    fn attach_go(&mut self, pid: u32) {
        if self.origins.symbolizer.is_none() || !self.origins.go_checked.insert(pid) {
            return;
        }
        if self.origins.go_checked.len() > STACKS_REQUESTED_MAX {
            self.origins.go_checked.clear();
        }
        match self.tracer.attach_go(pid) {
            GoAttach::NotGo | GoAttach::AlreadyAttached | GoAttach::Gone => {}
            other => crate::say!("connlife: pid {pid}: {other}"),
        }
    }

    /// Read a birth stack from the kernel's map and have it symbolized off the event loop.
    fn symbolize(&mut self, pid: u32, stack_id: u32) {
        let Some(symbolizer) = &self.origins.symbolizer else {
            return;
        };
        if self.origins.requested.len() >= STACKS_REQUESTED_MAX {
            self.origins.requested.clear();
        }
        if !self.origins.requested.insert((pid, stack_id)) {
            return;
        }
        if let Some(addrs) = self.tracer.stack(stack_id) {
            symbolizer.request(SymbolizeRequest { pid, stack_id, addrs });
        }
    }

    fn drain(&mut self) {
        self.events.drain(&mut self.batch);
        self.feed_batch();
    }

    fn on_tick(&mut self, now: u64, interval_due: bool) {
        self.poll_entries(now, POLL_PER_TICK);
        self.account_losses(now);
        let periodic = now.saturating_sub(self.last_reconcile_ns) >= self.settings.reconcile_every.as_nanos() as u64;
        let after_loss =
            self.reconcile_pending && now.saturating_sub(self.last_reconcile_ns) >= RECONCILE_AFTER_LOSS_NS;
        if (periodic || after_loss) && now >= self.retry_at_ns {
            self.reconcile();
        }
        self.check_gone(now);
        let pids = self.mode.fd_pids(&self.session, interval_due);
        let (fds, failed) = fd_samples(&self.session, &pids, now);
        self.count_errors("fd_reading", failed);
        self.feed(Input::Tick { now_ns: now, fds });
    }

    /// Errors that need no retry of their own (the next tick reads again): counted only.
    fn count_errors(&mut self, op: &'static str, n: u64) {
        if n > 0 {
            *self.health.errors.entry(op).or_default() += n;
        }
    }

    /// Read the kernel's entries of up to `budget` connections the model knows (round robin
    /// from where the last poll stopped): what the kernel folded since their last record
    /// (CLOSE_WAIT, an accept, the owner's close...) becomes events now, so a detector sees
    /// it within a tick or a few, and use counters that moved become a `UseRefresh`.
    fn poll_entries(&mut self, now: u64, budget: usize) {
        let live: Vec<(u64, Use)> = self
            .session
            .model
            .conns()
            .filter(|c| c.role != Role::Listener)
            .filter_map(|c| Some((c.sk()?, c.usage)))
            .collect();
        if live.is_empty() {
            return;
        }
        let start = self.poll_cursor % live.len();
        let n = budget.min(live.len());
        self.poll_cursor = start + n;
        let picked: Vec<(u64, Use)> = live.iter().cycle().skip(start).take(n).copied().collect();
        drop(live);
        self.poll(&picked, now, u64::MAX);
    }

    /// The entries of the connections `pid` holds, and of the accepted ones nobody is known to
    /// hold yet (the accept folded in the entry may be this process's), with what was folded
    /// up to `until_ns` (an exit, an fd exhaustion, a fork). A process that holds nothing (not
    /// even a listener to accept from) costs one lookup.
    fn poll_held_by(&mut self, pid: u32, until_ns: u64) {
        if !self.session.model.holds_any(pid) {
            return;
        }
        let held: Vec<(u64, Use)> = self
            .session
            .model
            .conns()
            .filter(|c| c.held_by(pid) || (c.never_held() && c.role == Role::Server))
            .filter_map(|c| Some((c.sk()?, c.usage)))
            .collect();
        self.poll(&held, monotonic_ns(), until_ns);
    }

    fn poll(&mut self, conns: &[(u64, Use)], now: u64, until_ns: u64) {
        let mut usage = Vec::new();
        for &(sk, had) in conns {
            let Some(info) = self.tracer.sock_info(sk) else {
                continue;
            };
            let now_use = info.sock_use;
            let changed = now_use.last_send_ns > had.last_send_ns
                || now_use.last_recv_ns > had.last_recv_ns
                || now_use.exchanges > had.exchanges;
            if changed && until_ns == u64::MAX {
                usage.push((sk, now_use));
            }
            let folded = info.folded;
            let conn = self.session.model.by_sk(sk);
            // Nothing folded, or only the accept of a connection the model has holders of.
            let accept_known = folded.accept_ns == 0 || conn.is_some_and(|c| !c.never_held());
            if folded.len == 0 && folded.fd_closed_ns == 0 && accept_known {
                continue;
            }
            let after = conn.map_or(0, |c| c.state_since_ns);
            // The kernel may be rewriting the entry while it is copied: what is folded is taken
            // only when two reads in a row agree (a few tries; else at the next poll or in the
            // record). A fork's poll must not miss the accept its child inherits.
            let Some(info) = self.stable_entry(sk, info) else {
                continue;
            };
            let mut unfolded = std::mem::take(&mut self.unfolded);
            self.unfolder.entry(sk, &info, after, until_ns, &mut unfolded);
            for event in unfolded.drain(..) {
                self.feed_unfolded(event);
            }
            self.unfolded = unfolded;
        }
        if !usage.is_empty() {
            self.feed(Input::UseRefresh { now_ns: now, usage });
        }
    }

    /// `first`, read again until two reads in a row agree on what is folded. When the steps
    /// keep changing, the last read without its steps: the accept and the close are written
    /// once per record, so they are taken (a fork's poll must not miss the accept its child
    /// inherits), the steps wait for the next poll or the record. `None` when the entry is gone.
    fn stable_entry(&self, sk: u64, first: SockInfo) -> Option<SockInfo> {
        let mut last = first;
        for _ in 0..4 {
            let again = self.tracer.sock_info(sk)?;
            if again.folded == last.folded {
                return Some(again);
            }
            last = again;
        }
        last.folded.len = 0;
        Some(last)
    }

    /// Every count of what was lost, into the session; a rise asks for a reconciliation.
    fn account_losses(&mut self, now: u64) {
        let counters = match self.tracer.counters() {
            Ok(c) => c,
            Err(e) => {
                self.error("map_read", &e);
                return;
            }
        };
        let lost = Lost {
            ring_full: counters.ringbuf_full,
            recursion_misses: counters.recursion_misses.unwrap_or(0),
            map_full: counters.socks_full,
            decode_errors: self.decode_errors,
            rescued: counters.rescued,
            stacks_missed: counters.stack_missed,
            stacks_unsymbolized: self.origins.symbolizer.as_ref().map_or(0, |s| s.dropped()),
        };
        if lost.total() > self.last_lost.total() {
            self.reconcile_pending = true;
        }
        if lost.map_full > self.last_lost.map_full {
            self.sweep_socks(now);
        }

        self.last_lost = lost.clone();
        self.feed(Input::Lost {
            now_ns: now,
            losses: lost,
        });
    }

    /// The socket table is full: remove the entries of sockets the model has not heard of for
    /// [`SWEEP_AFTER_NS`] (their end was missed, or the model dropped them at `--max-conns`).
    /// Younger unknown entries are births still folded in the kernel (a connect in SYN_SENT).
    fn sweep_socks(&mut self, now: u64) {
        let model = &self.session.model;
        let stale = |sk: u64, born_ns: u64| model.by_sk(sk).is_none() && born_ns.saturating_add(SWEEP_AFTER_NS) < now;
        match self.tracer.sweep_socks(stale) {
            Ok(n) => log::info!("socket table full: {n} entries of sockets unknown for 5 minutes removed"),
            Err(e) => self.error("map_sweep", &e),
        }
    }

    /// Compare the model with the kernel's view and correct it (counted in the session).
    fn reconcile(&mut self) {
        let started = monotonic_ns();
        self.last_reconcile_ns = started;
        match self.kernel_view(Ownerless::BacklogAndOrphans) {
            Ok((seen, netns)) => {
                self.reconcile_pending = false;
                self.retry_wait_ns = RETRY_NS;
                self.health.reconciles += 1;
                self.drain();
                // Every entry, so the model has what the kernel folded before it is compared
                // with the view (a change folded but not yet read is not a drift).
                self.poll_entries(monotonic_ns(), usize::MAX);
                self.feed(Input::Reconcile {
                    started_ns: started,
                    now_ns: monotonic_ns(),
                    sockets: seen,
                    netns: Some(netns),
                });
                crate::give_back_freed_memory();
            }
            Err(e) => self.error("snapshot", &e),
        }
    }

    /// A transient error: logged (once per kind until it recovers), counted, retried later.
    fn error(&mut self, op: &'static str, e: &anyhow::Error) {
        let n = self.health.errors.entry(op).or_default();
        *n += 1;
        if *n == 1 || self.retry_wait_ns == RETRY_NS {
            crate::say!("connlife: {op} failed, will retry: {e:#}");
        }
        self.retry_at_ns = monotonic_ns() + self.retry_wait_ns;
        self.retry_wait_ns = (self.retry_wait_ns * 2).min(300 * NS);
    }

    /// A traced process seen gone (no /proc entry, or a zombie) at two ticks in a row, with
    /// no exit among the events: its end was missed; say so instead of tracing it for ever.
    fn check_gone(&mut self, now: u64) {
        let pids = self.session.traced_pids();
        let gone: HashSet<u32> = pids.into_iter().filter(|&p| !alive(p)).collect();
        let confirmed: Vec<u32> = gone.intersection(&self.suspects).copied().collect();
        for pid in confirmed {
            self.feed(Input::Gone {
                pid,
                now_ns: now,
                before_start: false,
            });
        }
        self.suspects = gone;
    }

    /// sock_diag in every traced netns joined with /proc fds, as the model wants it; each
    /// socket's owner is given to the kernel side too (by cookie), so its next event names it.
    fn kernel_view(&mut self, ownerless: Ownerless) -> anyhow::Result<(Vec<SeenSocket>, Vec<u32>)> {
        let traced = self.session.traced_pids();
        let pids = (!self.settings.filter.is_all()).then_some(traced.as_slice());
        let t0 = monotonic_ns();
        let snapshot::View { sockets, netns } = snapshot::take(pids, ownerless)?;
        let t1 = monotonic_ns();
        let seen = seen_sockets(sockets, monotonic_ns());
        let t2 = monotonic_ns();
        let _timing = TimedOnDrop(move |t3: u64| {
            log::info!(
                "kernel view: sock_diag and /proc {} ms, joined {} ms, owners into the kernel {} ms",
                (t1 - t0) / 1_000_000,
                (t2 - t1) / 1_000_000,
                t3.saturating_sub(t2) / 1_000_000
            )
        });
        // Owners go into the kernel map in batches (one syscall per PRESEED_BATCH sockets).
        let mut batch: Vec<(u64, Seed)> = Vec::with_capacity(PRESEED_BATCH);
        for (cookie, s) in &seen {
            if batch.len() == PRESEED_BATCH {
                self.tracer.preseed(&batch)?;
                batch.clear();
            }
            let Some(o) = s.owners.last() else { continue };
            if *cookie != 0 {
                let info = Seed {
                    tgid: o.tgid,
                    fd: o.fd.get().unwrap_or(-1),
                    comm: comm_bytes(&o.comm),
                    netns: s.netns,
                    role: match s.role {
                        Role::Unknown => Role::Client,
                        r => r,
                    } as u8,
                    _pad: [0; 3],
                };
                batch.push((*cookie, info));
            }
            if s.role == Role::Listener && pids.is_some() {
                self.tracer.add_listen_port(s.local.port())?;
            }
        }
        self.tracer.preseed(&batch)?;
        Ok((seen.into_iter().map(|(_, s)| s).collect(), netns))
    }
}

/// Runs its closure with the time it is dropped (a phase's end, on every return path).
struct TimedOnDrop<F: FnMut(u64)>(F);

impl<F: FnMut(u64)> Drop for TimedOnDrop<F> {
    fn drop(&mut self) {
        (self.0)(monotonic_ns())
    }
}

/// Blocks of 256 KiB and more (the model's tables as they grow, the kernel's views) are mapped
/// on their own and unmapped when freed. glibc would otherwise raise that threshold to the
/// largest block freed so far and keep every outgrown table's memory in the heap.
fn return_large_blocks_when_freed() {
    // SAFETY: mallopt only sets an allocator parameter.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
