//! Formatting of session outputs (pure, into any `io::Write`): one JSON object per line for
//! `--json`, aligned human text otherwise (colour only when asked, i.e. on a TTY).
use std::io::{self, Write};

use crate::model::{
    detect::Finding,
    origins::Origin,
    session::{Output, Postmortem, Summary},
};

/// `90.5` -> "1m30s", `0.25` -> "250ms", `7200` -> "2h0m".
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Longest duration any option takes: 30 days. Past it a value is surely a typo, and
/// `Duration::from_secs_f64` panics on values that do not fit (`99999999999999999999h`).
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Parse "500ms", "30s", "2m", "1h", "1d" (also a bare number of seconds), from 0 to
/// [`MAX_DURATION`]; anything else is an error (a clap usage error, exit 2), never a panic.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 500ms, 30s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h or d)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    // Compared as f64 before converting: the conversion is what panics.
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("invalid duration {s:?}: at most 30 days (30d)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// [`parse_duration`], and not zero: for intervals and thresholds (a zero interval would spin,
/// a zero threshold would flag every connection at once).
pub fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("invalid duration {:?}: must be more than 0", s.trim()));
    }
    Ok(d)
}

pub struct Style {
    pub color: bool,
    /// Finding kinds whose hint was printed already (a hint is printed once, not per line).
    pub hinted: std::cell::RefCell<Vec<crate::model::detect::FindingKind>>,
    /// `--stacks`: print each origin's whole stack under its site.
    pub stacks: bool,
}

impl Style {
    /// The style for human lines on stdout: colour on a terminal, unless `NO_COLOR` is set
    /// (and not empty) or `TERM=dumb`.
    pub fn for_stdout(json: bool) -> Style {
        use std::io::IsTerminal;
        Style::from_env(
            !json && io::stdout().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
            std::env::var("TERM").ok().as_deref(),
        )
    }

