//! One self-contained HTML page of a post-mortem: what an SRE opens the morning after a
//! process died of fd exhaustion. Top to bottom: who ended and how, and why the post-mortem
//! was written; the verdict with each named leak pattern and its hint; the climb of open fds
//! towards the limit with the EMFILE moment marked; TCP connections by state over time; the
//! table of what was held at the end; then the details (every EMFILE, findings, readings).
//!
//! Self-contained on purpose: post-mortems are read from tickets, mail and hosts without a
//! way out. Inline CSS and inline SVG only: no script, link, font or image, and a
//! Content-Security-Policy that forbids every fetch. Every string is escaped (comm, cgroup and
//! remote addresses come from the traced processes and their files). Colour never carries
//! meaning alone: lines are labelled and dashed differently, state bands are hatched
//! differently and named.
use std::{collections::BTreeMap, fmt::Write};

use crate::{
    kernel::event::TcpState,
    model::{
        session::{FdExhausted, Postmortem, TimelinePoint},
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
            w!(
                h,
                "<li><b>{}</b> <code>{}</code>: {} &mdash; <span class=\"hint\">{}</span></li>\n",
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

// Chart geometry, in viewBox units (the SVG scales to the page's width).
const W: f64 = 1000.0;
const H: f64 = 300.0;
const ML: f64 = 58.0;
const MR: f64 = 150.0;
const MT: f64 = 28.0;
const MB: f64 = 32.0;

/// Where times and counts land on a chart.
struct Frame {
    t0: f64,
    t1: f64,
    ymax: f64,
    ystep: f64,
}

impl Frame {
    fn new(t0: f64, t1: f64, vmax: f64) -> Frame {
        let (t0, t1) = if t1 - t0 > 1e-6 { (t0, t1) } else { (t0 - 0.5, t0 + 0.5) };
        let ystep = nice_step(vmax.max(1.0) / 6.0).max(1.0);
        let ymax = ((vmax.max(1.0) / ystep).ceil() * ystep).max(ystep);
        Frame { t0, t1, ymax, ystep }
    }
    fn x(&self, t: f64) -> f64 {
        ML + (t - self.t0) / (self.t1 - self.t0) * (W - ML - MR)
    }
    fn y(&self, v: f64) -> f64 {
        H - MB - v / self.ymax * (H - MT - MB)
    }
    /// Grid lines, count labels on the left, time labels below.
    fn axes(&self, h: &mut String, y_name: &str) {
        let mut v = 0.0;
        while v <= self.ymax + 1e-9 {
            let y = self.y(v);
            w!(
                h,
                "<line class=\"grid\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                W - MR,
                ML - 6.0,
                y + 4.0,
                v as u64
            );
            v += self.ystep;
        }
        let step = time_step(self.t1 - self.t0);
        let mut t = (self.t0 / step).ceil() * step;
        while t <= self.t1 + 1e-9 {
            let x = self.x(t);
            let label = tick_label(t, step);
            w!(
                h,
                "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
                H - MB,
                H - MB + 4.0,
                H - MB + 17.0
            );
            t += step;
        }
        w!(
            h,
            "<line class=\"axis\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{ML}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            W - MR,
            H - MB,
            H - MB,
            MT - 14.0,
            esc(y_name)
        );
    }
    /// The EMFILE/ENFILE moments: a dashed vertical line each, the first one labelled.
    /// `dots`: mark each at its open fds (the fd chart).
    fn exhaustion(&self, h: &mut String, ex: &[FdExhausted], dots: bool) {
        // A process retrying in a loop is reported once per second: draw a bounded number.
        for (i, e) in ex.iter().filter(|e| e.at_s.is_finite()).take(200).enumerate() {
            let x = self.x(e.at_s);
            w!(
                h,
                "<g class=\"emfile\"><title>{} in {}() at {}</title><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
                esc(&e.errno),
                esc(&e.syscall),
                at(e.at_s),
                MT - 4.0,
                H - MB
            );
            if let Some(v) = e.open_fds.filter(|_| dots) {
                w!(h, "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\"/>", self.y(v as f64));
            }
            if i == 0 {
                let more = match ex.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let (anchor, tx) = if x > W - MR - 220.0 {
                    ("end", x - 5.0)
                } else {
                    ("start", x + 5.0)
                };
                w!(
                    h,
                    "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{} in {}() at {}{more}</text>",
                    MT - 14.0,
                    esc(&e.errno),
                    esc(&e.syscall),
                    at(e.at_s)
                );
            }
            h.push_str("</g>\n");
        }
    }
}

/// A time axis label: `0`, `+500ms`, `+1.5s`, `+30s`, `+2m`, `+1h30m`.
fn tick_label(t: f64, step: f64) -> String {
    if t.abs() < 1e-9 {
        return "0".into();
    }
    if step < 1.0 && t.fract().abs() > 1e-9 && t > 1.0 {
        return format!("+{t:.1}s");
    }
    let d = duration(t);
    let d = d
        .strip_suffix("m0s")
        .map(|m| format!("{m}m"))
        .or_else(|| d.strip_suffix("h0m").map(|h| format!("{h}h")))
        .unwrap_or(d);
    format!("+{d}")
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A step between time labels that reads well (seconds, minutes, hours), at most ~8 labels.
fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 21] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0, 43200.0, 86400.0,
    ];
    STEPS
        .into_iter()
        .find(|&s| span / s <= 8.0)
        .unwrap_or_else(|| nice_step(span / 8.0 / 86400.0) * 86400.0)
}

fn charts(h: &mut String, p: &Postmortem) {
    let tl: Vec<&TimelinePoint> = p.timeline.iter().filter(|t| t.at_s.is_finite()).collect();
    h.push_str("<section class=\"chart\" id=\"fds\"><h2>Open fds over time</h2>\n");
    match tl.as_slice() {
        [] => {
            h.push_str("<p class=\"empty\">No fd readings: connlife read no fd count of this process (it ended before the first reading, or it was not traced with fd readings).</p>\n</section>\n");
            return;
        }
        [one] => {
            w!(
                h,
                "<p class=\"empty\">One fd reading only, not enough to draw a climb: {} open fds at {} (limit {}); TCP then: {}.</p>\n</section>\n",
                one.open_fds,
                at(one.at_s),
                limit_text(p.fd_limit),
                states_text(&one.tcp_by_state)
            );
            return;
        }
        _ => {}
    }
    let ex: Vec<&FdExhausted> = p.fd_exhausted.iter().filter(|e| e.at_s.is_finite()).collect();
    let times = tl.iter().map(|t| t.at_s).chain(ex.iter().map(|e| e.at_s));
    let t0 = times.clone().fold(f64::INFINITY, f64::min);
    let t1 = times.fold(f64::NEG_INFINITY, f64::max);
    fd_chart(h, p, &tl, t0, t1);
    h.push_str("</section>\n");
    states_chart(h, p, &tl, t0, t1);
}

fn fd_chart(h: &mut String, p: &Postmortem, tl: &[&TimelinePoint], t0: f64, t1: f64) {
    let peak = tl
        .iter()
        .map(|t| t.open_fds)
        .chain(p.fd_exhausted.iter().filter_map(|e| e.open_fds))
        .chain([p.peak_fds])
        .max()
        .unwrap_or(0) as f64;
    // The limit is drawn when the climb is within a quarter of it; a limit of a million next
    // to a peak of 60 would flatten the climb into the floor.
    let limit = p.fd_limit.filter(|&l| l > 0).map(|l| l as f64);
    let on_chart = limit.filter(|&l| l <= peak.max(1.0) * 4.0);
    let fr = Frame::new(t0, t1, on_chart.map_or(peak * 1.1, |l| l * 1.08).max(peak));
    let note = match (limit, on_chart) {
        (Some(_), Some(_)) => format!(
            "Peak {} of limit {}. The dashed black line is the limit; a dashed red line marks each EMFILE/ENFILE.",
            p.peak_fds,
            limit_text(p.fd_limit)
        ),
        (Some(_), None) => format!(
            "Peak {}; the limit {} is far above (not drawn to scale).",
            p.peak_fds,
            limit_text(p.fd_limit)
        ),
        _ => format!("Peak {}; the fd limit is unknown.", p.peak_fds),
    };
    w!(h, "<p class=\"note\">{note}</p>\n");
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"open fds over time, peak {} of limit {}\">\n",
        p.peak_fds,
        limit_text(p.fd_limit)
    );
    fr.axes(h, "open fds");
    let pts: Vec<(f64, f64)> = tl.iter().map(|t| (fr.x(t.at_s), fr.y(t.open_fds as f64))).collect();
    let base = fr.y(0.0);
    let mut area = format!("{:.1},{base:.1}", pts[0].0);
    for (x, y) in &pts {
        w!(area, " {x:.1},{y:.1}");
    }
    w!(area, " {:.1},{base:.1}", pts[pts.len() - 1].0);
    w!(h, "<polygon class=\"fds-area\" points=\"{area}\"/>\n");
    let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    w!(h, "<polyline class=\"fds\" points=\"{}\"/>\n", line.join(" "));
    // Labels in the right margin: the limit, the last reading (moved apart when close).
    let last = tl[tl.len() - 1];
    let (lx, ly) = pts[pts.len() - 1];
    let mut last_y = ly;
    if let Some(l) = on_chart {
        let y = fr.y(l);
        w!(
            h,
            "<line class=\"limit\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"limit-label\" x=\"{:.1}\" y=\"{:.1}\">limit {}</text>\n",
            W - MR,
            W - MR + 6.0,
            y + 4.0,
            l as u64
        );
        if (last_y - y).abs() < 15.0 {
            last_y = y + 16.0;
        }
    } else if let Some(l) = limit {
        w!(
            h,
            "<text class=\"limit-label\" x=\"{:.1}\" y=\"{:.1}\">limit {} ↑</text>\n",
            W - MR + 6.0,
            MT + 4.0,
            l as u64
        );
    }
    w!(
        h,
        "<circle class=\"peak\" cx=\"{lx:.1}\" cy=\"{ly:.1}\" r=\"3.5\"/><text x=\"{:.1}\" y=\"{:.1}\">{} at the end</text>\n",
        W - MR + 6.0,
        last_y + 4.0,
        last.open_fds
    );
    if let Some((i, _)) = tl
        .iter()
        .enumerate()
        .max_by_key(|(i, t)| (t.open_fds, std::cmp::Reverse(*i)))
    {
        if i + 1 != tl.len() {
            let (x, y) = pts[i];
            let anchor = if x > W - MR - 120.0 { "end" } else { "middle" };
            w!(
                h,
                "<circle class=\"peak\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">peak {}</text>\n",
                y - 8.0,
                tl[i].open_fds
            );
        }
    }
    fr.exhaustion(h, &p.fd_exhausted, true);
    h.push_str("</svg>\n");
}

