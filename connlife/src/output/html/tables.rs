//! The page's tables: what the process held at the end (grouped, with the pattern named for
//! each group and, under it, the code that opened it), then the details (every EMFILE, the
//! findings, the fd readings).
use std::{collections::BTreeMap, fmt::Write};

use super::{at, charts::state_names, esc, origin_from, origin_stack, role, states_text};
use crate::{
    kernel::event::TcpState,
    model::{
        session::{Postmortem, TimelinePoint},
        verdict::{OpenGroup, Pattern},
    },
    output::text::duration,
};

/// The pattern named for a group of what was held, if any.
fn pattern_of<'a>(p: &'a Postmortem, g: &OpenGroup) -> Option<&'a Pattern> {
    p.patterns.iter().find(|x| {
        x.raddr == g.raddr
            && x.count == g.count
            && ((x.kind == "close_wait_never_closed") == (g.state == TcpState::CloseWait))
    })
}

const FDS_SHOWN: usize = 8;

fn fds_text(fds: &[i32]) -> String {
    if fds.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = fds.iter().take(FDS_SHOWN).map(|f| f.to_string()).collect();
    let mut s = shown.join(", ");
    if fds.len() > FDS_SHOWN {
        w!(s, " and {} more", fds.len() - FDS_SHOWN);
    }
    s
}

pub(super) fn held(h: &mut String, p: &Postmortem) {
    h.push_str("<h2 id=\"held\">What it held at the end</h2>\n");
    if p.open_at_end.is_empty() {
        h.push_str("<p class=\"empty\">No TCP connection was open at the end (listeners are not counted).</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"held\">\n<tr><th class=\"num\">count</th><th>state</th><th>role</th><th>remote</th><th>pattern</th>\
<th class=\"num\">oldest</th><th class=\"num\">newest</th><th class=\"num\">exchanges / conn</th><th class=\"num\">used once</th><th class=\"num\">growth / min</th><th>fds</th></tr>\n",
    );
    for g in &p.open_at_end {
        let pattern = pattern_of(p, g)
            .map(|x| format!("<span class=\"kind\">{}</span>", esc(&x.kind)))
            .unwrap_or_default();
        let exchanges = g
            .exchanges_per_conn
            .map(|e| format!("{e:.1}"))
            .unwrap_or_else(|| "unknown".into());
        let growth = if g.growth_per_min > 0.0 {
            format!("{:.1}", g.growth_per_min)
        } else if g.count > 1 {
            "0 (together)".into()
        } else {
            "0".into()
        };
        w!(
            h,
            "<tr{}><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{pattern}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{exchanges}</td><td class=\"num\">{}</td><td class=\"num\">{growth}</td><td class=\"mono\">{}</td></tr>\n",
            if g.origin.is_some() { " class=\"has-origin\"" } else { "" },
            g.count,
            g.state.name(),
            role(g),
            esc(&g.raddr),
            duration(g.oldest_s),
            duration(g.newest_s),
            g.unreused,
            fds_text(&g.fds)
        );
        if let Some(o) = &g.origin {
            w!(
                h,
                "<tr class=\"origin\"><td></td><td colspan=\"10\">{}\n{}</td></tr>\n",
                origin_from(&o.site, o.transports, None),
                origin_stack(o)
            );
        }
    }
    let total: u32 = p.open_at_end.iter().map(|g| g.count).sum();
    w!(
        h,
        "<tr class=\"total\"><td class=\"num\">{total}</td><td colspan=\"10\">connections in all (oldest and newest are ages at the end)</td></tr>\n</table>\n"
    );
}

const EXHAUSTED_ROWS: usize = 20;

pub(super) fn details(h: &mut String, p: &Postmortem) {
    if !p.fd_exhausted.is_empty() {
        h.push_str("<h2 id=\"emfile\">When it ran out</h2>\n<table>\n<tr><th>errno</th><th>syscall</th><th class=\"num\">at</th><th class=\"num\">open fds</th><th>TCP then</th></tr>\n");
        for e in p.fd_exhausted.iter().take(EXHAUSTED_ROWS) {
            w!(
                h,
                "<tr><td><b>{}</b></td><td class=\"mono\">{}()</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                esc(&e.errno),
                esc(&e.syscall),
                at(e.at_s),
                e.open_fds.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into()),
                states_text(&e.tcp_by_state)
            );
        }
        if p.fd_exhausted.len() > EXHAUSTED_ROWS {
            w!(
                h,
                "<tr><td colspan=\"5\">and {} more</td></tr>\n",
                p.fd_exhausted.len() - EXHAUSTED_ROWS
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Findings</h2>\n<p>");
    if p.findings_raised.is_empty() {
        h.push_str("No finding raised while it was traced.");
    } else {
        let raised: Vec<String> = p
            .findings_raised
            .iter()
            .map(|(k, v)| format!("<code>{}</code> {v}", esc(k)))
            .collect();
        w!(h, "Raised while traced: {}.", raised.join(", "));
    }
    if !p.findings_at_end.is_empty() {
        let mut by_kind: BTreeMap<&str, u32> = BTreeMap::new();
        for f in &p.findings_at_end {
            *by_kind.entry(f.kind.name()).or_default() += 1;
        }
        let open: Vec<String> = by_kind.iter().map(|(k, v)| format!("<code>{k}</code> {v}")).collect();
        w!(h, " Still open at the end: {}.", open.join(", "));
    }
    h.push_str("</p>\n");
    if !p.groups.is_empty() {
        h.push_str("<ul class=\"groups\">\n");
        for g in &p.groups {
            let from = g
                .origin
                .as_ref()
                .map(|o| {
                    format!(
                        " {}",
                        origin_from(&o.site, o.transports, g.from_origin.map(|n| (n, g.count)))
                    )
                })
                .unwrap_or_default();
            w!(
                h,
                "<li>{} idle unreused connections to <span class=\"mono\">{}</span>, +{:.1}/min{from}: {}</li>\n",
                g.count,
                esc(&g.raddr),
                g.growth_per_min,
                esc(&g.hint)
            );
        }
        h.push_str("</ul>\n");
    }
    if p.timeline.is_empty() {
        return;
    }
    let tl: Vec<&TimelinePoint> = p.timeline.iter().collect();
    let names = state_names(&tl);
    w!(
        h,
        "<details><summary>All {} fd readings</summary>\n<table class=\"readings\">\n<tr><th class=\"num\">at</th><th class=\"num\">open fds</th>",
        p.timeline.len()
    );
    for n in &names {
        w!(h, "<th class=\"num\">{}</th>", esc(n));
    }
    h.push_str("</tr>\n");
    for t in &p.timeline {
        w!(
            h,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            at(t.at_s),
            t.open_fds
        );
        for n in &names {
            w!(
                h,
                "<td class=\"num\">{}</td>",
                t.tcp_by_state.get(n).copied().unwrap_or(0)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</details>\n");
}
