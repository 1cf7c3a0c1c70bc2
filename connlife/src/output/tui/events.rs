//! The pane of recent events: findings raised and resolved (those of one batch and group on
//! one line, with where they were opened when known), fd exhaustion, lost events and ends of
//! processes.
use std::collections::HashSet;

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{opt, origin_text, LiveView};
use crate::{
    model::{detect::Finding, origins::dominant, session::Output},
    output::text::duration,
};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum EventKind {
    Raised,
    Resolved,
    Exhausted,
    Lost,
    Ended,
}

#[derive(Clone, Debug)]
pub(super) struct EventLine {
    at_ns: u64,
    kind: EventKind,
    text: String,
}

/// Recent events kept for the pane.
const EVENTS_KEPT: usize = 200;

impl LiveView {
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
                    // Where they were opened, when raised (as the plain output says it).
                    let from = if raised {
                        let origins = same.iter().filter_map(|g| Some((g.origin.as_ref()?, g.transport)));
                        match (same.len(), dominant(origins)) {
                            (1, Some(_)) => f.origin.as_ref().map(|o| format!(" {}", origin_text(o, None))),
                            (n, Some((o, k))) => Some(format!(" {}", origin_text(&o, Some((k, n))))),
                            (_, None) => None,
                        }
                    } else {
                        None
                    };
                    let mut text = if same.len() == 1 {
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
                    text.push_str(from.as_deref().unwrap_or_default());
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

    pub(super) fn render_events(&self, frame: &mut Frame, area: Rect) {
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
}

fn same_group(a: &Finding, b: &Finding) -> bool {
    a.pid == b.pid && a.kind == b.kind && a.raddr == b.raddr
}
