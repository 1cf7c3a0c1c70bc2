//! `cargo xtask run`: the newcomer's command.
//!
//! Runs setup (without the Debian packages: the demo needs none), builds connlife in release
//! mode and then either
//! - starts the built-in leaky workload (`connlife-workload demo`: a keep-alive server, a client
//!   that opens a new connection per request and never closes it, and one that leaves sockets in
//!   CLOSE_WAIT), reads the client pid from its first stdout line (`pid <N>`) and watches that
//!   pid with short thresholds for `--duration` (40 s by default); or
//! - with `--pid`, watches that process until Ctrl-C (or `--duration`).
//!
//! connlife and the workload run in their own process groups, so a Ctrl-C reaches only this
//! program, which forwards one SIGINT to connlife (so it prints its final report), waits for it
//! and then ends the workload.

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::setup;

/// Arguments the demo passes to connlife before the user's extra ones.
const DEMO_ARGS: &[&str] = &["--idle-after", "5s", "--close-wait-after", "5s", "--interval", "10s"];
const DEMO_DURATION: Duration = Duration::from_secs(40);
/// How long connlife gets to print its final report after SIGINT.
const REPORT_GRACE: Duration = Duration::from_secs(15);

pub struct Options {
    pub pid: Option<u32>,
    pub duration: Option<Duration>,
    pub extra: Vec<String>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn run(root: &Path, opts: Options) -> Result<()> {
    ensure!(
        setup::is_root(),
        "connlife loads eBPF programs and needs root (try: sudo -E cargo xtask run)"
    );
    setup::setup_for_run().context("setup")?;
    let started = Instant::now();
    println!("building connlife (release) ...");
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "connlife"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build --release -p connlife failed ({status})");
    println!("built in {}", setup::secs(started));

    let release = root.join("target/release");
    let connlife = release.join("connlife");
    ensure!(connlife.is_file(), "{} was not built", connlife.display());

    // A handler (not SIG_IGN, which children would inherit) so Ctrl-C only sets a flag here.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }

    let mut workload = None;
    let (pid, mut args, duration) = match opts.pid {
        Some(pid) => (pid, Vec::new(), opts.duration),
        None => {
            let (child, pid) = start_workload(root, &release.join("connlife-workload"))?;
            workload = Some(child);
            let args = DEMO_ARGS.iter().map(|s| s.to_string()).collect();
            (pid, args, Some(opts.duration.unwrap_or(DEMO_DURATION)))
        }
    };
    args.extend(opts.extra);
    let result = watch(&connlife, pid, &args, duration);
    if let Some(mut w) = workload {
        stop_group(&mut w, libc::SIGTERM, Duration::from_secs(3));
        println!("workload stopped");
    }
    result
}

/// Starts `connlife-workload demo` in its own process group; returns it with the client pid.
fn start_workload(root: &Path, bin: &Path) -> Result<(Child, u32)> {
    if !bin.is_file() {
        bail!(
            "{} does not exist: the built-in demo workload is not part of this build yet; \
             watch one of your own processes with `cargo xtask run --pid PID`",
            bin.display()
        );
    }
    let log_path = root.join("target/connlife-workload.log");
    fs::create_dir_all(root.join("target"))?;
    let log = fs::File::create(&log_path).context("creating the workload log")?;
    let mut child = Command::new(bin)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("workload stdout")?;
    let (tx, rx) = mpsc::channel();
    // First line to us, the rest to the log (so the pipe never fills up).
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        let mut log = log;
        for line in lines.map_while(|l| l.ok()) {
            let _ = writeln!(log, "{line}");
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(15));
    let pid = match first {
        Ok(Some(Ok(ref line))) => parse_pid_line(line),
        _ => None,
    };
    let Some(pid) = pid else {
        stop_group(&mut child, libc::SIGKILL, Duration::from_secs(1));
        bail!(
            "the workload did not print `pid <N>` as its first line (got {first:?}); see {}",
            log_path.display()
        );
    };
    println!(
        "workload: connlife-workload demo, leaky client pid {pid} (log: {})",
        log_path.display()
    );
    Ok((child, pid))
}

/// `pid 1234` -> 1234.
pub fn parse_pid_line(line: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("pid"), Some(n), None) => n.parse().ok(),
        _ => None,
    }
}

