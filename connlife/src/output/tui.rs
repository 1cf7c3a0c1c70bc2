//! The live full-screen view of `connlife --pid` on a terminal: pure UI state ([`LiveView`]:
//! sort column, selection, expanded groups, state filter, pause, help, recent events) and its
//! rendering into a ratatui [`Frame`] from the [`Session`]. No terminal I/O here (that is
//! `run::terminal`), so the whole view is tested on ratatui's `TestBackend`.
//!
//! What it shows: one header line per traced process (open fds against the limit, a sparkline
//! of the climb, growth per minute and the time to the limit), then the connections grouped by
//! (process, remote endpoint, state, role) with their count, ages, idle time, exchanges per
//! connection, growth and finding, and a pane of recent events (findings raised and resolved,
//! fd exhaustion, losses, ends of processes).
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::SocketAddr,
};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::border,
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState},
    Frame,
};

use crate::{
    kernel::event::{Role, TcpState},
    model::{
        detect::{FdPressure, Finding, FindingKind, NS},
        session::{Output, Session},
        ConnId,
    },
    output::text::duration,
};

/// How the terminal can show things: colour (off with `NO_COLOR` or `TERM=dumb`) and
/// non-ASCII symbols (box drawing, sparkline blocks, arrows; off with `TERM=dumb` or a
/// locale that is not UTF-8).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TuiStyle {
    pub color: bool,
    pub unicode: bool,
}

impl TuiStyle {
    /// From this process's environment.
    pub fn from_env() -> TuiStyle {
        let var = |k: &str| std::env::var(k).ok();
        TuiStyle::from_vars(
            var("NO_COLOR").as_deref(),
            var("TERM").as_deref(),
            var("LC_ALL")
                .or_else(|| var("LC_CTYPE"))
                .or_else(|| var("LANG"))
                .as_deref(),
        )
    }

    /// `no_color`: `NO_COLOR` (set and not empty disables colour, as no-color.org says);
    /// `term`: `TERM`; `locale`: the first of `LC_ALL`, `LC_CTYPE`, `LANG` that is set.
    pub fn from_vars(no_color: Option<&str>, term: Option<&str>, locale: Option<&str>) -> TuiStyle {
        let dumb = term.is_none_or(|t| t.is_empty() || t == "dumb");
        let utf8 = locale.is_none_or(|l| {
            let l = l.to_ascii_lowercase();
            l.is_empty() || l.contains("utf-8") || l.contains("utf8")
        });
        TuiStyle {
            color: !dumb && no_color.is_none_or(str::is_empty),
            unicode: !dumb && utf8,
        }
    }
}

/// What the driver does after a key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Leave the view (q, Ctrl-C): the driver restores the terminal and prints the report.
    Quit,
}

/// A column of the groups table, in display order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Pid,
    Remote,
    State,
    Role,
    Count,
    Oldest,
    Newest,
    Idle,
    Exchanges,
    Growth,
    Finding,
    Origin,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Pid,
        Column::Remote,
        Column::State,
        Column::Role,
        Column::Count,
        Column::Oldest,
        Column::Newest,
        Column::Idle,
        Column::Exchanges,
        Column::Growth,
        Column::Finding,
        Column::Origin,
    ];
    /// The order `s` cycles through (the most useful first).
    const SORT_CYCLE: [Column; 11] = [
        Column::Count,
        Column::Growth,
        Column::Oldest,
        Column::Newest,
        Column::Idle,
        Column::Exchanges,
        Column::Remote,
        Column::State,
        Column::Role,
        Column::Pid,
        Column::Finding,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Column::Pid => "PID",
            Column::Remote => "REMOTE",
            Column::State => "STATE",
            Column::Role => "ROLE",
            Column::Count => "COUNT",
            Column::Oldest => "OLDEST",
            Column::Newest => "NEWEST",
            Column::Idle => "IDLE",
            Column::Exchanges => "EXCH/C",
            Column::Growth => "GROW/MIN",
            Column::Finding => "FINDING",
            Column::Origin => "ORIGIN",
        }
    }
    /// Columns (the remote's is its least; it takes what is left).
    fn cols(self) -> u16 {
        match self {
            Column::Pid => 7,
            Column::Remote => 21,
            Column::State => 11,
            Column::Role => 6,
            Column::Count => 6,
            Column::Oldest | Column::Newest | Column::Idle | Column::Growth => 8,
            Column::Exchanges => 6,
            Column::Finding => 20,
            Column::Origin => 8,
        }
    }
    fn width(self) -> Constraint {
        match self {
            Column::Remote => Constraint::Min(self.cols()),
            _ => Constraint::Length(self.cols()),
        }
    }
    /// Left out, in this order, when the table is narrower than every column needs (rather
    /// than squeezing states and findings into unreadable stubs).
    const DROP_ORDER: [Column; 6] = [
        Column::Origin,
        Column::Role,
        Column::Newest,
        Column::Pid,
        Column::Exchanges,
        Column::Growth,
    ];
    /// Which of [`Column::ALL`] fit in `width` (table borders and selection mark included).
    fn shown(width: u16) -> [bool; 12] {
        let mut shown = [true; 12];
        let need = |shown: &[bool; 12]| {
            let cols: Vec<u16> = Column::ALL
                .iter()
                .zip(shown)
                .filter(|(_, &s)| s)
                .map(|(c, _)| c.cols())
                .collect();
            cols.iter().sum::<u16>() + cols.len() as u16 - 1 + 4
        };
        for c in Column::DROP_ORDER {
            if need(&shown) <= width {
                break;
            }
            shown[Column::ALL.iter().position(|&a| a == c).expect("a column")] = false;
        }
        shown
    }
    /// Numbers sort biggest first, names alphabetically.
    fn descending_by_default(self) -> bool {
        matches!(
            self,
            Column::Count
                | Column::Oldest
                | Column::Newest
                | Column::Idle
                | Column::Exchanges
                | Column::Growth
                | Column::Finding
        )
    }
}

/// (process, remote endpoint, state, role): what a row of the table stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    pid: Option<u32>,
    remote: SocketAddr,
    state: TcpState,
    role: Role,
}

#[derive(Clone, Debug)]
struct ConnView {
    fd: Option<i32>,
    local_port: u16,
    age_s: f64,
    age_exact: bool,
    idle_s: f64,
    bytes_sent: u64,
    bytes_received: u64,
    exchanges: Option<u32>,
    finding: Option<FindingKind>,
}

#[derive(Clone, Debug)]
struct GroupView {
    key: GroupKey,
    count: usize,
    oldest_s: f64,
    /// The oldest connection predates connlife: its age is a lower bound.
    oldest_exact: bool,
    newest_s: f64,
    max_idle_s: f64,
    /// Mean exchanges over the connections whose exchanges are counted.
    exchanges_avg: Option<f64>,
    growth_per_min: Option<f64>,
    finding: Option<FindingKind>,
    conns: Vec<ConnView>,
}