    /// `tty`: the output is a terminal; `no_color` and `term`: `NO_COLOR` and `TERM`.
    pub fn from_env(tty: bool, no_color: Option<&str>, term: Option<&str>) -> Style {
        Style {
            color: tty && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
            hinted: Default::default(),
            stacks: false,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

pub fn write_json(w: &mut impl Write, out: &Output) -> io::Result<()> {
    serde_json::to_writer(&mut *w, out)?;
    writeln!(w)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

pub fn write_human(w: &mut impl Write, out: &Output, st: &Style) -> io::Result<()> {
    match out {
        Output::Finding(f) | Output::Resolved(f) => {
            let (tag, code) = match out {
                Output::Finding(_) => ("FINDING ", "1;31"),
                _ => ("RESOLVED", "32"),
            };
            let age = if f.age_exact {
                duration(f.age_s)
            } else {
                format!(">={}", duration(f.age_s))
            };
            writeln!(
                w,
                "{} {:<20} pid {:>7} {:<15} fd {:>5}  {:<21} -> {:<21} {:<11} age {:>8} idle {:>8} exchanges {}",
                st.paint(code, tag),
                f.kind.name(),
                opt(f.pid),
                f.comm,
                opt(f.fd),
                f.laddr,
                f.raddr,
                f.state.name(),
                age,
                duration(f.idle_s),
                opt(f.exchanges)
            )?;
            if let Some(o) = f.origin.as_ref().filter(|_| matches!(out, Output::Finding(_))) {
                write_origin(w, o, None, st)?;
            }
            if matches!(out, Output::Finding(_)) && !st.hinted.borrow().contains(&f.kind) {
                st.hinted.borrow_mut().push(f.kind);
                writeln!(w, "         hint: {}", f.kind.hint())?;
            }
            Ok(())
        }
        // On a terminal the groups are shown with each summary, not on every change.
        Output::Group(_) => Ok(()),
        Output::Summary(s) => write_summary(w, s, st),
        Output::Closed(c) => writeln!(
            w,
            "closed   pid {:>7} fd {:>5}  {:<21} -> {:<21} {} after {} ({}), sent {}B recv {}B exchanges {}",
            opt(c.pid),
            opt(c.fd),
            c.laddr,
            c.raddr,
            c.reason.name(),
            duration(c.lifetime_s),
            c.path.iter().map(|(s, _)| s.name()).collect::<Vec<_>>().join(">"),
            opt(c.bytes_sent),
            opt(c.bytes_received),
            opt(c.exchanges)
        ),
        Output::Transition(t) => writeln!(
            w,
            "{:>9} pid {:>7} fd {:>5}  {:<21} -> {:<21} {} -> {}",
            format!("+{}", duration(t.at_s)),
            opt(t.pid),
            opt(t.fd),
            t.laddr,
            t.raddr,
            t.from.map(|s| s.name()).unwrap_or("?"),
            t.to.name()
        ),
        Output::FdExhausted(e) => writeln!(
            w,
            "{} pid {} ({}) got {} from {}() at +{} with {} fds open; TCP: {}",
            st.paint("1;31", "FD-EXHAUSTED"),
            e.pid,
            e.comm,
            e.errno,
            e.syscall,
            duration(e.at_s),
            opt(e.open_fds),
            states(&e.tcp_by_state)
        ),
        Output::Lost(l) => writeln!(
            w,
            "{} {} events lost: ring buffer full {}, skipped by the kernel (another BPF program on the CPU) {}, socket map full {}, records that failed to decode {}",
            st.paint("1;31", "LOST"),
            l.total(),
            l.ring_full,
            l.recursion_misses,
            l.map_full,
            l.decode_errors
        ),
        Output::Postmortem(p) => write_postmortem(w, p, st),
    }
}

/// Connections listed under a collapsed group of findings before "and N more".
pub const GROUP_SHOWN: usize = 3;

/// A batch of outputs (those of one input) as human lines, with the per-connection findings
/// (and resolutions) of one process, kind and remote collapsed into one group line followed
/// by its first [`GROUP_SHOWN`] connections and "and N more", where the batch has more than
/// one. A lone finding prints as [`write_human`] prints it; so does everything else. `--json`
/// keeps one line per connection.
/// The line stream across batches: between two summaries a group (process, kind, remote) is
/// announced by its first finding; its later findings are held and shown together, as one
/// group line with its first connections and "and N more", just before the next summary. So a
/// leak that runs for hours prints a few lines per interval, not one per connection.
#[derive(Default)]
pub struct Collapser {
    announced: std::collections::HashSet<(Option<u32>, crate::model::detect::FindingKind, String)>,
    held: Vec<Output>,
}

impl Collapser {
    /// What to print now, in order.
    pub fn pass(&mut self, outputs: &[Output]) -> Vec<Output> {
        let mut now = Vec::new();
        // Groups first seen in this batch print whole (collapsed by `write_human_batch`).
        let mut fresh = std::collections::HashSet::new();
        for o in outputs {
            match o {
                Output::Finding(f) => {
                    let key = (f.pid, f.kind, f.raddr.clone());
                    if fresh.contains(&key) || !self.announced.contains(&key) {
                        fresh.insert(key);
                        now.push(o.clone());
                    } else {
                        self.held.push(o.clone());
                    }
                }
                Output::Summary(_) => {
                    now.append(&mut self.held);
                    self.announced.clear();
                    fresh.clear();
                    now.push(o.clone());
                }
                _ => now.push(o.clone()),
            }
        }
        self.announced.extend(fresh);
        now
    }
}

pub fn write_human_batch(w: &mut impl Write, outputs: &[Output], st: &Style) -> io::Result<()> {
    let key = |o: &Output| match o {
        Output::Finding(f) => Some((true, f.pid, f.kind, f.raddr.clone())),
        Output::Resolved(f) => Some((false, f.pid, f.kind, f.raddr.clone())),
        _ => None,
    };
    let mut done = vec![false; outputs.len()];
    for (i, o) in outputs.iter().enumerate() {
        if done[i] {
            continue;
        }
        let Some(k) = key(o) else {
            write_human(w, o, st)?;
            continue;
        };
        let members: Vec<usize> = (i..outputs.len())
            .filter(|&j| !done[j] && key(&outputs[j]).as_ref() == Some(&k))
            .collect();
        if members.len() == 1 {
            write_human(w, o, st)?;
            continue;
        }
        let findings: Vec<&Finding> = members
            .iter()
            .filter_map(|&j| match &outputs[j] {
                Output::Finding(f) | Output::Resolved(f) => Some(f),
                _ => None,
            })
            .collect();
        for &j in &members {
            done[j] = true;
        }
        write_finding_group(w, k.0, &findings, st)?;
    }
    Ok(())
}

fn age_of(f: &Finding) -> String {
    if f.age_exact {
        duration(f.age_s)
    } else {
        format!(">={}", duration(f.age_s))
    }
}

/// One line for several findings of one process, kind and remote, then the first few.
fn write_finding_group(w: &mut impl Write, raised: bool, fs: &[&Finding], st: &Style) -> io::Result<()> {
    let f = fs[0];
    let (tag, code) = if raised {
        ("FINDING ", "1;31")
    } else {
        ("RESOLVED", "32")
    };
    let oldest = fs
        .iter()
        .copied()
        .max_by(|a, b| a.age_s.total_cmp(&b.age_s))
        .unwrap_or(f);
    let newest = fs.iter().map(|f| f.age_s).fold(f64::MAX, f64::min);
    let max_idle = fs.iter().map(|f| f.idle_s).fold(0.0, f64::max);
    writeln!(
        w,
        "{} {:<20} pid {:>7} {:<15} {} connections to {} {}, ages {}..{}, idle up to {}",
        st.paint(code, tag),
        f.kind.name(),
        opt(f.pid),
        f.comm,
        fs.len(),
        f.raddr,
        f.state.name(),
        duration(newest),
        age_of(oldest),
        duration(max_idle)
    )?;
    for c in fs.iter().take(GROUP_SHOWN) {
        writeln!(
            w,
            "         fd {:>5}  {:<21} age {:>8} idle {:>8} exchanges {}",
            opt(c.fd),
            c.laddr,
            age_of(c),
            duration(c.idle_s),
            opt(c.exchanges)
        )?;
    }
    if fs.len() > GROUP_SHOWN {
        writeln!(w, "         and {} more", fs.len() - GROUP_SHOWN)?;
    }
    if raised {
        let origins = fs.iter().filter_map(|f| Some((f.origin.as_ref()?, f.transport)));
        if let Some((o, n)) = crate::model::origins::dominant(origins) {
            write_origin(w, &o, (n < fs.len()).then_some((n, fs.len())), st)?;
        }
    }
    if raised && !st.hinted.borrow().contains(&f.kind) {
        st.hinted.borrow_mut().push(f.kind);
        writeln!(w, "         hint: {}", f.kind.hint())?;
    }
    Ok(())
}

fn states(m: &std::collections::BTreeMap<String, u32>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn write_summary(w: &mut impl Write, s: &Summary, st: &Style) -> io::Result<()> {
    writeln!(
        w,
        "{} +{}: connections {} | listening {} | opened {} closed {} | findings {} | lost {} | corrections {}{}",
        st.paint("1", "summary"),
        duration(s.at_s),
        states(&s.by_state),
        s.listening,
        s.opened,
        s.closed,
        states(&s.findings),
        s.lost_events,
        s.corrections.values().sum::<u64>(),
        if s.evicted > 0 {
            format!(" | evicted {} (--max-conns)", s.evicted)
        } else {
            String::new()
        }
    )?;
    let origins_missed: u64 = s.lost.origins_missed().iter().map(|(_, n)| n).sum();
    if origins_missed > 0 {
        writeln!(
            w,
            "         origins unknown for {origins_missed} connections (stack map full {}, symbolizer behind {})",
            s.lost.stacks_missed, s.lost.stacks_unsymbolized
        )?;
    }
    for g in &s.groups {
        write!(
            w,
            "         {} pid {} ({}) holds {} idle unreused connections to {} ({:+}/min)",
            st.paint("1;33", "GROUP"),
            g.pid,
            g.comm,
            g.count,
            g.raddr,
            g.growth_per_min,
        )?;
        match &g.origin {
            Some(o) => {
                writeln!(w)?;
                let share = g.from_origin.filter(|&n| n < g.count).map(|n| (n, g.count));
                write_origin(w, o, share, st)?;
                writeln!(w, "               {}", g.hint)?;
            }
            None => writeln!(w, ": {}", g.hint)?,
        }
    }
    for f in &s.fds {
        let eta = f
            .eta_s
            .map(|e| format!(", limit in ~{}", duration(e)))
            .unwrap_or_default();
        writeln!(
            w,
            "         pid {}: {} fds open of {} ({} TCP), {:+}/min{}",
            f.pid,
            f.open_fds,
            opt(f.limit),
            f.tcp_sockets,
            f.growth_per_min,
            eta
        )?;
    }
    Ok(())
}

/// `from SITE`, with the Transports made there (Go) and the share of a group it covers
/// (`share`: n of m); with `--stacks` the whole stack under it.
fn write_origin(w: &mut impl Write, o: &Origin, share: Option<(usize, usize)>, st: &Style) -> io::Result<()> {
    let transports = match o.transports {
        Some(1) => ": 1 http.Transport made there".to_string(),
        Some(t) => format!(": {t} http.Transports made there"),
        None => String::new(),
    };
    let share = share.map(|(n, m)| format!(" ({n} of {m})")).unwrap_or_default();
    writeln!(w, "           from {}{}{}", o.site, share, transports)?;
    if st.stacks {
        for f in &o.frames {
            writeln!(w, "             {}", crate::model::origin::describe(f))?;
        }
    }
    Ok(())
}

/// A one-line chart of `values` scaled to `max`.
pub fn sparkline(values: &[u32], max: u32, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || max == 0 {
        return String::new();
    }
    let step = values.len().div_ceil(width).max(1);
    values
        .chunks(step)
        .map(|c| {
            let v = *c.iter().max().unwrap_or(&0) as usize;
            BARS[(v * 7 / max as usize).min(7)]
        })
        .collect()
}

fn write_postmortem(w: &mut impl Write, p: &Postmortem, st: &Style) -> io::Result<()> {
    writeln!(
        w,
        "{}",
        st.paint("1", &format!("=== post-mortem: pid {} ({}) ===", p.pid, p.comm))
    )?;
    writeln!(w, "ending:   {} after {} traced", p.ending, duration(p.lifetime_s))?;
    writeln!(w, "fds:      peak {} of limit {}", p.peak_fds, opt(p.fd_limit))?;
    for e in &p.fd_exhausted {
        writeln!(
            w,
            "          {} from {}() at +{} (TCP then: {})",
            e.errno,
            e.syscall,
            duration(e.at_s),
            states(&e.tcp_by_state)
        )?;
    }
    if !p.timeline.is_empty() {
        let fds: Vec<u32> = p.timeline.iter().map(|t| t.open_fds).collect();
        let max = (*fds.iter().max().unwrap_or(&1)).max(1);
        let t0 = p.timeline.first().map(|t| t.at_s).unwrap_or(0.0);
        let t1 = p.timeline.last().map(|t| t.at_s).unwrap_or(0.0);
        writeln!(
            w,
            "climb:    open fds    {} (+{} .. +{}, scale 0..{}, limit {})",
            sparkline(&fds, max, 60),
            duration(t0),
            duration(t1),
            max,
            opt(p.fd_limit)
        )?;
        let mut names: Vec<&String> = p.timeline.iter().flat_map(|t| t.tcp_by_state.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let v: Vec<u32> = p
                .timeline
                .iter()
                .map(|t| *t.tcp_by_state.get(name).unwrap_or(&0))
                .collect();
            writeln!(
                w,
                "          {:<11} {} (last {})",
                name,
                sparkline(&v, max, 60),
                v.last().unwrap_or(&0)
            )?;
        }
    }
    writeln!(w, "open at the end:")?;
    if p.open_at_end.is_empty() {
        writeln!(w, "          none")?;
    }
    for g in &p.open_at_end {
        let fds = if g.fds.len() > 8 {
            format!("{:?}.. ({} fds)", &g.fds[..8], g.fds.len())
        } else {
            format!("{:?}", g.fds)
        };
        writeln!(
            w,
            "          {:>5} {:<11} -> {:<21} ages {}..{} fds {}",
            g.count,
            g.state.name(),
            g.raddr,
            duration(g.newest_s),
            duration(g.oldest_s),
            fds
        )?;
        if let Some(o) = &g.origin {
            write_origin(w, o, None, st)?;
        }
    }
    for g in &p.groups {
        writeln!(
            w,
            "group:    {} idle unreused to {} (+{}/min)",
            g.count, g.raddr, g.growth_per_min
        )?;
    }
    writeln!(
        w,
        "findings: raised {}",
        if p.findings_raised.is_empty() {
            "none".into()
        } else {
            format!("{:?}", p.findings_raised)
        }
    )?;
    writeln!(w, "{} {}", st.paint("1", "verdict:"), p.verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(0.25), "250ms");
        assert_eq!(duration(30.0), "30s");
        assert_eq!(duration(92.0), "1m32s");
        assert_eq!(duration(7260.0), "2h1m");
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn durations_are_bounded_never_a_panic() {
        assert_eq!(parse_duration("30d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("720h").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("0s").unwrap(), std::time::Duration::ZERO);
        for s in [
            "99999999999999999999h",
            "720.001h",
            "31d",
            "18446744073709551616",
            "1e400",
            "inf",
            "NaN",
            "-1s",
            "",
        ] {
            let err = parse_duration(s).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{s}: {err}");
            assert!(!err.contains('\n'), "{s}: one line: {err}");
        }
        assert!(parse_duration("99999999999999999999h")
            .unwrap_err()
            .contains("at most 30 days"));
    }

    #[test]
    fn positive_durations_refuse_zero() {
        for s in ["0", "0s", "0ms", "0.0h", "0.0000000001s"] {
            let err = parse_positive_duration(s).unwrap_err();
            assert!(err.contains("must be more than 0"), "{s}: {err}");
        }
        assert_eq!(parse_positive_duration("1ms").unwrap().as_millis(), 1);
        assert!(parse_positive_duration("99999999999999999999h")
            .unwrap_err()
            .contains("at most 30 days"));
    }

    #[test]
    fn sparkline_scales_to_max() {
        assert_eq!(sparkline(&[0, 512, 1024], 1024, 10), "▁▄█");
        assert_eq!(sparkline(&[], 10, 10), "");
    }

    /// From JSON (fields added later take their defaults).
    fn finding(kind: crate::model::detect::FindingKind, fd: i32, raddr: &str) -> Finding {
        let state = match kind {
            crate::model::detect::FindingKind::CloseWaitStuck => "CLOSE_WAIT",
            _ => "ESTABLISHED",
        };
        let mut f: Finding = serde_json::from_value(serde_json::json!({
            "kind": kind,
            "pid": 123,
            "comm": "leaky",
            "fd": fd,
            "laddr": format!("127.0.0.1:{}", 40000 + fd),
            "raddr": raddr,
            "netns": 1,
            "state": state,
            "age_s": 10.0 + fd as f64,
            "age_exact": true,
            "idle_s": 5.0 + fd as f64,
            "exchanges": 1,
        }))
        .unwrap();
        f.conn = fd as u64;
        f
    }

    fn plain() -> Style {
        Style::from_env(false, None, None)
    }

    fn batch(outputs: &[Output]) -> String {
        let mut buf = Vec::new();
        write_human_batch(&mut buf, outputs, &plain()).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn findings_of_a_batch_collapse_under_their_group() {
        use crate::model::detect::FindingKind::{CloseWaitStuck, EstablishedUnreused};
        let mut outputs: Vec<Output> = (0..7)
            .map(|i| Output::Finding(finding(CloseWaitStuck, 10 + i, "1.2.3.4:80")))
            .collect();
        // Another group in the same batch, and a lone finding to another remote.
        outputs.insert(2, Output::Finding(finding(EstablishedUnreused, 30, "5.6.7.8:443")));
        outputs.push(Output::Finding(finding(EstablishedUnreused, 31, "5.6.7.8:443")));
        outputs.push(Output::Finding(finding(EstablishedUnreused, 40, "9.9.9.9:53")));
        let s = batch(&outputs);
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[0].starts_with("FINDING  close_wait_stuck     pid     123 leaky           7 connections to 1.2.3.4:80 CLOSE_WAIT, ages 20s..26s, idle up to 21s"),
            "{s}"
        );
        assert!(
            lines[1].contains("fd    10  127.0.0.1:40010") && lines[1].contains("age      20s"),
            "{s}"
        );
        assert!(lines[3].contains("fd    12"), "{s}");
        assert_eq!(lines[4], "         and 4 more");
        assert!(lines[5].starts_with("         hint: the peer closed"), "{s}");
        assert!(lines[6].contains("established_unreused") && lines[6].contains("2 connections to 5.6.7.8:443"));
        assert!(!s.contains("and 0 more"));
        // The lone one prints as before: one line with its fd.
        let lone = lines.iter().find(|l| l.contains("9.9.9.9:53")).unwrap();
        assert!(lone.contains("fd    40") && lone.contains("-> 9.9.9.9:53"), "{lone}");
        assert_eq!(s.matches("hint:").count(), 2, "one hint per kind: {s}");
        assert_eq!(s.matches("FINDING").count(), 3);
    }

    #[test]
    fn resolutions_collapse_and_other_outputs_are_unchanged() {
        use crate::model::detect::FindingKind::EstablishedUnreused;
        let lost = Output::Lost(crate::model::session::Lost {
            ring_full: 1,
            ..Default::default()
        });
        let mut outputs = vec![lost.clone()];
        outputs.extend((0..4).map(|i| Output::Resolved(finding(EstablishedUnreused, i, "1.2.3.4:80"))));
        // A finding of the same group is not merged with the resolutions.
        outputs.push(Output::Finding(finding(EstablishedUnreused, 9, "1.2.3.4:80")));
        let s = batch(&outputs);
        let mut alone = Vec::new();
        write_human(&mut alone, &lost, &plain()).unwrap();
        assert!(s.starts_with(std::str::from_utf8(&alone).unwrap()));
        assert!(
            s.contains("RESOLVED established_unreused pid     123 leaky           4 connections to 1.2.3.4:80"),
            "{s}"
        );
        assert!(s.contains("and 1 more"), "{s}");
        assert_eq!(s.matches("hint:").count(), 1, "a hint for the finding only: {s}");
        assert_eq!(s.matches("FINDING").count(), 1);
    }

    #[test]
    fn colour_degrades_with_no_color_and_dumb_terminals() {
        assert!(Style::from_env(true, None, Some("xterm")).color);
        assert!(!Style::from_env(true, Some("1"), Some("xterm")).color);
        assert!(
            Style::from_env(true, Some(""), Some("xterm")).color,
            "NO_COLOR empty is unset"
        );
        assert!(!Style::from_env(true, None, Some("dumb")).color);
        assert!(!Style::from_env(false, None, Some("xterm")).color);
    }

    #[test]
    fn plain_when_not_a_tty() {
        let out = Output::Lost(crate::model::session::Lost {
            ring_full: 2,
            recursion_misses: 1,
            map_full: 0,
            decode_errors: 0,
            rescued: 0,
            ..Default::default()
        });
        let mut buf = Vec::new();
        write_human(
            &mut buf,
            &out,
            &Style {
                color: false,
                hinted: Default::default(),
                stacks: false,
            },
        )
        .unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(!s.contains('\x1b'));
        assert!(s.contains("3 events lost"), "{s}");
        let _ = Style {
            color: false,
            hinted: Default::default(),
            stacks: false,
        };
        let mut buf = Vec::new();
        write_json(&mut buf, &out).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"type\":\"lost\",\"ring_full\":2,\"recursion_misses\":1,\"map_full\":0,\"decode_errors\":0,\"rescued\":0}\n"
        );
    }

    #[test]
    fn a_leak_over_many_batches_prints_one_finding_then_one_group_line_per_interval() {
        let finding = |fd: i32| {
            let v = serde_json::json!({
                "kind": "established_unreused", "pid": 7, "comm": "client", "fd": fd,
                "laddr": format!("127.0.0.1:{}", 4000 + fd), "raddr": "127.0.0.1:80", "netns": 1,
                "state": "ESTABLISHED", "age_s": 61.0, "age_exact": true, "idle_s": 61.0,
                "exchanges": 1
            });
            Output::Finding(serde_json::from_value(v).unwrap())
        };
        let mut c = Collapser::default();
        let mut printed = Vec::new();
        for fd in 3..13 {
            printed.extend(c.pass(&[finding(fd)]));
        }
        assert_eq!(printed.len(), 1, "only the first of the group, until the summary");
        let summary: Output = Output::Lost(Default::default());
        assert_eq!(c.pass(&[summary]).len(), 1);
        let s = crate::model::session::Summary::default();
        let at_summary = c.pass(&[Output::Summary(s)]);
        assert_eq!(at_summary.len(), 10, "9 held findings, then the summary");
        let mut buf = Vec::new();
        let st = Style {
            color: false,
            hinted: Default::default(),
            stacks: false,
        };
        write_human_batch(&mut buf, &at_summary, &st).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("9 connections") || text.contains(" 9 "), "{text}");
        assert!(text.contains("more"), "{text}");
        // A new interval: the group is announced again by its next finding.
        assert_eq!(c.pass(&[finding(20)]).len(), 1);
    }
}