/// Fixed order (the states that tell the story first) and a colour per state.
const STATE_ORDER: [(&str, &str); 12] = [
    ("ESTABLISHED", "#60a5fa"),
    ("CLOSE_WAIT", "#f87171"),
    ("SYN_SENT", "#fbbf24"),
    ("SYN_RECV", "#fcd34d"),
    ("NEW_SYN_RECV", "#fde68a"),
    ("FIN_WAIT1", "#34d399"),
    ("FIN_WAIT2", "#6ee7b7"),
    ("LAST_ACK", "#c084fc"),
    ("CLOSING", "#f0abfc"),
    ("TIME_WAIT", "#cbd5e1"),
    ("CLOSE", "#94a3b8"),
    ("LISTEN", "#a8a29e"),
];

/// Textures over the colours, so bands differ without colour too.
const TEXTURES: [Option<&str>; 4] = [None, Some("tex-diag"), Some("tex-dots"), Some("tex-back")];

const TEXTURE_DEFS: &str = "<defs>\
<pattern id=\"tex-diag\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#111827\" stroke-opacity=\".45\" stroke-width=\"2\"/></pattern>\
<pattern id=\"tex-dots\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\"><circle cx=\"3\" cy=\"3\" r=\"1.3\" fill=\"#111827\" fill-opacity=\".5\"/></pattern>\
<pattern id=\"tex-back\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(-45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#111827\" stroke-opacity=\".45\" stroke-width=\"2\"/></pattern>\
</defs>\n";

