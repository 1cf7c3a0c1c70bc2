//! The live view drawn on ratatui's `TestBackend` from a session fed like the demo's.
use super::*;
use crate::{
    kernel::event::{BirthOrigin, KernelEvent, Kind, Use},
    model::{
        detect::{FdSample, Thresholds, NS},
        origin::Frame,
        session::{Input, Output},
    },
};
use ratatui::{backend::TestBackend, Terminal};

const PID: u32 = 4242;
const KEEP: &str = "127.0.0.1:8080";
const CLOSING: &str = "127.0.0.1:9090";

fn ev(ts: u64, sk: u64, old: TcpState, new: TcpState, remote: &str, exchanges: u32) -> Input {
    Input::Event {
        event: KernelEvent {
            kind: Kind::State,
            ts_ns: ts,
            sk,
            tgid: Some(PID),
            fd: Some(sk as i32),
            comm: "leaky".into(),
            netns: 1,
            role: Role::Client,
            old_state: Some(old),
            new_state: Some(new),
            local: Some(format!("127.0.0.1:{}", 40000 + sk).parse().unwrap()),
            remote: Some(remote.parse().unwrap()),
            sock_use: Use {
                exchanges,
                bytes_sent: 50,
                bytes_received: 120,
                last_send_ns: ts,
                last_recv_ns: ts,
                ..Default::default()
            },
            ret: 0,
            syscall: None,
            child: None,
            origin: None,
            folded: None,
        },
    }
}

fn tick(s: &mut Session, now: u64, open_fds: u32) -> Vec<Output> {
    s.apply(&Input::Tick {
        now_ns: now,
        fds: vec![FdSample {
            ts_ns: now,
            pid: PID,
            open_fds,
            limit: Some(1024),
            tcp_by_state: Default::default(),
        }],
    })
}

/// The demo's shape: connections to a keep-alive server (one exchange, then idle) and to a
/// closing server (left in CLOSE_WAIT), one more each second. Returns the outputs.
struct Demo {
    session: Session,
    next_sk: u64,
    outputs: Vec<Output>,
    /// Give the keep-alive connections a Go origin (a new http.Transport each), every
    /// `origin_every`th of them; 0: none has one.
    origin_every: u64,
}

/// The Go leak's stacks: net/http's dial goroutine at connect() (stack 1) and the request's
/// goroutine at roundTrip (stack 2), whose user frames name a method of a pointer receiver.
const SITE: &str = "main.(*poller).post (main.go:170) <- main.main.func1 (main.go:87)";

fn go_frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        addr: 0x4000 + line as u64,
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(line),
        module: Some("/srv/leaky".into()),
        offset: None,
    }
}

fn go_stacks() -> [Input; 2] {
    let dial = vec![
        go_frame("syscall.connect", "/go/src/syscall/zsyscall_linux_amd64.go", 100),
        go_frame("net/http.(*Transport).dialConn", "/go/src/net/http/transport.go", 1800),
        go_frame("runtime.goexit", "/go/src/runtime/asm_amd64.s", 1700),
    ];
    let request = vec![
        go_frame("net/http.(*Transport).roundTrip", "/go/src/net/http/transport.go", 600),
        go_frame("net/http.(*Client).do", "/go/src/net/http/client.go", 700),
        go_frame("main.(*poller).post", "/src/leaky/main.go", 170),
        go_frame("main.main.func1", "/src/leaky/main.go", 87),
        go_frame("runtime.goexit", "/go/src/runtime/asm_amd64.s", 1700),
    ];
    [
        Input::Stack {
            pid: PID,
            stack_id: 1,
            frames: dial,
        },
        Input::Stack {
            pid: PID,
            stack_id: 2,
            frames: request,
        },
    ]
}

