//! The post-mortem page from a process that died of EMFILE, and the edge cases: no reading,
//! one reading, degenerate times, hostile strings.
use super::{
    charts::{nice_step, tick_label, time_step},
    *,
};
use crate::{
    kernel::event::{Role, TcpState},
    model::{
        detect::Group,
        session::{FdExhausted, TimelinePoint},
    },
};

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
                counted: 1000,
                growth_per_min: 653.6,
                origin: None,
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
                counted: 0,
                growth_per_min: 12.0,
                origin: None,
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
            origin: None,
            from_origin: None,
        }],
        timeline,
        patterns: vec![
            Pattern {
                kind: "unreused_keepalive".into(),
                count: 987,
                raddr: "10.0.0.7:8080".into(),
                hint: crate::model::verdict::HINT_UNREUSED.into(),
                origin: None,
                transports: None,
            },
            Pattern {
                kind: "close_wait_never_closed".into(),
                count: 3,
                raddr: "10.0.0.9:9000".into(),
                hint: crate::model::verdict::HINT_CLOSE_WAIT.into(),
                origin: None,
                transports: None,
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

/// A Go origin whose names hold markup characters (`(*T)`, a Rust trait impl's `<..>`).
fn go_origin() -> crate::model::origins::Origin {
    use crate::model::{
        origin::Frame,
        origins::{Origin, OriginSource},
    };
    let frame = |function: &str, file: &str, line: u32| Frame {
        addr: 0x4000,
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(line),
        module: Some("/srv/leaky".into()),
        offset: None,
    };
    Origin {
        source: OriginSource::GoRequest,
        site: "main.(*poller).post (main.go:170) <- <app::Leak as x>::go (main.go:87)".into(),
        frames: vec![
            frame("net/http.(*Transport).roundTrip", "/go/src/net/http/transport.go", 600),
            frame("main.(*poller).post", "/src/main.go", 170),
            frame("<app::Leak as x>::go", "/src/main.go", 87),
        ],
        transports: Some(987),
    }
}

#[test]
fn origins_of_groups_and_patterns_are_shown_escaped_with_their_stack() {
    let mut p = dead_of_emfile();
    let o = go_origin();
    p.open_at_end[0].origin = Some(o.clone());
    p.patterns[0].origin = Some(o.site.clone());
    p.patterns[0].transports = Some(987);
    p.groups[0].origin = Some(o.clone());
    p.groups[0].from_origin = Some(30);
    let page = postmortem_page(&p);
    let site = "from <code class=\"site\">main.(*poller).post (main.go:170) &lt;- &lt;app::Leak as x&gt;::go (main.go:87)</code>";
    // The held group, the pattern and the finding group each name it.
    assert_eq!(
        page.matches(&format!("{site}: 987 http.Transports made there")).count(),
        2,
        "group and pattern:\n{page}"
    );
    assert!(
        page.contains(&format!("{site} (30 of 40): 987 http.Transports made there")),
        "finding group with its share"
    );
    // The held group's row is followed by its origin, the whole stack folded.
    let row = page.find("<td class=\"num\">987</td>").unwrap();
    let origin = page[row..].find("<tr class=\"origin\">").unwrap() + row;
    assert!(
        origin < page.find("<td class=\"num\">3</td>").unwrap(),
        "under its group"
    );
    assert!(page.contains(
        "<details class=\"stack\"><summary>the request's stack at net/http's roundTrip: 3 frames, innermost first"
    ));
    assert!(page.contains("<li><code>net/http.(*Transport).roundTrip (transport.go:600)</code></li>"));
    assert!(page.contains("<li><code><b>main.(*poller).post (main.go:170)</b></code></li>"));
    assert!(page.contains("<li><code><b>&lt;app::Leak as x&gt;::go (main.go:87)</b></code></li>"));
    assert!(!page.contains("<app::"), "escaped");
    // One stack: the CLOSE_WAIT group has no origin and gets no row.
    assert_eq!(page.matches("<tr class=\"origin\">").count(), 1);
    assert_eq!(page.matches("<details class=\"stack\">").count(), 1);
}

#[test]
fn no_origin_no_origin_markup() {
    let page = postmortem_page(&dead_of_emfile());
    // The CSS names the classes, the body must not use them; the hints may name
    // http.Transport, only an origin says how many were made there.
    let body = &page[page.find("<body>").unwrap()..];
    for bad in [
        "from <code",
        "made there",
        "class=\"origin\"",
        "<details class=\"stack\"",
        "has-origin\"",
    ] {
        assert!(!body.contains(bad), "{bad}");
    }
}
