//! The terminal view in a real terminal: the real binary on the built-in demo workload inside
//! a detached tmux session (its own server socket), read with capture-pane and driven with
//! send-keys and resize-window; and the plain line stream when stdout is not a terminal.
//! Privileged (they load the real programs); `tmux` is installed by `cargo xtask setup`.
mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// The demo: its leaky client's pid, the keep-alive and the closing server's addresses.
struct Demo {
    _proc: Proc,
    client: u32,
    keepalive: String,
    closing: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // The client is the demo's child: end it too (its servers die with the demo).
        unsafe { libc::kill(self.client as i32, libc::SIGKILL) };
    }
}

fn demo(ns: &NetNs) -> Demo {
    let p = workload(ns, &["demo"], "demo");
    let pid_line = p.wait_line(|l| l.starts_with("pid "));
    let client = pid_line[4..].trim().parse().expect("demo client pid");
    // "ready keep-alive server 127.0.0.1:P, closing server 127.0.0.1:Q"
    let ready = p.wait_line(|l| l.starts_with("ready "));
    let words: Vec<&str> = ready.split_whitespace().collect();
    let keepalive = words[3].trim_end_matches(',').to_string();
    let closing = words[6].to_string();
    Demo {
        _proc: p,
        client,
        keepalive,
        closing,
    }
}