fn state_colour(name: &str, i: usize) -> &'static str {
    const SPARE: [&str; 4] = ["#fb923c", "#a3e635", "#22d3ee", "#f472b6"];
    STATE_ORDER
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .unwrap_or(SPARE[i % SPARE.len()])
}

/// The states present in any reading: the known ones in story order, others by name.
fn state_names(tl: &[&TimelinePoint]) -> Vec<String> {
    let mut seen: Vec<String> = tl.iter().flat_map(|t| t.tcp_by_state.keys().cloned()).collect();
    seen.sort();
    seen.dedup();
    let rank = |n: &str| {
        STATE_ORDER
            .iter()
            .position(|(s, _)| *s == n)
            .unwrap_or(STATE_ORDER.len())
    };
    seen.sort_by_key(|n| rank(n));
    seen
}

fn band(h: &mut String, class: &str, fill: &str, upper: &[(f64, f64)], lower: &[(f64, f64)]) {
    w!(h, "<polygon class=\"{class}\" fill=\"{fill}\" points=\"");
    for (x, y) in upper.iter().chain(lower.iter().rev()) {
        w!(h, "{x:.1},{y:.1} ");
    }
    h.push_str("\"/>\n");
}

fn states_chart(h: &mut String, p: &Postmortem, tl: &[&TimelinePoint], t0: f64, t1: f64) {
    h.push_str("<section class=\"chart\" id=\"states\"><h2>TCP connections by state over time</h2>\n");
    let names = state_names(tl);
    let total = |t: &TimelinePoint| {
        names
            .iter()
            .map(|n| t.tcp_by_state.get(n).copied().unwrap_or(0))
            .sum::<u32>()
    };
    let top = tl.iter().map(|t| total(t)).max().unwrap_or(0);
    if names.is_empty() || top == 0 {
        h.push_str("<p class=\"empty\">No TCP connection in any fd reading.</p>\n</section>\n");
        return;
    }
    h.push_str("<p class=\"note\">Stacked: each band is the number of connections in one state at each reading; its height adds to those below.</p>\n");
    let fr = Frame::new(t0, t1, top as f64 * 1.08);
    w!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"TCP connections by state over time, at most {top}\">\n{TEXTURE_DEFS}"
    );
    fr.axes(h, "connections");
    let xs: Vec<f64> = tl.iter().map(|t| fr.x(t.at_s)).collect();
    let mut below = vec![0u32; tl.len()];
    let mut legend = String::new();
    let mut labels = String::new();
    for (i, name) in names.iter().enumerate() {
        let vals: Vec<u32> = tl
            .iter()
            .map(|t| t.tcp_by_state.get(name).copied().unwrap_or(0))
            .collect();
        let lower: Vec<(f64, f64)> = xs.iter().zip(&below).map(|(x, b)| (*x, fr.y(*b as f64))).collect();
        let upper: Vec<(f64, f64)> = xs
            .iter()
            .zip(below.iter().zip(&vals))
            .map(|(x, (b, v))| (*x, fr.y((b + v) as f64)))
            .collect();
        let colour = state_colour(name, i);
        band(h, "band", colour, &upper, &lower);
        let texture = TEXTURES[i % TEXTURES.len()];
        if let Some(t) = texture {
            band(h, "texture", &format!("url(#{t})"), &upper, &lower);
        }
        // Name the band where it is thickest, when the name fits.
        if let Some((j, thick)) = lower
            .iter()
            .zip(&upper)
            .map(|(l, u)| l.1 - u.1)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            if thick >= 14.0 {
                let x = xs[j].clamp(ML + 70.0, W - MR - 90.0);
                let y = (lower[j].1 + upper[j].1) / 2.0 + 4.0;
                w!(
                    labels,
                    "<text class=\"band-label\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\">{} {}</text>\n",
                    esc(name),
                    vals[j]
                );
            }
        }
        let peak = vals.iter().max().copied().unwrap_or(0);
        let last = vals.last().copied().unwrap_or(0);
        w!(
            legend,
            "<span class=\"item\"><svg viewBox=\"0 0 22 14\" aria-hidden=\"true\"><rect width=\"22\" height=\"14\" fill=\"{colour}\"/>{}</svg><b>{}</b> last {last}, peak {peak}</span>\n",
            texture.map(|t| format!("<rect width=\"22\" height=\"14\" fill=\"url(#{t})\"/>")).unwrap_or_default(),
            esc(name)
        );
        for (b, v) in below.iter_mut().zip(&vals) {
            *b += v;
        }
    }
    h.push_str(&labels);
    fr.exhaustion(h, &p.fd_exhausted, false);
    w!(h, "</svg>\n<div class=\"legend\">\n{legend}</div>\n</section>\n");
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

