//! `connlife report FILE --html OUT.html` through the real binary, and the page opened in
//! headless Chromium (Debian's `chromium`, installed by `cargo xtask setup`): it renders, the
//! key numbers are in the rendered DOM, and the screenshot is not blank. Needs no root.
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use connlife::{
    kernel::event::{Role, TcpState},
    model::{
        session::{FdExhausted, Output, Postmortem, TimelinePoint},
        verdict::{self, OpenGroup, Pattern},
    },
};

const CONNLIFE: &str = env!("CARGO_BIN_EXE_connlife");
/// Chromium starts in about a second; only a hang reaches this.
const PATIENCE: Duration = Duration::from_secs(90);

/// A fresh directory for one test, removed when the test passes.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("connlife-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A service that made a new connection per request to one backend, never closed three
/// responses of another, and died of EMFILE at 1024 fds after 10 minutes.
fn died_of_emfile() -> Postmortem {
    let timeline: Vec<TimelinePoint> = (0..=60)
        .map(|i| {
            let est = i * 16;
            let cw = (i / 10).min(3);
            let tw = (i % 7) * 2;
            TimelinePoint {
                at_s: i as f64 * 10.0,
                open_fds: 48 + est + cw,
                tcp_by_state: [
                    ("ESTABLISHED".to_string(), est),
                    ("CLOSE_WAIT".to_string(), cw),
                    ("TIME_WAIT".to_string(), tw),
                ]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            }
        })
        .collect();
    Postmortem {
        pid: 73119,
        comm: "<script>billing".into(),
        ending: "exited with status 2".into(),
        exit_code: Some(2),
        signal: None,
        lifetime_s: 603.0,
        fd_limit: Some(1024),
        peak_fds: 1011,
        fd_exhausted: vec![FdExhausted {
            pid: 73119,
            comm: "<script>billing".into(),
            errno: "EMFILE".into(),
            syscall: "socket".into(),
            at_s: 601.2,
            open_fds: Some(1011),
            tcp_by_state: [("ESTABLISHED".to_string(), 960u32), ("CLOSE_WAIT".to_string(), 3)].into(),
        }],
        open_at_end: vec![
            OpenGroup {
                state: TcpState::Established,
                role: Role::Client,
                raddr: "10.20.0.15:8443".into(),
                count: 960,
                oldest_s: 598.0,
                newest_s: 1.1,
                fds: (9..969).collect(),
                exchanges_per_conn: Some(1.0),
                unreused: 960,
                counted: 960,
                growth_per_min: verdict::growth_from_ages(960, 598.0, 1.1),
                origin: None,
            },
            OpenGroup {
                state: TcpState::CloseWait,
                role: Role::Client,
                raddr: "10.20.0.31:9000".into(),
                count: 3,
                oldest_s: 500.0,
                newest_s: 300.0,
                fds: vec![6, 7, 8],
                exchanges_per_conn: Some(1.0),
                unreused: 3,
                counted: 3,
                growth_per_min: verdict::growth_from_ages(3, 500.0, 300.0),
                origin: None,
            },
        ],
        findings_raised: [
            ("established_unreused".to_string(), 412u64),
            ("close_wait_stuck".to_string(), 3),
        ]
        .into(),
        findings_at_end: Vec::new(),
        groups: Vec::new(),
        timeline,
        patterns: vec![
            Pattern {
                kind: "unreused_keepalive".into(),
                count: 960,
                raddr: "10.20.0.15:8443".into(),
                hint: verdict::HINT_UNREUSED.into(),
                origin: None,
                transports: None,
            },
            Pattern {
                kind: "close_wait_never_closed".into(),
                count: 3,
                raddr: "10.20.0.31:9000".into(),
                hint: verdict::HINT_CLOSE_WAIT.into(),
                origin: None,
                transports: None,
            },
        ],
        verdict: String::new(),
        reason: Some("fd_exhausted".into()),
        container: Some("4f2a9c0d1e7b".into()),
        cgroup: Some("/kubepods.slice/kubepods-burstable.slice/cri-containerd-4f2a9c0d1e7b.scope".into()),
        pod_uid: Some("7d1c2b6e-0a41-4c57-9d7e-2f0c3b8a9e11".into()),
    }
}