/// A detached tmux session on a private server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// `command` (a shell line) in a new 160x48 session; after it ends the pane stays, with
    /// `connlife-exit=N`, so the normal screen can be read.
    fn start(command: &str) -> Tmux {
        require_root();
        let t = Tmux {
            socket: format!("connlife-test-{}", std::process::id()),
        };
        let line = format!("{command}; echo connlife-exit=$?; sleep 600");
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "48",
            "env",
            "TERM=xterm-256color",
            "LANG=C.UTF-8",
            "sh",
            "-c",
            &line,
        ]);
        t.run(&["set-option", "-t", "t", "window-size", "manual"]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .env("LANG", "C.UTF-8")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .output()
            .expect("running tmux (installed by `cargo xtask setup`)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, one string per row.
    fn screen(&self) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", "t"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The normal screen with its scrollback.
    fn history(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "t", k]);
            // One key at a time, each drawn before the next.
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn flag(&self, name: &str) -> String {
        self.run(&["display-message", "-p", "-t", "t", &format!("#{{{name}}}")])
            .trim()
            .to_string()
    }

    /// Poll the screen until `pred` holds; panic with the screen after PATIENCE.
    fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not on screen after {PATIENCE:?}:\n{}",
                s.join("\n")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait for connlife to exit; the pane's whole text then.
    fn wait_exit(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let h = self.history();
            if h.contains("connlife-exit=") {
                return h;
            }
            assert!(Instant::now() < deadline, "connlife did not exit:\n{h}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The terminal is as connlife found it: normal screen, cursor shown.
    fn assert_clean(&self) {
        assert_eq!(self.flag("alternate_on"), "0", "still on the alternate screen");
        assert_eq!(self.flag("cursor_flag"), "1", "cursor still hidden");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

fn connlife_line(pid: u32, extra: &str) -> String {
    format!("{CONNLIFE} --pid {pid} --idle-after 2s --close-wait-after 2s {extra}")
}

/// The group row of the table for (remote, state): its remote cell starts with the
/// expand mark (events and connection rows have none).
fn group_row<'a>(screen: &'a [String], remote: &str, state: &str) -> Option<(usize, &'a str)> {
    let (closed, open) = (format!("▸{remote} "), format!("▾{remote} "));
    screen
        .iter()
        .enumerate()
        .find(|(_, l)| (l.contains(&closed) || l.contains(&open)) && l.contains(&format!(" {state} ")))
        .map(|(i, l)| (i, l.as_str()))
}

/// COUNT of that group: the first number after the state (and the role, when shown).
fn group_count(screen: &[String], remote: &str, state: &str) -> Option<usize> {
    let (_, line) = group_row(screen, remote, state)?;
    let after = &line[line.find(&format!(" {state} "))? + state.len() + 2..];
    after
        .split_whitespace()
        .find(|w| !matches!(*w, "client" | "server" | "listen" | "?"))?
        .parse()
        .ok()
}

#[test]
fn tui_live_view_in_tmux_keys_resize_and_report_on_q() {
    let ns = NetNs::new();
    let d = demo(&ns);
    let t = Tmux::start(&connlife_line(d.client, ""));
    let (ka, cl) = (d.keepalive.as_str(), d.closing.as_str());

    // The header with the process and its fds; the keep-alive group growing; the CLOSE_WAIT group.
    let first = t.wait("keep-alive group of 4+ and a CLOSE_WAIT group", |s| {
        group_count(s, ka, "ESTABLISHED").is_some_and(|n| n >= 4) && group_row(s, cl, "CLOSE_WAIT").is_some()
    });
    let header = first
        .iter()
        .find(|l| l.contains(&format!("pid {} (", d.client)))
        .unwrap_or_else(|| panic!("no header line for the client:\n{}", first.join("\n")));
    assert!(header.contains("fds "), "{header}");
    assert!(first.iter().any(|l| l.contains("connection groups")));
    assert!(first.iter().any(|l| l.contains("recent events")));
    let n1 = group_count(&first, ka, "ESTABLISHED").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let second = t.screen();
    let n2 = group_count(&second, ka, "ESTABLISHED").expect("keep-alive group still there");
    assert!(n2 > n1, "the keep-alive group grows: {n1} then {n2}");
    // Past the 2 s thresholds, the groups carry their findings.
    let s = t.wait("findings on both groups", |s| {
        group_row(s, ka, "ESTABLISHED").is_some_and(|(_, l)| l.contains("established_unreused"))
            && group_row(s, cl, "CLOSE_WAIT").is_some_and(|(_, l)| l.contains("close_wait_stuck"))
    });
    // Sorted by count: the bigger keep-alive group first.
    assert!(group_row(&s, ka, "ESTABLISHED").unwrap().0 < group_row(&s, cl, "CLOSE_WAIT").unwrap().0);

    // Sort by STATE (key 3) twice: descending puts CLOSE_WAIT first.
    t.keys(&["3", "3"]);
    let s = t.screen();
    assert!(
        group_row(&s, cl, "CLOSE_WAIT").unwrap().0 < group_row(&s, ka, "ESTABLISHED").unwrap().0,
        "sorted by state, descending:\n{}",
        s.join("\n")
    );
    // Back to COUNT; expand the selected (first: keep-alive) group.
    t.keys(&["5", "Enter"]);
    let s = t.screen();
    let (row, _) = group_row(&s, ka, "ESTABLISHED").unwrap();
    assert!(
        s[row + 1].contains(" fd ") && s[row + 1].contains("sent "),
        "expanded into its connections:\n{}",
        s.join("\n")
    );
    // Filter: ESTABLISHED only hides the CLOSE_WAIT group; next, CLOSE_WAIT only.
    t.keys(&["f"]);
    let s = t.screen();
    assert!(s.iter().any(|l| l.contains("(ESTABLISHED only)")), "{}", s.join("\n"));
    assert!(group_row(&s, cl, "CLOSE_WAIT").is_none(), "{}", s.join("\n"));
    t.keys(&["f"]);
    let s = t.screen();
    assert!(group_row(&s, ka, "ESTABLISHED").is_none() && group_row(&s, cl, "CLOSE_WAIT").is_some());
    // Every state again; back to the first group and collapse it (the selection stayed on
    // the CLOSE_WAIT group, under the long expanded one).
    t.keys(&["f", "f", "f", "F", "g", "Enter"]);
    let s = t.screen();
    assert!(group_row(&s, ka, "ESTABLISHED").is_some() && group_row(&s, cl, "CLOSE_WAIT").is_some());
    assert!(
        !s.iter().any(|l| l.contains(" fd ") && l.contains("sent ")),
        "collapsed"
    );
    // Pause: the numbers stay; help shows and any key closes it.
    t.keys(&["p"]);
    let paused = t.screen();
    assert!(paused.iter().any(|l| l.contains("PAUSED")));
    let frozen = group_count(&paused, ka, "ESTABLISHED");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(group_count(&t.screen(), ka, "ESTABLISHED"), frozen, "paused");
    t.keys(&["p", "?"]);
    assert!(t.screen().iter().any(|l| l.contains("this help")));
    t.keys(&["Escape"]);
    assert!(!t.screen().iter().any(|l| l.contains("this help")));

    // A smaller window: redrawn to its size, header and groups still there.
    t.run(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
    let s = t.wait("redrawn at 100x30", |s| {
        s.len() == 30 && s.iter().all(|l| l.chars().count() <= 100) && group_row(s, ka, "ESTABLISHED").is_some()
    });
    assert!(s.iter().any(|l| l.contains(&format!("pid {} (", d.client))));
    t.run(&["resize-window", "-t", "t", "-x", "160", "-y", "48"]);
    t.wait("redrawn at 160x48", |s| {
        s.len() == 48 && group_row(s, cl, "CLOSE_WAIT").is_some()
    });

    // q: the normal screen again, with the final report.
    t.keys(&["q"]);
    let h = t.wait_exit();
    t.assert_clean();
    assert!(h.contains("connlife-exit=0"), "{h}");
    assert!(h.contains(&format!("=== post-mortem: pid {}", d.client)), "{h}");
    assert!(h.contains("verdict:"), "{h}");
    assert!(
        !h.contains("connection groups"),
        "the live view is gone from the normal screen:\n{h}"
    );
}

#[test]
fn tui_ctrl_c_leaves_the_terminal_clean_with_the_report() {
    let ns = NetNs::new();
    let d = demo(&ns);
    let t = Tmux::start(&connlife_line(d.client, ""));
    t.wait("the live view", |s| s.iter().any(|l| l.contains("connection groups")));
    t.keys(&["C-c"]);
    let h = t.wait_exit();
    t.assert_clean();
    assert!(h.contains("connlife-exit=0"), "{h}");
    assert!(h.contains(&format!("=== post-mortem: pid {}", d.client)), "{h}");
}

#[test]
fn tui_traced_process_death_leaves_the_terminal_clean_with_the_postmortem() {
    let ns = NetNs::new();
    let d = demo(&ns);
    let t = Tmux::start(&connlife_line(d.client, ""));
    t.wait("the client's connections", |s| {
        group_count(s, &d.keepalive, "ESTABLISHED").is_some_and(|n| n >= 2)
    });
    unsafe { libc::kill(d.client as i32, libc::SIGKILL) };
    let h = t.wait_exit();
    t.assert_clean();
    assert!(h.contains("connlife-exit=0"), "{h}");
    assert!(h.contains(&format!("=== post-mortem: pid {}", d.client)), "{h}");
    assert!(h.contains("killed by signal 9"), "{h}");
}

#[test]
fn plain_stream_collapses_findings_under_their_group() {
    let ns = NetNs::new();
    let d = demo(&ns);
    // Let connections pile up first: the start-up view then flags many at once.
    std::thread::sleep(Duration::from_secs(12));
    let mut cmd = Command::new(CONNLIFE);
    cmd.args(["--pid", &d.client.to_string()]).args([
        "--plain",
        "--idle-after",
        "2s",
        "--close-wait-after",
        "2s",
        "--duration",
        "8s",
    ]);
    let mut p = Proc::spawn(cmd, "connlife-plain");
    let st = p.wait_exit();
    assert!(st.success(), "connlife --plain exited with {st}");
    // Every line: the reader thread ends at stdout's end.
    let mut lines = Vec::new();
    while let Ok(l) = p.lines.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    let text = lines.join("\n");
    assert!(
        !text.contains('\x1b'),
        "no escape sequences when not a terminal:\n{text}"
    );
    // One group line per (process, kind, remote) with its count, its first 3 connections
    // indented, then "and N more".
    let group = lines
        .iter()
        .position(|l| {
            l.starts_with("FINDING")
                && l.contains("close_wait_stuck")
                && l.contains(&format!("connections to {}", d.closing))
        })
        .unwrap_or_else(|| panic!("no collapsed CLOSE_WAIT group line:\n{text}"));
    let count: usize = lines[group]
        .split(" connections to ")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {:?}", lines[group]));
    assert!(count >= 4, "{}", lines[group]);
    for l in &lines[group + 1..group + 4] {
        assert!(l.trim_start().starts_with("fd "), "a listed connection: {l:?}\n{text}");
    }
    assert_eq!(lines[group + 4].trim(), format!("and {} more", count - 3), "{text}");
    // Not one FINDING line per connection.
    let per_conn = lines
        .iter()
        .filter(|l| l.starts_with("FINDING") && l.contains(&format!("-> {}", d.closing)))
        .count();
    assert!(
        per_conn < count,
        "findings collapsed ({per_conn} single lines):\n{text}"
    );
    assert!(text.contains(&format!("=== post-mortem: pid {}", d.client)), "{text}");
    if use_counting() {
        assert!(
            lines.iter().any(|l| l.starts_with("FINDING")
                && l.contains("established_unreused")
                && l.contains(&format!("connections to {}", d.keepalive))),
            "the keep-alive group collapsed too:\n{text}"
        );
    }
}