#[derive(Clone, Debug)]
struct ProcView {
    pid: u32,
    comm: String,
    ended: bool,
    fds: Option<FdPressure>,
    history: Vec<u32>,
    tcp: BTreeMap<TcpState, usize>,
}

/// What the table and header show: rebuilt each refresh, kept as is while paused.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    at_s: f64,
    procs: Vec<ProcView>,
    groups: Vec<GroupView>,
    /// Every process traced (`--pid`/`--comm` given), or all processes.
    all_processes: bool,
    by_state: BTreeMap<TcpState, usize>,
    findings: BTreeMap<FindingKind, usize>,
    opened: u64,
    lost: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum EventKind {
    Raised,
    Resolved,
    Exhausted,
    Lost,
    Ended,
}

#[derive(Clone, Debug)]
struct EventLine {
    at_ns: u64,
    kind: EventKind,
    text: String,
}

/// Recent events kept for the pane.
const EVENTS_KEPT: usize = 200;
/// Connections listed under an expanded group (the rest are counted).
const CONNS_SHOWN: usize = 200;
/// Process header lines before "and N more processes".
const PROCS_SHOWN: usize = 6;
/// Growth of a group is measured over this window (and shown after `GROWTH_MIN_NS` of it).
const GROWTH_WINDOW_NS: u64 = 60 * NS;
const GROWTH_MIN_NS: u64 = 5 * NS;
/// Columns of the header sparkline.
const SPARK_WIDTH: usize = 30;

/// The live view's state; the driver owns one, feeds it outputs and keys, and renders it once
/// a second and after each key or resize.
pub struct LiveView {
    pub style: TuiStyle,
    sort: Column,
    descending: bool,
    /// Selected group (kept across refreshes by key, not by position).
    selected: Option<GroupKey>,
    selected_index: usize,
    expanded: HashSet<GroupKey>,
    filter: Option<TcpState>,
    paused: bool,
    help: bool,
    events: VecDeque<EventLine>,
    /// First time seen: event times are shown from it.
    start_ns: u64,
    view: Snapshot,
    have_view: bool,
    /// Groups in display order at the last render (for moving the selection).
    order: Vec<GroupKey>,
    /// Count of each group over time, for its growth per minute.
    growth: HashMap<GroupKey, VecDeque<(u64, usize)>>,
    table: TableState,
}

impl LiveView {
    pub fn new(style: TuiStyle) -> LiveView {
        LiveView {
            style,
            sort: Column::Count,
            descending: true,
            selected: None,
            selected_index: 0,
            expanded: HashSet::new(),
            filter: None,
            paused: false,
            help: false,
            events: VecDeque::new(),
            start_ns: 0,
            view: Snapshot::default(),
            have_view: false,
            order: Vec::new(),
            growth: HashMap::new(),
            table: TableState::default(),
        }
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    fn rel(&self, ns: u64) -> String {
        format!("+{}", duration(ns.saturating_sub(self.start_ns) as f64 / 1e9))
    }

    fn push_event(&mut self, at_ns: u64, kind: EventKind, text: String) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(EventLine { at_ns, kind, text });
    }

