//! The header above the table: the session's title line, one line per traced process (open
//! fds against the limit, a sparkline of their climb, growth per minute, time to the limit)
//! and the totals of connections, findings and losses.
use std::collections::BTreeMap;

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{LiveView, ProcView, PROCS_SHOWN};
use crate::{kernel::event::TcpState, output::text::duration};

/// Columns of the header sparkline.
const SPARK_WIDTH: usize = 30;

impl LiveView {
    pub(super) fn render_header(&self, frame: &mut Frame, area: Rect) {
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