fn held(h: &mut String, p: &Postmortem) {
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
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{pattern}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{exchanges}</td><td class=\"num\">{}</td><td class=\"num\">{growth}</td><td class=\"mono\">{}</td></tr>\n",
            g.count,
            g.state.name(),
            role(g),
            esc(&g.raddr),
            duration(g.oldest_s),
            duration(g.newest_s),
            g.unreused,
            fds_text(&g.fds)
        );
    }
    let total: u32 = p.open_at_end.iter().map(|g| g.count).sum();
    w!(
        h,
        "<tr class=\"total\"><td class=\"num\">{total}</td><td colspan=\"10\">connections in all (oldest and newest are ages at the end)</td></tr>\n</table>\n"
    );
}

const EXHAUSTED_ROWS: usize = 20;

fn details(h: &mut String, p: &Postmortem) {
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
            w!(
                h,
                "<li>{} idle unreused connections to <span class=\"mono\">{}</span>, +{:.1}/min: {}</li>\n",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::event::Role, model::detect::Group};

    fn point(at_s: f64, open_fds: u32, est: u32, cw: u32) -> TimelinePoint {
        let mut m = BTreeMap::new();
        if est > 0 {
            m.insert("ESTABLISHED".to_string(), est);
        }
        if cw > 0 {
            m.insert("CLOSE_WAIT".to_string(), cw);
        }
        TimelinePoint {
            at_s,
            open_fds,
            tcp_by_state: m,
        }
    }

    /// A Go client that opened a new connection per request and died of EMFILE at 1024 fds.
    fn dead_of_emfile() -> Postmortem {
        let timeline: Vec<TimelinePoint> = (0..=30)
            .map(|i| point(i as f64 * 3.0, 10 + i * 33, i * 30, i.min(3)))
            .collect();
        Postmortem {
            pid: 48213,
            comm: "leaky-client".into(),
            ending: "exited with status 1".into(),
            exit_code: Some(1),
            signal: None,
            lifetime_s: 92.0,
            fd_limit: Some(1024),
            peak_fds: 1000,
            fd_exhausted: vec![FdExhausted {
                pid: 48213,
                comm: "leaky-client".into(),
                errno: "EMFILE".into(),
                syscall: "socket".into(),
                at_s: 91.5,
                open_fds: Some(1000),
                tcp_by_state: [("ESTABLISHED".to_string(), 987u32), ("CLOSE_WAIT".to_string(), 3)].into(),
            }],
            open_at_end: vec![
                OpenGroup {
                    state: TcpState::Established,
                    role: Role::Client,
                    raddr: "10.0.0.7:8080".into(),
                    count: 987,
                    oldest_s: 91.0,
                    newest_s: 0.4,
                    fds: (7..994).collect(),
                    exchanges_per_conn: Some(1.0),
                    unreused: 987,
                    growth_per_min: 653.6,
                },
                OpenGroup {
                    state: TcpState::CloseWait,
                    role: Role::Client,
                    raddr: "10.0.0.9:9000".into(),
                    count: 3,
                    oldest_s: 80.0,
                    newest_s: 70.0,
                    fds: vec![4, 5, 6],
                    exchanges_per_conn: None,
                    unreused: 0,
                    growth_per_min: 12.0,
                },
            ],
            findings_raised: [("established_unreused".to_string(), 40u64)].into(),
            findings_at_end: Vec::new(),
            groups: vec![Group {
                pid: 48213,
                comm: "leaky-client".into(),
                raddr: "10.0.0.7:8080".into(),
                count: 40,
                growth_per_min: 600.0,
                hint: "a new pool per request?".into(),
            }],
            timeline,
            patterns: vec![
                Pattern {
                    kind: "unreused_keepalive".into(),
                    count: 987,
                    raddr: "10.0.0.7:8080".into(),
                    hint: crate::model::verdict::HINT_UNREUSED.into(),
                },
                Pattern {
                    kind: "close_wait_never_closed".into(),
                    count: 3,
                    raddr: "10.0.0.9:9000".into(),
                    hint: crate::model::verdict::HINT_CLOSE_WAIT.into(),
                },
            ],
            verdict: "ran out of file descriptors (EMFILE at 91.5s); 987 ESTABLISHED connections to 10.0.0.7:8080: reuse one client".into(),
            reason: Some("fd_exhausted".into()),
            container: Some("0123456789ab".into()),
            cgroup: Some("/kubepods/burstable/pod1234/0123456789ab".into()),
            pod_uid: Some("1234-5678".into()),
        }
    }

    /// The `points` of the first `<polyline class="fds" ...>`.
    fn fd_line_points(page: &str) -> Vec<&str> {
        let start = page.find("<polyline class=\"fds\" points=\"").expect("fd polyline") + 30;
        let end = start + page[start..].find('"').unwrap();
        page[start..end].split_whitespace().collect()
    }

    #[test]
    fn page_has_the_key_facts_and_a_point_per_reading() {
        let p = dead_of_emfile();
        let page = postmortem_page(&p);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("48213"), "pid");
        assert!(page.contains("leaky-client"));
        assert!(page.contains("exited with status 1"));
        assert!(page.contains(&esc(&p.verdict)), "verdict");
        assert!(page.contains(">1000<"), "peak");
        assert!(page.contains("limit 1024"), "limit");
        for g in &p.open_at_end {
            assert!(
                page.contains(&format!("<td class=\"num\">{}</td>", g.count)),
                "group {}",
                g.count
            );
        }
        for x in &p.patterns {
            assert!(page.contains(&format!("<code>{}</code>", x.kind)), "{}", x.kind);
            assert!(page.contains(&esc(&x.hint)), "{}", x.hint);
        }
        assert!(page.contains("<svg"));
        let pts = fd_line_points(&page);
        assert_eq!(pts.len(), p.timeline.len());
        assert!(page.contains("<g class=\"emfile\">"), "EMFILE marker");
        assert!(page.contains("EMFILE in socket() at +1m32s"), "EMFILE label");
        assert!(page.contains("pod UID"));
        assert!(page.contains("it ran out of file descriptors"));
        assert!(page.contains("7, 8, 9, 10, 11, 12, 13, 14 and 979 more"), "fds");
        assert!(page.contains("CLOSE_WAIT"), "state chart");
    }

    /// The page fetches nothing: no script, no link, no URL, and a policy forbidding fetches.
    #[test]
    fn page_is_self_contained() {
        let page = postmortem_page(&dead_of_emfile());
        for bad in [
            "http://",
            "https://",
            "<script",
            "<link",
            "<img",
            "src=",
            "href=",
            "@import",
            "@font-face",
        ] {
            assert!(!page.contains(bad), "{bad}");
        }
        assert!(page.contains("default-src 'none'"));
        for url in page.match_indices("url(").map(|(i, _)| &page[i..i + 5]) {
            assert_eq!(url, "url(#", "only references inside the page");
        }
    }

    #[test]
    fn strings_from_the_process_are_escaped() {
        let mut p = dead_of_emfile();
        p.comm = "<script>alert(1)</script>".into();
        p.cgroup = Some("/x\"><script>y</script>".into());
        p.open_at_end[0].raddr = "<b>&".into();
        p.timeline[3].tcp_by_state.insert("<i>".into(), 1);
        p.fd_exhausted[0].syscall = "<img>".into();
        let page = postmortem_page(&p);
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<img>"));
        assert!(!page.contains("<i>"));
        assert!(!page.contains("/x\"><"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;&amp;"));
    }

    #[test]
    fn no_readings_says_so_and_draws_nothing() {
        let mut p = dead_of_emfile();
        p.timeline.clear();
        let page = postmortem_page(&p);
        assert!(page.contains("No fd readings"));
        p.peak_fds = 0;
        let page = postmortem_page(&p);
        assert!(page.contains("no fd readings (limit 1024)"), "no made-up peak");
        assert!(!page.contains("<polyline"));
        assert!(!page.contains("<svg class=\"chart\""));
        // The facts that do not need readings are still there.
        assert!(page.contains("<td class=\"num\">987</td>"));
    }

    #[test]
    fn one_reading_is_told_not_drawn() {
        let mut p = dead_of_emfile();
        p.timeline.truncate(1);
        let page = postmortem_page(&p);
        assert!(page.contains("One fd reading only"));
        assert!(!page.contains("<polyline"));
    }

    /// Readings all at one moment, a limit far above the peak and no EMFILE: still a sane page.
    #[test]
    fn degenerate_times_and_far_limit_are_drawn_sanely() {
        let mut p = dead_of_emfile();
        for t in &mut p.timeline {
            t.at_s = 5.0;
        }
        p.fd_limit = Some(1 << 20);
        p.fd_exhausted.clear();
        let page = postmortem_page(&p);
        assert_eq!(fd_line_points(&page).len(), p.timeline.len());
        for bad in ["NaN", "inf,", ",inf", "\"inf", "-inf"] {
            assert!(!page.contains(bad), "finite coordinates: {bad}");
        }
        assert!(page.contains("limit 1048576 ↑"));
        assert!(!page.contains("class=\"limit\""));
        assert!(!page.contains("class=\"emfile\""));
    }

    #[test]
    fn steps_read_well() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(230.0), 500.0);
        assert_eq!(time_step(90.0), 15.0);
        assert_eq!(time_step(3.0), 0.5);
        assert_eq!(time_step(7200.0), 900.0);
        assert_eq!(tick_label(0.0, 60.0), "0");
        assert_eq!(tick_label(120.0, 60.0), "+2m");
        assert_eq!(tick_label(5400.0, 900.0), "+1h30m");
        assert_eq!(tick_label(7200.0, 900.0), "+2h");
        assert_eq!(tick_label(2.5, 0.5), "+2.5s");
        assert_eq!(tick_label(0.5, 0.5), "+500ms");
    }
}