    /// Feed the session's outputs (as the driver gets them) to the recent-events pane.
    /// Findings of one batch with the same process, kind and remote make one line.
    pub fn on_outputs(&mut self, outputs: &[Output], now_ns: u64) {
        if self.start_ns == 0 {
            self.start_ns = now_ns;
        }
        let mut done: HashSet<usize> = HashSet::new();
        for (i, o) in outputs.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            match o {
                Output::Finding(f) | Output::Resolved(f) => {
                    let raised = matches!(o, Output::Finding(_));
                    let same: Vec<&Finding> = outputs
                        .iter()
                        .enumerate()
                        .skip(i)
                        .filter(|(_, p)| match p {
                            Output::Finding(g) if raised => same_group(f, g),
                            Output::Resolved(g) if !raised => same_group(f, g),
                            _ => false,
                        })
                        .map(|(j, p)| {
                            done.insert(j);
                            match p {
                                Output::Finding(g) | Output::Resolved(g) => g,
                                _ => unreachable!("filtered to findings"),
                            }
                        })
                        .collect();
                    let verb = if raised { "raised  " } else { "resolved" };
                    let who = format!("pid {} ({})", opt(f.pid), f.comm);
                    let text = if same.len() == 1 {
                        format!(
                            "{verb} {} {who} fd {} {} -> {} {}",
                            f.kind.name(),
                            opt(f.fd),
                            f.laddr,
                            f.raddr,
                            f.state.name()
                        )
                    } else {
                        let fds: Vec<String> = same.iter().take(6).map(|g| opt(g.fd)).collect();
                        let more = if same.len() > 6 { ", ..." } else { "" };
                        format!(
                            "{verb} {} x{} {who} -> {} {} (fds {}{more})",
                            f.kind.name(),
                            same.len(),
                            f.raddr,
                            f.state.name(),
                            fds.join(", ")
                        )
                    };
                    let kind = if raised { EventKind::Raised } else { EventKind::Resolved };
                    self.push_event(now_ns, kind, text);
                }
                Output::FdExhausted(e) => {
                    let text = format!(
                        "{} pid {} ({}) from {}() with {} fds open",
                        e.errno,
                        e.pid,
                        e.comm,
                        e.syscall,
                        opt(e.open_fds)
                    );
                    self.push_event(now_ns, EventKind::Exhausted, text);
                }
                Output::Lost(l) => {
                    let text = format!(
                        "lost {} events (ring buffer full {}, skipped by the kernel {}, socket map full {}, undecodable {})",
                        l.total(),
                        l.ring_full,
                        l.recursion_misses,
                        l.map_full,
                        l.decode_errors
                    );
                    self.push_event(now_ns, EventKind::Lost, text);
                }
                Output::Postmortem(p) => {
                    let text = format!("pid {} ({}) {}: {}", p.pid, p.comm, p.ending, p.verdict);
                    self.push_event(now_ns, EventKind::Ended, text);
                }
                Output::Group(_) | Output::Summary(_) | Output::Closed(_) | Output::Transition(_) => {}
            }
        }
    }

    /// A key (or a key release, ignored). `q`, Esc outside help, and Ctrl-C quit.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) {
            return match key.code {
                KeyCode::Char('c') | KeyCode::Char('d') => Action::Quit,
                _ => Action::Continue,
            };
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return if key.code == KeyCode::Char('q') {
                Action::Quit
            } else {
                Action::Continue
            };
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(i64::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(i64::MAX / 2),
            KeyCode::Enter | KeyCode::Char(' ') => {
                if let Some(k) = self.selected.clone() {
                    if !self.expanded.remove(&k) {
                        self.expanded.insert(k);
                    }
                }
            }
            KeyCode::Right | KeyCode::Char('l') => {
                if let Some(k) = self.selected.clone() {
                    self.expanded.insert(k);
                }
            }
            KeyCode::Left => {
                if let Some(k) = &self.selected {
                    self.expanded.remove(k);
                }
            }
            KeyCode::Char('s') => self.cycle_sort(1),
            KeyCode::Char('S') => self.cycle_sort(-1),
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char(c @ '0'..='9') => {
                let i = if c == '0' { 9 } else { c as usize - '1' as usize };
                let col = Column::ALL[i];
                if col != Column::Origin {
                    self.sort_by(col);
                }
            }
            KeyCode::Char('f') => self.cycle_filter(),
            KeyCode::Char('F') => self.filter = None,
            KeyCode::Char('p') => self.paused = !self.paused,
            _ => {}
        }
        Action::Continue
    }

    /// Sort by `col`; the same column again reverses the order.
    pub fn sort_by(&mut self, col: Column) {
        if self.sort == col {
            self.descending = !self.descending;
        } else {
            self.sort = col;
            self.descending = col.descending_by_default();
        }
    }

    fn cycle_sort(&mut self, step: isize) {
        let n = Column::SORT_CYCLE.len() as isize;
        let i = Column::SORT_CYCLE.iter().position(|&c| c == self.sort).unwrap_or(0) as isize;
        self.sort = Column::SORT_CYCLE[(i + step).rem_euclid(n) as usize];
        self.descending = self.sort.descending_by_default();
    }

    /// all -> ESTABLISHED -> CLOSE_WAIT -> every other state present -> all.
    fn cycle_filter(&mut self) {
        let mut states = vec![TcpState::Established, TcpState::CloseWait];
        let mut present: Vec<TcpState> = self.view.groups.iter().map(|g| g.key.state).collect();
        present.sort();
        present.dedup();
        present.retain(|s| !states.contains(s));
        states.extend(present);
        self.filter = match self.filter {
            None => Some(states[0]),
            Some(cur) => states
                .iter()
                .position(|&s| s == cur)
                .and_then(|i| states.get(i + 1).copied()),
        };
        self.selected_index = 0;
        self.selected = None;
    }

    fn move_selection(&mut self, delta: i64) {
        if self.order.is_empty() {
            return;
        }
        let cur = self
            .selected
            .as_ref()
            .and_then(|k| self.order.iter().position(|o| o == k))
            .unwrap_or(self.selected_index) as i64;
        let next = cur.saturating_add(delta).clamp(0, self.order.len() as i64 - 1) as usize;
        self.selected_index = next;
        self.selected = Some(self.order[next].clone());
    }

    /// Draw the whole screen from `session` at `now_ns` (the numbers are kept as they were
    /// while paused).
    pub fn render(&mut self, frame: &mut Frame, session: &Session, now_ns: u64) {
        if self.start_ns == 0 {
            self.start_ns = now_ns;
        }
        if !self.paused || !self.have_view {
            self.view = self.snapshot(session, now_ns);
            self.have_view = true;
        }
        let order = self.ordered_groups();
        self.order = order.iter().map(|&i| self.view.groups[i].key.clone()).collect();
        // Keep the selection on its group; if it went away, on the same position.
        match self
            .selected
            .as_ref()
            .and_then(|k| self.order.iter().position(|o| o == k))
        {
            Some(i) => self.selected_index = i,
            None if !self.order.is_empty() => {
                self.selected_index = self.selected_index.min(self.order.len() - 1);
                self.selected = Some(self.order[self.selected_index].clone());
            }
            None => self.selected = None,
        }

        let area = frame.area();
        let shown_procs = self.view.procs.len().min(PROCS_SHOWN);
        let more_procs = usize::from(self.view.procs.len() > PROCS_SHOWN);
        let header_h = (2 + shown_procs + more_procs) as u16;
        let events_h = (area.height / 5).clamp(4, 10);
        let [header, table, events, footer] = Layout::vertical([
            Constraint::Length(header_h),
            Constraint::Min(4),
            Constraint::Length(events_h),
            Constraint::Length(1),
        ])
        .areas(area);
        self.render_header(frame, header);
        self.render_table(frame, table, &order);
        self.render_events(frame, events);
        self.render_footer(frame, footer);
        if self.help {
            self.render_help(frame, area);
        }
    }

    /// Rebuild what the screen shows from the session.
    fn snapshot(&mut self, session: &Session, now_ns: u64) -> Snapshot {
        let secs = |ns: u64| ns as f64 / 1e9;
        let active: HashMap<ConnId, FindingKind> = session.tracker.active().map(|f| (f.conn, f.kind)).collect();
        let mut groups: HashMap<GroupKey, GroupView> = HashMap::new();
        let mut comms: HashMap<u32, String> = HashMap::new();
        let mut tcp: HashMap<u32, BTreeMap<TcpState, usize>> = HashMap::new();
        let mut by_state = BTreeMap::new();
        for c in session
            .model
            .conns()
            .filter(|c| c.fd_closed_ns.is_none() && c.state != TcpState::Listen && c.role != Role::Listener)
        {
            let pid = c.tgid();
            if let Some(pid) = pid {
                comms.entry(pid).or_insert_with(|| c.comm().to_string());
                *tcp.entry(pid).or_default().entry(c.state).or_default() += 1;
            }
            *by_state.entry(c.state).or_default() += 1;
            let key = GroupKey {
                pid,
                remote: c.remote,
                state: c.state,
                role: c.role,
            };
            let conn = ConnView {
                fd: c.fd(),
                local_port: c.local.port(),
                age_s: secs(now_ns.saturating_sub(c.opened_ns)),
                age_exact: c.age_exact,
                idle_s: secs(now_ns.saturating_sub(c.last_activity_ns())),
                bytes_sent: c.usage.bytes_sent,
                bytes_received: c.usage.bytes_received,
                exchanges: c.exchanges_known.then_some(c.usage.exchanges),
                finding: active.get(&c.id).copied(),
            };
            let g = groups.entry(key.clone()).or_insert_with(|| GroupView {
                key,
                count: 0,
                oldest_s: 0.0,
                oldest_exact: true,
                newest_s: f64::MAX,
                max_idle_s: 0.0,
                exchanges_avg: None,
                growth_per_min: None,
                finding: None,
                conns: Vec::new(),
            });
            g.count += 1;
            if conn.age_s >= g.oldest_s {
                g.oldest_s = conn.age_s;
                g.oldest_exact = conn.age_exact;
            }
            g.newest_s = g.newest_s.min(conn.age_s);
            g.max_idle_s = g.max_idle_s.max(conn.idle_s);
            g.conns.push(conn);
        }
        let mut groups: Vec<GroupView> = groups.into_values().collect();
        for g in &mut groups {
            let known: Vec<u32> = g.conns.iter().filter_map(|c| c.exchanges).collect();
            if !known.is_empty() {
                g.exchanges_avg = Some(known.iter().map(|&e| e as f64).sum::<f64>() / known.len() as f64);
            }
            // The group's finding: the kind most of its connections have.
            let mut kinds: BTreeMap<FindingKind, usize> = BTreeMap::new();
            for k in g.conns.iter().filter_map(|c| c.finding) {
                *kinds.entry(k).or_default() += 1;
            }
            g.finding = kinds.into_iter().max_by_key(|&(_, n)| n).map(|(k, _)| k);
            g.conns.sort_by_key(|c| (c.fd.is_none(), c.fd, c.local_port));
        }
        // Growth over the window, from the counts seen at each refresh.
        let present: HashSet<&GroupKey> = groups.iter().map(|g| &g.key).collect();
        self.growth.retain(|k, _| present.contains(k));
        for g in &mut groups {
            let h = self.growth.entry(g.key.clone()).or_default();
            if h.back().is_none_or(|&(t, _)| t < now_ns) {
                h.push_back((now_ns, g.count));
            }
            while h.len() > 1
                && h.front()
                    .is_some_and(|&(t, _)| now_ns.saturating_sub(t) > GROWTH_WINDOW_NS)
            {
                h.pop_front();
            }
            let (t0, c0) = *h.front().expect("just pushed");
            let span = now_ns.saturating_sub(t0);
            if span >= GROWTH_MIN_NS {
                g.growth_per_min = Some((g.count as f64 - c0 as f64) / (span as f64 / 60e9));
            }
        }
        let mut findings = BTreeMap::new();
        for f in session.tracker.active() {
            *findings.entry(f.kind).or_default() += 1;
        }
        let summary = session.summary(now_ns);
        // Event times count from the session's start, as the summaries' do.
        self.start_ns = now_ns.saturating_sub((summary.at_s * 1e9) as u64);
        let pressures: HashMap<u32, FdPressure> = summary.fds.into_iter().map(|p| (p.pid, p)).collect();
        let mut pids: Vec<u32> = session.pids().iter().chain(&session.traced_pids()).copied().collect();
        pids.sort_unstable();
        pids.dedup();
        let procs = pids
            .into_iter()
            .map(|pid| ProcView {
                pid,
                comm: comms.get(&pid).cloned().unwrap_or_default(),
                ended: session.exited.contains(&pid),
                fds: pressures.get(&pid).cloned(),
                history: session.fd_history(pid).iter().map(|s| s.open_fds).collect(),
                tcp: tcp.remove(&pid).unwrap_or_default(),
            })
            .collect();
        Snapshot {
            at_s: summary.at_s,
            procs,
            groups,
            all_processes: session.pids().is_empty(),
            by_state,
            findings,
            opened: summary.opened,
            lost: summary.lost_events,
        }
    }

    /// Indexes of the shown groups (filtered), in display order.
    fn ordered_groups(&self) -> Vec<usize> {
        let groups = &self.view.groups;
        let mut order: Vec<usize> = (0..groups.len())
            .filter(|&i| self.filter.is_none_or(|s| groups[i].key.state == s))
            .collect();
        let num = |v: Option<f64>| v.unwrap_or(f64::NEG_INFINITY);
        order.sort_by(|&a, &b| {
            let (ga, gb) = (&groups[a], &groups[b]);
            let primary = match self.sort {
                Column::Pid => ga.key.pid.cmp(&gb.key.pid),
                Column::Remote => ga.key.remote.cmp(&gb.key.remote),
                Column::State => ga.key.state.cmp(&gb.key.state),
                Column::Role => role_name(ga.key.role).cmp(role_name(gb.key.role)),
                Column::Count | Column::Origin => ga.count.cmp(&gb.count),
                Column::Oldest => ga.oldest_s.total_cmp(&gb.oldest_s),
                Column::Newest => ga.newest_s.total_cmp(&gb.newest_s),
                Column::Idle => ga.max_idle_s.total_cmp(&gb.max_idle_s),
                Column::Exchanges => num(ga.exchanges_avg).total_cmp(&num(gb.exchanges_avg)),
                Column::Growth => num(ga.growth_per_min).total_cmp(&num(gb.growth_per_min)),
                Column::Finding => ga
                    .finding
                    .is_some()
                    .cmp(&gb.finding.is_some())
                    .then(ga.finding.cmp(&gb.finding)),
            };
            let primary = if self.descending { primary.reverse() } else { primary };
            // Ties: biggest groups first, then a stable key.
            primary.then(gb.count.cmp(&ga.count)).then_with(|| {
                (ga.key.pid, ga.key.remote, ga.key.state, ga.key.role as u8).cmp(&(
                    gb.key.pid,
                    gb.key.remote,
                    gb.key.state,
                    gb.key.role as u8,
                ))
            })
        });
        order
    }

    fn paint(&self, s: Style) -> Style {
        if self.style.color {
            s
        } else {
            // No colour; emphasis (bold, reverse) stays readable on any terminal.
            Style {
                fg: None,
                bg: None,
                ..s
            }
        }
    }

    fn block<'a>(&self, title: String) -> Block<'a> {
        let set = if self.style.unicode {
            border::ROUNDED
        } else {
            border::Set {
                top_left: "+",
                top_right: "+",
                bottom_left: "+",
                bottom_right: "+",
                vertical_left: "|",
                vertical_right: "|",
                horizontal_top: "-",
                horizontal_bottom: "-",
            }
        };
        Block::bordered().border_set(set).title(title)
    }

    fn render_header(&self, frame: &mut Frame, area: Rect) {
        let v = &self.view;
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut title = vec![
            Span::styled("connlife", bold),
            Span::raw(format!("  +{}", duration(v.at_s))),
        ];
        if v.all_processes {
            title.push(Span::raw("  all processes"));
        } else {
            let live = v.procs.iter().filter(|p| !p.ended).count();
            title.push(Span::raw(format!(
                "  {} process{} traced",
                live,
                if live == 1 { "" } else { "es" }
            )));
        }
        title.push(Span::raw(format!(
            "  sort {} {}",
            self.sort.title(),
            self.arrow(self.descending)
        )));
        title.push(Span::raw(format!(
            "  filter {}",
            self.filter.map(|s| s.name()).unwrap_or("all")
        )));
        if self.paused {
            title.push(Span::raw("  "));
            title.push(Span::styled(
                "PAUSED (p resumes)",
                self.paint(
                    Style::new()
                        .fg(Color::Yellow)
                        .add_modifier(Modifier::BOLD | Modifier::REVERSED),
                ),
            ));
        }
        let mut lines = vec![Line::from(title)];
        for p in v.procs.iter().take(PROCS_SHOWN) {
            lines.push(self.proc_line(p));
        }
        if v.procs.len() > PROCS_SHOWN {
            lines.push(Line::raw(format!("and {} more processes", v.procs.len() - PROCS_SHOWN)));
        }
        let conns: usize = v.by_state.values().sum();
        let findings = if v.findings.is_empty() {
            "none".to_string()
        } else {
            v.findings
                .iter()
                .map(|(k, n)| format!("{} {n}", k.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut totals = vec![Span::raw(format!(
            "connections {conns}: {} | opened {} | findings: ",
            states(&v.by_state),
            v.opened
        ))];
        let fstyle = if v.findings.is_empty() {
            Style::new()
        } else {
            self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        };
        totals.push(Span::styled(findings, fstyle));
        let lstyle = if v.lost > 0 {
            self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        } else {
            Style::new()
        };
        totals.push(Span::raw(" | "));
        totals.push(Span::styled(format!("lost {}", v.lost), lstyle));
        lines.push(Line::from(totals));
        frame.render_widget(Paragraph::new(lines), area);
    }

    fn proc_line(&self, p: &ProcView) -> Line<'static> {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let comm = if p.comm.is_empty() { "?" } else { &p.comm };
        let mut spans = vec![Span::styled(format!("pid {} ({comm})", p.pid), bold)];
        if p.ended {
            spans.push(Span::raw("  ended"));
            return Line::from(spans);
        }
        match &p.fds {
            Some(f) => {
                let limit = f.limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into());
                let near = f.limit.is_some_and(|l| f.open_fds as u64 * 10 >= l * 9);
                let fstyle = if near {
                    self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
                } else {
                    Style::new()
                };
                spans.push(Span::raw("  fds "));
                spans.push(Span::styled(format!("{}/{limit}", f.open_fds), fstyle));
                spans.push(Span::raw("  "));
                spans.push(Span::styled(
                    format!(
                        "{:<w$}",
                        spark(&p.history, SPARK_WIDTH, self.style.unicode),
                        w = SPARK_WIDTH
                    ),
                    self.paint(Style::new().fg(Color::Cyan)),
                ));
                spans.push(Span::raw(format!("  {:+.1}/min  ", f.growth_per_min)));
                match f.eta_s {
                    Some(eta) => spans.push(Span::styled(
                        format!("limit in ~{}", duration(eta)),
                        self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
                    )),
                    None if f.growth_per_min < 0.0 => spans.push(Span::raw("shrinking")),
                    None => spans.push(Span::raw("flat")),
                }
            }
            None => spans.push(Span::raw("  fds not read yet")),
        }
        let tcp: usize = p.tcp.values().sum();
        spans.push(Span::raw(format!("  TCP {tcp}: {}", states(&p.tcp))));
        Line::from(spans)
    }

    fn arrow(&self, descending: bool) -> &'static str {
        match (self.style.unicode, descending) {
            (true, true) => "▼",
            (true, false) => "▲",
            (false, true) => "v",
            (false, false) => "^",
        }
    }

    fn render_table(&mut self, frame: &mut Frame, area: Rect, order: &[usize]) {
        let shown = Column::shown(area.width);
        let header = pick(
            Column::ALL
                .iter()
                .map(|&c| {
                    let mut t = c.title().to_string();
                    if c == self.sort {
                        t.push_str(self.arrow(self.descending));
                    }
                    Cell::from(t)
                })
                .collect(),
            &shown,
        )
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let mut rows = Vec::new();
        let mut selected_row = None;
        let total: usize = order.iter().map(|&i| self.view.groups[i].count).sum();
        for (n, &i) in order.iter().enumerate() {
            let g = &self.view.groups[i];
            if n == self.selected_index {
                selected_row = Some(rows.len());
            }
            rows.push(pick(self.group_row(g), &shown));
            if self.expanded.contains(&g.key) {
                for c in g.conns.iter().take(CONNS_SHOWN) {
                    rows.push(pick(self.conn_row(c), &shown).style(Style::new().add_modifier(Modifier::DIM)));
                }
                if g.conns.len() > CONNS_SHOWN {
                    let mut cells = vec![Cell::from(""); 12];
                    cells[1] = Cell::from(format!("  and {} more", g.conns.len() - CONNS_SHOWN));
                    rows.push(pick(cells, &shown));
                }
            }
        }
        let empty = rows.is_empty();
        let title = format!(
            " connection groups: {} groups, {total} connections{} ",
            order.len(),
            self.filter.map(|s| format!(" ({} only)", s.name())).unwrap_or_default()
        );
        let widths: Vec<Constraint> = Column::ALL
            .iter()
            .zip(shown)
            .filter(|(_, s)| *s)
            .map(|(c, _)| c.width())
            .collect();
        let table = Table::new(rows, widths)
            .header(header)
            .block(self.block(title))
            .column_spacing(1)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol(if self.style.unicode { "▶ " } else { "> " });
        self.table.select(selected_row);
        frame.render_stateful_widget(table, area, &mut self.table);
        if empty && area.height > 3 {
            let msg = if self.filter.is_some() {
                "no connection in this state (f: next state filter)"
            } else {
                "no connection yet"
            };
            let inner = Rect {
                x: area.x + 2,
                y: area.y + 2,
                width: area.width.saturating_sub(4),
                height: 1,
            };
            frame.render_widget(Paragraph::new(msg), inner);
        }
    }

    /// The cells of a group's row, one per [`Column::ALL`].
    fn group_row(&self, g: &GroupView) -> Vec<Cell<'static>> {
        let finding = g.finding.map(FindingKind::name).unwrap_or("");
        let fstyle = match g.finding {
            Some(FindingKind::CloseWaitStuck) | Some(FindingKind::Unaccepted) => {
                self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
            }
            Some(FindingKind::EstablishedUnreused) => {
                self.paint(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
            }
            None => Style::new(),
        };
        let ge = if self.style.unicode { "≥" } else { ">=" };
        let mark = if self.expanded.contains(&g.key) {
            if self.style.unicode {
                "▾"
            } else {
                "-"
            }
        } else if self.style.unicode {
            "▸"
        } else {
            "+"
        };
        vec![
            Cell::from(g.key.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
            Cell::from(format!("{mark}{}", g.key.remote)),
            Cell::from(g.key.state.name()),
            Cell::from(role_name(g.key.role)),
            Cell::from(format!("{:>5}", g.count)),
            Cell::from(format!(
                "{}{}",
                if g.oldest_exact { "" } else { ge },
                duration(g.oldest_s)
            )),
            Cell::from(duration(g.newest_s)),
            Cell::from(duration(g.max_idle_s)),
            Cell::from(g.exchanges_avg.map(|e| format!("{e:.1}")).unwrap_or_else(|| "?".into())),
            Cell::from(
                g.growth_per_min
                    .map(|r| format!("{r:+.1}"))
                    .unwrap_or_else(|| "..".into()),
            ),
            Cell::from(finding).style(fstyle),
            Cell::from("-"),
        ]
    }

    /// The cells of a connection's row under its expanded group, one per [`Column::ALL`].
    fn conn_row(&self, c: &ConnView) -> Vec<Cell<'static>> {
        let ge = if self.style.unicode { "≥" } else { ">=" };
        vec![
            Cell::from(""),
            Cell::from(format!(
                "  fd {} :{} sent {} recv {}",
                opt(c.fd),
                c.local_port,
                bytes(c.bytes_sent),
                bytes(c.bytes_received)
            )),
            Cell::from(""),
            Cell::from(""),
            Cell::from(""),
            Cell::from(format!("{}{}", if c.age_exact { "" } else { ge }, duration(c.age_s))),
            Cell::from(""),
            Cell::from(duration(c.idle_s)),
            Cell::from(opt(c.exchanges)),
            Cell::from(""),
            Cell::from(c.finding.map(FindingKind::name).unwrap_or("")),
            Cell::from(""),
        ]
    }

    fn render_events(&self, frame: &mut Frame, area: Rect) {
        let inner = area.height.saturating_sub(2) as usize;
        let lines: Vec<Line> = self
            .events
            .iter()
            .skip(self.events.len().saturating_sub(inner))
            .map(|e| {
                let style = match e.kind {
                    EventKind::Raised | EventKind::Exhausted | EventKind::Lost => {
                        self.paint(Style::new().fg(Color::Red))
                    }
                    EventKind::Resolved => self.paint(Style::new().fg(Color::Green)),
                    EventKind::Ended => Style::new().add_modifier(Modifier::BOLD),
                };
                Line::from(vec![
                    Span::raw(format!("{:>8} ", self.rel(e.at_ns))),
                    Span::styled(e.text.clone(), style),
                ])
            })
            .collect();
        let lines = if lines.is_empty() {
            vec![Line::raw("none yet")]
        } else {
            lines
        };
        frame.render_widget(
            Paragraph::new(lines).block(self.block(" recent events ".to_string())),
            area,
        );
    }

    fn render_footer(&self, frame: &mut Frame, area: Rect) {
        let (updown, lr) = if self.style.unicode {
            ("↑↓/jk", "→←")
        } else {
            ("up/down/jk", "right/left")
        };
        let keys = [
            ("q", "quit"),
            (updown, "move"),
            ("enter", "expand"),
            (lr, "open/close"),
            ("s/1-9", "sort"),
            ("r", "reverse"),
            ("f", "filter state"),
            ("p", if self.paused { "resume" } else { "pause" }),
            ("?", "help"),
        ];
        let key_style = self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD));
        let mut spans = Vec::new();
        for (k, what) in keys {
            spans.push(Span::styled(k, key_style));
            spans.push(Span::raw(format!(" {what}  ")));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn render_help(&self, frame: &mut Frame, area: Rect) {
        let text = [
            "Keys",
            "  q, Ctrl-C       quit: the report prints on the normal screen",
            "  up/down, j/k    move; PgUp/PgDn, g/G (Home/End) jump",
            "  enter, space    expand or collapse the group into its connections",
            "  right/left, l   expand / collapse",
            "  s / S           sort by the next / previous column",
            "  1-9, 0          sort by PID REMOTE STATE ROLE COUNT OLDEST NEWEST IDLE",
            "                  EXCH/C GROW/MIN (again: reverse); r reverses",
            "  f / F           filter by the next state / show every state",
            "  p               pause: the table keeps its numbers; again to resume",
            "  ?, h            this help (any key closes it)",
            "",
            "Columns (a group: one process, one remote endpoint, one state, one role)",
            "  COUNT           connections in the group",
            "  OLDEST/NEWEST   their ages (>= when it predates connlife)",
            "  IDLE            the longest time one has been idle",
            "  EXCH/C          request/response exchanges per connection (? unknown)",
            "  GROW/MIN        change of COUNT per minute over the last minute",
            "  FINDING         close_wait_stuck, established_unreused, unaccepted",
            "  ORIGIN          where the connections were made (not known yet: -)",
            "",
            "Header: open fds / limit, their climb, growth per minute, time to the limit.",
        ];
        let w = (text.iter().map(|l| l.len()).max().unwrap_or(0) as u16 + 4).min(area.width);
        let h = (text.len() as u16 + 2).min(area.height);
        let popup = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(text.iter().map(|&l| Line::raw(l)).collect::<Vec<_>>())
                .block(self.block(" help ".to_string())),
            popup,
        );
    }
}