impl Demo {
    fn new() -> Demo {
        let mut session = Session::new(
            Thresholds {
                close_wait_after_ns: 2 * NS,
                idle_after_ns: 2 * NS,
                group_min: 3,
            },
            false,
            0,
        );
        // From JSON, as `--record` has it: fields added later take their defaults.
        let start: Input = serde_json::from_value(serde_json::json!({
            "input": "start",
            "pids": [PID],
            "now_ns": NS,
            "use_counting": true,
            "close_wait_after_ns": 2 * NS,
            "idle_after_ns": 2 * NS,
        }))
        .unwrap();
        session.apply(&start);
        Demo {
            session,
            next_sk: 10,
            outputs: Vec::new(),
            origin_every: 0,
        }
    }
    /// A demo whose keep-alive connections (every `every`th) have a Go origin.
    fn with_origins(every: u64) -> Demo {
        let mut d = Demo::new();
        for s in go_stacks() {
            d.session.apply(&s);
        }
        d.origin_every = every;
        d
    }
    fn connect(&mut self, ts: u64, remote: &str, close_wait: bool) {
        let sk = self.next_sk;
        self.next_sk += 1;
        let s = &mut self.session;
        let mut born = ev(ts, sk, TcpState::Close, TcpState::SynSent, remote, 0);
        if let Input::Event { event, .. } = &mut born {
            if remote == KEEP && self.origin_every > 0 && sk.is_multiple_of(self.origin_every) {
                event.origin = Some(BirthOrigin {
                    stack: Some(1),
                    request_stack: Some(2),
                    transport: Some(0xc000_0000 + sk),
                });
            }
        }
        s.apply(&born);
        s.apply(&ev(ts, sk, TcpState::SynSent, TcpState::Established, remote, 1));
        if close_wait {
            s.apply(&ev(ts, sk, TcpState::Established, TcpState::CloseWait, remote, 1));
        }
    }
    /// Seconds 1..=secs: each second two keep-alive connections and every other second one
    /// CLOSE_WAIT; a tick each second.
    fn run(&mut self, from: u64, to: u64) {
        for sec in from..=to {
            let ts = sec * NS;
            self.connect(ts, KEEP, false);
            self.connect(ts + NS / 2, KEEP, false);
            if sec % 2 == 0 {
                self.connect(ts + NS / 4, CLOSING, true);
            }
            let fds = 3 + self.session.model.len() as u32;
            let out = tick(&mut self.session, ts + NS - 1, fds);
            self.outputs.extend(out);
        }
    }
}

fn draw(view: &mut LiveView, s: &Session, now: u64, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view.render(f, s, now)).unwrap();
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>())
        .collect()
}

fn line_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
    screen
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", screen.join("\n")))
}

fn row_index(screen: &[String], needle: &str) -> usize {
    screen
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", screen.join("\n")))
}

/// The COUNT cell of the group line to `remote` in `state`.
fn count_of(screen: &[String], remote: &str, state: &str) -> usize {
    let line = screen
        .iter()
        .find(|l| l.contains(remote) && l.contains(state) && !l.contains("fd "))
        .unwrap_or_else(|| panic!("no group {remote} {state}:\n{}", screen.join("\n")));
    let after = &line[line.find(state).unwrap() + state.len()..];
    let mut words = after.split_whitespace();
    let _role = words.next();
    words.next().unwrap().parse().unwrap()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::from(KeyCode::Char(c))
}

const UNICODE: TuiStyle = TuiStyle {
    color: true,
    unicode: true,
};

#[test]
fn header_groups_counts_and_findings() {
    let mut d = Demo::new();
    d.run(1, 10);
    let mut v = LiveView::new(UNICODE);
    v.on_outputs(&d.outputs, 11 * NS);
    let screen = draw(&mut v, &d.session, 11 * NS, 160, 48);
    let proc_line = line_with(&screen, "pid 4242 (leaky)");
    // 20 keep-alive + 5 CLOSE_WAIT connections, 3 other fds.
    assert!(proc_line.contains("fds 28/1024"), "{proc_line}");
    assert!(proc_line.contains("limit in ~"), "{proc_line}");
    assert!(
        proc_line.chars().any(|c| ('▁'..='█').contains(&c)),
        "sparkline: {proc_line}"
    );
    assert_eq!(count_of(&screen, KEEP, "ESTABLISHED"), 20);
    assert_eq!(count_of(&screen, CLOSING, "CLOSE_WAIT"), 5);
    assert!(line_with(&screen, CLOSING).contains("close_wait_stuck"));
    assert!(line_with(&screen, KEEP).contains("established_unreused"));
    assert!(line_with(&screen, "connection groups").contains("2 groups, 25 connections"));
    // The pane: one line per batch and group, not per connection.
    let events = line_with(&screen, "raised   close_wait_stuck");
    assert!(events.contains("-> 127.0.0.1:9090"), "{events}");
    // Sorted by count, biggest first.
    assert!(row_index(&screen, KEEP) < row_index(&screen, CLOSING));
    assert!(line_with(&screen, "q quit").contains("? help"));
}

