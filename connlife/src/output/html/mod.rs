//! One self-contained HTML page of a post-mortem: what an SRE opens the morning after a
//! process died of fd exhaustion. Top to bottom: who ended and how, and why the post-mortem
//! was written; the verdict with each named leak pattern and its hint; the climb of open fds
//! towards the limit with the EMFILE moment marked; TCP connections by state over time; the
//! table of what was held at the end, each group with the code that opened it (its whole stack
//! folded in a `<details>`); then the details (every EMFILE, findings, readings).
//!
//! Self-contained on purpose: post-mortems are read from tickets, mail and hosts without a
//! way out. Inline CSS and inline SVG only: no script, link, font or image, and a
//! Content-Security-Policy that forbids every fetch. Every string is escaped (comm, cgroup and
//! remote addresses come from the traced processes and their files). Colour never carries
//! meaning alone: lines are labelled and dashed differently, state bands are hatched
//! differently and named.
use std::{collections::BTreeMap, fmt::Write};

use crate::{
    model::{
        origin::{describe, is_internal},
        origins::{Origin, OriginSource},
        session::Postmortem,
        verdict::{OpenGroup, Pattern},
    },
    output::text::duration,
};

/// Writing into a `String` cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

// After `w!`, which the sections use.
mod charts;
mod tables;
#[cfg(test)]
mod tests;

use charts::charts;
use tables::{details, held};

