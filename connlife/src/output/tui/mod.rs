//! The live full-screen view of `connlife --pid` on a terminal: pure UI state ([`LiveView`]:
//! sort column, selection, expanded groups, state filter, pause, help, recent events) and its
//! rendering into a ratatui [`Frame`] from the [`Session`]. No terminal I/O here (that is
//! `run::terminal`), so the whole view is tested on ratatui's `TestBackend`.
//!
//! What it shows: one header line per traced process (open fds against the limit, a sparkline
//! of the climb, growth per minute and the time to the limit), then the connections grouped by
//! (process, remote endpoint, state, role) with their count, ages, idle time, exchanges per
//! connection, growth, finding and origin (where the user's code opened them), and a pane of
//! recent events (findings raised and resolved, fd exhaustion, losses, ends of processes).
//!
//! Here: the state, keys, layout, footer and help. The parts: `snapshot` (what is shown, from
//! the session), `header`, `table` (columns, sorting, rows) and `events` (the pane).
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
    widgets::{Block, Clear, Paragraph, TableState},
    Frame,
};

use crate::{
    kernel::event::{Role, TcpState},
    model::{
        detect::{FdPressure, FindingKind},
        origins::Origin,
        session::Session,
    },
};

mod events;
mod header;
mod snapshot;
mod table;
#[cfg(test)]
mod tests;

use events::EventLine;
pub use header::spark;
pub use table::Column;

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
    /// Its origin, an index into [`Snapshot::origins`]; `None` while unknown.
    origin: Option<usize>,
    /// Go: the http.Transport that dialed it.
    transport: Option<u64>,
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
    /// The most common origin of its connections (Go: with the Transports that made them),
    /// and how many of them share it.
    origin: Option<(Origin, usize)>,
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
    /// The distinct origins of the connections shown (each resolved once per refresh).
    origins: Vec<Origin>,
    /// Every process traced (`--pid`/`--comm` given), or all processes.
    all_processes: bool,
    by_state: BTreeMap<TcpState, usize>,
    findings: BTreeMap<FindingKind, usize>,
    opened: u64,
    lost: u64,
}

/// Process header lines before "and N more processes".
const PROCS_SHOWN: usize = 6;

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

    fn arrow(&self, descending: bool) -> &'static str {
        match (self.style.unicode, descending) {
            (true, true) => "▼",
            (true, false) => "▲",
            (false, true) => "v",
            (false, false) => "^",
        }
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
            "  ORIGIN          where most of them were opened: the user's own code",
            "                  (empty until known; the selected group's in full below)",
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

/// `from SITE (n of m): T http.Transports made there`, as the plain output says it; `share`
/// (n of m) only when the origin covers part of a group.
fn origin_text(o: &Origin, share: Option<(usize, usize)>) -> String {
    let share = share
        .filter(|(n, m)| n < m)
        .map(|(n, m)| format!(" ({n} of {m})"))
        .unwrap_or_default();
    let transports = match o.transports {
        Some(1) => ": 1 http.Transport made there".to_string(),
        Some(t) => format!(": {t} http.Transports made there"),
        None => String::new(),
    };
    format!("from {}{share}{transports}", o.site)
}

/// The innermost frame of a site (`main.post (main.go:170)` of
/// `main.post (main.go:170) <- main.main (main.go:80)`): what fits a column.
fn site_head(site: &str) -> &str {
    site.split(" <- ").next().unwrap_or(site)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