#[test]
fn growth_per_minute_from_counts_over_time() {
    let mut d = Demo::new();
    d.run(1, 3);
    let mut v = LiveView::new(UNICODE);
    let first = draw(&mut v, &d.session, 4 * NS, 160, 48);
    assert!(line_with(&first, KEEP).contains(".."), "no growth yet");
    d.run(4, 13);
    let later = draw(&mut v, &d.session, 14 * NS, 160, 48);
    // 6 -> 26 connections in 10 s: +120/min.
    assert!(line_with(&later, KEEP).contains("+120.0"), "{}", later.join("\n"));
}

#[test]
fn sorting_changes_the_order() {
    let mut d = Demo::new();
    d.run(1, 6);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
    assert!(row_index(&s, KEEP) < row_index(&s, CLOSING));
    // Column 3 is STATE: ascending, CLOSE_WAIT (8) after ESTABLISHED (1).
    v.on_key(key('3'));
    let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
    assert!(s.iter().any(|l| l.contains(" STATE▲")), "{}", s.join("\n"));
    assert!(row_index(&s, KEEP) < row_index(&s, CLOSING));
    v.on_key(key('3'));
    let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
    assert!(
        row_index(&s, CLOSING) < row_index(&s, KEEP),
        "reversed:\n{}",
        s.join("\n")
    );
    // Back to COUNT (biggest first), then `r` reverses.
    v.on_key(key('5'));
    v.on_key(key('r'));
    let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
    assert!(line_with(&s, "sort COUNT").contains("COUNT ▲"));
    assert!(row_index(&s, CLOSING) < row_index(&s, KEEP), "fewest first");
}

#[test]
fn expanding_a_group_lists_its_connections() {
    let mut d = Demo::new();
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert!(!s.iter().any(|l| l.contains("fd 10 ")));
    // The first row (keep-alive, 8 connections) is selected: expand it.
    v.on_key(KeyEvent::from(KeyCode::Enter));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    let conn = line_with(&s, "fd 10 ");
    assert!(conn.contains(":40010") && conn.contains("sent 50B recv 120B"), "{conn}");
    let fds = s.iter().filter(|l| l.contains("  fd ")).count();
    assert_eq!(fds, 8, "{}", s.join("\n"));
    // Down to the CLOSE_WAIT group, expand it too; collapse with Enter again.
    v.on_key(key('j'));
    v.on_key(key(' '));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert_eq!(s.iter().filter(|l| l.contains("  fd ")).count(), 10);
    v.on_key(key('k'));
    v.on_key(KeyEvent::from(KeyCode::Enter));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert_eq!(s.iter().filter(|l| l.contains("  fd ")).count(), 2);
}

#[test]
fn filter_hides_other_states() {
    let mut d = Demo::new();
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    draw(&mut v, &d.session, 5 * NS, 160, 48);
    v.on_key(key('f'));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert!(s.iter().any(|l| l.contains(KEEP)));
    assert!(!s.iter().any(|l| l.contains(CLOSING)), "{}", s.join("\n"));
    assert!(line_with(&s, "connection groups").contains("(ESTABLISHED only)"));
    v.on_key(key('f'));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert!(!s.iter().any(|l| l.contains(KEEP)));
    assert!(s.iter().any(|l| l.contains(CLOSING)));
    v.on_key(key('f'));
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert!(s.iter().any(|l| l.contains(KEEP)) && s.iter().any(|l| l.contains(CLOSING)));
}

#[test]
fn paused_keeps_the_old_numbers() {
    let mut d = Demo::new();
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 5 * NS, 160, 48);
    assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 8);
    v.on_key(key('p'));
    d.run(5, 8);
    let s = draw(&mut v, &d.session, 9 * NS, 160, 48);
    assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 8, "frozen");
    assert!(line_with(&s, "connlife").contains("PAUSED"));
    v.on_key(key('p'));
    let s = draw(&mut v, &d.session, 9 * NS, 160, 48);
    assert_eq!(count_of(&s, KEEP, "ESTABLISHED"), 16);
}