/// `chromium`, or a clear failure: CI's `cargo xtask setup` installs Debian's package.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("chromium not found in PATH: install Debian's chromium (`apt-get install -y chromium`; `cargo xtask setup` does it on CI)")
    })
}

/// Run headless Chromium on `page` with `extra` arguments, in a fresh profile, with every
/// network feature it has off; its stdout.
fn headless(tmp: &TempDir, page: &Path, extra: &[String]) -> String {
    let profile = tmp.path(&format!("profile-{}", extra.len()));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {extra:?} did not finish in {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(status.success(), "chromium {extra:?}: {status}\n{err}");
    out
}

/// Width and height from a PNG's IHDR, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

fn screenshot(tmp: &TempDir, page: &Path, name: &str) -> Vec<u8> {
    let png = tmp.path(name);
    headless(
        tmp,
        page,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,1600".into(),
        ],
    );
    std::fs::read(&png).unwrap_or_else(|e| panic!("chromium wrote no screenshot {}: {e}", png.display()))
}

#[test]
fn report_html_of_an_emfile_postmortem_renders_in_chromium_with_the_key_numbers() {
    let tmp = TempDir::new("html");
    let mut pm = died_of_emfile();
    let exhausted = pm.fd_exhausted.first().map(|e| (e.errno.as_str(), e.at_s));
    pm.verdict = verdict::verdict(&pm.patterns, exhausted, None);
    let file = tmp.path("postmortem-73119.json");
    std::fs::write(
        &file,
        serde_json::to_string(&Output::Postmortem(pm.clone())).unwrap() + "\n",
    )
    .unwrap();
    let html = tmp.path("postmortem.html");

    let out = Command::new(CONNLIFE)
        .arg("report")
        .arg(&file)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("run connlife");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(&html).expect("connlife wrote the page");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no network address"
    );

    let dom = headless(&tmp, &html, &["--dump-dom".into()]);
    assert!(dom.contains("<svg"), "{dom}");
    let biggest = pm.open_at_end.iter().map(|g| g.count).max().unwrap();
    for key in [
        pm.pid.to_string(),
        pm.peak_fds.to_string(),
        pm.fd_limit.unwrap().to_string(),
        biggest.to_string(),
        "EMFILE".to_string(),
        "unreused_keepalive".to_string(),
        "10.20.0.15:8443".to_string(),
    ] {
        assert!(dom.contains(&key), "{key} not in the rendered page");
    }
    assert!(!dom.contains("<script"), "the comm was escaped, not run");
    assert!(dom.contains("&lt;script&gt;billing"));

    let shot = screenshot(&tmp, &html, "postmortem.png");
    assert_eq!(png_size(&shot), (1200, 1600));
    // A blank page compresses to almost nothing: the post-mortem must be far bigger.
    let blank_page = tmp.path("blank.html");
    std::fs::write(&blank_page, "<!doctype html><html><body></body></html>\n").unwrap();
    let blank = screenshot(&tmp, &blank_page, "blank.png");
    assert!(
        shot.len() > 20_000 && shot.len() > blank.len() * 4,
        "screenshot looks blank: {} bytes, a blank page is {}",
        shot.len(),
        blank.len()
    );
    // CONNLIFE_KEEP_HTML=DIR keeps the page and its screenshot to look at.
    if let Some(keep) = std::env::var_os("CONNLIFE_KEEP_HTML") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&html, keep.join("postmortem.html")).unwrap();
        std::fs::write(keep.join("postmortem.png"), &shot).unwrap();
    }
}