/// The row of the shown columns' cells.
fn pick(cells: Vec<Cell<'static>>, shown: &[bool; 12]) -> Row<'static> {
    Row::new(cells.into_iter().zip(shown).filter(|(_, &s)| s).map(|(c, _)| c))
}

fn same_group(a: &Finding, b: &Finding) -> bool {
    a.pid == b.pid && a.kind == b.kind && a.raddr == b.raddr
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Client => "client",
        Role::Server => "server",
        Role::Listener => "listen",
        Role::Unknown => "?",
    }
}

fn states(m: &BTreeMap<TcpState, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{} {v}", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// 1234 -> "1.2K", 3_000_000 -> "2.9M".
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}K", n as f64 / 1024.0),
        _ => format!("{:.1}M", n as f64 / 1_048_576.0),
    }
}

/// The climb of `values` in `width` columns (each the max of its span), scaled from 0 to the
/// max; ASCII levels when the terminal has no Unicode.
pub fn spark(values: &[u32], width: usize, unicode: bool) -> String {
    const ASCII: [char; 8] = ['_', '.', ',', '-', '=', '+', '*', '#'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let max = (*values.iter().max().unwrap_or(&0)).max(1);
    if unicode {
        return crate::output::text::sparkline(values, max, width);
    }
    let step = values.len().div_ceil(width).max(1);
    values
        .chunks(step)
        .map(|c| {
            let v = *c.iter().max().unwrap_or(&0) as usize;
            ASCII[(v * 7 / max as usize).min(7)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::event::{KernelEvent, Kind, Use},
        model::{
            detect::{FdSample, Thresholds},
            session::Input,
        },
    };
    use ratatui::{backend::TestBackend, Terminal};

    const PID: u32 = 4242;
    const KEEP: &str = "127.0.0.1:8080";
    const CLOSING: &str = "127.0.0.1:9090";

    fn ev(ts: u64, sk: u64, old: TcpState, new: TcpState, remote: &str, exchanges: u32) -> Input {
        Input::Event {
            event: KernelEvent {
                kind: Kind::State,
                ts_ns: ts,
                sk,
                tgid: Some(PID),
                fd: Some(sk as i32),
                comm: "leaky".into(),
                netns: 1,
                role: Role::Client,
                old_state: Some(old),
                new_state: Some(new),
                local: Some(format!("127.0.0.1:{}", 40000 + sk).parse().unwrap()),
                remote: Some(remote.parse().unwrap()),
                sock_use: Use {
                    exchanges,
                    bytes_sent: 50,
                    bytes_received: 120,
                    last_send_ns: ts,
                    last_recv_ns: ts,
                    ..Default::default()
                },
                ret: 0,
                syscall: None,
                child: None,
            },
        }
    }

    fn tick(s: &mut Session, now: u64, open_fds: u32) -> Vec<Output> {
        s.apply(&Input::Tick {
            now_ns: now,
            fds: vec![FdSample {
                ts_ns: now,
                pid: PID,
                open_fds,
                limit: Some(1024),
                tcp_by_state: Default::default(),
            }],
        })
    }

    /// The demo's shape: connections to a keep-alive server (one exchange, then idle) and to a
    /// closing server (left in CLOSE_WAIT), one more each second. Returns the outputs.
    struct Demo {
        session: Session,
        next_sk: u64,
        outputs: Vec<Output>,
    }

    impl Demo {
        fn new() -> Demo {
            let mut session = Session::new(
                Thresholds {
                    close_wait_after_ns: 2 * NS,
                    idle_after_ns: 2 * NS,
                    group_min: 3,
                },
                false,
                0,
            );
            // From JSON, as `--record` has it: fields added later take their defaults.
            let start: Input = serde_json::from_value(serde_json::json!({
                "input": "start",
                "pids": [PID],
                "now_ns": NS,
                "use_counting": true,
                "close_wait_after_ns": 2 * NS,
                "idle_after_ns": 2 * NS,
            }))
            .unwrap();
            session.apply(&start);
            Demo {
                session,
                next_sk: 10,
                outputs: Vec::new(),
            }
        }
        fn connect(&mut self, ts: u64, remote: &str, close_wait: bool) {
            let sk = self.next_sk;
            self.next_sk += 1;
            let s = &mut self.session;
            s.apply(&ev(ts, sk, TcpState::Close, TcpState::SynSent, remote, 0));
            s.apply(&ev(ts, sk, TcpState::SynSent, TcpState::Established, remote, 1));
            if close_wait {
                s.apply(&ev(ts, sk, TcpState::Established, TcpState::CloseWait, remote, 1));
            }
        }
        /// Seconds 1..=secs: each second two keep-alive connections and every other second one
        /// CLOSE_WAIT; a tick each second.
        fn run(&mut self, from: u64, to: u64) {
            for sec in from..=to {
                let ts = sec * NS;
                self.connect(ts, KEEP, false);
                self.connect(ts + NS / 2, KEEP, false);
                if sec % 2 == 0 {
                    self.connect(ts + NS / 4, CLOSING, true);
                }
                let fds = 3 + self.session.model.len() as u32;
                let out = tick(&mut self.session, ts + NS - 1, fds);
                self.outputs.extend(out);
            }
        }
    }

    fn draw(view: &mut LiveView, s: &Session, now: u64, w: u16, h: u16) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| view.render(f, s, now)).unwrap();
        let buf = t.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>())
            .collect()
    }

    fn line_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
        screen
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", screen.join("\n")))
    }

    fn row_index(screen: &[String], needle: &str) -> usize {
        screen
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", screen.join("\n")))
    }

    /// The COUNT cell of the group line to `remote` in `state`.
    fn count_of(screen: &[String], remote: &str, state: &str) -> usize {
        let line = screen
            .iter()
            .find(|l| l.contains(remote) && l.contains(state) && !l.contains("fd "))
            .unwrap_or_else(|| panic!("no group {remote} {state}:\n{}", screen.join("\n")));
        let after = &line[line.find(state).unwrap() + state.len()..];
        let mut words = after.split_whitespace();
        let _role = words.next();
        words.next().unwrap().parse().unwrap()
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::from(KeyCode::Char(c))
    }

    const UNICODE: TuiStyle = TuiStyle {
        color: true,
        unicode: true,
    };

    #[test]
    fn header_groups_counts_and_findings() {
        let mut d = Demo::new();
        d.run(1, 10);
        let mut v = LiveView::new(UNICODE);
        v.on_outputs(&d.outputs, 11 * NS);
        let screen = draw(&mut v, &d.session, 11 * NS, 160, 48);
        let proc_line = line_with(&screen, "pid 4242 (leaky)");
        // 20 keep-alive + 5 CLOSE_WAIT connections, 3 other fds.
        assert!(proc_line.contains("fds 28/1024"), "{proc_line}");
        assert!(proc_line.contains("limit in ~"), "{proc_line}");
        assert!(
            proc_line.chars().any(|c| ('▁'..='█').contains(&c)),
            "sparkline: {proc_line}"
        );
        assert_eq!(count_of(&screen, KEEP, "ESTABLISHED"), 20);
        assert_eq!(count_of(&screen, CLOSING, "CLOSE_WAIT"), 5);
        assert!(line_with(&screen, CLOSING).contains("close_wait_stuck"));
        assert!(line_with(&screen, KEEP).contains("established_unreused"));
        assert!(line_with(&screen, "connection groups").contains("2 groups, 25 connections"));
        // The pane: one line per batch and group, not per connection.
        let events = line_with(&screen, "raised   close_wait_stuck");
        assert!(events.contains("-> 127.0.0.1:9090"), "{events}");
        // Sorted by count, biggest first.
        assert!(row_index(&screen, KEEP) < row_index(&screen, CLOSING));
        assert!(line_with(&screen, "q quit").contains("? help"));
    }

    #[test]
    fn growth_per_minute_from_counts_over_time() {
        let mut d = Demo::new();
        d.run(1, 3);
        let mut v = LiveView::new(UNICODE);
        let first = draw(&mut v, &d.session, 4 * NS, 160, 48);
        assert!(line_with(&first, KEEP).contains(".."), "no growth yet");
        d.run(4, 13);
        let later = draw(&mut v, &d.session, 14 * NS, 160, 48);
        // 6 -> 26 connections in 10 s: +120/min.
        assert!(line_with(&later, KEEP).contains("+120.0"), "{}", later.join("\n"));
    }

    #[test]
    fn sorting_changes_the_order() {
        let mut d = Demo::new();
        d.run(1, 6);
        let mut v = LiveView::new(UNICODE);
        let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
        assert!(row_index(&s, KEEP) < row_index(&s, CLOSING));
        // Column 3 is STATE: ascending, CLOSE_WAIT (8) after ESTABLISHED (1).
        v.on_key(key('3'));
        let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
        assert!(s.iter().any(|l| l.contains(" STATE▲")), "{}", s.join("\n"));
        assert!(row_index(&s, KEEP) < row_index(&s, CLOSING));
        v.on_key(key('3'));
        let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
        assert!(
            row_index(&s, CLOSING) < row_index(&s, KEEP),
            "reversed:\n{}",
            s.join("\n")
        );
        // Back to COUNT (biggest first), then `r` reverses.
        v.on_key(key('5'));
        v.on_key(key('r'));
        let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
        assert!(line_with(&s, "sort COUNT").contains("COUNT ▲"));
        assert!(row_index(&s, CLOSING) < row_index(&s, KEEP), "fewest first");
    }

    #[test]
    fn expanding_a_group_lists_its_connections() {
        let mut d = Demo::new();
        d.run(1, 4);
        let mut v = LiveView::new(UNICODE);
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert!(!s.iter().any(|l| l.contains("fd 10 ")));
        // The first row (keep-alive, 8 connections) is selected: expand it.
        v.on_key(KeyEvent::from(KeyCode::Enter));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        let conn = line_with(&s, "fd 10 ");
        assert!(conn.contains(":40010") && conn.contains("sent 50B recv 120B"), "{conn}");
        let fds = s.iter().filter(|l| l.contains("  fd ")).count();
        assert_eq!(fds, 8, "{}", s.join("\n"));
        // Down to the CLOSE_WAIT group, expand it too; collapse with Enter again.
        v.on_key(key('j'));
        v.on_key(key(' '));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert_eq!(s.iter().filter(|l| l.contains("  fd ")).count(), 10);
        v.on_key(key('k'));
        v.on_key(KeyEvent::from(KeyCode::Enter));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert_eq!(s.iter().filter(|l| l.contains("  fd ")).count(), 2);
    }

    #[test]
    fn filter_hides_other_states() {
        let mut d = Demo::new();
        d.run(1, 4);
        let mut v = LiveView::new(UNICODE);
        draw(&mut v, &d.session, 5 * NS, 160, 48);
        v.on_key(key('f'));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert!(s.iter().any(|l| l.contains(KEEP)));
        assert!(!s.iter().any(|l| l.contains(CLOSING)), "{}", s.join("\n"));
        assert!(line_with(&s, "connection groups").contains("(ESTABLISHED only)"));
        v.on_key(key('f'));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert!(!s.iter().any(|l| l.contains(KEEP)));
        assert!(s.iter().any(|l| l.contains(CLOSING)));
        v.on_key(key('f'));
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert!(s.iter().any(|l| l.contains(KEEP)) && s.iter().any(|l| l.contains(CLOSING)));
    }

    #[test]
    fn paused_keeps_the_old_numbers() {
        let mut d = Demo::new();
        d.run(1, 4);
        let mut v = LiveView::new(UNICODE);
        let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
        assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 8);
        v.on_key(key('p'));
        d.run(5, 8);
        let s = draw(&mut v, &d.session, 9 * NS, 160, 48);
        assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 8, "frozen");
        assert!(line_with(&s, "connlife").contains("PAUSED"));
        v.on_key(key('p'));
        let s = draw(&mut v, &d.session, 9 * NS, 160, 48);
        assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 16);
    }

    #[test]
    fn quit_help_and_ctrl_c() {
        let mut v = LiveView::new(UNICODE);
        let d = Demo::new();
        assert_eq!(v.on_key(key('?')), Action::Continue);
        let s = draw(&mut v, &d.session, 2 * NS, 120, 40);
        assert!(s.iter().any(|l| l.contains("this help")), "{}", s.join("\n"));
        assert_eq!(v.on_key(key('x')), Action::Continue, "any key closes the help");
        let s = draw(&mut v, &d.session, 2 * NS, 120, 40);
        assert!(!s.iter().any(|l| l.contains("this help")));
        assert!(s.iter().any(|l| l.contains("no connection yet")));
        assert_eq!(v.on_key(key('q')), Action::Quit);
        assert_eq!(
            v.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
    }

    #[test]
    fn dumb_terminal_gets_ascii_only() {
        let style = TuiStyle::from_vars(None, Some("dumb"), Some("C.UTF-8"));
        assert_eq!(
            style,
            TuiStyle {
                color: false,
                unicode: false
            }
        );
        assert!(!TuiStyle::from_vars(Some("1"), Some("xterm-256color"), None).color);
        assert!(TuiStyle::from_vars(Some(""), Some("xterm-256color"), None).color);
        assert!(!TuiStyle::from_vars(None, Some("xterm"), Some("C")).unicode);
        assert!(TuiStyle::from_vars(None, Some("xterm"), Some("en_US.UTF-8")).unicode);
        let mut d = Demo::new();
        d.run(1, 6);
        let mut v = LiveView::new(style);
        v.on_outputs(&d.outputs, 7 * NS);
        v.on_key(KeyEvent::from(KeyCode::Enter));
        let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
        for l in &s {
            assert!(l.is_ascii(), "non-ASCII on a dumb terminal: {l:?}");
        }
        assert!(line_with(&s, "pid 4242").contains("fds "));
        assert!(line_with(&s, "connection groups").starts_with("+ connection groups"));
    }

    #[test]
    fn several_processes_first_then_groups() {
        let mut d = Demo::new();
        d.session.apply(&Input::Track { pid: 7, now_ns: NS });
        d.run(1, 3);
        let mut v = LiveView::new(UNICODE);
        let s = draw(&mut v, &d.session, 4 * NS, 160, 48);
        let p7 = row_index(&s, "pid 7 (?)");
        let p4242 = row_index(&s, "pid 4242 (leaky)");
        assert!(p7 < p4242 && p4242 < row_index(&s, "connection groups"));
        assert!(line_with(&s, "pid 7 (?)").contains("fds not read yet"));
        assert!(line_with(&s, "connlife").contains("2 processes traced"));
    }

    #[test]
    fn events_pane_shows_exhaustion_losses_and_ends() {
        let mut v = LiveView::new(UNICODE);
        let d = Demo::new();
        v.on_outputs(&[], NS);
        v.on_outputs(
            &[Output::Lost(crate::model::session::Lost {
                ring_full: 3,
                ..Default::default()
            })],
            2 * NS,
        );
        v.on_outputs(&[Output::Postmortem(d.session.postmortem(PID, 3 * NS))], 3 * NS);
        let s = draw(&mut v, &d.session, 3 * NS, 160, 48);
        assert!(line_with(&s, "lost 3 events").contains("+1s"), "{}", s.join("\n"));
        assert!(line_with(&s, "pid 4242 ()").contains("still running"));
    }

    #[test]
    fn a_narrow_window_leaves_columns_out_instead_of_cutting_words() {
        let mut d = Demo::new();
        d.run(1, 6);
        let mut v = LiveView::new(UNICODE);
        let s = draw(&mut v, &d.session, 7 * NS, 100, 30);
        let row = line_with(&s, KEEP);
        assert!(
            row.contains("ESTABLISHED") && row.contains("established_unreused"),
            "{row}"
        );
        assert!(!line_with(&s, "REMOTE").contains("ORIGIN"));
        let s = draw(&mut v, &d.session, 7 * NS, 160, 30);
        assert!(line_with(&s, "REMOTE").contains("ORIGIN") && line_with(&s, "REMOTE").contains("ROLE"));
        let s = draw(&mut v, &d.session, 7 * NS, 60, 30);
        assert!(line_with(&s, KEEP).contains("ESTAB"));
    }

    #[test]
    fn a_small_window_still_renders() {
        let mut d = Demo::new();
        d.run(1, 4);
        let mut v = LiveView::new(UNICODE);
        for (w, h) in [(80, 24), (40, 10), (10, 3), (1, 1)] {
            draw(&mut v, &d.session, 5 * NS, w, h);
        }
        v.on_key(key('?'));
        draw(&mut v, &d.session, 5 * NS, 20, 5);
    }
}