/// Runs connlife on `pid` until `duration` passes, Ctrl-C, or connlife exits by itself.
fn watch(connlife: &Path, pid: u32, args: &[String], duration: Option<Duration>) -> Result<()> {
    let mut cmd = Command::new(connlife);
    cmd.arg("--pid").arg(pid.to_string()).args(args);
    let shown: Vec<String> = std::iter::once(connlife.display().to_string())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let until = match duration {
        Some(d) => format!("for {} s", d.as_secs()),
        None => "until Ctrl-C".to_string(),
    };
    println!("running {} {until}", shown.join(" "));
    let mut child = cmd
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", connlife.display()))?;
    let started = Instant::now();
    let mut signalled = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let timed_out = duration.is_some_and(|d| started.elapsed() >= d);
        if !signalled && (timed_out || INTERRUPTED.load(Ordering::SeqCst)) {
            signal(child.id() as libc::pid_t, libc::SIGINT);
            signalled = true;
            let deadline = Instant::now() + REPORT_GRACE;
            let status = wait_until(&mut child, deadline)?;
            match status {
                Some(status) => break status,
                None => {
                    let grace = REPORT_GRACE.as_secs();
                    eprintln!("connlife did not exit {grace} s after SIGINT: killing it");
                    let _ = child.kill();
                    break child.wait()?;
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    };
    judge(status, signalled)
}

/// connlife's exit is fine when it is 0, or death by the SIGINT we sent.
fn judge(status: ExitStatus, signalled: bool) -> Result<()> {
    if status.success() || (signalled && status.signal() == Some(libc::SIGINT)) {
        return Ok(());
    }
    bail!("connlife exited with {status}")
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

/// kill(2): a pid, or a process group when negative.
fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Sends `sig` to the child's process group, then SIGKILL to it after `grace`, and reaps it.
fn stop_group(child: &mut Child, sig: libc::c_int, grace: Duration) {
    let group = -(child.id() as libc::pid_t);
    signal(group, sig);
    if let Ok(None) = wait_until(child, Instant::now() + grace) {
        signal(group, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// `40s`, `2m`, `1500ms`, `90` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("bad duration `{s}`"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("bad duration `{s}`: use 40s, 2m or 1500ms"),
    })
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_lines() {
        assert_eq!(parse_pid_line("pid 4242"), Some(4242));
        assert_eq!(parse_pid_line("pid 4242\r"), Some(4242));
        assert_eq!(parse_pid_line("pid"), None);
        assert_eq!(parse_pid_line("pid 12 extra"), None);
        assert_eq!(parse_pid_line("listening on 127.0.0.1:8080"), None);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The demo flow with stand-ins for both binaries: the workload's pid is read, connlife
    /// gets SIGINT when the duration is up and exits cleanly, and the workload group is ended.
    #[test]
    fn demo_flow_with_stand_ins() {
        let dir = std::env::temp_dir().join(format!("xtask-run-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let workload = script(&dir, "workload", "echo \"pid $$\"\necho more\nexec sleep 30\n");
        let marker = dir.join("report");
        let connlife = script(
            &dir,
            "connlife",
            &format!(
                "trap 'echo \"$*\" > {}; exit 0' INT\nwhile :; do sleep 0.1; done\n",
                marker.display()
            ),
        );
        let (mut child, pid) = start_workload(&dir, &workload).unwrap();
        assert_eq!(pid, child.id());
        let started = Instant::now();
        let args = vec!["--interval".to_string(), "10s".to_string()];
        watch(&connlife, pid, &args, Some(Duration::from_millis(500))).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let seen = fs::read_to_string(&marker).unwrap();
        assert_eq!(seen.trim(), format!("--pid {pid} --interval 10s"));
        stop_group(&mut child, libc::SIGTERM, Duration::from_secs(3));
        assert!(child.try_wait().unwrap().is_some());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn workload_problems_are_explained() {
        let dir = std::env::temp_dir().join(format!("xtask-run-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let missing = start_workload(&dir, &dir.join("nope")).unwrap_err();
        assert!(missing.to_string().contains("--pid PID"), "{missing}");
        let chatty = script(&dir, "chatty", "echo hello\nexec sleep 30\n");
        let err = start_workload(&dir, &chatty).unwrap_err();
        assert!(err.to_string().contains("pid <N>"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn judges_exit_status() {
        assert!(judge(ExitStatus::from_raw(0), false).is_ok());
        assert!(judge(ExitStatus::from_raw(libc::SIGINT), true).is_ok());
        assert!(judge(ExitStatus::from_raw(libc::SIGINT), false).is_err());
        assert!(judge(ExitStatus::from_raw(1 << 8), true).is_err());
    }
}