#[test]
fn quit_help_and_ctrl_c() {
    let mut v = LiveView::new(UNICODE);
    let d = Demo::new();
    assert_eq!(v.on_key(key('?')), Action::Continue);
    let s = draw(&mut v, &d.session, 2 * NS, 120, 40);
    assert!(s.iter().any(|l| l.contains("this help")), "{}", s.join("\n"));
    assert_eq!(v.on_key(key('x')), Action::Continue, "any key closes the help");
    let s = draw(&mut v, &d.session, 2 * NS, 120, 40);
    assert!(!s.iter().any(|l| l.contains("this help")));
    assert!(s.iter().any(|l| l.contains("no connection yet")));
    assert_eq!(v.on_key(key('q')), Action::Quit);
    assert_eq!(
        v.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn dumb_terminal_gets_ascii_only() {
    let style = TuiStyle::from_vars(None, Some("dumb"), Some("C.UTF-8"));
    assert_eq!(
        style,
        TuiStyle {
            color: false,
            unicode: false
        }
    );
    assert!(!TuiStyle::from_vars(Some("1"), Some("xterm-256color"), None).color);
    assert!(TuiStyle::from_vars(Some(""), Some("xterm-256color"), None).color);
    assert!(!TuiStyle::from_vars(None, Some("xterm"), Some("C")).unicode);
    assert!(TuiStyle::from_vars(None, Some("xterm"), Some("en_US.UTF-8")).unicode);
    let mut d = Demo::new();
    d.run(1, 6);
    let mut v = LiveView::new(style);
    v.on_outputs(&d.outputs, 7 * NS);
    v.on_key(KeyEvent::from(KeyCode::Enter));
    let s = draw(&mut v, &d.session, 7 * NS, 160, 48);
    for l in &s {
        assert!(l.is_ascii(), "non-ASCII on a dumb terminal: {l:?}");
    }
    assert!(line_with(&s, "pid 4242").contains("fds "));
    assert!(line_with(&s, "connection groups").starts_with("+ connection groups"));
}

#[test]
fn several_processes_first_then_groups() {
    let mut d = Demo::new();
    d.session.apply(&Input::Track { pid: 7, now_ns: NS });
    d.run(1, 3);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 4 * NS, 160, 48);
    let p7 = row_index(&s, "pid 7 (?)");
    let p4242 = row_index(&s, "pid 4242 (leaky)");
    assert!(p7 < p4242 && p4242 < row_index(&s, "connection groups"));
    assert!(line_with(&s, "pid 7 (?)").contains("fds not read yet"));
    assert!(line_with(&s, "connlife").contains("2 processes traced"));
}

#[test]
fn events_pane_shows_exhaustion_losses_and_ends() {
    let mut v = LiveView::new(UNICODE);
    let d = Demo::new();
    v.on_outputs(&[], NS);
    v.on_outputs(
        &[Output::Lost(crate::model::session::Lost {
            ring_full: 3,
            ..Default::default()
        })],
        2 * NS,
    );
    v.on_outputs(&[Output::Postmortem(d.session.postmortem(PID, 3 * NS))], 3 * NS);
    let s = draw(&mut v, &d.session, 3 * NS, 160, 48);
    assert!(line_with(&s, "lost 3 events").contains("+1s"), "{}", s.join("\n"));
    assert!(line_with(&s, "pid 4242 ()").contains("still running"));
}

#[test]
fn a_narrow_window_leaves_columns_out_instead_of_cutting_words() {
    let mut d = Demo::new();
    d.run(1, 6);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 7 * NS, 100, 30);
    let row = line_with(&s, KEEP);
    assert!(
        row.contains("ESTABLISHED") && row.contains("established_unreused"),
        "{row}"
    );
    assert!(!line_with(&s, "REMOTE").contains("ROLE"));
    let s = draw(&mut v, &d.session, 7 * NS, 160, 30);
    assert!(line_with(&s, "REMOTE").contains("ROLE"));
    let s = draw(&mut v, &d.session, 7 * NS, 60, 30);
    assert!(line_with(&s, KEEP).contains("ESTAB"));
    // With origins: ORIGIN at 160 columns, left out at 100 (the border still names it).
    let mut d = Demo::with_origins(1);
    d.run(1, 6);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 7 * NS, 160, 30);
    assert!(line_with(&s, "REMOTE").contains("ORIGIN") && line_with(&s, "REMOTE").contains("ROLE"));
    let s = draw(&mut v, &d.session, 7 * NS, 100, 30);
    assert!(!line_with(&s, "REMOTE").contains("ORIGIN"));
    assert!(
        line_with(&s, "from main.(*poller).post").contains("▶ from"),
        "{}",
        s.join("\n")
    );
}

