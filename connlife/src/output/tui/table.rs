//! The groups table: its columns (what each shows, how wide, which to leave out when the
//! window is narrow), the sort order, and the rows of groups and of the connections under an
//! expanded group. The ORIGIN column names where each group was opened (its innermost user
//! frame); the selected group's whole origin, with the http.Transports made there for Go, is
//! written on the table's bottom border, where there is room for it at any width.
use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row, Table},
    Frame,
};

use super::{opt, origin_text, site_head, ConnView, GroupView, LiveView};
use crate::{kernel::event::Role, model::detect::FindingKind, output::text::duration};

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
            // `main.post (main.go:170)`; longer names are cut (the border shows them whole).
            Column::Origin => 24,
        }
    }
    fn width(self) -> Constraint {
        match self {
            Column::Remote => Constraint::Min(self.cols()),
            _ => Constraint::Length(self.cols()),
        }
    }
    /// Left out, in this order, when the table is narrower than every column needs (rather
    /// than squeezing states and findings into unreadable stubs). Where the connections were
    /// opened says more than their role or the newest's age.
    const DROP_ORDER: [Column; 6] = [
        Column::Role,
        Column::Newest,
        Column::Origin,
        Column::Pid,
        Column::Exchanges,
        Column::Growth,
    ];
    /// Which of [`Column::ALL`] fit in `width` (table borders and selection mark included);
    /// ORIGIN only when some group has one (an empty column would say nothing).
    fn shown(width: u16, origins: bool) -> [bool; 12] {
        let mut shown = [true; 12];
        shown[Column::ALL.len() - 1] = origins; // ORIGIN is the last
        for c in Column::DROP_ORDER {
            if Column::need(&shown) <= width {
                break;
            }
            shown[Column::ALL.iter().position(|&a| a == c).expect("a column")] = false;
        }
        shown
    }
    /// The width the `shown` columns need at their least.
    fn need(shown: &[bool; 12]) -> u16 {
        let cols: Vec<u16> = Column::ALL
            .iter()
            .zip(shown)
            .filter(|(_, &s)| s)
            .map(|(c, _)| c.cols())
            .collect();
        cols.iter().sum::<u16>() + cols.len() as u16 - 1 + 4
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

/// Connections listed under an expanded group (the rest are counted).
const CONNS_SHOWN: usize = 200;

impl LiveView {
    /// Sort by `col`; the same column again reverses the order.
    pub fn sort_by(&mut self, col: Column) {
        if self.sort == col {
            self.descending = !self.descending;
        } else {
            self.sort = col;
            self.descending = col.descending_by_default();
        }
    }

    pub(super) fn cycle_sort(&mut self, step: isize) {
        let n = Column::SORT_CYCLE.len() as isize;
        let i = Column::SORT_CYCLE.iter().position(|&c| c == self.sort).unwrap_or(0) as isize;
        self.sort = Column::SORT_CYCLE[(i + step).rem_euclid(n) as usize];
        self.descending = self.sort.descending_by_default();
    }

    /// Indexes of the shown groups (filtered), in display order.
    pub(super) fn ordered_groups(&self) -> Vec<usize> {
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

    pub(super) fn render_table(&mut self, frame: &mut Frame, area: Rect, order: &[usize]) {
        let origins = order.iter().any(|&i| self.view.groups[i].origin.is_some());
        let shown = Column::shown(area.width, origins);
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
        // ORIGIN takes the spare width its longest name needs before REMOTE takes the rest.
        let longest = self
            .view
            .origins
            .iter()
            .map(|o| site_head(&o.site).chars().count())
            .max();
        let spare = area.width.saturating_sub(Column::need(&shown));
        let origin_w = Column::Origin.cols()
            + (longest.unwrap_or(0) as u16)
                .saturating_sub(Column::Origin.cols())
                .min(spare);
        let widths: Vec<Constraint> = Column::ALL
            .iter()
            .zip(shown)
            .filter(|(_, s)| *s)
            .map(|(&c, _)| match c {
                Column::Origin => Constraint::Length(origin_w),
                c => c.width(),
            })
            .collect();
        let mut block = self.block(title);
        let selected = order.get(self.selected_index).map(|&i| &self.view.groups[i]);
        if let Some((g, (o, n))) = selected.and_then(|g| Some((g, g.origin.as_ref()?))) {
            let mark = if self.style.unicode { "▶" } else { ">" };
            let text = origin_text(o, Some((*n, g.count)));
            block = block.title_bottom(Line::raw(format!(" {mark} {text} ")));
        }
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
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
            Cell::from(
                g.origin
                    .as_ref()
                    .map(|(o, _)| site_head(&o.site).to_string())
                    .unwrap_or_default(),
            ),
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
            Cell::from(
                c.origin
                    .map(|i| site_head(&self.view.origins[i].site).to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// The row of the shown columns' cells.
fn pick(cells: Vec<Cell<'static>>, shown: &[bool; 12]) -> Row<'static> {
    Row::new(cells.into_iter().zip(shown).filter(|(_, &s)| s).map(|(c, _)| c))
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Client => "client",
        Role::Server => "server",
        Role::Listener => "listen",
        Role::Unknown => "?",
    }
}

/// 1234 -> "1.2K", 3_000_000 -> "2.9M".
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}K", n as f64 / 1024.0),
        _ => format!("{:.1}M", n as f64 / 1_048_576.0),
    }
}