/// The page for one post-mortem.
pub fn postmortem_page(p: &Postmortem) -> String {
    let mut h = String::with_capacity(24 * 1024 + p.timeline.len() * 160);
    head(&mut h, p);
    header(&mut h, p);
    h.push_str("<main>\n");
    cards(&mut h, p);
    verdict(&mut h, p);
    charts(&mut h, p);
    held(&mut h, p);
    details(&mut h, p);
    w!(
        h,
        "<footer>connlife {} post-mortem. Times (+…) count from the start of the connlife session that traced the process. This page loads nothing: no script, font or image.</footer>\n",
        env!("CARGO_PKG_VERSION")
    );
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

/// Text and attribute values: markup characters and quotes escaped, control characters
/// (a comm may hold any byte) replaced.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Where connections were opened, escaped: `from <code>SITE</code> (n of m): T
/// http.Transports made there` (the share only when it is part of a group; Transports for Go).
fn origin_from(site: &str, transports: Option<u32>, share: Option<(usize, usize)>) -> String {
    let mut s = format!("from <code class=\"site\">{}</code>", esc(site));
    if let Some((n, m)) = share.filter(|(n, m)| n < m) {
        w!(s, " ({n} of {m})");
    }
    match transports {
        Some(1) => s.push_str(": 1 http.Transport made there"),
        Some(t) => w!(s, ": {t} http.Transports made there"),
        None => {}
    }
    s
}

/// An origin's whole stack, innermost first, folded: the user's own frames in bold (the
/// runtime's, the standard library's and the network plumbing's are not).
fn origin_stack(o: &Origin) -> String {
    let at = match o.source {
        OriginSource::GoRequest => "the request's stack at net/http's roundTrip",
        OriginSource::Connect => "the stack at connect()",
        OriginSource::Accept => "the stack at accept()",
    };
    let mut s = format!(
        "<details class=\"stack\"><summary>{at}: {} frame{}, innermost first, the program's own in bold</summary>\n<ol class=\"stack\">\n",
        o.frames.len(),
        if o.frames.len() == 1 { "" } else { "s" }
    );
    for f in &o.frames {
        let frame = esc(&describe(f));
        if is_internal(f) {
            w!(s, "<li><code>{frame}</code></li>\n");
        } else {
            w!(s, "<li><code><b>{frame}</b></code></li>\n");
        }
    }
    s.push_str("</ol>\n</details>");
    s
}

/// A moment of the session: `+1m30s`.
fn at(s: f64) -> String {
    format!("+{}", duration(s))
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2430;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background: #1f2937; color: #f9fafb; padding: 20px 28px 18px; }
header.top .inner, main { max-width: 1140px; margin: 0 auto; }
main { padding: 18px 28px 36px; }
h1 { margin: 0 0 6px; font-size: 24px; font-weight: 650; }
h1 .comm { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
h2 { font-size: 17px; margin: 26px 0 8px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 4px; font-size: 13px; font-weight: 700;
  letter-spacing: .04em; vertical-align: 4px; margin-left: 10px; border: 1px solid transparent; }
.badge.bad { background: #fee2e2; color: #991b1b; border-color: #fca5a5; }
.badge.warn { background: #fef3c7; color: #92400e; border-color: #fcd34d; }
.badge.ok { background: #dcfce7; color: #166534; border-color: #86efac; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 10px 0 0; font-size: 14px; }
dl.facts dt { color: #9ca3af; }
dl.facts dd { margin: 0; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .92em; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 14px; }
.card .k { color: #6b7280; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
.card .v { font-size: 28px; font-weight: 700; line-height: 1.2; }
.card .s { color: #4b5563; font-size: 13px; overflow-wrap: anywhere; }
.card.bad { border-left: 5px solid #dc2626; }
.verdict { background: #fff; border: 1px solid #e5e7eb; border-left: 5px solid #b45309; border-radius: 8px;
  padding: 12px 16px; margin-top: 14px; }
.verdict.bad { border-left-color: #dc2626; }
.verdict.ok { border-left-color: #16a34a; }
.verdict h2 { margin: 0 0 4px; }
.verdict p.sentence { margin: 0 0 6px; font-size: 15.5px; font-weight: 500; }
.verdict p.named { margin: 8px 0 0; color: #4b5563; font-size: 13px; text-transform: uppercase; letter-spacing: .05em; }
.verdict ul { margin: 6px 0 0; padding-left: 20px; }
.verdict li { margin: 4px 0; }
.verdict .hint { color: #374151; }
section.chart { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 14px 8px; margin-top: 14px; }
section.chart h2 { margin: 2px 0 4px; }
section.chart p.note { margin: 0 0 4px; color: #4b5563; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #374151; }
svg .grid { stroke: #e5e7eb; stroke-width: 1; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .fds { fill: none; stroke: #1d4ed8; stroke-width: 2.2; stroke-linejoin: round; }
svg .fds-area { fill: #dbeafe; fill-opacity: .7; }
svg .limit { stroke: #111827; stroke-width: 1.6; stroke-dasharray: 9 5; }
svg .limit-label { font-weight: 700; fill: #111827; }
svg .emfile line { stroke: #dc2626; stroke-width: 2; stroke-dasharray: 3 3; }
svg .emfile circle { fill: #dc2626; stroke: #fff; stroke-width: 1.5; }
svg .emfile text { fill: #b91c1c; font-weight: 700; }
svg .peak { fill: #1d4ed8; stroke: #fff; stroke-width: 1.5; }
svg .band-label { font-weight: 600; fill: #111827; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-opacity: .8; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; margin: 4px 0 2px; }
.legend span.item { display: inline-flex; align-items: center; gap: 6px; }
.legend svg { width: 22px; height: 14px; border: 1px solid #9ca3af; }
.empty { color: #6b7280; font-style: italic; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13.5px; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; color: #374151; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 700; border-top: 2px solid #d1d5db; }
td .kind { font-size: 12px; color: #92400e; }
details { margin-top: 12px; }
tr.has-origin td { border-bottom: none; }
tr.origin td { padding-top: 0; color: #374151; }
tr.origin details, .verdict .from { margin-top: 2px; }
.verdict .from { display: block; color: #374151; font-size: 13.5px; }
code.site { overflow-wrap: anywhere; }
ol.stack { margin: 4px 0 2px; padding-left: 26px; font-size: 13px; }
details.stack summary { font-weight: 500; color: #4b5563; font-size: 13px; }
summary { cursor: pointer; font-weight: 600; }
footer { margin-top: 28px; color: #6b7280; font-size: 12.5px; }
"#;

fn head(h: &mut String, p: &Postmortem) {
    w!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>connlife post-mortem: pid {} ({})</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        p.pid,
        esc(&p.comm)
    );
}

/// How bad it was, in one word and a class (the word carries it without colour).
fn severity(p: &Postmortem) -> (&'static str, &'static str) {
    if let Some(e) = p.fd_exhausted.first() {
        return (
            "bad",
            if e.errno == "ENFILE" {
                "OUT OF FDS (system)"
            } else {
                "OUT OF FDS"
            },
        );
    }
    if p.patterns.iter().any(|x| x.kind != "idle_pool") {
        return ("warn", "LEAK");
    }
    ("ok", "NO LEAK FOUND")
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

fn reason_words(reason: Option<&str>) -> String {
    match reason {
        Some("fd_exhausted") => "it ran out of file descriptors (a syscall failed with EMFILE or ENFILE)".into(),
        Some("killed_holding") => "it was killed by a signal while holding connections".into(),
        Some("leaked") => "it ended holding stuck or unreused connections".into(),
        Some(other) => esc(other),
        None => "connlife traced it (--pid, --comm or a recorded session): every traced process gets one".into(),
    }
}

fn header(h: &mut String, p: &Postmortem) {
    let (class, word) = severity(p);
    w!(
        h,
        "<header class=\"top\"><div class=\"inner\">\n<h1>Post-mortem of pid {} <span class=\"comm\">{}</span><span class=\"badge {class}\">{word}</span></h1>\n<dl class=\"facts\">\n",
        p.pid,
        esc(&p.comm)
    );
    let mut ending = esc(&p.ending);
    if let Some(name) = p.signal.and_then(signal_name) {
        w!(ending, " ({name})");
    }
    w!(h, "<dt>ended</dt><dd>{ending}</dd>\n");
    w!(h, "<dt>traced for</dt><dd>{}</dd>\n", duration(p.lifetime_s));
    for (k, v) in [
        ("container", &p.container),
        ("cgroup", &p.cgroup),
        ("pod UID", &p.pod_uid),
    ] {
        if let Some(v) = v {
            w!(h, "<dt>{k}</dt><dd class=\"mono\">{}</dd>\n", esc(v));
        }
    }
    w!(
        h,
        "<dt>written because</dt><dd>{}</dd>\n</dl>\n</div></header>\n",
        reason_words(p.reason.as_deref())
    );
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into())
}

fn cards(h: &mut String, p: &Postmortem) {
    h.push_str("<div class=\"cards\">\n");
    let share = p
        .fd_limit
        .filter(|&l| l > 0)
        .map(|l| format!(" ({:.0}%)", p.peak_fds as f64 * 100.0 / l as f64))
        .unwrap_or_default();
    if p.timeline.is_empty() && p.peak_fds == 0 {
        // No reading: a peak of 0 would be a made-up number.
        w!(
            h,
            "<div class=\"card\"><div class=\"k\">open fds at peak</div><div class=\"v\">unknown</div><div class=\"s\">no fd readings (limit {})</div></div>\n",
            limit_text(p.fd_limit)
        );
    } else {
        w!(
            h,
            "<div class=\"card\"><div class=\"k\">open fds at peak</div><div class=\"v\">{}</div><div class=\"s\">of limit {}{share}</div></div>\n",
            p.peak_fds,
            limit_text(p.fd_limit)
        );
    }
    match p.fd_exhausted.first() {
        Some(e) => {
            let more = match p.fd_exhausted.len() {
                1 => String::new(),
                n => format!(", {} times", n),
            };
            w!(
                h,
                "<div class=\"card bad\"><div class=\"k\">ran out</div><div class=\"v\">{}</div><div class=\"s\">in {}() at {}{more}</div></div>\n",
                esc(&e.errno),
                esc(&e.syscall),
                at(e.at_s)
            );
        }
        None => h.push_str(
            "<div class=\"card\"><div class=\"k\">ran out</div><div class=\"v\">no</div><div class=\"s\">no EMFILE or ENFILE seen</div></div>\n",
        ),
    }
    let tcp: u32 = p.open_at_end.iter().map(|g| g.count).sum();
    w!(
        h,
        "<div class=\"card\"><div class=\"k\">TCP held at the end</div><div class=\"v\">{tcp}</div><div class=\"s\">in {} group{}</div></div>\n",
        p.open_at_end.len(),
        if p.open_at_end.len() == 1 { "" } else { "s" }
    );
    match p.open_at_end.iter().max_by_key(|g| g.count) {
        Some(g) => w!(
            h,
            "<div class=\"card\"><div class=\"k\">biggest group</div><div class=\"v\">{}</div><div class=\"s\">{} {} to <span class=\"mono\">{}</span></div></div>\n",
            g.count,
            g.state.name(),
            role(g),
            esc(&g.raddr)
        ),
        None => h.push_str(
            "<div class=\"card\"><div class=\"k\">biggest group</div><div class=\"v\">none</div><div class=\"s\">no connection open at the end</div></div>\n",
        ),
    }
    h.push_str("</div>\n");
}

fn role(g: &OpenGroup) -> String {
    format!("{:?}", g.role).to_lowercase()
}

fn pattern_title(kind: &str) -> &str {
    match kind {
        "unreused_keepalive" => "Unreused keep-alive connections",
        "close_wait_never_closed" => "CLOSE_WAIT never closed",
        "accepted_piling_up" => "Accepted connections piling up",
        "idle_pool" => "Idle connection pool (not a leak while flat)",
        "non_tcp_fds" => "Most fds were not TCP",
        other => other,
    }
}

fn pattern_what(x: &Pattern) -> String {
    match x.kind.as_str() {
        "non_tcp_fds" => format!("{} fds that were not TCP connections", x.count),
        "accepted_piling_up" => format!(
            "{} accepted connections on <span class=\"mono\">{}</span>",
            x.count,
            esc(&x.raddr)
        ),
        _ => format!(
            "{} connections to <span class=\"mono\">{}</span>",
            x.count,
            esc(&x.raddr)
        ),
    }
}

fn verdict(h: &mut String, p: &Postmortem) {
    let (class, _) = severity(p);
    w!(
        h,
        "<div class=\"verdict {class}\"><h2>Verdict</h2><p class=\"sentence\">{}</p>\n",
        esc(&p.verdict)
    );
    if p.patterns.is_empty() {
        h.push_str("<p class=\"empty\">No leak pattern named in what it held at the end.</p>\n");
    } else {
        h.push_str("<p class=\"named\">Patterns named in what it held</p>\n<ul class=\"patterns\">\n");
        for x in &p.patterns {
            let from = x
                .origin
                .as_deref()
                .map(|site| format!("<span class=\"from\">{}</span>", origin_from(site, x.transports, None)))
                .unwrap_or_default();
            w!(
                h,
                "<li><b>{}</b> <code>{}</code>: {} &mdash; <span class=\"hint\">{}</span>{from}</li>\n",
                esc(pattern_title(&x.kind)),
                esc(&x.kind),
                pattern_what(x),
                esc(&x.hint)
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</div>\n");
}

fn states_text(m: &BTreeMap<String, u32>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{} {v}", esc(k)))
        .collect::<Vec<_>>()
        .join(", ")
}
