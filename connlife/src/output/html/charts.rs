//! The page's two charts, hand-written inline SVG: open fds over time against the limit, with
//! each EMFILE/ENFILE marked, and TCP connections by state over time as stacked bands (each
//! state coloured, textured and named, so the bands read without colour).
use std::fmt::Write;

use super::{at, esc, limit_text, states_text};
use crate::{
    model::session::{FdExhausted, Postmortem, TimelinePoint},
    output::text::duration,
};

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
pub(super) fn tick_label(t: f64, step: f64) -> String {
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
pub(super) fn nice_step(raw: f64) -> f64 {
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
pub(super) fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 21] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0, 43200.0, 86400.0,
    ];
    STEPS
        .into_iter()
        .find(|&s| span / s <= 8.0)
        .unwrap_or_else(|| nice_step(span / 8.0 / 86400.0) * 86400.0)
}

pub(super) fn charts(h: &mut String, p: &Postmortem) {
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
pub(super) fn state_names(tl: &[&TimelinePoint]) -> Vec<String> {
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