#[test]
fn a_group_with_an_origin_shows_its_site_and_transports() {
    let mut d = Demo::with_origins(1);
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    v.on_outputs(&d.outputs, 5 * NS);
    let s = draw(&mut v, &d.session, 5 * NS, 180, 48);
    // The column: the innermost user frame.
    let row = line_with(&s, KEEP);
    assert!(row.contains("main.(*poller).post (main.go:170)"), "{}", s.join("\n"));
    assert!(line_with(&s, "REMOTE").contains("ORIGIN"));
    // The selected group (the keep-alive one, biggest) in full on the border, with its
    // Transports: one per connection, the leak.
    let border = line_with(&s, "╰");
    assert!(
        border.contains(&format!("▶ from {SITE}: 8 http.Transports made there")),
        "{border}"
    );
    // The CLOSE_WAIT group has none: its ORIGIN cell is empty.
    assert!(!line_with(&s, CLOSING).contains("main."), "{}", line_with(&s, CLOSING));
    // Raised findings in the pane say where (one line per batch).
    let raised = line_with(&s, "raised   established_unreused");
    assert!(raised.contains("from main.(*poller).post"), "{raised}");
    assert!(!line_with(&s, "raised   close_wait_stuck").contains("from "));
    // Expanded: each connection's origin too.
    v.on_key(KeyEvent::from(KeyCode::Enter));
    let s = draw(&mut v, &d.session, 5 * NS, 180, 48);
    let conn = line_with(&s, "fd 10 ");
    assert!(conn.contains("main.(*poller).post (main.go:170)"), "{conn}");
    // Selecting the CLOSE_WAIT group: nothing on the border.
    v.on_key(KeyEvent::from(KeyCode::End));
    let s = draw(&mut v, &d.session, 5 * NS, 180, 48);
    assert!(!line_with(&s, "╰").contains("from"), "{}", s.join("\n"));
}

#[test]
fn a_group_partly_from_one_origin_says_how_many() {
    // Every other keep-alive connection has the origin: 4 of the 8.
    let mut d = Demo::with_origins(2);
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    let s = draw(&mut v, &d.session, 5 * NS, 180, 48);
    let border = line_with(&s, "╰");
    assert!(
        border.contains(&format!("from {SITE} (4 of 8): 4 http.Transports made there")),
        "{border}"
    );
}

#[test]
fn no_origin_shows_nothing_origin_like() {
    let mut d = Demo::new();
    d.run(1, 6);
    let mut v = LiveView::new(UNICODE);
    v.on_outputs(&d.outputs, 7 * NS);
    v.on_key(KeyEvent::from(KeyCode::Enter));
    let s = draw(&mut v, &d.session, 7 * NS, 200, 60);
    let screen = s.join("\n");
    for bad in ["ORIGIN", "from ", "Transport", "main.", "unknown"] {
        assert!(!screen.contains(bad), "{bad:?}:\n{screen}");
    }
    // No placeholder either: the group's row ends with its finding.
    let row = line_with(&s, KEEP);
    let after = &row[row.find("established_unreused").unwrap() + "established_unreused".len()..];
    assert!(after.trim_end_matches(['│', ' ']).is_empty(), "{row}");
}

#[test]
fn a_small_window_still_renders() {
    let mut d = Demo::new();
    d.run(1, 4);
    let mut v = LiveView::new(UNICODE);
    for (w, h) in [(80, 24), (40, 10), (10, 3), (1, 1)] {
        draw(&mut v, &d.session, 5 * NS, w, h);
    }
    v.on_key(key('?'));
    draw(&mut v, &d.session, 5 * NS, 20, 5);
}
